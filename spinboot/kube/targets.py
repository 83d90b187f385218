"""Spinnaker's account in one target cluster: apply its RBAC, wait for its token, mint its kubeconfig, prove
least privilege.

The proof asks the API server itself (SubjectAccessReview) what the service account may do: it must be allowed
to deploy in each listed namespace (a ServiceAccount included, and read ControllerRevisions for rollout undo),
and denied in kube-system, in a namespace not on the list, for secrets and namespaces cluster-wide, and for
minting tokens of other service accounts. Either side being wrong fails the stage, whoever granted the extra rights.

The proof is asked again only when something that can change its answer changed since the last proof (or on
``--reprove``): the resourceVersions of every (Cluster)Role and (Cluster)RoleBinding that can reach the service
account, and of the account itself, are fingerprinted and kept on the account's token Secret (see
``rbac_fingerprint``). docs/performance.md has what that saves.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Callable

import yaml
from kubernetes.client.exceptions import ApiException

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
    proof_decision: "ProofDecision | None" = None   # whether the proof was asked again, and why


def _missing_namespaces(kube: Kube, namespaces: list[str]) -> list[str]:
    return [ns for ns in namespaces if kube.get(f"/api/v1/namespaces/{ns}") is None]


def apply_target(kube: Kube, target: Target, endpoint: str, dry_run: bool = False, prove: bool = True,
                 allow_delete: bool = False, reprove: bool = False,
                 progress: Callable[[str], None] = lambda m: None,
                 report: Callable[..., None] = lambda event, **fields: None) -> TargetResult:
    """``reprove``: ask the proof even when nothing that can reach the account changed since the last one.
    ``progress``/``report``: the step's progress line and JSON ``proof`` event, said before the proof is asked
    (so a failing proof is preceded by why it was asked)."""
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
        if prove:   # what apply would do about the proof, from the same fingerprint (plan asks no review)
            d = decide_proof(read_proof_record(kube, target), rbac_fingerprint(kube, target), reprove)
            result.proof_decision = d
            _say(progress, report, d, planned=True)
        return result
    token, ca = wait_for_token(kube, target)
    result.kubeconfig = mint_kubeconfig(target.name, endpoint, ca, token)
    if prove:
        # Taken before the reviews: a change made while they run is not in it, so the next run asks again.
        fingerprint = rbac_fingerprint(kube, target)
        d = decide_proof(read_proof_record(kube, target), fingerprint, reprove)
        result.proof_decision = d
        _say(progress, report, d)
        if d.prove:
            result.proof = prove_least_privilege(kube, target)
            progress(f"least privilege proven: {len(result.proof)} access reviews as expected")
            try:
                write_proof_record(kube, target, fingerprint)
            except ApiException as exc:   # the proof stands; without its record the next apply only asks again
                progress(f"the proof's fingerprint was not recorded (HTTP {exc.status}): the next apply proves again")
            report("proof", decision="proved", reason=d.reason, checks=result.proof)
    return result


def _say(progress: Callable[[str], None], report: Callable[..., None], d: "ProofDecision", planned: bool = False):
    if planned:
        progress(("apply would re-prove: " if d.prove else "apply would skip the proof: ") + d.reason)
        report("proof", decision="would re-prove" if d.prove else "would skip", reason=d.reason, checks=[])
    elif d.prove:
        progress(f"re-proving: {d.reason}")
    else:
        progress(f"proof skipped: {d.reason}")
        report("proof", decision="skipped", reason=d.reason, checks=[])


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


def identity(target: Target) -> tuple[str, list[str]]:
    """The user and groups the API server authenticates Spinnaker's token as (a service account's token carries
    these: kubernetes apiserver/pkg/authentication/serviceaccount/util.go, MakeUsername and MakeGroupNames, plus
    system:authenticated added to every authenticated request)."""
    sa = target.service_account
    return (f"system:serviceaccount:{sa.namespace}:{sa.name}",
            ["system:serviceaccounts", f"system:serviceaccounts:{sa.namespace}", "system:authenticated"])


def _review(kube: Kube, target: Target, verb: str, resource: str, group: str = "", namespace: str = "") -> bool:
    user, groups = identity(target)
    body = {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": groups,
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


def proof_checks(target: Target) -> tuple[list[tuple[str, str, str, str]], list[tuple[str, str, str, str]]]:
    """(must allow, must deny): (verb, resource, group, namespace) questions the proof asks about the account."""
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
    return must_allow, must_deny


def prove_least_privilege(kube: Kube, target: Target) -> list[str]:
    """Ask the API server; return the findings, or raise when Spinnaker may do too little or too much."""
    must_allow, must_deny = proof_checks(target)
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


# --- when to ask the proof again ------------------------------------------------------------------------------
# The proof's answers can only change when RBAC that can reach the account changes: a (Cluster)RoleBinding whose
# subjects match its user or one of its groups, the (Cluster)Role such a binding refers to (or that role coming
# into existence), a ClusterRole aggregated into one of those, the account itself, or the questions asked (the
# file's namespaces, spinboot's version of the proof). Every write to an object gives it a new resourceVersion, so
# a fingerprint of those names and resourceVersions that still equals the one taken at the last successful proof
# means the same answers. Other authorizers (a webhook, GKE's IAM for Google identities) are not fingerprinted:
# `--reprove` and `spinboot doctor` ask anyway.

PROOF_ANNOTATION = "spinboot.dev/rbac-proof"   # on the account's token Secret: {"at": time, "objects": {ref: rv}}
PROOF_FIELD_MANAGER = "spinboot-proof"         # not "spinboot": the Secret's server-side apply leaves it alone
CHECKS_REF = "proof questions"
_RBAC = "rbac.authorization.k8s.io/v1"


@dataclass(frozen=True)
class ProofDecision:
    prove: bool
    reason: str   # "unchanged since <time>", "ClusterRoleBinding x changed", "--reprove", ...


def _subject_matches(subject: dict, binding_namespace: str, user: str, groups: list[str]) -> bool:
    """Whether one binding subject names the account, as the RBAC authorizer decides it (kubernetes
    plugin/pkg/auth/authorizer/rbac/rbac.go, appliesToUser: a ServiceAccount subject without a namespace in a
    RoleBinding means the binding's namespace)."""
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user
    if kind == "Group":
        return name in groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return user == f"system:serviceaccount:{ns}:{name}"
    return False


def _selector_matches(selector: dict, labels: dict) -> bool:
    """A metav1.LabelSelector (matchLabels and matchExpressions) against an object's labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        ok = {"In": lambda: labels.get(key) in values, "NotIn": lambda: labels.get(key) not in values,
              "Exists": lambda: key in labels, "DoesNotExist": lambda: key not in labels}.get(op, lambda: False)()
        if not ok:
            return False
    return True


def _checks_digest(target: Target) -> str:
    user, groups = identity(target)
    allow, deny = proof_checks(target)
    return hashlib.sha256(json.dumps([user, groups, allow, deny]).encode()).hexdigest()[:16]


def fingerprint_of(target: Target, service_account: dict | None, cluster_roles: list[dict],
                   cluster_role_bindings: list[dict], role_bindings: list[dict],
                   roles: list[dict]) -> dict[str, str]:
    """ref → resourceVersion ("absent" for a referenced role that does not exist) of everything that can change
    the proof's answers. Pure: the lists are what the API server returned."""
    user, groups = identity(target)
    rv = lambda o: o["metadata"].get("resourceVersion", "")   # noqa: E731
    out: dict[str, str] = {CHECKS_REF: _checks_digest(target),
                           f"ServiceAccount {target.service_account.namespace}/{target.service_account.name}":
                               rv(service_account) if service_account else "absent"}
    by_name = {r["metadata"]["name"]: r for r in cluster_roles}
    roles_by = {(r["metadata"].get("namespace"), r["metadata"]["name"]): r for r in roles}
    wanted_cluster_roles: list[str] = []
    for kind, items in (("ClusterRoleBinding", cluster_role_bindings), ("RoleBinding", role_bindings)):
        for b in items:
            meta = b["metadata"]
            ns = meta.get("namespace") or ""
            if not any(_subject_matches(s, ns, user, groups) for s in b.get("subjects") or []):
                continue
            out[f"{kind} {ns + '/' if ns else ''}{meta['name']}"] = rv(b)
            ref = b.get("roleRef") or {}
            if ref.get("kind") == "Role":
                role = roles_by.get((ns, ref.get("name")))
                out[f"Role {ns}/{ref.get('name')}"] = rv(role) if role else "absent"
            else:
                wanted_cluster_roles.append(ref.get("name", ""))
    # Referenced ClusterRoles, and (transitively) those their aggregationRule selects: the aggregation controller
    # copies the selected roles' rules into the aggregated one (kubernetes pkg/controller/clusterroleaggregation).
    seen: set[str] = set()
    while wanted_cluster_roles:
        name = wanted_cluster_roles.pop()
        if name in seen:
            continue
        seen.add(name)
        role = by_name.get(name)
        out[f"ClusterRole {name}"] = rv(role) if role else "absent"
        for selector in ((role or {}).get("aggregationRule") or {}).get("clusterRoleSelectors") or []:
            wanted_cluster_roles += [r["metadata"]["name"] for r in cluster_roles
                                     if _selector_matches(selector, r["metadata"].get("labels") or {})]
    return out


def rbac_fingerprint(kube: Kube, target: Target) -> dict[str, str]:
    """Read what ``fingerprint_of`` needs: four lists and one get, however many namespaces the target has."""
    sa = target.service_account
    account = kube.get(f"/api/v1/namespaces/{sa.namespace}/serviceaccounts/{sa.name}")
    crbs = kube.list(_RBAC, "ClusterRoleBinding")
    rbs = kube.list(_RBAC, "RoleBinding")
    user, groups = identity(target)
    needs_roles = any(b.get("roleRef", {}).get("kind") == "Role"
                      and any(_subject_matches(s, b["metadata"].get("namespace", ""), user, groups)
                              for s in b.get("subjects") or []) for b in rbs)
    return fingerprint_of(target, account, kube.list(_RBAC, "ClusterRole"), crbs, rbs,
                          kube.list(_RBAC, "Role") if needs_roles else [])


def decide_proof(stored: dict | None, current: dict[str, str], reprove: bool = False) -> ProofDecision:
    """Prove again on --reprove, without an earlier proof, or when the fingerprint moved (saying what moved)."""
    if reprove:
        return ProofDecision(True, "--reprove")
    if not stored or not isinstance(stored.get("objects"), dict):
        return ProofDecision(True, "no earlier proof recorded")
    before: dict = stored["objects"]
    if before == current:
        return ProofDecision(False, f"unchanged since {stored.get('at', '?')}")
    moved = []
    if before.get(CHECKS_REF) != current.get(CHECKS_REF):
        moved.append("the questions changed (the file's namespaces or spinboot's proof)")
    for ref in sorted(set(before) | set(current), key=lambda r: ("Binding" not in r.split()[0], r)):  # bindings first
        if ref == CHECKS_REF or before.get(ref) == current.get(ref):
            continue
        was, now = before.get(ref, "absent"), current.get(ref, "absent")
        moved.append(f"{ref} {'added' if was == 'absent' else 'removed' if now == 'absent' else 'changed'}")
    shown = ", ".join(moved[:3]) + (f" and {len(moved) - 3} more" if len(moved) > 3 else "")
    return ProofDecision(True, shown)


def _token_secret_path(target: Target) -> str:
    return f"/api/v1/namespaces/{target.service_account.namespace}/secrets/{token_secret_name(target)}"


def read_proof_record(kube: Kube, target: Target) -> dict | None:
    """The fingerprint of the last successful proof, kept on the account's token Secret (removed with the
    target; its value is not secret)."""
    notes = ((kube.get(_token_secret_path(target)) or {}).get("metadata") or {}).get("annotations") or {}
    try:
        return json.loads(notes[PROOF_ANNOTATION])
    except (KeyError, ValueError):
        return None


def write_proof_record(kube: Kube, target: Target, fingerprint: dict[str, str]) -> None:
    at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    record = json.dumps({"at": at, "objects": fingerprint}, sort_keys=True, separators=(",", ":"))
    kube.request("PATCH", _token_secret_path(target), body={"metadata": {"annotations": {PROOF_ANNOTATION: record}}},
                 query={"fieldManager": PROOF_FIELD_MANAGER}, content_type="application/merge-patch+json")


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
