"""Reaching the Spinnaker cluster's API server, for every operation (status, doctor, drift, destroy, backup,
migrate): the way spinboot.kube.access reaches any GKE cluster (endpoint, CA, the caller's Google token)."""

from __future__ import annotations

from typing import Any

from ..config.model import SpinbootConfig
from ..gcp import gke
from ..kube import access
from ..kube.resources import Kube


def spinnaker_kube(clients, live_cluster: Any) -> Kube | None:
    """The API server of a live GKE cluster (as read by ``gke.get_cluster``); None when the cluster is missing or
    has no endpoint yet."""
    if live_cluster is None or not live_cluster.endpoint:
        return None
    a = gke.access_of(live_cluster)
    return Kube(access.Cluster("spinnaker", a.endpoint, a.ca_pem, token=clients.access_token).api_client(), "spinnaker")


def spinnaker_cluster(clients, cfg: SpinbootConfig) -> tuple[Any, Kube | None]:
    """The file's Spinnaker cluster as GKE reports it, and its API server (None where missing)."""
    live = gke.get_cluster(clients.container, gke.cluster_name(cfg))
    return live, spinnaker_kube(clients, live)
