"""Versions and aliases with unmodified boto3: publishing, invoking each version,
weighted aliases, rollback, RevisionId preconditions and the deletes Lambda refuses."""

import json
import math
import time

import botocore.exceptions
import pytest

from calls import ACCOUNT, REGION, function_arn, invoke_json, tern_api, unique_name, wait_for_state
from packages import build_zip

APP = """\
import os

def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("failing in " + context.function_version)
    return {
        "code": "%s",
        "env_version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
        "context_version": context.function_version,
        "invoked_arn": context.invoked_function_arn,
    }
"""


def app_zip(code):
    return build_zip({"app.py": APP % code})


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def executed(client, name, qualifier=None):
    extra = {"Qualifier": qualifier} if qualifier else {}
    resp, body = invoke_json(client, name, **extra)
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    return resp["ExecutedVersion"], body


@pytest.fixture
def two_versions(lambda_client, deploy):
    """A function with version 1 (code "v1") and version 2 (code "v2", also $LATEST)."""
    name = deploy(app_zip("v1"))["FunctionName"]
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "1"
    lambda_client.update_function_code(FunctionName=name, ZipFile=app_zip("v2"))
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "2"
    return name


def test_each_published_version_runs_its_own_code(lambda_client, two_versions):
    name = two_versions
    lambda_client.update_function_code(FunctionName=name, ZipFile=app_zip("v3"))
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    # Alternating keeps every version's instances warm side by side.
    for _ in range(2):
        for qualifier, code in (("1", "v1"), ("2", "v2"), ("$LATEST", "v3"), (None, "v3")):
            version, body = executed(lambda_client, name, qualifier)
            want = qualifier if qualifier not in (None, "$LATEST") else "$LATEST"
            assert (version, body["code"]) == (want, code)
            assert body["env_version"] == body["context_version"] == want
            suffix = f":{qualifier}" if qualifier else ""
            assert body["invoked_arn"] == function_arn(name) + suffix


def test_publish_freezes_the_configuration_and_numbers_versions(lambda_client, deploy):
    name = deploy(app_zip("v1"), Description="first", Timeout=5)["FunctionName"]
    v1 = lambda_client.publish_version(FunctionName=name, Description="release one")
    assert (v1["Version"], v1["Description"], v1["Timeout"]) == ("1", "release one", 5)
    assert v1["FunctionArn"] == function_arn(name) + ":1"
    # Nothing changed: Lambda returns the newest version instead of a new one.
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "1"
    lambda_client.update_function_configuration(FunctionName=name, Timeout=7)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "2"
    frozen = lambda_client.get_function_configuration(FunctionName=name, Qualifier="1")
    assert (frozen["Version"], frozen["Timeout"]) == ("1", 5)
    latest = lambda_client.get_function(FunctionName=name)["Configuration"]
    assert (latest["Version"], latest["Timeout"]) == ("$LATEST", 7)
    assert lambda_client.get_function(FunctionName=f"{name}:2")["Configuration"]["Timeout"] == 7


