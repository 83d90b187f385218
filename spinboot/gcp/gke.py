"""The Spinnaker GKE cluster: create it as the file says, or change in place what can change.

Create: ``create_cluster`` with the node pool inline (one operation), Workload Identity on, then poll the
``Operation`` until DONE and check its ``error``
(https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.operations).
Update in place: authorized networks, release channel, labels, Workload Identity, node count and autoscaling.
Machine type, disk size, node service account, private nodes and location cannot change in place: they are
reported with the remedy and nothing is done to them.

Each call is one change, as the API wants it: ``update_cluster`` carries exactly one ``ClusterUpdate`` field
("Exactly one update can be applied to a cluster with each request",
https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/ClusterUpdate); labels go through
``set_labels`` with the current ``label_fingerprint``; ``update_node_pool`` never carries ``node_version``
(``"-"`` there means "the master's version", an upgrade) or ``image_type`` unless that is the change meant.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

from google.api_core import exceptions
from google.cloud import container_v1

from ..changes import Change
from ..config.model import SpinbootConfig
from ..render.gcp import cluster_parent, cluster_spec, node_pool_spec
from .retry import RETRY

OPERATION_TIMEOUT_SECONDS = 45 * 60
POOL_LABEL = "cloud.google.com/gke-nodepool"
LABEL_ATTEMPTS = 3  # a label fingerprint gone stale between read and write: read again, at most this often


class GkeError(Exception):
    pass


@dataclass
class ClusterAccess:
    """How to reach the cluster's API server."""

    name: str
    endpoint: str
    ca_pem: str


def cluster_name(cfg: SpinbootConfig) -> str:
    return f"{cluster_parent(cfg)}/clusters/{cfg.cluster.name}"


def desired_cluster(cfg: SpinbootConfig) -> container_v1.Cluster:
    cluster = container_v1.Cluster.from_json(json.dumps(cluster_spec(cfg)), ignore_unknown_fields=False)
    cluster.node_pools = [desired_pool(cfg)]
    return cluster


def desired_pool(cfg: SpinbootConfig) -> container_v1.NodePool:
    return container_v1.NodePool.from_json(json.dumps(node_pool_spec(cfg)), ignore_unknown_fields=False)


def access_of(cluster: container_v1.Cluster) -> ClusterAccess:
    import base64

    endpoint = cluster.endpoint
    if cluster.private_cluster_config.enable_private_endpoint and cluster.private_cluster_config.private_endpoint:
        endpoint = cluster.private_cluster_config.private_endpoint
    if endpoint and not endpoint.startswith("https://"):
        endpoint = "https://" + endpoint
    ca = base64.b64decode(cluster.master_auth.cluster_ca_certificate).decode()
    return ClusterAccess(cluster.name, endpoint, ca)


def get_cluster(container, name: str) -> container_v1.Cluster | None:
    try:
        return container.get_cluster(name=name, retry=RETRY)
    except exceptions.NotFound:
        return None


def wait_operation(container, project: str, location: str, op: container_v1.Operation, what: str,
                   progress: Callable[[str], None] = lambda m: None,
                   timeout: float = OPERATION_TIMEOUT_SECONDS) -> None:
    """Poll an operation until DONE, then raise with its error, if any.

    Backoff from 0.5 s, capped at 2 s for the first two minutes and 5 s after: the cap is how late the end of an
    operation is noticed. (A 10 s cap made a 30 s operation look like 34.6 s in `make bench`: polls at 24.6 and
    34.6 s; see docs/performance.md.) A cluster create polled at 5 s costs about 12 reads a minute."""
    name = f"projects/{project}/locations/{location}/operations/{op.name}"
    started = time.monotonic()
    deadline = started + timeout
    delay = 0.5
    last = None
    while op.status != container_v1.Operation.Status.DONE:
        if time.monotonic() > deadline:
            raise GkeError(f"{what}: operation {op.name} not done after {timeout / 60:.0f} min (it continues at Google;"
                           " re-running apply waits for it)")
        status = container_v1.Operation.Status(op.status).name
        if status != last:
            progress(f"{what}: {status.lower()}")
            last = status
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0 if time.monotonic() - started < 120 else 5.0)
        op = container.get_operation(name=name, retry=RETRY)
    if op.error and op.error.code:
        raise GkeError(f"{what} failed: {op.error.message} (code {op.error.code})")
    if op.status_message:
        raise GkeError(f"{what} failed: {op.status_message}")


