"""Lambda layers through unmodified boto3: the layer API, `Layers` on functions, and the
layers' files read-only under /opt in the function's instances, on every start path."""

import base64
import concurrent.futures
import hashlib
import io
import json
import re
import stat
import time
import urllib.request
import zipfile

import botocore.exceptions
import pytest

from calls import ACCOUNT, REGION, create_and_wait, invoke_json, unique_name
from conftest import sandboxed
from packages import NODE_RUNTIME, PYTHON_RUNTIME, build_zip

# Layers are shown at /opt by the sandbox; --dev-unsandboxed has no /opt of its own and
# refuses to start a function with layers, so the tests that run one need the sandbox.
needs_sandbox = pytest.mark.skipif(
    not sandboxed(), reason="layers at /opt need the sandbox (the server runs --dev-unsandboxed)"
)

LAYER_ARN = re.compile(rf"^arn:aws:lambda:{REGION}:{ACCOUNT}:layer:[\w-]+$")

# Imports from the layers and reports what it saw: which file won, and whether /opt is
# writable.
LAYERED_PY = """\
import os
import sys

import mylib
import shared


def _age():
    # Seconds since this runtime process started (started ahead of its function: more
    # than the moments a start at the invoke takes).
    import time
    ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
    return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")


def handler(event, context):
    try:
        open("/opt/python/new-file", "w").close()
        opt_writable = True
    except OSError:
        opt_writable = False
    return {
        "mylib": mylib.WHO,
        "mylib_file": mylib.__file__,
        "shared": shared.WHO,
        "only_in_b": open("/opt/b.txt").read(),
        "opt_writable": opt_writable,
        "tern_bootstrap_visible": os.path.exists("/opt/tern/python/bootstrap.py"),
        "stream": context.log_stream_name,
        "age": _age(),
        "sys_path_has_opt": "/opt/python" in sys.path,
        "mountinfo": open("/proc/self/mountinfo").read(),
    }
"""

LAYERED_JS = """\
const greet = require('greeter');
exports.handler = async (event, context) => ({
  greeting: greet('layers'),
  from: require.resolve('greeter'),
  stream: context.logStreamName,
  // Exec'd ahead of its function: it read its environment from a config descriptor.
  startedAhead: require('fs').readFileSync('/proc/self/environ', 'latin1').includes('TERN_CONFIG_FD='),
});
"""


def layer_a():
    """`python/mylib.py` and `python/shared.py`, both saying they come from layer A."""
    return build_zip({
        "python/mylib.py": "WHO = 'layer-a'\n",
        "python/shared.py": "WHO = 'layer-a'\n",
    })


def layer_b():
    """Overrides `python/shared.py` of layer A, and adds a file of its own."""
    return build_zip({
        "python/shared.py": "WHO = 'layer-b'\n",
        "b.txt": "from b",
    })


def publish(client, zip_bytes, name=None, **extra):
    return client.publish_layer_version(
        LayerName=name or unique_name("layer"), Content={"ZipFile": zip_bytes}, **extra
    )


@pytest.fixture(scope="module")
def two_layers(lambda_client):
    """Layer A and layer B (which overrides a file of A): their version ARNs."""
    a = publish(lambda_client, layer_a(), CompatibleRuntimes=[PYTHON_RUNTIME])
    b = publish(lambda_client, layer_b(), CompatibleRuntimes=[PYTHON_RUNTIME])
    return a["LayerVersionArn"], b["LayerVersionArn"]


