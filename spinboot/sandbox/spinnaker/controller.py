"""Spinnaker's side for the kustomize engine: a sandbox process that plays each service's startup when its pod
starts, as the hal stand-in's ``hal deploy apply`` does for the Halyard engine.

``Sandbox.up`` starts it (``python -m spinboot.sandbox.spinnaker.controller --clusters-dir D``). For every sandbox
cluster it watches the Deployments labelled ``app.kubernetes.io/part-of=spinnaker`` and
``app.kubernetes.io/managed-by=spinboot`` (Halyard's are labelled managed-by halyard and played by the hal
stand-in) and their pods. It plays the kubelet and the service's own start for those pods only:

- a new pod is held not Ready while its service starts (kwok would make it Ready at once; a real service is not
  Ready before its readiness probe passes): if seen before kwok starts it, its status is set Running and not Ready
  so kwok's pod-ready stage (which acts on Pending pods only) leaves it to this controller; if kwok got there first,
  it is set not Ready at once;
- the service's configuration is read from the live objects the way the service reads it (kustomize.py) and the one
  startup play (play.py) runs for that service with the pod's own identity;
- passed: the pod becomes Ready; refused: its containers wait in CrashLoopBackOff with the refusals as the last
  termination message, the pod stays not Ready, so the Deployment never becomes available (as on GKE); the start is
  played again after a back-off, as the kubelet restarts the container, and a later pass makes the pod Ready.

Every pod start is played again (a restart after a grant was taken away fails, as it would on GKE). The log is
``<state>/spinnaker-controller/controller.log``; nothing secret is written to it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import play as startup
from .kustomize import AdapterError, spinnaker_config
from .sandboxenv import SandboxEnv, load_endpoints

SELECTOR = "app.kubernetes.io/part-of=spinnaker,app.kubernetes.io/managed-by=spinboot"
STARTING = "SpinnakerServiceStarting"
RESTART_BACKOFF_S = 2.0      # the sandbox's kubelet back-off: shorter than GKE's (10 s doubling to 5 min)
MAX_BACKOFF_S = 10.0


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(selector: dict, labels: dict) -> bool:
    ml = (selector or {}).get("matchLabels") or {}
    return bool(ml) and all(labels.get(k) == v for k, v in ml.items())


class ClusterWatch:
    """One sandbox cluster: its Spinnaker Deployments (kept current by a watch) and their starting pods."""

    def __init__(self, cluster_dir: Path, endpoints: dict, log, pool: ThreadPoolExecutor):
        from kubernetes import config

        self.dir, self.log, self.pool = cluster_dir, log, pool
        self.kubeconfig = str(cluster_dir / "admin.kubeconfig")
        self.api = config.new_client_from_config(config_file=self.kubeconfig)
        self.env = SandboxEnv(dict(endpoints), cluster_dir.name, self.kubeconfig)
        self.deployments: dict[tuple[str, str], dict] = {}
        self.seen: set[str] = set()
        self.settled: set[str] = set()      # pods whose start was played (Ready or crash-looping by this controller)
        self.pod_locks: dict[str, threading.Lock] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def start(self) -> None:
        for fn in (self._watch_deployments, self._watch_pods):
            threading.Thread(target=self._forever, args=(fn,), daemon=True).start()

    def _forever(self, fn) -> None:
        while not self.stop.is_set():
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - a dropped watch or a stopped cluster: look again
                if not (self.dir / "admin.kubeconfig").exists():
                    self.stop.set()
                    return
                self.log(f"{self.dir.name}: watch restarted ({type(exc).__name__}: {str(exc)[:200]})")
                time.sleep(1)

    def _watch_deployments(self) -> None:
        from kubernetes import client, watch

        apps = client.AppsV1Api(self.api)
        items = apps.list_deployment_for_all_namespaces(label_selector=SELECTOR)
        with self.lock:
            self.deployments = {(d.metadata.namespace, d.metadata.name): self.api.sanitize_for_serialization(d)
                                for d in items.items}
        for ev in watch.Watch().stream(apps.list_deployment_for_all_namespaces, label_selector=SELECTOR,
                                       resource_version=items.metadata.resource_version, timeout_seconds=300):
            d = self.api.sanitize_for_serialization(ev["object"])
            key = (d["metadata"]["namespace"], d["metadata"]["name"])
            with self.lock:
                if ev["type"] == "DELETED":
                    self.deployments.pop(key, None)
                else:
                    self.deployments[key] = d

    def deployment_of(self, pod: dict) -> dict | None:
        labels = pod["metadata"].get("labels") or {}
        with self.lock:
            for (ns, _), d in self.deployments.items():
                if ns == pod["metadata"]["namespace"] and _matches((d.get("spec") or {}).get("selector"), labels):
                    return d
        return None

    def _watch_pods(self) -> None:
        from kubernetes import client, watch

        core = client.CoreV1Api(self.api)
        for ev in watch.Watch().stream(core.list_pod_for_all_namespaces, timeout_seconds=300):
            if ev["type"] == "DELETED":
                continue
            pod = self.api.sanitize_for_serialization(ev["object"])
            uid = pod["metadata"]["uid"]
            if pod["metadata"].get("deletionTimestamp"):
                continue
            if uid in self.seen:
                # kwok won the race to a Pending pod and made it Ready: not Ready again until the start is played
                conds = {c["type"]: c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
                if uid not in self.settled and conds.get("Ready") == "True":
                    self._hold(core, pod)
                continue
            dep = self.deployment_of(pod)
            if dep is None:
                if not self.deployments:
                    continue
                time.sleep(0.2)   # the Deployment's watch event may come after its first pod's
                dep = self.deployment_of(pod)
                if dep is None:
                    continue
            self.seen.add(uid)
            self._hold(core, pod)
            self.pool.submit(self._start, pod, dep)

    # -- the kubelet's part ---------------------------------------------------------------------------------------
    def _pod_lock(self, uid: str) -> threading.Lock:
        with self.lock:
            return self.pod_locks.setdefault(uid, threading.Lock())

    def _hold(self, core: Any, pod: dict) -> None:
        """Not Ready while the service starts; Running first if kwok has not started it (it then leaves it be).
        Never after the start was played (the pod's lock orders the two writers)."""
        with self._pod_lock(pod["metadata"]["uid"]):
            if pod["metadata"]["uid"] not in self.settled:
                self._hold_locked(core, pod)

    def _hold_locked(self, core: Any, pod: dict) -> None:
        name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
        status: dict[str, Any] = {
            "conditions": [{"type": t, "status": "False", "reason": STARTING, "lastTransitionTime": _now(),
                            "message": "the service is starting (sandbox startup play)"}
                           for t in ("Ready", "ContainersReady")],
            "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                                   "started": True, "restartCount": 0, "state": {"running": {"startedAt": _now()}}}
                                  for c in pod["spec"]["containers"]],
        }
        tries = [{**status, "phase": "Running"}, status] \
            if (pod.get("status") or {}).get("phase") in (None, "Pending") else [status]
        for body in tries:
            try:
                core.patch_namespaced_pod_status(name, ns, {"status": body},
                                                 _content_type="application/merge-patch+json")
                return
            except Exception as exc:  # noqa: BLE001 - refused (then without the phase) or gone already
                self.log(f"{ns}/{name}: could not hold not Ready ({exc})"[:300])

    def _settle(self, core: Any, ns: str, name: str, ready: bool, message: str = "", uid: str = "") -> None:
        """Ready (the start passed) or crash-looping (refused): the pod's containers and conditions."""
        with self._pod_lock(uid):
            self._settle_locked(core, ns, name, ready, message)

    def _settle_locked(self, core: Any, ns: str, name: str, ready: bool, message: str = "") -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                pod = self.api.sanitize_for_serialization(core.read_namespaced_pod(name, ns))
            except Exception:  # noqa: BLE001 - gone
                return
            conds = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
            # kwok may still be about to start it (it won the race to a Pending pod): wait for it, then override.
            if pod["status"].get("phase") == "Running" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.settled.add(pod["metadata"]["uid"])
        now = _now()
        if ready:
            statuses = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True,
                         "started": True, "restartCount": 0, "state": {"running": {"startedAt": now}}}
                        for c in pod["spec"]["containers"]]
        else:
            statuses = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                         "started": False, "restartCount": 5,
                         "state": {"waiting": {"reason": "CrashLoopBackOff",
                                               "message": f"back-off 2m40s restarting failed container={c['name']} "
                                                          f"pod={name}_{ns}"}},
                         "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": message[:4096],
                                                      "startedAt": now, "finishedAt": now}}}
                        for c in pod["spec"]["containers"]]
        for t in ("Ready", "ContainersReady"):
            conds[t] = {"type": t, "status": "True" if ready else "False", "lastTransitionTime": now,
                        **({} if ready else {"reason": "ContainersNotReady",
                                             "message": "containers with unready status: ["
                                                        + " ".join(c["name"] for c in pod["spec"]["containers"])
                                                        + "]"})}
        conds.setdefault("PodScheduled", {"type": "PodScheduled", "status": "True", "lastTransitionTime": now})
        try:
            core.patch_namespaced_pod_status(name, ns, {"status": {"phase": "Running",
                                                                   "conditions": list(conds.values()),
                                                                   "containerStatuses": statuses}},
                                             _content_type="application/merge-patch+json")
        except Exception as exc:  # noqa: BLE001
            self.log(f"{ns}/{name}: could not set its state ({exc})"[:300])

    # -- the service's part ---------------------------------------------------------------------------------------
    def _start(self, pod: dict, dep: dict) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        ns, name, uid = pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"]
        tmp = Path(tempfile.mkdtemp(prefix="spinboot-play-"))
        try:
            try:
                config = spinnaker_config(self.api, dep, tmp)
            except AdapterError as exc:
                svc = dep["metadata"]["name"]
                self.log(f"{ns}/{name}: {svc} cannot read its configuration: {exc}")
                self._settle(core, ns, name, False, f"{svc}: cannot read its configuration: {exc}", uid)
                return
            svc = next(iter(config.services))
            backoff = RESTART_BACKOFF_S
            while not self.stop.is_set():
                result = startup.play(config, self.env, spinnaker_api=self.api)
                calls = sum(1 for c in result.calls if c.startswith(svc + ":"))
                if not result.refusals:
                    self.log(f"{ns}/{name}: {svc} started ({calls} calls played)")
                    self._settle(core, ns, name, True, uid=uid)
                    return
                message = "\n".join(r.message() for r in result.refusals)
                self.log(f"{ns}/{name}: {svc} refused ({len(result.refusals)}): {message}"[:2000])
                self._settle(core, ns, name, False, message, uid)
                # The kubelet restarts a crashed container with a growing back-off: a start that failed for a
                # grant that is back later succeeds on a later restart, as on GKE.
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                try:
                    live = core.read_namespaced_pod(name, ns)
                except Exception:  # noqa: BLE001 - deleted: its replacement is played on its own
                    return
                if live.metadata.deletion_timestamp or live.metadata.uid != pod["metadata"]["uid"]:
                    return
        except Exception as exc:  # noqa: BLE001 - the play itself crashed: the service would not start either
            self.log(f"{ns}/{name}: startup play crashed: {type(exc).__name__}: {exc}"[:500])
            self._settle(core, ns, name, False, f"startup: {type(exc).__name__}: {exc}", uid)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def run(clusters_dir: Path, endpoints_path: Path, log, parent: int | None = None) -> None:
    pool = ThreadPoolExecutor(8)
    watches: dict[str, ClusterWatch] = {}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set() and _alive(parent):   # a sandbox that was not detached goes with its process
        try:
            endpoints = load_endpoints(str(endpoints_path)) if endpoints_path.is_file() else {}
        except (OSError, ValueError):
            endpoints = {}
        for f in sorted(clusters_dir.glob("*/admin.kubeconfig")) if clusters_dir.is_dir() else []:
            w = watches.get(f.parent.name)
            if w is not None and not w.stop.is_set():
                continue
            if not endpoints:
                continue
            try:
                w = ClusterWatch(f.parent, endpoints, log, pool)
            except Exception as exc:  # noqa: BLE001 - not up yet
                log(f"{f.parent.name}: not reachable yet ({exc})"[:300])
                continue
            watches[f.parent.name] = w
            w.start()
            log(f"{f.parent.name}: watching Spinnaker's Deployments")
        stop.wait(0.5)
    for w in watches.values():
        w.stop.set()
    pool.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spinboot.sandbox.spinnaker.controller")
    p.add_argument("--clusters-dir", required=True, type=Path)
    p.add_argument("--endpoints", required=True, type=Path)
    p.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    args = p.parse_args(argv)

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    os.environ.pop("KUBECONFIG", None)
    run(args.clusters_dir, args.endpoints, log, args.parent_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