def _wait_running_operations(container, cfg: SpinbootConfig, progress) -> None:
    """An operation already running on the cluster (e.g. from an interrupted apply) must finish first, or GKE
    answers FAILED_PRECONDITION."""
    target = f"/clusters/{cfg.cluster.name}"
    ops = container.list_operations(parent=cluster_parent(cfg), retry=RETRY).operations
    for op in ops:
        if op.status != container_v1.Operation.Status.DONE and (
                op.target_link.endswith(target) or target + "/" in op.target_link):
            wait_operation(container, cfg.project, cfg.cluster.location, op,
                           f"waiting for running operation {op.operation_type.name.lower()}", progress)


def _private_nodes(cluster: container_v1.Cluster) -> bool:
    """Clusters made before networkConfig.defaultEnablePrivateNodes carry the deprecated privateClusterConfig
    field; either one means private nodes."""
    return bool(cluster.network_config.default_enable_private_nodes
                or cluster.private_cluster_config.enable_private_nodes)


def _networks(cluster: container_v1.Cluster) -> tuple[bool, list[tuple[str, str]]]:
    cfg = cluster.master_authorized_networks_config
    return bool(cfg.enabled), sorted((b.display_name, b.cidr_block) for b in cfg.cidr_blocks)


def ensure_cluster(container, cfg: SpinbootConfig, dry_run: bool = False,
                   node_count: Callable[[ClusterAccess], int | None] | None = None,
                   progress: Callable[[str], None] = lambda m: None) -> tuple[list[Change], ClusterAccess | None]:
    """Reconcile the cluster and its node pool. ``node_count(access)`` reads the pool's live size (GKE's API
    does not report it: it is read from the cluster's Node objects)."""
    name = cluster_name(cfg)
    kind = "GKE cluster"
    live = get_cluster(container, name)
    if live is None:
        elsewhere = [c for c in container.list_clusters(parent=f"projects/{cfg.project}/locations/-", retry=RETRY).clusters
                     if c.name == cfg.cluster.name]
        if elsewhere:
            where = elsewhere[0].location
            return [Change("blocked", kind, cfg.cluster.name, detail=(
                f"a cluster named {cfg.cluster.name} exists in {where}, not {cfg.cluster.location}: a cluster cannot "
                f"move. Set cluster.location: {where}, or pick a new cluster.name to build a new cluster beside it"))], None
        if dry_run:
            p = cfg.cluster.node_pool
            return [Change("create", kind, cfg.cluster.name, detail=f"{cfg.cluster.location}, {p.node_count} x "
                                                                    f"{p.machine_type}, Workload Identity")], None
        progress(f"creating cluster {cfg.cluster.name} in {cfg.cluster.location}")
        try:
            op = container.create_cluster(parent=cluster_parent(cfg), cluster=desired_cluster(cfg), retry=RETRY)
            wait_operation(container, cfg.project, cfg.cluster.location, op, f"create cluster {cfg.cluster.name}", progress)
            action = "create"
        except exceptions.AlreadyExists:
            # A retried create whose first attempt went through, or a concurrent apply: adopt it and wait.
            _wait_running_operations(container, cfg, progress)
            action = "create"
        live = get_cluster(container, name)
        return [Change(action, kind, cfg.cluster.name, detail=f"{cfg.cluster.location}")], access_of(live)

    busy: list[Change] = []
    if live.status in (container_v1.Cluster.Status.PROVISIONING, container_v1.Cluster.Status.RECONCILING):
        if dry_run:
            # A plan reports an operation in progress and compares with what is there; it never waits (apply does).
            busy.append(Change("unchanged", kind, cfg.cluster.name, detail=(
                f"{live.status.name.lower()}: an operation is running; apply waits for it before changing anything")))
        else:
            progress(f"cluster {cfg.cluster.name} is {live.status.name.lower()}: waiting")
            _wait_running_operations(container, cfg, progress)
            live = get_cluster(container, name)
    changes: list[Change] = busy
    want = desired_cluster(cfg)

    def update(what: str, update: container_v1.ClusterUpdate) -> None:
        fields = [f.name for f, _ in container_v1.ClusterUpdate.pb(update).ListFields()]
        if len(fields) != 1:  # the API takes exactly one update per request; never send it more
            raise GkeError(f"internal error: update '{what}' sets {fields}, GKE takes exactly one field per update")
        changes.append(Change("update", kind, cfg.cluster.name, detail=what))
        if not dry_run:
            progress(f"cluster {cfg.cluster.name}: {what}")
            op = container.update_cluster(request={"name": name, "update": update}, retry=RETRY)
            wait_operation(container, cfg.project, cfg.cluster.location, op, f"update cluster ({what})", progress)

    if live.workload_identity_config.workload_pool != want.workload_identity_config.workload_pool:
        update("enable Workload Identity",
               container_v1.ClusterUpdate(desired_workload_identity_config=want.workload_identity_config))
    if _networks(live) != _networks(want):
        update("authorized networks", container_v1.ClusterUpdate(
            desired_master_authorized_networks_config=want.master_authorized_networks_config))
    if live.release_channel.channel != want.release_channel.channel:
        update(f"release channel {container_v1.ReleaseChannel.Channel(want.release_channel.channel).name}",
               container_v1.ClusterUpdate(desired_release_channel=want.release_channel))
    if _private_nodes(live) != _private_nodes(want):
        changes.append(Change("blocked", kind, cfg.cluster.name, detail=(
            "privateNodes cannot change in place on this cluster: build a new cluster (new cluster.name) and "
            "restore into it (see docs/runbook.md), or set privateNodes back")))
    own_live = {k: v for k, v in live.resource_labels.items() if k not in _google_labels(live.resource_labels)}
    if own_live != dict(want.resource_labels):
        changes.append(Change("update", kind, cfg.cluster.name, detail=_label_diff(own_live, dict(want.resource_labels))))
        if not dry_run:
            _set_labels(container, cfg, name, live, dict(want.resource_labels), progress)

    changes += _ensure_pool(container, cfg, live, dry_run, node_count, progress)
    if not changes:
        changes.append(Change("unchanged", kind, cfg.cluster.name))
    return changes, access_of(get_cluster(container, name) if not dry_run and any(c.mutating for c in changes) else live)


