"""Spinnaker's account in one target cluster: apply its RBAC, wait for its token, mint its kubeconfig, prove
least privilege.

The proof asks the API server itself (SubjectAccessReview) what the service account may do: it must be allowed
to deploy in each listed namespace (a ServiceAccount included, and read ControllerRevisions for rollout undo),
and denied in kube-system, in a namespace not on the list, for secrets and namespaces cluster-wide, and for
minting tokens of other service accounts. Either side being wrong fails the stage, whoever granted the extra rights.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

import yaml

from ..config.model import Target
from ..render import pod_paths
from ..render.rbac import target_manifests, token_secret_name
from ..changes import Change
from .resources import MANAGED_LABEL, Kube, KubeError

TOKEN_WAIT_SECONDS = 60


@dataclass
class TargetResult:
    changes: list[Change] = field(default_factory=list)
    kubeconfig: bytes | None = None   # secret: never logged, written only with mode 0600
    proof: list[str] = field(default_factory=list)


def _missing_namespaces(kube: Kube, namespaces: list[str]) -> list[str]:
    return [ns for ns in namespaces if kube.get(f"/api/v1/namespaces/{ns}") is None]


def apply_target(kube: Kube, target: Target, endpoint: str, dry_run: bool = False, prove: bool = True,
                 allow_delete: bool = False) -> TargetResult:
    result = TargetResult()
    missing = _missing_namespaces(kube, target.namespaces)
    if missing:
        raise KubeError(f"target {target.name}: namespace(s) {', '.join(missing)} do not exist in the cluster "
                        f"(create them, or remove them from the target's namespaces)")
    desired = [obj for docs in target_manifests(target).values() for obj in docs]
    for obj in desired:
        result.changes.append(kube.apply(obj, dry_run=dry_run))
    stale = prune_stale(kube, target, desired, dry_run=True)
    if stale and not (dry_run or allow_delete):
        raise KubeError(f"target {target.name}: would delete " + ", ".join(c.ref for c in stale)
                        + " (no longer rendered from the file); re-run with --yes to delete")
    result.changes.extend(stale if dry_run else prune_stale(kube, target, desired))
    if dry_run:
        # Plan computes the kubeconfig apply would hand Halyard from the token already issued, so "target
        # credentials changed" shows in a plan exactly as in apply; none yet means they will change.
        issued = read_token(kube, target)
        if issued:
            result.kubeconfig = mint_kubeconfig(target.name, endpoint, issued[1], issued[0])
        return result
    token, ca = wait_for_token(kube, target)
    result.kubeconfig = mint_kubeconfig(target.name, endpoint, ca, token)
    if prove:
        result.proof = prove_least_privilege(kube, target)
    return result


def _key(obj: dict) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace") or "", meta["name"]


def prune_stale(kube: Kube, target: Target, desired: list[dict], dry_run: bool = False) -> list[Change]:
    """Delete what spinboot made for this target and no longer renders: RoleBindings of namespaces that left the
    file, and objects an earlier spinboot rendered (e.g. the cluster-wide namespace read it used to grant)."""
    want = {_key(o) for o in desired}
    selector = f"{MANAGED_LABEL}=spinboot,spinboot.dev/target={target.name}"
    stale = [obj for api_version, kind, _ in PRUNE_KINDS for obj in kube.list(api_version, kind, labels=selector)
             if _key(obj) not in want]
    if dry_run:
        return [Change("delete", o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in stale]
    return [kube.delete(o) for o in stale]


def read_token(kube: Kube, target: Target) -> tuple[str, str] | None:
    """(token, CA) from the account's token Secret once the token controller has filled it, else None."""
    path = f"/api/v1/namespaces/{target.service_account.namespace}/secrets/{token_secret_name(target)}"
    data = (kube.get(path) or {}).get("data") or {}
    if data.get("token") and data.get("ca.crt"):
        return base64.b64decode(data["token"]).decode(), base64.b64decode(data["ca.crt"]).decode()
    return None


