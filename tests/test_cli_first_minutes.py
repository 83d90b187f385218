"""The operator's first minutes (issue 11, item 6): every command, run without Google credentials, without
network, against a sandbox that is not running, or with a bad file, ends in one line that names the cause and the
fix (a JSON `error` event with --output json), exit 1 (2 for a bad file), within seconds, and never a traceback.
Also: -o is --output, render's directory is -d, -h, shell completion, `spinboot version`, the doctor's fixes name
commands that exist, a failed plan never claims "0 changes", and the CLI and config packages have no import cycles.
"""

from __future__ import annotations

import ast
import json
import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spinboot.cli.main import app

from .conftest import EXAMPLES, MINIMAL, ROOT

# Every command that reads live state or changes it; each gets -c FILE.
LIVE_COMMANDS = [
    ["plan"], ["plan", "--detailed-exitcode"], ["apply", "--yes"], ["status"], ["doctor"], ["destroy", "--dry-run"],
    ["destroy", "--yes"], ["backup"], ["restore", "--yes"], ["cluster", "apply"], ["rbac", "apply"],
    ["pubsub", "apply"], ["halyard", "apply", "--yes"],
]
NO_CREDENTIALS = "error: no Google credentials: run `gcloud auth application-default login`, or use --sandbox"


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed): connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def bare_env(tmp_path, monkeypatch):
    """A machine with no Google credentials, no sandbox and no gcloud: HOME is empty, Application Default
    Credentials point at nothing, and the metadata server (GCE, Cloud Build) is not consulted."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "CLOUDSDK_CONFIG": str(home / ".config" / "gcloud"), "NO_GCE_CHECK": "true",
           "GCE_METADATA_HOST": f"127.0.0.1:{dead_port()}", "GCE_METADATA_IP": f"127.0.0.1:{dead_port()}",
           "SPINBOOT_SANDBOX_DIR": str(tmp_path / "sandbox-state")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("GOOGLE_APPLICATION_CREDENTIALS", "SPINBOOT_SANDBOX", "PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST",
              "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "GRPC_PROXY",
              "grpc_proxy", "SPINBOOT_DEBUG"):
        monkeypatch.delenv(k, raising=False)
    return home


def with_fake_adc(home: Path) -> None:
    """User credentials as `gcloud auth application-default login` writes them (a refresh token that no server will
    accept): credentials exist, and the first thing that needs the network is their refresh."""
    adc = home / ".config" / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir(parents=True, exist_ok=True)
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "x.apps.googleusercontent.com",
                               "client_secret": "s", "refresh_token": "r"}))


def invoke(*args: str):
    """In-process, as CI runs it; an exception escaping the command fails the test (a traceback for a user)."""
    t0 = time.monotonic()
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    result.seconds = time.monotonic() - t0
    return result


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("error:")]


def assert_one_line(result, exit_code: int, needle: str, seconds: float = 60.0) -> None:
    # Bounds are half the 120 s transient-retry deadline: they catch a retried unreachable address, not a slow CI.
    out = result.output
    assert result.exit_code == exit_code, out
    assert "Traceback" not in out
    lines = error_lines(result.stderr)
    assert len(lines) == 1, out
    assert needle in lines[0], out
    assert result.seconds < seconds, f"took {result.seconds:.1f} s"
    # Nothing pretends work was looked at: no summary of zero changes.
    assert "would create 0" not in out and "did create 0" not in out and "No changes" not in out


def json_events(result) -> list[dict]:
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert events, result.output
    return events


# --- no credentials ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", LIVE_COMMANDS, ids=[" ".join(c) for c in LIVE_COMMANDS])
def test_no_credentials_is_one_line_with_the_fix(bare_env, command):
    result = invoke(*command, "-c", EXAMPLES / "minimal.yaml")
    assert_one_line(result, 1, NO_CREDENTIALS)
    assert result.stdout.strip() == "", "nothing on stdout but results"


@pytest.mark.parametrize("command", LIVE_COMMANDS, ids=[" ".join(c) for c in LIVE_COMMANDS])
def test_no_credentials_in_json_is_an_error_event(bare_env, command):
    result = invoke(*command, "-c", EXAMPLES / "minimal.yaml", "-o", "json")
    assert result.exit_code == 1, result.output
    events = json_events(result)
    assert events[-1]["event"] == "error" and events[-1]["code"] == "no-credentials", events[-1]
    assert "gcloud auth application-default login" in events[-1]["fix"]
    assert not any(e["event"] == "summary" for e in events)


def test_credentials_file_that_is_not_there_is_named(bare_env, monkeypatch, tmp_path):
    missing = tmp_path / "nowhere" / "key.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing))
    for command in (["status"], ["doctor"], ["destroy", "--dry-run"], ["plan"]):
        result = invoke(*command, "-c", EXAMPLES / "minimal.yaml")
        assert_one_line(result, 1, f"GOOGLE_APPLICATION_CREDENTIALS points at {missing}, which is not a file")


def test_the_real_entry_point_prints_no_traceback(bare_env, tmp_path):
    """As a shell runs it (python -m spinboot, standalone mode), for the commands that used to crash."""
    commands = [["status"], ["doctor"], ["destroy", "--dry-run"], ["plan"], ["backup"]]
    env = dict(os.environ)

    def run(command):
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "spinboot", *command, "-c", str(EXAMPLES / "minimal.yaml")],
                              capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
        return command, proc, time.monotonic() - t0

    with ThreadPoolExecutor(2) as pool:
        for command, proc, seconds in pool.map(run, commands):
            assert proc.returncode == 1, (command, proc.stderr)
            assert "Traceback" not in proc.stderr + proc.stdout, (command, proc.stderr)
            assert error_lines(proc.stderr) == [NO_CREDENTIALS], (command, proc.stderr)
            assert seconds < 60, (command, seconds)


# --- no network -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", LIVE_COMMANDS, ids=[" ".join(c) for c in LIVE_COMMANDS])
def test_no_network_fails_in_seconds(bare_env, monkeypatch, command):
    """Credentials exist, but nothing can be reached: every connection goes to a proxy on a dead loopback port
    (deterministic whether or not this machine has a network)."""
    with_fake_adc(bare_env)
    proxy = f"http://127.0.0.1:{dead_port()}"
    for k in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(k, proxy)
    result = invoke(*command, "-c", EXAMPLES / "minimal.yaml")
    assert_one_line(result, 1, "cannot reach Google's token service (the proxy refused the connection): check the "
                               "network, DNS and proxy settings", seconds=60)


def test_no_network_in_json(bare_env, monkeypatch):
    with_fake_adc(bare_env)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead_port()}")
    result = invoke("plan", "-c", EXAMPLES / "minimal.yaml", "--output", "json")
    assert result.exit_code == 1
    event = json_events(result)[-1]
    assert event["event"] == "error" and event["code"] == "network" and "proxy" in event["fix"]


def test_a_sandbox_that_does_not_answer_fails_in_seconds(bare_env, tmp_path, monkeypatch):
    """An endpoints file left behind by a sandbox that is gone: every port is dead."""
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({"gke": f"127.0.0.1:{dead_port()}", "pubsub": f"127.0.0.1:{dead_port()}",
                                     "storage": f"http://127.0.0.1:{dead_port()}", "token": "sbx1.x"}))
    monkeypatch.setenv("SPINBOOT_SANDBOX", str(endpoints))
    for command in LIVE_COMMANDS:
        result = invoke(*command, "-c", EXAMPLES / "minimal.yaml")
        assert_one_line(result, 1, "the sandbox does not answer (GKE API at 127.0.0.1:", seconds=45)
        assert "spinboot sandbox up" in result.stderr


def test_no_sandbox_at_all(bare_env):
    result = invoke("plan", "-c", EXAMPLES / "minimal.yaml", "--sandbox")
    assert_one_line(result, 1, "no sandbox is running")
    result = invoke("status", "-c", EXAMPLES / "minimal.yaml", "--sandbox", "-o", "json")
    assert result.exit_code == 1 and json_events(result)[-1]["code"] == "no-sandbox"


def test_a_broken_endpoints_file_is_one_line(bare_env, tmp_path, monkeypatch):
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text("{not json")
    monkeypatch.setenv("SPINBOOT_SANDBOX", str(endpoints))
    assert_one_line(invoke("status", "-c", EXAMPLES / "minimal.yaml"), 1, "is not a sandbox's endpoints file")


def test_unreachable_addresses_are_not_retried_for_two_minutes(monkeypatch):
    """Mid-run, after the preflight: gRPC to a refused port, and Kubernetes to a refused port, give up in seconds
    (SPINBOOT_CONNECT_RETRY_DEADLINE, 5 s), not after the 120 s transient-failure deadline. Run with a 1 s budget."""
    import spinboot.gcp.retry as gretry
    import spinboot.kube.retry as kretry

    assert gretry.CONNECT_DEADLINE_SECONDS <= 10 and kretry.CONNECT_DEADLINE_SECONDS <= 10
    monkeypatch.setattr(gretry, "CONNECT_DEADLINE_SECONDS", 1.0)
    monkeypatch.setattr(kretry, "CONNECT_DEADLINE_SECONDS", 1.0)
    import grpc
    from google.api_core import exceptions
    from google.cloud import container_v1
    from google.cloud.container_v1.services.cluster_manager.transports import ClusterManagerGrpcTransport
    from kubernetes import client

    from spinboot.gcp.retry import DEADLINE_SECONDS, RETRY, is_transient, is_unreachable
    from spinboot.kube.resources import Kube

    assert DEADLINE_SECONDS >= 60
    port = dead_port()
    gke = container_v1.ClusterManagerClient(
        transport=ClusterManagerGrpcTransport(channel=grpc.insecure_channel(f"127.0.0.1:{port}")))
    t0 = time.monotonic()
    with pytest.raises(exceptions.ServiceUnavailable) as info:
        gke.get_cluster(name="projects/p/locations/l/clusters/c", retry=RETRY)
    assert time.monotonic() - t0 < 30
    assert is_unreachable(info.value) and not is_transient(info.value)

    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{port}"
    cfg.retries = 0
    kube = Kube(client.ApiClient(cfg), "dead")
    t0 = time.monotonic()
    with pytest.raises(Exception) as info:
        kube.get("/api/v1/namespaces/default")
    assert time.monotonic() - t0 < 30
    assert is_unreachable(info.value)


def test_transient_failures_are_still_transient():
    from google.api_core import exceptions

    from spinboot.gcp.retry import is_transient, is_unreachable
    from spinboot.kube.retry import is_transient as kube_transient

    for exc in (exceptions.ServiceUnavailable("Socket closed"), exceptions.TooManyRequests("quota"),
                exceptions.ServiceUnavailable("Connection reset by peer")):
        assert is_transient(exc) and not is_unreachable(exc)
    dns = exceptions.ServiceUnavailable("errors resolving container.googleapis.com:443: [field:hostname lookup "
                                        "error:address lookup failed for container.googleapis.com:443: Domain name "
                                        "not found]")
    assert is_unreachable(dns) and not is_transient(dns)
    from kubernetes.client.exceptions import ApiException
    assert kube_transient(ApiException(status=503)) and not kube_transient(ApiException(status=403))


# --- a bad file -------------------------------------------------------------------------------------------------

ALL_COMMANDS = [["validate"], ["render", "-d", "OUT"]] + LIVE_COMMANDS


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=[" ".join(c) for c in ALL_COMMANDS])
def test_a_bad_file_is_refused_before_anything_else(bare_env, tmp_path, command):
    bad = tmp_path / "spinboot.yaml"
    bad.write_text(MINIMAL.replace("namespaces: [prod]", "namespaces: [prod, kube-system]\n    typo: 1"))
    command = [str(tmp_path / "out") if c == "OUT" else c for c in command]
    result = invoke(*command, "-c", bad)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    # Both problems at once, the summary line once, and no credentials needed to say so.
    assert "targets[0].typo: unknown key" in result.stderr and "targets[0].namespaces[1]" in result.stderr
    assert result.stderr.count("problem(s); nothing was done.") == 1
    assert "credentials" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_missing_file_is_refused(bare_env, tmp_path):
    for command in (["plan"], ["status"], ["validate"]):
        result = invoke(*command, "-c", tmp_path / "nope.yaml")
        assert result.exit_code == 2 and "no such file" in result.stderr and "Traceback" not in result.output


# --- whatever else goes wrong ---------------------------------------------------------------------------------

def test_an_unexpected_failure_is_one_line_and_redacted(bare_env, monkeypatch):
    import spinboot.cli.common as common

    def boom(path):
        raise RuntimeError("kaput while holding ghp_0123456789abcdefghijABCDEFGHIJ012345")

    monkeypatch.setattr(common, "load_config", boom)
    result = invoke("validate", "-c", EXAMPLES / "minimal.yaml")
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = error_lines(result.stderr)
    assert line.startswith("error: unexpected RuntimeError (kaput") and "SPINBOOT_DEBUG=1" in line
    assert "ghp_0123" not in result.output and "[redacted: a GitHub token]" in line
    result = invoke("validate", "-c", EXAMPLES / "minimal.yaml", "-o", "json")
    event = json_events(result)[-1]
    assert event["event"] == "error" and event["code"] == "internal" and "ghp_0123" not in result.stdout
    monkeypatch.setenv("SPINBOOT_DEBUG", "1")
    with pytest.raises(RuntimeError):
        invoke("validate", "-c", EXAMPLES / "minimal.yaml")


def test_a_bad_flag_in_json_mode_is_an_error_event(bare_env):
    result = invoke("validate", "-c", EXAMPLES / "minimal.yaml", "--no-such-flag", "-o", "json")
    assert result.exit_code == 2
    event = json_events(result)[-1]
    assert event["event"] == "error" and event["code"] == "usage" and "--no-such-flag" in event["message"]


# --- summaries: said once, and never "0 changes" for a run that failed --------------------------------------------

def _run_summary(results, dry_run):
    from spinboot.cli.live import summarize
    from spinboot.cli.output import OutputFormat, Reporter

    runner = CliRunner()
    with runner.isolation() as (out, err, *_):
        failed, mutating = summarize(Reporter(OutputFormat.text), "plan" if dry_run else "apply", results, dry_run)
        return failed, mutating, out.getvalue().decode(), err.getvalue().decode()


def test_a_failed_plan_never_prints_a_zero_summary():
    from spinboot.engine.graph import StepResult

    results = {"iam": StepResult("iam", "IAM", "failed", error="cannot reach Google"),
               "cluster": StepResult("cluster", "cluster", "skipped")}
    failed, _, out, err = _run_summary(results, dry_run=True)
    assert failed == 1
    assert "would create 0" not in out + err and "No changes" not in out + err
    assert "plan failed: 1 of 2 step(s) failed" in err and "iam: cannot reach Google" in err


def test_a_failed_plan_shows_what_it_found_as_incomplete_and_each_change_once():
    from spinboot.changes import Change
    from spinboot.engine.graph import StepResult

    results = {"rbac": StepResult("rbac", "RBAC", "done", changes=[Change("create", "Role", "r", "prod")]),
               "iam": StepResult("iam", "IAM", "failed", error="denied")}
    _, mutating, out, err = _run_summary(results, dry_run=True)
    assert mutating == 1
    assert "changes found so far (incomplete): would create 1" in out
    assert "Role prod/r" not in out, "the change was shown when it happened; the summary counts it"
    results = {"rbac": StepResult("rbac", "RBAC", "done", changes=[Change("create", "Role", "r", "prod")])}
    _, _, out, _ = _run_summary(results, dry_run=True)
    assert out.count("would create 1") == 1 and "Role prod/r" not in out


# --- the command line as kubectl users expect it ---------------------------------------------------------------

def test_o_is_output_everywhere(tmp_path):
    assert json_events(invoke("validate", "-c", EXAMPLES / "minimal.yaml", "-o", "json"))[-1]["event"] == "valid"
    result = invoke("render", "-c", EXAMPLES / "minimal.yaml", "-d", tmp_path / "out", "-o", "json")
    assert result.exit_code == 0 and json_events(result)[-1]["event"] == "rendered"
    assert (tmp_path / "out" / "MANIFEST.json").is_file()
    # The old spelling is refused, saying what to write instead.
    result = invoke("render", "-c", EXAMPLES / "minimal.yaml", "-o", tmp_path / "old")
    assert result.exit_code == 2 and not (tmp_path / "old").exists()
    assert "-o is --output" in " ".join(result.stderr.split()) and "-d" in result.stderr


def test_every_command_takes_o_and_h():
    import typer

    command = typer.main.get_command(app)

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + [name])
        else:
            yield path, cmd

    seen = 0
    for path, cmd in walk(command, []):
        names = {o for p in cmd.params for o in getattr(p, "opts", [])}
        if "--output" in names:
            assert "-o" in names, path
        seen += 1
        help_result = invoke(*path, "-h")
        assert help_result.exit_code == 0 and "Usage" in help_result.output, path
    assert seen >= 18
    assert invoke("-h").exit_code == 0


def test_version():
    from importlib.metadata import version

    result = invoke("version")
    assert result.exit_code == 0 and result.stdout.strip() == f"spinboot {version('spinboot')}"
    event = json_events(invoke("version", "-o", "json"))[0]
    assert event == {"event": "version", "version": version("spinboot"), "python": event["python"]}
    assert invoke("--version").stdout.strip() == f"spinboot {version('spinboot')}"


def test_shell_completion(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    run = lambda *a, **kw: subprocess.run([sys.executable, "-m", "spinboot", *a], capture_output=True, text=True,  # noqa: E731
                                          env={**env, **kw}, timeout=60, cwd=tmp_path)
    shown = run("--show-completion", "bash")
    assert shown.returncode == 0 and "_spinboot_completion" in shown.stdout
    installed = run("--install-completion", "bash")
    assert installed.returncode == 0, installed.stderr
    assert "spinboot" in (tmp_path / ".bashrc").read_text()
    # What the installed script asks for: the commands that complete "pl".
    completed = run(_SPINBOOT_COMPLETE="complete_bash", COMP_WORDS="spinboot pl", COMP_CWORD="1")
    assert "plan" in completed.stdout.split()


# --- the doctor's fixes name commands that exist ----------------------------------------------------------------

def _fix_commands(source: str) -> list[str]:
    """Every `spinboot ...` command written in a fix text (the fourth argument of Check(...)) of a source file."""
    found = []
    for call in ast.walk(ast.parse(source)):
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Check"):
            continue
        fixes = call.args[3:4] + [k.value for k in call.keywords if k.arg == "fix"]
        for node in (n for fix in fixes for n in ast.walk(fix)):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{X}" for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            found += re.findall(r"spinboot ((?:[a-z][a-z-]* ?)+(?:--[a-z-]+(?: \{X\}| [A-Z_]+)? ?)*)", text)
    return [f.strip() for f in found]


@pytest.mark.parametrize("module", ["spinboot/ops/doctor.py", "spinboot/ops/contract.py"])
def test_fix_texts_name_commands_that_exist(module):
    import typer

    root = typer.main.get_command(app)
    commands = _fix_commands((ROOT / module).read_text())
    assert commands, module
    for text in commands:
        words = text.split()
        if words[0] not in root.commands:
            # Prose about spinboot ("spinboot renders the keys", "spinboot did not make"), unless it is a misspelt
            # command.
            import difflib

            verb = words[0][:-1] if words[0].endswith("s") else None  # "spinboot renders": a verb, not `render`
            assert verb in root.commands or not difflib.get_close_matches(words[0], list(root.commands),
                                                                          cutoff=0.75), (module, text)
            continue
        cmd, i = root, 0
        while i < len(words) and hasattr(cmd, "commands") and words[i] in cmd.commands:
            cmd, i = cmd.commands[words[i]], i + 1
        assert not hasattr(cmd, "commands"), f"{module}: `spinboot {text}` names no command"
        rest = [w for w in words[i:] if w.startswith("-")]
        options = {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
        for flag in rest:
            assert flag in options, f"{module}: `spinboot {text}`: {flag} is not an option of that command"
        plain = [w for w in words[i:] if not w.startswith("-") and w not in ("{X}",) and not w.isupper()]
        assert not plain or words[i - 1].startswith("-") or plain[0] in ("then", "and"), (module, text)


# --- no import cycles -----------------------------------------------------------------------------------------

def _imports(package: Path, prefix: str) -> dict[str, set[str]]:
    """module -> modules of the same package it imports (at any depth in the file: function-level imports count)."""
    graph: dict[str, set[str]] = {}
    for f in package.glob("*.py"):
        mod = f"{prefix}.{f.stem}" if f.stem != "__init__" else prefix
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(f"{prefix}.{node.module.split('.')[0]}")
                else:
                    deps.update(f"{prefix}.{a.name}" for a in node.names)
        graph[mod] = {d for d in deps if d != mod and d != prefix}
    return graph


@pytest.mark.parametrize("package", ["cli", "config"])
def test_no_import_cycles(package):
    graph = _imports(ROOT / "spinboot" / package, f"spinboot.{package}")

    def visit(node, stack):
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node):] + [node]))
        for dep in graph.get(node, ()):
            visit(dep, stack + [node])

    for node in graph:
        visit(node, [])


def test_bad_flags_are_refused_before_credentials_are_needed(bare_env):
    result = invoke("rbac", "apply", "-c", EXAMPLES / "minimal.yaml", "--cluster", "nope")
    assert result.exit_code == 2 and "--cluster nope: no such target" in result.stderr
    assert "credentials" not in result.output
