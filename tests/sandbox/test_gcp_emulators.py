"""The sandbox's Google API stand-ins, exercised through the same official Python clients spinboot uses.

Fixtures live here (not in conftest.py) so this file stands alone. The GKE emulator gets a fake provisioner
that prints a fixed JSON line, so these tests check the API behaviour and that endpoint/CA round-trip, not a
real Kubernetes control plane (that is the sandbox's integration tests' job).
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import textwrap
import time
import urllib.error

import pytest

grpc = pytest.importorskip("grpc")
from google.api_core import exceptions as gexc  # noqa: E402
from google.cloud import container_v1, pubsub_v1  # noqa: E402
from google.iam.v1 import iam_policy_pb2, policy_pb2  # noqa: E402

from spinboot.sandbox import gcp  # noqa: E402

PROJECT = "acme-platform"
ZONE = "us-central1-b"
PARENT = f"projects/{PROJECT}/locations/{ZONE}"
FAKE_CA = "-----BEGIN CERTIFICATE-----\nMIIBfakefakefake\n-----END CERTIFICATE-----\n"
FAKE_ENDPOINT = "https://127.0.0.1:6443"

FAKE_PROVISIONER = textwrap.dedent(
    """\
    # Test stand-in for the sandbox's provision/deprovision/nodes commands: records each call, prints the contract.
    import json, sys
    a = sys.argv
    action, name = a[1], a[a.index("--name") + 1]
    extra = f" {a[a.index('--pool') + 1]} {a[a.index('--count') + 1]}" if action == "nodes" else ""
    with open(a[2], "a") as f:
        f.write(f"{action} {name}{extra}\\n")
    if action == "provision" and "doomed" in name:
        sys.exit("simulated provisioning failure")
    if action == "provision":
        print("some chatter on stdout")
        print(json.dumps({"endpoint": %(endpoint)r, "ca_pem": %(ca)r, "admin_kubeconfig": "/nonexistent/" + name}))
    """
) % {"endpoint": FAKE_ENDPOINT, "ca": FAKE_CA}


@pytest.fixture(scope="module")
def pubsub(tmp_path_factory):
    with gcp.PubSubEmulator(tmp_path_factory.mktemp("pubsub")) as emu:
        yield emu


@pytest.fixture(scope="module")
def gke(tmp_path_factory):
    d = tmp_path_factory.mktemp("gke")
    script = d / "fake_provision.py"
    script.write_text(FAKE_PROVISIONER)
    calls = d / "calls.txt"
    emu = gcp.GkeEmulator(
        d / "state",
        provision_cmd=[sys.executable, str(script), "provision", str(calls)],
        deprovision_cmd=[sys.executable, str(script), "deprovision", str(calls)],
        nodes_cmd=[sys.executable, str(script), "nodes", str(calls)],
        latency_s=0.6,
    )
    emu.calls_file = calls
    with emu:
        yield emu


@pytest.fixture
def cm(gke):
    gke.clear_faults()
    return gke.cluster_manager()


def wait_op(cm, op, timeout=30.0):
    """Poll like spinboot does: get_operation until DONE."""
    name = f"{PARENT}/operations/{op.name}"
    seen = {op.status}
    deadline = time.monotonic() + timeout
    while op.status != container_v1.Operation.Status.DONE:
        assert time.monotonic() < deadline, f"operation {op.name} not DONE: {op}"
        time.sleep(0.05)
        op = cm.get_operation(name=name)
        seen.add(op.status)
    return op, seen


def cluster_spec(name, **pool):
    return container_v1.Cluster(
        name=name,
        workload_identity_config=container_v1.WorkloadIdentityConfig(workload_pool=f"{PROJECT}.svc.id.goog"),
        node_pools=[
            container_v1.NodePool(
                name="spinnaker",
                initial_node_count=pool.get("count", 2),
                config=container_v1.NodeConfig(
                    machine_type=pool.get("machine_type", "e2-highmem-4"),
                    disk_size_gb=100,
                    workload_metadata_config=container_v1.WorkloadMetadataConfig(
                        mode=container_v1.WorkloadMetadataConfig.Mode.GKE_METADATA
                    ),
                ),
            )
        ],
    )


# ---- Pub/Sub ------------------------------------------------------------------------------------------------


def test_pstest_rejects_ack_deadline_above_600(pubsub, monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub.host)
    pub, sub = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = pub.topic_path(PROJECT, "gcr")
    pub.create_topic(name=topic)
    # pstest answers UNKNOWN (its comment: "PubSub service returns Unknown"), which the client's default retry
    # policy for CreateSubscription retries until its 60 s deadline: callers must validate <= 600 themselves
    # (or pass retry=None) rather than rely on the server.
    with pytest.raises(gexc.Unknown, match="bad ack_deadline_seconds: 601"):
        sub.create_subscription(name=sub.subscription_path(PROJECT, "too-long"), topic=topic,
                                ack_deadline_seconds=601, retry=None)
    ok = sub.create_subscription(name=sub.subscription_path(PROJECT, "spinnaker-gcr"), topic=topic, ack_deadline_seconds=600)
    assert ok.ack_deadline_seconds == 600


def test_subscription_iam_policy_etag_semantics(pubsub, monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub.host)
    pub, sub = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = pub.topic_path(PROJECT, "iam-topic")
    pub.create_topic(name=topic)
    name = sub.subscription_path(PROJECT, "iam-sub")
    sub.create_subscription(name=name, topic=topic)

    first = sub.get_iam_policy(request={"resource": name})
    assert not first.bindings and first.etag
    member = f"serviceAccount:spinnaker@{PROJECT}.iam.gserviceaccount.com"
    first.bindings.add(role="roles/pubsub.subscriber", members=[member])
    updated = sub.set_iam_policy(request={"resource": name, "policy": first})
    assert updated.etag != first.etag
    assert [(b.role, list(b.members)) for b in sub.get_iam_policy(request={"resource": name}).bindings] == [
        ("roles/pubsub.subscriber", [member])
    ]

    stale = policy_pb2.Policy()
    stale.CopyFrom(first)  # still carries the etag read before the first write
    stale.bindings.add(role="roles/pubsub.viewer", members=["user:someone@example.com"])
    with pytest.raises(gexc.Aborted):
        sub.set_iam_policy(request={"resource": name, "policy": stale})

    with pytest.raises(gexc.NotFound):
        sub.get_iam_policy(request={"resource": sub.subscription_path(PROJECT, "missing")})
    with pytest.raises(gexc.InvalidArgument):  # Pub/Sub refuses roles of other services
        sub.set_iam_policy(request={"resource": name, "policy": {"bindings": [{"role": "roles/container.admin", "members": [member]}]}})

    # The publisher side (topics) has the same service; deleting a resource drops its policy.
    tpol = pub.get_iam_policy(request={"resource": topic})
    tpol.bindings.add(role="roles/pubsub.publisher", members=["user:ci@example.com"])
    pub.set_iam_policy(request={"resource": topic, "policy": tpol})
    perms = pub.test_iam_permissions(request={"resource": topic, "permissions": ["pubsub.topics.publish", "container.clusters.get"]})
    assert list(perms.permissions) == ["pubsub.topics.publish"]
    sub.delete_subscription(subscription=name)
    sub.create_subscription(name=name, topic=topic)
    assert not sub.get_iam_policy(request={"resource": name}).bindings


def test_pubsub_fault_and_counts(pubsub):
    pub = pubsub.publisher()
    pubsub.reset_counts()
    pubsub.set_faults("Publisher/GetTopic=UNAVAILABLE:count=1")
    topic = pub.topic_path(PROJECT, "gcr")
    with pytest.raises(gexc.ServiceUnavailable):
        pub.get_topic(topic=topic, retry=None)
    assert pub.get_topic(topic=topic, retry=None).name == topic
    m = pubsub.counts()["methods"]["/google.pubsub.v1.Publisher/GetTopic"]
    assert (m["calls"], m["injected"], m["errors"], m["kind"]) == (2, 1, 1, "read")
    pubsub.clear_faults()


def test_publish_and_streaming_pull_through_the_wrapper(pubsub, monkeypatch):
    """Echo consumes with StreamingPull: the stream must survive the wrapper's interceptors."""
    import concurrent.futures

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub.host)
    pub, sub = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic, name = pub.topic_path(PROJECT, "stream"), sub.subscription_path(PROJECT, "stream-sub")
    pub.create_topic(name=topic)
    sub.create_subscription(name=name, topic=topic, ack_deadline_seconds=60)
    pubsub.reset_counts()
    pub.publish(topic, b'{"action":"INSERT","tag":"us-docker.pkg.dev/acme/tasks:1"}').result(timeout=10)
    got: concurrent.futures.Future = concurrent.futures.Future()

    def on_message(msg):
        msg.ack()
        if not got.done():
            got.set_result(json.loads(msg.data))

    stream = sub.subscribe(name, on_message)
    try:
        assert got.result(timeout=20)["action"] == "INSERT"
    finally:
        stream.cancel()
        with contextlib.suppress(Exception):
            stream.result(timeout=5)
    totals = pubsub.counts()["totals"]
    assert totals["data"] >= 2 and totals["mutating"] == 0


