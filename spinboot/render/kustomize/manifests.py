"""Kubernetes objects of the generated base: per service a Deployment, Service and ServiceAccount; clouddriver's
namespaced Role for Spinnaker's own namespace; Redis unless an external URL is given.

Never a ClusterRole or ClusterRoleBinding: clouddriver's accounts all carry a namespace list, so it needs rights
only inside those namespaces (render/rbac.py explains why; rbac/rules.yaml holds the rules).
"""

from __future__ import annotations

import hashlib

from ...config import names
from ...config.model import SpinbootConfig
from ..rbac import rules
from . import settings
from .config_files import KUBECONFIG_MOUNT, KUBECONFIG_SECRET, REDIS_SERVICE
from .facts import (DEFAULT_CPU, DEFAULT_MEMORY, REDIS_IMAGE, REDIS_PORT, REDIS_UID, SERVICES)
from .labels import COMPONENT, CONFIG_HASH

WORKLOAD_IDENTITY_ANNOTATION = "iam.gke.io/gcp-service-account"
DEPLOY_ROLE = "spinboot:clouddriver:deploy"


def image(cfg: SpinbootConfig, service: str) -> str:
    """ghcr.io/spinnaker/<svc>:<version>: .github/actions/publish-docker/action.yml tags each service's
    Dockerfile.slim build with the release version (spinnaker-release.yml passes it as version-override)."""
    v = cfg.spinnaker.version
    if names.SpinnakerVersion(v).images_on_ghcr:
        return f"{names.GHCR}/{service}:{v}"
    return f"us-docker.pkg.dev/spinnaker-community/docker/{service}:{v}"


def config_map_name(service: str) -> str:
    return f"{service}-config"


def config_hash(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name].encode()).digest())
    return h.hexdigest()


def _meta(name: str, cfg: SpinbootConfig, component: str, **extra) -> dict:
    # No namespace here: the overlay's `namespace:` sets it after the user's components and patches ran, so those
    # name objects as users write them (kind and name; kustomize matches a patch's namespace exactly).
    meta = {"name": name, "labels": {COMPONENT: component}}
    meta.update(extra)
    return meta


def _selector(component: str) -> dict:
    # Only the component label: the Halyard engine's spin-* pods (labels app/cluster) never match it.
    return {COMPONENT: component}


def service_account(cfg: SpinbootConfig, service: str) -> dict:
    """Each service its own KSA; only the Google callers get the Workload Identity annotation, and only clouddriver
    (its in-cluster account) gets an API token mounted."""
    s = SERVICES[service]
    extra = {"annotations": {WORKLOAD_IDENTITY_ANNOTATION: cfg.service_account_email}} if s.google else {}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(service, cfg, service, **extra),
            "automountServiceAccountToken": service == "clouddriver"}