def test_publish_returns_201_with_arns_content_and_fields(lambda_client):
    name = unique_name("pub")
    code = layer_a()
    resp = publish(
        lambda_client, code, name=name,
        Description="shared libs", LicenseInfo="MIT",
        CompatibleRuntimes=["python3.11", "python3.12"], CompatibleArchitectures=["x86_64"],
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert resp["LayerArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}"
    assert resp["LayerVersionArn"] == f"{resp['LayerArn']}:1"
    assert resp["Version"] == 1
    assert resp["Description"] == "shared libs"
    assert resp["LicenseInfo"] == "MIT"
    assert resp["CompatibleRuntimes"] == ["python3.11", "python3.12"]
    assert resp["CompatibleArchitectures"] == ["x86_64"]
    assert resp["Content"]["CodeSize"] == len(code)
    assert resp["Content"]["CodeSha256"] == base64.b64encode(hashlib.sha256(code).digest()).decode()
    # Content.Location is a presigned URL any plain HTTP client can download the zip with.
    with urllib.request.urlopen(resp["Content"]["Location"], timeout=10) as r:
        assert r.read() == code
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", resp["CreatedDate"])


def test_versions_count_up_and_are_not_reused_after_delete(lambda_client):
    name = unique_name("ver")
    assert [publish(lambda_client, layer_a(), name=name)["Version"] for _ in range(2)] == [1, 2]
    lambda_client.delete_layer_version(LayerName=name, VersionNumber=2)
    assert publish(lambda_client, layer_a(), name=name)["Version"] == 3


def test_get_get_by_arn_list_and_delete_round_trip(lambda_client):
    name = unique_name("rt")
    v1 = publish(lambda_client, layer_a(), name=name, CompatibleRuntimes=["python3.11"])
    v2 = publish(lambda_client, layer_b(), name=name, CompatibleRuntimes=["nodejs20.x"],
                 CompatibleArchitectures=["arm64"])
    got = lambda_client.get_layer_version(LayerName=name, VersionNumber=1)
    assert got["LayerVersionArn"] == v1["LayerVersionArn"]
    with urllib.request.urlopen(got["Content"]["Location"], timeout=10) as r:
        assert r.read() == layer_a()
    assert got["Content"]["CodeSha256"] == v1["Content"]["CodeSha256"]
    by_arn = lambda_client.get_layer_version_by_arn(Arn=v2["LayerVersionArn"])
    assert (by_arn["Version"], by_arn["CompatibleRuntimes"]) == (2, ["nodejs20.x"])

    versions = lambda_client.list_layer_versions(LayerName=name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1], "newest first"
    only_py = lambda_client.list_layer_versions(LayerName=name, CompatibleRuntime="python3.11")
    assert [v["Version"] for v in only_py["LayerVersions"]] == [1]
    only_arm = lambda_client.list_layer_versions(LayerName=name, CompatibleArchitecture="arm64")
    assert [v["Version"] for v in only_arm["LayerVersions"]] == [2]
    page = lambda_client.list_layer_versions(LayerName=name, MaxItems=1)
    assert [v["Version"] for v in page["LayerVersions"]] == [2]
    rest = lambda_client.list_layer_versions(LayerName=name, MaxItems=1, Marker=page["NextMarker"])
    assert [v["Version"] for v in rest["LayerVersions"]] == [1]
    assert "NextMarker" not in rest

    layers = {l["LayerName"]: l for l in lambda_client.list_layers()["Layers"]}
    assert LAYER_ARN.match(layers[name]["LayerArn"])
    assert layers[name]["LatestMatchingVersion"]["Version"] == 2
    py = {l["LayerName"]: l for l in lambda_client.list_layers(CompatibleRuntime="python3.11")["Layers"]}
    assert py[name]["LatestMatchingVersion"]["Version"] == 1
    paginator = lambda_client.get_paginator("list_layers")
    names = [l["LayerName"] for p in paginator.paginate(PaginationConfig={"PageSize": 1}) for l in p["Layers"]]
    assert names.count(name) == 1 and names == sorted(names)

    lambda_client.delete_layer_version(LayerName=name, VersionNumber=1)
    lambda_client.delete_layer_version(LayerName=name, VersionNumber=1)  # idempotent, as on Lambda
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_layer_version(LayerName=name, VersionNumber=1)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_layer_version_by_arn(Arn=v1["LayerVersionArn"])


def test_permissions_round_trip_with_revision_ids(lambda_client):
    name = unique_name("perm")
    publish(lambda_client, layer_a(), name=name)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_layer_version_policy(LayerName=name, VersionNumber=1)
    added = lambda_client.add_layer_version_permission(
        LayerName=name, VersionNumber=1, StatementId="xaccount",
        Action="lambda:GetLayerVersion", Principal="123456789012",
    )
    assert added["ResponseMetadata"]["HTTPStatusCode"] == 201
    statement = json.loads(added["Statement"])
    assert statement["Sid"] == "xaccount"
    assert statement["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert statement["Resource"].endswith(f":layer:{name}:1")

    policy = lambda_client.get_layer_version_policy(LayerName=name, VersionNumber=1)
    doc = json.loads(policy["Policy"])
    assert doc["Version"] == "2012-10-17"
    assert [s["Sid"] for s in doc["Statement"]] == ["xaccount"]
    assert policy["RevisionId"] == added["RevisionId"]

    with pytest.raises(lambda_client.exceptions.ResourceConflictException):
        lambda_client.add_layer_version_permission(
            LayerName=name, VersionNumber=1, StatementId="xaccount",
            Action="lambda:GetLayerVersion", Principal="*",
        )
    with pytest.raises(lambda_client.exceptions.PreconditionFailedException):
        lambda_client.add_layer_version_permission(
            LayerName=name, VersionNumber=1, StatementId="public",
            Action="lambda:GetLayerVersion", Principal="*", RevisionId="stale",
        )
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.add_layer_version_permission(
            LayerName=name, VersionNumber=1, StatementId="bad",
            Action="lambda:InvokeFunction", Principal="*",
        )
    public = lambda_client.add_layer_version_permission(
        LayerName=name, VersionNumber=1, StatementId="public",
        Action="lambda:GetLayerVersion", Principal="*", RevisionId=policy["RevisionId"],
    )
    with pytest.raises(lambda_client.exceptions.PreconditionFailedException):
        lambda_client.remove_layer_version_permission(
            LayerName=name, VersionNumber=1, StatementId="xaccount", RevisionId=policy["RevisionId"],
        )
    lambda_client.remove_layer_version_permission(
        LayerName=name, VersionNumber=1, StatementId="xaccount", RevisionId=public["RevisionId"],
    )
    doc = json.loads(lambda_client.get_layer_version_policy(LayerName=name, VersionNumber=1)["Policy"])
    assert [(s["Sid"], s["Principal"]) for s in doc["Statement"]] == [("public", "*")]
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.remove_layer_version_permission(
            LayerName=name, VersionNumber=1, StatementId="xaccount",
        )


@needs_sandbox
def test_python_function_imports_from_opt_python_and_the_later_layer_wins(
    lambda_client, two_layers
):
    a, b = two_layers
    created = create_and_wait(
        lambda_client, build_zip({"app.py": LAYERED_PY}), name=unique_name("layered"),
        Layers=[a, b],
    )
    sizes = {l["Arn"]: l["CodeSize"] for l in created["Layers"]}
    assert sizes == {a: len(layer_a()), b: len(layer_b())}
    got = lambda_client.get_function(FunctionName=created["FunctionName"])
    assert [l["Arn"] for l in got["Configuration"]["Layers"]] == [a, b]
    _, out = invoke_json(lambda_client, created["FunctionName"])
    assert out["mylib"] == "layer-a"
    assert out["mylib_file"] == "/opt/python/mylib.py"
    assert out["shared"] == "layer-b", "the later layer's file wins"
    assert out["only_in_b"] == "from b"
    assert out["opt_writable"] is False
    assert out["tern_bootstrap_visible"] is True

    # Reversed order: layer A's file now wins.
    lambda_client.update_function_configuration(FunctionName=created["FunctionName"], Layers=[b, a])
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=created["FunctionName"])
    _, out = invoke_json(lambda_client, created["FunctionName"])
    assert out["shared"] == "layer-a"

    # And without layers, the import fails as it would on Lambda.
    lambda_client.update_function_configuration(FunctionName=created["FunctionName"], Layers=[])
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=created["FunctionName"])
    resp, out = invoke_json(lambda_client, created["FunctionName"])
    assert resp.get("FunctionError") == "Unhandled"
    assert out["errorType"] == "Runtime.ImportModuleError", out
    assert "Layers" not in lambda_client.get_function_configuration(
        FunctionName=created["FunctionName"]
    )


@needs_sandbox
def test_layers_appear_on_every_start_path(lambda_client, two_layers, tern_server):
    """Concurrent cold starts take whatever the server built ahead of time (held
    sandboxes, runtimes started ahead) or start from scratch; every one shows the
    layers. Functions with LC_* set get no zygote and no runtime started ahead."""
    a, b = two_layers
    streams = []
    for env in ({}, {"LC_ALL": "C.UTF-8"}, {"LC_ALL": "C.UTF-8"}):
        fn = create_and_wait(
            lambda_client, build_zip({"app.py": LAYERED_PY}), name=unique_name("paths"),
            Layers=[a, b], Environment={"Variables": env}, Timeout=30,
        )["FunctionName"]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda _: invoke_json(lambda_client, fn)[1], range(4)))
        for out in outs:
            assert (out["mylib"], out["shared"]) == ("layer-a", "layer-b"), out
            assert out["opt_writable"] is False
            # The layers' overlay names its directories by descriptor, never by path.
            assert str(tern_server.data_dir) not in out["mountinfo"], out["mountinfo"]
            streams.append(out["stream"])
    instance_ids = [s.split("]", 1)[1] for s in streams]
    # Held sandboxes (ids h<n>-...) got their layers attached after they were built.
    assert any(re.match(r"h\d+-", i) for i in instance_ids), instance_ids


