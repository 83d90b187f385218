"""``spinboot migrate`` end to end on the sandbox (issue 12, item 6): the example's Halyard install moved to the
kustomize engine on the same cluster and bucket, watched at the API server.

One Halyard install (cluster ``spinnaker-m``: the other engines' tests use their own clusters in the same sandbox),
with a profile and a service setting added by hand in the Halyard pod, as operators do. Then, in order: the
inventory (--dry-run) carries what spinboot did not write and writes nothing; a migrate SIGKILLed right after
Halyard's services went to 0 is re-run and finishes; --rollback restores the Halyard stack; a second migrate and
--finish remove it. A watch on the namespace's pods counts ready echo pods across both stacks after every event,
from before the first migrate to the end: never more than one.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from kubernetes import client, watch

from ..conftest import EXAMPLES
from .invariants import run, run_until, spinboot_cmd

CLUSTER = "spinnaker-m"
BUCKET = "acme-spinnaker-m"
NS, HNS = "spinnaker", "halyard"
COMPONENT = "app.kubernetes.io/component"
# Added by hand in the Halyard pod: one key to carry, one credential that must not be carried or printed.
HAND_PROFILE = "tasks:\n  daysOfExecutionHistory: 21\nwebhook:\n  password: not-a-real-password-7f3a\n"
HAND_SETTINGS = "env:\n  MIGRATE_TEST_FLAG: carried\n"
COMPONENT_HEAD = "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"


def _variant(src: Path, dest: Path, kustomize: bool) -> Path:
    doc = yaml.safe_load(src.read_text())
    doc["cluster"]["name"] = CLUSTER
    # Google resources of its own (one bucket for both engines, as a migration keeps it), so the other tests in the
    # same sandbox see only their own grants.
    doc["spinnaker"]["serviceAccount"] = "spinnaker-m"
    doc["spinnaker"]["storage"]["bucket"] = BUCKET
    for r in doc.get("registries", []):
        r.setdefault("subscription", {})["name"] = "spinnaker-m-gcr"
    if kustomize:
        doc["spinnaker"]["exposure"].pop("ingress", None)   # GKE's CRDs are not served by the sandbox
        doc["spinnaker"]["kustomize"] = {"customizations": "custom"}
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def _tar(files: dict[str, str]) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            t.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def test_inventory_lists_what_cannot_move():
    """Pure (no sandbox): Halyard keys spinboot.yaml has no place for are listed, a different bucket blocks, and
    only key paths are ever reported. The halconfig is Halyard's shape (DeploymentEnvironment.haServices,
    spinnaker.extensibility, an encrypted: reference)."""
    from spinboot.config import load_config_bytes
    from spinboot.ops import migrate as m

    doc = yaml.safe_load((EXAMPLES / "kustomize.yaml").read_text())
    cfg = load_config_bytes(yaml.safe_dump(doc).encode(), "spinboot.yaml").config
    hal = {"currentDeployment": "default", "deploymentConfigurations": [{
        "name": "default", "version": "2026.2.3", "persistentStorage": {"gcs": {"bucket": "other-bucket"}},
        "providers": {"kubernetes": {"accounts": [{"name": "platform"}, {"name": "legacy"}]}},
        "deploymentEnvironment": {"haServices": {"clouddriver": {"enabled": True}, "echo": {"enabled": False}},
                                  "sidecars": {"spin-gate": [{"name": "proxy"}]}},
        "spinnaker": {"extensibility": {"plugins": {"Acme.Plugin": {"enabled": True}}}},
        "notifications": {"slack": {"enabled": True, "token": "encrypted:gcs!b:acme-secrets!f:slack"}}}]}
    inv = m.inventory(cfg, _tar({"config": yaml.safe_dump(hal),
                                 "default/profiles/settings-local.js": "window.spinnakerSettings = {};\n"}), [])
    by = {i.what: i for i in inv.items}
    assert [i.what for i in inv.blocking] == ["storage"]
    assert by["kubernetes account legacy"].status == "manual"
    assert by["HA services"].detail.startswith("deploymentEnvironment.haServices: clouddriver split")   # not echo
    assert by["plugins"].status == by["deploymentEnvironment.sidecars"].status == "manual"
    enc = [i for i in inv.items if i.what.endswith("notifications.slack.token")]
    assert enc and enc[0].status == "manual" and "acme-secrets" not in enc[0].detail
    assert by["profile settings-local.js"].status == "manual" and not inv.carried


def _ready(pod) -> bool:
    if pod.metadata.deletion_timestamp:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def _is_echo(pod) -> bool:
    labels = pod.metadata.labels or {}
    return labels.get("cluster") == "spin-echo" or labels.get(COMPONENT) == "echo"


class EchoWatch:
    """Ready echo pods of both stacks after every pod event (a watch, so no overlap can fall between samples)."""

    def __init__(self, api):
        self.core = client.CoreV1Api(api)
        self.ready: dict[str, bool] = {}
        self.max = 0
        self.timeline: list[tuple[str, int]] = []
        self.stop = threading.Event()
        self.error: Exception | None = None
        self.listed = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                pods = self.core.list_namespaced_pod(NS)
                self.ready = {p.metadata.name: _ready(p) for p in pods.items if _is_echo(p)}
                self._count("list")
                self.listed.set()
                for ev in watch.Watch().stream(self.core.list_namespaced_pod, NS, timeout_seconds=5,
                                               resource_version=pods.metadata.resource_version):
                    pod = ev["object"]
                    if _is_echo(pod):
                        self.ready[pod.metadata.name] = ev["type"] != "DELETED" and _ready(pod)
                        self._count(f"{ev['type']} {pod.metadata.name}")
                    if self.stop.is_set():
                        return
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def _count(self, why: str) -> None:
        n = sum(self.ready.values())
        self.max = max(self.max, n)
        if not self.timeline or self.timeline[-1][1] != n:
            self.timeline.append((why, n))

    def now(self) -> int:
        return sum(self.ready.values())


@pytest.fixture(scope="module")
def env(sandbox) -> dict:
    # A killed run's lease expires after this; the re-run takes it over (docs/apply.md, "Two applies at once").
    return {**sandbox.environ(), "SPINBOOT_LOCK_LEASE_SECONDS": "5"}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("migrate")
    (tmp / "custom").mkdir()
    # The operator's own customizations: a Component with one patch.
    (tmp / "custom" / "kustomization.yaml").write_text(COMPONENT_HEAD + "patches:\n  - path: team.yaml\n")
    (tmp / "custom" / "team.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\n"
                                              "metadata: {name: deck, annotations: {example.com/team: sre}}\n")
    return {"halyard": _variant(EXAMPLES / "spinboot.yaml", tmp / "halyard.yaml", False),
            "kustomize": _variant(EXAMPLES / "kustomize.yaml", tmp / "spinboot.yaml", True), "dir": tmp}


@pytest.fixture(scope="module")
def api(live):
    return live.api(live.cluster("acme-platform", "us-central1-b", CLUSTER))


@pytest.fixture(scope="module")
def installed(files, env, live):
    """The example's Halyard install, with a profile and a service setting added by hand in the pod."""
    rc, _, tail = run(["apply", "-c", str(files["halyard"]), "--yes"], env, timeout=900)
    assert rc == 0, tail
    from spinboot.kube.podexec import exec_in_pod

    a = live.api(live.cluster("acme-platform", "us-central1-b", CLUSTER))
    script = ('set -e; mkdir -p "$HOME/.hal/default/profiles" "$HOME/.hal/default/service-settings"; '
              f'printf %s {shlex.quote(HAND_PROFILE)} > "$HOME/.hal/default/profiles/orca-local.yml"; '
              f'printf %s {shlex.quote(HAND_SETTINGS)} > "$HOME/.hal/default/service-settings/igor.yml"')
    r = exec_in_pod(a, HNS, "halyard-0", ["bash", "-c", script], timeout=60)
    assert r.returncode == 0, r.stderr
    return {d.metadata.name: d.spec.replicas for d in client.AppsV1Api(a).list_namespaced_deployment(
        NS, label_selector="app=spin").items}


