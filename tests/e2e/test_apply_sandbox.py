"""spinboot apply end to end against the sandbox, checked at the servers.

The tests run in order on one sandbox: a fresh apply, a second apply that changes nothing, a change applied
minimally, RBAC tampering caught by the proof, a failing Halyard script, and an apply killed mid-way.
"""

from __future__ import annotations

import base64
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import yaml

from spinboot.config import load_config
from spinboot.sandbox.kube import KubeCluster

from ..conftest import EXAMPLES
from .conftest import events, variant

EXAMPLE = EXAMPLES / "spinboot.yaml"


def spinnaker_cluster(live, name="spinnaker") -> KubeCluster:
    return live.cluster("acme-platform", "us-central1-b", name)


def hal_home(cluster: KubeCluster):
    return cluster.dir / "pods" / "halyard" / "halyard-0"


def test_fresh_apply_builds_everything(cli, live, sandbox_env):
    result = cli("apply", "-c", EXAMPLE, "--yes")
    assert result.exit_code == 0, result.output
    assert "did create" in result.stdout

    # GKE: the cluster exists with Workload Identity and a high-memory pool of 2 nodes.
    cm = live.sb.gke.cluster_manager()
    c = cm.get_cluster(name="projects/acme-platform/locations/us-central1-b/clusters/spinnaker")
    assert c.workload_identity_config.workload_pool == "acme-platform.svc.id.goog"
    assert c.node_pools[0].config.machine_type == "e2-highmem-4"
    assert c.node_pools[0].config.workload_metadata_config.mode.name == "GKE_METADATA"

    # Targets: a RoleBinding in each allowed namespace, none elsewhere; the token Secret filled.
    from kubernetes import client

    for name in ("platform", "platform-lab"):
        api = live.api(live.cluster("acme-platform", "us-central1", name))
        rbac = client.RbacAuthorizationV1Api(api)
        bound = sorted(rb.metadata.namespace for rb in rbac.list_role_binding_for_all_namespaces(
            label_selector="spinboot.dev/target=" + name).items)
        assert bound == ["dev", "prod"]
        assert not any(b.role_ref.name == "cluster-admin" and any(s.name == "spinnaker" for s in b.subjects or [])
                       for b in rbac.list_cluster_role_binding().items)
        secret = client.CoreV1Api(api).read_namespaced_secret("spinnaker-token", "spinnaker")
        assert secret.data["token"]

    # Pub/Sub: the subscription on the gcr topic, with Spinnaker's subscriber binding.
    sub = live.sb.pubsub.subscriber()
    s = sub.get_subscription(subscription="projects/acme-platform/subscriptions/spinnaker-gcr")
    assert s.topic == "projects/acme-platform/topics/gcr" and s.ack_deadline_seconds == 60
    policy = sub.get_iam_policy(request={"resource": s.name})
    assert any(b.role == "roles/pubsub.subscriber" and
               "serviceAccount:spinnaker@acme-platform.iam.gserviceaccount.com" in b.members for b in policy.bindings)

    # Halyard: configured by configure.sh in the pod, kubeconfigs only under ~/.hal with mode 0600, and the
    # Spinnaker services rolled out.
    sp = spinnaker_cluster(live)
    home = hal_home(sp)
    halconfig = yaml.safe_load((home / ".hal/config").read_text())["deploymentConfigurations"][0]
    accounts = {a["name"]: a for a in halconfig["providers"]["kubernetes"]["accounts"]}
    assert set(accounts) == {"spinnaker-install", "platform", "platform-lab"}
    kubeconfig = home / ".hal/spinboot/kubeconfigs/platform.kubeconfig"
    assert accounts["platform"]["kubeconfigFile"] == str(kubeconfig)
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    apps = client.AppsV1Api(live.api(sp))
    deployments = {d.metadata.name: d for d in apps.list_namespaced_deployment("spinnaker").items}
    assert {"spin-gate", "spin-deck", "spin-clouddriver", "spin-echo"} <= set(deployments)
    assert all(d.status.available_replicas == d.spec.replicas for d in deployments.values())
    profiles = client.CoreV1Api(live.api(sp)).read_namespaced_config_map("spinnaker-profiles", "spinnaker").data
    assert "forward-headers-strategy: native" in profiles["gate-local.yml"]

    # The minted kubeconfig works, with exactly Spinnaker's rights.
    from kubernetes import config as kconfig

    target_api = kconfig.new_client_from_config(config_file=str(kubeconfig), context="platform")
    assert client.AppsV1Api(target_api).list_namespaced_deployment("prod").items is not None
    try:
        client.CoreV1Api(target_api).list_namespaced_secret("kube-system")
        raise AssertionError("Spinnaker's account could read kube-system secrets")
    except client.exceptions.ApiException as exc:
        assert exc.status == 403

    # No secret value in what spinboot printed.
    tokens = [live.sb.token] + [base64.b64decode(client.CoreV1Api(live.api(live.cluster("acme-platform", "us-central1", n)))
                                                 .read_namespaced_secret("spinnaker-token", "spinnaker").data["token"]).decode()
                                for n in ("platform", "platform-lab")]
    for tok in tokens:
        assert tok not in result.output


