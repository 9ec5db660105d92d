"""Asynchronous invocation with unmodified boto3: Event invokes and InvokeAsync, retries,
destinations of Lambda's record shape, the dead-letter queue and the status API.

The suite's server retries after about 0.3 and 0.6 s instead of Lambda's 1 and 2 minutes
(see SERVER_CONFIG in conftest.py)."""

import http.server
import json
import queue
import ssl
import threading
import time

import botocore.exceptions
import pytest

from calls import (ACCOUNT, REGION, function_arn, request_id, tern_api, unique_name,
                   wait_for_state)
from packages import build_zip

APP = """\
import json
import time

def handler(event, context):
    print("EVENT " + json.dumps({"rid": context.aws_request_id, "event": event}))
    if event.get("fail"):
        raise RuntimeError("failing on purpose in " + context.aws_request_id)
    return {"rid": context.aws_request_id, "event": event, "version": "%s"}
"""


def app_zip(version="v1"):
    return build_zip({"app.py": APP % version})


def queue_arn(name):
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def event_invoke(client, name, event, **extra):
    resp = client.invoke(FunctionName=name, InvocationType="Event",
                         Payload=json.dumps(event).encode(), **extra)
    assert resp["StatusCode"] == 202
    assert resp["Payload"].read() == b""
    return request_id(resp)


