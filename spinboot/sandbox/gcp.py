"""Local stand-ins for the Google APIs spinboot calls: build them, start them, stop them, point clients at them.

Two Go servers live in the ``go/`` module next to this file (``spinboot.dev/sandbox``):

* ``pubsub-emulator``: Google's own in-memory Pub/Sub server (``pstest`` from the Go client library) plus a
  ``google.iam.v1.IAMPolicy`` service for topics and subscriptions. Clients reach it through
  ``PUBSUB_EMULATOR_HOST``.
* ``gke-emulator``: ``google.container.v1.ClusterManager`` (clusters, node pools, long-running operations),
  ``google.iam.admin.v1.IAM`` (service accounts and their policies) and
  ``google.cloud.resourcemanager.v3.Projects`` (project IAM policy) on one port. Each cluster it creates is
  backed by a real sandbox Kubernetes control plane started by an external ``--provision-cmd``. The same port
  serves a minimal Artifact Registry and the Policy Troubleshooter, with a Docker Registry v2 API on a second
  port (docs/sandbox.md, "Artifact Registry and Policy Troubleshooter"), and Cloud Logging's
  ``google.logging.v2.LoggingServiceV2/ListLogEntries`` over the backing control planes' audit logs, shaped like
  GKE's Admin Activity entries (``spinboot drift --audit``; cmd/gke-emulator/logging.go).

Both bind 127.0.0.1 only and have a small admin HTTP endpoint (``admin_url``) for fault injection and call
counters: ``GET/DELETE /counts``, ``GET /faults``, ``POST /faults`` (append), ``PUT /faults`` (replace),
``DELETE /faults``; the gke-emulator also has ``GET /clusters``. Fault spec:
``METHOD=CODE[:count=N][:rate=F][:delay=D][:after][:msg=TEXT]``, rules separated by ``;``, e.g.
``container.v1.ClusterManager/CreateCluster=UNAVAILABLE:count=2`` or ``*=RESOURCE_EXHAUSTED:rate=0.1``.
Counters classify every method as ``read`` (Get*/List*/Test*...), ``mutating`` or ``data`` (Pub/Sub message
traffic), so a test can assert that a second ``apply`` made zero mutating calls.

A third binary, ``fault-proxy``, is the fault-injecting HTTP(S) reverse proxy for the HTTP APIs (Kubernetes API
servers, Storage); its wrapper is spinboot/sandbox/faultproxy.py. ``RESET`` as a CODE resets the client's TCP
connection (the client sees ``UNAVAILABLE``); ``:after`` lets a unary call take effect and then fails it.

Binaries are built into ``${SPINBOOT_SANDBOX_CACHE:-~/.cache/spinboot/sandbox}/gobin-<hash>/`` where the hash
covers the module's sources, go.mod, go.sum and the pinned Go toolchain: a warm start only hashes a few files.
Processes run in their own session with a PID file in the state directory and are stopped at interpreter exit
(and stop themselves when their parent dies), so a failed test leaves nothing running.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Sequence

GO_MODULE = Path(__file__).with_name("go")
VERSIONS_FILE = Path(__file__).with_name("versions.toml")
BINARIES = ("pubsub-emulator", "gke-emulator", "fault-proxy")
# Bump when the build recipe below changes, so old caches are not reused.
RECIPE = 1


def cache_root() -> Path:
    env = os.environ.get("SPINBOOT_SANDBOX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spinboot" / "sandbox"


def _go_toolchain() -> str:
    with VERSIONS_FILE.open("rb") as f:
        return tomllib.load(f).get("go", {}).get("toolchain", "")


def _find_go() -> str:
    for cand in (os.environ.get("SPINBOOT_GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if cand and Path(cand).is_file():
            return cand
    raise RuntimeError("no Go toolchain found: install Go or set SPINBOOT_GO")


def source_hash() -> str:
    """Hash of everything that determines the binaries: Go sources, go.mod, go.sum, toolchain pin, recipe."""
    h = hashlib.sha256(f"recipe={RECIPE}\ntoolchain={_go_toolchain()}\n".encode())
    for p in sorted(GO_MODULE.rglob("*")):
        if p.is_file() and ((p.suffix == ".go" and not p.name.endswith("_test.go")) or p.name in ("go.mod", "go.sum")):
            h.update(str(p.relative_to(GO_MODULE)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def bin_dir() -> Path:
    return cache_root() / f"gobin-{source_hash()}"


def _complete(d: Path) -> dict[str, Path] | None:
    paths = {n: d / n for n in BINARIES}
    return paths if all(p.is_file() and os.access(p, os.X_OK) for p in paths.values()) else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise builders across processes (pytest workers, several engineers' tools)."""
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_binaries(log=lambda _msg: None) -> dict[str, Path]:
    """Return name -> path of every binary in BINARIES, built (once per source hash) if the cache lacks them."""
    final = bin_dir()
    done = _complete(final)
    if done:
        return done
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{final.name}.lock"):
        done = _complete(final)
        if done:
            return done
        logfile = root / f"{final.name}.build.log"
        log(f"building {', '.join(BINARIES)} into {final} (Go output: {logfile})")
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
        env = dict(os.environ)
        toolchain = _go_toolchain()
        if toolchain:
            env["GOTOOLCHAIN"] = f"{toolchain}+auto"
        env["GOFLAGS"] = "-mod=readonly -buildvcs=false -trimpath"
        t0 = time.monotonic()
        try:
            with logfile.open("w") as out:
                proc = subprocess.run(
                    [_find_go(), "build", "-o", str(tmp) + "/", *(f"./cmd/{b}" for b in BINARIES)],
                    cwd=GO_MODULE, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
            if proc.returncode != 0:
                tail = logfile.read_text()[-3000:]
                raise RuntimeError(f"go build failed (exit {proc.returncode}); see {logfile}:\n{tail}")
            secs = round(time.monotonic() - t0, 1)
            (tmp / "manifest.json").write_text(json.dumps({"build_seconds": secs, "toolchain": toolchain}) + "\n")
            os.rename(tmp, final)  # appears atomically: a half-built directory is never used
            log(f"built in {secs} s")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    done = _complete(final)
    if not done:
        raise RuntimeError(f"build finished but {final} is incomplete")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class FaultAdmin:
    """The admin endpoint every sandbox server has: call counters and fault rules (spec grammar above for the gRPC
    servers; cmd/fault-proxy/faults.go for the HTTP proxy)."""

    def __init__(self, admin_url: str = ""):
        self.admin_url = admin_url

    def _admin(self, method: str, path: str, body: str | None = None) -> Any:
        req = urllib.request.Request(self.admin_url + path, method=method,
                                     data=body.encode() if body is not None else None)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def counts(self) -> dict:
        """``{"methods": {"/pkg.Service/Method": {kind, calls, errors, injected, codes}}, "totals": {kind: n}}``."""
        return self._admin("GET", "/counts")

    def reset_counts(self) -> None:
        self._admin("DELETE", "/counts")

    def mutating_calls(self) -> dict[str, int]:
        """Method -> call count for every mutating method called since the last reset."""
        return {m: c["calls"] for m, c in self.counts()["methods"].items() if c["kind"] == "mutating" and c["calls"]}

    def add_faults(self, spec: str) -> list[dict]:
        return self._admin("POST", "/faults", spec)["faults"]

    def set_faults(self, spec: str) -> list[dict]:
        return self._admin("PUT", "/faults", spec)["faults"]

    def clear_faults(self) -> None:
        self._admin("DELETE", "/faults")

    def list_faults(self) -> list[dict]:
        return self._admin("GET", "/faults")["faults"]


class _GoServer(FaultAdmin):
    """One sandbox server process: own session, log file and PID file in ``state_dir``, readiness via a ready file."""

    binary = ""
    stop_timeout_s = 10.0

    def __init__(self, state_dir: str | os.PathLike, *, port: int = 0, faults: str | None = None,
                 env: dict[str, str] | None = None, name: str | None = None, extra_args: Sequence[str] = ()):
        self.state_dir = Path(state_dir).resolve()
        self.name = name or self.binary
        self.port = port
        self.faults = faults
        self.env = env or {}
        self.extra_args = list(extra_args)  # e.g. ["--exit-with-parent=false"] for a detached sandbox
        self.proc: subprocess.Popen | None = None
        self.address = ""
        self.admin_url = ""
        self.log_path = self.state_dir / f"{self.name}.log"
        self.pid_path = self.state_dir / f"{self.name}.pid"
        self._ready_path = self.state_dir / f"{self.name}.ready.json"

    def _args(self) -> list[str]:
        return []

    def _reap_stale(self) -> None:
        """Stop a server left behind by an earlier run that used this state dir (e.g. killed with SIGKILL)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return
        if _alive(pid) and self.binary in _cmdline(pid):
            _stop_group(pid, self.stop_timeout_s)
        self.pid_path.unlink(missing_ok=True)

    def start(self, timeout_s: float = 120.0):
        bins = ensure_binaries()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._reap_stale()
        self._ready_path.unlink(missing_ok=True)
        args = [str(bins[self.binary]), "--port", str(self.port), "--admin-port", "0",
                "--ready-file", str(self._ready_path), *self._args(), *self.extra_args]
        if self.faults:
            args += ["--faults", self.faults]
        env = {**os.environ, **self.env}
        with self.log_path.open("ab") as logf:
            logf.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(args)}\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=env, cwd=self.state_dir)
        self.pid_path.write_text(f"{self.proc.pid}\n")
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._ready_path.exists():
                try:
                    info = json.loads(self._ready_path.read_text())
                    break
                except ValueError:
                    pass  # being written; the server renames it into place, but be lenient
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was ready:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} not ready after {timeout_s} s:\n{self.log_tail()}")
            time.sleep(0.02)
        self.address = info.get("grpc") or info["url"]
        self.admin_url = info["admin"]
        return self

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after ``stop_timeout_s``; idempotent."""
        if self.proc is not None:
            if self.proc.poll() is None:
                _stop_group(self.proc.pid, self.stop_timeout_s)
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=5)
            self.proc = None
        self.pid_path.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def channel(self):
        import grpc

        return grpc.insecure_channel(self.address)