# ---- GKE ----------------------------------------------------------------------------------------------------


def test_create_cluster_operation_and_fields(gke, cm):
    op = cm.create_cluster(parent=PARENT, cluster=cluster_spec("spinnaker"))
    assert op.operation_type == container_v1.Operation.Type.CREATE_CLUSTER
    assert op.status in (container_v1.Operation.Status.PENDING, container_v1.Operation.Status.RUNNING)
    assert cm.get_cluster(name=f"{PARENT}/clusters/spinnaker").status == container_v1.Cluster.Status.PROVISIONING
    op, seen = wait_op(cm, op)
    assert container_v1.Operation.Status.RUNNING in seen
    assert not op.error.message, op.error

    c = cm.get_cluster(name=f"{PARENT}/clusters/spinnaker")
    assert c.status == container_v1.Cluster.Status.RUNNING
    assert c.endpoint == FAKE_ENDPOINT.removeprefix("https://")
    assert base64.b64decode(c.master_auth.cluster_ca_certificate).decode() == FAKE_CA
    assert c.workload_identity_config.workload_pool == f"{PROJECT}.svc.id.goog"
    (np,) = c.node_pools
    assert np.config.workload_metadata_config.mode == container_v1.WorkloadMetadataConfig.Mode.GKE_METADATA
    assert (np.config.machine_type, np.initial_node_count, c.current_node_count) == ("e2-highmem-4", 2, 2)
    assert f"provision {PROJECT}-{ZONE}-spinnaker" in gke.calls_file.read_text()
    assert [x.name for x in cm.list_clusters(parent=PARENT).clusters] == ["spinnaker"]
    assert any(o.name == op.name for o in cm.list_operations(parent=PARENT).operations)
    assert gke.clusters()[f"{PROJECT}/{ZONE}/spinnaker"]["admin_kubeconfig"].endswith("spinnaker")

    with pytest.raises(gexc.AlreadyExists):
        cm.create_cluster(parent=PARENT, cluster=cluster_spec("spinnaker"))


