"""Local Kubernetes control planes for the sandbox: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, all real upstream binaries (see ``build.py``) on 127.0.0.1.

Why these pieces: spinboot's Kubernetes code must meet real API semantics (RBAC denials, the token
controller filling ``kubernetes.io/service-account-token`` Secrets, the scheduler binding pods), and the
Halyard step needs ``kubectl exec`` into a pod. kwok supplies fake nodes whose pods reach Running without
containers, and its kubelet-like server answers ``exec`` by running a *local* process chosen through its
``ClusterExec`` custom resources (``add_exec``).

Per cluster, under ``<state_dir>/<name>/``::

    pki/                 CA, serving and client certs/keys (keys and kubeconfigs are 0600)
    logs/<proc>.log      one log per process
    etcd-data/           etcd's store (fsync off: the sandbox is throw-away)
    admin.kubeconfig     client cert in group system:masters
    cluster.json         ports, PIDs (with process start times, so a later ``down`` never kills a recycled PID)

Processes run in their own sessions (process groups) so a Ctrl-C in a terminal does not hit them
half-way; instead this module stops every cluster it started (and did not detach) from an ``atexit`` hook,
and turns SIGTERM/SIGHUP into a normal interpreter exit so that hook runs. ``down`` reaps whatever a killed
parent left behind, using ``cluster.json``.

kwok's exec exit codes: kwok wraps the local command's error, so the streaming server reports a non-zero exit
as an ``InternalError`` status ("... exit status 3") instead of the ``NonZeroExitCode`` cause a kubelet
sends; ``exec_exit_code``/``exec_in_pod`` read both forms.
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from spinboot.sandbox import build

Log = Callable[[str], None]

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # first IP of SERVICE_CIDR: the in-cluster "kubernetes" Service
POD_CIDR = "10.244.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
NODE_COUNT = 2
FAULT_PROXIES_ENV = "SPINBOOT_SANDBOX_FAULT_PROXIES"  # "1": every cluster gets a fault proxy (see KubeCluster)
ADMIN_USER = "spinboot-sandbox-admin"  # the user the admin bearer token (spinboot's "Google token") is
# Verbs that change state. SubjectAccessReviews and TokenReviews are "create" but persist nothing: they are
# questions, so counting tools leave them out (see mutating_requests).
MUTATING_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
REVIEW_RESOURCES = {"subjectaccessreviews", "selfsubjectaccessreviews", "tokenreviews", "localsubjectaccessreviews"}
# Fake nodes advertise far more than the sandbox has: nothing runs, and Spinnaker's requests must fit.
NODE_RESOURCES = {"cpu": "64", "memory": "512Gi", "pods": "250", "ephemeral-storage": "1Ti"}
PROCS = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
STOP_PHASES = (("fault-proxy", "kwok", "kube-scheduler", "kube-controller-manager"), ("kube-apiserver",), ("etcd",))
STOP_GRACE = 10.0


def fault_proxies_enabled() -> bool:
    """Whether $SPINBOOT_SANDBOX_FAULT_PROXIES asks for a fault proxy in front of every sandbox API server."""
    return os.environ.get(FAULT_PROXIES_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def _noop(_: str) -> None:
    pass


# --------------------------------------------------------------------------------------------------
# PKI
# --------------------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes | str) -> None:
    """Create a file readable only by us: keys, tokens and kubeconfigs are cluster-admin material."""
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


class _PKI:
    """A per-cluster CA and the certificates signed by it, generated with ``cryptography``.

    EC P-256 keys keep generation fast (a cluster needs eight); every Kubernetes component and Python's
    ssl accept them.
    """

    def __init__(self, directory: Path, cluster: str):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes, self._ser, self._ec, self._oid = x509, hashes, serialization, ec, NameOID
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"spinboot-sandbox-{cluster}-ca")])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now)
            .not_valid_after(self.now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(ski, critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_pem = self.ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        (self.dir / "ca.crt").write_text(self.ca_pem)
        _write_private(self.dir / "ca.key", self._key_pem(self.ca_key))

    def _key_pem(self, key) -> bytes:
        s = self._ser
        return key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())

    def key_pair(self, stem: str) -> tuple[Path, Path]:
        """A bare key pair (the service-account signing key): ``<stem>.key`` in the "EC PRIVATE KEY" form
        (kube's key loader does not take PKCS#8 EC keys there) and ``<stem>.pub``."""
        s = self._ser
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        priv, pub = self.dir / f"{stem}.key", self.dir / f"{stem}.pub"
        _write_private(priv, key.private_bytes(s.Encoding.PEM, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption()))
        pub.write_bytes(key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
        return priv, pub

    def issue(
        self,
        stem: str,
        cn: str,
        orgs: Iterable[str] = (),
        server: bool = False,
        client: bool = False,
        dns: Iterable[str] = (),
        ips: Iterable[str] = (),
    ) -> tuple[Path, Path]:
        """Write ``<stem>.crt``/``<stem>.key`` signed by the cluster CA; returns their paths."""
        x509, NameOID = self._x509, self._oid
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        eku = ([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now)
            .not_valid_after(self.now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False
            )
        )
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self.ca_key, self._hashes.SHA256())
        crt, keyp = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        crt.write_bytes(cert.public_bytes(self._ser.Encoding.PEM))
        _write_private(keyp, self._key_pem(key))
        return crt, keyp


def _kubeconfig(path: Path, cluster: str, endpoint: str, ca_pem: str, crt: Path, key: Path) -> None:
    user = f"{cluster}-{path.stem}"
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": endpoint, "certificate-authority-data": _b64(ca_pem.encode())}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": _b64(crt.read_bytes()), "client-key-data": _b64(key.read_bytes())}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }
    _write_private(path, yaml.safe_dump(cfg, sort_keys=False))