def test_second_apply_makes_no_mutating_call(cli, live, sandbox_env):
    mark = live.mark()
    result = cli("apply", "-c", EXAMPLE, "--yes", "--output", "json")
    assert result.exit_code == 0, result.output
    summary = next(e for e in events(result.stdout) if e["event"] == "summary")
    assert summary["create"] == summary["update"] == summary["delete"] == 0
    assert {k: v for k, v in live.mutations_since(mark).items() if v} == {}


def test_plan_shows_a_change_and_changes_nothing(cli, live, sandbox_env, tmp_path):
    changed = variant(tmp_path, "namespaces: [prod, dev]", "namespaces: [prod]")
    mark = live.mark()
    result = cli("plan", "-c", changed, "--detailed-exitcode")
    assert result.exit_code == 3, result.output
    assert "delete RoleBinding dev/spinboot:spinnaker:deploy" in result.stdout
    muts = live.mutations_since(mark)
    # Kubernetes dry-run requests carry no changes; count only those that are not dry runs.
    assert muts["gke"] == [] and muts["pubsub"] == []
    unchanged = cli("plan", "-c", EXAMPLE, "--detailed-exitcode")
    assert unchanged.exit_code == 0, unchanged.output


def test_changed_namespaces_and_node_count_are_applied_minimally(cli, live, sandbox_env, tmp_path):
    changed = variant(tmp_path, "namespaces: [prod, dev]", "namespaces: [prod]")
    changed.write_text(changed.read_text().replace("nodeCount: 2", "nodeCount: 3"))
    mark = live.mark()
    # A deletion without --yes is refused (that target's step fails, deleting nothing); the other steps proceed.
    refused = cli("apply", "-c", changed)
    assert refused.exit_code == 1 and "re-run with --yes" in refused.output
    result = cli("apply", "-c", changed, "--yes")
    assert result.exit_code == 0, result.output
    muts = live.mutations_since(mark)
    assert muts["gke"] == ["/google.container.v1.ClusterManager/SetNodePoolSize"]
    assert muts["pubsub"] == []
    platform = "acme-platform-us-central1-platform"
    # The RoleBinding of dev goes; the proof's questions changed with the namespaces, so the proof ran again and
    # its record (an annotation on the account's token Secret, spinboot.kube.targets) was written: nothing else.
    proof_record = "patch secrets spinnaker/spinnaker-token "
    others = [m for m in muts[platform] if not m.startswith(proof_record)]
    assert len(others) == 1 and others[0].startswith("delete rolebindings dev/"), muts[platform]
    assert len(muts[platform]) - len(others) == 1, muts[platform]
    assert muts["acme-platform-us-central1-platform-lab"] == []
    # Halyard re-ran configure.sh because the bundle changed (the platform account lost dev).
    halconfig = yaml.safe_load((hal_home(spinnaker_cluster(live)) / ".hal/config").read_text())
    accounts = {a["name"]: a for a in halconfig["deploymentConfigurations"][0]["providers"]["kubernetes"]["accounts"]}
    assert accounts["platform"]["namespaces"] == ["prod"]
    from kubernetes import client

    nodes = client.CoreV1Api(live.api(spinnaker_cluster(live))).list_node(
        label_selector="cloud.google.com/gke-nodepool=spinnaker-pool").items
    assert len(nodes) == 3
    # And back, for the tests that follow.
    assert cli("apply", "-c", EXAMPLE, "--yes").exit_code == 0


