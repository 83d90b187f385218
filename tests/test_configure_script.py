"""Run the rendered configure.sh against the hal stand-in (which accepts exactly what real hal accepts):
re-runs are safe, items the file drops are deleted, items added by hand stay, a failing line is named.

`hal deploy apply`, the script's last line, needs a cluster; here there is none, so the run stops there, which
also shows how a failure is reported. The sandbox's end-to-end tests run the whole script.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from spinboot.config import load_config, load_config_bytes
from spinboot.render import render_all
from spinboot.sandbox.hal import launcher_dir
from spinboot.sandbox.hal.testing import fake_google

from .conftest import EXAMPLES


def run_script(home: Path, files: dict[str, bytes]) -> subprocess.CompletedProcess:
    bundle = home / "bundle"
    for rel, body in files.items():
        if rel.startswith("halconfig/"):
            path = bundle / rel.removeprefix("halconfig/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
    kubeconfigs = home / ".hal/spinboot/kubeconfigs"
    kubeconfigs.mkdir(parents=True, exist_ok=True)
    for name in ("platform", "platform-lab"):
        (kubeconfigs / f"{name}.kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    env = {"HOME": str(home), "PATH": f"{launcher_dir()}:{os.environ['PATH']}", "SPINBOOT_HAL_PYTHON": sys.executable,
           "KUBECONFIG": str(home / "no-cluster")}
    # Halyard validates the registry account by running its password command and reading tags: a metadata server
    # and a registry for it to reach (the sandbox's e2e tests use the real stand-ins).
    with fake_google(home) as google:
        return subprocess.run(["bash", str(bundle / "configure.sh")], env={**env, **google}, capture_output=True,
                              text=True, timeout=300)


def halconfig(home: Path) -> dict:
    return yaml.safe_load((home / ".hal/config").read_text())["deploymentConfigurations"][0]


def hal(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "SPINBOOT_HAL_PYTHON": sys.executable}
    return subprocess.run([str(launcher_dir() / "hal"), *args], env=env, capture_output=True, text=True)


def names(items) -> list[str]:
    return sorted(i["name"] for i in items)


def test_configure_sh_configures_reruns_and_prunes(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    first = run_script(home, render_all(load_config(EXAMPLES / "spinboot.yaml").config))
    # Everything but the last line ran; the failing line is named.
    assert first.returncode != 0
    assert "configure.sh failed at line" in first.stderr and "hal deploy apply" in first.stderr
    cfg = halconfig(home)
    assert cfg["version"] == "2026.2.3"
    k8s = cfg["providers"]["kubernetes"]
    assert names(k8s["accounts"]) == ["platform", "platform-lab", "spinnaker-install"]
    platform = next(a for a in k8s["accounts"] if a["name"] == "platform")
    assert platform["namespaces"] == ["prod", "dev"]
    assert platform["kubeconfigFile"] == str(home / ".hal/spinboot/kubeconfigs/platform.kubeconfig")
    subs = cfg["pubsub"]["google"]["subscriptions"]
    assert subs[0]["subscriptionName"] == "spinnaker-gcr" and subs[0]["messageFormat"] == "GCR"
    assert cfg["deploymentEnvironment"]["accountName"] == "spinnaker-install"
    assert (home / ".hal/default/profiles/gate-local.yml").is_file()

    # An operator adds an account by hand; spinboot must leave it alone.
    assert hal(home, "config", "provider", "kubernetes", "account", "add", "manual", "--no-validate").returncode == 0

    # Same file again: same halconfig.
    before = (home / ".hal/config").read_text()
    again = run_script(home, render_all(load_config(EXAMPLES / "spinboot.yaml").config))
    assert "hal deploy apply" in again.stderr
    assert (home / ".hal/config").read_text() == before

    # The file drops platform-lab and changes platform's namespaces.
    text = (EXAMPLES / "spinboot.yaml").read_text()
    text = text.replace("""  - name: platform-lab
    gke: {project: acme-platform, location: us-central1, cluster: platform-lab}
    namespaces: [prod, dev]
""", "").replace("namespaces: [prod, dev]", "namespaces: [prod]")
    third = run_script(home, render_all(load_config_bytes(text.encode(), "f").config))
    assert "removing kubernetes-account platform-lab" in third.stdout
    # Its credential leaves ~/.hal with it; the current target's stays.
    assert not (home / ".hal/spinboot/kubeconfigs/platform-lab.kubeconfig").exists()
    assert (home / ".hal/spinboot/kubeconfigs/platform.kubeconfig").exists()
    cfg = halconfig(home)
    assert names(cfg["providers"]["kubernetes"]["accounts"]) == ["manual", "platform", "spinnaker-install"]
    platform = next(a for a in cfg["providers"]["kubernetes"]["accounts"] if a["name"] == "platform")
    assert platform["namespaces"] == ["prod"]
