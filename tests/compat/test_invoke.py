"""Synchronous invoke through unmodified boto3: results, errors, logs, DryRun, timeouts."""

import base64
import concurrent.futures
from pathlib import Path

import pytest

from calls import ACCOUNT, create_and_wait, function_arn, invoke_json, request_id
from packages import NODE_HANDLER, NODE_RUNTIME, node_zip, python_zip


def test_invoke_returns_the_handler_result(lambda_client, hello_fn):
    resp, out = invoke_json(lambda_client, hello_fn, {"marker": "m1", "n": 42})
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp
    assert resp["ExecutedVersion"] == "$LATEST"
    assert out["event"] == {"marker": "m1", "n": 42}
    assert out["version"] == "v1"


def test_invoke_passes_a_json_value_that_is_not_an_object(lambda_client, hello_fn):
    resp, out = invoke_json(lambda_client, hello_fn, "just a string")
    assert resp["StatusCode"] == 200
    assert out["event"] == {"value": "just a string"}


def test_invoke_gives_the_handler_its_lambda_context(lambda_client, hello_fn):
    resp, out = invoke_json(lambda_client, hello_fn)
    assert out["function_name"] == hello_fn
    assert out["memory_limit_in_mb"] == 128
    assert out["aws_request_id"] == request_id(resp)
    assert out["invoked_function_arn"] == function_arn(hello_fn)
    assert 0 < out["remaining_ms"] <= 3000


def test_invoke_sets_lambda_environment_variables(lambda_client, hello_fn, tern_server):
    _, out = invoke_json(lambda_client, hello_fn)
    env = out["lambda_env"]
    task_root = env.pop("LAMBDA_TASK_ROOT")
    assert env == {
        "AWS_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": hello_fn,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "_HANDLER": "app.handler",
    }
    if tern_server.sandboxed:
        assert task_root == "/var/task"
    else:
        # Unsandboxed, the instance sees the host directory that stands for /var/task.
        assert (Path(task_root) / "app.py").is_file()


def test_invoke_round_trips_unicode_payload(lambda_client, hello_fn):
    event = {"text": "héllo wörld ✓ 日本 🚀", "nested": {"list": [1, 2.5, None, True]}}
    _, out = invoke_json(lambda_client, hello_fn, event)
    assert out["event"] == event


def test_concurrent_invokes_of_one_function_all_succeed(lambda_client, hello_fn):
    def one(i):
        return invoke_json(lambda_client, hello_fn, {"action": "sleep", "seconds": 0.5,
                                                     "marker": f"c{i}"})

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(4)))
    assert [out["event"]["marker"] for _, out in results] == ["c0", "c1", "c2", "c3"]
    assert all("FunctionError" not in resp for resp, _ in results)
    assert len({request_id(resp) for resp, _ in results}) == 4


@pytest.mark.parametrize(
    "form",
    [
        lambda n: n,
        function_arn,
        lambda n: f"{ACCOUNT}:function:{n}",
        lambda n: f"{n}:$LATEST",
    ],
    ids=["name", "full ARN", "partial ARN", "name:$LATEST"],
)
def test_invoke_accepts_every_name_form(lambda_client, hello_fn, form):
    resp, out = invoke_json(lambda_client, form(hello_fn), {"marker": "forms"})
    assert resp["StatusCode"] == 200
    assert out["function_name"] == hello_fn
    assert out["event"] == {"marker": "forms"}


def test_invoke_accepts_latest_as_qualifier(lambda_client, hello_fn):
    resp, out = invoke_json(lambda_client, hello_fn, Qualifier="$LATEST")
    assert resp["StatusCode"] == 200
    assert resp["ExecutedVersion"] == "$LATEST"
    assert out["function_name"] == hello_fn


def test_invoke_unhandled_error_sets_function_error(lambda_client, hello_fn):
    resp, out = invoke_json(lambda_client, hello_fn, {"action": "raise", "message": "kaboom"})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert out["errorMessage"] == "kaboom"
    assert out["errorType"] == "ValueError"
    assert isinstance(out["stackTrace"], list) and out["stackTrace"]
    assert any("app.py" in frame for frame in out["stackTrace"])


def test_invoke_log_tail_has_start_end_report_and_function_output(lambda_client, hello_fn):
    resp, _ = invoke_json(lambda_client, hello_fn, {"marker": "tail-marker"}, LogType="Tail")
    rid = request_id(resp)
    log = base64.b64decode(resp["LogResult"]).decode()
    assert f"START RequestId: {rid}" in log
    assert f"END RequestId: {rid}" in log
    assert f"REPORT RequestId: {rid}" in log
    assert "compat-log tail-marker" in log
    report = next(line for line in log.splitlines() if line.startswith("REPORT"))
    assert "Duration:" in report and "Memory Size: 128 MB" in report
    assert len(resp["LogResult"]) <= 4 * 1024 * 4 // 3 + 4, "the tail is at most 4 KB"


