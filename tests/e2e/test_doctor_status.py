"""``spinboot status`` and ``doctor`` against a real sandbox: one apply, then each doctor check is shown to find a
problem seeded for real (in the pod's files, the emulators, the target clusters), which is then undone."""

from __future__ import annotations

import time

import pytest
import yaml
from kubernetes import client

from ..conftest import EXAMPLES
from .conftest import apply_example, events

EXAMPLE = EXAMPLES / "spinboot.yaml"
SPIN = ("acme-platform", "us-central1-b", "spinnaker")
POOL = "projects/acme-platform/locations/us-central1-b/clusters/spinnaker/nodePools/"
SUB = "projects/acme-platform/subscriptions/spinnaker-gcr"
SA = "serviceAccount:spinnaker@acme-platform.iam.gserviceaccount.com"


def hal(live):
    return live.cluster(*SPIN).dir / "pods" / "halyard" / "halyard-0" / ".hal"


def doctor(cli) -> tuple[int, dict[str, dict]]:
    r = cli("doctor", "-c", EXAMPLE, "--output", "json")
    return r.exit_code, {e["id"]: e for e in events(r.stdout) if e["event"] == "check"}


def assert_fails(cli, check_id: str, fix_word: str) -> None:
    code, checks = doctor(cli)
    assert code == 1, checks
    c = checks[check_id]
    assert c["status"] == "fail", c
    assert fix_word in c["fix"], c


def assert_clean(cli) -> None:
    code, checks = doctor(cli)
    assert code == 0, {k: v for k, v in checks.items() if v["status"] == "fail"}


@pytest.fixture(scope="module")
def applied(sandbox):
    apply_example(sandbox, EXAMPLE)
    return True


def test_status_shows_everything_up(applied, cli, sandbox_env):
    r = cli("status", "-c", EXAMPLE, "--output", "json")
    assert r.exit_code == 0, r.output
    st = next(e for e in events(r.stdout) if e["event"] == "status")
    assert st["cluster"]["status"] == "RUNNING" and st["nodePool"]["nodes"] == 2
    assert st["halyard"]["ready"] and st["halyard"]["bundleSha256"]
    assert {"spin-gate", "spin-clouddriver", "spin-echo"} <= {s["name"] for s in st["services"]}
    assert all(a["inHalconfig"] for a in st["accounts"])
    assert st["subscriptions"][0]["exists"] and st["subscriptions"][0]["backlog"] == "unknown"
    text = cli("status", "-c", EXAMPLE)
    assert text.exit_code == 0 and "spin-clouddriver" in text.stdout


def test_doctor_clean_then_warns_only_on_halyard_2026(applied, cli, sandbox_env):
    code, checks = doctor(cli)
    assert code == 0, checks
    assert checks["halyard-supported"]["status"] == "warn"
    assert {"node-memory", "registry-polling", "gate-keys", "halyard-image", "subscription:images",
            "credentials:platform", "privilege:platform", "token-secret:platform", "version-skew:platform"} <= set(checks)


def test_gate_keys_ignored_by_version(applied, cli, sandbox_env, live):
    f = hal(live) / "default/profiles/gate-local.yml"
    before = f.read_text()
    f.write_text(before + "\nserver:\n  tomcat:\n    protocolHeader: X-Forwarded-Proto\n")
    try:
        assert_fails(cli, "gate-keys", "gate-local.yml")
    finally:
        f.write_text(before)


def test_registry_polling_too_fast(applied, cli, sandbox_env, live):
    f = hal(live) / "config"
    before = f.read_text()
    doc = yaml.safe_load(before)
    for a in doc["deploymentConfigurations"][0]["providers"]["dockerRegistry"]["accounts"]:
        a["cacheIntervalSeconds"] = 30
    f.write_text(yaml.safe_dump(doc))
    try:
        assert_fails(cli, "registry-polling", "cacheIntervalSeconds")
    finally:
        f.write_text(before)


