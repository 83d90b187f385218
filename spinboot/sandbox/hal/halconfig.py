"""The stand-in's halconfig: ``$HOME/.hal/config`` as YAML, shaped like real Halyard's.

Halyard keeps one file with ``currentDeployment`` and a list of ``deploymentConfigurations``; each command path
under ``hal config`` designates a node in it (``hal config provider kubernetes`` is
``providers.kubernetes``) and each flag a key, named by the camelCase of the flag (Halyard's convention; see
commands.md and https://spinnaker.io/docs/reference/halyard/). The few exceptions are in the tables below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

# Command words whose halconfig key is not their camelCase.
SEGMENT_KEYS = {
    "provider": "providers",
    "artifact": "artifacts",
    "storage": "persistentStorage",
    "deploy": "deploymentEnvironment",
    "component-sizing": "customSizing",
    "ha": "haServices",
    "ui": "uiSecurity",
    "api": "apiSecurity",
    "notification": "notifications",
    "metric-stores": "metricStores",
    "bakery": "bakeryDefaults",
}
# Command words that name a list of named items (the command's positional argument is the item's name).
COLLECTIONS = {
    "account": "accounts",
    "subscription": "subscriptions",
    "master": "masters",
    "search": "searches",
    "base-image": "baseImages",
    "cluster": "clusters",
    "templates": "templates",
}
# Flags that every command has and that are not configuration.
META_FLAGS = {"--deployment", "--no-validate"}
# (command path, flag) -> key path, where Halyard does not follow the camelCase rule.
FLAG_KEYS = {
    ("hal config storage edit", "--type"): ("persistentStoreType",),
    ("hal config deploy edit", "--consul-address"): ("consul", "address"),
    ("hal config deploy edit", "--consul-enabled"): ("consul", "enabled"),
    ("hal config deploy edit", "--vault-address"): ("vault", "address"),
    ("hal config deploy edit", "--vault-enabled"): ("vault", "enabled"),
    ("hal config deploy edit", "--git-origin-user"): ("gitConfig", "originUser"),
    ("hal config deploy edit", "--git-upstream-user"): ("gitConfig", "upstreamUser"),
    ("hal config deploy edit", "--liveness-probe-enabled"): ("livenessProbeConfig", "enabled"),
    ("hal config deploy edit", "--liveness-probe-initial-delay-seconds"): ("livenessProbeConfig",
                                                                           "initialDelaySeconds"),
}
ACCOUNT_NAME = r"^[a-z0-9]+([-a-z0-9_]*[a-z0-9])?$"   # Halyard's AccountValidator pattern


def default_deployment(name: str = "default") -> dict[str, Any]:
    """A new deployment as Halyard creates it (the parts spinboot touches; other nodes appear on first edit)."""
    return {
        "name": name,
        "version": "",
        "providers": {
            "kubernetes": {"enabled": False, "accounts": [], "primaryAccount": None},
            "dockerRegistry": {"enabled": False, "accounts": [], "primaryAccount": None},
            "google": {"enabled": False, "accounts": [], "primaryAccount": None},
        },
        "deploymentEnvironment": {
            "size": "SMALL", "type": "LocalDebian", "imageVariant": "SLIM", "updateVersions": True,
            "consul": {"enabled": False}, "vault": {"enabled": False}, "customSizing": {},
            "gitConfig": {"upstreamUser": "spinnaker"}, "livenessProbeConfig": {"enabled": False},
        },
        "persistentStorage": {"persistentStoreType": None, "gcs": {"rootFolder": "front50"},
                              "s3": {"rootFolder": "front50"}, "redis": {}},
        "features": {"auth": False, "fiat": False, "chaos": False, "entityTags": False},
        "timezone": "America/Los_Angeles",
        "security": {
            "apiSecurity": {"ssl": {"enabled": False}, "overrideBaseUrl": None},
            "uiSecurity": {"ssl": {"enabled": False}, "overrideBaseUrl": None},
            "authn": {"enabled": False}, "authz": {"enabled": False},
        },
        "artifacts": {"gcs": {"enabled": False, "accounts": []}, "github": {"enabled": False, "accounts": []},
                      "http": {"enabled": False, "accounts": []}},
        "pubsub": {"enabled": False, "google": {"enabled": False, "pubsubType": "GOOGLE",
                                                "subscriptions": [], "publishers": []}},
        "webhook": {"trust": {"enabled": False}},
    }


class HalFailure(Exception):
    """A failure hal reports as ``! ERROR ...`` with exit code 1 (a daemon-side problem, not a parse error)."""


class Halconfig:
    """Load/save ``$HOME/.hal/config``."""

    def __init__(self, home: Path | str | None = None):
        self.home = Path(home or os.environ.get("HOME") or Path.home())
        self.dir = self.home / ".hal"
        self.file = self.dir / "config"
        self.data = self._load()

    def _load(self) -> dict[str, Any]:
        if self.file.exists():
            data = yaml.safe_load(self.file.read_text()) or {}
            if data.get("deploymentConfigurations"):
                return data
        return {"halyardVersion": "2026.2", "currentDeployment": "default",
                "deploymentConfigurations": [default_deployment()]}

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.data, sort_keys=False, default_flow_style=False))
        os.replace(tmp, self.file)

    def deployment(self, name: str | None = None) -> dict[str, Any]:
        name = name or self.data.get("currentDeployment") or "default"
        for d in self.data["deploymentConfigurations"]:
            if d.get("name") == name:
                return d
        raise HalFailure(f'Deployment "{name}" not found.')

    def resolve_file(self, value: str | None) -> Path | None:
        """A file path from the config; relative paths are relative to ~/.hal (how Halyard restores backups)."""
        if not value:
            return None
        p = Path(value)
        return p if p.is_absolute() else self.dir / p


def node(root: dict[str, Any], keys: list[str] | tuple[str, ...], create: bool = True) -> dict[str, Any]:
    cur = root
    for k in keys:
        nxt = cur.get(k)
        if not isinstance(nxt, dict):
            if not create:
                raise KeyError(k)
            nxt = {}
            cur[k] = nxt
        cur = nxt
    return cur


def segment_key(word: str) -> str:
    if word in SEGMENT_KEYS:
        return SEGMENT_KEYS[word]
    parts = word.split("-")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