@pytest.mark.parametrize(
    "spec",
    [
        cluster_spec("Bad_Name"),
        cluster_spec("x" * 41),
        cluster_spec("ok-name", machine_type="e2-highmem-5"),
        cluster_spec("ok-name", count=-1),
        cluster_spec("ok-name", count=100000),
        container_v1.Cluster(name="no-nodes"),
    ],
    ids=["bad-name", "too-long", "unknown-machine-type", "negative-count", "absurd-count", "no-node-pool"],
)
def test_invalid_argument(cm, spec):
    with pytest.raises(gexc.InvalidArgument):
        cm.create_cluster(parent=PARENT, cluster=spec)


def test_failed_precondition_while_operation_runs_then_set_size_and_delete(gke, cm):
    name = f"{PARENT}/clusters/busy"
    op = cm.create_cluster(parent=PARENT, cluster=cluster_spec("busy"))
    with pytest.raises(gexc.FailedPrecondition) as e:
        cm.set_node_pool_size(request={"name": f"{name}/nodePools/spinnaker", "node_count": 3})
    assert op.name in str(e.value)
    wait_op(cm, op)

    with pytest.raises(gexc.InvalidArgument):
        cm.set_node_pool_size(request={"name": f"{name}/nodePools/spinnaker", "node_count": -1})
    with pytest.raises(gexc.NotFound):
        cm.set_node_pool_size(request={"name": f"{name}/nodePools/nope", "node_count": 3})
    op, _ = wait_op(cm, cm.set_node_pool_size(request={"name": f"{name}/nodePools/spinnaker", "node_count": 3}))
    assert op.operation_type == container_v1.Operation.Type.SET_NODE_POOL_SIZE
    assert cm.get_node_pool(name=f"{name}/nodePools/spinnaker").initial_node_count == 3
    backing = f"{PROJECT}-{ZONE}-busy"
    assert [ln for ln in gke.calls_file.read_text().splitlines() if ln.startswith(f"nodes {backing} ")] == [
        f"nodes {backing} spinnaker 2", f"nodes {backing} spinnaker 3"]

    # Node pool create/update/delete, including workload metadata round-trip.
    pool = container_v1.NodePool(name="extra", initial_node_count=1, config=container_v1.NodeConfig(machine_type="n2-standard-4"))
    wait_op(cm, cm.create_node_pool(parent=name, node_pool=pool))
    with pytest.raises(gexc.AlreadyExists):
        cm.create_node_pool(parent=name, node_pool=pool)
    got = cm.get_node_pool(name=f"{name}/nodePools/extra")
    assert got.config.workload_metadata_config.mode == container_v1.WorkloadMetadataConfig.Mode.GKE_METADATA
    wait_op(cm, cm.update_node_pool(request=container_v1.UpdateNodePoolRequest(
        name=f"{name}/nodePools/extra",
        workload_metadata_config=container_v1.WorkloadMetadataConfig(mode=container_v1.WorkloadMetadataConfig.Mode.GCE_METADATA),
    )))
    got = cm.get_node_pool(name=f"{name}/nodePools/extra")
    assert got.config.workload_metadata_config.mode == container_v1.WorkloadMetadataConfig.Mode.GCE_METADATA
    assert sorted(p.name for p in cm.list_node_pools(parent=name).node_pools) == ["extra", "spinnaker"]
    wait_op(cm, cm.delete_node_pool(name=f"{name}/nodePools/extra"))
    with pytest.raises(gexc.NotFound):
        cm.get_node_pool(name=f"{name}/nodePools/extra")

    op, _ = wait_op(cm, cm.update_cluster(name=name, update=container_v1.ClusterUpdate(
        desired_master_authorized_networks_config=container_v1.MasterAuthorizedNetworksConfig(
            enabled=True, cidr_blocks=[container_v1.MasterAuthorizedNetworksConfig.CidrBlock(display_name="office", cidr_block="203.0.113.0/24")]
        )
    )))
    assert cm.get_cluster(name=name).master_authorized_networks_config.cidr_blocks[0].cidr_block == "203.0.113.0/24"

    op, _ = wait_op(cm, cm.delete_cluster(name=name))
    assert not op.error.message
    with pytest.raises(gexc.NotFound):
        cm.get_cluster(name=name)
    assert f"deprovision {PROJECT}-{ZONE}-busy" in gke.calls_file.read_text()