def _google_labels(labels) -> dict[str, str]:
    """Labels Google or an org policy adds (goog-*) are not the file's business: kept as they are, never compared."""
    return {k: v for k, v in labels.items() if k.startswith("goog-")}


def _label_diff(live: dict[str, str], want: dict[str, str]) -> str:
    parts = [f"+{k}={want[k]}" for k in sorted(want.keys() - live.keys())]
    parts += [f"{k}={live[k]}→{want[k]}" for k in sorted(want.keys() & live.keys()) if live[k] != want[k]]
    parts += [f"-{k}" for k in sorted(live.keys() - want.keys())]
    return "labels " + ", ".join(parts)


def _set_labels(container, cfg: SpinbootConfig, name: str, live: container_v1.Cluster, want: dict[str, str],
                progress) -> None:
    """SetLabels replaces the whole label set (so a label the file dropped is removed) and needs the current
    label_fingerprint: one that went stale since the read is refused with FAILED_PRECONDITION "Labels could not
    be set due to fingerprint mismatch" (SetLabelsRequest.label_fingerprint: "Make a get() request to the
    resource to get the latest fingerprint"), so read again and retry."""
    for attempt in range(LABEL_ATTEMPTS):
        labels = {**_google_labels(live.resource_labels), **want}
        try:
            op = container.set_labels(request={"name": name, "resource_labels": labels,
                                               "label_fingerprint": live.label_fingerprint}, retry=RETRY)
        except exceptions.FailedPrecondition as exc:
            if "fingerprint" not in str(exc) or attempt == LABEL_ATTEMPTS - 1:
                raise
            progress(f"cluster {cfg.cluster.name}: labels changed since read (fingerprint); reading again")
            _wait_running_operations(container, cfg, progress)
            live = container.get_cluster(name=name, retry=RETRY)
            continue
        wait_operation(container, cfg.project, cfg.cluster.location, op, "set labels", progress)
        return


