"""The step graph: dependency order, real concurrency, failures that skip only what depends on them."""

from __future__ import annotations

import threading

import pytest

from spinboot.changes import Change
from spinboot.engine.graph import GraphError, Step, run_graph


def collect():
    events = []
    return events, events.append


def test_independent_steps_run_at_the_same_time():
    # Both steps wait for each other at a barrier: run one after the other, they would time out.
    barrier = threading.Barrier(2, timeout=10)

    def meet(ctx):
        barrier.wait()
        return [Change("unchanged", "x", ctx.step.name)]

    events, emit = collect()
    results = run_graph([Step("a", "A", meet), Step("b", "B", meet)], emit)
    assert {r.status for r in results.values()} == {"done"}


def test_dependencies_run_first_and_pass_their_work_on():
    order = []

    def step(name):
        def run(ctx):
            order.append(name)
            return []
        return run

    results = run_graph([Step("halyard", "H", step("halyard"), ("cluster", "rbac")),
                         Step("cluster", "C", step("cluster")), Step("rbac", "R", step("rbac"), ("cluster",))],
                        lambda e: None)
    assert order.index("cluster") < order.index("rbac") < order.index("halyard")
    assert all(r.status == "done" for r in results.values())


def test_a_failure_skips_its_dependents_only():
    def boom(ctx):
        raise RuntimeError("target platform unreachable")

    events, emit = collect()
    results = run_graph([Step("rbac:platform", "P", boom), Step("rbac:lab", "L", lambda c: []),
                         Step("halyard", "H", lambda c: [], ("rbac:platform", "rbac:lab"))], emit)
    assert results["rbac:platform"].status == "failed"
    assert results["rbac:platform"].error == "target platform unreachable"
    assert results["rbac:lab"].status == "done"
    assert results["halyard"].status == "skipped" and "rbac:platform" in results["halyard"].error
    assert {"event": "step", "step": "halyard", "title": "H", "status": "skipped",
            "reason": results["halyard"].error} in events


def test_changes_and_progress_become_events():
    def run(ctx):
        ctx.progress("creating")
        return [Change("create", "RoleBinding", "spinboot:spinnaker:deploy", "prod")]

    events, emit = collect()
    run_graph([Step("rbac:p", "P", run)], emit)
    kinds = [e["event"] for e in events]
    assert kinds == ["step", "progress", "change", "step"]
    assert events[2] == {"event": "change", "step": "rbac:p", "action": "create", "kind": "RoleBinding",
                         "name": "spinboot:spinnaker:deploy", "namespace": "prod"}


def test_cycles_and_unknown_dependencies_are_refused():
    with pytest.raises(GraphError, match="cycle"):
        run_graph([Step("a", "A", lambda c: [], ("b",)), Step("b", "B", lambda c: [], ("a",))], lambda e: None)
    with pytest.raises(GraphError, match="unknown"):
        run_graph([Step("a", "A", lambda c: [], ("nope",))], lambda e: None)


def test_changes_made_before_a_failure_are_reported_once_as_they_happen():
    from spinboot.changes import Change, happened

    events: list[dict] = []

    def writes_then_fails(ctx):
        happened(Change("create", "ConfigMap", "a", "ns"))
        happened(Change("unchanged", "ConfigMap", "b", "ns"))      # not a write: nothing to report
        raise RuntimeError("the API went away")

    def writes_and_returns(ctx):
        made = happened(Change("update", "Secret", "s", "ns", "data.x"))
        return [made, Change("unchanged", "Secret", "t", "ns")]

    results = run_graph([Step("a", "A", writes_then_fails), Step("b", "B", writes_and_returns)], events.append)
    assert results["a"].status == "failed" and [c.name for c in results["a"].changes] == ["a"]
    said = [(e["step"], e["name"]) for e in events if e["event"] == "change"]
    assert said.count(("a", "a")) == 1 and said.count(("b", "s")) == 1 and ("b", "t") in said
    # the change event comes before the failure event
    order = [(e["event"], e.get("status")) for e in events if e.get("step") == "a"]
    assert order.index(("change", None)) < order.index(("step", "failed"))
