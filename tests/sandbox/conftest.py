"""Session fixtures for the sandbox: real Kubernetes control planes (see spinboot/sandbox/kube.py).

One cluster is shared by the whole session because starting one costs seconds and ~0.5 GB; tests that need
their own clusters start them and stop them themselves. The first run on a machine compiles the binaries
(minutes; see docs/sandbox.md) -- set SPINBOOT_SANDBOX_SKIP_BUILD=1 to skip these tests instead.
"""

from __future__ import annotations

import os
import sys

import pytest

from spinboot.sandbox import build
from spinboot.sandbox.kube import KubeCluster


def _log(msg: str) -> None:
    print(f"[sandbox] {msg}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def sandbox_binaries() -> dict:
    if os.environ.get("SPINBOOT_SANDBOX_SKIP_BUILD") and build._complete(build.bin_dir()) is None:
        pytest.skip("sandbox binaries not built and SPINBOOT_SANDBOX_SKIP_BUILD is set")
    return build.ensure_binaries(log=_log)


@pytest.fixture(scope="session")
def sandbox_state_dir(tmp_path_factory):
    # Short path: the state dir appears in every process's command line and kubeconfig.
    return tmp_path_factory.mktemp("kube")


@pytest.fixture(scope="session")
def kube_cluster(sandbox_binaries, sandbox_state_dir):
    """A running cluster for the session; stopped at the end even if tests fail (atexit is the backstop)."""
    cluster = KubeCluster("spinboot-test", sandbox_state_dir, log=_log)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def admin_api(kube_cluster):
    from kubernetes import client

    return client.ApiClient(kube_cluster.admin_credentials.configuration())
