"""Tests for runtimes/python/bootstrap.py.

Each test starts an in-process fake Lambda Runtime API (2018-06-01) and runs
bootstrap.py as a subprocess against a temporary task root.

Run from the repository root:  python3 -m pytest -q runtimes/python/tests
"""

import http.server
import json
import os
import queue
import re
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

BOOTSTRAP = os.environ.get("TERN_PY_BOOTSTRAP") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "bootstrap.py")
)
API = "/2018-06-01/runtime"
WAIT = 5.0
ARN = "arn:aws:lambda:us-east-1:123456789012:function:my-func"


class FakeRuntimeAPI(object):
    """A minimal Runtime API: queued events, recorded responses/errors."""

    def __init__(self):
        self.events = queue.Queue()
        self.cond = threading.Condition()
        self.responses = {}  # request id -> (headers dict, body bytes)
        self.errors = {}  # request id -> (headers dict, body bytes)
        self.init_errors = []  # [(headers dict, body bytes)]
        self.response_status = {}  # request id -> forced HTTP status for /response
        self.next_calls = 0
        self.stopped = False
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status, body=b"", headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != API + "/invocation/next":
                    return self._reply(404, b'{"errorType":"NotFound"}')
                with api.cond:
                    api.next_calls += 1
                    api.cond.notify_all()
                while True:  # long poll
                    try:
                        item = api.events.get(timeout=0.1)
                        break
                    except queue.Empty:
                        if api.stopped:
                            return self._reply(500, b"{}")
                if item is None:
                    return self._reply(500, b"{}")
                headers, body = item
                self._reply(200, body, headers)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                parts = self.path[len(API):].strip("/").split("/")
                status = 202
                with api.cond:
                    if parts == ["init", "error"]:
                        api.init_errors.append((hdrs, body))
                    elif len(parts) == 3 and parts[0] == "invocation" and parts[2] == "response":
                        status = api.response_status.get(parts[1], 202)
                        api.responses[parts[1]] = (hdrs, body)
                    elif len(parts) == 3 and parts[0] == "invocation" and parts[2] == "error":
                        api.errors[parts[1]] = (hdrs, body)
                    else:
                        status = 404
                    api.cond.notify_all()
                self._reply(status, b'{"status":"OK"}' if status < 300 else b'{"errorType":"X"}')

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.server.server_address[1]

    def invoke(self, event=None, raw=None, request_id=None, headers=None, deadline_in_ms=3000):
        request_id = request_id or str(uuid.uuid4())
        h = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + deadline_in_ms),
            "Lambda-Runtime-Invoked-Function-Arn": ARN,
            "Lambda-Runtime-Trace-Id": "Root=1-5e1b4151-5ac6c58f5b5daa6532e4f2ad;Parent=1;Sampled=1",
        }
        h.update(headers or {})
        body = raw if raw is not None else json.dumps(event).encode("utf-8")
        self.events.put((h, body))
        return request_id

    def wait_result(self, request_id, timeout=WAIT):
        """Returns ("response"|"error", headers, body bytes)."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                if request_id in self.responses:
                    return ("response",) + self.responses[request_id]
                if request_id in self.errors:
                    return ("error",) + self.errors[request_id]
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("no result for %s" % request_id)
                self.cond.wait(left)

    def wait_next_calls(self, n, timeout=WAIT):
        deadline = time.time() + timeout
        with self.cond:
            while self.next_calls < n:
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("runtime made only %d /next calls" % self.next_calls)
                self.cond.wait(left)

    def close(self):
        self.stopped = True
        self.events.put(None)
        self.server.shutdown()
        self.server.server_close()


class Runtime(object):
    def __init__(self, tmp_path):
        self.api = FakeRuntimeAPI()
        self.task_root = tmp_path / "task"
        self.task_root.mkdir()
        self.proc = None
        self._out = None

    def write(self, relpath, source):
        p = self.task_root / relpath
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(source), encoding="utf-8")

    def start(self, handler, extra_env=None, python_flags=(), pass_fds=()):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "_HANDLER", "LAMBDA_"))}
        env.pop("_X_AMZN_TRACE_ID", None)
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONUNBUFFERED", None)  # the bootstrap must flush by itself
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": self.api.address,
                "_HANDLER": handler,
                "LAMBDA_TASK_ROOT": str(self.task_root),
                "AWS_LAMBDA_FUNCTION_NAME": "my-func",
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
                "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/my-func",
                "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]abcdef",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        env.update(extra_env or {})
        self.proc = subprocess.Popen(
            [sys.executable, *python_flags, BOOTSTRAP],
            cwd=str(self.task_root),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
        )
        return self.proc

    def wait_exit(self, timeout=WAIT):
        out, _ = self.proc.communicate(timeout=timeout)
        self._out = out.decode("utf-8", "replace")
        return self.proc.returncode, self._out

    def output(self):
        """Stop the runtime and return everything it printed."""
        if self._out is None:
            if self.proc.poll() is None:
                self.proc.kill()
            out, _ = self.proc.communicate(timeout=WAIT)
            self._out = out.decode("utf-8", "replace")
        return self._out

    def close(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            try:
                self.proc.communicate(timeout=WAIT)
            except Exception:
                pass
        self.api.close()


@pytest.fixture
def rt(tmp_path):
    r = Runtime(tmp_path)
    yield r
    r.close()


def invoke_json(rt, event=None, **kw):
    rid = rt.api.invoke(event, **kw)
    kind, headers, body = rt.api.wait_result(rid)
    return kind, headers, body, rid


# ---------------------------------------------------------------------------
# Invocation


def test_success_result(rt):
    rt.write("app.py", """
        def handler(event, context):
            return {"ok": True, "sum": event["a"] + event["b"]}
    """)
    rt.start("app.handler")
    kind, headers, body, _ = invoke_json(rt, {"a": 2, "b": 3})
    assert kind == "response"
    assert json.loads(body) == {"ok": True, "sum": 5}


def test_event_and_context_reach_handler(rt):
    rt.write("app.py", """
        import os
        def handler(event, context):
            return {
                "event": event,
                "function_name": context.function_name,
                "function_version": context.function_version,
                "memory": context.memory_limit_in_mb,
                "arn": context.invoked_function_arn,
                "request_id": context.aws_request_id,
                "log_group": context.log_group_name,
                "log_stream": context.log_stream_name,
                "remaining": context.get_remaining_time_in_millis(),
                "trace": os.environ.get("_X_AMZN_TRACE_ID"),
                "cc_custom": context.client_context.custom if context.client_context else None,
                "identity_id": context.identity.cognito_identity_id if context.identity else None,
            }
    """)
    rt.start("app.handler")
    headers = {
        "Lambda-Runtime-Client-Context": json.dumps({"custom": {"k": "v"}, "env": {}, "client": {}}),
        "Lambda-Runtime-Cognito-Identity": json.dumps({"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "p"}),
    }
    kind, _, body, rid = invoke_json(rt, {"hello": ["world", 1, None]}, headers=headers, deadline_in_ms=10000)
    assert kind == "response"
    r = json.loads(body)
    assert r["event"] == {"hello": ["world", 1, None]}
    assert r["function_name"] == "my-func"
    assert r["function_version"] == "$LATEST"
    assert r["memory"] == 256 and isinstance(r["memory"], int)
    assert r["arn"] == ARN
    assert r["request_id"] == rid
    assert r["log_group"] == "/aws/lambda/my-func"
    assert r["log_stream"] == "2024/01/01/[$LATEST]abcdef"
    assert 0 < r["remaining"] <= 10000
    assert r["trace"].startswith("Root=1-5e1b4151")
    assert r["cc_custom"] == {"k": "v"}
    assert r["identity_id"] == "id-1"


def test_remaining_time_never_negative(rt):
    rt.write("app.py", """
        def handler(event, context):
            return context.get_remaining_time_in_millis()
    """)
    rt.start("app.handler")
    kind, _, body, _ = invoke_json(rt, {}, deadline_in_ms=-5000)
    assert kind == "response"
    assert json.loads(body) == 0


def test_handler_exception_shape(rt):
    rt.write("app.py", """
        def helper():
            raise ValueError("boom")

        def handler(event, context):
            if event.get("fail"):
                helper()
            return "fine"
    """)
    rt.start("app.handler")
    kind, headers, body, rid = invoke_json(rt, {"fail": True})
    assert kind == "error"
    assert headers["lambda-runtime-function-error-type"] == "Unhandled"
    err = json.loads(body)
    assert err["errorType"] == "ValueError"
    assert err["errorMessage"] == "boom"
    assert err["requestId"] == rid
    stack = err["stackTrace"]
    assert isinstance(stack, list) and len(stack) == 2
    app_py = str(rt.task_root / "app.py")
    assert stack[0].startswith('  File "%s", line ' % app_py)
    assert "in handler\n    helper()\n" in stack[0]
    assert stack[1].endswith('in helper\n    raise ValueError("boom")\n')
    assert not any("bootstrap" in s for s in stack)
    assert not any("^^^" in s for s in stack)

    # The process survives and keeps serving.
    kind, _, body, _ = invoke_json(rt, {"fail": False})
    assert (kind, json.loads(body)) == ("response", "fine")

    out = rt.output()
    assert "[ERROR] ValueError: boom\nTraceback (most recent call last):\n" in out
    assert 'raise ValueError("boom")' in out


def test_marshal_error(rt):
    rt.write("app.py", """
        class Thing(object):
            pass
        def handler(event, context):
            return {"x": Thing()}
    """)
    rt.start("app.handler")
    kind, headers, body, rid = invoke_json(rt, {})
    assert kind == "error"
    err = json.loads(body)
    assert err["errorType"] == "Runtime.MarshalError"
    assert err["errorMessage"] == "Unable to marshal response: Object of type Thing is not JSON serializable"
    assert err["requestId"] == rid
    assert headers["lambda-runtime-function-error-type"] == "Runtime.MarshalError"


def test_unmarshal_error(rt):
    rt.write("app.py", """
        def handler(event, context):
            return "called"
    """)
    rt.start("app.handler")
    kind, _, body, _ = invoke_json(rt, raw=b"{not json")
    assert kind == "error"
    err = json.loads(body)
    assert err["errorType"] == "Runtime.UnmarshalError"
    assert err["errorMessage"].startswith("Unable to unmarshal input: ")
    # Still alive afterwards.
    kind, _, body, _ = invoke_json(rt, {})
    assert (kind, json.loads(body)) == ("response", "called")


def test_none_result_is_null_and_empty_body_is_none(rt):
    rt.write("app.py", """
        def handler(event, context):
            if event is not None:
                raise RuntimeError("expected None event, got %r" % (event,))
            return None
    """)
    rt.start("app.handler")
    kind, _, body, _ = invoke_json(rt, raw=b"")
    assert kind == "response"
    assert body == b"null"
    kind, _, body, _ = invoke_json(rt, None)  # JSON "null"
    assert (kind, body) == ("response", b"null")


def test_unicode_payloads(rt):
    rt.write("app.py", """
        def handler(event, context):
            print("got " + event["s"])
            return {"echo": event["s"], "len": len(event["s"]), "extra": "ünïcødé ✓ 😀"}
    """)
    rt.start("app.handler")
    s = "héllo wörld ✓ 日本語 😀"
    rid = rt.api.invoke(raw=json.dumps({"s": s}, ensure_ascii=False).encode("utf-8"))
    kind, _, body = rt.api.wait_result(rid)
    assert kind == "response"
    r = json.loads(body.decode("utf-8"))
    assert r == {"echo": s, "len": len(s), "extra": "ünïcødé ✓ 😀"}
    assert "got " + s in rt.output()


def test_warm_reuse_keeps_module_state(rt):
    rt.write("app.py", """
        import os
        COUNT = {"n": 0}
        def handler(event, context):
            COUNT["n"] += 1
            return {"n": COUNT["n"], "pid": os.getpid()}
    """)
    proc = rt.start("app.handler")
    _, _, b1, _ = invoke_json(rt, {})
    _, _, b2, _ = invoke_json(rt, {})
    r1, r2 = json.loads(b1), json.loads(b2)
    assert (r1["n"], r2["n"]) == (1, 2)
    assert r1["pid"] == r2["pid"] == proc.pid
    rt.api.wait_next_calls(3)  # back to polling after each invocation


def test_stdout_flushed_per_invocation(rt):
    rt.write("app.py", """
        import sys
        def handler(event, context):
            sys.stdout.write("partial-no-newline-" + event)
            sys.stderr.write("err-line-" + event)
            return "ok"
    """)
    rt.start("app.handler")
    invoke_json(rt, "one")
    rt.api.wait_next_calls(2)
    # Output must be readable while the process is still alive (no buffering).
    os.set_blocking(rt.proc.stdout.fileno(), False)
    got = b""
    deadline = time.time() + WAIT
    while time.time() < deadline and (b"partial-no-newline-one" not in got or b"err-line-one" not in got):
        chunk = rt.proc.stdout.read()
        if chunk:
            got += chunk
        else:
            time.sleep(0.01)
    assert rt.proc.poll() is None
    assert b"partial-no-newline-one" in got and b"err-line-one" in got


def test_nested_module_path(rt):
    rt.write("sub/dir/__init__.py", "")
    rt.write("sub/dir/mod.py", """
        from . import helper
        def handler(event, context):
            return helper.value() + event
    """)
    rt.write("sub/dir/helper.py", """
        def value():
            return "nested:"
    """)
    rt.start("sub/dir.mod.handler")
    kind, _, body, _ = invoke_json(rt, "ok")
    assert (kind, json.loads(body)) == ("response", "nested:ok")


def test_path_handler_sibling_import(rt):
    rt.write("src/app.py", """
        import util
        def handler(event, context):
            return util.f()
    """)
    rt.write("src/util.py", """
        def f():
            return "from-src"
    """)
    rt.start("src/app.handler")
    kind, _, body, _ = invoke_json(rt, {})
    assert (kind, json.loads(body)) == ("response", "from-src")


def test_dotted_package_handler(rt):
    rt.write("pkg/__init__.py", "")
    rt.write("pkg/mod.py", """
        def handler(event, context):
            return __name__
    """)
    rt.start("pkg.mod.handler")
    kind, _, body, _ = invoke_json(rt, {})
    assert (kind, json.loads(body)) == ("response", "pkg.mod")


def test_oversized_response_rejection_is_ignored(rt):
    rt.write("app.py", """
        def handler(event, context):
            return event
    """)
    rt.start("app.handler")
    rid = str(uuid.uuid4())
    rt.api.response_status[rid] = 413
    rt.api.invoke({"big": True}, request_id=rid)
    kind, _, _ = rt.api.wait_result(rid)
    assert kind == "response"
    kind, _, body, _ = invoke_json(rt, {"after": 1})
    assert (kind, json.loads(body)) == ("response", {"after": 1})
    assert rid not in rt.api.errors  # nothing else reported for it


# ---------------------------------------------------------------------------
# Init errors


def init_error(rt, handler):
    rt.start(handler)
    code, out = rt.wait_exit()
    assert code == 1, out
    assert len(rt.api.init_errors) == 1, out
    headers, body = rt.api.init_errors[0]
    err = json.loads(body)
    assert headers["lambda-runtime-function-error-type"] == err["errorType"]
    assert err["requestId"] == ""
    assert rt.api.next_calls == 0
    return err, out


def test_import_module_error(rt):
    err, out = init_error(rt, "app.handler")
    assert err["errorType"] == "Runtime.ImportModuleError"
    assert err["errorMessage"] == "Unable to import module 'app': No module named 'app'"
    assert err["stackTrace"] == []
    assert out.startswith(
        "[ERROR] Runtime.ImportModuleError: Unable to import module 'app': No module named 'app'\n"
        "Traceback (most recent call last):"
    )


def test_import_error_inside_user_module(rt):
    rt.write("app.py", """
        import definitely_not_installed_xyz
        def handler(event, context):
            return 1
    """)
    err, _ = init_error(rt, "app.handler")
    assert err["errorType"] == "Runtime.ImportModuleError"
    assert err["errorMessage"] == "Unable to import module 'app': No module named 'definitely_not_installed_xyz'"


def test_handler_not_found(rt):
    rt.write("app.py", """
        def handler(event, context):
            return 1
    """)
    err, out = init_error(rt, "app.nope")
    assert err["errorType"] == "Runtime.HandlerNotFound"
    assert err["errorMessage"] == "Handler 'nope' missing on module 'app'"
    assert "[ERROR] Runtime.HandlerNotFound: Handler 'nope' missing on module 'app'" in out


def test_malformed_handler_name(rt):
    err, _ = init_error(rt, "x")
    assert err["errorType"] == "Runtime.MalformedHandlerName"
    assert err["errorMessage"] == "Bad handler 'x': not enough values to unpack (expected 2, got 1)"


def test_user_code_syntax_error(rt):
    rt.write("app.py", """
        def handler(event, context)
            return 1
    """)
    err, _ = init_error(rt, "app.handler")
    assert err["errorType"] == "Runtime.UserCodeSyntaxError"
    assert err["errorMessage"].startswith("Syntax error in module 'app': ")
    assert "app.py" in err["errorMessage"]
    assert len(err["stackTrace"]) == 1 and "app.py" in err["stackTrace"][0]


def test_exception_at_import_time(rt):
    rt.write("app.py", """
        x = 1
        raise Exception("boom")
        def handler(event, context):
            return 1
    """)
    err, out = init_error(rt, "app.handler")
    assert err["errorType"] == "Exception"
    assert err["errorMessage"] == "boom"
    assert any(str(rt.task_root / "app.py") in s and 'raise Exception("boom")' in s for s in err["stackTrace"])
    assert not any(BOOTSTRAP in s for s in err["stackTrace"])
    assert "[ERROR] Exception: boom\nTraceback (most recent call last):\n" in out


def test_bootstrap_dir_not_importable(rt):
    # A user module must not resolve to the runtime's own bootstrap.py.
    err, _ = init_error(rt, "bootstrap.handler")
    assert err["errorType"] == "Runtime.ImportModuleError"
    assert err["errorMessage"] == "Unable to import module 'bootstrap': No module named 'bootstrap'"


def test_stdout_line_buffered_during_invocation(rt):
    # A printed line must reach the pipe while the handler is still running.
    rt.write("app.py", """
        import os, time
        def handler(event, context):
            print("line-while-running")
            deadline = time.time() + 3
            while not os.path.exists("release") and time.time() < deadline:
                time.sleep(0.01)
            return os.path.exists("release")
    """)
    rt.start("app.handler")
    rid = rt.api.invoke({})
    os.set_blocking(rt.proc.stdout.fileno(), False)
    got = b""
    deadline = time.time() + 2
    while time.time() < deadline and b"line-while-running\n" not in got:
        chunk = rt.proc.stdout.read()
        if chunk:
            got += chunk
        else:
            time.sleep(0.01)
    assert b"line-while-running\n" in got
    (rt.task_root / "release").write_text("")
    kind, _, body = rt.api.wait_result(rid)
    assert (kind, json.loads(body)) == ("response", True)


def test_runtime_started_ahead_reads_its_instance_from_the_config_fd(rt, tmp_path):
    # Started before its instance is known: empty task root, no handler, no function.
    empty = tmp_path / "empty"
    empty.mkdir()
    code = tmp_path / "code"
    code.mkdir()
    (code / "late.py").write_text(
        "import os\n"
        "def handler(event, context):\n"
        "    return {'name': context.function_name, 'greeting': os.environ.get('GREETING'),\n"
        "            'cwd': os.getcwd(), 'fd': os.environ.get('TERN_CONFIG_FD'),\n"
        "            'stale': os.environ.get('STALE')}\n"
    )
    r, w = os.pipe()
    rt.start("", extra_env={"TERN_CONFIG_FD": str(r), "LAMBDA_TASK_ROOT": str(empty),
                            "AWS_LAMBDA_FUNCTION_NAME": "", "STALE": "start-up only"},
             pass_fds=(r,))
    os.close(r)
    rid = rt.api.invoke({})
    time.sleep(0.3)
    assert rt.api.next_calls == 0, "no invocation before the configuration"
    env = {
        "AWS_LAMBDA_RUNTIME_API": rt.api.address,
        "_HANDLER": "late.handler",
        "AWS_LAMBDA_FUNCTION_NAME": "assigned",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "GREETING": "hello",
        "LAMBDA_TASK_ROOT": str(code),
    }
    os.write(w, json.dumps({"env": env}).encode())
    os.close(w)
    kind, _, body = rt.api.wait_result(rid)
    assert kind == "response", body
    # The instance's environment replaced the start-up one.
    assert json.loads(body) == {"name": "assigned", "greeting": "hello",
                                "cwd": str(code), "fd": None, "stale": None}


def test_trace_ids_do_not_grow_the_runtime():
    """A new trace id per request must not go through putenv: glibc's setenv keeps
    every value it was given, ~140 bytes per invocation for the life of the instance."""
    probe = textwrap.dedent(
        """
        import importlib.util, os, subprocess, sys
        spec = importlib.util.spec_from_file_location("bootstrap", sys.argv[1])
        bootstrap = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bootstrap)

        def rss_kb():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

        bootstrap._set_trace_id("Root=1-warm-up")
        before = rss_kb()
        for i in range(200000):
            bootstrap._set_trace_id("Root=1-5e1b4151-%024x;Parent=53995c3f42cd8ad8;Sampled=1" % i)
        grown = rss_kb() - before
        current = os.environ.get("_X_AMZN_TRACE_ID")
        child = subprocess.run(["env"], capture_output=True, text=True).stdout
        bootstrap._set_trace_id(None)
        print(grown, current, "_X_AMZN_TRACE_ID" in child, "_X_AMZN_TRACE_ID" in os.environ)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, BOOTSTRAP], capture_output=True, text=True, check=True
    ).stdout.split()
    grown_kb, current, in_child, still_set = int(out[0]), out[1], out[2], out[3]
    assert current.endswith("%024x;Parent=53995c3f42cd8ad8;Sampled=1" % 199999)
    assert still_set == "False", "cleared when a request has no trace id"
    assert in_child == "False", "the C environment never holds the id"
    # Through putenv the 200,000 ids would cost ~28 MB.
    assert grown_kb < 4096, "the runtime grew by %d KiB" % grown_kb