@pytest.fixture(scope="module")
def echoes(installed, api):
    w = EchoWatch(api)
    w.thread.start()
    assert w.listed.wait(60), w.error
    yield w
    w.stop.set()
    w.thread.join(timeout=10)


def _state(api) -> dict:
    try:
        cm = client.CoreV1Api(api).read_namespaced_config_map("spinboot-migrate", HNS)
    except client.ApiException as exc:
        assert exc.status == 404
        return {}
    return {k: json.loads(v) for k, v in (cm.data or {}).items()}


def _deps(api, selector: str) -> dict[str, client.V1Deployment]:
    return {d.metadata.name: d for d in client.AppsV1Api(api).list_namespaced_deployment(
        NS, label_selector=selector).items}


def test_inventory_dry_run_carries_and_writes_nothing(installed, files, env, api):
    rc, events, tail = run(["migrate", "-c", str(files["kustomize"]), "--dry-run"], env)
    assert rc == 0, tail
    items = {e["what"]: e for e in events if e["event"] == "inventory"}
    assert items["storage"]["status"] == "covered"
    assert items["kubernetes account platform"]["status"] == "covered"
    assert items["profile orca-local.yml"]["status"] == "carried"
    assert items["profile gate-local.yml"]["status"] == "covered"     # spinboot wrote it
    assert items["service-settings igor.yml: env"]["status"] == "carried"
    assert items["profile orca-local.yml: webhook.password"]["status"] == "manual"
    assert items["Redis data"]["status"] == "manual"
    assert "not-a-real-password-7f3a" not in tail and all("not-a-real-password" not in json.dumps(e) for e in events)
    carry = next(e for e in events if e["event"] == "carry")
    assert carry["directory"] == str(files["dir"] / "custom" / "halyard-migrated"), carry
    assert "orca/orca.yml" in carry["files"]
    assert {p.name for p in (files["dir"] / "custom").iterdir()} == {"kustomization.yaml", "team.yaml"}
    assert _state(api) == {}
    assert all(d.spec.replicas == installed[n] for n, d in _deps(api, "app=spin").items())