def test_rbac_proof_catches_extra_rights(cli, live, sandbox_env):
    from kubernetes import client

    api = live.api(live.cluster("acme-platform", "us-central1", "platform-lab"))
    rbac = client.RbacAuthorizationV1Api(api)
    body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "someone-was-generous"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "spinnaker", "namespace": "spinnaker"}]}
    rbac.create_cluster_role_binding(body)
    try:
        result = cli("rbac", "apply", "-c", EXAMPLE, "--cluster", "platform-lab")
        assert result.exit_code == 1
        assert "least-privilege proof failed" in result.output and "may create deployments in kube-system" in result.output
    finally:
        rbac.delete_cluster_role_binding("someone-was-generous")
    assert cli("rbac", "apply", "-c", EXAMPLE, "--cluster", "platform-lab").exit_code == 0


def test_failing_halyard_script_names_the_failing_line(cli, live, sandbox_env):
    config = hal_home(spinnaker_cluster(live)) / ".hal/config"
    good = config.read_bytes()
    config.write_text("deploymentConfigurations: [this is not a halconfig\n")
    try:
        result = cli("halyard", "apply", "-c", EXAMPLE, "--force")
        assert result.exit_code == 1, result.output
        assert "configure.sh failed at line" in result.output
        assert "hal config version edit" in result.output
        assert "Re-running the same command resumes safely" in result.output
    finally:
        config.write_bytes(good)
    assert cli("halyard", "apply", "-c", EXAMPLE, "--force").exit_code == 0


def test_prune_removes_a_target_that_left_the_file(cli, live, sandbox_env, tmp_path):
    from kubernetes import client

    removed = variant(tmp_path, """  - name: platform-lab
    gke: {project: acme-platform, location: us-central1, cluster: platform-lab}
    namespaces: [prod, dev]
""", "")
    assert cli("apply", "-c", removed, "--yes").exit_code == 0
    lab = client.RbacAuthorizationV1Api(live.api(live.cluster("acme-platform", "us-central1", "platform-lab")))
    selector = "spinboot.dev/target=platform-lab"
    assert lab.list_role_binding_for_all_namespaces(label_selector=selector).items, "apply alone prunes nothing"
    plan = cli("rbac", "apply", "-c", removed, "--prune")
    assert plan.exit_code == 1 and "re-run with --yes" in plan.output
    result = cli("rbac", "apply", "-c", removed, "--prune", "--yes")
    assert result.exit_code == 0, result.output
    assert lab.list_role_binding_for_all_namespaces(label_selector=selector).items == []
    assert lab.list_cluster_role_binding(label_selector=selector).items == []
    halconfig = yaml.safe_load((hal_home(spinnaker_cluster(live)) / ".hal/config").read_text())
    names = {a["name"] for a in halconfig["deploymentConfigurations"][0]["providers"]["kubernetes"]["accounts"]}
    assert "platform-lab" not in names
    assert cli("apply", "-c", EXAMPLE, "--yes").exit_code == 0


def test_a_kubeconfig_target_is_reached_through_its_kubeconfig(cli, live, sandbox_env, tmp_path):
    """A non-GKE target: spinboot reaches it with the operator's kubeconfig and context, nothing from Google."""
    from kubernetes import client

    lab = live.cluster("acme-platform", "us-central1", "platform-lab")
    client.CoreV1Api(live.api(lab)).create_namespace({"metadata": {"name": "apps"}})
    head, _, tail = EXAMPLE.read_text().partition("registries:")
    with_onprem = tmp_path / "spinboot.yaml"
    with_onprem.write_text(head + f"""  - name: onprem
    kubeconfig: {{path: {lab.admin_kubeconfig_path}, context: {lab.name}}}
    namespaces: [apps]
    serviceAccount: {{name: spinnaker-onprem, namespace: spinnaker-onprem}}

registries:""" + tail)
    result = cli("apply", "-c", with_onprem, "--yes")
    assert result.exit_code == 0, result.output
    rbac = client.RbacAuthorizationV1Api(live.api(lab))
    bound = [rb.metadata.namespace for rb in rbac.list_role_binding_for_all_namespaces(
        label_selector="spinboot.dev/target=onprem").items]
    assert bound == ["apps"]
    halconfig = yaml.safe_load((hal_home(spinnaker_cluster(live)) / ".hal/config").read_text())
    accounts = {a["name"] for a in halconfig["deploymentConfigurations"][0]["providers"]["kubernetes"]["accounts"]}
    assert "onprem" in accounts
    assert cli("apply", "-c", EXAMPLE, "--yes").exit_code == 0
    assert cli("rbac", "apply", "-c", EXAMPLE, "--prune", "--yes").exit_code == 0
    assert rbac.list_role_binding_for_all_namespaces(label_selector="spinboot.dev/target=onprem").items == []


