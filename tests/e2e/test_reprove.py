"""The RBAC proof is asked again only when RBAC that can reach Spinnaker's account changed (or on --reprove).

Unit tests for the pure parts (fingerprint, decision, label selectors), then e2e on the sandbox's real API servers:
an untouched second apply asks no SubjectAccessReview (counted in the API servers' audit logs); a ClusterRole bound
to the account by hand, or aggregated into a role bound to it, makes the next apply prove again and fail with the
proof's message; --reprove always proves.
"""

from __future__ import annotations

import pytest

from spinboot.config import load_config
from spinboot.kube.targets import (CHECKS_REF, _selector_matches, decide_proof, fingerprint_of, identity,
                                   proof_checks)

from .invariants import EXAMPLE, run


def _target(name: str = "platform"):
    return next(t for t in load_config(EXAMPLE).config.targets if t.name == name)


def _obj(name, rv, namespace=None, **extra):
    meta = {"name": name, "resourceVersion": rv}
    if namespace:
        meta["namespace"] = namespace
    return {"metadata": meta, **extra}


def _crb(name, rv, subject, role, kind="ClusterRole", namespace=None):
    return _obj(name, rv, namespace, subjects=[subject], roleRef={"kind": kind, "name": role})


SA = {"kind": "ServiceAccount", "name": "spinnaker", "namespace": "spinnaker"}


# --- pure ------------------------------------------------------------------------------------------------------


def test_fingerprint_holds_exactly_what_can_reach_the_account():
    t = _target()
    user, _ = identity(t)
    roles = [_obj("deploy", "10"), _obj("view", "11"), _obj("unrelated", "12"),
             _obj("agg", "13", aggregationRule={"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}),
             {"metadata": {"name": "src", "resourceVersion": "14", "labels": {"x": "y"}}}]
    crbs = [_crb("by-group", "20", {"kind": "Group", "name": "system:authenticated"}, "view"),
            _crb("by-user", "21", {"kind": "User", "name": user}, "agg"),
            _crb("other-sa", "22", {"kind": "ServiceAccount", "name": "x", "namespace": "spinnaker"}, "unrelated"),
            _crb("other-group", "23", {"kind": "Group", "name": "system:serviceaccounts:kube-system"}, "unrelated"),
            _crb("missing-role", "24", SA, "not-yet")]
    rbs = [_crb("rb", "30", {"kind": "ServiceAccount", "name": "spinnaker"}, "deploy", namespace="spinnaker"),
           _crb("rb-elsewhere", "31", {"kind": "ServiceAccount", "name": "spinnaker"}, "view", namespace="prod"),
           _crb("local", "32", SA, "r", kind="Role", namespace="dev")]
    fp = fingerprint_of(t, _obj("spinnaker", "1", "spinnaker"), roles, crbs, rbs, [_obj("r", "40", "dev")])
    assert {k: v for k, v in fp.items() if k != CHECKS_REF} == {
        "ServiceAccount spinnaker/spinnaker": "1",
        "ClusterRoleBinding by-group": "20", "ClusterRole view": "11",
        "ClusterRoleBinding by-user": "21", "ClusterRole agg": "13", "ClusterRole src": "14",   # aggregated into agg
        "ClusterRoleBinding missing-role": "24", "ClusterRole not-yet": "absent",
        # A ServiceAccount subject without a namespace in a RoleBinding is the binding's namespace: only "rb".
        "RoleBinding spinnaker/rb": "30", "ClusterRole deploy": "10",
        "RoleBinding dev/local": "32", "Role dev/r": "40"}


def test_decision_says_what_moved():
    now = {CHECKS_REF: "q", "ServiceAccount a/b": "1", "ClusterRoleBinding x": "5"}
    assert decide_proof(None, now) == decide_proof({"at": "t"}, now)
    assert decide_proof(None, now).prove and decide_proof(None, now).reason == "no earlier proof recorded"
    same = decide_proof({"at": "2026-01-01T00:00:00Z", "objects": dict(now)}, now)
    assert not same.prove and same.reason == "unchanged since 2026-01-01T00:00:00Z"
    assert decide_proof({"at": "t", "objects": dict(now)}, now, reprove=True).reason == "--reprove"
    moved = decide_proof({"at": "t", "objects": {**now, "ClusterRoleBinding x": "4", "RoleBinding n/gone": "2"}},
                         {**now, "ClusterRoleBinding new": "9"})
    assert moved.prove and moved.reason == ("ClusterRoleBinding new added, ClusterRoleBinding x changed, "
                                            "RoleBinding n/gone removed")
    assert decide_proof({"at": "t", "objects": {**now, CHECKS_REF: "old"}}, now).reason.startswith("the questions")


def test_checks_follow_the_file():
    t = _target()
    other = t.model_copy(update={"namespaces": t.namespaces + ["extra"]})
    assert proof_checks(t) != proof_checks(other)
    sa = _obj("spinnaker", "1", "spinnaker")
    assert fingerprint_of(t, sa, [], [], [], [])[CHECKS_REF] != fingerprint_of(other, sa, [], [], [], [])[CHECKS_REF]


@pytest.mark.parametrize("selector,labels,want", [
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
])
def test_label_selector(selector, labels, want):
    assert _selector_matches(selector, labels) is want


# --- e2e ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployed(live, sandbox):
    env = sandbox.environ()
    rc, _, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], env)
    assert rc == 0, tail
    return env


def _proofs(events) -> dict[str, dict]:
    return {e["step"]: e for e in events if e["event"] == "proof"}


def _progress(events, step) -> list[str]:
    return [e["message"] for e in events if e["event"] == "progress" and e.get("step") == step]