def test_standard_machine_type(applied, cli, sandbox_env, live):
    cm = live.sb.gke.cluster_manager()

    def set_type(t):
        # Only the machine type: node_version "-" would be an upgrade to the master's version.
        cm.update_node_pool(request={"name": POOL + "spinnaker-pool", "machine_type": t})
        deadline = time.monotonic() + 60
        while cm.get_node_pool(name=POOL + "spinnaker-pool").config.machine_type != t:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        while any(o.status.name != "DONE" for o in cm.list_operations(
                parent="projects/acme-platform/locations/us-central1-b").operations):
            assert time.monotonic() < deadline
            time.sleep(0.5)

    set_type("e2-standard-4")
    try:
        assert_fails(cli, "node-memory", "highmem")
    finally:
        set_type("e2-highmem-4")


def test_subscription_iam_and_missing(applied, cli, sandbox_env, live):
    sub = live.sb.pubsub.subscriber()
    policy = sub.get_iam_policy(request={"resource": SUB})
    stripped = type(policy)()
    stripped.CopyFrom(policy)
    del stripped.bindings[:]
    sub.set_iam_policy(request={"resource": SUB, "policy": stripped})
    assert_fails(cli, "subscription:images", "pubsub apply")
    sub.delete_subscription(subscription=SUB)
    assert_fails(cli, "subscription:images", "pubsub apply")
    r = cli("pubsub", "apply", "-c", EXAMPLE)
    assert r.exit_code == 0, r.output


def test_cluster_admin_in_target(applied, cli, sandbox_env, live):
    rbac = client.RbacAuthorizationV1Api(live.api(live.cluster("acme-platform", "us-central1", "platform")))
    body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "seeded-spinnaker-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "spinnaker", "namespace": "spinnaker"}]}
    rbac.create_cluster_role_binding(body)
    try:
        assert_fails(cli, "privilege:platform", "ClusterRoleBindings")
    finally:
        rbac.delete_cluster_role_binding("seeded-spinnaker-admin")


def test_frozen_halyard_image(applied, cli, sandbox_env, live):
    apps = client.AppsV1Api(live.api(live.cluster(*SPIN)))
    sts = apps.read_namespaced_stateful_set("halyard", "halyard")
    image, strategy = sts.spec.template.spec.containers[0].image, sts.spec.update_strategy.type
    # OnDelete: the seeded image stays in the spec without replacing the running pod.
    patch = {"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": None}, "template": {"spec": {
        "containers": [{"name": sts.spec.template.spec.containers[0].name,
                        "image": "us-docker.pkg.dev/spinnaker-community/docker/halyard:stable"}]}}}}
    apps.patch_namespaced_stateful_set("halyard", "halyard", patch)
    try:
        assert_fails(cli, "halyard-image", "ghcr.io")
    finally:
        patch["spec"]["template"]["spec"]["containers"][0]["image"] = image
        patch["spec"]["updateStrategy"] = {"type": strategy}
        apps.patch_namespaced_stateful_set("halyard", "halyard", patch)
    assert_clean(cli)


def test_missing_token_secret_and_failing_credentials(applied, cli, sandbox_env, live):
    """Last: deleting the token Secret revokes the token, so the minted kubeconfig fails too; apply repairs both."""
    core = client.CoreV1Api(live.api(live.cluster("acme-platform", "us-central1", "platform-lab")))
    core.delete_namespaced_secret("spinnaker-token", "spinnaker")
    deadline = time.monotonic() + 30
    while True:  # the API server rejects a deleted Secret's token once its cache notices
        code, checks = doctor(cli)
        if checks["credentials:platform-lab"]["status"] == "fail" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert code == 1
    assert checks["token-secret:platform-lab"]["status"] == "fail"
    assert "rbac apply" in checks["token-secret:platform-lab"]["fix"]
    assert checks["credentials:platform-lab"]["status"] == "fail", checks["credentials:platform-lab"]
    r = cli("apply", "-c", EXAMPLE, "--yes")
    assert r.exit_code == 0, r.output
    assert_clean(cli)