# ---------------------------------------------------------------------------
# Client context (Lambda-Runtime-Client-Context, decoded JSON)


def test_client_context_exposes_client_custom_and_env(rt):
    rt.write("app.py", """
        def handler(event, context):
            cc = context.client_context
            c = cc.client
            return {
                "client": [c.installation_id, c.app_title, c.app_version_name,
                           c.app_version_code, c.app_package_name],
                "custom": cc.custom,
                "env": cc.env,
            }
    """)
    rt.start("app.handler")
    client_context = {
        "client": {"installation_id": "inst-1", "app_title": "Shop", "app_version_name": "1.2",
                   "app_version_code": "12", "app_package_name": "com.example.shop"},
        "custom": {"cart": "42"},
        "env": {"platform": "Android", "locale": "en_US"},
    }
    kind, _, body, _ = invoke_json(rt, {}, headers={"Lambda-Runtime-Client-Context": json.dumps(client_context)})
    assert kind == "response"
    assert json.loads(body) == {
        "client": ["inst-1", "Shop", "1.2", "12", "com.example.shop"],
        "custom": {"cart": "42"},
        "env": {"platform": "Android", "locale": "en_US"},
    }


def test_client_context_is_none_without_the_header(rt):
    rt.write("app.py", """
        def handler(event, context):
            cc = context.client_context
            return [cc is None, None if cc is None else cc.client]
    """)
    rt.start("app.handler")
    kind, _, body, _ = invoke_json(rt, {})
    assert (kind, json.loads(body)) == ("response", [True, None])
    kind, _, body, _ = invoke_json(rt, {}, headers={"Lambda-Runtime-Client-Context": '{"custom": {"a": 1}}'})
    assert (kind, json.loads(body)) == ("response", [False, None])