def test_labels_autoscaling_and_one_field_updates(cm):
    """The update paths spinboot takes, with the refusals real GKE gives (cmd/gke-emulator/updates.go)."""
    name = f"{PARENT}/clusters/updates"
    spec = cluster_spec("updates")
    spec.resource_labels = {"team": "sre", "managed-by": "spinboot"}
    wait_op(cm, cm.create_cluster(parent=PARENT, cluster=spec))
    c = cm.get_cluster(name=name)
    fingerprint = c.label_fingerprint
    assert len(fingerprint) == 8 and dict(c.resource_labels) == {"team": "sre", "managed-by": "spinboot"}

    # SetLabels replaces the set (team removed) and needs the current fingerprint.
    with pytest.raises(gexc.FailedPrecondition, match="fingerprint mismatch"):
        cm.set_labels(request={"name": name, "resource_labels": {"managed-by": "spinboot"}, "label_fingerprint": "0"})
    wait_op(cm, cm.set_labels(request={"name": name, "resource_labels": {"managed-by": "spinboot", "cost-center": "cc-42"},
                                       "label_fingerprint": fingerprint}))
    c = cm.get_cluster(name=name)
    assert dict(c.resource_labels) == {"managed-by": "spinboot", "cost-center": "cc-42"}
    assert c.label_fingerprint != fingerprint
    with pytest.raises(gexc.FailedPrecondition, match=f'supplied was "{fingerprint}"'):
        cm.set_labels(request={"name": name, "resource_labels": {}, "label_fingerprint": fingerprint})

    # Autoscaling on, changed, off.
    pool = f"{name}/nodePools/spinnaker"
    for auto in ({"enabled": True, "min_node_count": 1, "max_node_count": 3},
                 {"enabled": True, "min_node_count": 2, "max_node_count": 5}):
        wait_op(cm, cm.set_node_pool_autoscaling(request={"name": pool, "autoscaling": auto}))
        a = cm.get_node_pool(name=pool).autoscaling
        assert (a.enabled, a.min_node_count, a.max_node_count) == tuple(auto.values())
    with pytest.raises(gexc.InvalidArgument, match="autoscaling limits"):
        cm.set_node_pool_autoscaling(request={"name": pool, "autoscaling": {"enabled": True, "min_node_count": 4,
                                                                            "max_node_count": 2}})
    wait_op(cm, cm.set_node_pool_autoscaling(request={"name": pool, "autoscaling": {"enabled": False}}))
    a = cm.get_node_pool(name=pool).autoscaling
    assert (a.enabled, a.min_node_count, a.max_node_count) == (False, 0, 0)

    # UpdateCluster: exactly one field per request.
    two = container_v1.ClusterUpdate(desired_release_channel={"channel": "RAPID"},
                                     desired_master_authorized_networks_config={"enabled": False})
    with pytest.raises(gexc.InvalidArgument, match="Exactly one update can be applied"):
        cm.update_cluster(name=name, update=two)
    with pytest.raises(gexc.InvalidArgument, match="Must specify a field to update"):
        cm.update_cluster(name=name, update=container_v1.ClusterUpdate())
    with pytest.raises(gexc.MethodNotImplemented, match="desired_shielded_nodes"):
        cm.update_cluster(name=name, update=container_v1.ClusterUpdate(desired_shielded_nodes={"enabled": True}))

    # node_version "-" is the master's version; an update without node_version leaves the version alone.
    older = "1.35.2-gke.500"
    wait_op(cm, cm.update_node_pool(request={"name": pool, "node_version": older}))
    wait_op(cm, cm.update_node_pool(request={"name": pool, "workload_metadata_config": {"mode": "GKE_METADATA"}}))
    assert cm.get_node_pool(name=pool).version == older
    wait_op(cm, cm.update_node_pool(request={"name": pool, "node_version": "-"}))
    c = cm.get_cluster(name=name)
    assert c.node_pools[0].version == c.current_master_version == c.current_node_version != older
    with pytest.raises(gexc.InvalidArgument, match="At least one of"):
        cm.update_node_pool(request={"name": pool})
    wait_op(cm, cm.delete_cluster(name=name))


