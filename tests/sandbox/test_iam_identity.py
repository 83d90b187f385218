"""Spinnaker's Google identity in the sandbox (issue 10; docs/dev/spinnaker-side-interfaces.md): the GKE stand-in's
metadata server mints a Workload Identity token only when the binding chain is complete, and Pub/Sub and Storage
allow a call made with it only if the policies spinboot sets grant a role holding the permission.

Everything runs for real: one Sandbox (GKE, Pub/Sub and Storage stand-ins, Storage behind its IAM proxy) and one GKE
cluster backed by a real Kubernetes control plane, whose service account annotations the metadata server reads.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.error
import urllib.request

import pytest

pytest.importorskip("grpc")
from google.api_core import exceptions as gexc  # noqa: E402
from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.oauth2.credentials import Credentials  # noqa: E402
from google.pubsub_v1.services.publisher.client import PublisherClient as PublisherApi  # noqa: E402

from spinboot.gcp.iam import BucketPolicy, GrpcPolicy, ensure_binding  # noqa: E402
from spinboot.sandbox import identity  # noqa: E402

PROJECT = "acme-platform"
LOCATION = "us-central1-b"
CLUSTER = "spinnaker"
BACKING = f"{PROJECT}-{LOCATION}-{CLUSTER}"
GSA = f"spinnaker@{PROJECT}.iam.gserviceaccount.com"
MEMBER = f"serviceAccount:{GSA}"
TOPIC = f"projects/{PROJECT}/topics/gcr"
SUB = f"projects/{PROJECT}/subscriptions/spinnaker-gcr"
BUCKET = "acme-spinnaker"


def mint(secret: str, email: str) -> str:
    """A sandbox identity token (format: spinboot/sandbox/go/internal/sandboxsrv/identity.go), as the metadata
    server mints it; with another secret, a forgery."""
    body = "sbx1." + base64.urlsafe_b64encode(email.encode()).decode().rstrip("=")
    return body + "." + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def sb(sandbox_binaries, tmp_path_factory):
    from spinboot.sandbox.sandbox import Sandbox

    sandbox = Sandbox(tmp_path_factory.mktemp("iam"), gke_latency_s=0.1).up()
    try:
        yield sandbox
    finally:
        sandbox.down()


def _auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


# --- Pub/Sub ---------------------------------------------------------------------------------------------------------


def test_pubsub_subscriber_grant(sb):
    pub, sub = sb.pubsub.publisher(), sb.pubsub.subscriber()
    pub.create_topic(name=TOPIC)
    sub.create_subscription(name=SUB, topic=TOPIC)  # the operator: no credentials, allowed everything
    token = mint(sb.token, GSA)

    with pytest.raises(gexc.PermissionDenied) as denied:
        sub.pull(request={"subscription": SUB, "max_messages": 1}, metadata=_auth(token), retry=None, timeout=10)
    assert "pubsub.subscriptions.consume" in denied.value.message and GSA in denied.value.message
    assert "roles/pubsub.subscriber" in denied.value.message  # what would grant it

    with pytest.raises(gexc.Unauthenticated):
        sub.pull(request={"subscription": SUB, "max_messages": 1}, metadata=_auth(mint("forged", GSA)),
                 retry=None, timeout=10)

    # What spinboot grants (spinboot/gcp/pubsub.py): roles/pubsub.subscriber on the subscription.
    ensure_binding(GrpcPolicy(sub, SUB), SUB, "roles/pubsub.subscriber", [MEMBER])
    pub.publish(TOPIC, b'{"action": "INSERT", "tag": "x"}').result(timeout=10)
    got = sub.pull(request={"subscription": SUB, "max_messages": 1}, metadata=_auth(token), retry=None, timeout=10)
    assert len(got.received_messages) == 1
    sub.acknowledge(request={"subscription": SUB, "ack_ids": [got.received_messages[0].ack_id]},
                    metadata=_auth(token), retry=None, timeout=10)
    with pytest.raises(gexc.PermissionDenied, match="pubsub.topics.publish"):
        # The plain API call (the client's publish() batches and takes no metadata).
        PublisherApi.publish(pub, topic=TOPIC, messages=[{"data": b"x"}], metadata=_auth(token), retry=None,
                             timeout=10)
    # Denials are counted like any other error.
    codes = sb.pubsub.counts()["methods"]["/google.pubsub.v1.Subscriber/Pull"]["codes"]
    assert codes["PERMISSION_DENIED"] == 1 and codes["UNAUTHENTICATED"] == 1


# --- Storage ---------------------------------------------------------------------------------------------------------


def _gcs(sb, credentials):
    from google.cloud import storage

    return storage.Client(project=PROJECT, credentials=credentials, client_options={"api_endpoint": sb.storage_url})


def test_storage_object_admin_is_not_enough_for_front50(sb):
    """front50's GCS store calls storage.get(bucket) at startup (storage.buckets.get): roles/storage.objectAdmin
    lets it write and read objects but not that (issue 10 item 2); roles/storage.legacyBucketReader adds it."""
    op = _gcs(sb, AnonymousCredentials())
    op.create_bucket(BUCKET)
    front50 = _gcs(sb, Credentials(mint(sb.token, GSA)))

    with pytest.raises(gexc.Forbidden) as denied:
        front50.bucket(BUCKET).blob("front50/pipelines/x.json").upload_from_string("{}")
    assert "storage.objects.create" in denied.value.message

    ensure_binding(BucketPolicy(op, BUCKET), BUCKET, "roles/storage.objectAdmin", [MEMBER])
    blob = front50.bucket(BUCKET).blob("front50/pipelines/x.json")
    blob.upload_from_string('{"v": 1}')
    blob.upload_from_string('{"v": 2}')  # a replacement: objectAdmin holds storage.objects.delete too
    assert blob.download_as_bytes() == b'{"v": 2}'
    assert [b.name for b in front50.list_blobs(BUCKET, prefix="front50/")] == ["front50/pipelines/x.json"]
    with pytest.raises(gexc.Forbidden) as denied:
        front50.get_bucket(BUCKET)
    assert "does not have storage.buckets.get access to the Google Cloud Storage bucket" in denied.value.message
    assert denied.value.errors[0]["reason"] == "forbidden"

    ensure_binding(BucketPolicy(op, BUCKET), BUCKET, "roles/storage.legacyBucketReader", [MEMBER])
    assert front50.get_bucket(BUCKET).name == BUCKET

    # A forged token: 401 in Storage's form (a client library would then try to refresh its credentials).
    req = urllib.request.Request(f"{sb.storage_url}/storage/v1/b/{BUCKET}",
                                 headers={"Authorization": f"Bearer {mint('forged', GSA)}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401 and json.loads(e.value.read())["error"]["errors"][0]["reason"] == "authError"
    # Denials are counted like any other error (the client library itself reads the bucket after a failed upload).
    assert sb.storage_faults.counts()["methods"]["GET storage/v1/b/{}"]["codes"] == {"403": 2, "401": 1}


# --- the metadata server -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spinnaker_cluster(sb):
    """A Workload Identity cluster made through the GKE API, backed by a real control plane."""
    from google.cloud import container_v1
    from kubernetes import client, config

    from spinboot.gcp.gke import wait_operation

    cm = sb.gke.cluster_manager()
    op = cm.create_cluster(parent=f"projects/{PROJECT}/locations/{LOCATION}", cluster=container_v1.Cluster(
        name=CLUSTER, workload_identity_config={"workload_pool": f"{PROJECT}.svc.id.goog"},
        node_pools=[container_v1.NodePool(name="pool", initial_node_count=1)]))
    wait_operation(cm, PROJECT, LOCATION, op, "create", timeout=300)
    api = config.new_client_from_config(config_file=str(sb.admin_kubeconfig(PROJECT, LOCATION, CLUSTER)))
    return client.CoreV1Api(api), client.CustomObjectsApi(api)


def _gke_admin(sb, method="GET", body=None):
    req = urllib.request.Request(sb.gke.admin_url + "/metadata/identities", method=method,
                                 data=json.dumps(body).encode() if body else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_halyard_pod_gets_its_metadata_server(sb, spinnaker_cluster):
    """gkebacking registers (cluster, halyard, halyard) and puts its host and the endpoints path into the Halyard
    pod's exec environment, as GKE gives the pod its metadata server."""
    _, custom = spinnaker_cluster
    hosts = {(e["cluster"], e["namespace"], e["serviceAccount"]): e["host"] for e in _gke_admin(sb)}
    host = hosts[(BACKING, "halyard", "halyard")]
    assert identity.register(sb.gke.admin_url, BACKING, "halyard", "halyard") == host  # idempotent
    rule = custom.get_cluster_custom_object("kwok.x-k8s.io", "v1alpha1", "clusterexecs", "spinboot-halyard")
    env = {e["name"]: e["value"] for e in rule["spec"]["execs"][0]["local"]["envs"]}
    assert env["GCE_METADATA_HOST"] == host and env["SPINBOOT_SANDBOX_ENDPOINTS"] == str(sb.endpoints_path)


