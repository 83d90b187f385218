"""Every path real GKE and IAM take, end to end on the sandbox, checked at the servers.

Labels (changed, removed, Google's own kept), node pool autoscaling (on, changed, off), every change GKE cannot make
in place (reported `blocked` with its remedy, exit 1, nothing touched), a metadata-server fix that must not upgrade
the nodes, IAM read-modify-write through ABORTED conflicts, and a new service account that IAM does not know yet.
Each test leaves the sandbox as the example file says (checked with `plan --detailed-exitcode`).
"""

from __future__ import annotations

import time

import os

import pytest

from spinboot.gcp.gke import wait_operation

from ..conftest import EXAMPLES, Cli
from .conftest import events, variant

EXAMPLE = EXAMPLES / "spinboot.yaml"
PROJECT, ZONE = "acme-platform", "us-central1-b"
CLUSTER = f"projects/{PROJECT}/locations/{ZONE}/clusters/spinnaker"
POOL = f"{CLUSTER}/nodePools/spinnaker-pool"
GKE = "/google.container.v1.ClusterManager/"
NODES_SA = f"spinnaker-nodes@{PROJECT}.iam.gserviceaccount.com"
SPINNAKER_SA = f"spinnaker@{PROJECT}.iam.gserviceaccount.com"
REMEDY_POOL = "set cluster.nodePool.name to a new name"


FULL = bool(os.environ.get("SPINBOOT_FULL_MATRIX"))
full_only = pytest.mark.skipif(not FULL, reason="full matrix only: SPINBOOT_FULL_MATRIX=1 (make bench)")


