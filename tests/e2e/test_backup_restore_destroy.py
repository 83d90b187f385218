"""Backup, restore and destroy against the sandbox: the disaster-recovery drill end to end, retention, no secret in
a backup, and destroy removing only what spinboot made. Each DR step's duration is measured and written to
``$SPINBOOT_DR_METRICS`` (default /tmp/spinboot-dr-metrics.json) for docs/runbook.md.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import tarfile
import time

import pytest
import yaml
from google.api_core import exceptions

from spinboot.kube.podexec import exec_in_pod
from spinboot.ops.backup import PREFIX

from ..conftest import EXAMPLES
from .conftest import events

EXAMPLE = EXAMPLES / "spinboot.yaml"
SPIN = ("acme-platform", "us-central1-b", "spinnaker")
CLUSTER = "projects/acme-platform/locations/us-central1-b/clusters/spinnaker"
BUCKET = "acme-spinnaker"
METRICS: dict[str, float] = {}


def _timed(step: str, fn):
    t0 = time.monotonic()
    out = fn()
    METRICS[step] = round(time.monotonic() - t0, 1)
    path = os.environ.get("SPINBOOT_DR_METRICS", "/tmp/spinboot-dr-metrics.json")
    with open(path, "w") as f:
        json.dump(METRICS, f, indent=1)
    return out


def hal_config(live) -> dict:
    home = live.cluster(*SPIN).dir / "pods" / "halyard" / "halyard-0"
    return yaml.safe_load((home / ".hal/config").read_text())


def normalized(config: dict) -> dict:
    """The halconfig with kubeconfig paths reduced to their file names (the pod's home may differ)."""
    config = json.loads(json.dumps(config))
    for dep in config["deploymentConfigurations"]:
        for a in dep["providers"]["kubernetes"]["accounts"]:
            if a.get("kubeconfigFile"):
                a["kubeconfigFile"] = os.path.basename(a["kubeconfigFile"])
    return config


def storage(live):
    from google.cloud import storage as gcs
    from google.auth.credentials import AnonymousCredentials
    from google.api_core.client_options import ClientOptions

    return gcs.Client(project="sandbox", credentials=AnonymousCredentials(),
                      client_options=ClientOptions(api_endpoint=live.sb.storage.url))


def backups(live) -> list[str]:
    names = {b.name[len(PREFIX):].split("/")[0] for b in storage(live).list_blobs(BUCKET, prefix=PREFIX)}
    return sorted(names)


def hal_in_pod(live, script: str):
    api = live.api(live.cluster(*SPIN))
    r = exec_in_pod(api, "halyard", "halyard-0", ["bash", "-c", script])
    assert r.returncode == 0, r.stderr
    return r


def target_tokens(live) -> list[str]:
    from kubernetes import client

    out = []
    for name in ("platform", "platform-lab"):
        api = live.api(live.cluster("acme-platform", "us-central1", name))
        data = client.CoreV1Api(api).read_namespaced_secret("spinnaker-token", "spinnaker").data
        out.append(base64.b64decode(data["token"]).decode())
    return out


def test_dr_drill_backup_delete_apply_restore(cli, live, sandbox_env):
    assert _timed("apply (fresh)", lambda: cli("apply", "-c", EXAMPLE, "--yes")).exit_code == 0
    # A hand edit outside spinboot: only the backup can bring it back after the cluster is lost.
    hal_in_pod(live, "hal config features edit --chaos true")
    before = hal_config(live)
    assert before["deploymentConfigurations"][0]["features"]["chaos"] is True

    result = _timed("backup", lambda: cli("backup", "-c", EXAMPLE, "--output", "json"))
    assert result.exit_code == 0, result.output
    name = next(e for e in events(result.stdout) if e["event"] == "backup")["name"]
    assert name in backups(live)

    # Disaster: the Spinnaker cluster is deleted through the (sandbox's) GKE API.
    cm = live.sb.gke.cluster_manager()

    def delete_cluster():
        from spinboot.gcp.gke import wait_operation

        op = cm.delete_cluster(name=CLUSTER)
        wait_operation(cm, "acme-platform", "us-central1-b", op, "delete", timeout=300)
    _timed("cluster deleted (GKE API)", delete_cluster)
    assert not [c for c in cm.list_clusters(parent="projects/acme-platform/locations/-").clusters
                if c.name == "spinnaker"]
    # On GKE Halyard's disk goes with the cluster; the sandbox keeps the pod's home directory on local disk, so
    # remove it as GKE would.
    home = live.cluster(*SPIN).dir / "pods"
    shutil.rmtree(home, ignore_errors=True)

    rebuilt = _timed("apply (rebuild from nothing)", lambda: cli("apply", "-c", EXAMPLE, "--yes"))
    assert rebuilt.exit_code == 0, rebuilt.output
    assert hal_config(live)["deploymentConfigurations"][0]["features"]["chaos"] is False, "the hand edit is lost"

    restored = _timed("restore", lambda: cli("restore", "-c", EXAMPLE, "--from", "latest", "--yes"))
    assert restored.exit_code == 0, restored.output
    after = hal_config(live)
    assert normalized(after) == normalized(before)
    assert after["deploymentConfigurations"][0]["features"]["chaos"] is True

    # Spinnaker's services are rolled out, and the kubeconfigs the accounts use are the fresh ones, 0600.
    from kubernetes import client

    sp_api = live.api(live.cluster(*SPIN))
    deployments = client.AppsV1Api(sp_api).list_namespaced_deployment("spinnaker", label_selector="app=spin").items
    assert {"spin-gate", "spin-clouddriver", "spin-echo"} <= {d.metadata.name for d in deployments}
    assert all(d.status.available_replicas == d.spec.replicas for d in deployments)
    accounts = {a["name"]: a for a in after["deploymentConfigurations"][0]["providers"]["kubernetes"]["accounts"]}
    kc = accounts["platform"]["kubeconfigFile"]
    assert os.path.isabs(kc) and os.stat(kc).st_mode & 0o777 == 0o600
    assert target_tokens(live)[0] in open(kc).read()

    # The backup's bundle hash is recorded: the next apply with the same file does not run configure.sh again.
    mark = live.mark()
    again = _timed("verify: apply (no changes)", lambda: cli("apply", "-c", EXAMPLE, "--yes", "--output", "json"))
    summary = next(e for e in events(again.stdout) if e["event"] == "summary")
    assert summary["create"] == summary["update"] == summary["delete"] == 0, again.stdout[-2000:]
    assert {k: v for k, v in live.mutations_since(mark).items() if v} == {}
    print("DR durations (s):", json.dumps(METRICS))


def test_backup_holds_no_token_or_kubeconfig(cli, live, sandbox_env):
    result = cli("backup", "-c", EXAMPLE)
    assert result.exit_code == 0, result.output
    name = backups(live)[-1]
    secrets = target_tokens(live) + [live.sb.token]
    bucket = storage(live).bucket(BUCKET)
    objects = {b.name: bucket.blob(b.name).download_as_bytes()
               for b in storage(live).list_blobs(BUCKET, prefix=f"{PREFIX}{name}/")}
    assert {k.rsplit("/", 1)[1] for k in objects} == {"halyard.tar", "backup.json", "spinboot.yaml"}
    for body in objects.values():
        for s in secrets:
            assert s.encode() not in body
    with tarfile.open(fileobj=io.BytesIO(objects[f"{PREFIX}{name}/halyard.tar"])) as t:
        members = t.getnames()
        for m in t.getmembers():
            if m.isfile():
                body = t.extractfile(m).read()
                assert b"kind: Config" not in body or b"users" not in body, m.name
        config = yaml.safe_load(t.extractfile("config").read())
    assert not [m for m in members if m.endswith(".kubeconfig")], members
    accounts = config["deploymentConfigurations"][0]["providers"]["kubernetes"]["accounts"]
    assert {a["name"]: a.get("kubeconfigFile") for a in accounts if a.get("kubeconfigFile")} == {
        "platform": "spinboot/kubeconfigs/platform.kubeconfig",
        "platform-lab": "spinboot/kubeconfigs/platform-lab.kubeconfig"}
    meta = json.loads(objects[f"{PREFIX}{name}/backup.json"])
    from spinboot.config import load_config
    from spinboot.render import bundle_hash, render_all

    assert meta["bundleSha256"] == bundle_hash(render_all(load_config(EXAMPLE).config))
    for s in secrets:
        assert s not in result.output
    # And nothing is left in the pod's home: the tar carried credentials.
    assert not list((live.cluster(*SPIN).dir / "pods" / "halyard" / "halyard-0").glob("halyard-*.tar"))


def test_retention_keeps_the_newest(cli, live, sandbox_env):
    made = []
    for _ in range(3):
        r = cli("backup", "-c", EXAMPLE, "--keep", "2", "--output", "json")
        assert r.exit_code == 0, r.output
        made.append(next(e for e in events(r.stdout) if e["event"] == "backup")["name"])
    assert backups(live) == made[-2:]


def test_restore_waits_for_the_lock_another_run_holds(cli, live, sandbox_env):
    """``hal backup restore`` writes the halconfig configure.sh writes: a restore takes the Spinnaker cluster's lock
    (spinboot.kube.lock) and, while another run holds it, waits and touches nothing in the Halyard pod."""
    import queue
    import subprocess
    import threading

    from spinboot.kube.lock import LeaseLock, read_lease
    from spinboot.kube.resources import Kube

    from .invariants import spinboot_cmd

    r = cli("apply", "-c", EXAMPLE, "--yes")
    assert r.exit_code == 0, r.output[-3000:]
    if not backups(live):
        r = cli("backup", "-c", EXAMPLE)
        assert r.exit_code == 0, r.output[-3000:]
    kube = Kube(live.api(live.cluster(*SPIN)), "spinnaker")
    holder = LeaseLock(kube, "halyard", operation="test: another run", identity="another-run@test")
    holder.acquire()
    proc = subprocess.Popen(spinboot_cmd("restore", "-c", str(EXAMPLE), "--from", "latest", "--yes"),
                            env={**os.environ, **sandbox_env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
    threading.Thread(target=pump, daemon=True).start()
    seen: list[dict] = []

    def read_until(stop, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not (seen and stop(seen[-1])):
            left = deadline - time.monotonic()
            assert left > 0, f"not seen in {timeout} s: {seen[-5:]}"
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line.startswith("{"):
                seen.append(json.loads(line))
    try:
        read_until(lambda e: e["event"] == "lock" and e.get("state") == "waiting" and e.get("step") == "restore",
                   timeout=120)
        assert seen[-1]["holder"] == "another-run@test"
        time.sleep(3)   # still held: the restore keeps waiting and writes nothing
        assert proc.poll() is None
        assert read_lease(kube, "halyard").holder == "another-run@test"
    finally:
        holder.release()
    try:
        read_until(lambda e: e["event"] == "summary", timeout=300)
        assert proc.wait(timeout=60) == 0, seen[-10:]
    finally:
        proc.kill()
    restore = [e for e in seen if e.get("step") == "restore"]
    acquired = next(i for i, e in enumerate(restore) if e["event"] == "lock" and e.get("state") == "acquired")
    waiting = [i for i, e in enumerate(restore) if e["event"] == "lock" and e.get("state") == "waiting"]
    assert waiting and max(waiting) < acquired
    # Nothing of the restore itself ran before the lock was had: no copy into the pod, no hal line.
    assert not [e for e in restore[:acquired] if e["event"] == "output" or
                (e["event"] == "progress" and ("copying" in e["message"] or "hal backup" in e["message"]))]
    assert any(e["event"] == "output" for e in restore[acquired:]), "the restore ran hal after taking the lock"
    assert [e["state"] for e in restore if e["event"] == "lock"][-1] == "released"
    assert read_lease(kube, "halyard").holder is None


def test_restore_from_unknown_backup_is_bad_input(cli, live, sandbox_env):
    r = cli("restore", "-c", EXAMPLE, "--from", "19990101T000000.000Z", "--yes")
    assert r.exit_code == 2 and "no such complete backup" in r.output


def test_destroy_without_yes_and_without_a_tty_touches_nothing(cli, live, sandbox_env):
    mark = live.mark()
    before = backups(live)
    r = cli("destroy", "-c", EXAMPLE)
    assert r.exit_code == 2, r.output
    assert "stdin is not a terminal" in r.output and "--yes" in r.output
    assert {k: v for k, v in live.mutations_since(mark).items() if v} == {}
    assert live.sb.gke.cluster_manager().get_cluster(name=CLUSTER)
    assert backups(live) == before
    r = cli("restore", "-c", EXAMPLE)
    assert r.exit_code == 2 and "stdin is not a terminal" in r.output


def test_destroy_removes_what_spinboot_made_and_nothing_else(cli, live, sandbox_env):
    from kubernetes import client

    sa = "serviceAccount:spinnaker@acme-platform.iam.gserviceaccount.com"
    foreign = "user:auditor@acme.dev"
    bucket = storage(live).bucket(BUCKET)
    policy = bucket.get_iam_policy(requested_policy_version=1)
    for b in policy.bindings:
        if b["role"] == "roles/storage.objectAdmin":
            b["members"] = set(b["members"]) | {foreign}
    bucket.set_iam_policy(policy)
    sub = live.sb.pubsub.subscriber()
    topic = "projects/acme-platform/topics/gcr"   # the registry's topic: it existed before destroy and stays
    kept_backups = backups(live)

    dry = cli("destroy", "-c", EXAMPLE, "--dry-run")
    assert dry.exit_code == 0 and "delete GKE cluster spinnaker" in dry.output
    assert live.sb.gke.cluster_manager().get_cluster(name=CLUSTER)

    result = _timed("destroy", lambda: cli("destroy", "-c", EXAMPLE, "--yes"))
    assert result.exit_code == 0, result.output

    cm = live.sb.gke.cluster_manager()
    assert not [c for c in cm.list_clusters(parent="projects/acme-platform/locations/-").clusters
                if c.name == "spinnaker"]
    for name in ("platform", "platform-lab"):
        api = live.api(live.cluster("acme-platform", "us-central1", name))
        sel = "spinboot.dev/target=" + name
        assert client.RbacAuthorizationV1Api(api).list_role_binding_for_all_namespaces(label_selector=sel).items == []
        assert client.RbacAuthorizationV1Api(api).list_cluster_role_binding(label_selector=sel).items == []
        assert client.CoreV1Api(api).list_namespaced_service_account("spinnaker", label_selector=sel).items == []
        assert client.CoreV1Api(api).read_namespace("prod")   # the application namespaces stay
    with pytest.raises(exceptions.NotFound):
        sub.get_subscription(subscription="projects/acme-platform/subscriptions/spinnaker-gcr")
    live.sb.pubsub.publisher().get_topic(topic=topic)
    from spinboot.gcp.clients import GoogleClients, SandboxEndpoints

    iam = GoogleClients(SandboxEndpoints.load(live.sb.endpoints_path)).iam
    with pytest.raises(exceptions.NotFound):
        iam.get_service_account(
            name="projects/acme-platform/serviceAccounts/spinnaker@acme-platform.iam.gserviceaccount.com")
    members = {m for b in bucket.get_iam_policy(requested_policy_version=1).bindings
               if b["role"] == "roles/storage.objectAdmin" for m in b["members"]}
    assert foreign in members and sa not in members
    assert backups(live) == kept_backups, "the bucket and its backups are kept by default"

    again = cli("destroy", "-c", EXAMPLE, "--yes")
    assert again.exit_code == 0 and "No changes" in again.output, again.output   # idempotent

    # Back to an applied sandbox for any test that follows, without the foreign member (other tests compare the
    # bucket's whole policy with what spinboot renders).
    policy = bucket.get_iam_policy(requested_policy_version=1)
    for b in policy.bindings:
        b["members"] = set(b["members"]) - {foreign}
    policy.bindings = [b for b in policy.bindings if b["members"]]
    bucket.set_iam_policy(policy)
    assert cli("apply", "-c", EXAMPLE, "--yes").exit_code == 0


# --- pure tests (no sandbox) ------------------------------------------------------------------------------------

def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _kubeconfig(token: str) -> bytes:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [],
                           "users": [{"name": "u", "user": {"token": token}}]}).encode()


def test_strip_removes_every_kubeconfig_and_repoints_accounts():
    from spinboot.ops.backup import strip_kubeconfigs

    config = {"currentDeployment": "default", "deploymentConfigurations": [{"name": "default", "providers": {
        "kubernetes": {"accounts": [
            {"name": "platform", "kubeconfigFile": ".backup/required-files/0-platform.kubeconfig"},
            {"name": "spinnaker-install", "serviceAccount": True}]}}}]}
    raw = _tar({"config": yaml.safe_dump(config).encode(),
                ".backup/required-files/0-platform.kubeconfig": _kubeconfig("tok-required-file-123"),
                "spinboot/kubeconfigs/platform.kubeconfig": _kubeconfig("tok-spinboot-dir-456"),
                "default/profiles/admin.conf": _kubeconfig("tok-by-hand-789"),
                "default/profiles/gate-local.yml": b"server: {forward-headers-strategy: native}\n"})
    out = strip_kubeconfigs(raw)
    assert out.removed == [".backup/required-files/0-platform.kubeconfig", "default/profiles/admin.conf",
                           "spinboot/kubeconfigs/platform.kubeconfig"]
    for tok in (b"tok-required-file-123", b"tok-spinboot-dir-456", b"tok-by-hand-789"):
        assert tok not in out.tar
    with tarfile.open(fileobj=io.BytesIO(out.tar)) as t:
        assert sorted(t.getnames()) == ["config", "default/profiles/gate-local.yml"]
        kept = yaml.safe_load(t.extractfile("config").read())
    accounts = kept["deploymentConfigurations"][0]["providers"]["kubernetes"]["accounts"]
    assert accounts[0]["kubeconfigFile"] == "spinboot/kubeconfigs/platform.kubeconfig"
    assert accounts[1] == {"name": "spinnaker-install", "serviceAccount": True}


class _Store:
    """A PolicyStore that answers ABORTED once, as IAM does on a stale etag."""

    def __init__(self, bindings):
        from google.iam.v1 import policy_pb2

        self.policy = policy_pb2.Policy(etag=b"1")
        for role, members in bindings:
            self.policy.bindings.add(role=role, members=members)
        self.conflicts = 1

    def get(self):
        from google.iam.v1 import policy_pb2

        p = policy_pb2.Policy()
        p.CopyFrom(self.policy)
        return p

    def set(self, policy):
        if self.conflicts:
            self.conflicts -= 1
            raise exceptions.Aborted("etag")
        self.policy = policy


def test_remove_members_keeps_other_members_and_bindings():
    from spinboot.ops.destroy import remove_members

    ours, theirs = "serviceAccount:spinnaker@p.iam.gserviceaccount.com", "user:auditor@acme.dev"
    store = _Store([("roles/storage.objectAdmin", [ours, theirs]), ("roles/storage.objectViewer", [ours]),
                    ("roles/x", [ours])])
    planned = remove_members(store, "b", "roles/storage.objectAdmin", [ours], dry_run=True)
    assert planned.action == "delete" and store.conflicts == 1
    ch = remove_members(store, "b", "roles/x", [ours])
    assert ch.action == "delete" and store.conflicts == 0
    assert [b.role for b in store.policy.bindings] == ["roles/storage.objectAdmin", "roles/storage.objectViewer"]
    remove_members(store, "b", "roles/storage.objectAdmin", [ours])
    got = {b.role: list(b.members) for b in store.policy.bindings}
    assert got == {"roles/storage.objectAdmin": [theirs], "roles/storage.objectViewer": [ours]}
    assert remove_members(store, "b", "roles/storage.objectAdmin", [ours]).action == "unchanged"