def _autoscaling(a: container_v1.NodePoolAutoscaling) -> tuple[bool, int, int]:
    """Autoscaling as compared: off is off, whatever limits are left in the message."""
    return (True, a.min_node_count, a.max_node_count) if a.enabled else (False, 0, 0)


def _ensure_pool(container, cfg, live: container_v1.Cluster, dry_run, node_count, progress) -> list[Change]:
    want = desired_pool(cfg)
    kind = "GKE node pool"
    pool_name = f"{cluster_name(cfg)}/nodePools/{want.name}"
    pool = next((p for p in live.node_pools if p.name == want.name), None)
    if pool is None:
        if not dry_run:
            op = container.create_node_pool(request={"parent": cluster_name(cfg), "node_pool": want}, retry=RETRY)
            wait_operation(container, cfg.project, cfg.cluster.location, op, f"create node pool {want.name}", progress)
        others = ", ".join(p.name for p in live.node_pools) or "none"
        return [Change("create", kind, want.name, detail=f"{want.initial_node_count} x {want.config.machine_type}; "
                                                         f"other pools ({others}) are left as they are")]
    out: list[Change] = []
    blocked = []
    if pool.config.machine_type != want.config.machine_type:
        blocked.append(f"machine type {pool.config.machine_type} → {want.config.machine_type}")
    if pool.config.disk_size_gb != want.config.disk_size_gb:
        blocked.append(f"disk {pool.config.disk_size_gb} → {want.config.disk_size_gb} GB")
    if pool.config.service_account != want.config.service_account:
        blocked.append(f"node service account {pool.config.service_account or 'default'} → "
                       f"{want.config.service_account}")
    if blocked:
        out.append(Change("blocked", kind, want.name, detail=(
            "; ".join(blocked) + " cannot change in place: set cluster.nodePool.name to a new name so spinboot "
                                 "creates a new pool beside this one, then delete the old pool once Spinnaker "
                                 "runs on the new one")))
    if pool.config.workload_metadata_config.mode != want.config.workload_metadata_config.mode:
        out.append(Change("update", kind, want.name, detail="GKE metadata server (Workload Identity)"))
        if not dry_run:
            # Only the metadata server changes. node_version is left out on purpose: "-" would mean "the master's
            # version", upgrading nodes that are behind (UpdateNodePoolRequest.node_version,
            # https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters.nodePools/update);
            # the API needs at least one update field, and workload_metadata_config is one.
            op = container.update_node_pool(request={"name": pool_name,
                                                     "workload_metadata_config": want.config.workload_metadata_config},
                                            retry=RETRY)
            wait_operation(container, cfg.project, cfg.cluster.location, op, "node pool metadata", progress)
    want_auto, live_auto = _autoscaling(want.autoscaling), _autoscaling(pool.autoscaling)
    if want_auto != live_auto:
        was = f"{live_auto[1]}..{live_auto[2]}" if live_auto[0] else "off"
        out.append(Change("update", kind, want.name, detail=(
            f"autoscaling {was} → {want_auto[1]}..{want_auto[2]}" if want_auto[0] else f"autoscaling {was} → off")))
        if not dry_run:
            op = container.set_node_pool_autoscaling(request={"name": pool_name, "autoscaling": want.autoscaling},
                                                     retry=RETRY)
            wait_operation(container, cfg.project, cfg.cluster.location, op, "node pool autoscaling", progress)
    if not want.autoscaling.enabled:
        current = node_count(access_of(live)) if node_count and live.endpoint else None
        zones = max(1, len(pool.locations) or 1)
        desired_total = want.initial_node_count * zones
        if current is not None and current != desired_total:
            out.append(Change("update", kind, want.name, detail=f"nodes {current} → {desired_total}"))
            if not dry_run:
                op = container.set_node_pool_size(request={"name": pool_name, "node_count": want.initial_node_count},
                                                  retry=RETRY)
                wait_operation(container, cfg.project, cfg.cluster.location, op, "node pool size", progress)
    return out