def test_publish_checks_code_sha256_and_revision_id(lambda_client, deploy):
    created = deploy(app_zip("v1"))
    name = created["FunctionName"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.publish_version(FunctionName=name, CodeSha256="bm90IHRoZSBoYXNo")
    assert error_code(e) == "PreconditionFailedException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.publish_version(FunctionName=name, RevisionId="stale-revision")
    assert error_code(e) == "PreconditionFailedException"
    ok = lambda_client.publish_version(FunctionName=name, CodeSha256=created["CodeSha256"],
                                       RevisionId=created["RevisionId"])
    assert ok["Version"] == "1"


def test_publish_on_create_and_on_code_update(lambda_client, deploy):
    created = deploy(app_zip("v1"), Publish=True)
    name = created["FunctionName"]
    assert created["Version"] == "1"
    updated = lambda_client.update_function_code(FunctionName=name, ZipFile=app_zip("v2"),
                                                 Publish=True)
    assert updated["Version"] == "2"
    assert executed(lambda_client, name, "2")[1]["code"] == "v2"
    assert executed(lambda_client, name, "1")[1]["code"] == "v1"


def test_list_versions_pages_from_latest(lambda_client, two_versions):
    name = two_versions
    seen, marker = [], None
    while True:
        page = lambda_client.list_versions_by_function(
            FunctionName=name, MaxItems=1, **({"Marker": marker} if marker else {}))
        assert len(page["Versions"]) <= 1
        seen += [v["Version"] for v in page["Versions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == ["$LATEST", "1", "2"]
    whole = lambda_client.list_versions_by_function(FunctionName=name)
    assert [v["Version"] for v in whole["Versions"]] == ["$LATEST", "1", "2"]
    assert "NextMarker" not in whole


def test_a_missing_version_is_not_found(lambda_client, two_versions):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.invoke(FunctionName=two_versions, Qualifier="9")
    assert error_code(e) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.get_function_configuration(FunctionName=two_versions, Qualifier="nope")
    assert error_code(e) == "ResourceNotFoundException"


def test_an_alias_splits_traffic_by_its_weight(lambda_client, two_versions):
    name = two_versions
    alias = lambda_client.create_alias(
        FunctionName=name, Name="live", FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    assert alias["AliasArn"] == function_arn(name) + ":live"
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.1}
    n, p = 1000, 0.1
    counts = {"1": 0, "2": 0}
    for _ in range(n):
        version, body = executed(lambda_client, name, "live")
        assert body["code"] == {"1": "v1", "2": "v2"}[version]
        assert body["invoked_arn"] == function_arn(name) + ":live"
        counts[version] += 1
    # Binomial(1000, 0.1): mean 100, sd 9.5. Five sd either side fails a correct
    # router about once in 3.5 million runs, and a 5% or 15% router almost always.
    sd = math.sqrt(n * p * (1 - p))
    assert abs(counts["2"] - n * p) <= 5 * sd, counts


def test_update_alias_and_rollback(lambda_client, tern_server, two_versions):
    name = two_versions
    created = lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    moved = lambda_client.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                                       RevisionId=created["RevisionId"])
    assert moved["FunctionVersion"] == "2" and moved["RevisionId"] != created["RevisionId"]
    assert executed(lambda_client, name, "live") [0] == "2"
    # Rollback with the Lambda API is one UpdateAlias...
    back = lambda_client.update_alias(FunctionName=name, Name="live", FunctionVersion="1")
    assert executed(lambda_client, name, "live")[0] == "1"
    # ...and tern's rollback returns to the version the alias pointed at before.
    lambda_client.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                               RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}})
    status, rolled = tern_api(tern_server, "POST",
                              f"/tern/v1/functions/{name}/aliases/live/rollback")
    assert status == 200, rolled
    assert rolled["FunctionVersion"] == "1" and "RoutingConfig" not in rolled
    got = lambda_client.get_alias(FunctionName=name, Name="live")
    assert got["FunctionVersion"] == "1" and got["RevisionId"] == rolled["RevisionId"]
    assert back["RevisionId"] != got["RevisionId"]
    for _ in range(5):
        assert executed(lambda_client, name, "live")[0] == "1"


def test_a_stale_revision_id_is_412(lambda_client, two_versions):
    name = two_versions
    created = lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lambda_client.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                               RevisionId=created["RevisionId"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.update_alias(FunctionName=name, Name="live", FunctionVersion="1",
                                   RevisionId=created["RevisionId"])
    assert error_code(e) == "PreconditionFailedException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert lambda_client.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "2"


def test_a_version_an_alias_points_at_cannot_be_deleted(lambda_client, two_versions):
    name = two_versions
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="2",
                               RoutingConfig={"AdditionalVersionWeights": {"1": 0.2}})
    for version in ("1", "2"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            lambda_client.delete_function(FunctionName=name, Qualifier=version)
        assert error_code(e) == "ResourceConflictException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    lambda_client.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                               RoutingConfig={"AdditionalVersionWeights": {}})
    lambda_client.delete_function(FunctionName=name, Qualifier="1")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.invoke(FunctionName=name, Qualifier="1")
    assert error_code(e) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.delete_function(FunctionName=name, Qualifier="$LATEST")
    assert error_code(e) == "InvalidParameterValueException"
    lambda_client.delete_alias(FunctionName=name, Name="live")
    lambda_client.delete_function(FunctionName=name, Qualifier="2")
    versions = lambda_client.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST"]
    # Numbers are not reused.
    lambda_client.update_function_configuration(FunctionName=name, Timeout=9)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "3"


def test_bad_alias_input_gets_lambda_errors(make_client, lambda_client, two_versions):
    name = two_versions
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="7")
    assert error_code(e) == "ResourceNotFoundException"
    unchecked = make_client(parameter_validation=False)
    for routing in ({"2": 1.5}, {"2": -0.5}, {"1": 0.5}, {"2": 0.1, "3": 0.1}):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            unchecked.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                                   RoutingConfig={"AdditionalVersionWeights": routing})
        assert error_code(e) == "InvalidParameterValueException", routing
    with pytest.raises(botocore.exceptions.ClientError) as e:
        unchecked.create_alias(FunctionName=name, Name="123", FunctionVersion="1")
    assert error_code(e) == "InvalidParameterValueException"
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert error_code(e) == "ResourceConflictException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.get_alias(FunctionName=name, Name="missing")
    assert error_code(e) == "ResourceNotFoundException"
    aliases = lambda_client.list_aliases(FunctionName=name)["Aliases"]
    assert [a["Name"] for a in aliases] == ["live"]
    assert lambda_client.list_aliases(FunctionName=name, FunctionVersion="2")["Aliases"] == []