# ---------------------------------------------------------------------------
# Logging (LoggingConfig: AWS_LAMBDA_LOG_FORMAT, AWS_LAMBDA_LOG_LEVEL)


def log_lines(rt, needle):
    return [l for l in rt.output().splitlines() if needle in l]


def test_root_handler_is_installed_before_the_handler_module_runs(rt):
    # What Powertools' Logger does when it is created: look at the root handlers.
    rt.write("app.py", """
        import logging
        ROOT_HANDLERS_AT_IMPORT = len(logging.getLogger().handlers)
        logging.basicConfig(format="should not be used %(message)s")
        log = logging.getLogger("app")
        def handler(event, context):
            log.warning("warned %s", event["n"])
            log.info("info is below the default level")
            return ROOT_HANDLERS_AT_IMPORT
    """)
    rt.start("app.handler")
    kind, _, body, rid = invoke_json(rt, {"n": 7})
    assert (kind, json.loads(body)) == ("response", 1)
    lines = log_lines(rt, "warned 7")
    assert len(lines) == 1, rt.output()
    level, stamp, request_id, message = lines[0].split("\t")
    assert (level, request_id, message) == ("[WARNING]", rid, "warned 7")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", stamp)
    assert "info is below" not in rt.output()
    assert "should not be used" not in rt.output()


