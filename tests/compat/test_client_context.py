"""`ClientContext` on Invoke: Lambda decodes the base64 header and hands the runtime JSON
in `Lambda-Runtime-Client-Context`. Checked with AWS's own runtimes (awslambdaric, the
Rust `lambda_runtime` crate) and with tern's Python and Node runtimes."""

import base64
import json

import pytest
from botocore.exceptions import ClientError

from calls import create_and_wait, invoke_json
from packages import NODE_HANDLER, NODE_RUNTIME, PROVIDED_RUNTIME, awslambdaric_zip, build_zip

CONTEXT = {
    "client": {
        "installation_id": "install-1",
        "app_title": "Tern Mobile",
        "app_version_name": "1.2.3",
        "app_version_code": "123",
        "app_package_name": "com.example.tern",
    },
    "custom": {"tenant": "acme", "note": "caf\u00e9"},
    "env": {"platform": "linux", "locale": "en_US"},
}

PY_CONTEXT_APP = """\
def handler(event, context):
    cc = context.client_context
    if cc is None:
        return {"client_context": None}
    client = cc.client
    view = {"custom": cc.custom, "env": cc.env}
    if client is not None:
        for key in ("installation_id", "app_title", "app_version_name", "app_version_code",
                    "app_package_name"):
            view[key] = getattr(client, key)
    return {"client_context": view}
"""

NODE_CONTEXT_APP = """\
exports.handler = async (event, context) => ({ clientContext: context.clientContext ?? null });
"""


def encoded(value):
    return base64.b64encode(json.dumps(value).encode()).decode()


def expected_python_view():
    return {**CONTEXT["client"], "custom": CONTEXT["custom"], "env": CONTEXT["env"]}


@pytest.fixture(scope="module")
def python_fn(lambda_client):
    return create_and_wait(lambda_client, build_zip({"app.py": PY_CONTEXT_APP}))["FunctionName"]


@pytest.fixture(scope="module")
def node_fn(lambda_client):
    return create_and_wait(lambda_client, build_zip({"index.js": NODE_CONTEXT_APP}),
                           runtime=NODE_RUNTIME, handler=NODE_HANDLER)["FunctionName"]


@pytest.fixture(scope="module")
def ric_fn(lambda_client, awslambdaric_deps):
    files_zip = awslambdaric_zip(awslambdaric_deps, app=PY_CONTEXT_APP)
    return create_and_wait(lambda_client, files_zip, runtime=PROVIDED_RUNTIME,
                           handler="app.handler", MemorySize=256, Timeout=10)["FunctionName"]


@pytest.fixture(scope="module")
def rust_fn(lambda_client, rust_runtime_bootstrap):
    package = build_zip({"bootstrap": (rust_runtime_bootstrap.read_bytes(), 0o755)})
    return create_and_wait(lambda_client, package, runtime=PROVIDED_RUNTIME,
                           handler="bootstrap", Timeout=10)["FunctionName"]


def test_python_runtime_context_exposes_client_custom_and_env(lambda_client, python_fn):
    resp, out = invoke_json(lambda_client, python_fn, ClientContext=encoded(CONTEXT))
    assert "FunctionError" not in resp, out
    assert out["client_context"] == expected_python_view()


def test_python_runtime_without_client_context_sees_none(lambda_client, python_fn):
    resp, out = invoke_json(lambda_client, python_fn)
    assert "FunctionError" not in resp, out
    assert out["client_context"] is None


def test_node_runtime_client_context_is_the_decoded_object(lambda_client, node_fn):
    resp, out = invoke_json(lambda_client, node_fn, ClientContext=encoded(CONTEXT))
    assert "FunctionError" not in resp, out
    assert out["clientContext"] == CONTEXT


def test_awslambdaric_parses_the_client_context(lambda_client, ric_fn):
    resp, out = invoke_json(lambda_client, ric_fn, ClientContext=encoded(CONTEXT))
    assert "FunctionError" not in resp, out
    assert out["client_context"] == expected_python_view()


def test_rust_lambda_runtime_parses_the_client_context(lambda_client, rust_fn):
    resp, out = invoke_json(lambda_client, rust_fn, {"n": 1}, ClientContext=encoded(CONTEXT))
    assert "FunctionError" not in resp, out
    assert out["event"] == {"n": 1}
    assert out["client_context"]["installation_id"] == "install-1"
    assert out["client_context"]["app_title"] == "Tern Mobile"
    assert out["client_context"]["custom"] == CONTEXT["custom"]
    # The runtime keeps serving after a request with a client context.
    resp, out = invoke_json(lambda_client, rust_fn, {"n": 2})
    assert "FunctionError" not in resp, out
    assert out["client_context"] is None


@pytest.mark.parametrize("header, why", [
    (base64.b64encode(b"not json").decode(), "not JSON"),
    ("%%% not base64 %%%", "not base64"),
    (encoded([1, 2, 3]), "JSON but not an object"),
])
def test_malformed_client_context_is_a_400(lambda_client, python_fn, header, why):
    with pytest.raises(ClientError) as err:
        lambda_client.invoke(FunctionName=python_fn, Payload=b"{}", ClientContext=header)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, why
    assert err.value.response["Error"]["Code"] == "InvalidRequestContentException"
    assert "Base64-encoded JSON object" in err.value.response["Error"]["Message"]


def test_client_context_over_3583_bytes_is_a_400(lambda_client, python_fn):
    header = encoded({"custom": {"k": "x" * 2_700}})
    assert len(header) > 3583
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as err:
        lambda_client.invoke(FunctionName=python_fn, Payload=b"{}", ClientContext=header)
    assert "3583" in err.value.response["Error"]["Message"]
    fits = encoded({"custom": {"k": "x" * 2_600}})
    assert len(fits) <= 3583
    resp, out = invoke_json(lambda_client, python_fn, ClientContext=fits)
    assert "FunctionError" not in resp, out
    assert out["client_context"]["custom"] == {"k": "x" * 2_600}