def test_an_event_to_an_alias_runs_its_version(lambda_client, tern_server, two_versions):
    name = two_versions
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    resp = lambda_client.invoke(FunctionName=name, Qualifier="live", InvocationType="Event",
                                Payload=b"{}")
    assert resp["StatusCode"] == 202
    rid = resp["ResponseMetadata"]["RequestId"]
    done = wait_for_state(tern_server, rid, {"succeeded", "failed"})
    assert done["state"] == "succeeded", done
    assert done["response"]["code"] == "v1"
    assert done["response"]["invoked_arn"] == function_arn(name) + ":live"


def test_provisioned_concurrency_on_an_alias_follows_its_version(lambda_client, two_versions):
    name = two_versions
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1)
    lambda_client.get_waiter("published_version_active").wait(FunctionName=name, Qualifier="1")
    configs = lambda_client.list_provisioned_concurrency_configs(FunctionName=name)
    arns = [c["FunctionArn"] for c in configs["ProvisionedConcurrencyConfigs"]]
    assert arns == [function_arn(name) + ":live"]
    got = lambda_client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    assert got["RequestedProvisionedConcurrentExecutions"] == 1
    lambda_client.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert executed(lambda_client, name, "live")[1]["code"] == "v2"
    lambda_client.delete_alias(FunctionName=name, Name="live")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    assert error_code(e) == "ResourceNotFoundException"


def test_deleting_the_function_takes_its_versions_and_aliases(lambda_client, deploy):
    name = deploy(app_zip("v1"), Publish=True)["FunctionName"]
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lambda_client.delete_function(FunctionName=name)
    deploy(app_zip("v2"), name=name)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.get_alias(FunctionName=name, Name="live")
    assert error_code(e) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.invoke(FunctionName=name, Qualifier="1")
    assert error_code(e) == "ResourceNotFoundException"
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "1"
    assert executed(lambda_client, name, "1")[1]["code"] == "v2"


def test_event_invoke_config_and_destinations_per_alias(lambda_client, tern_server, deploy,
                                                        two_versions):
    name = two_versions
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    sink = deploy(app_zip("sink"), Publish=True)["FunctionName"]
    queue = unique_name("failures")
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"
    got = lambda_client.put_function_event_invoke_config(
        FunctionName=name, Qualifier="live", MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": queue_arn},
                           "OnSuccess": {"Destination": function_arn(sink) + ":1"}})
    assert got["FunctionArn"] == function_arn(name) + ":live"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.get_function_event_invoke_config(FunctionName=name, Qualifier="1")
    assert error_code(e) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.put_function_event_invoke_config(
            FunctionName=name, Qualifier="live",
            DestinationConfig={"OnSuccess": {"Destination": function_arn(sink) + ":7"}})
    assert error_code(e) == "InvalidParameterValueException"
    resp = lambda_client.invoke(FunctionName=name, Qualifier="live", InvocationType="Event",
                                Payload=json.dumps({"fail": True}).encode())
    rid = resp["ResponseMetadata"]["RequestId"]
    # No retries under the alias's config: failed after one attempt, recorded in the queue.
    assert wait_for_state(tern_server, rid, {"failed"})["state"] == "failed"
    end = time.monotonic() + 30
    while time.monotonic() < end:
        status, page = tern_api(tern_server, "GET", f"/tern/v1/queues/{queue}/messages")
        assert status == 200, page
        if page["messages"]:
            break
        time.sleep(0.1)
    record = page["messages"][0]["body"]
    assert record["requestContext"]["functionArn"] == function_arn(name) + ":live"
    assert record["responsePayload"]["errorMessage"] == "failing in 1"