@pytest.fixture(scope="module")
def installed(sandbox):
    """Spinnaker installed as the example says (a no-op when an earlier test file already did it)."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in sandbox.environ().items():
            mp.setenv(k, v)
        result = Cli()("apply", "-c", EXAMPLE, "--yes")
    assert result.exit_code == 0, result.output


pytestmark = pytest.mark.usefixtures("installed")


def converged(cli) -> None:
    plan = cli("plan", "-c", EXAMPLE, "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output


def wait(cm, op) -> None:
    wait_operation(cm, PROJECT, ZONE, op, f"test setup ({op.operation_type.name})")


def changes(output: str, action: str | None = None) -> list[dict]:
    return [e for e in events(output) if e["event"] == "change" and (action is None or e["action"] == action)]


def remove_member(client, resource: str, role: str, member: str) -> None:
    policy = client.get_iam_policy(request={"resource": resource})
    for b in policy.bindings:
        if b.role == role and member in b.members:
            b.members.remove(member)
    client.set_iam_policy(request={"resource": resource, "policy": policy})


def holds(client, resource: str, role: str, member: str) -> bool:
    return any(b.role == role and member in b.members for b in client.get_iam_policy(request={"resource": resource}).bindings)


def test_labels_change_and_a_removed_label_leaves(cli, live, sandbox_env, tmp_path):
    cm = live.sb.gke.cluster_manager()
    # A label Google adds (goog-*) is not the file's business: kept, never compared.
    c = cm.get_cluster(name=CLUSTER)
    wait(cm, cm.set_labels(request={"name": CLUSTER, "label_fingerprint": c.label_fingerprint,
                                    "resource_labels": {**c.resource_labels, "goog-k8s-cluster-name": "spinnaker"}}))
    try:
        changed = variant(tmp_path, "labels: {team: sre}", "labels: {team: platform, cost-center: cc-42}")
        mark = live.mark()
        result = cli("apply", "-c", changed, "--yes", "--output", "json")
        assert result.exit_code == 0, result.output
        assert live.mutations_since(mark)["gke"] == [GKE + "SetLabels"]
        (update,) = [e for e in changes(result.stdout, "update") if e["kind"] == "GKE cluster"]
        assert update["detail"] == "labels +cost-center=cc-42, team=sre→platform"
        assert dict(cm.get_cluster(name=CLUSTER).resource_labels) == {
            "team": "platform", "cost-center": "cc-42", "managed-by": "spinboot", "goog-k8s-cluster-name": "spinnaker"}

        # A label the file drops leaves the cluster. The first write meets a fingerprint that went stale (another
        # writer): spinboot reads the cluster again and retries.
        removed = variant(tmp_path, "labels: {team: sre}", "labels: {team: platform}")
        live.sb.gke.set_faults("ClusterManager/SetLabels=FAILED_PRECONDITION:count=1:"
                               "msg=Labels could not be set due to fingerprint mismatch")
        mark = live.mark()
        result = cli("apply", "-c", removed, "--yes", "--output", "json")
        assert result.exit_code == 0, result.output
        assert live.sb.gke.counts()["methods"][GKE + "SetLabels"]["calls"] == 2
        assert dict(cm.get_cluster(name=CLUSTER).resource_labels) == {
            "team": "platform", "managed-by": "spinboot", "goog-k8s-cluster-name": "spinnaker"}
    finally:
        live.sb.gke.clear_faults()
        assert cli("apply", "-c", EXAMPLE, "--yes").exit_code == 0
    assert dict(cm.get_cluster(name=CLUSTER).resource_labels) == {
        "team": "sre", "managed-by": "spinboot", "goog-k8s-cluster-name": "spinnaker"}
    converged(cli)


def test_autoscaling_on_changed_and_off(cli, live, sandbox_env, tmp_path):
    cm = live.sb.gke.cluster_manager()

    def autoscaling():
        a = cm.get_node_pool(name=POOL).autoscaling
        return a.enabled, a.min_node_count, a.max_node_count

    def apply(path, detail):
        mark = live.mark()
        result = cli("apply", "-c", path, "--yes", "--output", "json")
        assert result.exit_code == 0, result.output
        assert live.mutations_since(mark)["gke"] == [GKE + "SetNodePoolAutoscaling"]
        assert [e["detail"] for e in changes(result.stdout, "update") if e["kind"] == "GKE node pool"] == [detail]

    try:
        on = variant(tmp_path, "diskSizeGb: 100\n", "diskSizeGb: 100\n    autoscaling: {minNodeCount: 2, maxNodeCount: 4}\n")
        apply(on, "autoscaling off → 2..4")
        assert autoscaling() == (True, 2, 4)
        assert cli("plan", "-c", on, "--detailed-exitcode").exit_code == 0, "no change left over"

        wider = variant(tmp_path, "diskSizeGb: 100\n", "diskSizeGb: 100\n    autoscaling: {minNodeCount: 1, maxNodeCount: 5}\n")
        apply(wider, "autoscaling 2..4 → 1..5")
        assert autoscaling() == (True, 1, 5)
    finally:
        apply(EXAMPLE, "autoscaling 1..5 → off")
    assert autoscaling() == (False, 0, 0)
    # Off again, the pool keeps the file's fixed size (2 nodes already: no resize).
    assert cm.get_node_pool(name=POOL).initial_node_count == 2
    converged(cli)


def test_machine_type_change_is_blocked_and_nothing_changes(cli, live, sandbox_env, tmp_path):
    bigger = variant(tmp_path, "machineType: e2-highmem-4", "machineType: e2-highmem-8")
    mark = live.mark()
    try:
        result = cli("apply", "-c", bigger, "--yes", "--output", "json")
        assert result.exit_code == 1, result.output  # blocked: needs an operator (docs/apply.md)
        (blocked,) = changes(result.stdout, "blocked")
        assert (blocked["kind"], blocked["name"]) == ("GKE node pool", "spinnaker-pool")
        assert "machine type e2-highmem-4 → e2-highmem-8 cannot change in place" in blocked["detail"]
        assert REMEDY_POOL in blocked["detail"]
        google = [c for c in changes(result.stdout) if c["kind"].startswith(("GKE", "Google", "IAM"))]
        assert {c["action"] for c in google} == {"unchanged", "blocked"}, google
        muts = live.mutations_since(mark)
        assert muts["gke"] == [] and muts["pubsub"] == []
        assert live.sb.gke.cluster_manager().get_node_pool(name=POOL).config.machine_type == "e2-highmem-4"

        # People read it too: the text summary names the pool, the change and the remedy.
        text = cli("cluster", "apply", "-c", bigger)
        assert text.exit_code == 1
        (line,) = [ln.strip() for ln in text.output.splitlines() if "GKE node pool spinnaker-pool" in ln]
        assert line.startswith("!") and "machine type e2-highmem-4 → e2-highmem-8" in line and REMEDY_POOL in line
        plan = cli("plan", "-c", bigger, "--detailed-exitcode")
        assert plan.exit_code == 3 and REMEDY_POOL in plan.output
    finally:
        # Converge back to the example.
        assert cli("apply", "-c", EXAMPLE, "--yes").exit_code == 0
    converged(cli)


def test_a_gke_only_change_leaves_halyard_alone(cli, live, sandbox_env, tmp_path):
    relabelled = variant(tmp_path, "labels: {team: sre}", "labels: {team: platform}")
    mark = live.mark()
    try:
        assert cli("apply", "-c", relabelled, "--yes").exit_code == 0
        muts = live.mutations_since(mark)
        assert muts["gke"] == [GKE + "SetLabels"]
        # The run's lock (a Lease) is taken and given back; nothing else in Spinnaker's cluster may change.
        halyard = [m for m in muts[f"{PROJECT}-{ZONE}-spinnaker"] if " leases " not in m]
        assert halyard == [], halyard
    finally:
        assert cli("apply", "-c", EXAMPLE, "--yes").exit_code == 0


BLOCKED = {
    "disk-size": ("diskSizeGb: 100", "diskSizeGb: 200", "GKE node pool", "spinnaker-pool",
                  ["disk 100 → 200 GB cannot change in place", REMEDY_POOL]),
    "node-service-account": ("diskSizeGb: 100\n", "diskSizeGb: 100\n    serviceAccount: spinnaker-nodes-v2\n",
                             "GKE node pool", "spinnaker-pool",
                             [f"node service account {NODES_SA} → spinnaker-nodes-v2@{PROJECT}.iam.gserviceaccount.com",
                              REMEDY_POOL]),
    "private-nodes": ("privateNodes: false", "privateNodes: true\n  masterIpv4CidrBlock: 172.16.0.0/28\n  egress: cloud-nat",
                      "GKE cluster", "spinnaker",
                      ["privateNodes cannot change in place", "build a new cluster (new cluster.name)"]),
    "location": ("location: us-central1-b", "location: us-central1-c", "GKE cluster", "spinnaker",
                 ["exists in us-central1-b, not us-central1-c: a cluster cannot move",
                  "Set cluster.location: us-central1-b"]),
}


@pytest.mark.matrix
@full_only
@pytest.mark.parametrize("case", sorted(BLOCKED))
def test_every_other_blocked_path_names_its_remedy(cli, live, sandbox_env, tmp_path, case):
    old, new, kind, name, says = BLOCKED[case]
    path = variant(tmp_path, old, new)
    mark = live.mark()
    try:
        result = cli("cluster", "apply", "-c", path, "--yes", "--output", "json")
        assert result.exit_code == 1, result.output
        (blocked,) = changes(result.stdout, "blocked")
        assert (blocked["kind"], blocked["name"]) == (kind, name)
        for s in says:
            assert s in blocked["detail"], blocked["detail"]
        # Nothing was done to the cluster or its pool.
        assert [m for m in live.mutations_since(mark)["gke"] if m.startswith(GKE)] == []
    finally:
        if case == "node-service-account":
            # The service-account step made the new account and its project role before the pool was found
            # blocked; take them away again.
            new_sa = f"spinnaker-nodes-v2@{PROJECT}.iam.gserviceaccount.com"
            remove_member(live.sb.gke.projects_client(), f"projects/{PROJECT}",
                          "roles/container.defaultNodeServiceAccount", f"serviceAccount:{new_sa}")
            live.sb.gke.iam_admin().delete_service_account(name=f"projects/{PROJECT}/serviceAccounts/{new_sa}")
    converged(cli)


@pytest.mark.matrix
@full_only
def test_metadata_server_fix_does_not_upgrade_the_nodes(cli, live, sandbox_env):
    """`node_version: "-"` means the master's version: spinboot must not send it to change the metadata mode."""
    cm = live.sb.gke.cluster_manager()
    master = cm.get_cluster(name=CLUSTER).current_master_version
    older = "1.35.2-gke.1000"
    wait(cm, cm.update_node_pool(request={"name": POOL, "node_version": older}))
    wait(cm, cm.update_node_pool(request={"name": POOL, "workload_metadata_config": {"mode": "GCE_METADATA"}}))
    try:
        mark = live.mark()
        result = cli("cluster", "apply", "-c", EXAMPLE, "--output", "json")
        assert result.exit_code == 0, result.output
        assert live.mutations_since(mark)["gke"] == [GKE + "UpdateNodePool"]
        pool = cm.get_node_pool(name=POOL)
        assert pool.config.workload_metadata_config.mode.name == "GKE_METADATA"
        assert pool.version == older, "fixing the metadata server upgraded the nodes"
    finally:
        # And "-" is an upgrade to the master's version.
        wait(cm, cm.update_node_pool(request={"name": POOL, "node_version": "-"}))
    assert cm.get_node_pool(name=POOL).version == master
    converged(cli)


