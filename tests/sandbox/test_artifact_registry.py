"""The sandbox's Artifact Registry and Policy Troubleshooter (cmd/gke-emulator/ar.go, troubleshoot.go), exercised
through Google's official Python clients and the Docker Registry v2 HTTP API against the real built binary.

Identity tokens are minted here with the rule of spinboot/sandbox/go/internal/sandboxsrv/identity.go (the sandbox's
admin token as HMAC secret), and the role table is halconfig/iam-roles.yaml converted to JSON, as the sandbox does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("grpc")
pytest.importorskip("google.cloud.artifactregistry_v1")
pytest.importorskip("google.cloud.policytroubleshooter_v1")
from google.api_core import exceptions as gexc  # noqa: E402
from google.cloud import artifactregistry_v1, policytroubleshooter_v1  # noqa: E402

from spinboot.sandbox import gcp  # noqa: E402

PROJECT = "acme-platform"
LOCATION = "us"
REPO = f"projects/{PROJECT}/locations/{LOCATION}/repositories/images"
HOST = f"{LOCATION}-docker.pkg.dev"
IMAGE = f"{PROJECT}/images/tasks"
SECRET = "test-sandbox-admin-token"
ROLES_YAML = Path(__file__).resolve().parents[2] / "halconfig" / "iam-roles.yaml"
READER = "roles/artifactregistry.reader"


def mint(email: str) -> str:
    """A sandbox identity token: sbx1.<base64url(email)>.<hex HMAC-SHA256(secret, that prefix)>."""
    body = "sbx1." + base64.urlsafe_b64encode(email.encode()).decode().rstrip("=")
    return body + "." + hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def pubsub(tmp_path_factory):
    with gcp.PubSubEmulator(tmp_path_factory.mktemp("ar-pubsub")) as emu:
        yield emu


@pytest.fixture(scope="module")
def gke(tmp_path_factory, pubsub):
    d = tmp_path_factory.mktemp("ar-gke")
    roles = d / "iam-roles.json"
    roles.write_text(json.dumps(yaml.safe_load(ROLES_YAML.read_text())))
    env = {"SPINBOOT_SANDBOX_TOKEN": SECRET, "SPINBOOT_SANDBOX_IAM_ROLES": str(roles),
           "PUBSUB_EMULATOR_HOST": pubsub.host, "STORAGE_EMULATOR_HOST": ""}
    with gcp.GkeEmulator(d / "state", latency_s=0.1, env=env) as emu:
        yield emu


@pytest.fixture(scope="module")
def spinnaker(gke) -> str:
    """Spinnaker's Google service account (repository policies refuse members that do not exist)."""
    sa = gke.iam_admin().create_service_account(request={"name": f"projects/{PROJECT}", "account_id": "spinnaker"})
    return sa.email


@pytest.fixture(scope="module")
def repo(gke):
    ar = gke.artifact_registry()
    docker = artifactregistry_v1.Repository(format_=artifactregistry_v1.Repository.Format.DOCKER)
    op = ar.create_repository(parent=f"projects/{PROJECT}/locations/{LOCATION}", repository_id="images",
                              repository=docker)
    created = op.result(timeout=10)
    assert created.name == REPO and created.registry_uri == f"{HOST}/{PROJECT}/images"
    return created


def set_readers(gke, members: list[str]) -> None:
    ar = gke.artifact_registry()
    policy = ar.get_iam_policy(request={"resource": REPO})
    del policy.bindings[:]
    if members:
        policy.bindings.add(role=READER, members=members)
    ar.set_iam_policy(request={"resource": REPO, "policy": policy})


def http(gke, path: str, auth: str | None = None, method: str = "GET") -> tuple[int, dict, Any]:
    req = urllib.request.Request(gke.registry_url() + path, method=method, headers={"Host": HOST})
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw, code, headers = resp.read(), resp.status, resp.headers
    except urllib.error.HTTPError as e:
        raw, code, headers = e.read(), e.code, e.headers
    return code, (json.loads(raw) if raw else {}), headers


def basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"oauth2accesstoken:{token}".encode()).decode()