@needs_sandbox
def test_a_runtime_started_ahead_sees_its_layers(lambda_client, two_layers):
    """The default server keeps Python runtimes started (forked by the namespace's
    zygote) before any function is known: a cold start of a fresh function takes one,
    and its layers are mounted after the interpreter started."""
    a, b = two_layers
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        fn = create_and_wait(
            lambda_client, build_zip({"app.py": LAYERED_PY}), name=unique_name("ahead"),
            Layers=[a, b],
        )["FunctionName"]
        _, out = invoke_json(lambda_client, fn)
        assert (out["mylib"], out["shared"]) == ("layer-a", "layer-b"), out
        if out["age"] > 0.3:
            return
        seen.append(round(out["age"], 3))
        time.sleep(0.5)  # the pool refills in the background
    pytest.fail(f"no cold start took a runtime started ahead (ages in s): {seen}")


@needs_sandbox
def test_node_function_requires_a_module_from_opt_nodejs_node_modules(lambda_client):
    """Also from a Node runtime started ahead of its function, whose module paths were
    set before its layers were mounted."""
    layer = publish(lambda_client, build_zip({
        "nodejs/node_modules/greeter/index.js":
            "module.exports = (who) => `hello ${who} from a layer`;\n",
    }), CompatibleRuntimes=[NODE_RUNTIME])
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        fn = create_and_wait(
            lambda_client, build_zip({"index.js": LAYERED_JS}), name=unique_name("node-layer"),
            runtime=NODE_RUNTIME, handler="index.handler", Layers=[layer["LayerVersionArn"]],
        )["FunctionName"]
        _, out = invoke_json(lambda_client, fn)
        assert (out["greeting"], out["from"]) == (
            "hello layers from a layer",
            "/opt/nodejs/node_modules/greeter/index.js",
        ), out
        if out["startedAhead"]:
            return
        seen.append(out["stream"])
        time.sleep(0.5)
    pytest.fail(f"no cold start took a Node runtime started ahead: {seen}")


