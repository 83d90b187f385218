"""The kustomize engine's apply: the built objects server-side applied in an upgrade-safe order, the target
kubeconfig Secret, prune of what left the build, and rollout waits that fail fast with the failing pod's reason.

What is applied is exactly what ``kustomize build`` prints for the rendered tree (spinboot.render.kustomize, built
by spinboot.render.kustomize_build), plus one object that never enters the reviewable tree: the Secret holding the
kubeconfigs the ``rbac:<target>`` steps minted (``kubeconfig_secret``). Its content hash goes on clouddriver's pod
template only (``KUBECONFIGS_HASH``), so adding or removing a target rolls clouddriver and nothing else.

Order (``wave``): the namespace, service accounts, RBAC, config (ConfigMaps, Secrets), Services and Redis first, then
the services in waves, each wave's rollout awaited before the next starts:

1. redis: orca, echo, gate, igor and clouddriver's caching connect to it at startup.
2. front50, clouddriver (and fiat): the services that own data and accounts the others read at startup and on
   every request; a newer orca or gate must never meet an older front50 or clouddriver API.
3. orca, echo, igor, rosco (keel, kayenta): the workers, which call the services of wave 2.
4. gate: the API, which calls all of the above;
5. deck last: the UI, so a browser is never handed a UI for an API that is not there yet.
Everything else (Ingress, BackendConfig, ManagedCertificate) comes after deck: exposure switches last.
This is spinboot's decision, following the direction in which the services call each other (each service reaches
the others through its ``services.<name>.baseUrl`` settings); it starts like the sandbox hal stand-in's deploy
order (spinboot/sandbox/hal/deploy.py ORDER: redis, clouddriver, front50 first, deck last).

A second apply with nothing to change makes no mutating call: every object goes through ``Kube.apply`` (applied
hash fast path, dry-run compare), the prune listing is reads, and the lock is taken only when something changes.
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import yaml

from ..changes import Change
from ..config.model import SpinbootConfig
from ..render import pod_paths
from .halyard import ROLLOUT_SECONDS, _crash_looping, kubeconfigs_hash
from .resources import KINDS, MANAGED_LABEL, Kube, KubeError

Progress = Callable[[str], None]

# Interface constants of spinboot.render.kustomize (spinboot/render/kustomize/labels.py); read from there once the
# tree package exists, with the agreed values as fallback so this module imports on its own.
try:  # pragma: no cover - depends on whether the tree package has landed
    from ..render.kustomize.labels import COMPONENT, CONFIG_HASH, INSTALL_LABEL, PART_OF
except ImportError:  # pragma: no cover
    INSTALL_LABEL = "spinboot.dev/install"
    PART_OF = ("app.kubernetes.io/part-of", "spinnaker")
    COMPONENT = "app.kubernetes.io/component"
    CONFIG_HASH = "spinboot.dev/config-sha256"

KUBECONFIG_SECRET = "spinboot-clouddriver-kubeconfigs"
KUBECONFIG_MOUNT = "/var/run/spinboot/kubeconfigs"
KUBECONFIGS_HASH = "spinboot.dev/kubeconfigs-sha256"     # on clouddriver's pod template only

# Kinds the tree may hold beyond what spinboot.kube.resources knows: (apiVersion, kind) -> (prefix, plural, namespaced)
EXTRA_KINDS: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("v1", "PersistentVolumeClaim"): ("/api/v1", "persistentvolumeclaims", True),
    ("policy/v1", "PodDisruptionBudget"): ("/apis/policy/v1", "poddisruptionbudgets", True),
    ("networking.k8s.io/v1", "Ingress"): ("/apis/networking.k8s.io/v1", "ingresses", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    ("cloud.google.com/v1", "BackendConfig"): ("/apis/cloud.google.com/v1", "backendconfigs", True),
    ("networking.gke.io/v1", "ManagedCertificate"): ("/apis/networking.gke.io/v1", "managedcertificates", True),
}
for _k, _v in EXTRA_KINDS.items():   # Kube addresses objects through this table
    KINDS.setdefault(_k, _v)

# Kinds prune looks for. Never Namespaces (deleting one deletes everything in it), Leases (the lock), Pods, or
# PersistentVolumeClaims (a StatefulSet's claims carry its template's labels and hold Redis's data).
PRUNABLE = [k for k in KINDS if k[1] not in ("Namespace", "Lease", "Pod", "PersistentVolumeClaim")]

SERVICE_WAVES: tuple[tuple[str, ...], ...] = (
    ("redis",),
    ("front50", "clouddriver", "fiat"),
    ("orca", "echo", "igor", "rosco", "keel", "kayenta"),
    ("gate",),
    ("deck",),
)
_BEFORE = {"Namespace": 0, "ServiceAccount": 1, "ClusterRole": 2, "Role": 2, "ClusterRoleBinding": 3,
           "RoleBinding": 3, "ConfigMap": 4, "Secret": 4, "PersistentVolumeClaim": 4, "Service": 5}
WORKLOADS = ("Deployment", "StatefulSet")


class KustomizeApplyError(KubeError):
    """Applying or rolling out the kustomize build failed; the message names the object or service and why."""


# --- the desired objects --------------------------------------------------------------------------------------------

def build_objects(files: dict[str, bytes], log: Progress | None = None) -> list[dict]:
    """``kustomize build`` of the rendered tree: the ``kustomize/`` files written to a private temporary directory
    (mode 0700: the tree is reviewable, but the directory is nobody else's business) and built there."""
    from ..render.kustomize_build import build_tree

    tree = {rel: body for rel, body in files.items() if rel.startswith("kustomize/")}
    if not tree:
        raise KustomizeApplyError("the render has no kustomize/ tree (is spinnaker.engine kustomize?)")
    with tempfile.TemporaryDirectory(prefix="spinboot-kustomize-") as tmp:
        os.chmod(tmp, 0o700)
        for rel, body in tree.items():
            path = Path(tmp) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body if isinstance(body, bytes) else str(body).encode())
        out = build_tree(Path(tmp) / "kustomize", log=log)
    return [d for d in yaml.safe_load_all(out) if d]