def test_cutover_refused_until_the_carried_component_is_referenced(installed, files, env, api):
    rc, events, tail = run(["migrate", "-c", str(files["kustomize"]), "--yes"], env)
    assert rc == 2, tail
    err = next(e for e in events if e.get("code") == "not-carried")
    assert "components: [halyard-migrated]" in err["message"] + err.get("error", ""), err
    assert (files["dir"] / "custom" / "halyard-migrated" / "kustomization.yaml").is_file()
    assert _state(api) == {} and all(d.spec.replicas == installed[n] for n, d in _deps(api, "app=spin").items())
    # What the operator does next, as the message says.
    with (files["dir"] / "custom" / "kustomization.yaml").open("a") as f:
        f.write("components: [halyard-migrated]\n")


def test_migrate_killed_after_halyard_down_then_rerun_finishes(installed, files, env, api, echoes):
    assert echoes.now() == 1
    seen = run_until(["migrate", "-c", str(files["kustomize"]), "--yes"], env,
                     lambda e: e["event"] == "migrate" and e.get("name") == "halyard-down", timeout=900)
    assert any(e.get("name") == "stack-up" for e in seen)
    assert _state(api)["steps"] == ["stack-up", "halyard-down"]
    assert all(d.spec.replicas == 0 for d in _deps(api, "app=spin").values())
    assert _deps(api, f"{COMPONENT}=echo")["echo"].spec.replicas == 0
    assert echoes.now() == 0

    rc, events, tail = run(["migrate", "-c", str(files["kustomize"]), "--yes"], env, timeout=900)
    assert rc == 0, tail
    done = [e["name"] for e in events if e["event"] == "migrate" and e.get("action") == "step"]
    assert done == ["consumers-up", "exposure"], done          # resumed: a and b were not done again
    state = _state(api)
    assert state["steps"] == ["stack-up", "halyard-down", "consumers-up", "exposure"]
    assert state["halyardReplicas"] == installed                # remembered before the kill, not as 0
    new = _deps(api, "spinboot.dev/install=spinnaker")
    for name in ("echo", "igor", "orca", "clouddriver", "gate", "deck"):
        d = new[name]
        assert d.status.ready_replicas == d.spec.replicas >= 1, name
    gate = client.CoreV1Api(api).read_namespaced_service("spin-gate", NS)
    assert gate.spec.selector == {COMPONENT: "gate"}
    # What was carried is what the new orca and igor run with; the credential is not.
    cms = client.CoreV1Api(api).list_namespaced_config_map(NS, label_selector=f"{COMPONENT}=orca").items
    orca = next(c for c in cms if "orca.yml" in (c.data or {}))
    assert yaml.safe_load(orca.data["orca.yml"]) == {"tasks": {"daysOfExecutionHistory": 21}}
    env_names = [e.name for e in new["igor"].spec.template.spec.containers[0].env]
    assert "MIGRATE_TEST_FLAG" in env_names
    assert echoes.now() == 1 and echoes.max <= 1, echoes.timeline
    # The watch saw the hand-over (Halyard's echo gone, then the new one ready), so its count is not a stuck value.
    assert 0 in [n for _, n in echoes.timeline], echoes.timeline
    assert echoes.error is None


