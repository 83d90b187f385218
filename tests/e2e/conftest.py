"""A whole sandbox (GKE, Pub/Sub and Storage stand-ins, real control planes) seeded with the example's targets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from spinboot.config import load_config
from spinboot.sandbox.kube import KubeCluster, mutating_requests
from spinboot.sandbox.sandbox import Sandbox

from ..conftest import EXAMPLES


def _log(msg: str) -> None:
    print(f"[sandbox] {msg}", file=sys.stderr, flush=True)


class Live:
    """What the tests look at: the sandbox's own view of Google and Kubernetes, not spinboot's."""

    def __init__(self, sb: Sandbox):
        self.sb = sb

    def clusters(self) -> list[KubeCluster]:
        return [KubeCluster.attach(f.parent.name, self.sb.clusters_dir)
                for f in sorted(self.sb.clusters_dir.glob("*/cluster.json"))]

    def cluster(self, project: str, location: str, name: str) -> KubeCluster:
        return KubeCluster.attach(f"{project}-{location}-{name}", self.sb.clusters_dir)

    def api(self, cluster: KubeCluster):
        from kubernetes import client, config

        return config.new_client_from_config(config_file=str(cluster.admin_kubeconfig_path))

    def mark(self) -> dict:
        """Remember where every counter stands."""
        self.sb.gke.reset_counts()
        self.sb.pubsub.reset_counts()
        self.sb.storage_faults.reset_counts()   # Cloud Storage: counted by the proxy always in front of it
        return {c.name: len(c.audit_events()) for c in self.clusters()}

    def mutations_since(self, mark: dict) -> dict[str, list[str]]:
        """Mutating calls made since ``mark``, counted by the servers: Google methods and Kubernetes requests."""
        out = {"gke": sorted(self.sb.gke.mutating_calls()), "pubsub": sorted(self.sb.pubsub.mutating_calls()),
               "storage": sorted(self.sb.storage_faults.mutating_calls())}
        for c in self.clusters():
            out[c.name] = mutating_requests(c.audit_events()[mark.get(c.name, 0):])
        return out


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    # Every API server and Storage behind a fault proxy: the fault matrix arms them; other tests see them pass
    # everything through (so the whole e2e suite also proves the proxy transparent).
    sb = Sandbox(state_dir=tmp_path_factory.mktemp("sbx"), gke_latency_s=1.0, log=_log, fault_proxies=True)
    sb.up()
    try:
        sb.seed(load_config(EXAMPLES / "spinboot.yaml").config)
        yield sb
    finally:
        sb.down()
        assert sb.leftovers() == [], "the sandbox left processes behind"


@pytest.fixture(scope="session")
def live(sandbox) -> Live:
    return Live(sandbox)


@pytest.fixture
def sandbox_env(sandbox, monkeypatch):
    for k, v in sandbox.environ().items():
        monkeypatch.setenv(k, v)
    return sandbox.environ()


def events(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def variant(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    text = (EXAMPLES / "spinboot.yaml").read_text()
    assert text.count(old) >= count, old
    path = tmp_path / "spinboot.yaml"
    path.write_text(text.replace(old, new, count))
    return path


def apply_example(sb: Sandbox, path: Path | None = None) -> None:
    """``spinboot apply --yes`` of the example (or ``path``) in this process, with the sandbox's environment; a
    second call on a converged sandbox is a no-op apply (seconds)."""
    import os

    from typer.testing import CliRunner

    from spinboot.cli.main import app

    env = sb.environ()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        r = CliRunner().invoke(app, ["apply", "-c", str(path or EXAMPLES / "spinboot.yaml"), "--yes"],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)