def test_failed_provisioning_sets_operation_error(gke, cm):
    op, _ = wait_op(cm, cm.create_cluster(parent=PARENT, cluster=cluster_spec("doomed")))
    assert op.error.code == grpc.StatusCode.INTERNAL.value[0] and "provisioning" in op.error.message
    c = cm.get_cluster(name=f"{PARENT}/clusters/doomed")
    assert c.status == container_v1.Cluster.Status.ERROR and not c.endpoint
    with pytest.raises(gexc.FailedPrecondition):  # as at Google: an ERROR cluster can only be deleted
        cm.set_node_pool_size(request={"name": f"{PARENT}/clusters/doomed/nodePools/spinnaker", "node_count": 1})
    op, _ = wait_op(cm, cm.delete_cluster(name=f"{PARENT}/clusters/doomed"))
    assert not op.error.message
    assert f"deprovision {PROJECT}-{ZONE}-doomed" in gke.calls_file.read_text()


def test_stopping_the_emulator_deprovisions_its_clusters(tmp_path):
    script = tmp_path / "fake_provision.py"
    script.write_text(FAKE_PROVISIONER)
    calls = tmp_path / "calls.txt"
    emu = gcp.GkeEmulator(tmp_path / "state", latency_s=0.1,
                          provision_cmd=[sys.executable, str(script), "provision", str(calls)],
                          deprovision_cmd=[sys.executable, str(script), "deprovision", str(calls)])
    with emu:
        cm = emu.cluster_manager()
        wait_op(cm, cm.create_cluster(parent=PARENT, cluster=cluster_spec("left-behind")))
    assert calls.read_text().splitlines() == [f"provision {PROJECT}-{ZONE}-left-behind", f"deprovision {PROJECT}-{ZONE}-left-behind"]


