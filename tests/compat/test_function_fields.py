"""Every CreateFunction/UpdateFunctionConfiguration member is either implemented or
refused by name: none is accepted and then dropped."""

import base64
import json

import pytest

from calls import ROLE, create_and_wait, invoke_json, unique_name
from packages import PYTHON_HANDLER, PYTHON_RUNTIME, python_zip

ENV_APP = """\
import os

def handler(event, context):
    print("app line")
    return {k: os.environ.get(k) for k in (
        "AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_LOG_GROUP_NAME")}
"""


def create(client, **extra):
    return client.create_function(FunctionName=unique_name("fields"), Runtime=PYTHON_RUNTIME,
                                  Role=ROLE, Handler=PYTHON_HANDLER,
                                  Code={"ZipFile": python_zip()}, **extra)


def test_role_is_returned_as_given(lambda_client, hello_fn):
    fn = lambda_client.get_function(FunctionName=hello_fn)
    assert fn["Configuration"]["Role"] == ROLE


def test_logging_config_json_round_trips_and_reaches_the_runtime(lambda_client):
    from packages import build_zip
    created = create_and_wait(
        lambda_client, build_zip({"app.py": ENV_APP}),
        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG",
                       "LogGroup": "/tern/custom-group"})
    name = created["FunctionName"]
    assert created["LoggingConfig"] == {"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG",
                                        "SystemLogLevel": "INFO",
                                        "LogGroup": "/tern/custom-group"}
    got = lambda_client.get_function_configuration(FunctionName=name)
    assert got["LoggingConfig"] == created["LoggingConfig"]

    resp, out = invoke_json(lambda_client, name, LogType="Tail")
    assert out == {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "DEBUG",
                   "AWS_LAMBDA_LOG_GROUP_NAME": "/tern/custom-group"}
    records = [json.loads(line) for line in base64.b64decode(resp["LogResult"]).decode().splitlines()
               if line.startswith('{"')]
    kinds = [r["type"] for r in records if "type" in r]
    assert kinds[:1] == ["platform.start"] and kinds[-2:] == ["platform.runtimeDone",
                                                               "platform.report"], records
    report = records[-1]["record"]
    assert report["requestId"] == resp["ResponseMetadata"]["RequestId"]
    assert report["status"] == "success"
    assert report["metrics"]["memorySizeMB"] == 128

    # System log level WARN drops the INFO platform records; back to Text clears the levels.
    lambda_client.update_function_configuration(
        FunctionName=name, LoggingConfig={"SystemLogLevel": "WARN"})
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    resp, _ = invoke_json(lambda_client, name, LogType="Tail")
    assert "platform." not in base64.b64decode(resp["LogResult"]).decode()
    updated = lambda_client.update_function_configuration(
        FunctionName=name, LoggingConfig={"LogFormat": "Text"})
    assert updated["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/tern/custom-group"}
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    resp, out = invoke_json(lambda_client, name, LogType="Tail")
    assert out["AWS_LAMBDA_LOG_FORMAT"] == "Text" and out["AWS_LAMBDA_LOG_LEVEL"] is None
    assert "START RequestId: " in base64.b64decode(resp["LogResult"]).decode()


def test_log_levels_without_json_format_are_refused(lambda_client):
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as err:
        create(lambda_client, LoggingConfig={"LogFormat": "Text", "ApplicationLogLevel": "INFO"})
    assert "LogFormat is JSON" in err.value.response["Error"]["Message"]


def test_tracing_config_is_stored_and_returned(lambda_client):
    created = create(lambda_client, TracingConfig={"Mode": "Active"})
    assert created["TracingConfig"] == {"Mode": "Active"}
    name = created["FunctionName"]
    assert lambda_client.get_function_configuration(FunctionName=name)["TracingConfig"] == {
        "Mode": "Active"}
    updated = lambda_client.update_function_configuration(
        FunctionName=name, TracingConfig={"Mode": "PassThrough"})
    assert updated["TracingConfig"] == {"Mode": "PassThrough"}


