"""Function URLs: boto3 manages them (Create/Get/Update/List/DeleteFunctionUrlConfig), and
a plain HTTP client calls them on tern's own listener, as curl would: payload-2.0 events,
Lambda's response mapping, 502 for a function error, CORS preflight answered by the
platform, and AWS_IAM URLs that want a SigV4 signature (service `lambda`)."""

import base64
import json
import os
import re
import urllib.error
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from calls import REGION, create_and_wait, tern_api, unique_name
from packages import build_zip

# Each path asks the function for one kind of answer.
URL_APP = '''\
def handler(event, context):
    path = event["rawPath"]
    method = event["requestContext"]["http"]["method"]
    if method == "OPTIONS":
        return {"statusCode": 418, "body": "the function saw the preflight"}
    if path == "/mapped":
        return {
            "statusCode": 201,
            "headers": {"X-Custom": "yes", "Content-Type": "text/plain"},
            "cookies": ["session=abc; Path=/", "theme=dark"],
            "body": "created",
        }
    if path == "/binary":
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "application/octet-stream"},
            "body": event.get("body", ""),
            "isBase64Encoded": event["isBase64Encoded"],
        }
    if path == "/fail":
        raise ValueError("the function failed")
    if path == "/plain":
        return {"message": "plain"}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": __import__("json").dumps({"event": event, "requestId": context.aws_request_id})}
'''

URL_ID = re.compile(r"/url/([a-z0-9]{32})/$")
ALLOWED_ORIGIN = "https://app.example.com"