def test_fault_injection_fails_exactly_n_times(gke, cm):
    gke.add_faults("container.v1.ClusterManager/ListClusters=UNAVAILABLE:count=2")
    for _ in range(2):
        with pytest.raises(gexc.ServiceUnavailable):
            cm.list_clusters(parent=PARENT, retry=None)
    cm.list_clusters(parent=PARENT, retry=None)
    assert gke.list_faults()[0]["fired"] == 2

    # The client's default retry policy absorbs transient UNAVAILABLE; the sandbox counts every attempt.
    gke.reset_counts()
    gke.set_faults("ListClusters=UNAVAILABLE:count=2")
    cm.list_clusters(parent=PARENT)
    m = gke.counts()["methods"]["/google.container.v1.ClusterManager/ListClusters"]
    assert (m["calls"], m["injected"], m["codes"]) == (3, 2, {"UNAVAILABLE": 2})

    with pytest.raises(urllib.error.HTTPError):  # a typo in a fault spec is refused, not ignored
        gke.add_faults("ListClusters=NOT_A_CODE")


def test_call_counters_reads_vs_mutating(gke, cm):
    gke.reset_counts()
    cm.list_clusters(parent=PARENT)
    cm.get_server_config(name=PARENT)
    with pytest.raises(gexc.NotFound):
        cm.get_cluster(name=f"{PARENT}/clusters/absent")
    counts = gke.counts()
    assert counts["totals"]["mutating"] == 0 and counts["totals"]["read"] == 3
    assert gke.mutating_calls() == {}
    with pytest.raises(gexc.InvalidArgument):
        cm.create_cluster(parent=PARENT, cluster=cluster_spec("Nope"))
    assert gke.mutating_calls() == {"/google.container.v1.ClusterManager/CreateCluster": 1}


# ---- IAM: service accounts and project policy ---------------------------------------------------------------


