"""`hal deploy apply` plays Spinnaker's startup with Spinnaker's identity, against the real sandbox parts (issue 10,
items 3 and 4): the GKE stand-in's metadata server and Artifact Registry, Pub/Sub and Storage enforcing IAM, and a
GKE cluster backed by a real Kubernetes control plane with RBAC.

The world is built as spinboot builds it (Workload Identity binding, bucket, subscription and repository grants,
target RBAC from rbac/rules.yaml), then each test takes one piece away and expects `hal deploy apply` to fail
naming the service and the call, with that service's pods reported crash-looping.
"""

from __future__ import annotations

import base64
import io
import re
import shlex
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("grpc")
pytest.importorskip("google.cloud.artifactregistry_v1")

from spinboot.gcp.iam import BucketPolicy, GrpcPolicy, ensure_binding  # noqa: E402
from spinboot.kube.targets import mint_kubeconfig  # noqa: E402
from spinboot.render.rbac import rules  # noqa: E402
from spinboot.sandbox import identity  # noqa: E402
from spinboot.sandbox.hal.cli import main  # noqa: E402

PROJECT = "acme-platform"
LOCATION = "us-central1-b"
CLUSTER = "spinnaker"
BACKING = f"{PROJECT}-{LOCATION}-{CLUSTER}"
GSA = f"spinnaker@{PROJECT}.iam.gserviceaccount.com"
MEMBER = f"serviceAccount:{GSA}"
NS, KSA = "spinnaker", "spinnaker"
BUCKET = "acme-spinnaker"
TOPIC = f"projects/{PROJECT}/topics/gcr"
SUB = f"projects/{PROJECT}/subscriptions/spinnaker-gcr"
AR_HOST = "us-docker.pkg.dev"
AR_REPO = f"projects/{PROJECT}/locations/us/repositories/images"
IMAGE = f"{PROJECT}/images/tasks"
TARGET_NS = "prod"
TARGET_SA = ("spinnaker-system", "spinnaker")
TARGET_ROLE = "spinboot:spinnaker-system:spinnaker:deploy"
# What the lead renders (spinboot/render/halscript.py): works in Halyard's and in clouddriver's image.
PASSWORD_COMMAND = (
    "curl -sSf -H 'Metadata-Flavor: Google' "
    "\"http://${GCE_METADATA_HOST:-metadata.google.internal}/computeMetadata/v1/instance/service-accounts/default/token\""
    " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'")
K8S = "config provider kubernetes account"
DOCKER = "config provider docker-registry account"


@pytest.fixture(scope="module")
def sb(sandbox_binaries, tmp_path_factory):
    from spinboot.sandbox.sandbox import Sandbox

    sandbox = Sandbox(tmp_path_factory.mktemp("play"), gke_latency_s=0.1).up()
    try:
        yield sandbox
    finally:
        sandbox.down()