def service_of(obj: dict) -> str | None:
    """The Spinnaker service a workload runs (the tree's component label; else its name without ``spin-``)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(COMPONENT) or obj["metadata"]["name"].removeprefix("spin-")


def kubeconfig_secret(cfg: SpinbootConfig, kubeconfigs: dict[str, bytes]) -> dict:
    """The Secret clouddriver mounts: the tree's ``kubeconfig_secret`` once it exists (it decides file names to
    match clouddriver's account config), else the agreed name with one ``<target>.kubeconfig`` key each."""
    try:
        from ..render.kustomize import kubeconfig_secret as tree_secret
    except ImportError:
        tree_secret = None
    if tree_secret is not None:
        obj = tree_secret(cfg, kubeconfigs)
    else:
        obj = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": KUBECONFIG_SECRET, "namespace": cfg.spinnaker.namespace},
               "data": {pod_paths.kubeconfig_file(n): base64.b64encode(b).decode()
                        for n, b in sorted(kubeconfigs.items())}}
    meta = obj.setdefault("metadata", {})
    labels = meta.setdefault("labels", {})
    labels.setdefault(MANAGED_LABEL, "spinboot")
    labels.setdefault(INSTALL_LABEL, cfg.spinnaker.namespace)
    labels.setdefault(PART_OF[0], PART_OF[1])
    return obj


def desired(cfg: SpinbootConfig, built: list[dict], kubeconfigs: dict[str, bytes] | None) -> list[dict]:
    """The build plus the kubeconfig Secret, with the kubeconfigs' hash on clouddriver's pod template (only there:
    nothing else reads them, so nothing else rolls when a target is added)."""
    out = [dict(o) for o in built]
    if kubeconfigs is None:
        return out
    digest = kubeconfigs_hash(kubeconfigs)
    for i, o in enumerate(out):
        if o.get("kind") == "Deployment" and service_of(o) == "clouddriver":
            o = yaml.safe_load(yaml.safe_dump(o))   # a deep copy: the build's object stays as built
            tmpl = o.setdefault("spec", {}).setdefault("template", {}).setdefault("metadata", {})
            tmpl.setdefault("annotations", {})[KUBECONFIGS_HASH] = digest
            out[i] = o
    out.append(kubeconfig_secret(cfg, kubeconfigs))
    return out