def _b64(b: bytes) -> str:
    import base64

    return base64.b64encode(b).decode()


# --------------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------------

_port_lock = threading.Lock()
_ports_handed_out: set[int] = set()


def _free_ports(n: int) -> list[int]:
    """Ports the kernel says are free on 127.0.0.1, never handed out twice by this process (clusters are
    started concurrently, and a port is only really taken once the server binds it)."""
    socks, ports = [], []
    with _port_lock:
        try:
            while len(ports) < n:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind(("127.0.0.1", 0))
                socks.append(s)
                p = s.getsockname()[1]
                if p not in _ports_handed_out:
                    ports.append(p)
                    _ports_handed_out.add(p)
        finally:
            for s in socks:
                s.close()
    return ports


def _proc_start_time(pid: int) -> int | None:
    """Kernel start time of a PID (clock ticks since boot), or None if the PID does not exist or is a zombie.
    Stored with each PID so that reaping later never signals an unrelated process that reused the number."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _alive(pid: int, start_time: int | None) -> bool:
    """Our process is still running (not a zombie, and not some later process that reused the PID)."""
    st = _proc_start_time(pid)
    return st is not None and st == start_time


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def _terminate(procs: dict[str, dict], popen: dict[str, subprocess.Popen], grace: float = STOP_GRACE) -> None:
    """Stop in phases -- clients, then the apiserver, then etcd -- so each can shut down cleanly (an apiserver
    whose etcd is gone hangs until killed). Per phase: SIGTERM the process groups, SIGKILL after ``grace`` s."""
    for phase in STOP_PHASES:
        live = {n: procs[n] for n in phase if n in procs and _alive(procs[n]["pid"], procs[n].get("start_time"))}
        for p in live.values():
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while live and time.monotonic() < deadline:
            for n in list(live):
                if n in popen:
                    popen[n].poll()  # reap our own children so they do not linger as zombies
                if not _alive(live[n]["pid"], live[n].get("start_time")):
                    del live[n]
            time.sleep(0.02)
        for p in live.values():
            _signal_group(p, signal.SIGKILL)
    for p in popen.values():
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    for pid in _orphans(procs):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _signal_group(p: dict, sig: int) -> None:
    try:
        if _alive(p["pid"], p.get("start_time")):
            os.killpg(p["pgid"], sig)
    except (ProcessLookupError, PermissionError):
        pass


def _orphans(procs: dict[str, dict]) -> list[int]:
    """Processes still in one of our sessions after its leader died (e.g. a command kwok was exec-ing).
    Matching the session id *and* a start time no earlier than the leader's rules out recycled PIDs."""
    sessions = {}
    for p in procs.values():
        leader = _proc_start_time(p["pgid"])
        if p.get("start_time") is not None and leader in (None, p["start_time"]):
            sessions[p["pgid"]] = p["start_time"]  # else the session id now belongs to someone else
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2:].split()
        sid, state, start = int(f[3]), f[0], int(f[19])
        if sid in sessions and state not in ("Z", "X") and start >= sessions[sid]:
            found.append(int(d.name))
    return found


# Every cluster started (and not detached) by this interpreter, stopped at exit whatever the exit path.
_live: set["KubeCluster"] = set()
_live_lock = threading.Lock()
_handlers_installed = False


def _stop_all_at_exit() -> None:
    with _live_lock:
        clusters = list(_live)
    for c in clusters:
        try:
            c.stop()
        except Exception as e:  # pragma: no cover - best effort at interpreter exit
            print(f"spinboot sandbox: stopping {c.name} failed: {e}", file=sys.stderr)


def _install_exit_handlers() -> None:
    """atexit covers normal exit, exceptions and KeyboardInterrupt; SIGTERM/SIGHUP would kill Python without
    running atexit, so turn them into KeyboardInterrupt (pytest then tears fixtures down and stops, where a
    SystemExit would only fail the current test) -- only when nobody else handles them and we are on the main
    thread (signal handlers can only be set there)."""
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_stop_all_at_exit)
    if threading.current_thread() is not threading.main_thread():
        return

    def _exit(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _exit)


