"""The whole local sandbox behind one object: ``with Sandbox() as sb: ...`` or ``spinboot sandbox up``.

What runs, all on 127.0.0.1:
- a GKE API server (``google.container.v1.ClusterManager`` plus IAM Admin and Resource Manager Projects); every
  cluster created through it is backed by a real Kubernetes control plane (``gkebacking``);
- Google's Pub/Sub server ``pstest`` with an IAMPolicy service;
- a Cloud Storage emulator (``gcp-storage-emulator`` from PyPI, which keeps bucket policies) behind a proxy
  (``faultproxy``) that enforces Cloud Storage IAM for Spinnaker's identity; clients are pointed at the proxy;
- with ``fault_proxies`` (or $SPINBOOT_SANDBOX_FAULT_PROXIES=1): a fault-injecting proxy in front of every
  Kubernetes API server (Storage's proxy takes faults too, always);
- for a seed file: the target GKE clusters it names, with their application namespaces, as they would exist
  before spinboot runs.

``endpoints.json`` in the state directory (mode 0600: it holds the sandbox's access token) is what
``spinboot ... --sandbox`` reads.

Identities (docs/sandbox.md, docs/dev/spinnaker-side-interfaces.md): spinboot is the operator, allowed everything.
Spinnaker's pods get Workload Identity tokens from the GKE stand-in's metadata server (``identity``); the Google
stand-ins verify them with the sandbox's token ($SPINBOOT_SANDBOX_TOKEN) and evaluate IAM from the policies spinboot
set and the role table halconfig/iam-roles.yaml, written as ``iam-roles.json`` ($SPINBOOT_SANDBOX_IAM_ROLES).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from . import build as kube_build
from . import gcp as gcp_emulators
from . import gkebacking, kube
from .faultproxy import FaultProxy
from .paths import endpoints_file, state_dir as default_state_dir

ROLES_ENV = "SPINBOOT_SANDBOX_IAM_ROLES"
TOKEN_ENV = "SPINBOOT_SANDBOX_TOKEN"
ENDPOINTS_ENV = "SPINBOOT_SANDBOX_ENDPOINTS"
IAM_PROPAGATION_ENV = "SPINBOOT_SANDBOX_IAM_PROPAGATION"  # seconds; default DEFAULT_IAM_PROPAGATION_S
DEFAULT_IAM_PROPAGATION_S = 3.0


def write_roles(path: Path) -> Path:
    """The role table (halconfig/iam-roles.yaml) as the JSON the Go stand-ins load (sandboxsrv.LoadRoles):
    ``{"roles": {"roles/x": {"permissions": [...]}}}``."""
    import yaml

    from ..resources import data_path

    doc = yaml.safe_load(data_path("halconfig", "iam-roles.yaml").read_text())
    roles = {name: {"permissions": sorted(set(r.get("permissions") or []))} for name, r in doc["roles"].items()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"roles": roles}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StorageEmulator:
    """gcp-storage-emulator (a real GCS JSON API emulator from PyPI) in its own session."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.pid_path = state_dir / "storage.pid"
        self.log_path = state_dir / "storage.log"
        self.url = ""
        self.proc: subprocess.Popen | None = None

    def start(self, detach: bool = False, timeout: float = 30) -> "StorageEmulator":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.stop()
        port = _free_port()
        if importlib.util.find_spec("gcp_storage_emulator") is None:
            raise RuntimeError("gcp-storage-emulator is not installed (pip install 'spinboot[sandbox]')")
        with self.log_path.open("ab") as log:
            # spinboot.sandbox.storage_emulator: the emulator with Cloud Storage's bucket-insert semantics.
            proc = subprocess.Popen([sys.executable, "-m", "spinboot.sandbox.storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.proc = proc
        self.pid_path.write_text(str(proc.pid))
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return self
            if proc.poll() is not None:
                raise RuntimeError(f"storage emulator exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        raise TimeoutError("storage emulator not listening after 30 s")

    def stop(self) -> None:
        try:
            pid = int(self.pid_path.read_text())
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                if self.proc is not None and self.proc.pid == pid and self.proc.poll() is not None:
                    break  # our own child has exited (a zombie would still answer kill 0)
                os.kill(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)


class SpinnakerController:
    """Spinnaker's side for the kustomize engine (spinboot/sandbox/spinnaker/controller.py): plays each service's
    startup when its pod starts, in every sandbox cluster. Its own session, like the other servers."""

    def __init__(self, state_dir: Path, clusters_dir: Path, endpoints: Path):
        self.state_dir, self.clusters_dir, self.endpoints = state_dir, clusters_dir, endpoints
        self.pid_path = state_dir / "controller.pid"
        self.log_path = state_dir / "controller.log"
        self.proc: subprocess.Popen | None = None

    def start(self, detach: bool = False) -> "SpinnakerController":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self.stop()
        env = {**os.environ, "PYTHONPATH": _source_root()}
        env.pop("KUBECONFIG", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "spinboot.sandbox.spinnaker.controller", "--clusters-dir",
                 str(self.clusters_dir), "--endpoints", str(self.endpoints)]
                + ([] if detach else ["--parent-pid", str(os.getpid())]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        self.pid_path.write_text(str(self.proc.pid))
        return self

    def stop(self) -> None:
        try:
            pid = int(self.pid_path.read_text())
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
            for _ in range(30):
                if self.proc is not None and self.proc.pid == pid and self.proc.poll() is not None:
                    break
                os.kill(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.proc.wait(5)
        self.pid_path.unlink(missing_ok=True)


class Sandbox:
    def __init__(self, state_dir: str | os.PathLike | None = None, gke_latency_s: float = 2.0,
                 log: Callable[[str], None] = lambda m: None, detach: bool = False,
                 fault_proxies: bool | None = None, iam_propagation_s: float | None = None):
        self.dir = Path(state_dir or default_state_dir()).absolute()
        self.clusters_dir = self.dir / "clusters"
        self.log = log
        self.detach = detach
        self.gke_latency_s = gke_latency_s
        # A new Google service account is refused in IAM policies for this long, as on GCP (docs/sandbox.md).
        self.iam_propagation_s = (float(os.environ.get(IAM_PROPAGATION_ENV, DEFAULT_IAM_PROPAGATION_S))
                                  if iam_propagation_s is None else iam_propagation_s)
        self.token = ""
        self.pubsub: gcp_emulators.PubSubEmulator | None = None
        self.gke: gcp_emulators.GkeEmulator | None = None
        self.storage = StorageEmulator(self.dir / "storage")
        # Fault-injecting proxies in front of every Kubernetes API server (docs/sandbox.md). None: as
        # $SPINBOOT_SANDBOX_FAULT_PROXIES says. The clusters learn it from that variable, set for the GKE
        # stand-in and so for the gkebacking commands it runs. Storage always has its proxy (it enforces IAM).
        self.fault_proxies = kube.fault_proxies_enabled() if fault_proxies is None else fault_proxies
        self.storage_proxy: FaultProxy | None = None
        self.controller = SpinnakerController(self.dir / "spinnaker-controller", self.clusters_dir,
                                              self.dir / "endpoints.json")

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def build(self) -> None:
        """Build (or find cached) every binary; the two builds run side by side."""
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(kube_build.ensure_binaries, log=self.log),
                       pool.submit(gcp_emulators.ensure_binaries, log=self.log)]
            for f in futures:
                f.result()

    def up(self) -> "Sandbox":
        self.down()
        shutil.rmtree(self.clusters_dir, ignore_errors=True)  # a new sandbox starts from nothing
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.build()
        self.token = secrets.token_urlsafe(32)
        extra = ["--exit-with-parent=false"] if self.detach else []
        # Every Google stand-in verifies identity tokens with the sandbox token and evaluates IAM with the table.
        iam_env = {TOKEN_ENV: self.token, ROLES_ENV: str(write_roles(self.dir / "iam-roles.json"))}
        self.pubsub = gcp_emulators.PubSubEmulator(self.dir / "pubsub", extra_args=extra, env=iam_env)
        backing = [sys.executable, "-m", "spinboot.sandbox.gkebacking"]
        self.gke = gcp_emulators.GkeEmulator(
            self.dir / "gke", latency_s=self.gke_latency_s, iam_propagation_s=self.iam_propagation_s, extra_args=extra,
            provision_cmd=backing + ["create", "--state-dir", str(self.clusters_dir)],
            deprovision_cmd=backing + ["delete", "--state-dir", str(self.clusters_dir)],
            nodes_cmd=backing + ["nodes", "--state-dir", str(self.clusters_dir)],
            env={**iam_env, "PYTHONPATH": _source_root(), ENDPOINTS_ENV: str(self.endpoints_path),
                 kube.FAULT_PROXIES_ENV: "1" if self.fault_proxies else ""})
        try:
            self.pubsub.start()
            self.storage.start()
            # Always in front of Storage: the emulator keeps bucket policies but enforces none. Faults only
            # when a test sets them.
            self.storage_proxy = FaultProxy(
                self.dir / "storage-proxy", upstream=self.storage.url, error_style="google", iam_gate="storage",
                extra_args=extra, env=iam_env)
            self.storage_proxy.start()
            # The GKE stand-in reads Pub/Sub and bucket policies for TroubleshootIamPolicy and publishes registry
            # pushes, as Google does internally: straight to the emulators, past the Storage proxy's faults.
            self.gke.env.update(PUBSUB_EMULATOR_HOST=self.pubsub.address, STORAGE_EMULATOR_HOST=self.storage.url)
            self.gke.start()
        except BaseException:
            self.down()
            raise
        if self.detach:
            for server in (self.pubsub, self.gke, self.storage_proxy):
                with contextlib.suppress(Exception):
                    import atexit

                    atexit.unregister(server.stop)
        self._write_endpoints()
        # Spinnaker's side for the kustomize engine; the hal stand-in plays it for the Halyard engine.
        self.controller.start(self.detach)
        self.log(f"sandbox up in {self.dir}")
        return self

    def down(self) -> None:
        """Stop everything this state directory knows about, even what a killed run left behind."""
        self.controller.stop()
        proxy = self.storage_proxy or FaultProxy(self.dir / "storage-proxy", upstream="")
        with contextlib.suppress(Exception):
            proxy._reap_stale() if proxy.proc is None else proxy.stop()
        for name, cls in (("gke", gcp_emulators.GkeEmulator), ("pubsub", gcp_emulators.PubSubEmulator)):
            server = getattr(self, name) or cls(self.dir / name)
            with contextlib.suppress(Exception):
                server._reap_stale() if server.proc is None else server.stop()
        self.storage.stop()
        if self.clusters_dir.is_dir():
            for f in sorted(self.clusters_dir.glob("*/cluster.json")):
                with contextlib.suppress(kube.ClusterError):
                    kube.KubeCluster.attach(f.parent.name, self.clusters_dir).stop()
        endpoints = self.dir / "endpoints.json"
        endpoints.unlink(missing_ok=True)

    def __enter__(self) -> "Sandbox":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # --- what clients need --------------------------------------------------------------------------------------

    def endpoints(self) -> dict:
        ep = {"gke": self.gke.address, "gke_admin": self.gke.admin_url, "pubsub": self.pubsub.address,
              "pubsub_admin": self.pubsub.admin_url, "storage": self.storage_url, "token": self.token,
              "state_dir": str(self.dir), "clusters_dir": str(self.clusters_dir)}
        if self.storage_proxy:
            ep["storage_admin"] = self.storage_proxy.admin_url  # the Storage proxy's faults and counters
        # The Docker Registry v2 stand-in (Artifact Registry): clients send the registry's host as Host.
        ep["registry"] = self.gke.registry_url()
        return ep

    def _write_endpoints(self) -> None:
        path = self.dir / "endpoints.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.endpoints(), f, indent=2)

    @property
    def endpoints_path(self) -> Path:
        return self.dir / "endpoints.json"

    def environ(self) -> dict[str, str]:
        """Environment for spinboot and the Google clients to use this sandbox."""
        return {"SPINBOOT_SANDBOX": str(self.endpoints_path), "PUBSUB_EMULATOR_HOST": self.pubsub.address,
                "STORAGE_EMULATOR_HOST": self.storage_url}

    @property
    def storage_url(self) -> str:
        """Where clients reach Storage: through its proxy (always there once up)."""
        return self.storage_proxy.url if self.storage_proxy else self.storage.url

    @property
    def storage_faults(self) -> FaultProxy | None:
        """The Storage proxy (``set_faults``, ``counts``...); None before ``up``."""
        return self.storage_proxy

    def cluster_faults(self, project: str, location: str, cluster: str):
        """The fault proxy in front of a GKE cluster's API server (``faultproxy.ProxyAdmin``), or None."""
        return kube.KubeCluster.attach(f"{project}-{location}-{cluster}", self.clusters_dir).fault_proxy

    # --- status ----------------------------------------------------------------------------------------------------

    def status(self) -> dict:
        path = self.dir / "endpoints.json"
        running = path.is_file()
        info: dict = {"running": running, "state_dir": str(self.dir), "clusters": []}
        if running:
            ep = json.loads(path.read_text())
            info["endpoints"] = {k: v for k, v in ep.items() if k != "token"}
        for f in sorted(self.clusters_dir.glob("*/cluster.json")) if self.clusters_dir.is_dir() else []:
            with contextlib.suppress(kube.ClusterError):
                c = kube.KubeCluster.attach(f.parent.name, self.clusters_dir)
                alive = c.alive_pids()
                entry = {"name": c.name, "up": bool(alive), "endpoint": c.endpoint if alive else "",
                         "admin_kubeconfig": str(c.admin_kubeconfig_path)}
                if alive and c.fault_proxy:  # what spinboot is handed, and where its faults are set
                    entry["fault_proxy"] = {"url": c.fault_proxy.url, "admin": c.fault_proxy.admin_url}
                info["clusters"].append(entry)
        return info

    def leftovers(self) -> list[int]:
        """PIDs of sandbox processes still alive under this state directory."""
        pids: list[int] = []
        for f in sorted(self.clusters_dir.glob("*/cluster.json")) if self.clusters_dir.is_dir() else []:
            with contextlib.suppress(kube.ClusterError):
                pids += kube.KubeCluster.attach(f.parent.name, self.clusters_dir).alive_pids()
        for pid_file in list(self.dir.glob("*/*.pid")):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().strip())
                os.kill(pid, 0)
                pids.append(pid)
        return sorted(set(pids))

    # --- the world before spinboot ---------------------------------------------------------------------------------

    def seed(self, cfg) -> list[str]:
        """Create what the file expects to exist before spinboot runs: the target GKE clusters with their
        namespaces, and the Artifact Registry repositories its registries list, each image with a tag (teams push
        to them; spinboot only reads). Returns the target names."""
        self._seed_registries(cfg)
        from google.cloud import container_v1

        from ..gcp.gke import wait_operation

        cm = self.gke.cluster_manager()
        made = []
        for t in cfg.targets:
            if not t.gke:
                continue
            parent = f"projects/{t.gke.project}/locations/{t.gke.location}"
            cluster = container_v1.Cluster(
                name=t.gke.cluster, workload_identity_config={"workload_pool": f"{t.gke.project}.svc.id.goog"},
                node_pools=[container_v1.NodePool(name="default-pool", initial_node_count=1,
                                                  config={"machine_type": "e2-standard-4"})])
            made.append((t, cm.create_cluster(parent=parent, cluster=cluster)))
        for t, op in made:  # created side by side, waited for in turn
            wait_operation(cm, t.gke.project, t.gke.location, op, f"seed cluster {t.gke.cluster}", timeout=600)
        for t, _ in made:
            self._create_namespaces(t, cm)
        return [t.name for t, _ in made]

    SEED_TAG = "1.0.0"

    def _seed_registries(self, cfg) -> None:
        from google.api_core import exceptions

        from ..config import names
        from ..gcp.retry import RETRY

        ar = self.gke.artifact_registry()
        for r in cfg.registries:
            if not names.is_google_registry(r.address):
                continue
            for path in r.repositories:
                repo, problem = names.artifact_registry_repository(r.address, path)
                if problem:
                    continue
                parent, repo_id = repo.rsplit("/repositories/", 1)
                try:
                    ar.create_repository(request={"parent": parent, "repository_id": repo_id,
                                                  "repository": {"format_": "DOCKER"}}, retry=RETRY).result(60)
                except exceptions.AlreadyExists:
                    pass
                self.gke.push_image(r.address, path, self.SEED_TAG)

    def admin_kubeconfig(self, project: str, location: str, cluster: str) -> Path:
        return self.clusters_dir / f"{project}-{location}-{cluster}" / "admin.kubeconfig"

    def _create_namespaces(self, t, cm) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(
            config_file=str(self.admin_kubeconfig(t.gke.project, t.gke.location, t.gke.cluster)))
        core = client.CoreV1Api(api)
        for ns in t.namespaces:
            try:
                core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            except client.exceptions.ApiException as exc:
                if exc.status != 409:
                    raise


def _source_root() -> str:
    return str(Path(__file__).resolve().parents[2])
