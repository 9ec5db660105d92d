"""What a function's code finds around it: Lambda's import paths with the runtime's own
boto3 and nothing of the host's packages, Lambda's environment, and Lambda's logging set-up
as AWS Lambda Powertools expects it."""

import base64
import json
import re
from pathlib import Path

from calls import invoke_json, unique_name
from packages import NODE_RUNTIME, PYTHON_RUNTIME, build_zip

REPO = Path(__file__).resolve().parents[2]
# The pins tern installs by default (one source: the runtime crate).
PINNED = dict(re.findall(
    r'"(boto3|botocore)==([^"]+)"',
    re.search(r"DEFAULT_REQUIREMENTS: &\[&str\] = &\[(.*?)\];",
              (REPO / "crates" / "runtime" / "src" / "python_sdk.rs").read_text()).group(1),
))

BOTO3_APP = """\
import os
import sys

import boto3


def handler(event, context):
    client = boto3.client("lambda", endpoint_url="http://127.0.0.1:9")
    return {
        "boto3": boto3.__version__,
        "boto3_file": boto3.__file__,
        "botocore": __import__("botocore").__version__,
        "client_region": client.meta.region_name,
        "client_endpoint": client.meta.endpoint_url,
        "sys_path": sys.path,
        "base_prefix": sys.base_prefix,
        "version": list(sys.version_info[:2]),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "LAMBDA_"))},
        "host_modules": sorted(m for m in ("_distutils_hack", "certifi", "pip", "setuptools")
                               if m in sys.modules),
    }
"""

NODE_PATHS_APP = """\
exports.handler = async () => ({
  modulePaths: module.paths,
  resolvePaths: require.resolve.paths('some-package'),
  nodePath: process.env.NODE_PATH,
  taskRoot: process.env.LAMBDA_TASK_ROOT,
});
"""

POWERTOOLS_APP = """\
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

logger = Logger(service="compat-orders")
app = APIGatewayHttpResolver()


@app.get("/hello/<name>")
def hello(name):
    logger.info("greeting", extra={"who": name})
    return {"message": f"hello {name}"}


@logger.inject_lambda_context
def handler(event, context):
    if "rawPath" in event:
        return app.resolve(event, context)
    logger.info("powertools-line", extra={"marker": event["marker"]})
    logger.warning("powertools-warning %s", event["marker"])
    return "logged"
"""


