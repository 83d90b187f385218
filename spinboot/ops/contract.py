"""The Spinnaker contract (halconfig/contract.yaml, docs/spinnaker-contract.md), proved on live state, read-only.

For every Google call a Spinnaker service makes as Spinnaker's service account, Policy Troubleshooter says whether
the policies in force grant the permission on the exact resource (the IAM twin of the SubjectAccessReviews below;
https://cloud.google.com/policy-intelligence/docs/troubleshoot-access). For every Kubernetes verb clouddriver needs
in a target's namespaces, a SubjectAccessReview asks the target's API server. Checks are named
``spinnaker:<service>-<what>``, one each, so a missing grant names the service that would break and the call.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

from ..config.model import SpinbootConfig, Target
from ..kube.targets import _review
from ..render.gcp import artifact_registry_repos, pubsub_spec
from ..render.yamlio import load_data
from .checks import Check


@lru_cache(maxsize=1)
def contract() -> dict:
    return load_data("halconfig", "contract.yaml")


@lru_cache(maxsize=1)
def roles() -> dict[str, list[str]]:
    return {role: d["permissions"] for role, d in load_data("halconfig", "iam-roles.yaml")["roles"].items()}


def roles_holding(permission: str) -> list[str]:
    return sorted(role for role, perms in roles().items() if permission in perms)


@dataclass(frozen=True)
class GoogleNeed:
    service: str
    permission: str
    resource: str        # full resource name, as Policy Troubleshooter takes it
    call: str


def _full_names(cfg: SpinbootConfig, symbol: str) -> list[str]:
    """The contract's symbolic resources, as the file names them. Buckets pipelines name, the public halconfig
    bucket and project-level needs (front50 creating a missing bucket) are not spinboot's to grant."""
    if symbol == "bucket":
        return [f"//storage.googleapis.com/projects/_/buckets/{cfg.spinnaker.storage.bucket}"]
    if symbol == "subscription":
        return [f"//pubsub.googleapis.com/{s.name}" for s in pubsub_spec(cfg).subscriptions]
    if symbol == "repository":
        return [f"//artifactregistry.googleapis.com/{r}" for r in artifact_registry_repos(cfg)]
    return []


def google_needs(cfg: SpinbootConfig) -> list[GoogleNeed]:
    out: dict[tuple[str, str, str], GoogleNeed] = {}
    for service, spec in contract()["services"].items():
        for g in spec.get("google") or []:
            if g.get("principal") != "spinnaker":
                continue
            for res in _full_names(cfg, g["resource"]):
                out.setdefault((service, g["permission"], res), GoogleNeed(service, g["permission"], res, g["call"]))
    return list(out.values())


def _short(resource: str) -> str:
    return resource.split("/")[-1]


def google_checks(troubleshooter, cfg: SpinbootConfig) -> list[Check]:
    from google.api_core import exceptions
    from google.cloud import policytroubleshooter_v1 as pt

    email = cfg.service_account_email
    needs = google_needs(cfg)

    def ask(n: GoogleNeed) -> Check:
        cid = f"spinnaker:{n.service}-{n.permission}:{_short(n.resource)}"
        try:
            resp = troubleshooter.troubleshoot_iam_policy(request=pt.TroubleshootIamPolicyRequest(
                access_tuple=pt.AccessTuple(principal=email, full_resource_name=n.resource, permission=n.permission)))
        except exceptions.GoogleAPICallError as exc:
            return Check(cid, "warn", f"Policy Troubleshooter could not answer for {n.permission} on {n.resource}: "
                                      f"{exc.message or exc}",
                         "give the identity running doctor roles/iam.securityReviewer (it reads IAM policies) and "
                         "enable policytroubleshooter.googleapis.com")
        if resp.access == pt.AccessState.GRANTED:
            return Check(cid, "ok", f"{n.service} may {n.permission} on {_short(n.resource)} as {email}")
        what = "is not granted" if resp.access == pt.AccessState.NOT_GRANTED else \
            f"is {pt.AccessState(resp.access).name} (a condition or a policy doctor may not read)"
        held_by = ", ".join(roles_holding(n.permission)) or "a role with it"
        return Check(cid, "fail", f"{n.permission} on {n.resource} {what} for {email}: {n.service} fails at "
                                  f"{n.call}",
                     f"spinboot apply (it grants {held_by} on that resource); if it already did, look for a deny "
                     "policy or a condition on the binding")

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(ask, needs))


@dataclass(frozen=True)
class KubeNeed:
    group: str
    resource: str
    verbs: tuple[str, ...]
    use: str


def kubernetes_needs() -> list[KubeNeed]:
    """What clouddriver must be able to do in every namespace of a target account (wildcard kinds and
    conditional entries are not checked: they depend on the pipelines)."""
    merged: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    for k in contract()["services"]["clouddriver"].get("kubernetes") or []:
        if not k.get("required") or k.get("condition") != "always" or k.get("scope") != "each-namespace":
            continue
        if "target" not in str(k.get("account")) or "*" in (k["group"], k["resource"]):
            continue
        verbs, uses = merged.setdefault((k["group"], k["resource"]), (set(), set()))
        verbs.update(k["verbs"])
        uses.add(k.get("use") or "clouddriver")
    return [KubeNeed(g, r, tuple(sorted(v)), ", ".join(sorted(u))) for (g, r), (v, u) in sorted(merged.items())]


def rbac_checks(kube, target: Target) -> list[Check]:
    """One check per kind: every verb clouddriver needs on it, in every namespace the target lists."""
    needs = kubernetes_needs()

    def prove(n: KubeNeed) -> Check:
        kind = f"{n.group}/{n.resource}" if n.group else n.resource
        denied = [f"{verb} in {ns}" for ns in target.namespaces for verb in n.verbs
                  if not _review(kube, target, verb, n.resource, n.group, ns)]
        cid = f"spinnaker:clouddriver-{kind}:{target.name}"
        if not denied:
            return Check(cid, "ok", f"clouddriver may {', '.join(n.verbs)} {kind} in {', '.join(target.namespaces)}")
        return Check(cid, "fail", f"clouddriver may not {'; '.join(denied)} on {kind} (needed for {n.use})",
                     f"spinboot rbac apply --cluster {target.name} (rbac/rules.yaml grants it); if it already did, "
                     "look for an admission policy or an edited ClusterRole")

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(prove, needs))
