"""GetFunction's `Code.Location` is a presigned URL on tern's own listener, as Lambda's is
on S3: plain HTTP (no SigV4) downloads the exact zip for 10 minutes; an altered or
expired URL is refused with 403."""

import hashlib
import hmac
import os
import time
import urllib.error
import urllib.parse
import urllib.request

import boto3
import pytest

from calls import REGION, client_config, create_and_wait
from packages import PYTHON_APP, build_zip

URL_SIGNING_KEY_FILE = "url-signing.key"


def download(url):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.headers, resp.read()


def refusal(url):
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        download(url)
    return excinfo.value.code, excinfo.value.read().decode()


def with_query(url, **params):
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(params)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


@pytest.fixture(scope="module")
def uploaded(lambda_client):
    """A function whose zip is incompressible and many read chunks long, and its
    GetFunction answer."""
    zip_bytes = build_zip({
        "app.py": PYTHON_APP.format(version="v1"),
        "blob.bin": os.urandom(1 << 20),
    })
    name = create_and_wait(lambda_client, zip_bytes)["FunctionName"]
    return zip_bytes, lambda_client.get_function(FunctionName=name)


def test_code_location_downloads_the_uploaded_zip_with_plain_http(tern_server, uploaded):
    zip_bytes, got = uploaded
    assert got["Code"]["RepositoryType"] == "S3"
    location = got["Code"]["Location"]
    assert location.startswith(f"{tern_server.endpoint}/tern/v1/code/"), location
    status, headers, body = download(location)
    assert status == 200
    assert headers["Content-Type"] == "application/zip"
    assert int(headers["Content-Length"]) == len(zip_bytes)
    assert body == zip_bytes


def test_code_location_is_valid_for_ten_minutes(uploaded):
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(uploaded[1]["Code"]["Location"]).query))
    remaining = int(query["expires"]) - time.time()
    assert 590 <= remaining <= 601, remaining


def test_code_location_names_the_host_the_client_used(tern_server, uploaded):
    port = urllib.parse.urlsplit(tern_server.endpoint).port
    client = boto3.client(
        "lambda",
        endpoint_url=f"http://localhost:{port}",
        region_name=REGION,
        aws_access_key_id=tern_server.access_key,
        aws_secret_access_key=tern_server.secret_key,
        config=client_config(),
    )
    name = uploaded[1]["Configuration"]["FunctionName"]
    location = client.get_function(FunctionName=name)["Code"]["Location"]
    assert location.startswith(f"http://localhost:{port}/tern/v1/code/"), location
    assert download(location)[2] == uploaded[0]


def test_a_tampered_signature_is_refused(uploaded):
    location = uploaded[1]["Code"]["Location"]
    signature = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))["signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    status, body = refusal(with_query(location, signature=flipped))
    assert status == 403
    assert "signature does not match" in body, body


def test_a_later_expiry_without_a_new_signature_is_refused(uploaded):
    location = uploaded[1]["Code"]["Location"]
    status, body = refusal(with_query(location, expires=str(int(time.time()) + 86400)))
    assert status == 403
    assert "signature does not match" in body, body


def test_an_expired_url_is_refused_even_with_a_valid_signature(tern_server, uploaded):
    # Sign a URL that expired a second ago with the server's own key, as the server
    # would have signed it 10 minutes earlier.
    location = uploaded[1]["Code"]["Location"]
    path = urllib.parse.urlsplit(location).path
    key = bytes.fromhex((tern_server.data_dir / URL_SIGNING_KEY_FILE).read_text().strip())
    expires = int(time.time()) - 1
    signature = hmac.new(key, f"GET\n{path}\n{expires}".encode(), hashlib.sha256).hexdigest()
    status, body = refusal(with_query(location, expires=str(expires), signature=signature))
    assert status == 403
    assert "expired" in body, body


def test_a_url_without_a_signature_is_refused(tern_server, uploaded):
    path = urllib.parse.urlsplit(uploaded[1]["Code"]["Location"]).path
    status, body = refusal(f"{tern_server.endpoint}{path}")
    assert status == 403
    assert "GetFunction" in body, body


def test_the_signing_key_file_is_private(tern_server):
    mode = (tern_server.data_dir / URL_SIGNING_KEY_FILE).stat().st_mode & 0o777
    assert mode == 0o600, oct(mode)
