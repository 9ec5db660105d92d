"""Function management through unmodified boto3: create, get, list, update, delete."""

import base64
import hashlib
import re

import pytest

from calls import ACCOUNT, ROLE, WAIT, create_and_wait, function_arn, invoke_json, unique_name
from packages import (
    NODE_HANDLER, NODE_RUNTIME, PYTHON_HANDLER, PYTHON_RUNTIME, node_zip, python_zip,
)


def sha256_b64(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def name_forms(name):
    """Every way Lambda accepts to name the unqualified function."""
    return {
        "name": name,
        "full ARN": function_arn(name),
        "partial ARN": f"{ACCOUNT}:function:{name}",
        "name:$LATEST": f"{name}:$LATEST",
    }


NAME_FORMS = ["name", "full ARN", "partial ARN", "name:$LATEST"]


def test_create_function_returns_201_and_its_configuration(lambda_client):
    name = unique_name("create")
    code = python_zip()
    resp = lambda_client.create_function(
        FunctionName=name,
        Runtime=PYTHON_RUNTIME,
        Role=ROLE,
        Handler=PYTHON_HANDLER,
        Code={"ZipFile": code},
        Description="created by the compat suite",
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert resp["FunctionName"] == name
    assert resp["FunctionArn"] == function_arn(name)
    assert resp["Runtime"] == PYTHON_RUNTIME
    assert resp["Handler"] == PYTHON_HANDLER
    assert resp["Description"] == "created by the compat suite"
    assert resp["MemorySize"] == 128
    assert resp["Timeout"] == 3
    assert resp["Version"] == "$LATEST"
    assert resp["CodeSize"] == len(code)
    assert resp["CodeSha256"] == sha256_b64(code)
    assert resp["State"] in ("Pending", "Active")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", resp["LastModified"]), (
        f"Lambda's LastModified format, got {resp['LastModified']!r}"
    )
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)


def test_get_function_returns_configuration_after_active_waiter(lambda_client, deploy):
    created = deploy(python_zip(), MemorySize=256, Timeout=10)
    name = created["FunctionName"]
    got = lambda_client.get_function(FunctionName=name)
    cfg = got["Configuration"]
    assert cfg["FunctionName"] == name
    assert cfg["FunctionArn"] == function_arn(name)
    assert cfg["State"] == "Active"
    assert cfg["MemorySize"] == 256
    assert cfg["Timeout"] == 10
    assert cfg["CodeSha256"] == created["CodeSha256"]


@pytest.mark.parametrize("form", NAME_FORMS)
def test_get_function_configuration_accepts_every_name_form(lambda_client, hello_fn, form):
    cfg = lambda_client.get_function_configuration(FunctionName=name_forms(hello_fn)[form])
    assert cfg["FunctionName"] == hello_fn
    assert cfg["FunctionArn"] == function_arn(hello_fn)
    assert cfg["Handler"] == PYTHON_HANDLER


@pytest.mark.parametrize("form", NAME_FORMS)
def test_get_function_accepts_every_name_form(lambda_client, hello_fn, form):
    got = lambda_client.get_function(FunctionName=name_forms(hello_fn)[form])
    assert got["Configuration"]["FunctionName"] == hello_fn


@pytest.fixture(scope="module")
def five_functions(lambda_client):
    """Five functions, so that pages of two make three pages."""
    return sorted(
        create_and_wait(lambda_client, python_zip(), name=unique_name(f"page{i}"))["FunctionName"]
        for i in range(5)
    )


def test_list_functions_paginator_walks_every_page(lambda_client, five_functions):
    pages = list(
        lambda_client.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2})
    )
    assert len(pages) > 1
    assert all(len(page["Functions"]) <= 2 for page in pages)
    names = [f["FunctionName"] for page in pages for f in page["Functions"]]
    assert len(names) == len(set(names)), f"a function was listed twice: {names}"
    assert set(five_functions) <= set(names)


def test_list_functions_max_items_and_marker_page_without_overlap(lambda_client, five_functions):
    seen = []
    marker = None
    for _ in range(100):
        kwargs = {"MaxItems": 2}
        if marker:
            kwargs["Marker"] = marker
        page = lambda_client.list_functions(**kwargs)
        assert len(page["Functions"]) <= 2
        seen += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert len(seen) == len(set(seen)), f"a function was listed twice: {seen}"
    assert set(five_functions) <= set(seen)
    first = lambda_client.list_functions(MaxItems=2)
    assert len(first["Functions"]) == 2 and first.get("NextMarker")


def test_list_functions_paginator_max_items_resumes_from_starting_token(
    lambda_client, five_functions
):
    paginator = lambda_client.get_paginator("list_functions")
    head = paginator.paginate(PaginationConfig={"PageSize": 2, "MaxItems": 3}).build_full_result()
    assert len(head["Functions"]) == 3
    assert head.get("NextToken")
    rest = paginator.paginate(
        PaginationConfig={"PageSize": 2, "StartingToken": head["NextToken"]}
    ).build_full_result()
    names = [f["FunctionName"] for f in head["Functions"] + rest["Functions"]]
    assert len(names) == len(set(names))
    assert set(five_functions) <= set(names)


