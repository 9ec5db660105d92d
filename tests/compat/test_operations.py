"""docs/api.md lists every operation of the installed botocore's Lambda model, and boto3
sees an operation tern does not support as a modelled, catchable exception naming it."""

import re

import botocore.session
import pytest

from conftest import REPO

SECTION = "## Every operation of the Lambda model"


def documented_operations():
    text = (REPO / "docs" / "api.md").read_text()
    assert SECTION in text, f"docs/api.md has no section '{SECTION}'"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [re.match(r"\|\s*(\w+)\s*\|", row).group(1) for row in rows]


def test_docs_list_exactly_the_operations_of_the_installed_botocore_model():
    model = botocore.session.get_session().get_service_model("lambda")
    in_model = set(model.operation_names)
    documented = documented_operations()
    assert len(documented) == len(set(documented)), "docs/api.md lists an operation twice"
    missing = sorted(in_model - set(documented))
    stale = sorted(set(documented) - in_model)
    assert not missing, (
        f"botocore {botocore.__version__} has Lambda operations that docs/api.md and "
        f"crates/gateway/src/operations.rs do not list: {missing}"
    )
    assert not stale, (
        f"docs/api.md lists operations that botocore {botocore.__version__}'s Lambda model "
        f"does not have: {stale}"
    )


@pytest.mark.parametrize(
    "operation, call",
    [
        ("GetFunctionCodeSigningConfig",
         lambda c: c.get_function_code_signing_config(FunctionName="f")),
        ("GetFunctionRecursionConfig",
         lambda c: c.get_function_recursion_config(FunctionName="f")),
        ("GetRuntimeManagementConfig",
         lambda c: c.get_runtime_management_config(FunctionName="f")),
        ("DeleteEventSourceMapping", lambda c: c.delete_event_source_mapping(UUID="u")),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_an_unsupported_operation_raises_invalid_parameter_value_naming_it(
    lambda_client, operation, call
):
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as excinfo:
        call(lambda_client)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert excinfo.value.response["Error"]["Message"] == (
        f"tern does not support the {operation} operation"
    )