def test_six_layers_are_rejected(lambda_client, two_layers):
    arns = [publish(lambda_client, layer_a())["LayerVersionArn"] for _ in range(6)]
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
        lambda_client.create_function(
            FunctionName=unique_name("six"), Runtime=PYTHON_RUNTIME, Role="r",
            Handler="app.handler", Code={"ZipFile": build_zip({"app.py": LAYERED_PY})},
            Layers=arns,
        )
    assert "more than 5 layers" in str(e.value)


def test_bad_and_missing_layer_arns_are_named(lambda_client, two_layers):
    a, _ = two_layers
    code = build_zip({"app.py": LAYERED_PY})
    for bad in ["mylayer:1", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f:1"]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            lambda_client.create_function(
                FunctionName=unique_name("bad"), Runtime=PYTHON_RUNTIME, Role="r",
                Handler="app.handler", Code={"ZipFile": code}, Layers=[bad],
            )
        assert e.value.response["Error"]["Code"] in (
            "InvalidParameterValueException", "ValidationException"
        )
        assert bad in str(e.value)
    missing = a.rsplit(":", 1)[0] + ":999"
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
        lambda_client.create_function(
            FunctionName=unique_name("missing"), Runtime=PYTHON_RUNTIME, Role="r",
            Handler="app.handler", Code={"ZipFile": code}, Layers=[missing],
        )
    assert f"Layer version {missing} does not exist" in str(e.value)