def test_listed_function_carries_its_configuration(lambda_client, five_functions):
    listed = {
        f["FunctionName"]: f
        for page in lambda_client.get_paginator("list_functions").paginate()
        for f in page["Functions"]
    }
    entry = listed[five_functions[0]]
    assert entry["FunctionArn"] == function_arn(five_functions[0])
    assert entry["Runtime"] == PYTHON_RUNTIME
    assert entry["Handler"] == PYTHON_HANDLER


def test_update_function_code_then_updated_waiter_serves_new_code(lambda_client, deploy):
    name = deploy(python_zip("v1"))["FunctionName"]
    _, before = invoke_json(lambda_client, name)
    assert before["version"] == "v1"

    new_code = python_zip("v2")
    resp = lambda_client.update_function_code(FunctionName=name, ZipFile=new_code)
    assert resp["CodeSha256"] == sha256_b64(new_code)
    assert resp["CodeSize"] == len(new_code)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)

    assert lambda_client.get_function(FunctionName=name)["Configuration"]["LastUpdateStatus"] == (
        "Successful"
    )
    _, after = invoke_json(lambda_client, name)
    assert after["version"] == "v2"


def test_update_function_configuration_then_updated_waiter_applies_it(lambda_client, deploy):
    name = deploy(python_zip())["FunctionName"]
    resp = lambda_client.update_function_configuration(
        FunctionName=name,
        MemorySize=256,
        Timeout=12,
        Description="updated",
        Environment={"Variables": {"GREETING": "hola"}},
    )
    assert resp["MemorySize"] == 256
    assert resp["Timeout"] == 12
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)

    cfg = lambda_client.get_function_configuration(FunctionName=name)
    assert cfg["MemorySize"] == 256
    assert cfg["Timeout"] == 12
    assert cfg["Description"] == "updated"
    assert cfg["Environment"]["Variables"] == {"GREETING": "hola"}
    _, out = invoke_json(lambda_client, name)
    assert out["greeting"] == "hola"
    assert out["memory_limit_in_mb"] == 256


def test_update_function_configuration_changes_handler_and_runtime(lambda_client, deploy):
    name = deploy(python_zip())["FunctionName"]
    lambda_client.update_function_code(FunctionName=name, ZipFile=node_zip())
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    lambda_client.update_function_configuration(
        FunctionName=name, Runtime=NODE_RUNTIME, Handler=NODE_HANDLER
    )
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    _, out = invoke_json(lambda_client, name)
    assert out["runtime"] == "node"


def test_delete_function_returns_204_and_the_function_is_gone(lambda_client, deploy):
    name = deploy(python_zip())["FunctionName"]
    resp = lambda_client.delete_function(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName=name)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.invoke(FunctionName=name, Payload=b"{}")
    listed = [
        f["FunctionName"]
        for page in lambda_client.get_paginator("list_functions").paginate()
        for f in page["Functions"]
    ]
    assert name not in listed


def test_delete_function_accepts_full_arn(lambda_client, deploy):
    name = deploy(python_zip())["FunctionName"]
    lambda_client.delete_function(FunctionName=function_arn(name))
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_configuration(FunctionName=name)


def test_deleted_name_can_be_created_again(lambda_client, deploy):
    name = deploy(python_zip("v1"))["FunctionName"]
    lambda_client.delete_function(FunctionName=name)
    deploy(python_zip("v2"), name=name)
    _, out = invoke_json(lambda_client, name)
    assert out["version"] == "v2"


def test_account_settings_report_limits_and_usage(lambda_client, hello_fn):
    settings = lambda_client.get_account_settings()
    assert settings["AccountLimit"]["ConcurrentExecutions"] > 0
    assert settings["AccountUsage"]["FunctionCount"] >= 1


def test_tags_are_listed_added_and_removed_by_function_arn(lambda_client, deploy):
    fn = deploy(python_zip(), Tags={"team": "core"})
    arn = fn["FunctionArn"]
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"team": "core"}
    revision = lambda_client.get_function_configuration(FunctionName=arn)["RevisionId"]
    lambda_client.tag_resource(Resource=arn, Tags={"env": "test", "cost center": "42"})
    lambda_client.untag_resource(Resource=arn, TagKeys=["team", "cost center"])
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"env": "test"}
    assert lambda_client.get_function(FunctionName=arn)["Tags"] == {"env": "test"}
    # Tags are not configuration: the RevisionId stays.
    assert lambda_client.get_function_configuration(FunctionName=arn)["RevisionId"] == revision
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.list_tags(Resource=function_arn(unique_name("missing")))
