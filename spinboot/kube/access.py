"""Reaching a Kubernetes API server.

A GKE cluster is reached with its endpoint, its CA certificate and a Google access token, as GKE's own clients do
(https://cloud.google.com/kubernetes-engine/docs/how-to/api-server-authentication): no gcloud and no kubeconfig
file are needed. A non-GKE target is reached through a kubeconfig path and context.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kubernetes import client, config as kconfig

_private_dir: Path | None = None
_lock = threading.Lock()


def private_dir() -> Path:
    """A 0700 directory for this process's CA files; removed at exit."""
    global _private_dir
    with _lock:
        if _private_dir is None:
            _private_dir = Path(tempfile.mkdtemp(prefix="spinboot-"))
            os.chmod(_private_dir, 0o700)
            atexit.register(shutil.rmtree, _private_dir, True)
        return _private_dir


def _ca_file(ca_pem: str) -> str:
    import hashlib

    path = private_dir() / (hashlib.sha256(ca_pem.encode()).hexdigest()[:16] + ".crt")
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(ca_pem)
    return str(path)


@dataclass
class Cluster:
    """How to reach one cluster, and what to call it in messages."""

    name: str                     # e.g. the target name, or "spinnaker"
    endpoint: str                 # https://host[:port]
    ca_pem: str
    token: Callable[[], str] | None = None        # bearer token source (GKE: a Google access token)
    kubeconfig: tuple[str, str] | None = None      # (path, context) for non-GKE clusters

    def api_client(self) -> client.ApiClient:
        if self.kubeconfig:
            path, context = self.kubeconfig
            return kconfig.new_client_from_config(config_file=os.path.expanduser(path), context=context)
        cfg = client.Configuration()
        cfg.host = self.endpoint
        cfg.ssl_ca_cert = _ca_file(self.ca_pem)
        cfg.verify_ssl = True
        token_fn = self.token
        if token_fn is not None:
            cfg.api_key = {"authorization": token_fn()}
            cfg.api_key_prefix = {"authorization": "Bearer"}

            def refresh(c: client.Configuration) -> None:  # tokens expire within the hour; fetch per request
                c.api_key = {"authorization": token_fn()}

            cfg.refresh_api_key_hook = refresh
        cfg.retries = 0  # retries are ours (spinboot.kube.retry), with backoff and a deadline
        return client.ApiClient(cfg)


class AccessError(Exception):
    pass


def from_kubeconfig(name: str, path: str, context: str) -> Cluster:
    """A cluster reached through a kubeconfig; its endpoint and CA are read for messages and minting."""
    try:
        api = kconfig.new_client_from_config(config_file=os.path.expanduser(path), context=context)
    except (kconfig.ConfigException, OSError) as exc:
        raise AccessError(f"target {name}: cannot use kubeconfig {path} context {context}: {exc}") from None
    cfg = api.configuration
    ca_pem = Path(cfg.ssl_ca_cert).read_text() if cfg.ssl_ca_cert else ""
    return Cluster(name=name, endpoint=cfg.host, ca_pem=ca_pem, kubeconfig=(path, context))