def service(cfg: SpinbootConfig, name: str) -> dict:
    port = SERVICES[name].port
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, cfg, name),
            "spec": {"type": "ClusterIP", "selector": _selector(name),
                     "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]}}


def resources(cfg: SpinbootConfig, service: str) -> tuple[dict, int]:
    """(container resources, replicas) from spinnaker.sizing (clouddriver: spinnaker.clouddriver.sizing too).
    Memory limit = request unless given: the JVM sizes its heap from the limit (MaxRAMPercentage)."""
    sz = settings.sizing(cfg, service)
    req_mem = (sz.requests_memory if sz else None) or DEFAULT_MEMORY.get(service, "1Gi")
    lim_mem = (sz.limits_memory if sz else None) or req_mem
    req_cpu = (sz.requests_cpu if sz else None) or DEFAULT_CPU.get(service, "500m")
    out: dict = {"requests": {"cpu": req_cpu, "memory": req_mem}, "limits": {"memory": lim_mem}}
    if sz and sz.limits_cpu:
        out["limits"]["cpu"] = sz.limits_cpu
    return out, (sz.replicas if sz and sz.replicas else 1)


def _pod_security(uid: int) -> dict:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _probes(name: str) -> dict:
    """Readiness on the service's health endpoint (deck: TCP, it has none); a startup probe gives slow JVMs (clouddriver
    caches every account first) ten minutes; liveness by TCP so a failing dependency in /health (e.g. Redis) marks the
    pod unready instead of restarting it."""
    s = SERVICES[name]
    check = {"httpGet": {"path": s.health_path, "port": "http"}} if s.health_path else {"tcpSocket": {"port": "http"}}
    return {
        "startupProbe": {**check, "periodSeconds": 10, "failureThreshold": 60},
        "readinessProbe": {**check, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 30, "failureThreshold": 5},
    }


def deployment(cfg: SpinbootConfig, name: str, files: dict[str, str]) -> dict:
    s = SERVICES[name]
    res, replicas = resources(cfg, name)
    if name == "deck":
        # deck/docker/run-apache2.sh: DECK_HOST/DECK_PORT for Apache; /gate is proxied to API_HOST.
        env = [{"name": "DECK_HOST", "value": "0.0.0.0"}, {"name": "DECK_PORT", "value": str(s.port)},
               {"name": "API_HOST", "value": f"http://gate:{SERVICES['gate'].port}"}]
    else:
        env = [{"name": "SPRING_PROFILES_ACTIVE", "value": "local"},
               {"name": "JAVA_OPTS", "value": "-XX:MaxRAMPercentage=75.0"}]
    mounts = [{"name": "config", "mountPath": "/opt/spinnaker/config", "readOnly": True}]
    volumes: list[dict] = [{"name": "config", "configMap": {"name": config_map_name(name)}}]
    if name == "clouddriver":
        # 0440: the kubelet gives the files the pod's fsGroup (10111), clouddriver's group.
        mounts.append({"name": "kubeconfigs", "mountPath": KUBECONFIG_MOUNT, "readOnly": True})
        volumes.append({"name": "kubeconfigs", "secret": {"secretName": KUBECONFIG_SECRET, "defaultMode": 0o440,
                                                          "optional": not cfg.targets}})
    container = {
        "name": name, "image": image(cfg, name), "imagePullPolicy": "IfNotPresent", "env": env,
        "ports": [{"name": "http", "containerPort": s.port, "protocol": "TCP"}],
        **_probes(name), "resources": res, "securityContext": dict(_CONTAINER_SECURITY), "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, cfg, name),
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": _selector(name)},
            "template": {
                "metadata": {"labels": {COMPONENT: name}, "annotations": {CONFIG_HASH: config_hash(files)}},
                "spec": {"serviceAccountName": name, "automountServiceAccountToken": name == "clouddriver",
                         "securityContext": _pod_security(s.uid), "containers": [container], "volumes": volumes},
            },
        },
    }


def deploy_role(cfg: SpinbootConfig) -> list[dict]:
    """The in-cluster account's rights in Spinnaker's own namespace: a Role (not a ClusterRole) and its binding."""
    ns = cfg.spinnaker.namespace
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta(DEPLOY_ROLE, cfg, "clouddriver"), "rules": rules()["deploy"]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(DEPLOY_ROLE, cfg, "clouddriver"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": DEPLOY_ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": "clouddriver", "namespace": ns}]},
    ]


def redis(cfg: SpinbootConfig) -> list[dict]:
    """A single Redis with a persistent volume (settings.redis_storage_size); readiness by `redis-cli ping`."""
    res, _ = resources(cfg, "redis")
    container = {
        "name": "redis", "image": REDIS_IMAGE, "imagePullPolicy": "IfNotPresent",
        "args": ["--appendonly", "yes"],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "startupProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 10},
        "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 30, "failureThreshold": 5},
        "resources": res, "securityContext": dict(_CONTAINER_SECURITY),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(REDIS_SERVICE, cfg, "redis"),
         "spec": {"type": "ClusterIP", "selector": _selector("redis"),
                  "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(REDIS_SERVICE, cfg, "redis"),
         "spec": {
             "serviceName": REDIS_SERVICE, "replicas": 1, "selector": {"matchLabels": _selector("redis")},
             "template": {"metadata": {"labels": {COMPONENT: "redis"}},
                          "spec": {"automountServiceAccountToken": False, "securityContext": _pod_security(REDIS_UID),
                                   "containers": [container]}},
             "volumeClaimTemplates": [{
                 "metadata": {"name": "data"},
                 "spec": {"accessModes": ["ReadWriteOnce"],
                          "resources": {"requests": {"storage": settings.redis_storage_size(cfg)}}}}],
         }},
    ]
