"""Calling tern from inside a function (`TernNetwork.CallTern`, a tern extension): boto3
in the function invokes another function with the credentials tern hands the instance,
at the endpoint tern gives it (`AWS_ENDPOINT_URL_LAMBDA`), as a Lambda function calls
AWS with its execution role's credentials. The credentials are the instance's own: they
work for its namespace while it lives and are refused once it is gone."""

import json

import boto3
import botocore.exceptions
import pytest

from calls import client_config, create_and_wait, invoke_json, tern_api, unique_name
from conftest import sandboxed
from packages import build_zip

needs_sandbox = pytest.mark.skipif(
    not sandboxed(),
    reason="function networking needs the sandbox (the server runs --dev-unsandboxed)",
)

CALLER_APP = '''\
import json
import os

import boto3


def handler(event, context):
    client = boto3.client("lambda")
    resp = client.invoke(FunctionName=event["target"], Payload=json.dumps({"from": "caller"}))
    return {
        "status": resp["StatusCode"],
        "payload": json.loads(resp["Payload"].read()),
        "endpoint": os.environ.get("AWS_ENDPOINT_URL_LAMBDA"),
        "key": os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "token": os.environ.get("AWS_SESSION_TOKEN"),
    }
'''

ECHO_APP = '''\
def handler(event, context):
    return {"echo": event, "me": context.function_name}
'''


def session_client(server, creds, token=None):
    return boto3.client(
        "lambda",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=creds["key"],
        aws_secret_access_key=creds["secret"],
        aws_session_token=creds["token"] if token is None else token,
        config=client_config(retries={"max_attempts": 1}),
    )


def refused(call):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


@needs_sandbox
def test_boto3_in_a_function_calls_tern_with_the_instances_own_credentials(
        lambda_client, tern_server):
    target = create_and_wait(lambda_client, build_zip({"app.py": ECHO_APP}),
                             name=unique_name("target"))["FunctionName"]
    caller = create_and_wait(lambda_client, build_zip({"app.py": CALLER_APP}),
                             name=unique_name("caller"), Timeout=30)["FunctionName"]
    # boto3 does not send members its model lacks: the extension goes in a signed request.
    status, conf = tern_api(tern_server, "PUT", f"/2015-03-31/functions/{caller}/configuration",
                            {"TernNetwork": {"CallTern": True}})
    assert status == 200, conf
    assert conf["TernNetwork"] == {"Mode": "none", "CallTern": True, "Networks": []}
    # boto3 drops response members its model lacks; the raw answer carries it.
    status, conf = tern_api(tern_server, "GET", f"/2015-03-31/functions/{target}/configuration")
    assert conf["TernNetwork"] == {"Mode": "none", "CallTern": False, "Networks": []}

    resp, out = invoke_json(lambda_client, caller, {"target": target})
    assert "FunctionError" not in resp, out
    assert out["status"] == 200
    assert out["payload"] == {"echo": {"from": "caller"}, "me": target}
    assert out["endpoint"].startswith("http://100."), out["endpoint"]
    assert out["key"].startswith("ASIA") and out["token"], out

    # The same credentials work from outside while the instance lives (a working key of
    # the function's namespace)...
    outside = session_client(tern_server, out)
    for name in (caller, target):
        assert outside.get_function_configuration(FunctionName=name)["FunctionName"] == name
    # ...and only with their session token.
    code, http = refused(lambda: session_client(tern_server, out, token="x" * 64).list_functions())
    assert (code, http) == ("UnrecognizedClientException", 403)

    # An update retires the caller's instances: their credentials go with them.
    status, _ = tern_api(tern_server, "PUT", f"/2015-03-31/functions/{caller}/configuration",
                         {"Description": "retire the instance"})
    assert status == 200
    code, http = refused(lambda: outside.list_functions())
    assert (code, http) == ("UnrecognizedClientException", 403)

    # A new instance gets new credentials, and they work.
    resp, again = invoke_json(lambda_client, caller, {"target": target})
    assert again["payload"]["me"] == target
    assert again["key"] != out["key"]


def test_call_tern_takes_a_boolean(lambda_client, tern_server):
    name = create_and_wait(lambda_client, build_zip({"app.py": ECHO_APP}),
                           name=unique_name("ct"))["FunctionName"]
    status, body = tern_api(tern_server, "PUT", f"/2015-03-31/functions/{name}/configuration",
                            {"TernNetwork": {"CallTern": "yes"}})
    assert status == 400, body
    assert json.dumps(body).find("CallTern") >= 0 or json.dumps(body).find("TernNetwork") >= 0


@needs_sandbox
def test_boto3_attaches_a_function_to_a_private_network_with_vpc_config(lambda_client, tern_server):
    net = unique_name("net").lower().replace("_", "-")[:32]
    status, body = tern_api(tern_server, "POST", "/tern/v1/networks",
                            {"Name": net, "Cidrs": ["10.123.0.0/16"], "Allow": ["10.123.0.5:5432"]})
    assert status == 201, body
    vpc = {"SubnetIds": [net], "SecurityGroupIds": [net]}
    name = create_and_wait(lambda_client, build_zip({"app.py": ECHO_APP}),
                           name=unique_name("vpc"), VpcConfig=vpc)["FunctionName"]
    conf = lambda_client.get_function_configuration(FunctionName=name)
    assert conf["VpcConfig"]["SubnetIds"] == [net]
    assert conf["VpcConfig"]["SecurityGroupIds"] == [net]
    resp, out = invoke_json(lambda_client, name, {"x": 1})
    assert out["echo"] == {"x": 1}
    # Attached, the network cannot go; detached (Lambda's empty VpcConfig), it can.
    status, body = tern_api(tern_server, "DELETE", f"/tern/v1/networks/{net}")
    assert status == 409, body
    lambda_client.update_function_configuration(
        FunctionName=name, VpcConfig={"SubnetIds": [], "SecurityGroupIds": []})
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert "VpcConfig" not in lambda_client.get_function_configuration(FunctionName=name) or \
        lambda_client.get_function_configuration(FunctionName=name)["VpcConfig"]["SubnetIds"] == []
    status, body = tern_api(tern_server, "DELETE", f"/tern/v1/networks/{net}")
    assert status == 204, body
    # A network that does not exist is refused by name.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.update_function_configuration(FunctionName=name, VpcConfig=vpc)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert net in e.value.response["Error"]["Message"]
