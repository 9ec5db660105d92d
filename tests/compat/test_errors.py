"""Bad input reaches boto3 as Lambda's modelled exception classes, and the server keeps
serving afterwards (each test ends with a working invoke; conftest checks health too)."""

import pytest

from calls import ROLE, function_arn, invoke_json, unique_name
from packages import PYTHON_HANDLER, PYTHON_RUNTIME, build_zip, python_zip

MISSING = "compat-no-such-function"
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024


def assert_still_invokes(client, name):
    resp, out = invoke_json(client, name, {"marker": "still-serving"})
    assert "FunctionError" not in resp
    assert out["event"] == {"marker": "still-serving"}


def status(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def message(excinfo):
    return excinfo.value.response["Error"]["Message"]


def create(client, **overrides):
    params = dict(
        FunctionName=unique_name("bad"),
        Runtime=PYTHON_RUNTIME,
        Role=ROLE,
        Handler=PYTHON_HANDLER,
        Code={"ZipFile": python_zip()},
    )
    params.update(overrides)
    return client.create_function(**params)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_function(FunctionName=MISSING),
        lambda c: c.get_function_configuration(FunctionName=MISSING),
        lambda c: c.get_function(FunctionName=function_arn(MISSING)),
        lambda c: c.invoke(FunctionName=MISSING, Payload=b"{}"),
        lambda c: c.update_function_code(FunctionName=MISSING, ZipFile=python_zip()),
        lambda c: c.update_function_configuration(FunctionName=MISSING, Timeout=5),
        lambda c: c.delete_function(FunctionName=MISSING),
    ],
    ids=["get", "get-configuration", "get-by-arn", "invoke", "update-code",
         "update-configuration", "delete"],
)
def test_missing_function_raises_resource_not_found(lambda_client, hello_fn, call):
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as exc:
        call(lambda_client)
    assert status(exc) == 404
    assert MISSING in message(exc)
    assert_still_invokes(lambda_client, hello_fn)


def test_creating_an_existing_name_raises_resource_conflict(lambda_client, hello_fn):
    with pytest.raises(lambda_client.exceptions.ResourceConflictException) as exc:
        create(lambda_client, FunctionName=hello_fn)
    assert status(exc) == 409
    assert_still_invokes(lambda_client, hello_fn)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"MemorySize": 20000}, "memorySize"),
        ({"Timeout": 901}, "timeout"),
        ({"Runtime": "cobol85"}, "runtime"),
        ({"Handler": "app handler"}, "handler"),
        ({"Environment": {"Variables": {"AWS_REGION": "eu-west-1"}}}, "AWS_REGION"),
    ],
    ids=["memory-above-max", "timeout-above-max", "unknown-runtime", "handler-with-space",
         "reserved-environment-key"],
)
def test_create_with_invalid_setting_raises_invalid_parameter_value(
    lambda_client, hello_fn, overrides, field
):
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as exc:
        create(lambda_client, **overrides)
    assert status(exc) == 400
    assert field.lower() in message(exc).lower()
    assert_still_invokes(lambda_client, hello_fn)


@pytest.mark.parametrize(
    "overrides", [{"MemorySize": 64}, {"Timeout": 0}], ids=["memory-below-min", "timeout-zero"]
)
def test_create_below_minimum_raises_invalid_parameter_value(make_client, hello_fn, overrides):
    # botocore rejects these itself; with its validation off the server must say no.
    client = make_client(parameter_validation=False)
    with pytest.raises(client.exceptions.InvalidParameterValueException):
        create(client, **overrides)
    assert_still_invokes(client, hello_fn)


def test_create_with_a_file_that_is_not_a_zip_raises_invalid_parameter_value(
    lambda_client, hello_fn
):
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        create(lambda_client, Code={"ZipFile": b"this is not a zip archive"})
    assert_still_invokes(lambda_client, hello_fn)


@pytest.mark.parametrize("entries, why", [
    ({"d": ("elsewhere", 0o120777), "d/f.py": "x = 1\n"}, "a link where a directory is needed"),
    ({"s": (".", 0o120777), "x": ("s/s/s/../../credentials", 0o120777), "app.py": "x = 1\n"},
     "a link that climbs out through another link"),
])
def test_a_zip_with_hostile_links_raises_invalid_parameter_value(
    lambda_client, hello_fn, entries, why
):
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        create(lambda_client, Code={"ZipFile": build_zip(entries)})
    assert_still_invokes(lambda_client, hello_fn)


def test_invalid_create_leaves_no_function_behind(lambda_client, hello_fn):
    name = unique_name("bad")
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        create(lambda_client, FunctionName=name, MemorySize=20000)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName=name)


def test_update_configuration_with_invalid_memory_raises_invalid_parameter_value(
    lambda_client, hello_fn
):
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.update_function_configuration(FunctionName=hello_fn, MemorySize=20000)
    assert lambda_client.get_function_configuration(FunctionName=hello_fn)["MemorySize"] == 128
    assert_still_invokes(lambda_client, hello_fn)


def test_update_configuration_with_unknown_runtime_raises_invalid_parameter_value(
    lambda_client, hello_fn
):
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.update_function_configuration(FunctionName=hello_fn, Runtime="cobol85")
    assert_still_invokes(lambda_client, hello_fn)


@pytest.mark.parametrize("payload", [b"not json", b"{\"unterminated\": ", b"\xff\xfe"],
                         ids=["text", "truncated", "binary"])
def test_invoke_with_non_json_payload_raises_invalid_request_content(
    lambda_client, hello_fn, payload
):
    with pytest.raises(lambda_client.exceptions.InvalidRequestContentException) as exc:
        lambda_client.invoke(FunctionName=hello_fn, Payload=payload)
    assert status(exc) == 400
    assert_still_invokes(lambda_client, hello_fn)


def test_invoke_with_payload_over_6_mb_raises_request_too_large(lambda_client, hello_fn):
    payload = b'"' + b"a" * SYNC_PAYLOAD_LIMIT + b'"'
    with pytest.raises(lambda_client.exceptions.RequestTooLargeException) as exc:
        lambda_client.invoke(FunctionName=hello_fn, Payload=payload)
    assert status(exc) == 413
    assert_still_invokes(lambda_client, hello_fn)


def test_invoke_of_a_function_whose_handler_module_is_missing_reports_a_function_error(
    lambda_client, deploy, hello_fn
):
    name = deploy(build_zip({"other.py": "x = 1\n"}))["FunctionName"]
    resp, out = invoke_json(lambda_client, name)
    assert resp["FunctionError"] == "Unhandled"
    assert out["errorType"].startswith("Runtime.")
    assert_still_invokes(lambda_client, hello_fn)
