"""Google Cloud resources spinboot will reconcile, as YAML a reviewer can read.

Field names follow the Google APIs' JSON form (google.container.v1 Cluster and NodePool, Pub/Sub Topic and
Subscription, IAM Policy bindings). Pub/Sub, IAM and Storage are typed specs (``PubSubSpec``, ``IamSpec``,
``BucketSpec``): the reconcilers take these objects and ``gcp/*.yaml`` is their ``to_api()`` form, so what a
reviewer reads is what apply does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config.model import SpinbootConfig
from ..config import names
from .profiles import KUBERNETES_SERVICE_ACCOUNT
from .halyard import HALYARD_NAME
from .kustomize import settings as kustomize_settings, workload_identity_service_accounts
from .yamlio import dump_all

GCR_TOPIC = "gcr"  # Container Registry and Artifact Registry publish pushes to projects/<p>/topics/gcr


def cluster_parent(cfg: SpinbootConfig) -> str:
    return f"projects/{cfg.project}/locations/{cfg.cluster.location}"


def node_pool_spec(cfg: SpinbootConfig) -> dict:
    p = cfg.cluster.node_pool
    spec: dict = {
        "name": p.name,
        "initialNodeCount": p.node_count,
        "config": {
            "machineType": p.machine_type,
            "diskSizeGb": p.disk_size_gb,
            # A node service account holding only roles/container.defaultNodeServiceAccount, not Compute Engine's
            # default account (Editor on the project): pods never see it (GKE metadata server below), but the
            # kubelet, logging and image pulls from Artifact Registry do
            # (https://cloud.google.com/kubernetes-engine/docs/how-to/service-accounts#default-gke-service-agent).
            "serviceAccount": cfg.node_service_account_email,
            "oauthScopes": ["https://www.googleapis.com/auth/cloud-platform"],
            # Pods see the GKE metadata server, so Workload Identity applies and node credentials do not leak.
            "workloadMetadataConfig": {"mode": "GKE_METADATA"},
            "labels": {"app.kubernetes.io/managed-by": "spinboot"},
        },
        "management": {"autoUpgrade": True, "autoRepair": True},
    }
    if p.autoscaling:
        spec["autoscaling"] = {"enabled": True, "minNodeCount": p.autoscaling.min_node_count,
                               "maxNodeCount": p.autoscaling.max_node_count}
    return spec


def cluster_spec(cfg: SpinbootConfig) -> dict:
    c = cfg.cluster
    spec: dict = {
        "name": c.name,
        "releaseChannel": {"channel": c.release_channel},
        "workloadIdentityConfig": {"workloadPool": cfg.workload_pool},
        "resourceLabels": {**c.labels, "managed-by": "spinboot"},
        "masterAuthorizedNetworksConfig": {
            "enabled": bool(c.authorized_networks),
            "cidrBlocks": [{"displayName": n.name, "cidrBlock": n.cidr} for n in c.authorized_networks],
        },
        # networkConfig.defaultEnablePrivateNodes replaces the deprecated privateClusterConfig.enablePrivateNodes
        # (https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters#NetworkConfig).
        "networkConfig": {"defaultEnablePrivateNodes": c.private_nodes},
        "ipAllocationPolicy": {"useIpAliases": True},
    }
    if c.private_nodes:
        spec["privateClusterConfig"] = {"masterIpv4CidrBlock": c.master_ipv4_cidr_block}
    return spec


def topic_name(project: str) -> str:
    return f"projects/{project}/topics/{GCR_TOPIC}"


# What spinboot marks as its own when it creates a Google resource. destroy deletes only what carries it, so it is
# set at creation and never added to a resource spinboot adopted.
MANAGED_LABELS = {"managed-by": "spinboot"}


@dataclass(frozen=True)
class TopicSpec:
    """A registry project's ``gcr`` topic. Usually the registry made it (it is adopted as it is); ``labels`` are
    set only when spinboot creates it."""

    name: str
    labels: dict[str, str]

    def to_api(self) -> dict:
        return {"name": self.name, "labels": dict(self.labels)}


@dataclass(frozen=True)
class SubscriptionSpec:
    """Spinnaker's subscription on a gcr topic (Pub/Sub Subscription, API field names in ``to_api``).

    Reconciled: topic (refused if it differs: it cannot change), ack deadline, retention, expiration (never).
    ``labels`` carry the ownership mark and are set only when spinboot creates the subscription."""

    name: str
    topic: str
    ack_deadline_seconds: int
    message_retention_seconds: int
    labels: dict[str, str]
    registry: str = field(compare=False)           # the registry (Spinnaker account) it serves: not an API field
    registry_address: str = field(compare=False)   # where that registry's images live (for verify_delivery)

    def to_api(self) -> dict:
        return {
            "name": self.name,
            "topic": self.topic,
            "ackDeadlineSeconds": self.ack_deadline_seconds,
            "messageRetentionDuration": f"{self.message_retention_seconds}s",
            # Never expire: by default a subscription with no subscriber activity for 31 days is deleted, and echo
            # gives up for good when its subscription is missing at start-up
            # (https://cloud.google.com/pubsub/docs/subscription-properties#expiration_period).
            "expirationPolicy": {},
            "labels": dict(self.labels),
        }


@dataclass(frozen=True)
class PubSubSpec:
    topics: tuple[TopicSpec, ...]
    subscriptions: tuple[SubscriptionSpec, ...]

    def to_api(self) -> dict:
        return {"topics": [t.to_api() for t in self.topics], "subscriptions": [s.to_api() for s in self.subscriptions]}


def pubsub_spec(cfg: SpinbootConfig) -> PubSubSpec:
    """Topics and subscriptions of the registries Google publishes pushes for (``cfg.push_registries``)."""
    regs = cfg.push_registries
    return PubSubSpec(
        topics=tuple(TopicSpec(topic_name(p), dict(MANAGED_LABELS)) for p in sorted({r.project for r in regs})),
        subscriptions=tuple(SubscriptionSpec(
            name=f"projects/{r.project}/subscriptions/{r.subscription.name}", topic=topic_name(r.project),
            ack_deadline_seconds=r.subscription.ack_deadline_seconds,
            message_retention_seconds=r.subscription.message_retention_seconds,
            labels={**MANAGED_LABELS, "spinnaker-account": r.name}, registry=r.name, registry_address=r.address)
            for r in regs))


def artifact_registry_repos(cfg: SpinbootConfig) -> list[str]:
    """Artifact Registry repositories clouddriver reads (config rules guarantee every path maps to one)."""
    out = set()
    for r in cfg.registries:
        if r.docker_registry_account and names.is_google_registry(r.address):
            for repo in r.repositories:
                resource, _ = names.artifact_registry_repository(r.address, repo)
                if resource:
                    out.add(resource)
    return sorted(out)


# The API whose IAM policy holds a binding, by resource name: reconcilers pick their bindings by it.
def binding_service(resource: str) -> str:
    if resource.startswith("projects/_/buckets/"):
        return "storage"
    if "/serviceAccounts/" in resource:
        return "iam"
    if "/subscriptions/" in resource or "/topics/" in resource:
        return "pubsub"
    if "/repositories/" in resource:
        return "artifactregistry"
    return "resourcemanager"


@dataclass(frozen=True)
class Binding:
    """One grant: ``members`` hold ``role`` on ``resource``; ``service`` is the API whose IAM policy holds it, and
    ``why`` the Spinnaker service that needs it (docs/spinnaker-contract.md)."""

    resource: str
    role: str
    members: tuple[str, ...]
    why: str

    @property
    def service(self) -> str:
        return binding_service(self.resource)

    def to_api(self) -> dict:
        return {"resource": self.resource, "role": self.role, "members": list(self.members), "why": self.why,
                "service": self.service}


@dataclass(frozen=True)
class ServiceAccountSpec:
    project: str
    account_id: str
    email: str
    display_name: str   # also spinboot's ownership mark: destroy deletes only an account with this name

    @property
    def name(self) -> str:
        return f"projects/{self.project}/serviceAccounts/{self.email}"

    def to_api(self) -> dict:
        return {"project": self.project, "accountId": self.account_id, "email": self.email,
                "displayName": self.display_name}


@dataclass(frozen=True)
class IamSpec:
    service_account: ServiceAccountSpec
    node_service_account: ServiceAccountSpec
    bindings: tuple[Binding, ...]

    def for_service(self, service: str, resource: str | None = None) -> list[Binding]:
        """The bindings one API's policies hold (optionally on one resource): each reconciler applies its own."""
        return [b for b in self.bindings if b.service == service and (resource is None or b.resource == resource)]

    def to_api(self) -> dict:
        return {"serviceAccount": self.service_account.to_api(),
                "nodeServiceAccount": self.node_service_account.to_api(),
                "bindings": [b.to_api() for b in self.bindings]}