def test_invoke_log_tail_of_an_error_has_the_traceback(lambda_client, hello_fn):
    resp, _ = invoke_json(lambda_client, hello_fn, {"action": "raise"}, LogType="Tail")
    assert resp["FunctionError"] == "Unhandled"
    log = base64.b64decode(resp["LogResult"]).decode()
    assert "ValueError" in log
    assert f"END RequestId: {request_id(resp)}" in log


def test_invoke_log_tail_is_the_last_4_kb(lambda_client, hello_fn):
    resp, _ = invoke_json(lambda_client, hello_fn, {"action": "chatty", "lines": 200},
                          LogType="Tail")
    log = base64.b64decode(resp["LogResult"])
    assert len(log) <= 4096
    text = log.decode(errors="replace")
    assert "chatty line 00199" in text
    assert "chatty line 00000" not in text
    assert f"REPORT RequestId: {request_id(resp)}" in text


def test_invoke_without_log_type_returns_no_log_result(lambda_client, hello_fn):
    resp, _ = invoke_json(lambda_client, hello_fn)
    assert "LogResult" not in resp


def test_dry_run_returns_204_with_empty_payload(lambda_client, hello_fn):
    resp = lambda_client.invoke(FunctionName=hello_fn, InvocationType="DryRun")
    assert resp["StatusCode"] == 204
    assert resp["Payload"].read() == b""


def test_dry_run_of_a_missing_function_raises_resource_not_found(lambda_client):
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.invoke(FunctionName="compat-no-such-function", InvocationType="DryRun")


@pytest.fixture(scope="module")
def one_second_fn(lambda_client):
    return create_and_wait(lambda_client, python_zip(), Timeout=1)["FunctionName"]


def test_invoke_past_the_timeout_reports_sandbox_timedout(lambda_client, one_second_fn):
    resp, out = invoke_json(lambda_client, one_second_fn, {"action": "sleep", "seconds": 3})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert out["errorType"] == "Sandbox.Timedout"
    assert "timed out" in out["errorMessage"].lower()


def test_function_serves_again_after_a_timeout(lambda_client, one_second_fn):
    invoke_json(lambda_client, one_second_fn, {"action": "sleep", "seconds": 3})
    resp, out = invoke_json(lambda_client, one_second_fn, {"marker": "after-timeout"})
    assert "FunctionError" not in resp
    assert out["event"] == {"marker": "after-timeout"}


def test_function_that_exits_reports_runtime_exit_error(lambda_client, deploy, hello_fn):
    name = deploy(python_zip())["FunctionName"]
    resp, out = invoke_json(lambda_client, name, {"action": "exit"})
    assert resp["FunctionError"] == "Unhandled"
    assert out["errorType"] == "Runtime.ExitError"
    resp, out = invoke_json(lambda_client, name, {"marker": "after-exit"})
    assert "FunctionError" not in resp, out
    assert out["event"] == {"marker": "after-exit"}


def test_response_over_6_mb_reports_response_size_too_large(lambda_client, hello_fn):
    resp, out = invoke_json(lambda_client, hello_fn, {"action": "big", "bytes": 7 * 1024 * 1024})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert out["errorType"] == "Function.ResponseSizeTooLarge"
    resp, out = invoke_json(lambda_client, hello_fn, {"marker": "after-big"})
    assert "FunctionError" not in resp, out


@pytest.fixture(scope="module")
def node_fn(lambda_client):
    return create_and_wait(
        lambda_client, node_zip(), runtime=NODE_RUNTIME, handler=NODE_HANDLER
    )["FunctionName"]


def test_node_function_returns_result_and_context(lambda_client, node_fn):
    resp, out = invoke_json(lambda_client, node_fn, {"marker": "node"}, LogType="Tail")
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp
    assert out["runtime"] == "node"
    assert out["event"] == {"marker": "node"}
    assert out["functionName"] == node_fn
    assert out["memoryLimitInMB"] == "128"
    assert out["awsRequestId"] == request_id(resp)
    assert out["invokedFunctionArn"] == function_arn(node_fn)
    assert out["remainingMs"] > 0
    assert "compat-log node" in base64.b64decode(resp["LogResult"]).decode()


def test_node_unhandled_error_sets_function_error(lambda_client, node_fn):
    resp, out = invoke_json(lambda_client, node_fn, {"action": "raise", "message": "bad type"})
    assert resp["FunctionError"] == "Unhandled"
    assert out["errorType"] == "TypeError"
    assert out["errorMessage"] == "bad type"
    # Lambda's Node.js runtime names the frames `trace` (Python's says `stackTrace`).
    assert isinstance(out["trace"], list) and out["trace"]
    assert out["trace"][0].startswith("TypeError: bad type")