# --------------------------------------------------------------------------------------------------
# the cluster
# --------------------------------------------------------------------------------------------------


class ClusterError(RuntimeError):
    pass


class _PortTaken(ClusterError):
    pass


@dataclass
class AdminCredentials:
    """Everything needed to talk to the cluster as cluster-admin, in the forms clients want."""

    endpoint: str
    ca_file: Path
    ca_pem: str
    token: str  # bearer token (static token file, group system:masters)
    cert_file: Path  # client certificate (group system:masters), same identity as the kubeconfig
    key_file: Path

    def configuration(self):
        """A ``kubernetes.client.Configuration`` using the bearer token, the way spinboot talks to GKE."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.endpoint
        cfg.ssl_ca_cert = str(self.ca_file)
        cfg.verify_ssl = True
        cfg.api_key = {"authorization": f"Bearer {self.token}"}
        return cfg


class KubeCluster:
    """One control plane plus kwok. ``start()`` returns once /readyz is OK, the default ServiceAccount exists
    and every fake node is Ready."""

    def __init__(self, name: str, state_dir: str | os.PathLike, log: Log = _noop, admin_token: str | None = None,
                 fault_proxy: bool | None = None):
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name):
            raise ValueError(f"cluster name {name!r} must be a DNS label")
        self.name = name
        self.state_dir = Path(state_dir).absolute()
        self.dir = self.state_dir / name
        self.log = log
        self._admin_token = admin_token
        self._popen: dict[str, subprocess.Popen] = {}
        self._procs: dict[str, dict] = {}
        self._ports: dict[str, int] = {}
        self._ca_pem: str | None = None
        self._ssl: ssl.SSLContext | None = None
        self.started_seconds: float | None = None
        # A fault-injecting proxy (cmd/fault-proxy) in front of the API server: what the GKE stand-in hands out
        # as the endpoint, so every client but the sandbox's own admin goes through it.
        self.with_proxy = fault_proxies_enabled() if fault_proxy is None else fault_proxy

    # ---- public surface -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self._ports['apiserver']}"

    @property
    def ca_pem(self) -> str:
        if self._ca_pem is None:
            self._ca_pem = (self.dir / "pki" / "ca.crt").read_text()
        return self._ca_pem

    @property
    def admin_kubeconfig_path(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def admin_credentials(self) -> AdminCredentials:
        pki = self.dir / "pki"
        return AdminCredentials(
            endpoint=self.endpoint,
            ca_file=pki / "ca.crt",
            ca_pem=self.ca_pem,
            token=(pki / "admin.token").read_text().strip(),
            cert_file=pki / "admin.crt",
            key_file=pki / "admin.key",
        )

    @property
    def pids(self) -> dict[str, int]:
        return {n: p["pid"] for n, p in self._procs.items()}

    @property
    def public_endpoint(self) -> str:
        """The fault proxy's URL when there is one (same CA, same certificate), else the API server's."""
        return f"https://127.0.0.1:{self._ports['proxy']}" if "proxy" in self._ports else self.endpoint

    @property
    def fault_proxy(self):
        """Handle on the proxy in front of the API server (``url``, ``counts``, ``set_faults``, ``clear_faults``...;
        spinboot/sandbox/faultproxy.py), or None without one."""
        from .faultproxy import ProxyAdmin

        if "proxy-admin" not in self._ports:
            return None
        return ProxyAdmin(self.public_endpoint, f"http://127.0.0.1:{self._ports['proxy-admin']}")

    def info(self) -> dict[str, str]:
        """What the GKE emulator needs to hand out: endpoint, CA, admin kubeconfig path."""
        return {"endpoint": self.public_endpoint, "ca_pem": self.ca_pem,
                "admin_kubeconfig": str(self.admin_kubeconfig_path)}

    def alive_pids(self) -> list[int]:
        """PIDs of this cluster still running: the five servers and anything left in their sessions."""
        pids = {p["pid"] for p in self._procs.values() if _alive(p["pid"], p.get("start_time"))}
        return sorted(pids | set(_orphans(self._procs)))

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory per process (what a cluster costs the machine)."""
        return {n: _rss_bytes(p["pid"]) for n, p in self._procs.items()}

    def start(self, detach: bool = False, timeout: float = 120.0) -> "KubeCluster":
        """Start all processes and wait for readiness. ``detach=True`` leaves the cluster running after this
        interpreter exits (``provision``); otherwise it is stopped at exit."""
        t0 = time.monotonic()
        self._reap_stale()
        binaries = build.ensure_binaries(log=self.log)
        if self.with_proxy:
            from .gcp import ensure_binaries as go_binaries

            binaries = {**binaries, "fault-proxy": go_binaries(log=self.log)["fault-proxy"]}
        if not detach:
            _install_exit_handlers()
            with _live_lock:
                _live.add(self)
        for attempt in range(1, 4):
            try:
                self._start_once(binaries, timeout, t0)
                break
            except _PortTaken as e:
                # Free ports are only reserved once a server binds them; another process (e.g. a concurrent
                # `provision`) can win the race. Rare: start over with fresh ports.
                self.stop()
                self._popen.clear()
                self._procs.clear()
                if attempt == 3:
                    raise ClusterError(str(e)) from e
                self.log(f"cluster {self.name}: {e.args[0].splitlines()[0]}; retrying with other ports")
            except BaseException:
                self.stop()
                raise
        self.started_seconds = round(time.monotonic() - t0, 2)
        self._save_state(ready=True)
        self.log(f"cluster {self.name} ready at {self.endpoint} in {self.started_seconds} s")
        return self

    def _start_once(self, binaries: dict[str, Path], timeout: float, t0: float) -> None:
        self._prepare()
        self._spawn("etcd", binaries, self._etcd_args(binaries))
        self._wait(lambda: self._http_ok(f"http://127.0.0.1:{self._ports['etcd']}/health"), "etcd", timeout, t0)
        self._spawn("kube-apiserver", binaries, self._apiserver_args(binaries))
        self._wait(lambda: self._https_ok("/readyz"), "kube-apiserver /readyz", timeout, t0)
        if self.with_proxy:
            self._spawn("fault-proxy", binaries, self._proxy_args(binaries))
            self._wait(lambda: self._http_ok(f"http://127.0.0.1:{self._ports['proxy-admin']}/healthz"),
                       "fault proxy", timeout, t0)
        self._spawn("kube-controller-manager", binaries, self._kcm_args(binaries))
        self._spawn("kube-scheduler", binaries, self._scheduler_args(binaries))
        self._install_kwok_crds(binaries["kwok-crds"], timeout, t0)
        self._create_nodes()
        self._spawn("kwok", binaries, self._kwok_args(binaries))
        self._wait(self._default_sa_exists, "default ServiceAccount", timeout, t0)
        self._wait(self._nodes_ready, f"{NODE_COUNT} Ready nodes", timeout, t0)

    def stop(self) -> None:
        """Stop every process of this cluster (also ones started by another interpreter, via cluster.json)."""
        if not self._procs:
            self._load_state()
        _terminate(self._procs, self._popen)
        leftover = self.alive_pids()
        with _live_lock:
            _live.discard(self)
        if (self.dir / "cluster.json").exists():
            self._save_state(ready=False, stopped=True)
        if leftover:
            raise ClusterError(f"cluster {self.name}: processes {leftover} survived SIGKILL")

    def add_exec(
        self,
        namespace: str,
        pods: str | Iterable[str] | None,
        env: dict[str, str] | None = None,
        workdir: str | os.PathLike | None = None,
        commands: dict[str, str | os.PathLike] | None = None,
        containers: Iterable[str] = (),
        name: str | None = None,
    ) -> str:
        """Make ``exec`` into matching pods run the command as a local process with ``env`` and ``workdir``.

        ``pods`` is a pod name, a list of names, or None for every pod in ``namespace``. Implemented as a kwok
        ``ClusterExec`` (it can exist before the pod does); its name is returned. kwok picks rules up through
        a watch, so the first exec may need a short retry. Overlapping rules are matched in no defined order.

        ``commands`` maps bare command names to local executables (e.g. ``{"hal": "/path/to/hal-standin"}``).
        They are needed because kwok resolves a bare name with *its own* PATH before applying ``env``: they are
        linked into the cluster's ``exec-bin/``, which heads kwok's PATH (so they are shared by all pods of the
        cluster). ``env["PATH"]`` still applies to what the command itself runs.
        """
        for cmd, target in (commands or {}).items():
            if "/" in cmd or not cmd:
                raise ValueError(f"command name {cmd!r} must be a bare name")
            link = self.dir / "exec-bin" / cmd
            tmp = link.with_name(f".{cmd}.tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(Path(target).absolute())
            os.replace(tmp, link)
        names = [pods] if isinstance(pods, str) else sorted(pods) if pods is not None else []
        rule = name or "spinboot-" + _short_hash(namespace, *names, *containers)
        local: dict[str, Any] = {"envs": [{"name": k, "value": str(v)} for k, v in (env or {}).items()]}
        if workdir is not None:
            local["workDir"] = str(workdir)
        target: dict[str, Any] = {"local": local}
        if containers:
            target["containers"] = list(containers)
        selector: dict[str, Any] = {"matchNamespaces": [namespace]}
        if names:
            selector["matchNames"] = names
        body = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterExec",
            "metadata": {"name": rule, "labels": {"app.kubernetes.io/managed-by": "spinboot-sandbox"}},
            "spec": {"selector": selector, "execs": [target]},
        }
        path = "/apis/kwok.x-k8s.io/v1alpha1/clusterexecs"
        status, existing = self._api("GET", f"{path}/{rule}", ok=(200, 404))
        if status == 200:
            body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
            self._api("PUT", f"{path}/{rule}", body)
        else:
            self._api("POST", path, body)
        return rule

    # ---- start-up steps ---------------------------------------------------------------------------

    def _reap_stale(self) -> None:
        if self._load_state() and self.alive_pids():
            self.log(f"cluster {self.name}: stopping leftover processes {self.alive_pids()}")
            _terminate(self._procs, {})
        self._procs.clear()

    def _prepare(self) -> None:
        for sub in ("logs", "etcd-data", "kwok-home", "run", "exec-bin"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        # Fresh store every start: a sandbox cluster never outlives its processes.
        for f in (self.dir / "etcd-data").glob("*"):
            _rmtree(f)
        names = ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok") + \
            (("proxy", "proxy-admin") if self.with_proxy else ())
        self._ports = dict(zip(names, _free_ports(len(names))))
        pki = _PKI(self.dir / "pki", self.name)
        self._ca_pem = pki.ca_pem
        self._ssl = ssl.create_default_context(cadata=pki.ca_pem)
        pki.issue(
            "apiserver", "kube-apiserver", server=True,
            dns=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"],
            ips=["127.0.0.1", SERVICE_IP],
        )
        # The apiserver's identity towards kwok's kubelet endpoint (exec, logs, port-forward).
        pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"], client=True)
        # kwok serves every fake node's kubelet API on one 127.0.0.1 port; the apiserver verifies it.
        pki.issue("kwok-serving", "kwok", server=True, dns=["localhost"], ips=["127.0.0.1"])
        if self.with_proxy:  # the fault proxy serves as the API server, for the same names
            pki.issue("fault-proxy", "kube-apiserver", server=True, dns=["localhost"], ips=["127.0.0.1"])
        pki.key_pair("service-account")
        endpoint = self.endpoint
        for stem, cn, orgs in (
            # The sandbox's own admin (seeding, kubectl); spinboot itself uses the bearer token below.
            ("admin", "sandbox-admin", ["system:masters"]),
            ("controller-manager", "system:kube-controller-manager", []),
            ("scheduler", "system:kube-scheduler", []),
            # kwok plays kubelet for all nodes and manages its CRDs: a single-node identity would not do.
            ("kwok", "kwok-controller", ["system:masters"]),
        ):
            crt, key = pki.issue(stem, cn, orgs, client=True)
            kc = self.dir / ("admin.kubeconfig" if stem == "admin" else f"run/{stem}.kubeconfig")
            _kubeconfig(kc, self.name, endpoint, pki.ca_pem, crt, key)
        token = self._admin_token or secrets.token_urlsafe(32)
        _write_private(pki.dir / "admin.token", token + "\n")
        # Static token file: token,user,uid,"groups". A bearer token lets spinboot use the same code path as
        # against GKE (Authorization: Bearer ...), and the GKE emulator can choose the token it hands out.
        _write_private(pki.dir / "tokens.csv", f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        self._save_state(ready=False)

    def _etcd_args(self, b: dict[str, Path]) -> list[str]:
        c, p = f"http://127.0.0.1:{self._ports['etcd']}", f"http://127.0.0.1:{self._ports['etcd-peer']}"
        return [
            str(b["etcd"]), "--name", "default", "--data-dir", str(self.dir / "etcd-data"),
            "--listen-client-urls", c, "--advertise-client-urls", c,
            "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
            "--initial-cluster", f"default={p}", "--initial-cluster-state", "new",
            # Throw-away data: skip fsync (much faster start and writes on a small VM).
            "--unsafe-no-fsync", "--quota-backend-bytes", str(1 << 30), "--log-level", "warn",
        ]

    def _apiserver_args(self, b: dict[str, Path]) -> list[str]:
        pki = self.dir / "pki"
        return [
            str(b["kube-apiserver"]),
            "--bind-address=127.0.0.1", f"--secure-port={self._ports['apiserver']}",
            "--advertise-address=127.0.0.1",
            # The "kubernetes" Service's endpoints cannot point at loopback; nothing in-cluster needs them.
            "--endpoint-reconciler-type=none",
            f"--etcd-servers=http://127.0.0.1:{self._ports['etcd']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--anonymous-auth=false",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki / 'service-account.pub'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--allow-privileged=true",
            "--profiling=false",
            f"--cert-dir={self.dir / 'run'}",
            # Audit what the admin-token user (spinboot, as with a Google token on GKE) asks for, so tests count
            # calls at the server, not inside spinboot. Metadata level: no request or response bodies.
            f"--audit-policy-file={self._audit_policy()}",
            f"--audit-log-path={self.audit_log_path}", "--audit-log-format=json", "--audit-log-maxbackup=1",
        ]

    @property
    def audit_log_path(self) -> Path:
        return self.dir / "logs" / "audit.log"

    def _audit_policy(self) -> Path:
        path = self.dir / "run" / "audit-policy.yaml"
        path.write_text(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"
            f"  - level: Metadata\n    users: [{ADMIN_USER}]\n  - level: None\n")
        return path

    def audit_events(self) -> list[dict]:
        """Completed requests of the admin-token user, oldest first."""
        try:
            lines = self.audit_log_path.read_text().splitlines()
        except OSError:
            return []
        return [e for e in (json.loads(line) for line in lines if line.strip()) if e.get("stage") == "ResponseComplete"]

    def _proxy_args(self, b: dict[str, Path]) -> list[str]:
        pki = self.dir / "pki"
        return [str(b["fault-proxy"]), "--name", f"{self.name}-proxy",
                "--upstream", self.endpoint, "--upstream-ca", str(pki / "ca.crt"),
                # Issued by the cluster's CA for 127.0.0.1, like the API server's: clients cannot tell the difference.
                "--tls-cert", str(pki / "fault-proxy.crt"), "--tls-key", str(pki / "fault-proxy.key"),
                "--port", str(self._ports["proxy"]), "--admin-port", str(self._ports["proxy-admin"]),
                "--error-style", "kubernetes", "--exit-with-parent=false"]

    def _kcm_args(self, b: dict[str, Path]) -> list[str]:
        pki, kc = self.dir / "pki", self.dir / "run" / "controller-manager.kubeconfig"
        return [
            str(b["kube-controller-manager"]),
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={self._ports['kcm']}",
            # Single instance: no leader election, so controllers start at once.
            "--leader-elect=false",
            # Token controller: fills kubernetes.io/service-account-token Secrets (signing key + CA to embed).
            f"--service-account-private-key-file={pki / 'service-account.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cluster-name={self.name}",
            f"--cert-dir={self.dir / 'run'}",
        ]

    def _scheduler_args(self, b: dict[str, Path]) -> list[str]:
        kc = self.dir / "run" / "scheduler.kubeconfig"
        return [
            str(b["kube-scheduler"]),
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={self._ports['scheduler']}",
            "--leader-elect=false", f"--cert-dir={self.dir / 'run'}",
        ]

    def _kwok_args(self, b: dict[str, Path]) -> list[str]:
        pki, port = self.dir / "pki", self._ports["kwok"]
        return [
            str(b["kwok"]),
            f"--config={b['kwok-stages']}",
            f"--kubeconfig={self.dir / 'run' / 'kwok.kubeconfig'}",
            "--manage-all-nodes=true",
            # Node addresses and kubeletEndpoint point the apiserver at kwok's server for exec/logs.
            "--node-ip=127.0.0.1", f"--node-port={port}", f"--server-address=127.0.0.1:{port}",
            f"--tls-cert-file={pki / 'kwok-serving.crt'}", f"--tls-private-key-file={pki / 'kwok-serving.key'}",
            "--enable-crds=Exec,ClusterExec",
            "--node-lease-duration-seconds=40",
            f"--cidr={POD_CIDR}",
        ]

    def _spawn(self, name: str, b: dict[str, Path], args: list[str]) -> None:
        logf = self.dir / "logs" / f"{name}.log"
        # A minimal environment: kwok passes its own environment on to exec'd commands, and nothing from the
        # caller (KUBECONFIG, proxies, GOFLAGS...) should leak into the sandbox.
        path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        env = {
            # kwok looks up exec'd command names in its own PATH: exec-bin (see add_exec) comes first.
            "PATH": f"{self.dir / 'exec-bin'}:{path}" if name == "kwok" else path,
            "HOME": str(self.dir / "kwok-home") if name == "kwok" else str(self.dir / "run"),
            "LANG": "C.UTF-8",
        }
        with logf.open("ab") as out:
            p = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.dir / "run",
                env=env, start_new_session=True, close_fds=True,
            )
        self._popen[name] = p
        self._procs[name] = {"pid": p.pid, "pgid": p.pid, "start_time": _proc_start_time(p.pid), "log": str(logf)}
        self._save_state(ready=False)

    def _wait(self, check: Callable[[], bool], what: str, timeout: float, t0: float) -> None:
        while True:
            for n, p in self._popen.items():
                if p.poll() is not None:
                    tail = _tail(Path(self._procs[n]["log"]))
                    err = _PortTaken if "address already in use" in tail else ClusterError
                    raise err(f"cluster {self.name}: {n} exited with {p.returncode} while waiting for {what}\n{tail}")
            try:
                if check():
                    return
            except (OSError, urllib.error.URLError, ClusterError, ValueError, KeyError):
                pass
            if time.monotonic() - t0 > timeout:
                raise ClusterError(f"cluster {self.name}: timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)

    def _http_ok(self, url: str) -> bool:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200

    def _https_ok(self, path: str) -> bool:
        status, _ = self._api("GET", path, ok=None, raw=True)
        return status == 200

    def _install_kwok_crds(self, crds_file: Path, timeout: float, t0: float) -> None:
        names = []
        for doc in yaml.safe_load_all(crds_file.read_text()):
            if doc:
                self._api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc, ok=(201, 409))
                names.append(doc["metadata"]["name"])

        def established() -> bool:
            for n in names:
                _, crd = self._api("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}")
                conds = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
                if conds.get("Established") != "True":
                    return False
            return True

        self._wait(established, "kwok CRDs established", timeout, t0)

    def _create_nodes(self) -> None:
        for i in range(NODE_COUNT):
            n = f"kwok-node-{i}"
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": n,
                    "labels": {"type": "kwok", "kubernetes.io/hostname": n, "kubernetes.io/os": "linux",
                               "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "sandbox"},
                    "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                },
                "spec": {"podCIDR": f"10.244.{i}.0/24", "podCIDRs": [f"10.244.{i}.0/24"]},
                "status": {"allocatable": NODE_RESOURCES, "capacity": NODE_RESOURCES},
            }
            self._api("POST", "/api/v1/nodes", body, ok=(201, 409))

    def _default_sa_exists(self) -> bool:
        status, _ = self._api("GET", "/api/v1/namespaces/default/serviceaccounts/default", ok=(200, 404))
        return status == 200

    def _nodes_ready(self) -> bool:
        _, nodes = self._api("GET", "/api/v1/nodes")
        ready = [
            n for n in nodes["items"]
            if any(c["type"] == "Ready" and c["status"] == "True" for c in (n.get("status") or {}).get("conditions") or [])
        ]
        return len(ready) >= NODE_COUNT

    # ---- tiny API client (no kubernetes-client import on the start path) -----------------------------

    def _api(self, method: str, path: str, body: Any = None, ok: Iterable[int] | None = (200, 201),
             raw: bool = False) -> tuple[int, Any]:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cadata=self.ca_pem)
        token = (self.dir / "pki" / "admin.token").read_text().strip()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.endpoint + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=10) as r:
                status, text = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        if ok is not None and status not in ok:
            raise ClusterError(f"{method} {path}: HTTP {status}: {text[:500]!r}")
        if raw:
            return status, text
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    # ---- state file ---------------------------------------------------------------------------------

    def _save_state(self, ready: bool, stopped: bool = False) -> None:
        state = {
            "name": self.name,
            "ports": self._ports,
            "processes": self._procs,
            "ready": ready,
            "stopped": stopped,
            "endpoint": self.endpoint if self._ports else None,
        }
        if "proxy" in self._ports:  # what clients are handed (KubeCluster.info) and the proxy's admin endpoint
            state["fault_proxy"] = {"url": self.public_endpoint,
                                    "admin": f"http://127.0.0.1:{self._ports['proxy-admin']}"}
        tmp = self.dir / ".cluster.json.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.dir / "cluster.json")

    def _load_state(self) -> bool:
        try:
            state = json.loads((self.dir / "cluster.json").read_text())
        except (FileNotFoundError, ValueError):
            return False
        self._ports = state.get("ports") or {}
        self._procs = state.get("processes") or {}
        return True

    @classmethod
    def attach(cls, name: str, state_dir: str | os.PathLike) -> "KubeCluster":
        """A handle on a cluster started elsewhere (e.g. by ``provision``), from its cluster.json."""
        c = cls(name, state_dir)
        if not c._load_state():
            raise ClusterError(f"no cluster {name!r} under {state_dir}")
        return c

    def __repr__(self) -> str:
        return f"KubeCluster({self.name!r}, {str(self.state_dir)!r})"