def test_repositories_through_the_official_client(gke, repo):
    ar = gke.artifact_registry()
    assert ar.get_repository(name=REPO).format_ == artifactregistry_v1.Repository.Format.DOCKER
    assert [r.name for r in ar.list_repositories(parent=f"projects/{PROJECT}/locations/{LOCATION}")] == [REPO]
    with pytest.raises(gexc.AlreadyExists, match="the repository already exists"):
        ar.create_repository(parent=f"projects/{PROJECT}/locations/{LOCATION}", repository_id="images",
                             repository={"format_": artifactregistry_v1.Repository.Format.DOCKER}).result()
    with pytest.raises(gexc.InvalidArgument):
        ar.create_repository(parent=f"projects/{PROJECT}/locations/us-central1-b", repository_id="zonal",
                             repository={"format_": artifactregistry_v1.Repository.Format.DOCKER})
    with pytest.raises(gexc.NotFound):
        ar.get_repository(name=f"projects/{PROJECT}/locations/{LOCATION}/repositories/missing")
    tmp = ar.create_repository(parent=f"projects/{PROJECT}/locations/europe-west1", repository_id="scratch",
                               repository={"format_": artifactregistry_v1.Repository.Format.DOCKER}).result()
    ar.delete_repository(name=tmp.name).result(timeout=10)
    with pytest.raises(gexc.NotFound):
        ar.get_repository(name=tmp.name)


def test_repository_iam_policy_etags_and_roles(gke, repo, spinnaker):
    ar = gke.artifact_registry()
    with pytest.raises(gexc.NotFound):
        ar.get_iam_policy(request={"resource": f"projects/{PROJECT}/locations/{LOCATION}/repositories/missing"})
    first = ar.get_iam_policy(request={"resource": REPO})
    first.bindings.add(role=READER, members=[f"serviceAccount:{spinnaker}"])
    updated = ar.set_iam_policy(request={"resource": REPO, "policy": first})
    assert updated.etag != first.etag
    assert [(b.role, list(b.members)) for b in ar.get_iam_policy(request={"resource": REPO}).bindings] == [
        (READER, [f"serviceAccount:{spinnaker}"])]
    with pytest.raises(gexc.Aborted):
        ar.set_iam_policy(request={"resource": REPO, "policy": first})  # stale etag
    with pytest.raises(gexc.InvalidArgument, match="roles/pubsub.subscriber"):
        ar.set_iam_policy(request={"resource": REPO, "policy": {
            "bindings": [{"role": "roles/pubsub.subscriber", "members": [f"serviceAccount:{spinnaker}"]}]}})
    with pytest.raises(gexc.InvalidArgument, match="does not exist"):
        ar.set_iam_policy(request={"resource": REPO, "policy": {
            "bindings": [{"role": READER, "members": [f"serviceAccount:ghost@{PROJECT}.iam.gserviceaccount.com"]}]}})
    set_readers(gke, [])


def test_tags_list_needs_the_reader_grant(gke, repo, spinnaker):
    pushed = gke.push_image(HOST, IMAGE, "1.0.0")
    assert pushed["digest"].startswith("sha256:") and pushed["tag"] == f"{HOST}/{IMAGE}:1.0.0"
    gke.push_image(HOST, IMAGE, "latest", digest=pushed["digest"])
    with pytest.raises(urllib.error.HTTPError) as e:
        gke.push_image(HOST, f"{PROJECT}/nope/tasks", "1")  # pushes create nothing: the repository must exist
    assert e.value.code == 404

    code, _, headers = http(gke, "/v2/")
    assert code == 401 and headers["WWW-Authenticate"] == (
        f'Bearer realm="{gke.registry_url()}/v2/token",service="{HOST}"')
    token_path = f"/v2/token?service={HOST}&scope=repository:{IMAGE}:pull"
    identity = basic(mint(spinnaker))

    set_readers(gke, [])
    code, body, _ = http(gke, token_path, identity)
    assert code == 403 and body["errors"][0]["code"] == "DENIED"
    assert (f'Permission "artifactregistry.repositories.downloadArtifacts" denied on resource "{REPO}"'
            in body["errors"][0]["message"])
    assert http(gke, token_path, basic(mint(spinnaker)[:-2] + "00"))[0] == 401  # forged signature

    set_readers(gke, [f"serviceAccount:{spinnaker}"])
    code, body, _ = http(gke, token_path, identity)
    assert code == 200
    bearer = "Bearer " + body["token"]
    code, body, _ = http(gke, f"/v2/{IMAGE}/tags/list", bearer)
    assert (code, body) == (200, {"name": IMAGE, "tags": ["1.0.0", "latest"]})
    code, _, headers = http(gke, f"/v2/{IMAGE}/manifests/latest", bearer, method="HEAD")
    assert code == 200 and headers["Docker-Content-Digest"] == pushed["digest"]

    code, body, _ = http(gke, f"/v2/{PROJECT}/images/missing/tags/list", basic(SECRET))  # the operator's token
    assert code == 404 and body["errors"][0]["code"] == "NAME_UNKNOWN"

    set_readers(gke, [])  # checked again on each read
    code, body, _ = http(gke, f"/v2/{IMAGE}/tags/list", bearer)
    assert code == 403 and body["errors"][0]["code"] == "DENIED"