@pytest.mark.matrix
@pytest.mark.skipif(not os.environ.get("SPINBOOT_FULL_MATRIX"), reason="full matrix only (make bench): the kill matrix (test_matrix_kill.py) covers it; make test runs its 'during halyard' case")
def test_killed_apply_resumes_without_duplicates(live, sandbox_env, tmp_path):
    other = variant(tmp_path, "  name: spinnaker\n", "  name: spinnaker-dr\n")
    env = {**os.environ, **sandbox_env}
    cmd = [sys.executable, "-m", "spinboot", "apply", "-c", str(other), "--yes", "--output", "json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Kill it while the GKE create operation runs.
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if '"create cluster spinnaker-dr: ' in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    names = [c.name for c in live.sb.gke.cluster_manager().list_clusters(
        parent="projects/acme-platform/locations/-").clusters]
    assert names.count("spinnaker-dr") == 1
    third = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    summary = next(e for e in events(third.stdout) if e["event"] == "summary")
    assert summary["create"] == summary["update"] == summary["delete"] == 0, third.stdout[-2000:]
    cm = live.sb.gke.cluster_manager()
    cm.delete_cluster(name="projects/acme-platform/locations/us-central1-b/clusters/spinnaker-dr")


@pytest.mark.matrix
@pytest.mark.skipif(not os.environ.get("SPINBOOT_FULL_MATRIX"), reason="full matrix only (make bench): the fault matrix's 'every Google API' case (test_matrix_faults.py) covers it")
def test_apply_converges_through_transient_google_errors(cli, live, sandbox_env, tmp_path):
    changed = variant(tmp_path, "ackDeadlineSeconds: 60", "ackDeadlineSeconds: 90")
    changed.write_text(changed.read_text().replace("nodeCount: 2", "nodeCount: 3"))
    live.sb.gke.set_faults("ClusterManager/GetCluster=UNAVAILABLE:count=2;"
                           "ClusterManager/SetNodePoolSize=UNAVAILABLE:count=2;"
                           "ClusterManager/GetOperation=RESOURCE_EXHAUSTED:count=2")
    live.sb.pubsub.set_faults("Subscriber/UpdateSubscription=UNAVAILABLE:count=2;"
                              "Subscriber/GetSubscription=RESOURCE_EXHAUSTED:count=1;"
                              "IAMPolicy/GetIamPolicy=UNAVAILABLE:count=1")
    try:
        result = cli("apply", "-c", changed, "--yes")
        assert result.exit_code == 0, result.output
        injected = sum(m.get("injected", 0) for m in live.sb.gke.counts()["methods"].values()) + \
            sum(m.get("injected", 0) for m in live.sb.pubsub.counts()["methods"].values())
        assert injected >= 8, "the faults were really injected"
    finally:
        live.sb.gke.clear_faults()
        live.sb.pubsub.clear_faults()
    sub = live.sb.pubsub.subscriber().get_subscription(subscription="projects/acme-platform/subscriptions/spinnaker-gcr")
    assert sub.ack_deadline_seconds == 90
    assert cli("apply", "-c", EXAMPLE, "--yes").exit_code == 0


def test_pubsub_verify_proves_delivery(cli, live, sandbox_env):
    result = cli("pubsub", "apply", "-c", EXAMPLE, "--verify", "--output", "json")
    assert result.exit_code == 0, result.output
    delivered = [e for e in events(result.stdout) if e["event"] == "progress" and "test message delivered" in e["message"]]
    assert len(delivered) == 1
    # Nothing is left behind on Spinnaker's subscription: the test message was acknowledged.
    from google.api_core import exceptions

    sub = live.sb.pubsub.subscriber()
    try:
        resp = sub.pull(request={"subscription": "projects/acme-platform/subscriptions/spinnaker-gcr",
                                 "max_messages": 10}, timeout=3, retry=None)
        left = [m for m in resp.received_messages if "spinboot_verify" in m.message.attributes]
    except exceptions.DeadlineExceeded:
        left = []
    assert left == []
