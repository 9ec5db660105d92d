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


def cli_env(tern_server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tern_server.credentials_file)
    env["AWS_CONFIG_FILE"] = str(tern_server.config_file)
    return env


def lambda_cli(tern_server, *args):
    """`aws lambda ARGS` against the server; its JSON output (None when empty)."""
    run = subprocess.run(
        [aws_cli_v2(), "lambda", *args, "--endpoint-url", tern_server.endpoint,
         "--profile", "tern", "--output", "json"],
        env=cli_env(tern_server), capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, (args, run.stderr)
    return json.loads(run.stdout) if run.stdout.strip() else None


def test_aws_cli_invoke_with_profile_tern_writes_the_result(tern_server, hello_fn, tmp_path):
    aws = aws_cli_v2()
    env = cli_env(tern_server)
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


def test_aws_cli_release_flow_publish_alias_canary_and_list(tern_server, lambda_client, deploy,
                                                            tmp_path):
    from test_versions import app_zip

    name = deploy(app_zip("v1"))["FunctionName"]
    assert lambda_cli(tern_server, "publish-version", "--function-name", name,
                      "--description", "first")["Version"] == "1"
    zip_path = tmp_path / "v2.zip"
    zip_path.write_bytes(app_zip("v2"))
    lambda_cli(tern_server, "update-function-code", "--function-name", name,
               "--zip-file", f"fileb://{zip_path}")
    lambda_cli(tern_server, "wait", "function-updated-v2", "--function-name", name)
    assert lambda_cli(tern_server, "publish-version", "--function-name", name)["Version"] == "2"

    alias = lambda_cli(tern_server, "create-alias", "--function-name", name, "--name", "live",
                       "--function-version", "1")
    assert alias["AliasArn"].endswith(f":function:{name}:live")
    canary = lambda_cli(tern_server, "update-alias", "--function-name", name, "--name", "live",
                        # What the shell passes for AdditionalVersionWeights={"2"=0.1}.
                        "--routing-config", "AdditionalVersionWeights={2=0.1}")
    assert canary["FunctionVersion"] == "1"
    assert canary["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.1}}
    promoted = lambda_cli(tern_server, "update-alias", "--function-name", name, "--name", "live",
                          "--function-version", "2", "--routing-config",
                          "AdditionalVersionWeights={}")
    assert promoted["FunctionVersion"] == "2" and not promoted.get("RoutingConfig", {}).get(
        "AdditionalVersionWeights")

    # The CLI pages on its own; a page size of 1 makes it follow every marker.
    versions = lambda_cli(tern_server, "list-versions-by-function", "--function-name", name,
                          "--page-size", "1")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    listed = lambda_cli(tern_server, "list-functions", "--function-version", "ALL",
                        "--page-size", "2")["Functions"]
    assert [f["Version"] for f in listed if f["FunctionName"] == name] == ["$LATEST", "1", "2"]

    out_file = tmp_path / "out.json"
    summary = lambda_cli(tern_server, "invoke", "--function-name", name, "--qualifier", "live",
                         "--payload", "{}", "--cli-binary-format", "raw-in-base64-out",
                         str(out_file))
    assert summary["ExecutedVersion"] == "2"
    assert json.loads(out_file.read_text())["code"] == "v2"
    config = lambda_cli(tern_server, "get-function-configuration", "--function-name", name,
                        "--qualifier", "live")
    assert (config["Version"], config["FunctionArn"].rsplit(":", 1)[1]) == ("2", "live")
