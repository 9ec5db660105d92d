"""Deployment packages (zip files built in memory) for the compat suite's functions."""

import io
import os
import zipfile
from pathlib import Path

PYTHON_RUNTIME = "python3.11"
PYTHON_HANDLER = "app.handler"
NODE_RUNTIME = "nodejs20.x"
NODE_HANDLER = "index.handler"
PROVIDED_RUNTIME = "provided.al2023"

# One handler driven by the event, so each test says what it wants the function to do.
PYTHON_APP = '''\
import os
import time

VERSION = "{version}"


def handler(event, context):
    event = event if isinstance(event, dict) else {{"value": event}}
    action = event.get("action", "echo")
    if action == "raise":
        raise ValueError(event.get("message", "boom"))
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "exit":
        os._exit(3)
    if action == "big":
        return "x" * event["bytes"]
    if action == "chatty":
        for i in range(event["lines"]):
            print(f"chatty line {{i:05d}} " + "." * 60)
    print("compat-log", event.get("marker", ""))
    return {{
        "version": VERSION,
        "event": event,
        "greeting": os.environ.get("GREETING"),
        "lambda_env": {{k: os.environ.get(k) for k in (
            "AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "LAMBDA_TASK_ROOT", "_HANDLER")}},
        "function_name": context.function_name,
        "memory_limit_in_mb": int(context.memory_limit_in_mb),
        "aws_request_id": context.aws_request_id,
        "invoked_function_arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }}
'''

NODE_APP = """\
exports.handler = async (event, context) => {
  if (event && event.action === 'raise') {
    throw new TypeError(event.message || 'boom');
  }
  console.log('compat-log', (event && event.marker) || '');
  return {
    runtime: 'node',
    event,
    functionName: context.functionName,
    memoryLimitInMB: String(context.memoryLimitInMB),
    awsRequestId: context.awsRequestId,
    invokedFunctionArn: context.invokedFunctionArn,
    remainingMs: context.getRemainingTimeInMillis(),
  };
};
"""

# Handler for the awslambdaric (provided runtime) function; reports what the RIC saw.
RIC_APP = """\
class PaymentDeclined(Exception):
    pass


def handler(event, context):
    if event.get("action") == "raise":
        raise PaymentDeclined(event.get("message", "declined"))
    print("ric-log", event.get("marker", ""))
    return {
        "event": event,
        "function_name": context.function_name,
        "memory_limit_in_mb": int(context.memory_limit_in_mb),
        "aws_request_id": context.aws_request_id,
        "invoked_function_arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
"""

# The code is read-only at /var/task inside the sandbox; unsandboxed, LAMBDA_TASK_ROOT is
# translated to the host directory, so prefer it and fall back to the sandbox path.
RIC_BOOTSTRAP = """\
#!/bin/sh
export PYTHONPATH="${LAMBDA_TASK_ROOT:-/var/task}"
exec python3 -m awslambdaric app.handler
"""


def build_zip(files):
    """A zip of `files`: {name: text | bytes | (text | bytes, unix_mode)}."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            mode = 0o644
            if isinstance(content, tuple):
                content, mode = content
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return buf.getvalue()


def python_zip(version="v1"):
    return build_zip({"app.py": PYTHON_APP.format(version=version)})


def node_zip():
    return build_zip({"index.js": NODE_APP})


def awslambdaric_zip(deps_dir: Path, app=RIC_APP):
    """bootstrap + app.py + every file installed in `deps_dir` (awslambdaric and its deps)."""
    files = {"bootstrap": (RIC_BOOTSTRAP, 0o755), "app.py": app}
    for path in sorted(deps_dir.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            files[path.relative_to(deps_dir).as_posix()] = (path.read_bytes(), mode)
    return build_zip(files)
