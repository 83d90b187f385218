"""The Halyard stage: Halyard's manifests, the target kubeconfigs, the bundle copied into the pod and run there,
then the Spinnaker services' rollout.

An unchanged bundle is not run again: its hash (and the kubeconfigs' hash) is recorded in the ConfigMap
``spinboot-halyard`` in Halyard's namespace only after configure.sh succeeded, so an interrupted run is simply
run again next time.

A plan made before the Spinnaker cluster exists runs the same ``apply_halyard`` against ``AbsentCluster``, a
cluster with nothing in it, so plan and apply cannot disagree about what a first install writes.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Callable

from ..changes import Change
from ..config.model import SpinbootConfig
from ..render import MANIFEST, bundle_hash
from ..render import pod_paths
from ..render.halyard import HALYARD_NAME, halyard_manifests
from .podexec import ExecError, copy_into_pod, exec_in_pod
from .resources import Kube, KubeError
from .targets import read_record, record_manifest, target_record

STATE_CONFIGMAP = "spinboot-halyard"
KUBECONFIG_SECRET = "spinboot-target-kubeconfigs"
POD_READY_SECONDS = 600
ROLLOUT_SECONDS = 1200
BUNDLE_DIR = pod_paths.SPINBOOT_DIR + "/bundle"


class HalyardError(Exception):
    pass


def pod_name() -> str:
    return f"{HALYARD_NAME}-0"


def kubeconfigs_hash(kubeconfigs: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(kubeconfigs):
        h.update(name.encode() + b"\0" + hashlib.sha256(kubeconfigs[name]).digest())
    return h.hexdigest()


def _secret(cfg: SpinbootConfig, kubeconfigs: dict[str, bytes]) -> dict:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": KUBECONFIG_SECRET, "namespace": cfg.spinnaker.halyard.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "spinboot"}},
        "data": {pod_paths.kubeconfig_file(n): base64.b64encode(b).decode() for n, b in sorted(kubeconfigs.items())},
    }


def _state(cfg: SpinbootConfig, bundle: str, kubes: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": STATE_CONFIGMAP, "namespace": cfg.spinnaker.halyard.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "spinboot"}},
            "data": {"bundleSha256": bundle, "kubeconfigsSha256": kubes, "spinnakerVersion": cfg.spinnaker.version}}


def bundle_files(files: dict[str, bytes]) -> dict[str, tuple[bytes, int]]:
    """The halconfig/ part of a render, as it is laid out in the pod, plus the manifest."""
    out = {rel.removeprefix("halconfig/"): (body, 0o755 if rel.endswith(".sh") else 0o644)
           for rel, body in files.items() if rel.startswith("halconfig/")}
    out[MANIFEST] = (files[MANIFEST], 0o644)
    return out


class AbsentCluster:
    """The Spinnaker cluster before it exists, as ``apply_halyard`` reads it: every read finds nothing, and a
    dry-run apply of any object is a "create" (what ``Kube.apply`` answers for an object in a new cluster). It can
    only be planned against: a write raises HalyardError."""

    name = "spinnaker (not created yet)"

    def get(self, obj_or_path) -> None:
        return None

    def list(self, api_version: str, kind: str, namespace: str | None = None, labels: str | None = None) -> list:
        return []

    def request(self, method: str, path: str, query: dict | None = None, body=None, ok=()) -> tuple[int, dict]:
        if method != "GET":
            raise HalyardError("the Spinnaker cluster does not exist yet, so nothing can be written to it")
        return 200, {"items": []}   # a list finds nothing

    def apply(self, obj: dict, dry_run: bool = False) -> Change:
        if not dry_run:
            raise HalyardError("the Spinnaker cluster does not exist yet, so nothing can be applied to it")
        meta = obj["metadata"]
        return Change("create", obj["kind"], meta["name"], meta.get("namespace"))


def apply_halyard(kube: Kube | AbsentCluster, cfg: SpinbootConfig, files: dict[str, bytes],
                  kubeconfigs: dict[str, bytes] | None, dry_run: bool = False,
                  progress: Callable[[str], None] = lambda m: None,
                  on_line: Callable[[str, str], None] = lambda s, l: None, force: bool = False,
                  iam_wait_seconds: int = 0) -> list[Change]:
    """``iam_wait_seconds``: how long configure.sh may retry a registry account whose read grant this run just
    made (configure.sh's retry_iam). ``kube`` is an ``AbsentCluster`` for a plan made before the cluster exists."""
    if isinstance(kube, AbsentCluster) and not dry_run:
        raise HalyardError("the Spinnaker cluster does not exist yet, so Halyard cannot be deployed")
    changes: list[Change] = []
    for docs in halyard_manifests(cfg).values():
        for obj in docs:
            changes.append(kube.apply(obj, dry_run=dry_run))
    hns = cfg.spinnaker.halyard.namespace
    record = {**read_record(kube, hns), **target_record(cfg.targets)}
    changes.append(kube.apply(record_manifest(hns, record), dry_run=dry_run))
    if kubeconfigs is not None:
        ch = kube.apply(_secret(cfg, kubeconfigs), dry_run=dry_run)
        changes.append(Change(ch.action, "Secret", ch.name, ch.namespace, "target kubeconfigs (values not shown)"))
    ns = cfg.spinnaker.halyard.namespace
    want_bundle = bundle_hash(files)
    want_kubes = kubeconfigs_hash(kubeconfigs) if kubeconfigs is not None else None
    state = kube.get(f"/api/v1/namespaces/{ns}/configmaps/{STATE_CONFIGMAP}") or {}
    have = state.get("data") or {}
    reasons = []
    if have.get("bundleSha256") != want_bundle:
        reasons.append("the rendered bundle changed" if have else "first run")
    if want_kubes is not None and have.get("kubeconfigsSha256") not in (None, want_kubes) and have:
        reasons.append("target credentials changed")
    if have and not kube.list("apps/v1", "Deployment", cfg.spinnaker.namespace, labels="app=spin"):
        reasons.append(f"Spinnaker's services are missing from {cfg.spinnaker.namespace}")
    if force:
        reasons.append("forced")
    kind = "Halyard configuration"
    if not reasons:
        changes.append(Change("unchanged", kind, "configure.sh", ns, f"bundle {want_bundle[:12]} already applied"))
        if not dry_run:
            wait_rollout(kube, cfg, progress)
        return changes
    changes.append(Change("update" if have else "create", kind, "configure.sh", ns,
                          f"run configure.sh ({', '.join(reasons)}); then hal deploy apply"))
    ran = _state(cfg, want_bundle, want_kubes or have.get("kubeconfigsSha256", ""))
    if dry_run:   # and, once it succeeded, the record of what ran (written below): a plan lists every write
        action = "create" if not state else ("unchanged" if have == ran["data"] else "update")
        return changes + [Change(action, "ConfigMap", STATE_CONFIGMAP, ns, "bundle and credentials applied")]
    wait_pod_ready(kube, ns, pod_name(), progress)
    api = kube.api
    progress("copying the bundle into the Halyard pod")
    try:
        copy_into_pod(api, ns, pod_name(), BUNDLE_DIR, bundle_files(files), replace=True)
        if kubeconfigs is not None:   # replace: a former target's kubeconfig leaves the pod with it
            copy_into_pod(api, ns, pod_name(), pod_paths.KUBECONFIG_DIR,
                          {pod_paths.kubeconfig_file(n): (b, 0o600) for n, b in kubeconfigs.items()}, replace=True)
        progress("running configure.sh in the Halyard pod")
        script = f'SPINBOOT_IAM_WAIT_SECONDS={int(iam_wait_seconds)} exec bash "{BUNDLE_DIR}/configure.sh"'
        result = exec_in_pod(api, ns, pod_name(), ["bash", "-c", script],
                             on_line=on_line, timeout=3600)
    except ExecError as exc:
        raise HalyardError(str(exc)) from None
    if result.returncode != 0:
        failing = [ln for ln in result.stderr.splitlines() if "configure.sh failed at line" in ln]
        detail = failing[-1] if failing else (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        why = hal_problems(result.stdout + "\n" + result.stderr)
        raise HalyardError(f"configure.sh failed in {ns}/{pod_name()} (exit {result.returncode}): {detail}"
                           + (("\n" + "\n".join(why)) if why else ""))
    recorded = kube.apply(ran)
    changes.append(Change(recorded.action, recorded.kind, recorded.name, recorded.namespace,
                          "bundle and credentials applied"))
    wait_rollout(kube, cfg, progress)
    return changes


def hal_problems(output: str, limit: int = 20) -> list[str]:
    """Halyard's own account of a failure: its ``! ERROR`` lines and validation blocks (``Validation in ...``,
    then indented ``? `` / ``- WARNING`` / ``spin-...`` lines), so the step names the service and the call."""
    out, block = [], False
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith(("! ERROR", "Validation in ")):
            out.append(stripped)
            block = True
        elif block and (line.startswith((" ", "\t")) or stripped.startswith(("? ", "- WARNING", "- ERROR"))) and stripped:
            out.append("  " + stripped)
        else:
            block = False
    return list(dict.fromkeys(out))[:limit]


def _crash_looping(kube: Kube, ns: str, deployment: dict) -> str | None:
    """A pod of the Deployment waiting in CrashLoopBackOff, with its last termination message, or None."""
    labels = ",".join(f"{k}={v}" for k, v in ((deployment.get("spec") or {}).get("selector") or {})
                      .get("matchLabels", {}).items())
    for pod in kube.list("v1", "Pod", ns, labels=labels or None):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff":
                last = ((cs.get("lastState") or {}).get("terminated") or {}).get("message") or waiting.get("message")
                return f"{pod['metadata']['name']} is in CrashLoopBackOff" + (f": {last.strip()}" if last else "")
    return None


def wait_pod_ready(kube: Kube, ns: str, name: str, progress, timeout: float = POD_READY_SECONDS) -> None:
    """Wait for the pod's Ready condition; say why it is not ready (unschedulable, pulling, crashing) meanwhile."""
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        pod = kube.get(f"/api/v1/namespaces/{ns}/pods/{name}") or {}
        status = pod.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        if conditions.get("Ready", {}).get("status") == "True":
            return
        why = next((f"{c.get('reason', '')}: {c.get('message', '')}" for c in conditions.values()
                    if c.get("status") == "False" and c.get("message")), status.get("phase", "not created yet"))
        if why != said:
            progress(f"waiting for pod {ns}/{name}: {why}")
            said = why
        if time.monotonic() > deadline:
            raise HalyardError(f"pod {ns}/{name} not ready after {timeout:.0f} s ({why}); "
                               f"see: kubectl -n {ns} describe pod {name}")
        time.sleep(1)


def wait_rollout(kube: Kube, cfg: SpinbootConfig, progress, timeout: float = ROLLOUT_SECONDS) -> None:
    """Wait until every Spinnaker Deployment Halyard made has all its replicas updated and available."""
    ns = cfg.spinnaker.namespace
    deadline = time.monotonic() + timeout
    said = False
    while True:
        deployments = kube.list("apps/v1", "Deployment", ns, labels="app=spin")
        pending = []
        for d in deployments:
            spec, st = d.get("spec") or {}, d.get("status") or {}
            want = spec.get("replicas", 1)
            # As `kubectl rollout status`: also pending while old replicas remain (a Ready old pod must not hide a
            # crash-looping new one).
            if (st.get("observedGeneration", 0) < d["metadata"].get("generation", 0) or st.get("updatedReplicas", 0) < want
                    or st.get("availableReplicas", 0) < want or st.get("replicas", 0) > want):
                pending.append(d)
        if deployments and not pending:
            return
        # A crash loop does not heal by waiting: say which service and why now, not after the timeout.
        crashing = [f"{d['metadata']['name']}: {why}" for d in pending if (why := _crash_looping(kube, ns, d))]
        if crashing:
            raise HalyardError(f"Spinnaker rollout in {ns} failed: " + "; ".join(crashing))
        if not said:
            progress(f"waiting for Spinnaker's rollout in {ns}")
            said = True
        if time.monotonic() > deadline:
            what = ", ".join(d["metadata"]["name"] for d in pending) if deployments else "no Spinnaker Deployments found"
            raise HalyardError(f"Spinnaker rollout in {ns} not complete after {timeout:.0f} s: {what}")
        time.sleep(1)