def test_logging_imported_only_inside_the_handler_still_gets_lambdas_format(rt):
    rt.write("app.py", """
        def handler(event, context):
            import logging
            logging.getLogger().error("late %s", 1)
            return "ok"
    """)
    rt.start("app.handler")
    kind, _, _, rid = invoke_json(rt, {})
    assert kind == "response"
    lines = log_lines(rt, "late 1")
    assert len(lines) == 1 and lines[0].startswith("[ERROR]\t") and ("\t%s\t" % rid) in lines[0]


def test_json_log_format_has_lambdas_shape(rt):
    rt.write("app.py", """
        import logging
        log = logging.getLogger("orders")
        def handler(event, context):
            log.info("placed %s", "o-1", extra={"order": 17})
            log.info({"structured": True})
            try:
                raise KeyError("sku")
            except KeyError:
                log.exception("failed")
            print("plain print stays as it is")
            return "ok"
    """)
    rt.start("app.handler", extra_env={"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"})
    kind, _, _, rid = invoke_json(rt, {})
    assert kind == "response"
    out = rt.output()
    records = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    assert len(records) == 3, out
    placed, structured, failed = records
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", placed.pop("timestamp"))
    assert placed == {"level": "INFO", "message": "placed o-1", "logger": "orders",
                      "requestId": rid, "order": 17}
    assert structured["message"] == {"structured": True}
    assert failed["level"] == "ERROR" and failed["errorType"] == "KeyError"
    assert failed["errorMessage"] == "'sku'" and failed["message"] == "failed"
    assert failed["location"].endswith("app.py:handler:10")
    assert any("raise KeyError" in frame for frame in failed["stackTrace"])
    assert "plain print stays as it is" in out.splitlines()