def wave(obj: dict) -> tuple[int, int, str]:
    """Sort key: everything a service needs before it, services in their waves, exposure last."""
    kind = obj.get("kind", "")
    name = obj["metadata"]["name"]
    if kind in _BEFORE:
        return 0, _BEFORE[kind], name
    if kind in WORKLOADS:
        svc = service_of(obj)
        for i, group in enumerate(SERVICE_WAVES):
            if svc in group:
                return 1 + i, group.index(svc), name
        return len(SERVICE_WAVES), 99, name   # an unknown workload (a user's component): before exposure
    return len(SERVICE_WAVES) + 1, 0, f"{kind}/{name}"


def _key(obj: dict) -> tuple[str, str, str, str]:
    m = obj["metadata"]
    return obj["apiVersion"], obj["kind"], m.get("namespace") or "", m["name"]


def _images(obj: dict | None) -> dict[str, str]:
    spec = ((((obj or {}).get("spec") or {}).get("template") or {}).get("spec") or {})
    return {c["name"]: c.get("image", "") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])}


def _image_detail(live: dict | None, want: dict) -> str:
    """``image orca: ghcr.io/spinnaker/orca:2026.2.3 -> ...:2026.3.0`` for each container whose image changes."""
    before, after = _images(live), _images(want)
    return "; ".join(f"image {n}: {before.get(n) or '(none)'} -> {img}" for n, img in sorted(after.items())
                     if before.get(n) != img)


# --- prune ----------------------------------------------------------------------------------------------------------

def leftovers(kube: Kube, cfg: SpinbootConfig, want: Iterable[dict]) -> list[dict]:
    """Live objects labelled as this install's (INSTALL_LABEL = the Spinnaker namespace) that the build no longer
    has. Kinds a cluster does not serve (GKE's CRDs in a plain cluster) are skipped."""
    ns = cfg.spinnaker.namespace
    wanted = {_key(o) for o in want}
    selector = f"{INSTALL_LABEL}={ns},{MANAGED_LABEL}=spinboot"
    out = []
    for (api_version, kind) in PRUNABLE:
        prefix, plural, namespaced = KINDS[(api_version, kind)]
        path = f"{prefix}/namespaces/{ns}/{plural}" if namespaced else f"{prefix}/{plural}"
        status, data = kube.request("GET", path, query={"labelSelector": selector}, ok=(404,))
        if status == 404:
            continue
        for item in data.get("items", []):
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            if item["metadata"].get("ownerReferences"):
                continue   # made by a controller from an object spinboot applied (ReplicaSets, token Secrets)
            if _key(item) not in wanted:
                out.append(item)
    return sorted(out, key=lambda o: (-wave(o)[0], o["kind"], o["metadata"]["name"]))   # reverse order


# kustomize's name suffix: 10 hex digits of a sha256 with 0 1 3 a e spelled g h k m t (sigs.k8s.io/kustomize/api
# hasher/hasher.go, encode), so a generated name never looks like a word.
_GENERATED = re.compile(r"^(?P<base>.+)-[245-9bcdfghkmt]{10}$")


def replaced_by(obj: dict, want: list[dict]) -> str:
    """The name of the object of the build that replaces ``obj``, when ``obj`` is a generated ConfigMap or Secret
    (``<name>-<hash>``, kustomize's configMapGenerator/secretGenerator) whose content changed; else "". Such a
    deletion is the normal end of a config change (as ``kubectl apply --prune`` does it), not a removal that needs
    --yes."""
    if obj["kind"] not in ("ConfigMap", "Secret"):
        return ""
    m = _GENERATED.match(obj["metadata"]["name"])
    if not m:
        return ""
    for o in want:
        n = _GENERATED.match(o["metadata"]["name"]) if o["kind"] == obj["kind"] else None
        if n and n.group("base") == m.group("base"):
            return o["metadata"]["name"]
    return ""


# --- rollout --------------------------------------------------------------------------------------------------------

def _pending(obj: dict) -> bool:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    want = spec.get("replicas", 1)
    if st.get("observedGeneration", 0) < obj["metadata"].get("generation", 0):
        return True
    if obj["kind"] == "StatefulSet":
        return st.get("readyReplicas", 0) < want or st.get("updatedReplicas", 0) < want
    # As `kubectl rollout status`: also pending while old replicas remain (a Ready old pod must not hide a
    # crash-looping new one).
    return (st.get("updatedReplicas", 0) < want or st.get("availableReplicas", 0) < want
            or st.get("replicas", 0) > want)