def iam_spec(cfg: SpinbootConfig) -> IamSpec:
    """Spinnaker's Google identity and every grant it needs, each with the service that needs it
    (docs/spinnaker-contract.md). The reconcilers apply exactly these bindings."""
    member = f"serviceAccount:{cfg.service_account_email}"
    s = cfg.spinnaker
    ksas = (f"serviceAccount:{cfg.workload_pool}[{s.namespace}/{KUBERNETES_SERVICE_ACCOUNT}]",
            f"serviceAccount:{cfg.workload_pool}[{s.halyard.namespace}/{HALYARD_NAME}]")
    if kustomize_settings.engine(cfg) == "kustomize":   # plus the kustomize engine's per-service KSAs that call Google
        ksas += tuple(f"serviceAccount:{cfg.workload_pool}[{k}]" for k in workload_identity_service_accounts(cfg))
    bucket = storage_spec(cfg).resource
    bindings = [
        Binding(f"projects/{cfg.project}/serviceAccounts/{cfg.service_account_email}", "roles/iam.workloadIdentityUser",
                ksas, "Spinnaker's and Halyard's pods act as the Google service account (Workload Identity)"),
        Binding(bucket, "roles/storage.objectAdmin", (member,),
                "front50 and backups read and write objects in this bucket only"),
        Binding(bucket, "roles/storage.legacyBucketReader", (member,),
                "front50 reads the bucket itself at startup (storage.buckets.get), which objectAdmin does not hold"),
    ]
    for sub in pubsub_spec(cfg).subscriptions:
        bindings.append(Binding(sub.name, "roles/pubsub.subscriber", (member,), "echo receives image-push messages"))
    for repo in artifact_registry_repos(cfg):
        bindings.append(Binding(repo, "roles/artifactregistry.reader", (member,),
                                "Halyard's validation and clouddriver list the repository's tags"))
    bindings.append(Binding(f"projects/{cfg.project}", "roles/container.defaultNodeServiceAccount",
                            (f"serviceAccount:{cfg.node_service_account_email}",),
                            "the nodes write logs and metrics; nothing else"))
    # GCS artifact accounts read whatever buckets pipelines name; spinboot cannot know them, so it grants nothing
    # project-wide. Grant roles/storage.objectViewer on those buckets to the service account above.
    return IamSpec(
        service_account=ServiceAccountSpec(cfg.project, s.service_account, cfg.service_account_email,
                                           "Spinnaker (managed by spinboot)"),
        node_service_account=ServiceAccountSpec(cfg.project, cfg.cluster.node_pool.service_account,
                                                cfg.node_service_account_email,
                                                "Spinnaker's GKE nodes (managed by spinboot)"),
        bindings=tuple(bindings))


