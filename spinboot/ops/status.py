"""``spinboot status``: one read-only look at everything spinboot manages.

Nothing here writes or consumes: Pub/Sub backlog is reported as unknown because the only ways to count it without
Cloud Monitoring (``subscription/num_undelivered_messages``, which pstest does not serve) are pulls, and a pull
without ack still delays echo's delivery of those messages until their ack deadline passes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import yaml
from google.api_core import exceptions

from ..config.model import SpinbootConfig
from ..gcp import gke
from ..kube.halyard import KUBECONFIG_SECRET, STATE_CONFIGMAP, pod_name
from ..kube.podexec import exec_in_pod
from ..kube.resources import Kube
from ..render.gcp import pubsub_spec
from .reach import spinnaker_kube


@dataclass
class Live:
    """The live handles status and doctor share (None where something is missing)."""

    cluster: Any = None
    kube: Kube | None = None
    halyard_ready: bool = False
    halconfig: dict | None = None
    errors: list[str] = field(default_factory=list)


def connect(clients, cfg: SpinbootConfig) -> Live:
    live = Live()
    live.cluster = gke.get_cluster(clients.container, gke.cluster_name(cfg))
    live.kube = spinnaker_kube(clients, live.cluster)
    if live.kube is None:
        return live
    pod = live.kube.get(f"/api/v1/namespaces/{cfg.spinnaker.halyard.namespace}/pods/{pod_name()}") or {}
    conds = (pod.get("status") or {}).get("conditions") or []
    live.halyard_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
    if live.halyard_ready:
        text = pod_file(live, cfg, ".hal/config")
        if text is not None:
            live.halconfig = yaml.safe_load(text) or {}
    return live


def pod_file(live: Live, cfg: SpinbootConfig, rel: str) -> str | None:
    """A file under the Halyard user's home, read with ``cat`` over exec (None when absent)."""
    r = exec_in_pod(live.kube.api, cfg.spinnaker.halyard.namespace, pod_name(), ["sh", "-c", f'cat "$HOME/{rel}"'],
                    timeout=60)
    return r.stdout if r.returncode == 0 else None


def deployment(halconfig: dict | None) -> dict:
    confs = (halconfig or {}).get("deploymentConfigurations") or [{}]
    return confs[0] or {}


def target_kubeconfigs(live: Live, cfg: SpinbootConfig) -> dict[str, bytes]:
    s = live.kube.get(f"/api/v1/namespaces/{cfg.spinnaker.halyard.namespace}/secrets/{KUBECONFIG_SECRET}") or {}
    return {k.removesuffix(".kubeconfig"): base64.b64decode(v) for k, v in (s.get("data") or {}).items()}


def gather(clients, cfg: SpinbootConfig) -> dict:
    """Everything on one screen, as a dict; ``problems`` lists what is down."""
    live = connect(clients, cfg)
    problems: list[str] = []
    out: dict[str, Any] = {"problems": problems}
    c = live.cluster
    if c is None:
        problems.append(f"cluster {cfg.cluster.name} does not exist")
        out["cluster"] = {"name": cfg.cluster.name, "status": "MISSING"}
        return out
    status = c.status.name if hasattr(c.status, "name") else str(c.status)
    out["cluster"] = {"name": c.name, "status": status, "location": c.location,
                      "version": c.current_master_version, "endpoint": c.endpoint}
    if status != "RUNNING":
        problems.append(f"cluster is {status}")
    pool = next((p for p in c.node_pools if p.name == cfg.cluster.node_pool.name), None)
    nodes = None
    if live.kube is not None:
        _, data = live.kube.request("GET", "/api/v1/nodes",
                                    query={"labelSelector": f"{gke.POOL_LABEL}={cfg.cluster.node_pool.name}"})
        items = data.get("items", [])
        nodes = len(items)
        ready = sum(any(x.get("type") == "Ready" and x.get("status") == "True"
                        for x in (n.get("status") or {}).get("conditions") or []) for n in items)
    out["nodePool"] = {"name": cfg.cluster.node_pool.name, "machineType": pool.config.machine_type if pool else None,
                       "nodes": nodes, "ready": ready if nodes is not None else None}
    if pool is None or not nodes or ready < nodes:
        problems.append("node pool missing or nodes not ready")
    hns = cfg.spinnaker.halyard.namespace
    state = (live.kube.get(f"/api/v1/namespaces/{hns}/configmaps/{STATE_CONFIGMAP}") or {}).get("data") or {}
    out["halyard"] = {"ready": live.halyard_ready, "bundleSha256": state.get("bundleSha256")}
    out["lastApply"] = state
    if not live.halyard_ready:
        problems.append("Halyard pod is not ready")
    services = []
    for d in live.kube.list("apps/v1", "Deployment", cfg.spinnaker.namespace, labels="app=spin"):
        want = (d.get("spec") or {}).get("replicas", 1)
        have = (d.get("status") or {}).get("availableReplicas") or 0
        services.append({"name": d["metadata"]["name"], "ready": have >= want, "available": have, "replicas": want})
        if have < want:
            problems.append(f"{d['metadata']['name']}: {have}/{want} available")
    if not services:
        problems.append(f"no Spinnaker services in namespace {cfg.spinnaker.namespace}")
    out["services"] = services
    dep = deployment(live.halconfig)
    k8s = {a.get("name") for a in (dep.get("providers") or {}).get("kubernetes", {}).get("accounts", [])}
    reg = {a.get("name") for a in (dep.get("providers") or {}).get("dockerRegistry", {}).get("accounts", [])}
    accounts = [{"name": t.name, "kind": "kubernetes", "inHalconfig": t.name in k8s} for t in cfg.targets]
    accounts += [{"name": r.name, "kind": "docker-registry", "inHalconfig": r.name in reg}
                 for r in cfg.registries if getattr(r, "repositories", None)]
    out["accounts"] = accounts
    problems += [f"account {a['name']} is not in the halconfig" for a in accounts if not a["inHalconfig"]]
    subs = []
    for sub in pubsub_spec(cfg).subscriptions:   # what gcp/pubsub.yaml lists: Google registries only
        path = sub.name
        try:
            clients.subscriber.get_subscription(request={"subscription": path})
            exists = True
        except exceptions.NotFound:
            exists = False
            problems.append(f"subscription {path} is missing")
        subs.append({"name": path, "exists": exists, "backlog": "unknown"})
    out["subscriptions"] = subs
    from .drift import counts as drift_counts   # what was deployed around Spinnaker (docs/drift.md); not "down"

    out["drift"] = drift_counts(clients, cfg, live)
    return out
