"""Google Cloud resources spinboot will reconcile, as YAML a reviewer can read.

Field names follow the Google APIs' JSON form (google.container.v1 Cluster and NodePool, Pub/Sub Topic and
Subscription, IAM Policy bindings), so the same data drives the reconcilers.
"""

from __future__ import annotations

from ..config.model import SpinbootConfig
from ..config import names
from .profiles import KUBERNETES_SERVICE_ACCOUNT
from .halyard import HALYARD_NAME
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


def topics(cfg: SpinbootConfig) -> list[str]:
    return sorted({f"projects/{r.project}/topics/{GCR_TOPIC}" for r in cfg.push_registries})


def subscription_specs(cfg: SpinbootConfig) -> list[dict]:
    return [{
        "name": f"projects/{r.project}/subscriptions/{r.subscription.name}",
        "topic": f"projects/{r.project}/topics/{GCR_TOPIC}",
        "ackDeadlineSeconds": r.subscription.ack_deadline_seconds,
        "messageRetentionDuration": f"{r.subscription.message_retention_seconds}s",
        # Never expire: by default a subscription with no subscriber activity for 31 days is deleted, and echo
        # gives up for good when its subscription is missing at start-up
        # (https://cloud.google.com/pubsub/docs/subscription-properties#expiration_period).
        "expirationPolicy": {},
        "labels": {"managed-by": "spinboot", "spinnaker-account": r.name},
    } for r in cfg.push_registries]


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


def iam_spec(cfg: SpinbootConfig) -> dict:
    """Spinnaker's Google identity and every grant it needs, each with the service that needs it
    (docs/spinnaker-contract.md). The reconcilers apply exactly these bindings."""
    member = f"serviceAccount:{cfg.service_account_email}"
    s = cfg.spinnaker
    ksas = [f"serviceAccount:{cfg.workload_pool}[{s.namespace}/{KUBERNETES_SERVICE_ACCOUNT}]",
            f"serviceAccount:{cfg.workload_pool}[{s.halyard.namespace}/{HALYARD_NAME}]"]
    bucket = f"projects/_/buckets/{s.storage.bucket}"
    bindings = [
        {"resource": f"projects/{cfg.project}/serviceAccounts/{cfg.service_account_email}",
         "role": "roles/iam.workloadIdentityUser", "members": ksas,
         "why": "Spinnaker's and Halyard's pods act as the Google service account (Workload Identity)"},
        {"resource": bucket, "role": "roles/storage.objectAdmin", "members": [member],
         "why": "front50 and backups read and write objects in this bucket only"},
        {"resource": bucket, "role": "roles/storage.legacyBucketReader", "members": [member],
         "why": "front50 reads the bucket itself at startup (storage.buckets.get), which objectAdmin does not hold"},
    ]
    for sub in subscription_specs(cfg):
        bindings.append({"resource": sub["name"], "role": "roles/pubsub.subscriber", "members": [member],
                         "why": "echo receives image-push messages"})
    for repo in artifact_registry_repos(cfg):
        bindings.append({"resource": repo, "role": "roles/artifactregistry.reader", "members": [member],
                         "why": "Halyard's validation and clouddriver list the repository's tags"})
    bindings.append({"resource": f"projects/{cfg.project}", "role": "roles/container.defaultNodeServiceAccount",
                     "members": [f"serviceAccount:{cfg.node_service_account_email}"],
                     "why": "the nodes write logs and metrics; nothing else"})
    for b in bindings:
        b["service"] = binding_service(b["resource"])
    # GCS artifact accounts read whatever buckets pipelines name; spinboot cannot know them, so it grants nothing
    # project-wide. Grant roles/storage.objectViewer on those buckets to the service account above.
    return {
        "serviceAccount": {"project": cfg.project, "accountId": s.service_account, "email": cfg.service_account_email,
                           "displayName": "Spinnaker (managed by spinboot)"},
        "nodeServiceAccount": {"project": cfg.project, "accountId": cfg.cluster.node_pool.service_account,
                               "email": cfg.node_service_account_email,
                               "displayName": "Spinnaker's GKE nodes (managed by spinboot)"},
        "bindings": bindings,
    }


def bindings_for(cfg: SpinbootConfig, service: str, resource: str | None = None) -> list[dict]:
    return [b for b in iam_spec(cfg)["bindings"]
            if b["service"] == service and (resource is None or b["resource"] == resource)]


def storage_spec(cfg: SpinbootConfig) -> dict:
    st = cfg.spinnaker.storage
    return {"bucket": {"name": st.bucket, "project": cfg.storage_project, "location": st.location,
                       "uniformBucketLevelAccess": True, "versioning": True,
                       "labels": {"managed-by": "spinboot"}},
            "rootFolder": st.root_folder}


def render_gcp(cfg: SpinbootConfig) -> dict[str, bytes]:
    head = "Generated by spinboot. Google Cloud resources spinboot reconciles (API field names)."
    return {
        "gcp/cluster.yaml": dump_all([{"parent": cluster_parent(cfg), "cluster": cluster_spec(cfg)}],
                                     head + "\nThe Spinnaker GKE cluster: Workload Identity always on."),
        "gcp/nodepool.yaml": dump_all([{"parent": f"{cluster_parent(cfg)}/clusters/{cfg.cluster.name}",
                                        "nodePool": node_pool_spec(cfg)}],
                                      head + "\nThe node pool Spinnaker runs on: high-memory, GKE metadata server."),
        "gcp/pubsub.yaml": dump_all([{"topics": topics(cfg), "subscriptions": subscription_specs(cfg)}],
                                    head + "\nRegistry pushes arrive on each registry project's gcr topic."),
        "gcp/iam.yaml": dump_all([iam_spec(cfg)], head + "\nSpinnaker's Google service account and only what it needs."),
        "gcp/storage.yaml": dump_all([storage_spec(cfg)], head + "\nfront50's bucket."),
    }
