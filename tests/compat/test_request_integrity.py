"""A captured signed request cannot be replayed with other content: the body's hash is
always checked, every `x-amz-*` header must be signed, and query-string signatures are
refused. Requests are signed with botocore's own SigV4 signer and sent raw."""

import base64
import hashlib
import json
import urllib.error
import urllib.request
from urllib.parse import urlparse

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from calls import REGION, create_and_wait, invoke_json, unique_name
from packages import python_zip


def signed(server, method, path, body=b"", headers=None, sign_body_hash=False):
    """A request signed by botocore for `lambda` in the server's region: (url, headers)."""
    url = server.endpoint + path
    headers = dict(headers or {})
    if sign_body_hash:
        headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    req = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(Credentials(server.access_key, server.secret_key), "lambda", REGION).add_auth(req)
    return url, dict(req.headers.items())


def send(method, url, headers, body=b""):
    """(status, error type, parsed body) of a raw request."""
    req = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return r.status, None, json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        data = e.read()
        return e.code, e.headers.get("x-amzn-ErrorType"), json.loads(data) if data else None


def code_body(version):
    return json.dumps({"ZipFile": base64.b64encode(python_zip(version)).decode()}).encode()


@pytest.fixture
def victim(lambda_client):
    name = create_and_wait(lambda_client, python_zip("original"), name=unique_name("victim"))
    return name["FunctionName"]


def running_version(lambda_client, name):
    _, out = invoke_json(lambda_client, name)
    return out["version"]


def test_replayed_code_update_with_another_body_is_refused(tern_server, lambda_client, victim):
    path = f"/2015-03-31/functions/{victim}/code"
    url, headers = signed(tern_server, "PUT", path, code_body("original"))
    # The red team's replay: the captured headers, another zip, and the original body's
    # hash declared in an (unsigned) x-amz-content-sha256 header.
    forged = dict(headers, **{"X-Amz-Content-SHA256":
                              hashlib.sha256(code_body("original")).hexdigest()})
    status, etype, _ = send("PUT", url, forged, code_body("attacker"))
    assert (status, etype) == (403, "InvalidSignatureException")
    # Without the header: the signature no longer matches the body.
    status, etype, _ = send("PUT", url, headers, code_body("attacker"))
    assert (status, etype) == (403, "InvalidSignatureException")
    assert running_version(lambda_client, victim) == "original"


def test_signed_body_hash_must_match_the_body(tern_server, lambda_client, victim):
    path = f"/2015-03-31/functions/{victim}/code"
    url, headers = signed(tern_server, "PUT", path, code_body("v2"), sign_body_hash=True)
    status, etype, body = send("PUT", url, headers, code_body("attacker"))
    assert (status, etype) == (403, "InvalidSignatureException"), body
    assert "x-amz-content-sha256" in body["message"]
    assert running_version(lambda_client, victim) == "original"
    # The same signed request with its own body is accepted.
    status, _, body = send("PUT", url, headers, code_body("v2"))
    assert status == 200, body
    assert running_version(lambda_client, victim) == "v2"


def test_unsigned_amz_header_added_to_an_invoke_is_refused(tern_server, hello_fn):
    path = f"/2015-03-31/functions/{hello_fn}/invocations"
    url, headers = signed(tern_server, "POST", path, b"{}")
    status, _, _ = send("POST", url, headers, b"{}")
    assert status == 200
    tail = dict(headers, **{"X-Amz-Log-Type": "Tail"})
    status, etype, body = send("POST", url, tail, b"{}")
    assert (status, etype) == (403, "InvalidSignatureException")
    assert "x-amz-log-type" in body["message"]


def test_query_string_signatures_are_refused(tern_server):
    url = (tern_server.endpoint + "/2015-03-31/functions/?X-Amz-Algorithm=AWS4-HMAC-SHA256"
           f"&X-Amz-Credential={tern_server.access_key}%2F20260101%2F{REGION}%2Flambda"
           "%2Faws4_request&X-Amz-Signature=" + "0" * 64)
    host = urlparse(tern_server.endpoint).netloc
    status, etype, body = send("GET", url, {"Host": host})
    assert (status, etype) == (403, "InvalidSignatureException")
    assert "Presigned" in body["message"]
