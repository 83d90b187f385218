"""Halyard in the Spinnaker cluster: Namespaces, ServiceAccounts (Workload Identity), StatefulSet, Service, RBAC.

Halyard and clouddriver reach Spinnaker's own namespace through the in-cluster account (``--service-account
true``), so both Kubernetes service accounts get the deploy rules in that namespace only, never cluster-wide.
"""

from __future__ import annotations

from ..config.model import SpinbootConfig
from . import pod_paths
from .profiles import KUBERNETES_SERVICE_ACCOUNT
from .rbac import MANAGED_BY, rules
from .yamlio import dump_all

HALYARD_NAME = "halyard"
DAEMON_PORT = 8064  # Halyard's daemon (https://spinnaker.io/docs/reference/halyard/)
WORKLOAD_IDENTITY_ANNOTATION = "iam.gke.io/gcp-service-account"
BUNDLE_HASH_ANNOTATION = "spinboot.dev/bundle-sha256"


def _meta(name: str, namespace: str | None = None, **extra) -> dict:
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = {"app.kubernetes.io/name": HALYARD_NAME, **MANAGED_BY}
    meta.update(extra)
    return meta


def halyard_manifests(cfg: SpinbootConfig) -> dict[str, list[dict]]:
    s = cfg.spinnaker
    hns, sns = s.halyard.namespace, s.namespace
    wi = {WORKLOAD_IDENTITY_ANNOTATION: cfg.service_account_email}
    selector = {"app.kubernetes.io/name": HALYARD_NAME}
    namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(hns)}]
    if sns != hns:
        namespaces.append({"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(sns)})

    mounts = [{"name": "hal", "mountPath": pod_paths.HAL_HOME + "/.hal"}]
    volumes = []
    for a in s.artifacts.github:
        vol = f"github-{a.name}"
        volumes.append({"name": vol, "secret": {"secretName": a.token_secret.name, "defaultMode": 0o400,
                                                 "items": [{"key": a.token_secret.key, "path": a.token_secret.key}]}})
        mounts.append({"name": vol, "mountPath": f"{pod_paths.SECRETS_DIR}/{vol}", "readOnly": True})

    pod_spec: dict = {
        "serviceAccountName": HALYARD_NAME,
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000, "runAsNonRoot": True},
        "containers": [{
            "name": HALYARD_NAME,
            "image": cfg.halyard_image,
            "ports": [{"name": "daemon", "containerPort": DAEMON_PORT}],
            "env": [{"name": "HOME", "value": pod_paths.HAL_HOME}],
            "readinessProbe": {"httpGet": {"path": "/health", "port": DAEMON_PORT},
                               "initialDelaySeconds": 20, "periodSeconds": 10, "failureThreshold": 30},
            "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": mounts,
        }],
    }
    if volumes:
        pod_spec["volumes"] = volumes

    deploy_role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": _meta("spinboot:spinnaker-deploy", sns), "rules": rules()["deploy"]}
    deploy_binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": _meta("spinboot:spinnaker-deploy", sns),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "spinboot:spinnaker-deploy"},
        "subjects": [{"kind": "ServiceAccount", "name": HALYARD_NAME, "namespace": hns},
                     {"kind": "ServiceAccount", "name": KUBERNETES_SERVICE_ACCOUNT, "namespace": sns}],
    }
    # Halyard checks that the deploy namespace exists; it may read that one Namespace object, nothing else.
    ns_reader = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                 "metadata": _meta(f"spinboot:halyard:namespace-{sns}"),
                 "rules": [{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": [sns], "verbs": ["get"]}]}
    ns_reader_binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": _meta(f"spinboot:halyard:namespace-{sns}"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": f"spinboot:halyard:namespace-{sns}"},
        "subjects": [{"kind": "ServiceAccount", "name": HALYARD_NAME, "namespace": hns}],
    }
    return {
        "00-namespaces.yaml": namespaces,
        "01-serviceaccounts.yaml": [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(HALYARD_NAME, hns, annotations=wi)},
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": _meta(KUBERNETES_SERVICE_ACCOUNT, sns, annotations=wi)},
        ],
        "02-rbac.yaml": [deploy_role, deploy_binding, ns_reader, ns_reader_binding],
        "03-service.yaml": [{
            "apiVersion": "v1", "kind": "Service", "metadata": _meta(HALYARD_NAME, hns),
            "spec": {"selector": selector, "ports": [{"name": "daemon", "port": DAEMON_PORT, "targetPort": DAEMON_PORT}]},
        }],
        "04-statefulset.yaml": [{
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(HALYARD_NAME, hns),
            "spec": {
                "serviceName": HALYARD_NAME,
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": selector}, "spec": pod_spec},
                "volumeClaimTemplates": [{
                    "metadata": {"name": "hal"},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": s.halyard.storage_size}}},
                }],
            },
        }],
    }


def render_halyard(cfg: SpinbootConfig) -> dict[str, bytes]:
    header = (f"Halyard for Spinnaker {cfg.spinnaker.version} in cluster {cfg.cluster.name}. Generated by spinboot. "
              f"Its pods run as Kubernetes service accounts bound by Workload Identity to {cfg.service_account_email}.")
    return {f"halyard/{name}": dump_all(docs, header) for name, docs in halyard_manifests(cfg).items()}
