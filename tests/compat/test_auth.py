"""SigV4 with the keys tern writes to <data-dir>/credentials, as boto3 finds them."""

import os
import re
import stat
import subprocess
import sys

import boto3
import botocore
import pytest
from botocore.exceptions import ClientError

from calls import client_config, invoke_json


def test_credentials_file_is_private_to_its_owner(tern_server):
    mode = stat.S_IMODE(tern_server.credentials_file.stat().st_mode)
    assert mode == 0o600, oct(mode)


def test_client_from_shared_credentials_file_and_profile_tern(
    tern_server, hello_fn, monkeypatch
):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tern_server.credentials_file))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tern_server.config_file))

    session = boto3.session.Session(profile_name="tern")
    assert session.region_name == "us-east-1", "region comes from the server's config file"
    client = session.client("lambda", endpoint_url=tern_server.endpoint, config=client_config())
    names = [f["FunctionName"] for page in client.get_paginator("list_functions").paginate()
             for f in page["Functions"]]
    assert hello_fn in names
    resp, out = invoke_json(client, hello_fn, {"marker": "profile"})
    assert resp["StatusCode"] == 200
    assert out["event"] == {"marker": "profile"}


@pytest.mark.parametrize("call", ["list_functions", "invoke"])
def test_wrong_secret_is_rejected_with_403(make_client, tern_server, hello_fn, call):
    client = make_client(secret_key=tern_server.secret_key[::-1] + "x")
    with pytest.raises(ClientError) as exc:
        if call == "invoke":
            client.invoke(FunctionName=hello_fn, Payload=b"{}")
        else:
            client.list_functions()
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert exc.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_unknown_access_key_is_rejected_with_403(make_client):
    client = make_client(access_key="AKIAUNKNOWNKEY000000")
    with pytest.raises(ClientError) as exc:
        client.list_functions()
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert exc.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_unsigned_request_is_rejected_with_403(make_client):
    client = make_client(signature_version=botocore.UNSIGNED)
    with pytest.raises(ClientError) as exc:
        client.list_functions()
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize("region, service", [("eu-west-1", "lambda"), ("us-east-1", "s3")])
def test_request_signed_for_another_scope_is_refused(tern_server, hello_fn, region, service):
    """A signature is only good for this server's region and the service `lambda`."""
    client = boto3.client(
        "lambda",
        endpoint_url=tern_server.endpoint,
        region_name=region,
        aws_access_key_id=tern_server.access_key,
        aws_secret_access_key=tern_server.secret_key,
        config=client_config(),
    )
    # botocore signs for the client's service; a signature for another one is what a
    # request captured from another AWS service would carry.
    client._request_signer._signing_name = service
    with pytest.raises(ClientError) as exc:
        client.get_function_configuration(FunctionName=hello_fn)
    err = exc.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert err["Error"]["Code"] == "InvalidSignatureException"
    assert "us-east-1/lambda" in err["Error"]["Message"]


def test_the_boto3_line_printed_on_first_start_works_as_printed(tern_server, hello_fn, tmp_path):
    # Exactly what a new user copies: no region in the environment or in ~/.aws.
    hint = re.search(
        r"boto3:\s+(boto3\.Session\(.*\)\.client\(.*\))\s+"
        r"\(with AWS_SHARED_CREDENTIALS_FILE=(\S+)\)",
        tern_server.stderr_path.read_text(),
    )
    assert hint, f"no boto3 line in the server's first-start output:\n{tern_server.stderr_tail()}"
    expression, credentials = hint.groups()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_SHARED_CREDENTIALS_FILE": credentials,
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
    }
    script = (
        "import boto3\n"
        f"lam = {expression}\n"
        "print(' '.join(f['FunctionName'] for f in lam.list_functions()['Functions']))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert hello_fn in out.stdout.split()
