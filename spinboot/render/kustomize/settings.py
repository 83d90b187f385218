"""The kustomize engine's settings from spinboot.yaml, in one place (the model's fields, issue 12)."""

from __future__ import annotations

from ...config.model import ContainerSizing, Ingress, SpinbootConfig


def engine(cfg: SpinbootConfig) -> str:
    """``spinnaker.engine`` (the model fills an absent one: kustomize from 2026.1.0, halyard before)."""
    return cfg.spinnaker.engine or "halyard"


def redis_url(cfg: SpinbootConfig) -> str | None:
    """An external Redis (e.g. Memorystore) when set; None: spinboot runs Redis in the cluster."""
    return cfg.spinnaker.redis.url


def redis_storage_size(cfg: SpinbootConfig) -> str:
    return cfg.spinnaker.redis.storage_size


def services(cfg: SpinbootConfig) -> list[str]:
    """The services that run, sorted: the eight core ones always, fiat/kayenta/keel when enabled."""
    return sorted(cfg.spinnaker.enabled_services)


def sizing(cfg: SpinbootConfig, service: str) -> ContainerSizing | None:
    """``spinnaker.sizing.<service>``; for clouddriver, ``spinnaker.clouddriver.sizing`` is still honoured."""
    return cfg.spinnaker.sizing_for(service)


def customizations(cfg: SpinbootConfig) -> str | None:
    return cfg.spinnaker.kustomize.customizations


def ingress(cfg: SpinbootConfig) -> Ingress:
    return cfg.spinnaker.exposure.ingress
