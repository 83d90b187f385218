"""The deploy-engine seam: what turns the file into a running Spinnaker.

Halyard is the engine the mission asks for. Upstream deprecated Halyard in 2026.1 (kustomize is the supported
install since), so everything Halyard-specific sits behind this interface and a kustomize engine can be added
beside it, rendering from the same file.
"""

from __future__ import annotations

from typing import Protocol

from ..config.model import SpinbootConfig
from .halscript import render_configure_sh
from .halyard import render_halyard
from .profiles import clouddriver_local, gate_local, service_settings


class DeployEngine(Protocol):
    name: str

    def render(self, cfg: SpinbootConfig) -> dict[str, bytes]:
        """Relative path → file content of everything this engine needs."""


class HalyardEngine:
    name = "halyard"

    def render(self, cfg: SpinbootConfig) -> dict[str, bytes]:
        files = {
            "halconfig/profiles/gate-local.yml": gate_local(cfg),
            "halconfig/profiles/clouddriver-local.yml": clouddriver_local(cfg),
        }
        files.update({f"halconfig/service-settings/{n}": b for n, b in service_settings(cfg).items()})
        files["halconfig/configure.sh"] = render_configure_sh(cfg, files)
        files.update(render_halyard(cfg))
        return files


ENGINES: dict[str, DeployEngine] = {"halyard": HalyardEngine()}