def _short_hash(*parts: str) -> str:
    import hashlib

    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]


def _tail(path: Path, n: int = 25) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(True)[-n:])
    except FileNotFoundError:
        return ""


def _rmtree(p: Path) -> None:
    import shutil

    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def mutating_requests(events: list[dict]) -> list[str]:
    """"VERB resource namespace/name" for each audit event that changed state (reviews and dry runs excluded)."""
    out = []
    for e in events:
        ref = e.get("objectRef") or {}
        dry_run = "dryRun=All" in e.get("requestURI", "")
        if e.get("verb") in MUTATING_VERBS and ref.get("resource") not in REVIEW_RESOURCES and not dry_run:
            out.append(f"{e['verb']} {ref.get('resource')}{'/' + ref['subresource'] if ref.get('subresource') else ''} "
                       f"{ref.get('namespace', '')}/{ref.get('name', '')} ({e.get('responseStatus', {}).get('code')})")
    return out


def start_clusters(names: Iterable[str], state_dir: str | os.PathLike, log: Log = _noop,
                   detach: bool = False) -> list[KubeCluster]:
    """Start several independent clusters concurrently; if one fails, all are stopped and the error raised."""
    names = list(names)
    build.ensure_binaries(log=log)  # once, before the threads, so a cold build is not raced
    _install_exit_handlers()  # from the calling (main) thread: signal handlers cannot be set from workers
    clusters = [KubeCluster(n, state_dir, log=log) for n in names]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(clusters))) as pool:
        futures = [pool.submit(c.start, detach) for c in clusters]
        errors = [f.exception() for f in futures]
    if any(errors):
        for c in clusters:
            try:
                c.stop()
            except ClusterError:
                pass
        raise next(e for e in errors if e)
    return clusters