def wait_for_token(kube: Kube, target: Target, timeout: float = TOKEN_WAIT_SECONDS) -> tuple[str, str]:
    """The token controller fills the Secret asynchronously; wait for it (with a deadline)."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        issued = read_token(kube, target)
        if issued:
            return issued
        if time.monotonic() > deadline:
            raise KubeError(f"target {target.name}: the token Secret {token_secret_name(target)} was not filled within "
                            f"{timeout:.0f} s (is kube-controller-manager's token controller running?)")
        time.sleep(delay)
        delay = min(delay * 2, 2)


def mint_kubeconfig(name: str, endpoint: str, ca_pem: str, token: str) -> bytes:
    """A kubeconfig for Spinnaker's account: one cluster, one user (the long-lived token), one context."""
    ctx = pod_paths.kubeconfig_context(name)
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": ctx,
        "clusters": [{"name": name, "cluster": {"server": endpoint,
                                                "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode()}}],
        "users": [{"name": f"spinnaker@{name}", "user": {"token": token}}],
        "contexts": [{"name": ctx, "context": {"cluster": name, "user": f"spinnaker@{name}"}}],
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _review(kube: Kube, target: Target, verb: str, resource: str, group: str = "", namespace: str = "") -> bool:
    sa = target.service_account
    body = {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{sa.namespace}:{sa.name}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{sa.namespace}", "system:authenticated"],
            "resourceAttributes": {"verb": verb, "resource": resource, "group": group, "namespace": namespace},
        },
    }
    _, data = kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=body)
    return bool((data.get("status") or {}).get("allowed"))


def unlisted_namespace(target: Target) -> str:
    for candidate in ("default", "spinboot-unlisted"):
        if candidate not in target.namespaces:
            return candidate
    return "spinboot-unlisted-2"


def prove_least_privilege(kube: Kube, target: Target) -> list[str]:
    """Ask the API server; return the findings, or raise when Spinnaker may do too little or too much."""
    must_allow = []
    for ns in target.namespaces:
        must_allow += [("create", "deployments", "apps", ns), ("patch", "services", "", ns),
                       ("delete", "configmaps", "", ns), ("list", "pods", "", ns),
                       ("create", "serviceaccounts", "", ns), ("list", "controllerrevisions", "apps", ns)]
    must_deny = [("create", "deployments", "apps", "kube-system"), ("get", "secrets", "", "kube-system"),
                 ("create", "deployments", "apps", unlisted_namespace(target)),
                 ("list", "secrets", "", ""), ("create", "clusterrolebindings", "rbac.authorization.k8s.io", ""),
                 ("create", "namespaces", "", ""), ("list", "namespaces", "", ""),
                 ("create", "serviceaccounts/token", "", target.namespaces[0])]
    if target.dangerously_allow_system_namespaces:
        must_deny = [d for d in must_deny if d[3] not in target.namespaces]
    wrong, findings = [], []
    for verb, res, group, ns in must_allow:
        ok = _review(kube, target, verb, res, group, ns)
        findings.append(f"{'allowed' if ok else 'DENIED'}: {verb} {res} in {ns}")
        if not ok:
            wrong.append(f"cannot {verb} {res} in {ns}")
    for verb, res, group, ns in must_deny:
        allowed = _review(kube, target, verb, res, group, ns)
        where = f"in {ns}" if ns else "cluster-wide"
        findings.append(f"{'ALLOWED' if allowed else 'denied'}: {verb} {res} {where}")
        if allowed:
            wrong.append(f"may {verb} {res} {where}")
    if wrong:
        sa = target.service_account
        raise KubeError(f"target {target.name}: least-privilege proof failed for {sa.namespace}/{sa.name}: "
                        + "; ".join(wrong) + " (look for RoleBindings or ClusterRoleBindings to it that spinboot "
                                             "did not make)")
    return findings


# --- targets removed from the file ----------------------------------------------------------------------------
# spinboot records the targets it manages in a ConfigMap in Halyard's namespace of the Spinnaker cluster (live
# state, like Halyard's own records), so `rbac apply --prune` can still reach a target after it left the file.

TARGETS_CONFIGMAP = "spinboot-targets"
# Kinds spinboot creates in a target, in the order they are removed (bindings before what they bind).
PRUNE_KINDS = [("rbac.authorization.k8s.io/v1", "RoleBinding", True),
               ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", False),
               ("rbac.authorization.k8s.io/v1", "ClusterRole", False),
               ("v1", "Secret", True), ("v1", "ServiceAccount", True)]


def target_record(targets: list[Target]) -> dict:
    return {t.name: t.model_dump(by_alias=True, include={"name", "gke", "kubeconfig", "service_account"},
                                 exclude_none=True) for t in targets}


def record_manifest(namespace: str, record: dict) -> dict:
    """The record as a ConfigMap. A target stays recorded after it leaves the file, until --prune removes it."""
    import json

    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": TARGETS_CONFIGMAP, "namespace": namespace,
                         "labels": {MANAGED_LABEL: "spinboot"}},
            "data": {"targets.json": json.dumps(record, indent=1, sort_keys=True)}}


def read_record(kube: Kube, namespace: str) -> dict:
    import json

    cm = kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{TARGETS_CONFIGMAP}") or {}
    return json.loads((cm.get("data") or {}).get("targets.json") or "{}")


def remove_target(kube: Kube, name: str, dry_run: bool = False) -> list[Change]:
    """Delete everything spinboot made for target ``name`` in this cluster. The service account's Namespace is
    left: other things may live there."""
    selector = f"{MANAGED_LABEL}=spinboot,spinboot.dev/target={name}"
    out = []
    for api_version, kind, _ in PRUNE_KINDS:
        for obj in kube.list(api_version, kind, labels=selector):
            meta = obj["metadata"]
            out.append(Change("delete", kind, meta["name"], meta.get("namespace")) if dry_run else kube.delete(obj))
    return out