def queue_records(server, name, timeout_s=30, count=1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, page = tern_api(server, "GET", f"/tern/v1/queues/{name}/messages")
        assert status == 200, page
        if len(page["messages"]) >= count:
            return [m["body"] for m in page["messages"]]
        time.sleep(0.1)
    raise AssertionError(f"queue {name} got fewer than {count} records in {timeout_s}s")


def test_event_invoke_runs_with_its_request_id_and_reports_succeeded(
        tern_server, lambda_client, deploy):
    name = deploy(app_zip())["FunctionName"]
    rid = event_invoke(lambda_client, name, {"n": 1})
    done = wait_for_state(tern_server, rid, {"succeeded", "failed", "expired"})
    assert done["state"] == "succeeded", done
    assert done["response"] == {"rid": rid, "event": {"n": 1}, "version": "v1"}
    assert [a["outcome"] for a in done["attempts"]] == ["success"]
    assert done["functionName"] == name and done["qualifier"] == "$LATEST"


def test_invoke_async_is_queued_as_an_event(tern_server, lambda_client, deploy):
    name = deploy(app_zip())["FunctionName"]
    resp = lambda_client.invoke_async(FunctionName=name, InvokeArgs=b'{"legacy": true}')
    assert resp["Status"] == 202
    done = wait_for_state(tern_server, request_id(resp), {"succeeded", "failed"})
    assert done["response"]["event"] == {"legacy": True}


def test_a_failing_event_is_tried_1_plus_retries_times_then_sent_on_failure(
        tern_server, lambda_client, deploy):
    name = deploy(app_zip())["FunctionName"]
    failures = unique_name("failures")
    lambda_client.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": queue_arn(failures)}})
    rid = event_invoke(lambda_client, name, {"fail": True})
    done = wait_for_state(tern_server, rid, {"failed", "succeeded"})
    assert done["state"] == "failed"
    assert [a["outcome"] for a in done["attempts"]] == ["function_error"] * 2
    assert done["attempts"][0]["errorType"] == "RuntimeError"
    assert rid in done["attempts"][0]["errorMessage"]
    assert done["deadLetter"] is False, "delivered to OnFailure, so not dead-lettered"
    (record,) = queue_records(tern_server, failures)
    assert record["version"] == "1.0"
    assert record["timestamp"].endswith("Z")
    assert record["requestContext"] == {
        "requestId": rid,
        "functionArn": function_arn(name) + ":$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 2,
    }
    assert record["requestPayload"] == {"fail": True}
    assert record["responseContext"] == {
        "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "RuntimeError"


def test_without_a_destination_the_event_lands_in_the_dlq_and_a_redrive_reruns_it(
        tern_server, lambda_client, deploy):
    name = deploy(app_zip())["FunctionName"]
    rid = event_invoke(lambda_client, name, {"fail": True})
    done = wait_for_state(tern_server, rid, {"failed", "succeeded"})
    # Lambda's default: MaximumRetryAttempts 2, so three tries.
    assert len(done["attempts"]) == 3 and done["deadLetter"] is True
    status, page = tern_api(tern_server, "GET", f"/tern/v1/functions/{name}/dlq")
    assert status == 200
    (entry,) = page["entries"]
    assert entry["requestId"] == rid and entry["payload"] == {"fail": True}
    status, one = tern_api(tern_server, "GET", f"/tern/v1/functions/{name}/dlq/{rid}")
    assert status == 200 and len(one["attempts"]) == 3

    # Fix the function, then redrive: the same request id runs again, and succeeds.
    fixed = APP.replace('if event.get("fail")', 'if False')
    lambda_client.update_function_code(FunctionName=name,
                                       ZipFile=build_zip({"app.py": fixed % "v2"}))
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    status, body = tern_api(tern_server, "POST", f"/tern/v1/functions/{name}/dlq/redrive",
                            {"requestId": rid})
    assert (status, body) == (200, {"redriven": 1})
    done = wait_for_state(tern_server, rid, {"succeeded"})
    assert done["response"]["rid"] == rid and done["response"]["version"] == "v2"
    assert [a["outcome"] for a in done["attempts"]][-1] == "success"
    assert len(done["attempts"]) == 4, "the earlier attempts stay in the history"
    status, page = tern_api(tern_server, "GET", f"/tern/v1/functions/{name}/dlq")
    assert page["entries"] == []


class Hook:
    """A webhook receiver on loopback, plain or TLS with `cert`."""

    def __init__(self, cert=None):
        self.received = queue.Queue()
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                received.put((self.path, self.headers["content-type"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert.cert, cert.key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_on_success_goes_to_a_webhook(tern_server, lambda_client, deploy, webhook_certs, tls):
    hook = Hook(webhook_certs["trusted"] if tls else None)
    try:
        name = deploy(app_zip())["FunctionName"]
        lambda_client.put_function_event_invoke_config(
            FunctionName=name,
            DestinationConfig={"OnSuccess": {"Destination": hook.url + "/done?x=1"}})
        rid = event_invoke(lambda_client, name, {"hook": 1})
        path, ctype, record = hook.received.get(timeout=30)
        assert path == "/done?x=1" and ctype == "application/json"
        assert record["requestContext"]["condition"] == "Success"
        assert record["requestContext"]["requestId"] == rid
        assert record["responsePayload"]["event"] == {"hook": 1}
        assert "functionError" not in record["responseContext"]
    finally:
        hook.close()


def test_an_undeliverable_on_failure_record_dead_letters_the_event(
        tern_server, lambda_client, deploy, webhook_certs):
    """An https webhook whose certificate the server does not trust gets nothing; the
    failed event goes to the dead-letter queue instead of being lost."""
    hook = Hook(webhook_certs["untrusted"])
    try:
        name = deploy(app_zip())["FunctionName"]
        lambda_client.put_function_event_invoke_config(
            FunctionName=name, MaximumRetryAttempts=0,
            DestinationConfig={"OnFailure": {"Destination": hook.url + "/failed"}})
        rid = event_invoke(lambda_client, name, {"fail": True})
        done = wait_for_state(tern_server, rid, {"failed", "succeeded"})
        assert done["state"] == "failed" and done["deadLetter"] is True, done
        assert hook.received.empty()
    finally:
        hook.close()


def test_on_success_to_another_function_invokes_it_with_the_record(
        tern_server, lambda_client, deploy):
    sink = deploy(app_zip())["FunctionName"]
    name = deploy(app_zip())["FunctionName"]
    lambda_client.put_function_event_invoke_config(
        FunctionName=name,
        DestinationConfig={"OnSuccess": {"Destination": function_arn(sink)}})
    rid = event_invoke(lambda_client, name, {"chain": 1})
    wait_for_state(tern_server, rid, {"succeeded"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, logs = tern_api(tern_server, "GET", f"/tern/v1/functions/{sink}/logs")
        events = [json.loads(line["message"].split("EVENT ", 1)[1])
                  for line in logs["lines"] if "EVENT " in line["message"]]
        if events:
            record = events[0]["event"]
            assert record["requestContext"]["requestId"] == rid
            assert record["requestContext"]["condition"] == "Success"
            assert record["requestPayload"] == {"chain": 1}
            return
        time.sleep(0.2)
    raise AssertionError("the destination function never ran")


def test_an_idempotency_key_repeated_queues_nothing(tern_server, lambda_client, deploy):
    name = deploy(app_zip())["FunctionName"]
    key = unique_name("key")

    def add_key(request, **_):
        request.headers["X-Tern-Idempotency-Key"] = key

    lambda_client.meta.events.register("before-sign.lambda.Invoke", add_key)
    try:
        first = event_invoke(lambda_client, name, {"once": 1})
        second = event_invoke(lambda_client, name, {"once": 2})
    finally:
        lambda_client.meta.events.unregister("before-sign.lambda.Invoke", add_key)
    assert first == second
    done = wait_for_state(tern_server, first, {"succeeded"})
    assert done["response"]["event"] == {"once": 1}


def test_event_invoke_config_api_has_lambdas_shapes(lambda_client, deploy):
    name = deploy(app_zip())["FunctionName"]
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_event_invoke_config(FunctionName=name)
    put = lambda_client.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=0, MaximumEventAgeInSeconds=120)
    assert put["FunctionArn"] == function_arn(name) + ":$LATEST"
    assert (put["MaximumRetryAttempts"], put["MaximumEventAgeInSeconds"]) == (0, 120)
    upd = lambda_client.update_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnFailure": {"Destination": queue_arn("q")}})
    assert upd["MaximumRetryAttempts"] == 0, "Update keeps what it does not name"
    assert upd["DestinationConfig"]["OnFailure"]["Destination"] == queue_arn("q")
    got = lambda_client.get_function_event_invoke_config(FunctionName=name)
    assert got["MaximumEventAgeInSeconds"] == 120
    listed = lambda_client.list_function_event_invoke_configs(FunctionName=name)
    assert [c["FunctionArn"] for c in listed["FunctionEventInvokeConfigs"]] == [
        function_arn(name) + ":$LATEST"]
    # Put replaces the whole configuration.
    put = lambda_client.put_function_event_invoke_config(FunctionName=name,
                                                         MaximumRetryAttempts=2)
    assert "MaximumEventAgeInSeconds" not in put
    assert put["DestinationConfig"]["OnFailure"] == {}
    lambda_client.delete_function_event_invoke_config(FunctionName=name)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.delete_function_event_invoke_config(FunctionName=name)


@pytest.mark.parametrize("config, needle", [
    ({"MaximumRetryAttempts": 3}, "maximumRetryAttempts"),
    ({"MaximumRetryAttempts": -1}, "maximumRetryAttempts"),
    ({"MaximumEventAgeInSeconds": 59}, "maximumEventAgeInSeconds"),
    ({"MaximumEventAgeInSeconds": 21601}, "maximumEventAgeInSeconds"),
    ({"DestinationConfig": {"OnFailure": {
        "Destination": f"arn:aws:sns:{REGION}:{ACCOUNT}:topic"}}}, "not supported"),
    ({"DestinationConfig": {"OnSuccess": {
        "Destination": function_arn("compat-no-such-function")}}}, "does not exist"),
    ({"DestinationConfig": {"OnSuccess": {
        "Destination": f"arn:aws:lambda:{REGION}:111111111111:function:x"}}}, "another account"),
    ({"DestinationConfig": {"OnSuccess": {"Destination": "https://u:p@example.invalid/"}}},
     "user info"),
    ({"DestinationConfig": {"OnSuccess": {"Destination": "SELF"}}}, "the function itself"),
    ({"DestinationConfig": {"OnSuccess": {
        "Destination": function_arn("compat-other") + ":prod"}}}, "does not exist"),
])
def test_bad_event_invoke_configs_are_refused(make_client, hello_fn, config, needle):
    # botocore checks some minimums client-side; send what a careless client would.
    client = make_client(parameter_validation=False)
    on_success = config.get("DestinationConfig", {}).get("OnSuccess", {})
    if on_success.get("Destination") == "SELF":
        config = {"DestinationConfig": {"OnSuccess": {"Destination": function_arn(hello_fn)}}}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.put_function_event_invoke_config(FunctionName=hello_fn, **config)
    err = e.value.response["Error"]
    assert err["Code"] == "InvalidParameterValueException", err
    assert needle in err["Message"], err


def test_bad_async_input_gets_a_clear_4xx_and_queues_nothing(
        tern_server, lambda_client, hello_fn):
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.invoke(FunctionName="compat-no-such-function", InvocationType="Event",
                             Payload=b"{}")
    with pytest.raises(lambda_client.exceptions.RequestTooLargeException):
        lambda_client.invoke(FunctionName=hello_fn, InvocationType="Event",
                             Payload=json.dumps("x" * (1024 * 1024)).encode())
    with pytest.raises(lambda_client.exceptions.InvalidRequestContentException):
        lambda_client.invoke(FunctionName=hello_fn, InvocationType="Event", Payload=b"{nope")
    status, body = tern_api(tern_server, "POST", f"/tern/v1/functions/{hello_fn}/dlq/redrive",
                            {"requestId": "00000000-0000-0000-0000-000000000000"})
    assert status == 404 and body["Type"] == "User", body
    status, body = tern_api(tern_server, "GET", "/tern/v1/invocations/no-such-id")
    assert status == 404, body
    status, page = tern_api(tern_server, "GET", f"/tern/v1/functions/{hello_fn}/dlq")
    assert (status, page["entries"]) == (200, [])


def test_an_event_past_its_age_expires_and_never_runs(tern_server, lambda_client, deploy):
    """Reserved concurrency 0 throttles every attempt; the event waits for capacity with
    backoff, then expires at MaximumEventAgeInSeconds (60 s, the least) without running."""
    name = deploy(app_zip())["FunctionName"]
    failures = unique_name("expired")
    lambda_client.put_function_event_invoke_config(
        FunctionName=name, MaximumEventAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": queue_arn(failures)}})
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    rid = event_invoke(lambda_client, name, {"late": 1})
    running = wait_for_state(tern_server, rid, {"retrying"}, timeout_s=30)
    assert running["attempts"][0]["outcome"] == "throttled"
    done = wait_for_state(tern_server, rid, {"expired", "succeeded", "failed"}, timeout_s=90)
    assert done["state"] == "expired", done
    assert all(a["outcome"] == "throttled" for a in done["attempts"]), done["attempts"]
    (record,) = queue_records(tern_server, failures)
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert "responsePayload" not in record
    status, logs = tern_api(tern_server, "GET", f"/tern/v1/functions/{name}/logs")
    assert not [line for line in logs["lines"] if "EVENT " in line["message"]]


def test_deleting_a_function_takes_its_events_and_a_new_one_runs_none(
        tern_server, lambda_client, deploy):
    name = deploy(app_zip("v1"))["FunctionName"]
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    queued = [event_invoke(lambda_client, name, {"n": i}) for i in range(3)]
    lambda_client.delete_function(FunctionName=name)
    for rid in queued:
        status, _ = tern_api(tern_server, "GET", f"/tern/v1/invocations/{rid}")
        assert status == 404, rid
    status, body = tern_api(tern_server, "GET", f"/tern/v1/functions/{name}/dlq")
    assert status == 404 and body["Type"] == "User", body
    deploy(app_zip("v2"), name=name)
    fresh = event_invoke(lambda_client, name, {"new": 1})
    assert wait_for_state(tern_server, fresh, {"succeeded"})["response"]["version"] == "v2"
    status, logs = tern_api(tern_server, "GET", f"/tern/v1/functions/{name}/logs")
    ran = [line for line in logs["lines"] if "EVENT " in line["message"]]
    assert len(ran) == 1, ran


def test_a_redriven_dead_letter_gets_a_new_age(tern_server, lambda_client, deploy):
    """An event that expired behind reserved concurrency 0 is redriven once there is
    room: it runs, instead of expiring again at once on its old age."""
    name = deploy(app_zip())["FunctionName"]
    lambda_client.put_function_event_invoke_config(FunctionName=name,
                                                   MaximumEventAgeInSeconds=60)
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    rid = event_invoke(lambda_client, name, {"late": 2})
    expired = wait_for_state(tern_server, rid, {"expired"}, timeout_s=90)
    assert expired["deadLetter"] is True
    lambda_client.delete_function_concurrency(FunctionName=name)
    status, body = tern_api(tern_server, "POST", f"/tern/v1/functions/{name}/dlq/redrive",
                            {"requestId": rid})
    assert (status, body) == (200, {"redriven": 1})
    done = wait_for_state(tern_server, rid, {"succeeded", "expired", "failed"})
    assert done["state"] == "succeeded", done


def test_an_on_failure_function_deleted_since_dead_letters_the_event(
        tern_server, lambda_client, deploy):
    sink = deploy(app_zip())["FunctionName"]
    name = deploy(app_zip())["FunctionName"]
    lambda_client.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": function_arn(sink)}})
    lambda_client.delete_function(FunctionName=sink)
    rid = event_invoke(lambda_client, name, {"fail": True})
    done = wait_for_state(tern_server, rid, {"failed", "succeeded"})
    assert done["state"] == "failed" and done["deadLetter"] is True, done


def test_a_payload_that_is_not_utf8_is_refused(lambda_client, hello_fn):
    for invocation_type in ["Event", "RequestResponse"]:
        with pytest.raises(lambda_client.exceptions.InvalidRequestContentException):
            lambda_client.invoke(FunctionName=hello_fn, InvocationType=invocation_type,
                                 Payload=b'{"a": "\xff\xfe"}')


def test_update_of_a_config_that_does_not_exist_is_not_found(lambda_client, deploy):
    name = deploy(app_zip())["FunctionName"]
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.update_function_event_invoke_config(FunctionName=name,
                                                          MaximumRetryAttempts=1)
