"""GKE exposure (spinnaker.exposure.ingress.enabled): an Ingress for Google's external HTTPS load balancer, a
BackendConfig per backend (health check on the service's real health path, IAP when exposure.iap), a
ManagedCertificate for the hosts, and the NEG/BackendConfig annotations on deck's and gate's Services.

GKE documents these objects: Ingress annotations kubernetes.io/ingress.class "gce",
kubernetes.io/ingress.global-static-ip-name, networking.gke.io/managed-certificates
(https://cloud.google.com/kubernetes-engine/docs/how-to/managed-certs); BackendConfig cloud.google.com/v1 with
healthCheck and iap (https://cloud.google.com/kubernetes-engine/docs/how-to/ingress-configuration); container-native
load balancing by cloud.google.com/neg: {"ingress": true} (https://cloud.google.com/kubernetes-engine/docs/how-to/container-native-load-balancing).
IAP is enabled with the Google-managed OAuth client (no oauthclientCredentials), so no OAuth secret is needed
(https://cloud.google.com/iap/docs/enabling-kubernetes-howto).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from ...config.model import SpinbootConfig
from . import settings
from .facts import SERVICES
from .labels import COMPONENT

INGRESS_NAME = "spinnaker"
CERTIFICATE_NAME = "spinnaker"


def backends(cfg: SpinbootConfig) -> list[str]:
    """deck always; gate too when its URL has a host of its own (with UI-host/gate, Deck forwards /gate to Gate)."""
    ex = cfg.spinnaker.exposure
    return ["deck"] if urlsplit(ex.api_url).hostname == urlsplit(ex.ui_url).hostname else ["deck", "gate"]


def hosts(cfg: SpinbootConfig) -> list[str]:
    ex = cfg.spinnaker.exposure
    return sorted({urlsplit(ex.ui_url).hostname, urlsplit(ex.api_url).hostname})


def backend_config_name(service: str) -> str:
    return f"{service}-backend"


def _meta(cfg: SpinbootConfig, name: str, component: str, **extra) -> dict:
    return {"name": name, "labels": {COMPONENT: component}, **extra}   # namespace: the overlay's


def objects(cfg: SpinbootConfig) -> dict[str, list[dict]]:
    """File name under exposure/ → objects (resources), and ``patches`` → Service patches."""
    ing = settings.ingress(cfg)
    ex = cfg.spinnaker.exposure
    annotations = {"kubernetes.io/ingress.class": "gce"}
    if ing.static_ip_name:
        annotations["kubernetes.io/ingress.global-static-ip-name"] = ing.static_ip_name
    if ing.managed_certificate:
        annotations["networking.gke.io/managed-certificates"] = CERTIFICATE_NAME
    ui_host = urlsplit(ex.ui_url).hostname
    api_host = urlsplit(ex.api_url).hostname

    def rule(host: str, svc: str) -> dict:
        return {"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
            "service": {"name": svc, "port": {"number": SERVICES[svc].port}}}}]}}

    rules = [rule(ui_host, "deck")]
    if "gate" in backends(cfg):
        rules.append(rule(api_host, "gate"))
    out: dict[str, list[dict]] = {
        "ingress.yaml": [{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                          "metadata": _meta(cfg, INGRESS_NAME, "exposure", annotations=annotations),
                          "spec": {"rules": sorted(rules, key=lambda r: r["host"])}}],
    }
    configs = []
    patches = []
    for svc in backends(cfg):
        s = SERVICES[svc]
        spec: dict = {"healthCheck": {"type": "HTTP", "requestPath": s.health_path or "/", "port": s.port}}
        if ex.iap:
            spec["iap"] = {"enabled": True}
        configs.append({"apiVersion": "cloud.google.com/v1", "kind": "BackendConfig",
                        "metadata": _meta(cfg, backend_config_name(svc), svc), "spec": spec})
        patches.append({"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": svc, "annotations": {
                "cloud.google.com/neg": json.dumps({"ingress": True}),
                "cloud.google.com/backend-config": json.dumps({"default": backend_config_name(svc)})}}})
    out["backendconfig.yaml"] = configs
    if ing.managed_certificate:
        out["managedcertificate.yaml"] = [{"apiVersion": "networking.gke.io/v1", "kind": "ManagedCertificate",
                                           "metadata": _meta(cfg, CERTIFICATE_NAME, "exposure"),
                                           "spec": {"domains": hosts(cfg)}}]
    out["patches"] = patches
    return out