def test_code_plus_layers_over_250_mb_unzipped_is_rejected(make_client):
    client = make_client(read_timeout=300)
    # Five layers of 45 MB of zeros (tiny when deflated) and 30 MB of code: 255 MB.
    zeros = io.BytesIO()
    with zipfile.ZipFile(zeros, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("python/blob.bin", b"\0" * (45 * 1024 * 1024))
    arns = [publish(client, zeros.getvalue())["LayerVersionArn"] for _ in range(5)]
    code = build_zip({"app.py": LAYERED_PY, "pad.bin": b"\0" * (30 * 1024 * 1024)})
    with pytest.raises(client.exceptions.InvalidParameterValueException) as e:
        client.create_function(
            FunctionName=unique_name("huge"), Runtime=PYTHON_RUNTIME, Role="r",
            Handler="app.handler", Code={"ZipFile": code}, Layers=arns,
        )
    assert "Function code combined with layers exceeds the maximum allowed size of 262144000 bytes" in str(e.value)
    # Within the cap it is accepted, and a later code update over it is refused.
    fn = create_and_wait(client, build_zip({"app.py": LAYERED_PY}), name=unique_name("nearcap"),
                         Layers=arns)["FunctionName"]
    with pytest.raises(client.exceptions.InvalidParameterValueException):
        client.update_function_code(FunctionName=fn, ZipFile=code)


def test_hostile_layer_zips_are_rejected(lambda_client):
    def raw_zip(name, data, mode):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
        return buf.getvalue()

    traversal = raw_zip("../../etc/evil", "x", 0o100644)
    absolute = raw_zip("/etc/evil", "x", 0o100644)
    escaping_link = raw_zip("python/escape", "/etc/shadow", stat.S_IFLNK | 0o777)
    upward_link = raw_zip("python/up", "../../../etc", stat.S_IFLNK | 0o777)
    for zip_bytes in (traversal, absolute, escaping_link, upward_link):
        with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
            publish(lambda_client, zip_bytes)
        assert "points outside the package" in str(e.value)


TERN_PEEK_PY = """\
import os


def handler(event, context):
    with open("/opt/tern/python/bootstrap.py") as f:
        bootstrap = f.read()
    return {
        "bootstrap_replaced": "EVIL" in bootstrap,
        "tern_listing": sorted(os.listdir("/opt/tern")),
        "own_file": open("/opt/mine.txt").read(),
        "stream": context.log_stream_name,
    }
"""


@needs_sandbox
def test_a_layer_cannot_replace_or_add_to_terns_bootstraps(lambda_client):
    """/opt/tern is tern's: a layer's `tern/` shows nothing there, whichever way the
    instance started (started ahead, or a sandbox built with its layers)."""
    evil = publish(lambda_client, build_zip({
        "tern/python/bootstrap.py": "EVIL = True\n",
        "tern/evil.txt": "x",
        "mine.txt": "mine",
    }))["LayerVersionArn"]
    for env in ({}, {"LC_ALL": "C.UTF-8"}):
        fn = create_and_wait(
            lambda_client, build_zip({"app.py": TERN_PEEK_PY}), name=unique_name("peek"),
            Layers=[evil], Environment={"Variables": env},
        )["FunctionName"]
        _, out = invoke_json(lambda_client, fn)
        assert out["bootstrap_replaced"] is False, out
        assert "evil.txt" not in out["tern_listing"], out
        assert out["own_file"] == "mine"