def _stop_group(pid: int, timeout_s: float) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        if not _alive(pid):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class PubSubEmulator(_GoServer):
    """pstest + IAMPolicy. ``host`` is the value for ``PUBSUB_EMULATOR_HOST``."""

    binary = "pubsub-emulator"

    @property
    def host(self) -> str:
        return self.address

    def environ(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.address}

    def publisher(self):
        """A PublisherClient on this emulator without touching the process environment."""
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=self.channel()))

    def subscriber(self):
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=self.channel()))


class GkeEmulator(_GoServer):
    """ClusterManager + IAM admin + Projects on one port (``address``).

    ``provision_cmd`` / ``deprovision_cmd`` / ``nodes_cmd`` are command prefixes (a string for ``sh -c`` or an
    argv list); the emulator appends ``--name <project>-<location>-<cluster>`` (``nodes_cmd`` also
    ``--pool POOL --count TOTAL``, total over the pool's zones, run on cluster create, pool create/resize/delete).
    An operation stays RUNNING until both ``latency_s`` has elapsed and its command finished. Stopping the
    emulator deprovisions every cluster it still has, hence the longer stop timeout.

    ``iam_propagation_s``: for that long after a service account is created, IAM policies refuse it as a member
    ("Service account ... does not exist.") while GetServiceAccount already finds it, as on GCP (eventual
    consistency). The bare emulator defaults to 0 so API tests can bind at once; ``Sandbox`` passes a few seconds.
    ``set_iam_propagation()`` changes it on a running emulator.
    """

    binary = "gke-emulator"
    stop_timeout_s = 180.0

    def __init__(self, state_dir: str | os.PathLike, *, provision_cmd: str | Sequence[str] | None = None,
                 deprovision_cmd: str | Sequence[str] | None = None,
                 nodes_cmd: str | Sequence[str] | None = None, latency_s: float = 2.0,
                 version: str | None = None, projects: Sequence[str] = (), iam_propagation_s: float = 0.0, **kw):
        super().__init__(state_dir, **kw)
        self.provision_cmd = _shell(provision_cmd)
        self.deprovision_cmd = _shell(deprovision_cmd)
        self.nodes_cmd = _shell(nodes_cmd)
        self.latency_s = latency_s
        self.version = version
        self.projects = list(projects)
        self.iam_propagation_s = iam_propagation_s

    def _args(self) -> list[str]:
        a = ["--latency", f"{int(self.latency_s * 1000)}ms", "--iam-propagation", f"{int(self.iam_propagation_s * 1000)}ms"]
        if self.provision_cmd:
            a += ["--provision-cmd", self.provision_cmd]
        if self.deprovision_cmd:
            a += ["--deprovision-cmd", self.deprovision_cmd]
        if self.nodes_cmd:
            a += ["--nodes-cmd", self.nodes_cmd]
        if self.version:
            a += ["--version", self.version]
        if self.projects:
            a += ["--projects", ",".join(self.projects)]
        return a

    def set_iam_propagation(self, seconds: float) -> float:
        """Change the service-account propagation delay of the running emulator; returns the previous value.
        It applies to accounts already created too (0: every existing account is usable at once)."""
        before = self._admin("GET", "/iam/propagation")["seconds"]
        self._admin("PUT", "/iam/propagation", json.dumps({"seconds": seconds}))
        self.iam_propagation_s = seconds
        return before

    def clusters(self) -> dict:
        """Admin view: ``{"project/location/name": {status, busy_operation, endpoint, admin_kubeconfig}}``."""
        return self._admin("GET", "/clusters")

    # Official clients on an insecure loopback channel. AnonymousCredentials keeps google.auth from looking for
    # Application Default Credentials (the transport ignores credentials once it is given a channel anyway).

    def cluster_manager(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import container_v1
        from google.cloud.container_v1.services.cluster_manager.transports import ClusterManagerGrpcTransport

        return container_v1.ClusterManagerClient(
            transport=ClusterManagerGrpcTransport(channel=self.channel(), credentials=AnonymousCredentials()))

    def iam_admin(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import iam_admin_v1
        from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

        return iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=self.channel(), credentials=AnonymousCredentials()))

    def projects_client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import resourcemanager_v3
        from google.cloud.resourcemanager_v3.services.projects.transports import ProjectsGrpcTransport

        return resourcemanager_v3.ProjectsClient(
            transport=ProjectsGrpcTransport(channel=self.channel(), credentials=AnonymousCredentials()))

    def artifact_registry(self):
        """ArtifactRegistryClient (repositories and their IAM; cmd/gke-emulator/ar.go)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import artifactregistry_v1
        from google.cloud.artifactregistry_v1.services.artifact_registry.transports import ArtifactRegistryGrpcTransport

        return artifactregistry_v1.ArtifactRegistryClient(
            transport=ArtifactRegistryGrpcTransport(channel=self.channel(), credentials=AnonymousCredentials()))

    def troubleshooter(self):
        """Policy Troubleshooter IamCheckerClient (cmd/gke-emulator/troubleshoot.go)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import policytroubleshooter_v1
        from google.cloud.policytroubleshooter_v1.services.iam_checker.transports import IamCheckerGrpcTransport

        return policytroubleshooter_v1.IamCheckerClient(
            transport=IamCheckerGrpcTransport(channel=self.channel(), credentials=AnonymousCredentials()))

    def registry_url(self) -> str:
        """Base URL of the Docker Registry v2 stand-in; requests carry the registry host (us-docker.pkg.dev) as Host."""
        return self._admin("GET", "/registry")["url"]

    def push_image(self, host: str, path: str, tag: str, digest: str | None = None) -> dict:
        """Tag an image in an existing Docker repository (``path`` = PROJECT/REPOSITORY/IMAGE) and publish Artifact
        Registry's notification to ``projects/PROJECT/topics/gcr`` if that topic exists; ``{"digest", "tag",
        "published"}``. ``digest`` re-tags an image already pushed."""
        body = {"host": host, "path": path, "tag": tag} | ({"digest": digest} if digest else {})
        return self._admin("POST", "/registry/push", json.dumps(body))


def _shell(cmd: str | Sequence[str] | None) -> str:
    if cmd is None or isinstance(cmd, str):
        return cmd or ""
    import shlex

    return shlex.join(cmd)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m spinboot.sandbox.gcp", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build (or find cached) emulator binaries and print their paths")
    sub.add_parser("hash", help="print the source hash used as cache key")
    args = ap.parse_args(argv)
    if args.cmd == "hash":
        print(source_hash())
        return 0
    t0 = time.monotonic()
    paths = ensure_binaries(log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({k: str(v) for k, v in paths.items()} | {"seconds": round(time.monotonic() - t0, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