def test_service_accounts_and_policies(gke, cm):
    from google.cloud import iam_admin_v1

    # A Workload Identity pool exists once a cluster with Workload Identity exists in the project.
    wait_op(cm, cm.create_cluster(parent=PARENT, cluster=cluster_spec("iam-pool")))
    iam = gke.iam_admin()
    sa = iam.create_service_account(request={"name": f"projects/{PROJECT}", "account_id": "spinnaker",
                                             "service_account": {"display_name": "Spinnaker"}})
    assert sa.email == f"spinnaker@{PROJECT}.iam.gserviceaccount.com"
    with pytest.raises(gexc.AlreadyExists):
        iam.create_service_account(request={"name": f"projects/{PROJECT}", "account_id": "spinnaker"})
    with pytest.raises(gexc.InvalidArgument):
        iam.create_service_account(request={"name": f"projects/{PROJECT}", "account_id": "no"})
    assert iam.get_service_account(name=f"projects/-/serviceAccounts/{sa.email}").unique_id == sa.unique_id
    assert [a.email for a in iam.list_service_accounts(name=f"projects/{PROJECT}")] == [sa.email]

    # Workload Identity binding on the Google SA.
    res = f"projects/{PROJECT}/serviceAccounts/{sa.email}"
    pol = iam.get_iam_policy(request={"resource": res})
    pol.bindings.add(role="roles/iam.workloadIdentityUser", members=[f"serviceAccount:{PROJECT}.svc.id.goog[spinnaker/spinnaker]"])
    new = iam.set_iam_policy(request={"resource": res, "policy": pol})
    with pytest.raises(gexc.Aborted):
        iam.set_iam_policy(request={"resource": res, "policy": pol})
    pol2 = iam.get_iam_policy(request={"resource": res})
    assert pol2.etag == new.etag and len(pol2.bindings) == 1
    bad = iam_policy_pb2.SetIamPolicyRequest(resource=res)
    bad.policy.bindings.add(role="roles/iam.workloadIdentityUser", members=["serviceAccount:other-project.svc.id.goog[a/b]"])
    with pytest.raises(gexc.InvalidArgument, match="Identity Pool does not exist"):
        iam.set_iam_policy(request=bad)

    # Project policy: read-modify-write, members must exist.
    projects = gke.projects_client()
    p = projects.get_iam_policy(request={"resource": f"projects/{PROJECT}"})
    p.bindings.add(role="roles/storage.admin", members=[f"serviceAccount:{sa.email}"])
    projects.set_iam_policy(request={"resource": f"projects/{PROJECT}", "policy": p})
    with pytest.raises(gexc.Aborted):
        projects.set_iam_policy(request={"resource": f"projects/{PROJECT}", "policy": p})
    ghost = projects.get_iam_policy(request={"resource": f"projects/{PROJECT}"})
    ghost.bindings.add(role="roles/viewer", members=[f"serviceAccount:ghost-sa@{PROJECT}.iam.gserviceaccount.com"])
    with pytest.raises(gexc.InvalidArgument, match="does not exist"):
        projects.set_iam_policy(request={"resource": f"projects/{PROJECT}", "policy": ghost})
    assert projects.get_project(name=f"projects/{PROJECT}").project_id == PROJECT

    iam.delete_service_account(name=res)
    with pytest.raises(gexc.NotFound):
        iam.get_service_account(name=res)
    assert isinstance(iam, iam_admin_v1.IAMClient)


def test_new_service_account_propagates_and_ensure_binding_waits(gke):
    """A new service account reads back at once but is refused in policies for the propagation delay, in IAM's
    words; spinboot's ensure_binding waits that out (and only that), saying so."""
    from spinboot.gcp.iam import GrpcPolicy, IamError, ensure_binding

    iam, projects = gke.iam_admin(), gke.projects_client()
    before = gke.set_iam_propagation(1.5)
    try:
        sa = iam.create_service_account(request={"name": f"projects/{PROJECT}", "account_id": "fresh-account"})
        assert iam.get_service_account(name=sa.name).email == sa.email  # GET finds it at once
        member = f"serviceAccount:{sa.email}"
        p = projects.get_iam_policy(request={"resource": f"projects/{PROJECT}"})
        p.bindings.add(role="roles/viewer", members=[member])
        with pytest.raises(gexc.InvalidArgument, match=f"Service account {sa.email} does not exist."):
            projects.set_iam_policy(request={"resource": f"projects/{PROJECT}", "policy": p})

        said: list[str] = []
        t0 = time.monotonic()
        ch = ensure_binding(GrpcPolicy(projects, f"projects/{PROJECT}"), f"projects/{PROJECT}", "roles/viewer", [member],
                            progress=said.append)
        assert ch.action == "create" and time.monotonic() - t0 >= 0.5
        assert "not yet known to IAM" in said[0] and "accepted after" in said[-1]

        # An account that never appears is given up on after the bound, with the cause and what to check.
        ghost = f"serviceAccount:ghost-account@{PROJECT}.iam.gserviceaccount.com"
        with pytest.raises(IamError, match="still says service account ghost-account@.* does not exist"):
            ensure_binding(GrpcPolicy(projects, f"projects/{PROJECT}"), f"projects/{PROJECT}", "roles/viewer", [ghost],
                           propagation_timeout=1.0, sleep=lambda s: None)
    finally:
        gke.set_iam_propagation(before)
        iam.delete_service_account(name=f"projects/{PROJECT}/serviceAccounts/fresh-account@{PROJECT}.iam.gserviceaccount.com")


