"""The aws CLI (version 2), configured only by the server's credentials and config files.

`--cli-binary-format` exists only in CLI v2. PyPI's `awscli` is v1, so scripts/test installs
Debian's `awscli` (v2) at /usr/bin/aws; TERN_AWS_CLI may name another v2 binary.
"""

import json
import os
import shutil
import subprocess


def aws_cli_v2():
    candidates = [os.environ.get("TERN_AWS_CLI"), "/usr/bin/aws", shutil.which("aws")]
    for aws in filter(None, candidates):
        try:
            version = subprocess.run([aws, "--version"], capture_output=True, text=True,
                                     timeout=30).stdout
        except OSError:
            continue
        if version.startswith("aws-cli/2."):
            return aws
    raise AssertionError(f"no aws CLI v2 among {candidates} (scripts/test installs awscli)")


def test_aws_cli_invoke_with_profile_tern_writes_the_result(tern_server, hello_fn, tmp_path):
    aws = aws_cli_v2()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tern_server.credentials_file)
    env["AWS_CONFIG_FILE"] = str(tern_server.config_file)
    out_file = tmp_path / "out.json"

    run = subprocess.run(
        [aws, "lambda", "invoke",
         "--endpoint-url", tern_server.endpoint,
         "--function-name", hello_fn,
         "--payload", json.dumps({"marker": "cli", "n": 7}),
         "--cli-binary-format", "raw-in-base64-out",
         "--profile", "tern",
         str(out_file)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["StatusCode"] == 200
    assert summary["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in summary
    result = json.loads(out_file.read_text())
    assert result["event"] == {"marker": "cli", "n": 7}
    assert result["function_name"] == hello_fn