def _reviews_since(live, mark) -> int:
    return sum(1 for c in live.clusters() for e in c.audit_events()[mark.get(c.name, 0):]
               if (e.get("objectRef") or {}).get("resource") == "subjectaccessreviews")


def _rbac(live, target="platform"):
    from kubernetes import client

    return client.RbacAuthorizationV1Api(live.api(live.cluster("acme-platform", "us-central1", target)))


def _bind(rbac, name, role):
    from kubernetes import client

    rbac.create_cluster_role_binding(client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=name),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="spinnaker", namespace="spinnaker")]))


def _role(rbac, name, rules=(), labels=None, aggregate=None):
    from kubernetes import client

    rbac.create_cluster_role(client.V1ClusterRole(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        rules=[client.V1PolicyRule(**r) for r in rules] or None,
        aggregation_rule=client.V1AggregationRule(cluster_role_selectors=[client.V1LabelSelector(
            match_labels=aggregate)]) if aggregate else None))


def _delete(rbac, bindings=(), roles=()):
    from kubernetes.client.exceptions import ApiException

    for name in bindings:
        try:
            rbac.delete_cluster_role_binding(name)
        except ApiException:
            pass
    for name in roles:
        try:
            rbac.delete_cluster_role(name)
        except ApiException:
            pass


SECRETS = {"api_groups": [""], "resources": ["secrets"], "verbs": ["list"]}


def test_untouched_second_apply_skips_the_proof(deployed, live):
    run(["apply", "-c", str(EXAMPLE), "--yes"], deployed)   # whatever ran before, this one records a proof
    mark = live.mark()
    rc, events, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], deployed)
    assert rc == 0, tail
    proofs = _proofs(events)
    assert {s: p["decision"] for s, p in proofs.items()} == {"rbac:platform": "skipped",
                                                             "rbac:platform-lab": "skipped"}, tail
    assert all(p["reason"].startswith("unchanged since ") for p in proofs.values()), proofs
    assert any(m.startswith("proof skipped: unchanged since ") for m in _progress(events, "rbac:platform"))
    assert _reviews_since(live, mark) == 0, "no SubjectAccessReview reached an API server"
    assert {k: v for k, v in live.mutations_since(mark).items() if v} == {}


def test_a_clusterrole_bound_by_hand_is_found_by_the_next_apply(deployed, live):
    rbac = _rbac(live)
    _role(rbac, "reprove-test-secrets", [SECRETS])
    try:
        _bind(rbac, "reprove-test-extra", "reprove-test-secrets")
        mark = live.mark()
        rc, events, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], deployed)
        assert rc == 1, tail
        assert "re-proving: ClusterRoleBinding reprove-test-extra added, ClusterRole reprove-test-secrets added" \
            in _progress(events, "rbac:platform"), tail
        failed = next(e for e in events if e["event"] == "step" and e["step"] == "rbac:platform"
                      and e["status"] == "failed")
        assert "least-privilege proof failed for spinnaker/spinnaker: may list secrets cluster-wide" in \
            failed["error"], failed
        assert _proofs(events)["rbac:platform-lab"]["decision"] == "skipped"
        assert _reviews_since(live, mark) > 0
    finally:
        _delete(rbac, ["reprove-test-extra"], ["reprove-test-secrets"])
    # Back to what was last proven: the same names and resourceVersions, so no need to ask again.
    rc, events, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], deployed)
    assert rc == 0, tail
    assert _proofs(events)["rbac:platform"]["decision"] == "skipped", tail


def test_a_rule_aggregated_into_a_bound_role_is_found(deployed, live):
    rbac = _rbac(live)
    _role(rbac, "reprove-test-aggregate", aggregate={"spinboot.dev/reprove-test": "true"})
    try:
        _bind(rbac, "reprove-test-aggregated", "reprove-test-aggregate")
        rc, events, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], deployed)
        assert rc == 0, tail   # bound, but the aggregate has no rules yet
        assert _proofs(events)["rbac:platform"]["decision"] == "proved"
        # Nothing touches the binding or the bound role's own definition: a new role joins the aggregate.
        _role(rbac, "reprove-test-source", [SECRETS], labels={"spinboot.dev/reprove-test": "true"})
        rc, events, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], deployed)
        assert rc == 1, tail
        assert any(m.startswith("re-proving: ") and "ClusterRole reprove-test-source added" in m
                   for m in _progress(events, "rbac:platform")), tail
    finally:
        _delete(rbac, ["reprove-test-aggregated"], ["reprove-test-source", "reprove-test-aggregate"])


def test_reprove_always_proves_and_plan_says_which(deployed, live):
    run(["apply", "-c", str(EXAMPLE), "--yes"], deployed)
    rc, events, tail = run(["plan", "-c", str(EXAMPLE)], deployed)
    assert rc == 0, tail
    assert {p["decision"] for p in _proofs(events).values()} == {"would skip"}, tail
    rc, events, tail = run(["plan", "-c", str(EXAMPLE), "--reprove"], deployed)
    assert rc == 0, tail
    assert {(p["decision"], p["reason"]) for p in _proofs(events).values()} == {("would re-prove", "--reprove")}
    mark = live.mark()
    rc, events, tail = run(["apply", "-c", str(EXAMPLE), "--yes", "--reprove"], deployed)
    assert rc == 0, tail
    proofs = _proofs(events)
    assert {s: (p["decision"], p["reason"]) for s, p in proofs.items()} == {
        "rbac:platform": ("proved", "--reprove"), "rbac:platform-lab": ("proved", "--reprove")}
    assert all(p["checks"] for p in proofs.values())
    assert _reviews_since(live, mark) == sum(len(p["checks"]) for p in proofs.values())
