"""AWS's own Runtime Interface Client (awslambdaric) as a `provided` runtime's bootstrap:
tern's Runtime API must be the one the RIC expects."""

import base64

import pytest

from calls import create_and_wait, function_arn, invoke_json, request_id
from packages import PROVIDED_RUNTIME, awslambdaric_zip


@pytest.fixture(scope="module")
def ric_fn(lambda_client, awslambdaric_deps):
    return create_and_wait(
        lambda_client,
        awslambdaric_zip(awslambdaric_deps),
        runtime=PROVIDED_RUNTIME,
        handler="app.handler",
        MemorySize=256,
        Timeout=10,
    )["FunctionName"]


def test_awslambdaric_function_returns_the_handler_result(lambda_client, ric_fn):
    resp, out = invoke_json(lambda_client, ric_fn, {"marker": "ric", "items": [1, 2]},
                            LogType="Tail")
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp, out
    assert out["event"] == {"marker": "ric", "items": [1, 2]}
    log = base64.b64decode(resp["LogResult"]).decode()
    assert "ric-log ric" in log
    assert f"REPORT RequestId: {request_id(resp)}" in log


def test_awslambdaric_context_matches_the_invoke(lambda_client, ric_fn):
    resp, out = invoke_json(lambda_client, ric_fn)
    assert "FunctionError" not in resp, out
    assert out["function_name"] == ric_fn
    assert out["memory_limit_in_mb"] == 256
    assert out["aws_request_id"] == request_id(resp)
    assert out["invoked_function_arn"] == function_arn(ric_fn)
    assert 0 < out["remaining_ms"] <= 10_000


def test_awslambdaric_raised_exception_sets_function_error(lambda_client, ric_fn):
    resp, out = invoke_json(lambda_client, ric_fn, {"action": "raise", "message": "card declined"})
    assert resp["FunctionError"] == "Unhandled"
    assert out["errorType"] == "PaymentDeclined"
    assert out["errorMessage"] == "card declined"
    assert isinstance(out["stackTrace"], list)


def test_awslambdaric_instance_serves_after_an_error(lambda_client, ric_fn):
    invoke_json(lambda_client, ric_fn, {"action": "raise"})
    resp, out = invoke_json(lambda_client, ric_fn, {"marker": "again"})
    assert "FunctionError" not in resp, out
    assert out["event"] == {"marker": "again"}
