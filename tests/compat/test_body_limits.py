"""Request bodies up to Lambda's limits get through, and one over a limit gets Lambda's
413 naming the limit: 50 MB zips on CreateFunction/UpdateFunctionCode, 6 MB (6,291,456
bytes) Invoke payloads."""

import io
import json
import os
import zipfile

import pytest
from botocore.exceptions import ClientError

from calls import create_and_wait, invoke_json, unique_name

MIB = 1024 * 1024
SIZE_APP = """\
def handler(event, context):
    return {"size": len(event.get("data", ""))}
"""


def zip_with_noise(noise_bytes):
    """app.py plus `noise_bytes` of random (incompressible) data, stored as is."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("app.py", SIZE_APP)
        zf.writestr("noise.bin", os.urandom(noise_bytes))
    return buf.getvalue()


@pytest.fixture(scope="module")
def size_fn(lambda_client):
    return create_and_wait(lambda_client, zip_with_noise(1024))["FunctionName"]


@pytest.mark.parametrize("megabytes", [5, 20, 45])
def test_create_function_takes_large_zips(lambda_client, megabytes):
    package = zip_with_noise(megabytes * MIB)
    created = create_and_wait(lambda_client, package, name=unique_name(f"zip{megabytes}"))
    assert created["CodeSize"] == len(package)
    resp, out = invoke_json(lambda_client, created["FunctionName"], {"data": "abc"})
    assert "FunctionError" not in resp, out
    assert out == {"size": 3}
    lambda_client.delete_function(FunctionName=created["FunctionName"])


def test_update_function_code_takes_a_large_zip(lambda_client, size_fn):
    package = zip_with_noise(30 * MIB)
    updated = lambda_client.update_function_code(FunctionName=size_fn, ZipFile=package)
    assert updated["CodeSize"] == len(package)
    lambda_client.get_waiter("function_updated_v2").wait(
        FunctionName=size_fn, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    resp, out = invoke_json(lambda_client, size_fn, {"data": "abcd"})
    assert out == {"size": 4}


def test_zip_over_50_mb_is_request_entity_too_large(lambda_client):
    package = zip_with_noise(51 * MIB)
    with pytest.raises(ClientError) as err:
        lambda_client.create_function(FunctionName=unique_name("zip51"), Runtime="python3.11",
                                      Role="arn:aws:iam::000000000000:role/r",
                                      Handler="app.handler", Code={"ZipFile": package})
    resp = err.value.response
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert resp["Error"]["Code"] == "RequestEntityTooLargeException"
    # The limit on the body: a 50 MB zip in base64, as on Lambda.
    assert resp["Error"]["Message"] == (
        "Request must be smaller than 69905067 bytes for the CreateFunction operation")


def test_invoke_takes_a_5_9_mib_payload(lambda_client, size_fn):
    data = "x" * int(5.9 * MIB)
    payload = json.dumps({"data": data}).encode()
    assert len(payload) < 6 * MIB
    resp = lambda_client.invoke(FunctionName=size_fn, Payload=payload)
    out = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, out
    assert out == {"size": len(data)}


def test_invoke_over_6_mb_is_request_too_large(lambda_client, size_fn):
    payload = json.dumps({"data": "x" * int(6.1 * MIB)}).encode()
    with pytest.raises(lambda_client.exceptions.RequestTooLargeException) as err:
        lambda_client.invoke(FunctionName=size_fn, Payload=payload)
    resp = err.value.response
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert str(6 * MIB) in resp["Error"]["Message"]
    # The server still serves the function afterwards.
    resp, out = invoke_json(lambda_client, size_fn, {"data": "ok"})
    assert out == {"size": 2}