def wait_rollout(kube: Kube, workloads: list[dict], progress: Progress, timeout: float = ROLLOUT_SECONDS) -> None:
    """Wait until every workload has all its replicas updated and available; a crash-looping pod fails at once,
    naming the service and the container's last termination message (its reason for exiting)."""
    if not workloads:
        return
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        live = [kube.get(w) for w in workloads]
        missing = [w["metadata"]["name"] for w, l in zip(workloads, live) if l is None]
        pending = [l for l in live if l is not None and _pending(l)]
        if not missing and not pending:
            return
        crashing = [f"{service_of(d)} ({d['metadata']['name']}): {why}" for d in pending
                    if (why := _crash_looping(kube, d["metadata"]["namespace"], d))]
        if crashing:
            raise KustomizeApplyError("Spinnaker rollout failed: " + "; ".join(crashing))
        names = ", ".join(sorted(missing + [d["metadata"]["name"] for d in pending]))
        if names != said:
            progress(f"waiting for rollout: {names}")
            said = names
        if time.monotonic() > deadline:
            raise KustomizeApplyError(f"Spinnaker rollout not complete after {timeout:.0f} s: {names}")
        time.sleep(0.5)


# --- apply ----------------------------------------------------------------------------------------------------------

def apply_objects(kube: Kube, cfg: SpinbootConfig, objs: list[dict], *, dry_run: bool = False,
                  allow_delete: bool = False, progress: Progress = lambda m: None,
                  rollout_timeout: float = ROLLOUT_SECONDS) -> list[Change]:
    """Make the Spinnaker namespace hold exactly ``objs`` (see the module docstring). With ``dry_run`` nothing is
    written and the changes are what apply would do, Deployments' image changes spelled out. Objects to prune are
    refused before anything is written unless ``allow_delete`` (--yes)."""
    ordered = sorted(objs, key=wave)
    gone = leftovers(kube, cfg, ordered)
    successors = {o["metadata"]["name"]: replaced_by(o, ordered) for o in gone}
    removed = [o for o in gone if not successors[o["metadata"]["name"]]]
    if removed and not (dry_run or allow_delete):
        raise KustomizeApplyError("would delete " + ", ".join(
            Change("delete", o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")).ref for o in removed)
            + " (no longer in the build); re-run with --yes to delete")
    changes: list[Change] = []
    rolled: list[dict] = []
    current = None
    for obj in ordered:
        w = wave(obj)[0]
        if current is not None and w != current and not dry_run:
            wait_rollout(kube, rolled, progress, rollout_timeout)   # the previous wave is up before the next
            rolled = []
        current = w
        live = kube.get(obj) if dry_run and obj["kind"] == "Deployment" else None
        ch = kube.apply(obj, dry_run=dry_run)
        if obj["kind"] == "Secret":   # values are never shown
            ch = Change(ch.action, ch.kind, ch.name, ch.namespace, "values not shown" if ch.mutating else "")
        elif ch.action == "update" and obj["kind"] == "Deployment":
            detail = _image_detail(live, obj) if dry_run else ""
            if detail:
                ch = Change(ch.action, ch.kind, ch.name, ch.namespace, detail + "; " + ch.detail)
        changes.append(ch)
        if obj["kind"] in WORKLOADS:
            rolled.append(obj)
    if not dry_run:
        wait_rollout(kube, rolled, progress, rollout_timeout)
    for obj in gone:   # after the rollout: the pods that read an old generated ConfigMap are gone by now
        meta = obj["metadata"]
        why = f"replaced by {successors[meta['name']]}" if successors[meta["name"]] else "no longer in the build"
        if dry_run:
            changes.append(Change("delete", obj["kind"], meta["name"], meta.get("namespace"), why))
            continue
        progress(f"pruning {obj['kind']} {meta['name']}: {why}")
        ch = kube.delete(obj)
        changes.append(Change(ch.action, ch.kind, ch.name, ch.namespace, why))
    return changes



__all__ = ["KUBECONFIGS_HASH", "KustomizeApplyError", "apply_objects", "build_objects", "desired",
           "kubeconfig_secret", "leftovers", "wait_rollout", "wave"]
