"""Fixtures of the compat suite: one `tern server` per session, boto3 clients, deployed
functions and the awslambdaric dependency tree.

Environment:
  TERN_BIN           the tern binary (default <repo>/target/debug/tern; scripts/test builds it)
  TERN_COMPAT_DEPS   a `pip install --target` tree holding awslambdaric
                     (default <repo>/target/compat-deps; installed here if missing)
  TERN_COMPAT_RUST_TARGET  cargo target dir of the Rust `lambda_runtime` function
                     (default <repo>/target/compat-rust-fn; built here)
  TERN_COMPAT_UNSANDBOXED=1  run the server with --dev-unsandboxed even as root
  TERN_PYTHON_SDK_DIR the server's cache of Python SDK installs (pinned boto3), shared by
                     runs (default <repo>/target/python-sdk)
  TERN_COMPAT_POWERTOOLS  a `pip install --target` tree holding aws-lambda-powertools
                     (default <repo>/target/compat-powertools; installed here if missing)
  TERN_COMPAT_DATABASE  postgres://… URL: run the server on that PostgreSQL database
                     instead of SQLite in its data dir
                     (without root it always does: the sandbox needs root)
"""

import configparser
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from calls import client_config, create_and_wait, unique_name
from packages import python_zip

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"^tern server listening on (http://\S+)$")
START_TIMEOUT_S = 60
# The server's test settings: async retries after about 0.3 and 0.6 s instead of Lambda's
# 1 and 2 minutes (async.retry_delay_ms is documented as a test setting).
SERVER_CONFIG = """\
[async]
retry_delay_ms = 300
system_backoff_ms = 200
webhook_ca_file = "{ca_file}"
"""


@dataclass
class WebhookCert:
    ca: Path
    cert: Path
    key: Path


def signed_for_loopback(directory, name):
    """A CA, and a server certificate for 127.0.0.1 (IP SAN) that it signed, made with
    the openssl CLI (webpki refuses a self-signed CA certificate as a server's)."""
    ca, ca_key = directory / f"{name}-ca.pem", directory / f"{name}-ca.key"
    cert, key, csr = (directory / f"{name}.pem", directory / f"{name}.key",
                      directory / f"{name}.csr")
    ext = directory / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN=tern compat {name} CA", "-keyout", str(ca_key), "-out", str(ca))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(csr))
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return WebhookCert(ca, cert, key)


@pytest.fixture(scope="session")
def webhook_certs(tmp_path_factory):
    """Two certificates for https webhooks in the tests: `trusted`, whose CA the server
    is given as async.webhook_ca_file, and `untrusted`, whose CA it does not know."""
    directory = tmp_path_factory.mktemp("webhook-tls")
    return {"trusted": signed_for_loopback(directory, "trusted"),
            "untrusted": signed_for_loopback(directory, "untrusted")}
SHUTDOWN_TIMEOUT_S = 15
# What the functions' `python3` is: PATH inside an instance, sandboxed or not.
INSTANCE_PATH = "/usr/local/bin:/usr/bin:/bin"


def sandboxed():
    return os.geteuid() == 0 and os.environ.get("TERN_COMPAT_UNSANDBOXED") != "1"


def server_mode():
    if sandboxed():
        return "sandbox (root)"
    if os.geteuid() == 0:
        return "--dev-unsandboxed (TERN_COMPAT_UNSANDBOXED=1)"
    return "--dev-unsandboxed (not root)"


def store_mode():
    return "PostgreSQL" if os.environ.get("TERN_COMPAT_DATABASE") else "SQLite"


def pytest_report_header(config):
    return f"tern compat: server mode {server_mode()}, store {store_mode()}"


def pytest_terminal_summary(terminalreporter):
    # Also under -q, which hides the header: say which mode the results are for.
    terminalreporter.write_line(
        f"tern compat: the server ran in {server_mode()} mode on {store_mode()}")