# --------------------------------------------------------------------------------------------------
# exec helpers
# --------------------------------------------------------------------------------------------------


@dataclass
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


def exec_exit_code(status: str | dict | None) -> int:
    """Exit code from the exec error channel's Status (kubelet and kwok forms): spinboot's own parser."""
    from ..kube.podexec import exit_code

    return exit_code(json.dumps(status) if isinstance(status, dict) else status)


def exec_in_pod(core_v1, namespace: str, pod: str, command: list[str], container: str | None = None,
                stdin: str | None = None, timeout: float = 60) -> ExecResult:
    """Run ``command`` in a pod through the apiserver's exec subresource, as spinboot does against GKE.

    With kwok, stdin never reaches EOF (kwok does not close the command's stdin pipe): send ``stdin`` only to
    commands that read a known amount (``head -c N``)."""
    from kubernetes.stream import stream
    from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDOUT_CHANNEL

    kw = {"container": container} if container else {}
    resp = stream(
        core_v1.connect_get_namespaced_pod_exec, pod, namespace, command=command,
        stdin=stdin is not None, stdout=True, stderr=True, tty=False, _preload_content=False, **kw,
    )
    chans: dict[int, list[str]] = {STDOUT_CHANNEL: [], STDERR_CHANNEL: [], ERROR_CHANNEL: []}
    try:
        if stdin is not None:
            resp.write_stdin(stdin)
            try:
                resp.close_channel(0)  # EOF on stdin: only the v5 protocol can say so
            except Exception:
                pass
        deadline = time.monotonic() + timeout
        while True:
            is_open = resp.is_open()
            if is_open:
                resp.update(timeout=1)
            for ch, buf in chans.items():
                if resp.peek_channel(ch):
                    buf.append(resp.read_channel(ch))
            if not is_open:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"exec {command} in {namespace}/{pod} did not finish in {timeout} s")
    finally:
        resp.close()
    out, err, status = ("".join(chans[c]) for c in (STDOUT_CHANNEL, STDERR_CHANNEL, ERROR_CHANNEL))
    return ExecResult(exec_exit_code(status), out, err)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _cli_provision(args) -> int:
    """Start one cluster detached from this process and print its connection info as one JSON line."""
    c = KubeCluster(args.name, args.state_dir, log=lambda s: print(f"[kube] {s}", file=sys.stderr, flush=True),
                    admin_token=args.admin_token)
    if c._load_state() and c.alive_pids() and len(c.alive_pids()) >= len(PROCS):
        try:
            if c._https_ok("/readyz"):
                print(json.dumps(c.info()), flush=True)  # idempotent: already up
                return 0
        except (OSError, urllib.error.URLError, ClusterError):
            pass
    c.start(detach=True, timeout=args.timeout)
    print(json.dumps(c.info()), flush=True)
    return 0