def test_a_function_url_on_an_alias_follows_the_alias(lambda_client, two_versions):
    import urllib.error
    import urllib.request

    name = two_versions
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    url = lambda_client.create_function_url_config(
        FunctionName=name, Qualifier="live", AuthType="NONE")["FunctionUrl"]
    assert lambda_client.get_function_url_config(
        FunctionName=name, Qualifier="live")["FunctionArn"] == function_arn(name) + ":live"

    def call():
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, None

    status, body = call()
    assert status == 200 and body["code"] == "v1", body
    assert body["invoked_arn"] == function_arn(name) + ":live"
    lambda_client.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    status, body = call()
    assert status == 200 and body["code"] == "v2", body
    lambda_client.delete_alias(FunctionName=name, Name="live")
    assert call()[0] == 404
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.get_function_url_config(FunctionName=name, Qualifier="live")
    assert error_code(e) == "ResourceNotFoundException"


def test_reading_through_an_alias_names_the_alias_and_its_version(lambda_client, two_versions):
    name = two_versions
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    # Lambda: FunctionArn as read (with the alias), Version the alias's version.
    for config in (
        lambda_client.get_function(FunctionName=name, Qualifier="live")["Configuration"],
        lambda_client.get_function_configuration(FunctionName=name, Qualifier="live"),
        lambda_client.get_function_configuration(FunctionName=f"{name}:live"),
    ):
        assert (config["FunctionArn"], config["Version"]) == (function_arn(name) + ":live", "1")
    config = lambda_client.get_function_configuration(FunctionName=name, Qualifier="2")
    assert (config["FunctionArn"], config["Version"]) == (function_arn(name) + ":2", "2")


def test_waiters_on_versions_and_aliases(lambda_client, two_versions):
    name = two_versions
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    fast = {"Delay": 1, "MaxAttempts": 5}
    lambda_client.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier="1", WaiterConfig=fast)
    for qualifier in ("1", "live", "$LATEST"):
        lambda_client.get_waiter("function_active_v2").wait(
            FunctionName=name, Qualifier=qualifier, WaiterConfig=fast)
        lambda_client.get_waiter("function_exists").wait(
            FunctionName=name, Qualifier=qualifier, WaiterConfig=fast)


def test_list_functions_with_all_versions_pages_through_every_version(lambda_client, deploy):
    first = deploy(app_zip("a1"))["FunctionName"]
    second = deploy(app_zip("b1"))["FunctionName"]
    for name, codes in ((first, ("a2", "a3")), (second, ("b2",))):
        lambda_client.publish_version(FunctionName=name)
        for code in codes:
            lambda_client.update_function_code(FunctionName=name, ZipFile=app_zip(code))
            lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
            lambda_client.publish_version(FunctionName=name)
    ours = (first, second)

    def listed(**kwargs):
        pages = lambda_client.get_paginator("list_functions").paginate(**kwargs)
        seen = []
        for page in pages:
            assert len(page["Functions"]) <= kwargs.get("PaginationConfig", {}).get("PageSize", 50)
            seen += [(f["FunctionName"], f["Version"], f["FunctionArn"])
                     for f in page["Functions"] if f["FunctionName"] in ours]
        return seen

    want = []
    for name, count in sorted(((first, 3), (second, 2))):
        want.append((name, "$LATEST", function_arn(name)))
        want += [(name, str(n), f"{function_arn(name)}:{n}") for n in range(1, count + 1)]
    # Pages of 2 end in the middle of a function's versions and resume there.
    for page_size in (1, 2, 3, 50):
        assert listed(FunctionVersion="ALL", PaginationConfig={"PageSize": page_size}) == want
    assert listed() == [w for w in want if w[1] == "$LATEST"]

    with pytest.raises(botocore.exceptions.ClientError) as bad:
        lambda_client.list_functions(FunctionVersion="LATEST")
    assert error_code(bad) == "InvalidParameterValueException"
    assert "functionVersion" in bad.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as edge:
        lambda_client.list_functions(MasterRegion="us-east-1", FunctionVersion="ALL")
    assert error_code(edge) == "InvalidParameterValueException"
    assert "MasterRegion" in edge.value.response["Error"]["Message"]