def test_stop_leaves_nothing_behind(tmp_path):
    emu = gcp.PubSubEmulator(tmp_path).start()
    pid = emu.proc.pid
    assert json.loads((tmp_path / "pubsub-emulator.ready.json").read_text())["pid"] == pid
    emu.stop()
    assert not gcp._alive(pid)
    assert not (tmp_path / "pubsub-emulator.pid").exists()


def test_real_sandbox_cluster_endpoint_answers(tmp_path, sandbox_binaries):
    """With the real provisioner, the endpoint and CA the API returns reach a live kube-apiserver over verified
    TLS, which answers /version to the bearer token it was provisioned with and refuses anonymous requests."""
    import json as _json
    import ssl
    import urllib.request

    kube = [sys.executable, "-m", "spinboot.sandbox.kube"]
    token = "sandbox-test-token"
    emu = gcp.GkeEmulator(tmp_path / "emu", latency_s=0.5,
                          provision_cmd=[*kube, "provision", "--admin-token", token, "--state-dir", str(tmp_path / "kube")],
                          deprovision_cmd=[*kube, "deprovision", "--state-dir", str(tmp_path / "kube")])
    with emu:
        cm = emu.cluster_manager()
        op, _ = wait_op(cm, cm.create_cluster(parent=PARENT, cluster=cluster_spec("real")), timeout=300)
        assert not op.error.message, op.error
        c = cm.get_cluster(name=f"{PARENT}/clusters/real")
        ctx = ssl.create_default_context(cadata=base64.b64decode(c.master_auth.cluster_ca_certificate).decode())
        with pytest.raises(urllib.error.HTTPError) as e:  # anonymous requests are refused
            urllib.request.urlopen(f"https://{c.endpoint}/version", context=ctx, timeout=10)
        assert e.value.code == 401
        req = urllib.request.Request(f"https://{c.endpoint}/version", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            assert _json.loads(resp.read())["gitVersion"].startswith("v1.")
        wait_op(cm, cm.delete_cluster(name=f"{PARENT}/clusters/real"), timeout=120)


def test_plan_reports_a_running_operation_and_never_waits(gke, cm):
    """Issue 11: a plan against a cluster still being created says so and returns; only apply waits."""
    import time

    from spinboot.config import load_config_bytes
    from spinboot.gcp.gke import ensure_cluster

    text = (f"project: {PROJECT}\ncluster: {{name: planning, location: {ZONE}}}\nspinnaker:\n  version: 2026.2.3\n"
            "  storage: {bucket: acme-spinnaker}\n"
            "  exposure: {uiUrl: https://spinnaker.acme.dev, apiUrl: https://spinnaker.acme.dev/gate}\n")
    cfg = load_config_bytes(text.encode(), "f.yaml").config
    op = cm.create_cluster(parent=PARENT, cluster=cluster_spec("planning"))
    started = time.monotonic()
    changes, _ = ensure_cluster(cm, cfg, dry_run=True)   # the operation runs for 0.6 s at least (fixture latency)
    took = time.monotonic() - started
    busy = [c for c in changes if "an operation is running" in c.detail]
    assert busy and busy[0].action == "unchanged", changes
    assert cm.get_operation(name=f"{PARENT}/operations/{op.name.split('/')[-1]}").status != \
        container_v1.Operation.Status.DONE, f"the plan waited ({took:.1f} s)"
    wait_op(cm, op)