def test_push_publishes_to_the_gcr_topic(gke, repo, pubsub):
    assert gke.push_image(HOST, IMAGE, "no-topic-yet")["published"] is False
    pub, sub = pubsub.publisher(), pubsub.subscriber()
    topic = pub.create_topic(name=f"projects/{PROJECT}/topics/gcr").name
    subscription = sub.create_subscription(name=f"projects/{PROJECT}/subscriptions/spinnaker-gcr", topic=topic).name
    pushed = gke.push_image(HOST, IMAGE, "2.0.0")
    assert pushed["published"] is True
    deadline, received = time.monotonic() + 10, []
    while not received and time.monotonic() < deadline:
        received = sub.pull(subscription=subscription, max_messages=10, timeout=5).received_messages
    assert [json.loads(m.message.data) for m in received] == [
        {"action": "INSERT", "digest": f"{HOST}/{IMAGE}@{pushed['digest']}", "tag": f"{HOST}/{IMAGE}:2.0.0"}]


def troubleshoot(gke, principal: str, resource: str, permission: str):
    return gke.troubleshooter().troubleshoot_iam_policy(request={"access_tuple": {
        "principal": principal, "full_resource_name": resource, "permission": permission}})


def test_troubleshooter_explains_grants(gke, repo, spinnaker, pubsub):
    Access = policytroubleshooter_v1.AccessState
    full = f"//artifactregistry.googleapis.com/{REPO}"
    perm = "artifactregistry.repositories.downloadArtifacts"
    set_readers(gke, [])
    denied = troubleshoot(gke, spinnaker, full, perm)
    assert denied.access == Access.NOT_GRANTED
    assert [p.full_resource_name for p in denied.explained_policies] == [
        full, f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}"]

    set_readers(gke, [f"serviceAccount:{spinnaker}"])
    ok = troubleshoot(gke, spinnaker, full, perm)
    assert ok.access == Access.GRANTED
    binding = ok.explained_policies[0].binding_explanations[0]
    assert binding.role == READER and binding.access == Access.GRANTED
    assert binding.role_permission == policytroubleshooter_v1.BindingExplanation.RolePermission.ROLE_PERMISSION_INCLUDED
    assert binding.memberships[f"serviceAccount:{spinnaker}"].membership == (
        policytroubleshooter_v1.BindingExplanation.Membership.MEMBERSHIP_INCLUDED)
    assert troubleshoot(gke, f"other@{PROJECT}.iam.gserviceaccount.com", full, perm).access == Access.NOT_GRANTED

    # Pub/Sub policies are read from the pubsub-emulator.
    pub, sub = pubsub.publisher(), pubsub.subscriber()
    topic = pub.create_topic(name=f"projects/{PROJECT}/topics/echo-ts").name
    name = sub.create_subscription(name=f"projects/{PROJECT}/subscriptions/echo-ts", topic=topic).name
    consume = "pubsub.subscriptions.consume"
    sub_full = f"//pubsub.googleapis.com/{name}"
    assert troubleshoot(gke, spinnaker, sub_full, consume).access == Access.NOT_GRANTED
    policy = sub.get_iam_policy(request={"resource": name})
    policy.bindings.add(role="roles/pubsub.subscriber", members=[f"serviceAccount:{spinnaker}"])
    sub.set_iam_policy(request={"resource": name, "policy": policy})
    assert troubleshoot(gke, spinnaker, sub_full, consume).access == Access.GRANTED

    # Storage is not configured for this emulator: UNAVAILABLE, naming the variable.
    with pytest.raises(gexc.ServiceUnavailable, match="STORAGE_EMULATOR_HOST"):
        troubleshoot(gke, spinnaker, "//storage.googleapis.com/projects/_/buckets/b", "storage.objects.get")
