"""The boto3 calls the compat tests repeat: deploy a function and wait, invoke and decode."""

import json
import uuid

from botocore.config import Config

from packages import PYTHON_HANDLER, PYTHON_RUNTIME

ACCOUNT = "000000000000"
REGION = "us-east-1"
# Lambda requires a role; tern stores it and does not assume it.
ROLE = f"arn:aws:iam::{ACCOUNT}:role/compat-role"
# The model's waiters poll every second for up to 300 attempts; a healthy server needs a few.
WAIT = {"Delay": 1, "MaxAttempts": 30}


def client_config(**overrides):
    """botocore settings for every client; `overrides` are Config keyword arguments."""
    # One attempt: the suite must see each response as the server sent it, not a retry's.
    settings = {"retries": {"total_max_attempts": 1}, "connect_timeout": 5, "read_timeout": 60}
    settings.update(overrides)
    return Config(**settings)


def unique_name(prefix):
    return f"compat-{prefix}-{uuid.uuid4().hex[:8]}"


def function_arn(name):
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def create_and_wait(client, zip_bytes, *, name=None, runtime=PYTHON_RUNTIME,
                    handler=PYTHON_HANDLER, **extra):
    """CreateFunction, then the `function_active_v2` waiter. Returns the create response."""
    name = name or unique_name("fn")
    created = client.create_function(
        FunctionName=name,
        Runtime=runtime,
        Role=ROLE,
        Handler=handler,
        Code={"ZipFile": zip_bytes},
        **extra,
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return created


def invoke_json(client, function_name, event=None, **extra):
    """Invoke with `event` as JSON; returns (response, decoded payload or None if empty)."""
    resp = client.invoke(
        FunctionName=function_name,
        Payload=json.dumps({} if event is None else event).encode(),
        **extra,
    )
    body = resp["Payload"].read()
    return resp, (json.loads(body) if body else None)


def request_id(resp):
    """The x-amzn-RequestId header botocore parsed into the response metadata."""
    return resp["ResponseMetadata"]["RequestId"]