def test_calls_on_the_function_itself_refuse_a_version_or_alias(lambda_client, two_versions):
    name = two_versions
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    arn = function_arn(name)
    refused = [
        lambda: lambda_client.update_function_code(FunctionName=f"{name}:1", ZipFile=app_zip("x")),
        lambda: lambda_client.update_function_configuration(FunctionName=f"{name}:live", Timeout=9),
        lambda: lambda_client.tag_resource(Resource=f"{arn}:1", Tags={"team": "a"}),
        lambda: lambda_client.tag_resource(Resource=f"{arn}:live", Tags={"team": "a"}),
        lambda: lambda_client.put_function_concurrency(FunctionName=f"{name}:1",
                                                       ReservedConcurrentExecutions=1),
        lambda: lambda_client.get_function_concurrency(FunctionName=f"{name}:1"),
        lambda: lambda_client.delete_function_concurrency(FunctionName=f"{name}:live"),
    ]
    for call in refused:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e) == "InvalidParameterValueException", e.value.response


def test_publish_to_names_what_is_unsupported(lambda_client, two_versions):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.publish_version(FunctionName=two_versions, PublishTo="LATEST_PUBLISHED")
    assert error_code(e) == "InvalidParameterValueException"
    assert "versions are not supported" not in e.value.response["Error"]["Message"]


def test_concurrent_publishes_of_one_configuration_make_one_version(lambda_client, deploy):
    import threading

    name = deploy(app_zip("v1"))["FunctionName"]
    for round_ in range(10):
        lambda_client.update_function_configuration(FunctionName=name, Timeout=3 + round_)
        start = threading.Barrier(8)
        versions = []

        def publish():
            start.wait()
            versions.append(lambda_client.publish_version(FunctionName=name)["Version"])

        threads = [threading.Thread(target=publish) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert versions == [str(round_ + 1)] * 8, f"round {round_}"


def test_aliases_per_function_are_bounded_with_a_lambda_error(lambda_client, deploy):
    from concurrent.futures import ThreadPoolExecutor

    name = deploy(app_zip("v1"))["FunctionName"]
    limit = 1000  # tern_core::limits::ALIASES_PER_FUNCTION
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: lambda_client.create_alias(
            FunctionName=name, Name=f"a{n}", FunctionVersion="$LATEST"), range(limit)))
    with pytest.raises(lambda_client.exceptions.CodeStorageExceededException) as e:
        lambda_client.create_alias(FunctionName=name, Name="one-more", FunctionVersion="$LATEST")
    assert "1000 aliases" in e.value.response["Error"]["Message"]
    lambda_client.delete_alias(FunctionName=name, Name="a0")
    lambda_client.create_alias(FunctionName=name, Name="one-more", FunctionVersion="$LATEST")


def test_publish_without_preconditions_racing_updates_publishes(lambda_client, deploy):
    """PublishVersion without RevisionId publishes whatever $LATEST is; an update landing
    between its read and its write must not turn into a 412 the caller never asked for."""
    import threading

    name = deploy(app_zip("v1"))["FunctionName"]
    stop = threading.Event()

    def update():
        timeout = 3
        while not stop.is_set():
            timeout = 3 + (timeout - 2) % 50
            lambda_client.update_function_configuration(FunctionName=name, Timeout=timeout)

    updater = threading.Thread(target=update)
    updater.start()
    try:
        for _ in range(60):
            version = lambda_client.publish_version(FunctionName=name)
            assert version["Version"].isdigit()
    finally:
        stop.set()
        updater.join()


def test_list_functions_with_all_versions_returns_at_most_50_a_page(lambda_client, deploy):
    name = deploy(app_zip("v1"))["FunctionName"]
    for timeout in range(4, 4 + 55):
        lambda_client.update_function_configuration(FunctionName=name, Timeout=timeout)
        lambda_client.publish_version(FunctionName=name)
    page = lambda_client.list_functions(FunctionVersion="ALL", MaxItems=1000)
    assert len(page["Functions"]) == 50 and page["NextMarker"]