def test_log_level_filters_application_logs(rt):
    rt.write("app.py", """
        import logging
        def handler(event, context):
            logging.debug("debug-line")
            logging.info("info-line")
            logging.warning("warning-line")
            logging.error("error-line")
            return "ok"
    """)
    rt.start("app.handler", extra_env={"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "WARN"})
    assert invoke_json(rt, {})[0] == "response"
    levels = [json.loads(l)["level"] for l in rt.output().splitlines() if l.startswith("{")]
    assert levels == ["WARNING", "ERROR"]


def test_trace_log_level_means_debug(rt):
    rt.write("app.py", """
        import logging
        def handler(event, context):
            logging.debug("debug-line")
            return "ok"
    """)
    rt.start("app.handler", extra_env={"AWS_LAMBDA_LOG_LEVEL": "trace"})
    assert invoke_json(rt, {})[0] == "response"
    assert len(log_lines(rt, "\tdebug-line")) == 1
    assert log_lines(rt, "debug-line")[0].startswith("[DEBUG]\t")


def test_json_log_format_for_errors(rt):
    rt.write("app.py", """
        def handler(event, context):
            raise ValueError("bad input")
    """)
    rt.start("app.handler", extra_env={"AWS_LAMBDA_LOG_FORMAT": "JSON"})
    kind, _, _, rid = invoke_json(rt, {})
    assert kind == "error"
    records = [json.loads(l) for l in rt.output().splitlines() if l.startswith("{")]
    assert len(records) == 1
    record = records[0]
    assert (record["level"], record["errorType"], record["errorMessage"], record["requestId"]) == (
        "ERROR", "ValueError", "bad input", rid)
    assert "timestamp" in record and isinstance(record["stackTrace"], list)


# ---------------------------------------------------------------------------
# sys.path: Lambda's layout, nothing of the host's site-packages


def interpreter_library():
    """The interpreter's own entries: what `python -S` puts after the script's dir."""
    out = subprocess.run([sys.executable, "-S", "-c", "import sys, json; print(json.dumps(sys.path[1:]))"],
                         capture_output=True, text=True, check=True, env={})
    return json.loads(out.stdout)


SYS_PATH_APP = """
    import sys
    def handler(event, context):
        import boto3
        return {"path": sys.path, "boto3": boto3.__file__, "exit": callable(exit),
                "site": "site" in sys.modules and sys.flags.no_site == 0}
"""


@pytest.mark.parametrize("python_flags", [("-S",), ()], ids=["as tern starts it", "with site"])
def test_sys_path_is_lambdas_layout_with_the_sdk_last(rt, tmp_path, python_flags):
    sdk = tmp_path / "runtime"
    (sdk / "boto3").mkdir(parents=True)
    (sdk / "boto3" / "__init__.py").write_text("")
    rt.write("app.py", SYS_PATH_APP)
    rt.start("app.handler", extra_env={"LAMBDA_RUNTIME_DIR": str(sdk)}, python_flags=python_flags)
    kind, _, body, _ = invoke_json(rt, {})
    assert kind == "response", body
    r = json.loads(body)
    version = "python%d.%d" % sys.version_info[:2]
    assert r["path"] == [
        str(rt.task_root),
        "/opt/python/lib/%s/site-packages" % version,
        "/opt/python",
        *interpreter_library(),
        str(sdk),
    ]
    assert not any("site-packages" in p and not p.startswith("/opt/python") for p in r["path"])
    assert not any("dist-packages" in p for p in r["path"])
    assert r["boto3"] == str(sdk / "boto3" / "__init__.py")
    assert r["exit"] is True


def test_a_boto3_in_the_code_wins_over_the_runtimes(rt, tmp_path):
    sdk = tmp_path / "runtime"
    (sdk / "boto3").mkdir(parents=True)
    (sdk / "boto3" / "__init__.py").write_text("")
    rt.write("boto3/__init__.py", "VENDORED = True\n")
    rt.write("app.py", SYS_PATH_APP)
    rt.start("app.handler", extra_env={"LAMBDA_RUNTIME_DIR": str(sdk)}, python_flags=("-S",))
    kind, _, body, _ = invoke_json(rt, {})
    assert kind == "response", body
    assert json.loads(body)["boto3"] == str(rt.task_root / "boto3" / "__init__.py")


def test_sys_path_has_no_sdk_entry_when_the_runtime_has_none(rt, tmp_path):
    rt.write("app.py", """
        import sys
        def handler(event, context):
            return sys.path
    """)
    rt.start("app.handler", extra_env={"LAMBDA_RUNTIME_DIR": str(tmp_path / "absent"),
                                       "PYTHONPATH": "/extra/one"}, python_flags=("-S",))
    kind, _, body, _ = invoke_json(rt, {})
    assert kind == "response", body
    version = "python%d.%d" % sys.version_info[:2]
    assert json.loads(body) == [
        str(rt.task_root), "/opt/python/lib/%s/site-packages" % version, "/opt/python",
        "/extra/one", *interpreter_library(),
    ]


def test_runtime_started_ahead_takes_code_path_log_format_and_level_from_its_config(rt, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = tmp_path / "code"
    code.mkdir()
    (code / "late.py").write_text(
        "import logging, sys\n"
        "def handler(event, context):\n"
        "    logging.getLogger('late').debug('hidden')\n"
        "    logging.getLogger('late').warning('shown')\n"
        "    return sys.path\n"
    )
    r, w = os.pipe()
    rt.start("", extra_env={"TERN_CONFIG_FD": str(r), "LAMBDA_TASK_ROOT": str(empty)},
             python_flags=("-S",), pass_fds=(r,))
    os.close(r)
    rid = rt.api.invoke({})
    env = {"AWS_LAMBDA_RUNTIME_API": rt.api.address, "_HANDLER": "late.handler",
           "LAMBDA_TASK_ROOT": str(code), "AWS_LAMBDA_LOG_FORMAT": "JSON",
           "AWS_LAMBDA_LOG_LEVEL": "INFO"}
    os.write(w, json.dumps({"env": env}).encode())
    os.close(w)
    kind, _, body = rt.api.wait_result(rid)
    assert kind == "response", body
    path = json.loads(body)
    assert path[0] == str(code) and str(empty) not in path, path
    records = [json.loads(l) for l in rt.output().splitlines() if l.startswith("{")]
    assert [(r["level"], r["message"], r["logger"]) for r in records] == [("WARNING", "shown", "late")]


def test_connecting_to_the_runtime_api_imports_nothing():
    """A runtime's first connect is on every cold start's path (a zygote's child makes
    it after the fork): it must not import the idna codec for the API's address."""
    probe = textwrap.dedent(
        """
        import importlib.util, os, sys, tempfile
        spec = importlib.util.spec_from_file_location("bootstrap", sys.argv[1])
        bootstrap = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bootstrap)
        before = set(sys.modules)
        client = bootstrap.RuntimeClient("127.0.0.1:9")
        try:
            client.request("GET", "/", attempts=1)
        except OSError:
            pass
        print(" ".join(sorted(set(sys.modules) - before)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe, BOOTSTRAP], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == []
