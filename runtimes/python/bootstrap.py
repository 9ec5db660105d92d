"""tern Python runtime bootstrap (stdlib only, Python 3.8+).

Implements the AWS Lambda Python runtime interface on top of the Lambda
Runtime API (2018-06-01):

    python3 /opt/tern/python/bootstrap.py

Environment: AWS_LAMBDA_RUNTIME_API, _HANDLER, LAMBDA_TASK_ROOT,
AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_VERSION,
AWS_LAMBDA_FUNCTION_MEMORY_SIZE, AWS_LAMBDA_LOG_GROUP_NAME,
AWS_LAMBDA_LOG_STREAM_NAME, and LoggingConfig's AWS_LAMBDA_LOG_FORMAT (Text|JSON)
and AWS_LAMBDA_LOG_LEVEL (the ApplicationLogLevel).

Module-level work is kept minimal so that the file can be pre-imported (e.g.
by a zygote process) and `run(api, handler_spec)` called later.
"""

import json
import os
import socket
import sys
import time

API_PREFIX = "/2018-06-01/runtime"

# Filename of this module's code objects, used to strip our own frames from
# user-visible stack traces (works whatever this file is called / wherever it
# lives).
_SELF_FILE = (lambda: None).__code__.co_filename

_current_request_id = ""


# --------------------------------------------------------------------------
# Errors


class FaultException(Exception):
    """A runtime-level fault with a Lambda error type (Runtime.*)."""

    IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
    BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
    MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
    USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
    HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
    MARSHAL_ERROR = "Runtime.MarshalError"
    UNMARSHAL_ERROR = "Runtime.UnmarshalError"

    def __init__(self, exception_type, msg, trace=None):
        Exception.__init__(self, msg)
        self.exception_type = exception_type
        self.msg = msg
        self.trace = trace


def _make_error(message, error_type, stack_trace, request_id):
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id or "",
        "stackTrace": stack_trace if stack_trace is not None else [],
    }


def _build_fault_result(exc, request_id):
    """Error object for an arbitrary user exception (bootstrap frames dropped)."""
    import traceback  # lazy: only needed on the error path

    frames = [
        (f.filename, f.lineno, f.name, f.line)
        for f in traceback.extract_tb(exc.__traceback__)
    ]
    i = 0
    while i < len(frames) and frames[i][0] == _SELF_FILE:
        i += 1
    frames = frames[i:]
    # Tuples (not FrameSummary objects) so that no caret lines are added on
    # Python 3.11+, matching Lambda's output.
    stack = traceback.format_list(frames)
    try:
        message = str(exc)
    except Exception:  # pragma: no cover - pathological __str__
        message = "<unprintable %s object>" % type(exc).__name__
    return _make_error(message, type(exc).__name__, stack, request_id)


def _log_error(error):
    """Print an error the way Lambda does (to stdout)."""
    if _json_logs():
        line = {"timestamp": time.strftime(_JSON_DATE_FORMAT, time.gmtime()), "level": "ERROR"}
        line.update(error)
        _write_log(json.dumps(line, ensure_ascii=False, default=str))
        return
    line = "[ERROR]"
    etype = error.get("errorType")
    if etype:
        line += " " + etype
    emsg = error.get("errorMessage")
    if emsg:
        if etype:
            line += ":"
        line += " " + emsg
    lines = [line]
    stack = error.get("stackTrace")
    if stack is not None:
        lines.append("Traceback (most recent call last):")
        for element in stack:
            if element == "":
                lines.append("")
            else:
                lines.extend(element.splitlines())
    _write_log("\n".join(lines))


def _write_log(text):
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except Exception:  # pragma: no cover - stdout closed
        pass


# --------------------------------------------------------------------------
# Runtime API client


class _ProtocolError(Exception):
    """The Runtime API answered something that is not HTTP/1.1 as expected."""


class _Headers(dict):
    """Response headers: lower-case names, looked up case-insensitively."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)


# Largest response head accepted (the client-context header alone may be 3.5 KB).
_MAX_HEAD = 1 << 20


class RuntimeClient(object):
    """Minimal keep-alive HTTP/1.1 client for the Lambda Runtime API.

    Hand-written rather than http.client: it costs about half the CPU per request
    (two requests per invocation) and importing http.client (which pulls in the email
    parser and ssl) is most of a fresh runtime's start-up."""

    def __init__(self, api):
        host, _, port = api.rpartition(":")
        if not host:
            host, port = api, "80"
        self.host = host
        # As bytes: a str host goes through the idna codec, whose import (with
        # stringprep and unicodedata) costs a runtime's first connect about a millisecond.
        try:
            self.address = host.encode("ascii")
        except UnicodeError:
            self.address = host
        self.port = int(port)
        self.sock = None
        self.buf = bytearray()

    def _connect(self):
        # No timeout: /invocation/next is a long poll.
        sock = socket.create_connection((self.address, self.port))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.sock = sock
        self.buf = bytearray()
        return sock

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        self.buf = bytearray()

    def request(self, method, path, body=None, headers=None, attempts=3):
        """Perform a request; returns (status, headers, body bytes).

        Reconnects (and retries) on connection-level failures, e.g. when the
        server closed the idle keep-alive connection.
        """
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        head = ["%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, self.host)]
        for name, value in (headers or {}).items():
            head.append("%s: %s\r\n" % (name, value))
        head.append("Content-Length: %d\r\n\r\n" % len(body))
        head = "".join(head).encode("latin-1", "replace")
        last = None
        for attempt in range(attempts):
            try:
                sock = self.sock or self._connect()
                if len(body) < 65536:
                    sock.sendall(head + body)
                else:
                    sock.sendall(head)
                    sock.sendall(body)
                return self._response(method)
            except (OSError, _ProtocolError) as e:
                last = e
                self.close()
                if attempt:
                    time.sleep(0.01 * attempt)
        raise last

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _ProtocolError("the Runtime API closed the connection")
        self.buf += chunk

    def _line(self):
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[: end + 2]
                return line
            if len(self.buf) > _MAX_HEAD:
                raise _ProtocolError("response line too long")
            self._recv()

    def _exactly(self, n):
        while len(self.buf) < n:
            self._recv()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _response(self, method):
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > _MAX_HEAD:
                raise _ProtocolError("response head too large")
            self._recv()
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise _ProtocolError("bad status line %r" % (lines[0][:100],))
        try:
            status = int(parts[1])
        except ValueError:
            raise _ProtocolError("bad status line %r" % (lines[0][:100],))
        headers = _Headers()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                continue
            name, value = name.strip().lower(), value.strip()
            headers[name] = headers[name] + ", " + value if name in headers else value
        if status == 100:
            return self._response(method)
        keep = headers.get("connection", "").lower() != "close" and parts[0] != "HTTP/1.0"
        if method == "HEAD" or status in (204, 304) or status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise _ProtocolError("bad Content-Length")
            body = self._exactly(length)
        else:
            # Delimited by the end of the connection.
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
            body, keep = bytes(self.buf), False
        if not keep:
            self.close()
        return status, headers, body

    def _chunked(self):
        parts = []
        while True:
            size = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size, 16)
            except ValueError:
                raise _ProtocolError("bad chunk size")
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._exactly(size))
            self._exactly(2)

    def next_invocation(self):
        delay = 0.0
        for _ in range(10):
            status, headers, body = self.request("GET", API_PREFIX + "/invocation/next")
            if status == 200:
                return headers, body
            delay = min(1.0, delay * 2 or 0.01)
            sys.stderr.write(
                "tern-bootstrap: /invocation/next returned HTTP %d: %r\n" % (status, body[:200])
            )
            time.sleep(delay)
        raise RuntimeError("Runtime API /invocation/next keeps failing")

    def post_response(self, request_id, payload):
        # Non-2xx (e.g. 413 for an oversized payload) is deliberately ignored:
        # the platform reports that error itself.
        return self.request(
            "POST",
            "%s/invocation/%s/response" % (API_PREFIX, request_id),
            body=payload,
            headers={"Content-Type": "application/json"},
        )[0]

    def post_invocation_error(self, request_id, error, error_type):
        return self.request(
            "POST",
            "%s/invocation/%s/error" % (API_PREFIX, request_id),
            body=_dump_error(error),
            headers={
                "Content-Type": "application/json",
                "Lambda-Runtime-Function-Error-Type": error_type,
            },
        )[0]

    def post_init_error(self, error):
        return self.request(
            "POST",
            API_PREFIX + "/init/error",
            body=_dump_error(error),
            headers={
                "Content-Type": "application/json",
                "Lambda-Runtime-Function-Error-Type": error.get("errorType") or "Unhandled",
            },
        )[0]


def _dump_error(error):
    return json.dumps(error, ensure_ascii=False, default=str).encode("utf-8")


# --------------------------------------------------------------------------
# Marshalling


def _json_default(obj):
    # Lambda serialises decimal.Decimal (common with DynamoDB) as numbers.
    if type(obj).__module__ == "decimal" and type(obj).__name__ == "Decimal":
        if obj == obj.to_integral_value():
            return int(obj)
        return float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


def _marshal(result):
    try:
        return json.dumps(result, ensure_ascii=False, default=_json_default).encode("utf-8")
    except Exception as e:
        raise FaultException(
            FaultException.MARSHAL_ERROR, "Unable to marshal response: %s" % (e,), None
        )


def _unmarshal(body):
    if not body or not body.strip():
        return None
    try:
        return json.loads(body)
    except Exception as e:
        raise FaultException(
            FaultException.UNMARSHAL_ERROR, "Unable to unmarshal input: %s" % (e,), None
        )


# --------------------------------------------------------------------------
# Context


class CognitoIdentity(object):
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __init__(self, data=None):
        data = data or {}
        self.cognito_identity_id = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id,
            self.cognito_identity_pool_id,
        )


class Client(object):
    __slots__ = ["installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name"]

    def __init__(self, data):
        self.installation_id = data.get("installation_id")
        self.app_title = data.get("app_title")
        self.app_version_name = data.get("app_version_name")
        self.app_version_code = data.get("app_version_code")
        self.app_package_name = data.get("app_package_name")


class ClientContext(object):
    __slots__ = ["custom", "env", "client"]

    def __init__(self, data):
        self.custom = data.get("custom")
        self.env = data.get("env")
        client = data.get("client")
        self.client = Client(client) if isinstance(client, dict) else None

    def __repr__(self):
        return "ClientContext([custom=%s,env=%s,client=%s])" % (self.custom, self.env, self.client)


class LambdaContext(object):
    def __init__(
        self,
        aws_request_id,
        deadline_ms,
        invoked_function_arn,
        client_context=None,
        identity=None,
        function_name=None,
        function_version=None,
        memory_limit_in_mb=None,
        log_group_name=None,
        log_stream_name=None,
    ):
        self.aws_request_id = aws_request_id
        self._deadline_ms = deadline_ms
        self.invoked_function_arn = invoked_function_arn
        self.client_context = client_context
        self.identity = identity
        self.function_name = function_name
        self.function_version = function_version
        self.memory_limit_in_mb = memory_limit_in_mb
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name

    def get_remaining_time_in_millis(self):
        remaining = self._deadline_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))
        sys.stdout.flush()

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,"
            "function_name=%s,memory_limit_in_mb=%s,function_version=%s,"
            "invoked_function_arn=%s,client_context=%s,identity=%s])"
            % (
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
            )
        )


def _parse_json_header(value):
    if not value:
        return None
    try:
        return json.loads(value)
    except Exception:
        return None


# --------------------------------------------------------------------------
# Handler loading


def load_handler(handler_spec, task_root=None):
    """Import the handler module and return the handler callable.

    Raises FaultException for Lambda's Runtime.* init errors; any other
    exception raised while executing the module propagates as-is.
    """
    try:
        (modname, fname) = handler_spec.rsplit(".", 1)
    except ValueError as e:
        raise FaultException(
            FaultException.MALFORMED_HANDLER_NAME, "Bad handler '%s': %s" % (handler_spec, e)
        )

    import_name = modname
    if "/" in modname:
        # "src/app.handler" -> directory <task_root>/src, module "app".
        subdir, import_name = modname.rsplit("/", 1)
        base = task_root or os.getcwd()
        path = os.path.join(base, subdir)
        if path not in sys.path:
            sys.path.insert(0, path)

    try:
        if not import_name or import_name.split(".")[0] in sys.builtin_module_names:
            raise FaultException(
                FaultException.BUILT_IN_MODULE_CONFLICT,
                "Cannot use built-in module %s as a handler module" % modname,
            )
        __import__(import_name)
        module = sys.modules[import_name]
    except FaultException:
        raise
    except ImportError as e:
        raise FaultException(
            FaultException.IMPORT_MODULE_ERROR, "Unable to import module '%s': %s" % (modname, e)
        )
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise FaultException(
            FaultException.USER_CODE_SYNTAX_ERROR,
            "Syntax error in module '%s': %s" % (modname, e),
            trace,
        )

    handler = getattr(module, fname, None)
    if handler is None:
        raise FaultException(
            FaultException.HANDLER_NOT_FOUND, "Handler '%s' missing on module '%s'" % (fname, modname)
        )
    return handler


# Lambda's logging set-up (awslambdaric's `_setup_logging`), read from the environment
# when the logging module is first imported.
LOG_FORMAT_ENV = "AWS_LAMBDA_LOG_FORMAT"  # "Text" (default) or "JSON"
LOG_LEVEL_ENV = "AWS_LAMBDA_LOG_LEVEL"  # ApplicationLogLevel: TRACE..FATAL
_TEXT_LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
_JSON_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# LogRecord attributes that are not copied into a JSON log line as extra keys.
_RESERVED_LOG_FIELDS = frozenset((
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
    "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
    "relativeCreated", "thread", "threadName", "processName", "process", "aws_request_id",
))


def _json_logs():
    return (os.environ.get(LOG_FORMAT_ENV) or "").upper() == "JSON"


def _log_level():
    """The root logger's level name from AWS_LAMBDA_LOG_LEVEL ("" when unset), as
    awslambdaric reads it: Python has no TRACE, so it means DEBUG."""
    level = (os.environ.get(LOG_LEVEL_ENV) or "").upper()
    return "DEBUG" if level == "TRACE" else level


def _setup_logging(logging):
    """Gives the root logger Lambda's handler, format and level.

    Runs as soon as anything imports `logging` (see _LoggingImportHook), so that the
    handler is there before the handler module's own import-time code runs:
    Powertools' Logger adds its de-duplication filter to the root handlers it finds
    when it is created, and `logging.basicConfig()` is a no-op, as on Lambda."""
    root = logging.getLogger()
    if any(getattr(h, "_tern", False) for h in root.handlers):
        return
    logging.Formatter.converter = time.gmtime

    class LambdaLoggerFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _current_request_id
            return True

    class LambdaLoggerHandler(logging.Handler):
        _tern = True

        def emit(self, record):
            try:
                sys.stdout.write(self.format(record))
            except Exception:
                self.handleError(record)

    handler = LambdaLoggerHandler()
    if _json_logs():
        handler.setFormatter(_json_formatter(logging)())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_LOG_FORMAT, "%Y-%m-%dT%H:%M:%S"))
    level = _log_level()
    if level in getattr(logging, "_nameToLevel", {}):
        root.setLevel(level)
    handler.addFilter(LambdaLoggerFilter())
    root.addHandler(handler)


def _json_formatter(logging):
    """awslambdaric's JsonFormatter: one JSON object per record."""

    class JsonFormatter(logging.Formatter):
        def __init__(self):
            logging.Formatter.__init__(self, datefmt=_JSON_DATE_FORMAT)

        def format(self, record):
            import traceback  # lazy: only once a JSON record is written

            record.levelno = min(50, max(0, record.levelno)) // 10 * 10
            record.levelname = logging.getLevelName(record.levelno)
            exc = record.exc_info
            result = {
                "timestamp": self.formatTime(record, self.datefmt),
                "level": record.levelname,
                "message": record.msg
                if isinstance(record.msg, dict) and not record.args
                else record.getMessage(),
                "logger": record.name,
                "stackTrace": traceback.format_tb(exc[2]) if exc else None,
                "errorType": exc[0].__name__ if exc else None,
                "errorMessage": str(exc[1]) if exc else None,
                "requestId": getattr(record, "aws_request_id", None),
                "location": "%s:%s:%s" % (record.pathname, record.funcName, record.lineno)
                if exc
                else None,
            }
            for key, value in record.__dict__.items():
                if key not in _RESERVED_LOG_FIELDS and key not in result:
                    result[key] = value
            result = dict((k, v) for k, v in result.items() if v is not None)
            return json.dumps(result, ensure_ascii=False, default=str) + "\n"

    return JsonFormatter


class _LoggingImportHook(object):
    """A meta path finder that sets up Lambda's logging right after `logging` is
    imported. Importing logging costs a fresh runtime ~6 ms, so the bootstrap does not
    import it itself; the hook costs one name comparison per import until it fires."""

    @classmethod
    def install(cls):
        if "logging" in sys.modules:
            _setup_logging(sys.modules["logging"])
        elif cls not in sys.meta_path:
            sys.meta_path.insert(0, cls)

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(cls)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        run_module = getattr(loader, "exec_module", None)
        if run_module is None:  # pragma: no cover - a legacy loader
            return spec

        def exec_module(module):
            try:
                run_module(module)
            finally:
                try:
                    del loader.exec_module
                except AttributeError:  # pragma: no cover
                    pass
            _setup_logging(module)

        loader.exec_module = exec_module
        return spec


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


# --------------------------------------------------------------------------
# Main loop


_TRACE_KEY = "_X_AMZN_TRACE_ID"


def _set_trace_id(trace_id):
    """Show this request's trace id in os.environ without putenv(3).

    glibc's setenv keeps every value it has ever been given (callers may still hold
    pointers from getenv), so a new id per request through os.environ would grow the
    runtime by ~140 bytes per invocation, without bound. The id goes into os.environ's
    own mapping instead, and the C environment never holds it: child processes do not
    inherit it (pass env=os.environ to give it to one)."""
    data = getattr(os.environ, "_data", None)
    if data is None:  # pragma: no cover - not CPython's os._Environ
        if trace_id:
            os.environ[_TRACE_KEY] = trace_id
        else:
            os.environ.pop(_TRACE_KEY, None)
        return
    key = os.environ.encodekey(_TRACE_KEY)
    if trace_id:
        data[key] = os.environ.encodevalue(trace_id)
    else:
        data.pop(key, None)


def handle_invocation(client, handler, headers, body, env):
    global _current_request_id
    request_id = headers.get("Lambda-Runtime-Aws-Request-Id") or ""
    _current_request_id = request_id

    _set_trace_id(headers.get("Lambda-Runtime-Trace-Id"))

    try:
        deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms") or 0)
    except ValueError:
        deadline_ms = 0

    client_context = _parse_json_header(headers.get("Lambda-Runtime-Client-Context"))
    identity = _parse_json_header(headers.get("Lambda-Runtime-Cognito-Identity"))

    context = LambdaContext(
        request_id,
        deadline_ms,
        headers.get("Lambda-Runtime-Invoked-Function-Arn"),
        ClientContext(client_context) if isinstance(client_context, dict) else None,
        CognitoIdentity(identity if isinstance(identity, dict) else None),
        env["function_name"],
        env["function_version"],
        env["memory_limit_in_mb"],
        env["log_group_name"],
        env["log_stream_name"],
    )

    error = None
    error_header = "Unhandled"
    payload = None
    try:
        event = _unmarshal(body)
        result = handler(event, context)
        payload = _marshal(result)
    except FaultException as e:
        error = _make_error(e.msg, e.exception_type, e.trace, request_id)
        error_header = e.exception_type
    except Exception as e:
        error = _build_fault_result(e, request_id)

    if error is not None:
        _log_error(error)
        _flush()
        client.post_invocation_error(request_id, error, error_header)
    else:
        _flush()
        client.post_response(request_id, payload)
    _current_request_id = ""


def _env_config():
    mem = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    try:
        mem = int(mem) if mem is not None else None
    except ValueError:
        mem = None
    return {
        "function_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "function_version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION"),
        "memory_limit_in_mb": mem,
        "log_group_name": os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME"),
        "log_stream_name": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
    }


def _forget_opt_lookups():
    """Layers may be mounted at /opt after this process started (a runtime started
    ahead, or forked by a zygote): drop the finders the import system cached for /opt paths
    then (None for a directory that did not exist yet)."""
    for path in [p for p in sys.path_importer_cache if p == "/opt" or p.startswith("/opt/")]:
        del sys.path_importer_cache[path]


def _function_path(task_root):
    if task_root and task_root not in sys.path:
        sys.path.insert(0, task_root)
    # sys.path holds the layers' /opt/python entries (function_sys_path).
    _forget_opt_lookups()


def run(api, handler_spec, client=None):
    """Init (import the handler) and then serve invocations forever, on `client` if
    given (a connection opened ahead)."""
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    _function_path(task_root)

    if client is None:
        client = RuntimeClient(api)

    _LoggingImportHook.install()
    try:
        handler = load_handler(handler_spec or "", task_root)
    except FaultException as e:
        error = _make_error(e.msg, e.exception_type, e.trace, "")
    except Exception as e:
        error = _build_fault_result(e, "")
    else:
        error = None

    if error is not None:
        _log_error(error)
        _flush()
        try:
            client.post_init_error(error)
        except Exception as e:  # pragma: no cover - API unreachable
            sys.stderr.write("tern-bootstrap: failed to report init error: %s\n" % (e,))
        _flush()
        sys.exit(1)
    serve(client, handler)


def serve(client, handler):
    """Serve invocations forever."""
    env = _env_config()
    while True:
        headers, body = client.next_invocation()
        handle_invocation(client, handler, headers, body, env)


def run_template(fd, handler_spec):
    """Post-init template (tern extension, Lambda's SnapStart): run the function's
    init once here, then become the process its instances fork from (the program
    the server sends on `fd`; crates/sandbox/zygote/template.py). Returns in each
    fork, as its runtime: the Runtime API address and the handler, imported.

    An init that fails ends the template; the server then starts the function's
    instances as usual, and they report the error."""
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    _function_path(task_root)
    ctl = socket.socket(fileno=fd)
    hello = json.loads(ctl.recv(1 << 22))
    _LoggingImportHook.install()
    try:
        handler = load_handler(handler_spec or "", task_root)
    except BaseException as e:  # noqa: BLE001 - SystemExit in init included
        try:
            ctl.send(json.dumps({"error": "init: %s: %s" % (type(e).__name__, e)}).encode())
        finally:
            os._exit(1)
    _flush()
    template = {"__name__": "__tern_template__", "__builtins__": __builtins__}
    exec(compile(hello.pop("source"), "<tern template>", "exec"), template)
    env = template["serve"](ctl, hello)
    del template, hello, ctl
    # A fork: this process is now one instance's runtime.
    os.environ.clear()
    os.environ.update(env)
    try:
        time.tzset()
    except AttributeError:  # pragma: no cover - not on Unix
        pass
    return os.environ.get("AWS_LAMBDA_RUNTIME_API"), handler


CONFIG_FD_ENV = "TERN_CONFIG_FD"


# A connection to the Runtime API opened while this runtime waited for its instance,
# by address.
_AHEAD_CLIENTS = {}


def warm_up_ahead(api=None):
    """Runs the compiler and the source finder once while a runtime started ahead of
    its instance waits for it, so that importing the handler afterwards does not pay
    for their first use (page faults and cold caches: about a millisecond), and opens
    the connection to the Runtime API at `api` (the listener exists already; the
    platform accepts it once the instance is launched). Leaves nothing else behind.
    Called by tern's zygote in a runtime it forked ahead, and by read_config below."""
    import importlib.machinery

    if api:
        try:
            client = RuntimeClient(api)
            client._connect()
            _AHEAD_CLIENTS[api] = client
        except OSError:
            pass

    source = "import json\n\ndef handler(event, context):\n    return {'ok': [1, 2.0, None]}\n"
    namespace = {"__name__": "__tern_warm_up__"}
    exec(compile(source, "<tern warm-up>", "exec"), namespace)
    namespace["handler"]({}, None)
    # Not /var/task: a finder cached for it now would list it as the empty directory it
    # still is.
    here = os.path.dirname(os.path.abspath(_SELF_FILE))
    importlib.machinery.PathFinder.find_spec("__tern_warm_up__", [here])
    sys.path_importer_cache.pop(here, None)
    try:
        _rehearse()
    except Exception:  # noqa: BLE001 - warming up is an optimisation
        pass


def _rehearse():
    """One invocation through the code paths of a real one, against Runtime API
    responses queued on a socketpair, so that the first real invocation finds the
    pages it touches already copied (a runtime forked ahead shares its zygote's
    copy-on-write) and the interpreter's caches warm: about half a millisecond of
    CPU off the cold start."""
    ours, theirs = socket.socketpair()
    try:
        event = b'{"warm": [1, 2.0, null, "x"]}'
        accepted = b'{"status":"OK"}'
        theirs.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Lambda-Runtime-Aws-Request-Id: tern-warm-up\r\n"
            b"Lambda-Runtime-Deadline-Ms: 0\r\n"
            b"Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:::function:warm-up\r\n"
            b"Content-Length: %d\r\n\r\n%s"
            b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(event), event, len(accepted), accepted)
        )
        client = RuntimeClient("127.0.0.1:9")
        client.sock = ours
        headers, body = client.next_invocation()
        handle_invocation(
            client,
            lambda event, context: {"ok": [event, context.aws_request_id]},
            headers,
            body,
            _env_config(),
        )
        client.sock = None
    finally:
        ours.close()
        theirs.close()


def read_config(fd):
    """A runtime started ahead of its instance (tern extension): warm up, then block
    until the platform writes the instance's configuration on `fd`, one line of JSON,
    and adopt it: `{"env": {...}}`, the instance's complete environment, which
    replaces the one this process started with. The platform closes `fd` once the
    function's code is in place (see await_code)."""
    warm_up_ahead(os.environ.get("AWS_LAMBDA_RUNTIME_API"))
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        line += chunk
    env = json.loads(bytes(line)).get("env") or {}
    os.environ.clear()
    os.environ.update(env)
    try:
        time.tzset()
    except AttributeError:  # pragma: no cover - not on Unix
        pass


def await_code(fd):
    """Waits until the platform closes `fd`: the function's code is mounted (after
    this process started, over the directory it started in), so enter it."""
    try:
        while os.read(fd, 65536):
            pass
    finally:
        os.close(fd)
    os.chdir(os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd())


def _interpreter_paths():
    """The interpreter's own library entries of sys.path (zip, lib, lib-dynload).

    The runtime starts with -S (no `site`, no .pth files), so they are what it starts
    with, minus this file's directory and PYTHONPATH. Entries that a `site` import
    added (when started without -S) or that lie outside the interpreter's prefix are
    dropped too: nothing of the host's site-packages."""
    pythonpath = [p for p in (os.environ.get("PYTHONPATH") or "").split(os.pathsep) if p]
    prefixes = tuple(
        os.path.join(os.path.realpath(p), "") for p in (sys.base_prefix, sys.base_exec_prefix)
    )
    here = os.path.dirname(os.path.abspath(_SELF_FILE))
    found = []
    for entry in sys.path:
        if not entry or entry in pythonpath or entry in found:
            continue
        real = os.path.realpath(entry)
        parts = real.split(os.sep)
        if (
            real == here
            or not real.startswith(prefixes)
            or "site-packages" in parts
            or "dist-packages" in parts
        ):
            continue
        found.append(entry)
    return found


# Computed when the module loads: in a zygote, before any runtime is forked from it.
_INTERPRETER_PATHS = _interpreter_paths()


def function_sys_path(task_root):
    """sys.path as Lambda lays it out: the code, the layers' /opt/python directories,
    PYTHONPATH, the interpreter's own library, then the runtime's SDK directory
    (LAMBDA_RUNTIME_DIR, when it exists) last, so that a boto3 in the zip or a layer
    wins over the pinned one. Neither the host's site-packages nor this file's
    directory are on it: user code must not import, or be shadowed by, the runtime's
    files."""
    pythonpath = [p for p in (os.environ.get("PYTHONPATH") or "").split(os.pathsep) if p]
    layers = "/opt/python/lib/python%d.%d/site-packages" % sys.version_info[:2]
    path = [task_root, layers, "/opt/python"] + pythonpath + _INTERPRETER_PATHS
    sdk = os.environ.get("LAMBDA_RUNTIME_DIR")
    if sdk and sdk not in path and os.path.isdir(sdk):
        path.append(sdk)
    return path


def _site_builtins():
    """What `site` adds to builtins (exit, quit, help), for a runtime started with -S."""
    if not sys.flags.no_site:
        return
    import builtins
    import _sitebuiltins

    eof = "Ctrl-D (i.e. EOF)"
    builtins.quit = _sitebuiltins.Quitter("quit", eof)
    builtins.exit = _sitebuiltins.Quitter("exit", eof)
    builtins.help = _sitebuiltins._Helper()


_site_builtins()


def main():
    config_fd = os.environ.get(CONFIG_FD_ENV)
    if config_fd is not None:
        config_fd = int(config_fd)
        read_config(config_fd)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except Exception:
            pass

    sys.path[:] = function_sys_path(os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd())

    api = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not api:
        sys.stderr.write("tern-bootstrap: AWS_LAMBDA_RUNTIME_API is not set\n")
        sys.exit(1)
    if config_fd is not None:
        # What depends only on the environment is done: the code is mounted meanwhile.
        await_code(config_fd)
    template_fd = os.environ.pop("TERN_TEMPLATE_FD", None)
    if template_fd is not None:
        api, handler = run_template(int(template_fd), os.environ.get("_HANDLER", ""))
        serve(RuntimeClient(api), handler)
    else:
        run(api, os.environ.get("_HANDLER", ""), client=_AHEAD_CLIENTS.pop(api, None))


if __name__ == "__main__":
    main()