def test_workload_identity_chain(sb, spinnaker_cluster):
    from kubernetes import client

    core, _ = spinnaker_cluster
    ns, ksa = "spinnaker", "spinnaker"
    host = identity.register(sb.gke.admin_url, BACKING, ns, ksa)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=ksa)))

    with pytest.raises(urllib.error.HTTPError) as e:  # GCE and GKE refuse without the header
        urllib.request.urlopen(f"http://{host}{identity.TOKEN_PATH}", timeout=10)
    assert e.value.code == 403
    with pytest.raises(identity.IdentityError, match="not annotated iam.gke.io/gcp-service-account"):
        identity.fetch_token(host)

    core.patch_namespaced_service_account(ksa, ns, {"metadata": {"annotations": {
        "iam.gke.io/gcp-service-account": GSA}}})
    with pytest.raises(identity.IdentityError, match=f"{GSA} named by the annotation .* does not exist"):
        identity.fetch_token(host)
    iam = sb.gke.iam_admin()
    iam.create_service_account(request={"name": f"projects/{PROJECT}", "account_id": "spinnaker"})
    wi_member = f"serviceAccount:{PROJECT}.svc.id.goog[{ns}/{ksa}]"
    with pytest.raises(identity.IdentityError) as e:
        identity.fetch_token(host)
    assert f"does not grant roles/iam.workloadIdentityUser to {wi_member}" in str(e.value)
    assert identity.fetch_email(host) == GSA  # the email needs only the annotation

    sa = f"projects/{PROJECT}/serviceAccounts/{GSA}"
    ensure_binding(GrpcPolicy(iam, sa), sa, "roles/iam.workloadIdentityUser", [wi_member])
    token = identity.fetch_token(host)
    assert token.startswith("sbx1.")

    # The token is Spinnaker's identity at the other stand-ins: granted where the policies say, nowhere else.
    got = sb.pubsub.subscriber().pull(request={"subscription": SUB, "max_messages": 1}, metadata=_auth(token),
                                      retry=None, timeout=10)  # roles/pubsub.subscriber from the Pub/Sub test
    assert got is not None
    assert _gcs(sb, Credentials(token)).get_bucket(BUCKET).name == BUCKET  # grants from the Storage test
    with pytest.raises(gexc.PermissionDenied):
        sb.pubsub.publisher().get_topic(topic=TOPIC, metadata=_auth(token), retry=None, timeout=10)

    # A second Kubernetes service account in the same namespace is not bound.
    core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(
        name="other", annotations={"iam.gke.io/gcp-service-account": GSA})))
    with pytest.raises(identity.IdentityError, match=r"does not grant roles/iam.workloadIdentityUser .*\[spinnaker/other\]"):
        identity.fetch_token(identity.register(sb.gke.admin_url, BACKING, ns, "other"))


def test_google_auth_uses_the_metadata_server(sb, spinnaker_cluster, monkeypatch):
    """google-auth's Compute Engine credentials (what a Python client in a GKE pod uses) work against it."""
    import importlib

    import google.auth.compute_engine._metadata as md
    from google.auth.compute_engine import credentials as gce
    from google.auth.transport.requests import Request

    host = identity.register(sb.gke.admin_url, BACKING, "spinnaker", "spinnaker")
    monkeypatch.setenv("GCE_METADATA_HOST", host)
    monkeypatch.setenv("GCE_METADATA_IP", host)
    importlib.reload(md)  # it reads the variables at import
    try:
        assert md.ping(Request())
        creds = gce.Credentials()
        creds.refresh(Request())
        assert creds.token.startswith("sbx1.") and creds.service_account_email == GSA
    finally:
        monkeypatch.undo()
        importlib.reload(md)
