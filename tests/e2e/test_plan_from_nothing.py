"""Plan tells the truth (issue 11), on a sandbox of its own that starts empty: plan works from nothing and lists
the whole install, a saved plan is applied exactly or refused when live state moved, and what leaves the file
leaves live state (a label, a target's credentials)."""

from __future__ import annotations

import base64
import sys

import pytest
import yaml
from kubernetes import client, config

from spinboot.config import load_config
from spinboot.sandbox.sandbox import Sandbox

from ..conftest import EXAMPLES
from .conftest import events, variant
from .invariants import run

EXAMPLE = EXAMPLES / "spinboot.yaml"
SPIN = ("acme-platform", "us-central1-b", "spinnaker")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    sb = Sandbox(state_dir=tmp_path_factory.mktemp("sbx-plan"), gke_latency_s=0.5,
                 log=lambda m: print(f"[sandbox] {m}", file=sys.stderr))
    sb.up()
    try:
        sb.seed(load_config(EXAMPLE).config)
        yield sb
    finally:
        sb.down()


def test_plan_from_nothing_lists_the_whole_install_then_apply_and_a_saved_plan(fresh, tmp_path):
    env = fresh.environ()
    rc, evs, tail = run(["plan", "-c", str(EXAMPLE), "--detailed-exitcode"], env)
    assert rc == 3, tail
    creates = {(e["step"], e["kind"]) for e in evs if e["event"] == "change" and e["action"] == "create"}
    for step, kind in [("cluster", "GKE cluster"), ("iam:service-accounts", "Google service account"),
                       ("pubsub", "Pub/Sub subscription"), ("storage", "GCS bucket"),
                       ("registry-access", "IAM binding"), ("rbac:platform", "Namespace"),
                       ("rbac:platform", "ServiceAccount"), ("rbac:platform", "RoleBinding"),
                       ("rbac:platform-lab", "ClusterRole"), ("halyard", "StatefulSet"),
                       ("halyard", "Halyard configuration"), ("halyard", "Secret"), ("halyard", "ConfigMap")]:
        assert (step, kind) in creates, (step, kind, sorted(creates))
    assert not [e for e in evs if e["event"] == "step" and e["status"] == "failed"], tail
    planned_halyard = _writes(evs, "halyard")
    # The Halyard step is planned by the code that applies it (spinboot.kube.halyard.AbsentCluster): the target
    # kubeconfigs' Secret, the targets record, configure.sh's first run and the record of that run are all in it.
    assert ("create", "Secret", "halyard", "spinboot-target-kubeconfigs") in planned_halyard
    assert ("create", "ConfigMap", "halyard", "spinboot-targets") in planned_halyard
    assert ("create", "ConfigMap", "halyard", "spinboot-halyard") in planned_halyard
    configure = next(e for e in evs if e["event"] == "change" and e["kind"] == "Halyard configuration")
    assert configure["detail"] == "run configure.sh (first run); then hal deploy apply"
    # A plan changes nothing: the second plan says the same.
    rc2, evs2, _ = run(["plan", "-c", str(EXAMPLE), "--detailed-exitcode"], env)
    assert rc2 == 3 and len([e for e in evs2 if e["event"] == "change"]) == len([e for e in evs if e["event"] == "change"])

    # A saved plan is applied exactly.
    saved = tmp_path / "install.plan"
    rc, _, tail = run(["plan", "-c", str(EXAMPLE), "--out", str(saved)], env)
    assert rc == 0 and saved.is_file(), tail
    rc, evs, tail = run(["apply", str(saved)], env, timeout=900)
    assert rc == 0, tail
    # What the Halyard step wrote is exactly what the plan from nothing said it would write.
    assert _writes(evs, "halyard") == planned_halyard
    applied = next(e for e in evs if e["event"] == "change" and e["kind"] == "Halyard configuration")
    assert applied["detail"] == configure["detail"]
    rc, _, tail = run(["plan", "-c", str(EXAMPLE), "--detailed-exitcode"], env)
    assert rc == 0, tail


def _writes(evs: list[dict], step: str) -> set[tuple[str, str, str, str]]:
    """(action, kind, namespace, name) of every create, update or delete a step reported."""
    return {(e["action"], e["kind"], e.get("namespace", ""), e["name"]) for e in evs
            if e["event"] == "change" and e["step"] == step and e["action"] in ("create", "update", "delete")}


def _spin_api(sb):
    return config.new_client_from_config(config_file=str(sb.admin_kubeconfig(*SPIN)))


def test_a_saved_plan_refuses_when_live_state_moved(fresh, tmp_path):
    env = fresh.environ()
    text = variant(tmp_path, "labels: {team: sre}", "labels: {team: sre, tier: tools}")
    saved = tmp_path / "labels.plan"
    rc, _, tail = run(["plan", "-c", str(text), "--out", str(saved)], env)
    assert rc == 0, tail
    # Someone edits what spinboot manages between plan and apply.
    core = client.CoreV1Api(_spin_api(fresh))
    core.patch_namespaced_config_map("spinboot-targets", "halyard", {"data": {"targets.json": "{}"}})
    rc, evs, tail = run(["apply", str(saved)], env)
    assert rc == 1, tail
    assert "live state moved since the plan" in tail and "spinboot-targets" in tail
    rc, _, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], env, timeout=900)   # converge again
    assert rc == 0, tail


def test_what_leaves_the_file_leaves_live_state(fresh, tmp_path):
    env = fresh.environ()
    # A target removed: its credential leaves the Secret and the Halyard pod in the same apply.
    without_lab = variant(tmp_path, """  - name: platform-lab
    gke: {project: acme-platform, location: us-central1, cluster: platform-lab}
    namespaces: [prod, dev]
""", "")
    rc, _, tail = run(["apply", "-c", str(without_lab), "--yes"], env, timeout=900)
    assert rc == 0, tail
    secret = client.CoreV1Api(_spin_api(fresh)).read_namespaced_secret("spinboot-target-kubeconfigs", "halyard")
    assert set(secret.data) == {"platform.kubeconfig"}
    home = fresh.clusters_dir / "acme-platform-us-central1-b-spinnaker" / "pods" / "halyard" / "halyard-0"
    assert sorted(p.name for p in (home / ".hal/spinboot/kubeconfigs").glob("*")) == ["platform.kubeconfig"]
    hal = yaml.safe_load((home / ".hal/config").read_text())["deploymentConfigurations"][0]
    assert "platform-lab" not in [a["name"] for a in hal["providers"]["kubernetes"]["accounts"]]
    assert not any("platform-lab" in base64.b64decode(v).decode() for v in secret.data.values())
    rc, _, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], env, timeout=900)
    assert rc == 0, tail