@pytest.mark.parametrize("member, value", [
    ("DeadLetterConfig", {"TargetArn": "arn:aws:sqs:us-east-1:000000000000:dlq"}),
    ("KMSKeyArn", "arn:aws:kms:us-east-1:000000000000:key/1234"),
    ("FileSystemConfigs", [{"Arn": "arn:aws:elasticfilesystem:us-east-1:000000000000:"
                                   "access-point/fsap-1", "LocalMountPath": "/mnt/efs"}]),
    ("ImageConfig", {"Command": ["app.handler"]}),
    ("CodeSigningConfigArn",
     "arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-0123456789abcdef0"),
])
def test_unimplemented_members_are_refused_by_name(lambda_client, member, value):
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as err:
        create(lambda_client, **{member: value})
    assert f"'{member}'" in err.value.response["Error"]["Message"]


@pytest.mark.parametrize("member, value", [
    ("DeadLetterConfig", {"TargetArn": "arn:aws:sqs:us-east-1:000000000000:dlq"}),
    ("KMSKeyArn", "arn:aws:kms:us-east-1:000000000000:key/1234"),
])
def test_update_refuses_unimplemented_members_by_name(lambda_client, hello_fn, member, value):
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as err:
        lambda_client.update_function_configuration(FunctionName=hello_fn, **{member: value})
    assert f"'{member}'" in err.value.response["Error"]["Message"]


def test_vpc_config_must_name_tern_networks(lambda_client, hello_fn):
    """VpcConfig is implemented onto tern's private networks: SubnetIds name networks and
    SecurityGroupIds their allow-lists; AWS subnet ids are not networks here."""
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as err:
        create(lambda_client, VpcConfig={"SubnetIds": ["subnet-0abc"],
                                          "SecurityGroupIds": ["subnet-0abc"]})
    assert "subnet-0abc" in err.value.response["Error"]["Message"]
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as err:
        lambda_client.update_function_configuration(
            FunctionName=hello_fn,
            VpcConfig={"SubnetIds": ["subnet-0abc"], "SecurityGroupIds": ["sg-1"]})
    assert "SecurityGroupIds" in err.value.response["Error"]["Message"]


SNAP_APP = """\
import random
import time

INIT_AT = time.time()

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"init_at": INIT_AT, "random": random.random()}
"""


def test_snap_start_round_trips_and_its_instances_serve(lambda_client):
    from packages import build_zip
    created = create_and_wait(lambda_client, build_zip({"app.py": SNAP_APP}),
                              SnapStart={"ApplyOn": "PublishedVersions"})
    name = created["FunctionName"]
    assert created["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    got = lambda_client.get_function_configuration(FunctionName=name)
    assert got["SnapStart"] == created["SnapStart"]
    # Several instances at once (so cold starts, from the template where the server has
    # one): each answers, with values of its own.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: invoke_json(lambda_client, name, {"sleep": 0.5})[1],
                                range(3)))
    assert all(isinstance(r["random"], float) for r in results), results
    assert len({r["random"] for r in results}) == 3, results
    off = lambda_client.update_function_configuration(FunctionName=name,
                                                     SnapStart={"ApplyOn": "None"})
    assert off["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}


def test_snap_start_takes_python_runtimes_and_lambdas_values_only(lambda_client):
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as err:
        lambda_client.create_function(
            FunctionName=unique_name("snap-node"), Runtime="nodejs20.x", Role=ROLE,
            Handler="index.handler", Code={"ZipFile": python_zip()},
            SnapStart={"ApplyOn": "PublishedVersions"})
    assert "nodejs20.x" in err.value.response["Error"]["Message"]
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        create(lambda_client, SnapStart={"ApplyOn": "Always"})
    plain = create(lambda_client)
    assert plain["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}


def test_members_left_empty_are_accepted(lambda_client):
    """What SAM, CDK and Terraform send for "none"."""
    created = create(lambda_client, VpcConfig={"SubnetIds": [], "SecurityGroupIds": []},
                     SnapStart={"ApplyOn": "None"}, Publish=False, KMSKeyArn="")
    assert created["State"] in ("Active", "Pending")