def _cli_deprovision(args) -> int:
    try:
        c = KubeCluster.attach(args.name, args.state_dir)
    except ClusterError:
        return 0  # nothing to stop
    c.stop()
    return 0


def _cli_down(args) -> int:
    """Reap every cluster under a state dir (after a killed test run or provisioner)."""
    rc = 0
    for f in sorted(Path(args.state_dir).glob("*/cluster.json")):
        c = KubeCluster.attach(f.parent.name, args.state_dir)
        if c.alive_pids():
            print(f"stopping {c.name}: {c.alive_pids()}", file=sys.stderr)
        try:
            c.stop()
        except ClusterError as e:
            print(e, file=sys.stderr)
            rc = 1
    return rc


def _cli_up(args) -> int:
    """Start clusters in the foreground until Ctrl-C (handy for poking at them with kubectl)."""
    clusters = start_clusters(args.name, args.state_dir, log=lambda s: print(f"[kube] {s}", file=sys.stderr))
    for c in clusters:
        print(json.dumps({"name": c.name, **c.info(), "start_seconds": c.started_seconds}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spinboot.sandbox.kube", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("provision", help="start one cluster detached; print endpoint/CA/kubeconfig as JSON")
    pr.add_argument("--state-dir", required=True)
    pr.add_argument("--name", required=True)
    pr.add_argument("--admin-token", help="bearer token to accept as cluster-admin (default: random)")
    pr.add_argument("--timeout", type=float, default=180)
    pr.set_defaults(func=_cli_provision)
    de = sub.add_parser("deprovision", help="stop one cluster started by provision")
    de.add_argument("--state-dir", required=True)
    de.add_argument("--name", required=True)
    de.set_defaults(func=_cli_deprovision)
    dn = sub.add_parser("down", help="stop every cluster under a state dir")
    dn.add_argument("--state-dir", required=True)
    dn.set_defaults(func=_cli_down)
    up = sub.add_parser("up", help="start clusters in the foreground until Ctrl-C")
    up.add_argument("--state-dir", required=True)
    up.add_argument("--name", action="append", required=True)
    up.set_defaults(func=_cli_up)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
