"""What ``hal deploy apply`` gives each Spinnaker service: its configuration as the service reads it.

Halyard's profile factories turn the halconfig into each service's ``<service>.yml`` (halyard-deploy
.../spinnaker/v1/profile/*ProfileFactory.java), then append the operator's ``profiles/<service>-local.yml`` and
``spinnaker-local.yml``; the pods run as ``service-settings/<service>.yml`` ``kubernetes.serviceAccountName``
(KubernetesV2Service, podSpec.yml). This module builds the part the startup play needs
(spinboot/sandbox/spinnaker/config.py names the properties) and fails where Halyard's factories fail: a Kubernetes
account's kubeconfig that cannot be read, is empty, or gives no context (KubernetesV2ClouddriverProfileFactory,
FATAL, also with ``--no-validate``, since profile generation is part of deploying).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from spinboot.sandbox.hal.halconfig import HalFailure, Halconfig
from spinboot.sandbox.spinnaker.config import ServiceConfig, SpinnakerConfig, deep_merge, expand_dotted

REDIS_PORT = 6379


def _yaml_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise HalFailure(f"Failed to parse {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def service_settings(cfg: Halconfig, deployment: str, service: str) -> dict[str, Any]:
    return _yaml_file(cfg.dir / deployment / "service-settings" / f"{service}.yml")


def service_account(cfg: Halconfig, deployment: str, service: str) -> str | None:
    """``kubernetes.serviceAccountName`` of the service's settings (Halyard's KubernetesSettings), or None."""
    return ((service_settings(cfg, deployment, service).get("kubernetes") or {}).get("serviceAccountName")) or None


def redis_base_url(cfg: Halconfig, dep: dict[str, Any], namespace: str) -> str:
    """``services.redis.baseUrl``: the redis service settings' ``overrideBaseUrl``, else Halyard's own spin-redis
    (KubernetesV2Service: the service is addressed as ``spin-redis.<namespace>``)."""
    override = service_settings(cfg, dep["name"], "redis").get("overrideBaseUrl")
    return str(override) if override else f"redis://spin-redis.{namespace}:{REDIS_PORT}"


DECK_DEFAULT_API_HOST = "http://localhost:8084"


def deck_settings(cfg: Halconfig, dep: dict[str, Any], namespace: str) -> dict[str, Any]:
    """What Deck's container starts with (Deck is not a Spring service: its web server and settings.js read
    environment variables). ``gateUrl``: the browser's Gate URL (``security.apiSecurity.overrideBaseUrl``);
    ``apiHost``: where Deck's web server forwards ``/gate``: the deck service settings' ``env.API_HOST`` when set,
    else, when Deck serves TLS itself, Gate's Service (Halyard's DeckDockerProfileFactory sets API_HOST only then),
    else the image's default, ``http://localhost:8084`` inside Deck's pod (docs/spinnaker-contract.md, deck)."""
    security = dep.get("security") or {}
    env = service_settings(cfg, dep["name"], "deck").get("env") or {}
    ssl = bool(((security.get("uiSecurity") or {}).get("ssl") or {}).get("enabled"))
    api_host = env.get("API_HOST") or (f"https://spin-gate.{namespace}:8084" if ssl else DECK_DEFAULT_API_HOST)
    return {"gateUrl": (security.get("apiSecurity") or {}).get("overrideBaseUrl") or "", "apiHost": str(api_host)}


def _local_profiles(cfg: Halconfig, deployment: str, service: str) -> dict[str, Any]:
    d = cfg.dir / deployment / "profiles"
    merged: dict[str, Any] = {}
    for name in ("spinnaker-local.yml", f"{service}-local.yml"):
        merged = deep_merge(merged, expand_dotted(_yaml_file(d / name)))
    return merged


def _kubernetes_provider(cfg: Halconfig, dep: dict[str, Any]) -> dict[str, Any]:
    k8s = copy.deepcopy(((dep.get("providers") or {}).get("kubernetes")) or {})
    for account in k8s.get("accounts") or []:
        if account.get("serviceAccount"):
            continue
        kc = account.get("kubeconfigFile")
        # KubernetesAccount.getKubeconfigFile: no file given means ~/.kube/config of the user running Halyard
        path = cfg.resolve_file(kc) if kc else cfg.home / ".kube" / "config"
        try:
            text = path.read_text()
        except OSError as exc:
            raise HalFailure(f"Failed to read kubeconfig file '{kc or path}', but validation passed: "
                             f"{exc.strerror or exc}") from None
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise HalFailure(f"Unable to parse kubeconfig file '{kc or path}': {exc}") from None
        if not parsed:
            raise HalFailure(f"Empty kubeconfig file located at: {kc or path}")
        if not account.get("context") and not (isinstance(parsed, dict) and parsed.get("current-context")):
            raise HalFailure(f"No context specified in kubernetes account {account.get('name')} and no "
                             f"'current-context' in {kc or path}")
        account["kubeconfigFile"] = str(path)
    return k8s


def spinnaker_config(cfg: Halconfig, dep: dict[str, Any], services: list[str]) -> SpinnakerConfig:
    """The configuration each of ``services`` starts with after this ``hal deploy apply``."""
    env = dep.get("deploymentEnvironment") or {}
    namespace = env.get("location") or "spinnaker"
    name = dep["name"]
    common = {"services": {"redis": {"baseUrl": redis_base_url(cfg, dep, namespace)}}}
    # Halyard generates every service's profile on each deploy, so clouddriver's kubeconfig checks run even when
    # clouddriver is not among --service-names.
    kubernetes = _kubernetes_provider(cfg, dep)
    generated: dict[str, dict[str, Any]] = {}
    if "front50" in services:
        storage = dep.get("persistentStorage") or {}
        kind = storage.get("persistentStoreType")
        stores = {k: {**(v or {}), "enabled": k == kind} for k, v in storage.items()
                  if k != "persistentStoreType" and isinstance(v, dict)}
        generated["front50"] = {"spinnaker": stores}
    if "echo" in services:
        generated["echo"] = {"pubsub": copy.deepcopy(dep.get("pubsub") or {})}
    if "deck" in services:
        generated["deck"] = {"deck": deck_settings(cfg, dep, namespace)}
    if "clouddriver" in services:
        providers = dep.get("providers") or {}
        generated["clouddriver"] = {"kubernetes": kubernetes,
                                    "dockerRegistry": copy.deepcopy(providers.get("dockerRegistry") or {})}
    out = SpinnakerConfig(namespace=namespace, files_dir=cfg.dir)
    for svc in services:
        props = deep_merge(deep_merge(common, generated.get(svc, {})), _local_profiles(cfg, name, svc))
        out.services[svc] = ServiceConfig(svc, props, service_account(cfg, name, svc) or "default")
    return out