def test_rollback_restores_the_halyard_stack(installed, files, env, api, echoes):
    rc, events, tail = run(["migrate", "-c", str(files["kustomize"]), "--rollback"], env, timeout=900)
    assert rc == 0, tail
    hal = _deps(api, "app=spin")
    for name, replicas in installed.items():
        assert hal[name].spec.replicas == replicas and hal[name].status.ready_replicas == replicas, name
    svc = client.CoreV1Api(api).read_namespaced_service("spin-gate", NS)
    assert svc.spec.selector == {"app": "spin", "cluster": "spin-gate"}
    assert all(d.spec.replicas == 0 for d in _deps(api, "spinboot.dev/install=spinnaker").values())
    assert _state(api) == {}
    assert echoes.now() == 1 and echoes.max <= 1, echoes.timeline


def test_migrate_again_then_finish_removes_halyard(installed, files, env, api, echoes, sandbox):
    rc, _, tail = run(["migrate", "-c", str(files["kustomize"]), "--finish"], env)
    assert rc == 2, tail                                        # --finish needs --yes
    rc, _, tail = run(["migrate", "-c", str(files["kustomize"]), "--yes"], env, timeout=900)
    assert rc == 0, tail
    rc, _, tail = run(["migrate", "-c", str(files["kustomize"]), "--finish", "--yes"], env)
    assert rc == 2 and "soak" in tail, tail                     # the default soak (24h) is not over
    rc, _, tail = run(["migrate", "-c", str(files["kustomize"]), "--finish", "--yes", "--min-soak", "0s"], env)
    assert rc == 0, tail
    assert _deps(api, "app=spin") == {}
    assert not [s for s in client.CoreV1Api(api).list_namespaced_service(NS).items
                if s.metadata.name.startswith("spin-")]
    with pytest.raises(client.ApiException) as gone:
        client.AppsV1Api(api).read_namespaced_stateful_set("halyard", HNS)
    assert gone.value.status == 404
    new = _deps(api, "spinboot.dev/install=spinnaker")
    assert new["echo"].status.ready_replicas == 1
    assert echoes.max <= 1, echoes.timeline
    assert _state(api)["finished"]
    # From now on the kustomize file is applied as any other: the migration left nothing for it to change.
    proc = subprocess.run(spinboot_cmd("apply", "-c", files["kustomize"].name, "--yes"), cwd=files["dir"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    changed = [e for e in events if e["event"] == "change" and e["action"] != "unchanged"]
    assert changed == [], changed
    # The bucket stays (the storage stand-in still has it).
    from spinboot.gcp.clients import GoogleClients, SandboxEndpoints

    assert GoogleClients(SandboxEndpoints.load(Path(env["SPINBOOT_SANDBOX"]))).storage.lookup_bucket(BUCKET)