@dataclass
class Server:
    endpoint: str
    data_dir: Path
    access_key: str
    secret_key: str
    proc: subprocess.Popen
    stderr_path: Path
    sandboxed: bool

    @property
    def credentials_file(self):
        return self.data_dir / "credentials"

    @property
    def config_file(self):
        return self.data_dir / "config"

    def stderr_tail(self, lines=40):
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no stderr)"

    def healthy(self):
        try:
            with urllib.request.urlopen(f"{self.endpoint}/tern/v1/health", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False


def tern_bin():
    path = Path(os.environ.get("TERN_BIN", REPO / "target" / "debug" / "tern"))
    if not path.is_file():
        pytest.fail(f"tern binary not found at {path}: run `cargo build` or set TERN_BIN")
    return path


def read_listening_line(proc, timeout_s):
    """The endpoint from the server's stdout line; stdout keeps draining afterwards."""
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            return None
        m = LISTENING.match(line)
        if m:
            return m.group(1)
    return None


def python_sdk_dir():
    """One cache of the pinned boto3 for every run, so PyPI is asked once, not per run."""
    return Path(os.environ.get("TERN_PYTHON_SDK_DIR", REPO / "target" / "python-sdk"))


def read_credentials(path):
    parser = configparser.ConfigParser()
    if not parser.read(path) or "tern" not in parser:
        pytest.fail(f"{path} has no [tern] profile")
    profile = parser["tern"]
    return profile["aws_access_key_id"], profile["aws_secret_access_key"]


@pytest.fixture(scope="session")
def tern_server(tmp_path_factory, webhook_certs):
    data_dir = tmp_path_factory.mktemp("tern-data")
    stderr_path = data_dir.parent / "tern-server.stderr"
    config = data_dir.parent / "tern-compat.toml"
    config.write_text(SERVER_CONFIG.format(ca_file=webhook_certs["trusted"].ca))
    cmd = [str(tern_bin()), "server", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir),
           "--python-sdk-dir", str(python_sdk_dir()), "--config", str(config)]
    if os.environ.get("TERN_COMPAT_DATABASE"):
        cmd += ["--database", os.environ["TERN_COMPAT_DATABASE"]]
    if not sandboxed():
        cmd.append("--dev-unsandboxed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERN_")}
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    server = Server("", data_dir, "", "", proc, stderr_path, sandboxed())

    endpoint = read_listening_line(proc, START_TIMEOUT_S)
    if endpoint is None:
        proc.kill()
        proc.wait()
        pytest.fail(
            f"tern server printed no 'tern server listening on' line "
            f"(exit {proc.returncode}):\n{server.stderr_tail()}"
        )
    server.endpoint = endpoint
    deadline = time.monotonic() + 30
    while not server.healthy():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"GET /tern/v1/health never answered 200:\n{server.stderr_tail()}")
        time.sleep(0.1)
    server.access_key, server.secret_key = read_credentials(server.credentials_file)

    yield server

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"tern server did not exit within {SHUTDOWN_TIMEOUT_S} s of SIGTERM")
        if proc.returncode != 0:
            pytest.fail(
                f"tern server exited with {proc.returncode} after SIGTERM, expected a graceful "
                f"exit 0:\n{server.stderr_tail()}"
            )


@pytest.fixture(autouse=True)
def server_keeps_serving(tern_server):
    """After every test, bad input or not, the server is still up and healthy."""
    yield
    rc = tern_server.proc.poll()
    if rc is not None:
        pytest.fail(f"tern server exited with {rc} during the test:\n{tern_server.stderr_tail()}")
    if not tern_server.healthy():
        pytest.fail(f"tern server stopped answering /tern/v1/health:\n{tern_server.stderr_tail()}")


@pytest.fixture(scope="session")
def make_client(tern_server):
    """A Lambda client with the server's keys (or others given), signed for us-east-1."""

    def make(access_key=None, secret_key=None, **config):
        return boto3.client(
            "lambda",
            endpoint_url=tern_server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=access_key or tern_server.access_key,
            aws_secret_access_key=secret_key or tern_server.secret_key,
            config=client_config(**config),
        )

    return make


@pytest.fixture(scope="session")
def lambda_client(make_client):
    return make_client()


@pytest.fixture(scope="session")
def hello_fn(lambda_client):
    """A python3.11 function shared by tests that only invoke it. Returns its name."""
    return create_and_wait(lambda_client, python_zip(), name=unique_name("hello"))["FunctionName"]


@pytest.fixture
def deploy(lambda_client):
    """Deploys a function for one test (create + `function_active_v2`)."""

    def _deploy(zip_bytes, **kwargs):
        return create_and_wait(lambda_client, zip_bytes, **kwargs)

    return _deploy


def instance_python():
    """The `python3` a provided-runtime bootstrap runs, and its (major, minor)."""
    out = subprocess.run(
        ["python3", "-c", "import sys; print(sys.executable, *sys.version_info[:2])"],
        env={"PATH": INSTANCE_PATH},
        capture_output=True,
        text=True,
        check=True,
    )
    exe, major, minor = out.stdout.split()
    return exe, (int(major), int(minor))


@pytest.fixture(scope="session")
def awslambdaric_deps():
    """A `pip install --target` tree with awslambdaric built for the instances' python3."""
    deps = Path(os.environ.get("TERN_COMPAT_DEPS", REPO / "target" / "compat-deps"))
    if not (deps / "awslambdaric").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--upgrade", "--target", str(deps), "awslambdaric"],
            check=True,
        )
    exe, version = instance_python()
    if version != sys.version_info[:2]:
        pytest.fail(
            f"awslambdaric's C extension was built for python {sys.version_info[:2]} but "
            f"functions run {exe} {version}"
        )
    return deps


@pytest.fixture(scope="session")
def rust_runtime_bootstrap():
    """A `bootstrap` built with AWS's Rust runtime crate (`tests/compat/rust-fn`)."""
    target = Path(os.environ.get("TERN_COMPAT_RUST_TARGET", REPO / "target" / "compat-rust-fn"))
    subprocess.run(
        ["cargo", "build", "--quiet", "--release", "--manifest-path",
         str(REPO / "tests" / "compat" / "rust-fn" / "Cargo.toml"), "--target-dir", str(target)],
        check=True,
    )
    return target / "release" / "bootstrap"


@pytest.fixture(scope="session")
def powertools_deps():
    """A `pip install --target` tree with aws-lambda-powertools (pure Python)."""
    deps = Path(os.environ.get("TERN_COMPAT_POWERTOOLS", REPO / "target" / "compat-powertools"))
    if not (deps / "aws_lambda_powertools").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--upgrade", "--target", str(deps), "aws-lambda-powertools"],
            check=True,
        )
    return deps