def test_iam_write_conflicts_are_retried(cli, live, sandbox_env):
    """ABORTED (a concurrent policy change, stale etag) on the project's and the service account's policies:
    spinboot reads again and writes again."""
    projects, iam = live.sb.gke.projects_client(), live.sb.gke.iam_admin()
    node_role = ("roles/container.defaultNodeServiceAccount", f"serviceAccount:{NODES_SA}")
    wi_role = ("roles/iam.workloadIdentityUser", f"serviceAccount:{PROJECT}.svc.id.goog[spinnaker/spinnaker]")
    sa_policy = f"projects/{PROJECT}/serviceAccounts/{SPINNAKER_SA}"
    remove_member(projects, f"projects/{PROJECT}", *node_role)
    remove_member(iam, sa_policy, *wi_role)
    msg = "msg=There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."
    live.sb.gke.set_faults(f"Projects/SetIamPolicy=ABORTED:count=2:{msg};IAM/SetIamPolicy=ABORTED:count=2:{msg}")
    try:
        live.sb.gke.reset_counts()
        result = cli("apply", "-c", EXAMPLE, "--yes")
        assert result.exit_code == 0, result.output
        methods = live.sb.gke.counts()["methods"]
        for m in ("/google.cloud.resourcemanager.v3.Projects/SetIamPolicy", "/google.iam.admin.v1.IAM/SetIamPolicy"):
            assert methods[m]["codes"].get("ABORTED") == 2 and methods[m]["calls"] == 3, (m, methods[m])
    finally:
        live.sb.gke.clear_faults()
    assert holds(projects, f"projects/{PROJECT}", *node_role)
    assert holds(iam, sa_policy, *wi_role)
    converged(cli)