def http(url, method="GET", body=None, headers=None):
    """(status, headers, body bytes) of a plain HTTP request; errors are answers too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def echoed(url, **kwargs):
    status, headers, body = http(url, **kwargs)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture(scope="module")
def url_fn(lambda_client):
    """A function with an AuthType NONE URL and CORS, and the URL."""
    name = create_and_wait(lambda_client, build_zip({"app.py": URL_APP}),
                           name=unique_name("url"))["FunctionName"]
    created = lambda_client.create_function_url_config(
        FunctionName=name, AuthType="NONE",
        Cors={"AllowOrigins": [ALLOWED_ORIGIN], "AllowMethods": ["GET", "POST"],
              "AllowHeaders": ["content-type", "x-token"], "ExposeHeaders": ["x-custom"],
              "MaxAge": 300, "AllowCredentials": True})
    return name, created["FunctionUrl"]


def test_create_get_update_list_and_delete(lambda_client, tern_server):
    name = create_and_wait(lambda_client, build_zip({"app.py": URL_APP}),
                           name=unique_name("urlmgmt"))["FunctionName"]
    created = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    url = created["FunctionUrl"]
    assert url.startswith(tern_server.endpoint + "/url/"), url
    assert URL_ID.search(url), url
    assert created["FunctionArn"].endswith(f":function:{name}")
    assert created["AuthType"] == "NONE"
    assert created["InvokeMode"] == "BUFFERED"

    got = lambda_client.get_function_url_config(FunctionName=name)
    assert got["FunctionUrl"] == url
    assert got["CreationTime"] and got["LastModifiedTime"]

    updated = lambda_client.update_function_url_config(
        FunctionName=name, AuthType="AWS_IAM", Cors={"AllowOrigins": ["*"]})
    assert updated["FunctionUrl"] == url, "the URL keeps its id"
    assert updated["AuthType"] == "AWS_IAM"
    assert updated["Cors"] == {"AllowOrigins": ["*"]}

    listed = lambda_client.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert [u["FunctionUrl"] for u in listed] == [url]

    deleted = lambda_client.delete_function_url_config(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_url_config(FunctionName=name)
    assert http(url + "x")[0] == 404
    assert lambda_client.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []


def test_bad_input_gets_lambda_shaped_errors(lambda_client, tern_server, url_fn):
    name, _ = url_fn
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.create_function_url_config(FunctionName=unique_name("missing"),
                                                 AuthType="NONE")
    with pytest.raises(lambda_client.exceptions.ResourceConflictException) as conflict:
        lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert conflict.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as stream:
        lambda_client.update_function_url_config(FunctionName=name,
                                                 InvokeMode="RESPONSE_STREAM")
    assert "RESPONSE_STREAM" in str(stream.value)
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as version:
        lambda_client.get_function_url_config(FunctionName=name, Qualifier="1")
    assert "version" in str(version.value)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_url_config(FunctionName=name, Qualifier="no-such-alias")
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.update_function_url_config(FunctionName=name,
                                                 Cors={"AllowMethods": ["TRACE"]})
    # boto3 sends only the model's members: an unknown one comes from a raw request.
    status, body = tern_api(tern_server, "PUT", f"/2021-10-31/functions/{name}/url",
                            {"AuthType": "NONE", "Streaming": True})
    assert status == 400, body
    assert "Streaming" in body["message"]
    status, body = tern_api(tern_server, "POST", f"/2021-10-31/functions/{name}/url",
                            {"Cors": {}})
    assert status == 400 and "AuthType" in body["message"], body


def test_get_with_a_query_and_cookies_is_a_payload_2_event(url_fn):
    _, url = url_fn
    got = echoed(url + "some/path?a=1&a=2&b=x%20y",
                 headers={"Cookie": "session=abc; theme=dark", "X-Multi": "v",
                          "User-Agent": "compat/1"})
    event = got["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/path"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "v"
    assert event["headers"]["user-agent"] == "compat/1"
    http_ctx = event["requestContext"]["http"]
    assert http_ctx == {"method": "GET", "path": "/some/path", "protocol": "HTTP/1.1",
                        "sourceIp": "127.0.0.1", "userAgent": "compat/1"}
    ctx = event["requestContext"]
    assert ctx["requestId"] == got["requestId"], "the event's request id is the invocation's"
    assert isinstance(ctx["timeEpoch"], int) and ctx["stage"] == "$default"
    assert URL_ID.search(url).group(1) == ctx["apiId"]
    assert event["isBase64Encoded"] is False
    assert "body" not in event


def test_post_binary_body_round_trips_through_base64(url_fn):
    _, url = url_fn
    payload = os.urandom(4096) + b"\x00\xff"
    status, headers, body = http(url + "binary", method="POST", body=payload,
                                 headers={"Content-Type": "application/octet-stream"})
    assert status == 200
    assert body == payload
    assert headers["Content-Type"] == "application/octet-stream"
    got = echoed(url, method="POST", body=b"\x00\x01\xfe",
                 headers={"Content-Type": "application/octet-stream"})
    assert got["event"]["isBase64Encoded"] is True
    assert base64.b64decode(got["event"]["body"]) == b"\x00\x01\xfe"
    text = echoed(url, method="POST", body=b'{"k": "v"}',
                  headers={"Content-Type": "application/json"})
    assert text["event"]["body"] == '{"k": "v"}'
    assert text["event"]["isBase64Encoded"] is False


def test_custom_status_headers_and_cookies_are_the_response(url_fn):
    _, url = url_fn
    status, headers, body = http(url + "mapped")
    assert status == 201
    assert body == b"created"
    assert headers["X-Custom"] == "yes"
    assert headers["Content-Type"] == "text/plain"
    assert headers.get_all("Set-Cookie") == ["session=abc; Path=/", "theme=dark"]
    assert headers["x-amzn-RequestId"]


def test_plain_json_is_a_200_json_body(url_fn):
    _, url = url_fn
    status, headers, body = http(url + "plain")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"message": "plain"}


def test_function_error_is_a_502(url_fn):
    _, url = url_fn
    status, headers, body = http(url + "fail")
    assert status == 502
    assert json.loads(body) == {"Message": "Internal Server Error"}
    assert "the function failed" not in body.decode(), "no details leak to the caller"


def test_cors_preflight_is_answered_without_the_function(url_fn):
    _, url = url_fn
    status, headers, body = http(url + "anything", method="OPTIONS", headers={
        "Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 200, body
    assert headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert headers["Access-Control-Allow-Headers"] == "content-type,x-token"
    assert headers["Access-Control-Max-Age"] == "300"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert b"preflight" not in body
    status, headers, _ = http(url, method="OPTIONS", headers={
        "Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] is None
    # An ordinary request from the allowed origin carries the CORS headers.
    status, headers, _ = http(url + "mapped", headers={"Origin": ALLOWED_ORIGIN})
    assert status == 201
    assert headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert headers["Access-Control-Expose-Headers"] == "x-custom"
    assert headers["Access-Control-Allow-Credentials"] == "true"


def signed(tern_server, url, method="GET", body=b"", secret=None):
    headers = {"Content-Type": "application/json"} if body else {}
    req = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(Credentials(tern_server.access_key, secret or tern_server.secret_key),
              "lambda", REGION).add_auth(req)
    return http(url, method=method, body=body or None, headers=dict(req.headers.items()))


def test_aws_iam_url_refuses_unsigned_and_accepts_signed(lambda_client, tern_server):
    name = create_and_wait(lambda_client, build_zip({"app.py": URL_APP}),
                           name=unique_name("urliam"))["FunctionName"]
    url = lambda_client.create_function_url_config(FunctionName=name,
                                                   AuthType="AWS_IAM")["FunctionUrl"]
    status, _, body = http(url + "plain")
    assert status == 403
    assert json.loads(body) == {"Message": "Forbidden"}
    status, _, body = signed(tern_server, url + "plain", secret="wrong" * 8)
    assert status == 403, body
    status, _, body = signed(tern_server, url + "plain")
    assert status == 200, body
    assert json.loads(body) == {"message": "plain"}
    status, _, body = signed(tern_server, url + "echo?x=1", method="POST", body=b'{"signed": 1}')
    assert status == 200, body
    event = json.loads(body)["event"]
    assert event["body"] == '{"signed": 1}'
    assert event["requestContext"]["authorizer"]["iam"]["accessKey"] == tern_server.access_key


def test_deleting_the_function_deletes_its_url(lambda_client):
    name = create_and_wait(lambda_client, build_zip({"app.py": URL_APP}),
                           name=unique_name("urldel"))["FunctionName"]
    url = lambda_client.create_function_url_config(FunctionName=name,
                                                   AuthType="NONE")["FunctionUrl"]
    assert http(url + "plain")[0] == 200
    lambda_client.delete_function(FunctionName=name)
    create_and_wait(lambda_client, build_zip({"app.py": URL_APP}), name=name)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_url_config(FunctionName=name)
    assert http(url + "plain")[0] == 404


def test_a_throttle_is_a_429(lambda_client):
    name = create_and_wait(lambda_client, build_zip({"app.py": URL_APP}),
                           name=unique_name("urlthrottle"))["FunctionName"]
    url = lambda_client.create_function_url_config(FunctionName=name,
                                                   AuthType="NONE")["FunctionUrl"]
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    status, headers, body = http(url + "plain")
    assert status == 429, body
    assert json.loads(body) == {"Message": "Rate Exceeded."}
    lambda_client.delete_function_concurrency(FunctionName=name)
    assert http(url + "plain")[0] == 200
