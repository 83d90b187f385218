"""The input of the startup play: each service's configuration as the service itself receives it.

Engine-independent on purpose. Halyard renders, per service, ``spinnaker.yml``, ``<service>.yml`` and the
operator's ``<service>-local.yml`` and mounts them into the pod, and runs the pod as the Kubernetes service account
of ``service-settings/<service>.yml`` ``kubernetes.serviceAccountName``; a kustomize install ships the same files
(spinnaker/spinnaker-kustomize). Both reduce to :class:`ServiceConfig`: the Spring properties the service reads
(later files override earlier ones, as Spring profiles do) and the service account its pods run as. The Halyard
adapter is spinboot/sandbox/hal/profiles.py.

Property paths the play reads (each from the upstream code that reads it):
- front50: ``spinnaker.gcs.{enabled,bucket,rootFolder,project,bucketLocation,jsonPath}`` (front50-gcs GcsProperties,
  written by halyard Front50ProfileFactory from ``persistentStorage.gcs``);
- echo: ``pubsub.enabled``, ``pubsub.google.{enabled,subscriptions[]}`` (echo-pubsub-google GooglePubsubProperties,
  written by halyard EchoProfileFactory from ``pubsub``), ``redis.enabled`` and ``services.redis.baseUrl`` (kork-jedis,
  and halyard SpinnakerProfileFactory's service endpoints);
- clouddriver: ``kubernetes.{enabled,accounts[]}`` and ``dockerRegistry.{enabled,accounts[]}`` (clouddriver
  KubernetesConfigurationProperties / DockerRegistryConfigurationProperties, written by halyard
  ClouddriverProfileFactory from ``providers``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ServiceConfig:
    name: str                                   # "front50" (its Deployment is spin-front50)
    properties: dict[str, Any] = field(default_factory=dict)
    service_account: str = "default"            # the Kubernetes service account its pods run as

    def get(self, dotted: str, default: Any = None) -> Any:
        cur: Any = self.properties
        for part in dotted.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return default
            cur = cur[part]
        return cur


@dataclass
class SpinnakerConfig:
    namespace: str
    services: dict[str, ServiceConfig] = field(default_factory=dict)
    # Where relative file paths in the properties (kubeconfigs, password files) are resolved.
    files_dir: Path | None = None

    def service(self, name: str) -> ServiceConfig | None:
        return self.services.get(name)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Spring's view of two property sources: ``over`` wins key by key; maps merge, lists and scalars replace."""
    out = dict(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def expand_dotted(props: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (Spring treats both forms alike), recursively."""
    out: dict[str, Any] = {}
    for k, v in (props or {}).items():
        v = expand_dotted(v) if isinstance(v, dict) else v
        parts = str(k).split(".")
        nested: Any = v
        for p in reversed(parts[1:]):
            nested = {p: nested}
        out = deep_merge(out, {parts[0]: nested})
    return out