def http_api_event(method, path):
    """A function URL / HTTP API (payload format 2.0) event."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "abc.lambda-url.us-east-1.on.aws", "user-agent": "compat"},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "compat"},
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "07/Dec/2026:01:00:00 +0000",
            "timeEpoch": 1796605200000,
        },
        "isBase64Encoded": False,
    }


def zip_tree(tree, files):
    """`files` plus the Python sources installed in `tree` (no bytecode, no metadata)."""
    packed = dict(files)
    for path in sorted(tree.rglob("*.py")):
        rel = path.relative_to(tree)
        if "__pycache__" not in rel.parts and rel.parts[0] != "bin":
            packed[rel.as_posix()] = path.read_bytes()
    return build_zip(packed)


def test_python_function_imports_the_pinned_boto3_with_lambdas_sys_path(lambda_client, deploy,
                                                                          tern_server):
    code = build_zip({"app.py": BOTO3_APP})
    assert len(code) < 4096, "a few KB: boto3 comes from the runtime, not the zip"
    name = deploy(code, name=unique_name("boto3"), Timeout=30)["FunctionName"]
    resp, out = invoke_json(lambda_client, name)
    assert "FunctionError" not in resp, out

    assert out["boto3"] == PINNED["boto3"] and out["botocore"] == PINNED["botocore"]
    assert out["client_region"] == "us-east-1"
    assert out["client_endpoint"] == "http://127.0.0.1:9"
    task_root, runtime_dir = out["env"]["LAMBDA_TASK_ROOT"], out["env"]["LAMBDA_RUNTIME_DIR"]
    if tern_server.sandboxed:
        assert (task_root, runtime_dir) == ("/var/task", "/var/runtime")
    assert out["boto3_file"] == f"{runtime_dir}/boto3/__init__.py"
    base = out["base_prefix"]
    major, minor = out["version"]
    assert f"python{major}.{minor}" == PYTHON_RUNTIME
    assert out["sys_path"] == [
        task_root,
        f"/opt/python/lib/python{major}.{minor}/site-packages",
        "/opt/python",
        f"{base}/lib/python{major}{minor}.zip",
        f"{base}/lib/python{major}.{minor}",
        f"{base}/lib/python{major}.{minor}/lib-dynload",
        runtime_dir,
    ]
    assert out["host_modules"] == [], "nothing a host .pth file imports is loaded"


def test_functions_get_the_region_and_no_credentials(lambda_client, deploy):
    name = deploy(build_zip({"app.py": BOTO3_APP}), name=unique_name("env"), Timeout=30)[
        "FunctionName"]
    _, out = invoke_json(lambda_client, name)
    env = out["env"]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    for secret in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert secret not in env
    # Functions cannot reach tern's API yet (loopback-only network): no endpoint to call.
    assert "AWS_ENDPOINT_URL_LAMBDA" not in env


def test_node_function_resolves_modules_from_lambdas_paths_only(lambda_client, deploy,
                                                                tern_server):
    name = deploy(build_zip({"index.js": NODE_PATHS_APP}), name=unique_name("nodepaths"),
                  runtime=NODE_RUNTIME, handler="index.handler")["FunctionName"]
    resp, out = invoke_json(lambda_client, name)
    assert "FunctionError" not in resp, out
    major = NODE_RUNTIME.removeprefix("nodejs").removesuffix(".x")
    # Unsandboxed, /var/task in the environment names the code's host directory.
    task_root = out["taskRoot"]
    if tern_server.sandboxed:
        assert task_root == "/var/task"
        assert out["modulePaths"] == ["/var/task/node_modules", "/var/node_modules",
                                      "/node_modules"]
    assert out["nodePath"] == (
        f"/opt/nodejs/node{major}/node_modules:/opt/nodejs/node_modules:{task_root}")
    assert out["resolvePaths"] == out["modulePaths"] + [
        f"/opt/nodejs/node{major}/node_modules",
        "/opt/nodejs/node_modules",
        task_root,
        "/tmp/.node_modules",
        "/tmp/.node_libraries",
        "/var/lang/lib/node",
    ]


def test_powertools_logger_lines_appear_once(lambda_client, deploy, powertools_deps):
    code = zip_tree(powertools_deps, {"app.py": POWERTOOLS_APP})
    name = deploy(code, name=unique_name("powertools"), Timeout=30)["FunctionName"]
    marker = unique_name("m")
    resp, out = invoke_json(lambda_client, name, {"marker": marker}, LogType="Tail")
    assert "FunctionError" not in resp, out
    assert out == "logged"
    log = base64.b64decode(resp["LogResult"]).decode()
    info = [line for line in log.splitlines() if "powertools-line" in line]
    warning = [line for line in log.splitlines() if f"powertools-warning {marker}" in line]
    assert len(info) == 1 and len(warning) == 1, log
    record = json.loads(info[0])
    assert record["level"] == "INFO" and record["service"] == "compat-orders"
    assert record["marker"] == marker
    assert record["function_request_id"] == resp["ResponseMetadata"]["RequestId"]


def test_powertools_http_resolver_answers_a_function_url_event(lambda_client, deploy,
                                                               powertools_deps):
    code = zip_tree(powertools_deps, {"app.py": POWERTOOLS_APP})
    name = deploy(code, name=unique_name("powertools-http"), Timeout=30)["FunctionName"]
    resp, out = invoke_json(lambda_client, name, http_api_event("GET", "/hello/ada"),
                            LogType="Tail")
    assert "FunctionError" not in resp, out
    assert out["statusCode"] == 200
    assert json.loads(out["body"]) == {"message": "hello ada"}
    assert out["headers"]["Content-Type"] == "application/json"
    log = base64.b64decode(resp["LogResult"]).decode()
    assert len([line for line in log.splitlines() if "greeting" in line]) == 1, log
    resp, out = invoke_json(lambda_client, name, http_api_event("GET", "/nowhere"))
    assert out["statusCode"] == 404
