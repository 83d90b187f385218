"""Cloud Build's saved plans on the sandbox (issue 11, item 2): the `spinboot` step of cloudbuild.yaml, run by bash
exactly as Cloud Build runs it (substitutions filled in, the step's env), with the real spinboot on PATH (as the
image's entrypoint) pointed at the sandbox, whose Storage stand-in holds the plans. A pull-request build plans and
keeps the plan; the merge build applies exactly it; a merge build after live state moved refuses and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys

import yaml
from kubernetes import client

from spinboot.config.problems import secret_kind

from ..test_cloudbuild import _step_script as cloudbuild_step_script
from ..conftest import EXAMPLES, ROOT
from .conftest import events
from .invariants import run

EXAMPLE = EXAMPLES / "spinboot.yaml"
SPIN = ("acme-platform", "us-central1-b", "spinnaker")
PLANS = "acme-spinboot-plans"


def _step_script(mode: str) -> str:
    """The spinboot step's script as Cloud Build runs it (tests/test_cloudbuild.py fills the substitutions)."""
    return cloudbuild_step_script(mode, bucket=PLANS, file="spinboot.yaml")


def _step_env(build: str, trigger: str, commit: str) -> dict[str, str]:
    """The step's env entries with the values Cloud Build would substitute."""
    step = next(s for s in yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())["steps"] if s["id"] == "spinboot")
    values = {"${BUILD_ID}": build, "${PROJECT_ID}": "acme-platform", "${TRIGGER_NAME}": trigger,
              "${COMMIT_SHA}": commit}
    return {k: values[v] for k, v in (item.split("=", 1) for item in step["env"])}


def _build(workspace, sandbox_env: dict, mode: str, build: str, trigger: str, commit: str):
    """One Cloud Build run of the spinboot step in ``workspace`` (the checkout): (exit code, events, output tail)."""
    shim = workspace.parent / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "spinboot").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m spinboot "$@"\n')
    (shim / "spinboot").chmod(0o755)
    env = {**os.environ, **sandbox_env, **_step_env(build, trigger, commit),
           "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", _step_script(mode)], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=900)
    return proc.returncode, events(proc.stdout), proc.stdout[-3000:] + proc.stderr[-3000:]


def _storage(live):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    return gcs.Client(project="sandbox", credentials=AnonymousCredentials(),
                      client_options=ClientOptions(api_endpoint=live.sb.storage.url))


def _secrets(live) -> list[str]:
    """Every credential spinboot handles on the sandbox: the targets' tokens, the kubeconfigs Halyard holds, and the
    sandbox's own Google token."""
    out = [live.sb.token]
    for name in ("platform", "platform-lab"):
        api = live.api(live.cluster("acme-platform", "us-central1", name))
        data = client.CoreV1Api(api).read_namespaced_secret("spinnaker-token", "spinnaker").data
        out.append(base64.b64decode(data["token"]).decode())
    spin = client.CoreV1Api(live.api(live.cluster(*SPIN)))
    for value in spin.read_namespaced_secret("spinboot-target-kubeconfigs", "halyard").data.values():
        out.append(base64.b64decode(value).decode())
    return out


def _hal_registry(live) -> dict:
    home = live.cluster(*SPIN).dir / "pods" / "halyard" / "halyard-0"
    hal = yaml.safe_load((home / ".hal/config").read_text())["deploymentConfigurations"][0]
    return next(a for a in hal["providers"]["dockerRegistry"]["accounts"] if a["name"] == "images")


def test_pull_request_plan_then_merge_applies_exactly_it_or_refuses(live, sandbox_env, tmp_path):
    rc, _, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], sandbox_env, timeout=900)   # a converged start
    assert rc == 0, tail
    store = _storage(live)
    if store.lookup_bucket(PLANS) is None:
        store.create_bucket(PLANS)    # docs/ci.md, "Setting it up"
    workspace = tmp_path / "checkout"
    workspace.mkdir()
    text = EXAMPLE.read_text()
    assert text.count("cacheIntervalSeconds: 600") == 1
    changed = text.replace("cacheIntervalSeconds: 600", "cacheIntervalSeconds: 900")
    (workspace / "spinboot.yaml").write_text(changed)
    key = hashlib.sha256(changed.encode()).hexdigest()

    # The pull request's build: plan, keep the plan in the bucket under the file's hash.
    rc, evs, tail = _build(workspace, sandbox_env, "plan", "build-pr-1", "spinboot-plan", "a" * 40)
    assert rc == 0, tail
    saved = next(e for e in evs if e["event"] == "planfile")
    where = f"gs://{PLANS}/plans/{key}.json"
    assert saved["file"] == where and saved["changes"] >= 1
    assert (saved["build"], saved["trigger"], saved["commit"]) == ("build-pr-1", "spinboot-plan", "a" * 40)
    body = store.bucket(PLANS).blob(f"plans/{key}.json").download_as_bytes()
    doc = json.loads(body)
    assert doc["config"]["text"] == changed and doc["madeBy"]["build"] == "build-pr-1"
    assert any(c["step"] == "halyard" and c["kind"] == "Halyard configuration" and c["action"] == "update"
               for c in doc["changes"])
    # No secret in the plan: none of the credentials spinboot handles here, and nothing that looks like one.
    assert secret_kind(body.decode()) is None
    for secret in _secrets(live):
        assert secret.encode() not in body

    # The merge's build: exactly that plan, applied; the lock names the build that holds it.
    assert _hal_registry(live)["cacheIntervalSeconds"] == 600
    rc, evs, tail = _build(workspace, sandbox_env, "apply", "build-merge-1", "spinboot-apply", "b" * 40)
    assert rc == 0, tail
    check = next(e for e in evs if e["event"] == "progress" and e.get("step") == "plan")
    assert check["madeBy"]["build"] == "build-pr-1" and "made by Cloud Build build-pr-1" in check["message"]
    took = [e for e in evs if e["event"] == "lock" and e.get("state") == "acquired"]
    assert took and took[0]["holder"] == "Cloud Build build-merge-1 in acme-platform", took
    assert _hal_registry(live)["cacheIntervalSeconds"] == 900

    # The next pull request goes back to 600; between its review and its merge someone edits what spinboot manages.
    (workspace / "spinboot.yaml").write_text(text)
    rc, _, tail = _build(workspace, sandbox_env, "plan", "build-pr-2", "spinboot-plan", "c" * 40)
    assert rc == 0, tail
    core = client.CoreV1Api(live.api(live.cluster(*SPIN)))
    core.patch_namespaced_config_map("spinboot-targets", "halyard", {"data": {"targets.json": "{}"}})
    mark = live.mark()
    rc, evs, tail = _build(workspace, sandbox_env, "apply", "build-merge-2", "spinboot-apply", "d" * 40)
    assert rc == 1, tail
    assert "live state moved since the plan" in tail and "spinboot-targets" in tail
    assert {k: v for k, v in live.mutations_since(mark).items() if v} == {}, "a refused plan changes nothing"
    assert _hal_registry(live)["cacheIntervalSeconds"] == 900

    # A merge whose file was never planned finds no plan: bad input, nothing read or changed.
    (workspace / "spinboot.yaml").write_text(text + "# edited after review\n")
    rc, _, tail = _build(workspace, sandbox_env, "apply", "build-merge-3", "spinboot-apply", "e" * 40)
    assert rc == 2 and "no such plan" in tail, tail

    rc, _, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], sandbox_env, timeout=900)   # converge for what follows
    assert rc == 0, tail