def bindings_for(cfg: SpinbootConfig, service: str, resource: str | None = None) -> list[Binding]:
    return iam_spec(cfg).for_service(service, resource)


@dataclass(frozen=True)
class BucketSpec:
    """front50's bucket. Created with these settings; an existing bucket is adopted as it is (its location,
    versioning and labels are its owner's), so only a bucket spinboot created carries ``labels``."""

    name: str
    project: str
    location: str
    uniform_bucket_level_access: bool
    versioning: bool
    labels: dict[str, str]
    root_folder: str

    @property
    def resource(self) -> str:
        """The name IAM knows the bucket by."""
        return f"projects/_/buckets/{self.name}"

    def to_api(self) -> dict:
        return {"bucket": {"name": self.name, "project": self.project, "location": self.location,
                           "uniformBucketLevelAccess": self.uniform_bucket_level_access,
                           "versioning": self.versioning, "labels": dict(self.labels)},
                "rootFolder": self.root_folder}


def storage_spec(cfg: SpinbootConfig) -> BucketSpec:
    st = cfg.spinnaker.storage
    return BucketSpec(st.bucket, cfg.storage_project, st.location, True, True, dict(MANAGED_LABELS), st.root_folder)


def render_gcp(cfg: SpinbootConfig) -> dict[str, bytes]:
    """gcp/*.yaml: the ``to_api()`` form of the very specs the reconcilers take (spinboot.engine.stages)."""
    head = "Generated by spinboot. Google Cloud resources spinboot reconciles (API field names)."
    return {
        "gcp/cluster.yaml": dump_all([{"parent": cluster_parent(cfg), "cluster": cluster_spec(cfg)}],
                                     head + "\nThe Spinnaker GKE cluster: Workload Identity always on."),
        "gcp/nodepool.yaml": dump_all([{"parent": f"{cluster_parent(cfg)}/clusters/{cfg.cluster.name}",
                                        "nodePool": node_pool_spec(cfg)}],
                                      head + "\nThe node pool Spinnaker runs on: high-memory, GKE metadata server."),
        "gcp/pubsub.yaml": dump_all([pubsub_spec(cfg).to_api()],
                                    head + "\nRegistry pushes arrive on each registry project's gcr topic.\nLabels are "
                                    "set only when spinboot creates a topic or subscription (an adopted one keeps its "
                                    "own).\nSpinnaker's grant on each subscription is in iam.yaml."),
        "gcp/iam.yaml": dump_all([iam_spec(cfg).to_api()],
                                 head + "\nSpinnaker's Google service account and only what it needs."),
        "gcp/storage.yaml": dump_all([storage_spec(cfg).to_api()],
                                     head + "\nfront50's bucket: created with these settings; an existing one is "
                                     "adopted as it is.\nIts grants are in iam.yaml."),
    }