class World:
    """Spinnaker's cluster and every grant spinboot would make, with handles to take them away again."""

    def __init__(self, sb, tmp: Path):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import artifactregistry_v1, container_v1, storage
        from kubernetes import client, config

        from spinboot.gcp.gke import wait_operation

        self.sb, self.tmp = sb, tmp
        cm = sb.gke.cluster_manager()
        op = cm.create_cluster(parent=f"projects/{PROJECT}/locations/{LOCATION}", cluster=container_v1.Cluster(
            name=CLUSTER, workload_identity_config={"workload_pool": f"{PROJECT}.svc.id.goog"},
            node_pools=[container_v1.NodePool(name="pool", initial_node_count=1)]))
        wait_operation(cm, PROJECT, LOCATION, op, "create", timeout=300)
        self.kubeconfig = sb.admin_kubeconfig(PROJECT, LOCATION, CLUSTER)
        self.api = config.new_client_from_config(config_file=str(self.kubeconfig))
        self.core, self.rbac = client.CoreV1Api(self.api), client.RbacAuthorizationV1Api(self.api)
        wi = {"iam.gke.io/gcp-service-account": GSA}
        for ns, ksa in ((NS, KSA), ("halyard", "halyard")):
            self._namespace(ns)
            self.core.create_namespaced_service_account(ns, {"metadata": {"name": ksa, "annotations": wi}})
        # Google: the service account, Workload Identity for Spinnaker's and Halyard's pods, and the grants
        iam = sb.gke.iam_admin()
        iam.create_service_account(request={"name": f"projects/{PROJECT}", "account_id": "spinnaker"})
        sa = f"projects/{PROJECT}/serviceAccounts/{GSA}"
        ensure_binding(GrpcPolicy(iam, sa), sa, "roles/iam.workloadIdentityUser",
                       [f"serviceAccount:{PROJECT}.svc.id.goog[{NS}/{KSA}]",
                        f"serviceAccount:{PROJECT}.svc.id.goog[halyard/halyard]"])
        self.gcs = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                                  client_options={"api_endpoint": sb.storage_url})
        self.gcs.create_bucket(BUCKET)
        self.pub, self.subscriber = sb.pubsub.publisher(), sb.pubsub.subscriber()
        self.pub.create_topic(name=TOPIC)
        self.subscriber.create_subscription(name=SUB, topic=TOPIC)
        self.ar = sb.gke.artifact_registry()
        self.ar.create_repository(parent=f"projects/{PROJECT}/locations/us", repository_id="images",
                                  repository=artifactregistry_v1.Repository(
                                      format_=artifactregistry_v1.Repository.Format.DOCKER)).result(timeout=30)
        sb.gke.push_image(AR_HOST, IMAGE, "1.0.0")
        self.grant_all()
        # Spinnaker's own namespace: the deploy rules for Spinnaker's pods (spinboot/render/halyard.py)
        self.rbac.create_namespaced_role(NS, {"metadata": {"name": "spinboot:spinnaker-deploy"},
                                              "rules": rules()["deploy"]})
        self.rbac.create_namespaced_role_binding(NS, {
            "metadata": {"name": "spinboot:spinnaker-deploy"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "spinboot:spinnaker-deploy"},
            "subjects": [{"kind": "ServiceAccount", "name": KSA, "namespace": NS}]})
        # A target: namespace prod, Spinnaker's target service account with rbac/rules.yaml's deploy rules there
        self._namespace(TARGET_NS)
        self._namespace(TARGET_SA[0])
        self.core.create_namespaced_service_account(TARGET_SA[0], {"metadata": {"name": TARGET_SA[1]}})
        self.rbac.create_cluster_role({"metadata": {"name": TARGET_ROLE}, "rules": rules()["deploy"]})
        self.rbac.create_namespaced_role_binding(TARGET_NS, {
            "metadata": {"name": "spinboot:spinnaker:deploy"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": TARGET_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": TARGET_SA[1], "namespace": TARGET_SA[0]}]})
        req = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[],
                                                                                 expiration_seconds=7200))
        token = self.core.create_namespaced_service_account_token(TARGET_SA[1], TARGET_SA[0], req).status.token
        server = yaml.safe_load(self.kubeconfig.read_text())["clusters"][0]["cluster"]
        ca = base64.b64decode(server["certificate-authority-data"]).decode()
        self.target_kubeconfig = tmp / "platform.kubeconfig"
        self.target_kubeconfig.write_bytes(mint_kubeconfig("platform", server["server"], ca, token))

    def _namespace(self, name: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.core.create_namespace({"metadata": {"name": name}})
        except ApiException as exc:
            if exc.status != 409:
                raise

    # -- grants -------------------------------------------------------------------------------------------------------
    def grant_all(self) -> None:
        for role in ("roles/storage.objectAdmin", "roles/storage.legacyBucketReader"):
            ensure_binding(BucketPolicy(self.gcs, BUCKET), BUCKET, role, [MEMBER])
        ensure_binding(GrpcPolicy(self.subscriber, SUB), SUB, "roles/pubsub.subscriber", [MEMBER])
        ensure_binding(GrpcPolicy(self.ar, AR_REPO), AR_REPO, "roles/artifactregistry.reader", [MEMBER])

    def revoke(self, store, role: str) -> None:
        policy = store.get()
        for b in policy.bindings:
            if b.role == role and MEMBER in b.members:
                b.members.remove(MEMBER)
        store.set(policy)

    def set_target_rules(self, rule_list: list[dict]) -> None:
        self.rbac.patch_cluster_role(TARGET_ROLE, {"rules": rule_list})

    # -- Spinnaker's pods ---------------------------------------------------------------------------------------------
    def crash_looping(self, service: str, timeout: float = 30) -> list[str]:
        """Messages of spin-<service>'s pods reported in CrashLoopBackOff and not Ready."""
        deadline = time.monotonic() + timeout
        while True:
            pods = self.core.list_namespaced_pod(NS, label_selector=f"app=spin,cluster=spin-{service}").items
            out = []
            for p in pods:
                ready = {c.type: c.status for c in p.status.conditions or []}.get("Ready")
                for cs in p.status.container_statuses or []:
                    w = cs.state.waiting if cs.state else None
                    if ready == "False" and w and w.reason == "CrashLoopBackOff":
                        out.append(cs.last_state.terminated.message)
            if (pods and len(out) == len(pods)) or time.monotonic() > deadline:
                return out
            time.sleep(0.5)


@pytest.fixture(scope="module")
def world(sb, tmp_path_factory) -> World:
    return World(sb, tmp_path_factory.mktemp("world"))


@pytest.fixture
def halyard(world, sb, tmp_path, monkeypatch):
    """The Halyard pod: its environment as gkebacking gives it, a configured halconfig, ``hal(line)``."""
    monkeypatch.setenv("SPINBOOT_SANDBOX_ENDPOINTS", str(sb.endpoints_path))
    monkeypatch.setenv("SPINBOOT_SANDBOX_CLUSTER", BACKING)
    monkeypatch.setenv("SPINBOOT_SANDBOX_KUBELET_KUBECONFIG", str(world.kubeconfig))
    host = identity.register(sb.gke.admin_url, BACKING, "halyard", "halyard")
    for var in ("GCE_METADATA_HOST", "GCE_METADATA_ROOT", "GCE_METADATA_IP"):
        monkeypatch.setenv(var, host)

    def hal(line: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(shlex.split(line), home=tmp_path, stdin=io.StringIO(""), stdout=out, stderr=err,
                    api_client=world.api)
        return code, out.getvalue() + err.getvalue()

    hal.home = tmp_path
    for line in [
        "config version edit --version 2026.2.3",
        f"config storage gcs edit --project {PROJECT} --bucket {BUCKET} --bucket-location us --root-folder front50",
        "config storage edit --type gcs",
        "config provider kubernetes enable",
        f"{K8S} add spinnaker --service-account true --namespaces {NS}",
        f"{K8S} add platform --kubeconfig-file {world.target_kubeconfig} --context platform --namespaces {TARGET_NS}",
        "config provider docker-registry enable",
        f"{DOCKER} add images --address {AR_HOST} --repositories {IMAGE} --username oauth2accesstoken "
        f"--password-command {shlex.quote(PASSWORD_COMMAND)}",
        "config pubsub google enable",
        f"config pubsub google subscription add gcr --project {PROJECT} --subscription-name spinnaker-gcr "
        "--message-format GCR",
        f"config deploy edit --type distributed --account-name spinnaker --location {NS}",
    ]:
        code, text = hal(line)
        assert code == 0, (line, text)
    settings = tmp_path / ".hal" / "default" / "service-settings"
    settings.mkdir(parents=True)
    for svc in ("front50", "echo", "clouddriver"):   # what configure.sh installs (halconfig/service-settings)
        (settings / f"{svc}.yml").write_text(f"kubernetes:\n  serviceAccountName: {KSA}\n")
    yield hal
    world.grant_all()
    if not any(s.metadata.name == "spin-redis" for s in world.core.list_namespaced_service(NS).items):
        assert hal(f"deploy apply {SERVICES} --no-validate")[0] in (0, 1)     # put Halyard's Redis back
    world.set_target_rules(rules()["deploy"])


SERVICES = "--service-names front50,echo,clouddriver,redis"


def test_startup_play_passes_with_what_spinboot_grants(world, halyard):
    code, text = halyard(f"deploy apply {SERVICES}")
    assert code == 0, text
    assert re.search(r"\+ Start Spinnaker's services \(clouddriver: \d+ calls, echo: 2 calls, front50: 7 calls\)", text), text
    pod = world.core.list_namespaced_pod(NS, label_selector="app=spin,cluster=spin-front50").items
    assert pod and pod[0].spec.service_account_name == KSA
    # front50's probe object was written, read and deleted again
    assert not [b.name for b in world.gcs.list_blobs(BUCKET, prefix="front50/spinboot-startup-play/")]


def test_front50_without_bucket_get_crash_loops(world, halyard):
    # issue 10 item 2: roles/storage.objectAdmin does not hold storage.buckets.get
    world.revoke(BucketPolicy(world.gcs, BUCKET), "roles/storage.legacyBucketReader")
    code, text = halyard(f"deploy apply {SERVICES}")
    assert code == 1
    assert (f"spin-front50 would crash-loop: storage.buckets.get on gs://{BUCKET}: denied for {GSA}" in text), text
    assert "spin-front50 left not ready" in text
    (msg,) = world.crash_looping("front50")
    assert "storage.buckets.get" in msg
    assert world.crash_looping("echo", timeout=1) == []                # the others start


def test_front50_without_object_admin_fails(world, halyard):
    # roles/storage.legacyBucketReader alone lets front50 start and list, but never save
    world.revoke(BucketPolicy(world.gcs, BUCKET), "roles/storage.objectAdmin")
    code, text = halyard(f"deploy apply {SERVICES}")
    assert code == 1
    assert (f"spin-front50 would fail: storage.objects.create under gs://{BUCKET}/front50/ (save): denied for {GSA}"
            in text), text
    assert "Roles that hold it: roles/storage.admin, roles/storage.objectAdmin" in text
    assert world.crash_looping("front50")


def test_echo_without_subscriber_grant_crash_loops(world, halyard):
    world.revoke(GrpcPolicy(world.subscriber, SUB), "roles/pubsub.subscriber")
    code, text = halyard(f"deploy apply {SERVICES}")
    assert code == 1
    assert f"spin-echo would crash-loop: pubsub.subscriptions.consume on {SUB} (subscription gcr): denied" in text
    assert world.crash_looping("echo")


def test_echo_needs_redis(world, halyard):
    assert halyard(f"deploy apply {SERVICES}")[0] == 0
    world.core.delete_namespaced_service("spin-redis", NS)            # Halyard's Redis is gone and not redeployed
    code, text = halyard("deploy apply --service-names front50,echo,clouddriver")
    assert code == 1
    assert f"spin-echo would crash-loop: redis connection to redis://spin-redis.{NS}:6379: there is no Service " \
           f"spin-redis in {NS}" in text
    # an external Redis Halyard does not manage is taken as configured
    settings = Path(halyard.home) / ".hal" / "default" / "service-settings" / "redis.yml"
    settings.write_text("overrideBaseUrl: redis://redis.example.internal:6379\nskipLifeCycleManagement: true\n")
    code, text = halyard(f"deploy apply {SERVICES}")
    assert code == 0, text
    assert "(sandbox) echo: external Redis redis://redis.example.internal:6379 is not reachable" in text
    assert "Deploy spin-redis" not in text
    settings.unlink()


def test_clouddriver_needs_every_rule(world, halyard):
    # issue 10 item 4: a manifest carrying a ServiceAccount; removing the rule makes the deploy fail naming the call
    narrowed = [dict(r, resources=[x for x in r["resources"] if x != "serviceaccounts"]) for r in rules()["deploy"]]
    world.set_target_rules(narrowed)
    code, text = halyard(f"deploy apply {SERVICES}")
    assert code == 1
    assert ("spin-clouddriver would fail: account platform: create serviceaccounts in namespace prod (deploy, "
            "server-side dry run): (403)") in text, text
    assert "get serviceaccounts in namespace prod (deploy): (403)" in text
    assert world.crash_looping("clouddriver")


def test_every_rule_in_rules_yaml_is_needed(world, halyard):
    """Done-when of issue 10: removing any one rule from rbac/rules.yaml makes the deploy fail naming the call."""
    deploy = rules()["deploy"]
    for i, rule in enumerate(deploy):
        world.set_target_rules(deploy[:i] + deploy[i + 1:])
        code, text = halyard(f"deploy apply {SERVICES}")
        refusals = text.partition("! ERROR")[2]
        assert code == 1, (rule, text)
        assert any(r in refusals for r in rule["resources"]), (rule, refusals)
        assert "spin-clouddriver would fail: account platform:" in refusals


def test_registry_read_grant_is_validated_by_halyard_and_needed_by_clouddriver(world, halyard):
    world.revoke(GrpcPolicy(world.ar, AR_REPO), "roles/artifactregistry.reader")
    code, text = halyard(f"deploy apply {SERVICES}")
    assert code == 1 and "Unable to fetch tags from the docker repository" in text
    assert "artifactregistry.repositories.downloadArtifacts" in text and "Failed to deploy Spinnaker." in text
    code, text = halyard(f"deploy apply {SERVICES} --no-validate")     # Halyard skips, clouddriver still reads
    assert code == 1
    assert f"spin-clouddriver would fail: docker-registry account images: list tags of {AR_HOST}/{IMAGE}" in text


def test_gcloud_password_command_fails_in_halyards_image(world, halyard):
    code, text = halyard(f"{DOCKER} edit images --password-command 'gcloud auth print-access-token'")
    assert code == 1 and "gcloud: command not found" in text and "Unable to fetch tags" in text


def test_unbound_workload_identity(world, halyard):
    world.core.patch_namespaced_service_account(KSA, NS, {"metadata": {"annotations": {
        "iam.gke.io/gcp-service-account": None}}})
    try:
        code, text = halyard(f"deploy apply {SERVICES}")
    finally:
        world.core.patch_namespaced_service_account(KSA, NS, {"metadata": {"annotations": {
            "iam.gke.io/gcp-service-account": GSA}}})
    assert code == 1
    assert "spin-front50 would crash-loop: storage.buckets.get on gs://acme-spinnaker (Google credentials of " \
           "spinnaker/spinnaker from the metadata server)" in text
    assert "iam.gke.io/gcp-service-account" in text


DECK_SERVICES = "--service-names gate,deck"


def test_deck_reaches_a_path_based_gate_only_through_api_host(world, halyard):
    """Issue 10 item 3: with Gate at the UI's host plus /gate, Deck's web server forwards /gate to $API_HOST,
    which Halyard leaves at localhost inside Deck's pod unless deck.yml sets it (spinboot renders it)."""
    settings = Path(halyard.home) / ".hal" / "default" / "service-settings" / "deck.yml"
    assert halyard("config security ui edit --override-base-url https://spinnaker.acme.dev")[0] == 0
    assert halyard("config security api edit --override-base-url https://spinnaker.acme.dev/gate")[0] == 0
    try:
        code, text = halyard(f"deploy apply {DECK_SERVICES}")
        assert code == 1
        assert ("spin-deck cannot reach Gate: forward https://spinnaker.acme.dev/gate (/gate in Deck's web server) "
                "to $API_HOST: API_HOST is http://localhost:8084: inside Deck's pod, where nothing listens") in text
        settings.write_text(f"env:\n  API_HOST: http://spin-gate.{NS}:8084\n")     # what spinboot renders
        code, text = halyard(f"deploy apply {DECK_SERVICES}")
        assert code == 0, text
        settings.write_text(f"env:\n  API_HOST: http://spin-gate.{NS}:9999\n")     # the wrong port
        code, text = halyard(f"deploy apply {DECK_SERVICES}")
        assert code == 1 and f"no Service {NS}/spin-gate on port 9999" in text, text
        # A Gate URL with a host of its own needs nothing from Deck.
        settings.unlink()
        assert halyard("config security api edit --override-base-url https://api.acme.dev")[0] == 0
        code, text = halyard(f"deploy apply {DECK_SERVICES}")
        assert code == 0, text
    finally:
        settings.unlink(missing_ok=True)
