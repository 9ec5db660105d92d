"""The boto3 calls the compat tests repeat: deploy a function and wait, invoke and decode."""

import json
import time
import urllib.error
import urllib.request
import uuid

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

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


def tern_api(server, method, path, body=None):
    """A call of tern's own API (`/tern/v1/...`), signed with SigV4 as boto3 signs:
    (status, parsed JSON body)."""
    data = b"" if body is None else json.dumps(body).encode()
    req = AWSRequest(method=method, url=server.endpoint + path, data=data,
                     headers={"content-type": "application/json"} if body is not None else {})
    SigV4Auth(Credentials(server.access_key, server.secret_key), "lambda", REGION).add_auth(req)
    raw = urllib.request.Request(req.url, data=data or None, method=method,
                                 headers=dict(req.headers.items()))
    try:
        with urllib.request.urlopen(raw, timeout=30) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, json.loads(text) if text else None


def wait_for_state(server, request_id, states, timeout_s=60):
    """Polls the status API until the invocation is in one of `states`; returns it."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        status, last = tern_api(server, "GET", f"/tern/v1/invocations/{request_id}")
        if status == 200 and last["state"] in states:
            return last
        time.sleep(0.1)
    raise AssertionError(f"invocation {request_id} not in {states} after {timeout_s}s: {last}")