@pytest.mark.matrix
@full_only
def test_a_new_service_account_is_waited_for_until_iam_knows_it(cli, live, sandbox_env):
    """On GCP a new service account reads back at once but policies refuse it ("Service account ... does not
    exist.") for a while. The nodes' account is deleted (its project binding stays, as a deleted principal) and
    apply makes it again: the binding is refused until the stand-in's propagation delay is over, and apply waits."""
    delay = 4.0
    iam, projects = live.sb.gke.iam_admin(), live.sb.gke.projects_client()
    before = live.sb.gke.set_iam_propagation(delay)
    try:
        iam.delete_service_account(name=f"projects/{PROJECT}/serviceAccounts/{NODES_SA}")
        live.sb.gke.reset_counts()
        t0 = time.monotonic()
        result = cli("cluster", "apply", "-c", EXAMPLE, "--output", "json")
        took = time.monotonic() - t0
        assert result.exit_code == 0, result.output
    finally:
        live.sb.gke.set_iam_propagation(before)
    created = [(e["kind"], e["name"]) for e in changes(result.stdout, "create")]
    assert ("Google service account", NODES_SA) in created
    assert ("IAM binding", f"roles/container.defaultNodeServiceAccount on projects/{PROJECT}") in created
    said = [e["message"] for e in events(result.stdout) if e["event"] == "progress"]
    assert any(f"service account {NODES_SA} is new and not yet known to IAM" in m for m in said), said
    assert any("accepted after" in m for m in said), said
    refused = live.sb.gke.counts()["methods"]["/google.cloud.resourcemanager.v3.Projects/SetIamPolicy"]["codes"]
    assert refused.get("INVALID_ARGUMENT", 0) >= 1, refused
    assert took >= delay - 0.5
    policy = projects.get_iam_policy(request={"resource": f"projects/{PROJECT}"})
    (binding,) = [b for b in policy.bindings if b.role == "roles/container.defaultNodeServiceAccount"]
    assert f"serviceAccount:{NODES_SA}" in binding.members
    gone = [m for m in binding.members if m.startswith(f"deleted:serviceAccount:{NODES_SA}?uid=")]
    assert len(gone) == 1, binding.members  # the old account's binding stays, as a deleted principal
    remove_member(projects, f"projects/{PROJECT}", binding.role, gone[0])
    converged(cli)
