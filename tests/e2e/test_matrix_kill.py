"""Kill ``apply`` at each step boundary, re-run it, and check it converges with nothing made twice.

Each case starts from a destroyed deployment (the sandbox's targets, topic and bucket stay, as after
``spinboot destroy``), runs a fresh apply of the example, SIGKILLs it at one point (right after a step finished,
or in the middle of the Halyard step while configure.sh runs in the pod), re-runs it to completion, then checks
every managed thing exists exactly once and a third apply has nothing to do: zero mutating calls as the servers
count them (invariants.assert_nothing_to_do).

``make test`` runs a reduced set (the first boundary, the one after the GKE cluster, and mid-Halyard); the full
matrix runs with SPINBOOT_FULL_MATRIX=1, as ``make bench`` does.
"""

from __future__ import annotations

import os

import pytest

from .invariants import EXAMPLE, assert_exactly_once, assert_nothing_to_do, run, run_until

FULL = bool(os.environ.get("SPINBOOT_FULL_MATRIX"))
STEPS = ["iam:service-accounts", "pubsub", "storage", "registry-access", "rbac:platform", "rbac:platform-lab", "cluster",
         "iam:workload-identity", "halyard"]
REDUCED = {"during halyard"}   # the riskiest point (configure.sh mid-run); the rest run in make bench


def _after(step: str):
    return lambda e: e["event"] == "step" and e.get("step") == step and e["status"] == "done"


def _during_halyard(e: dict) -> bool:
    # A line of configure.sh's output: the bundle is in the pod and the script is running.
    return e["event"] == "output" and e.get("step") == "halyard"


KILL_POINTS = {f"after {s}": _after(s) for s in STEPS[:-1]}
KILL_POINTS["during halyard"] = _during_halyard
KILL_POINTS["after halyard"] = _after("halyard")  # before the summary and the access notes are printed


@pytest.mark.matrix
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_apply_killed_then_rerun_converges(point, live, sandbox_env):
    if not FULL and point not in REDUCED:
        pytest.skip("full kill matrix: SPINBOOT_FULL_MATRIX=1 (make bench)")
    # A killed run's lock lease expires after its duration; a short one keeps the matrix fast (docs/apply.md).
    sandbox_env = {**sandbox_env, "SPINBOOT_LOCK_LEASE_SECONDS": "5"}
    rc, _, tail = run(["destroy", "-c", str(EXAMPLE), "--yes"], sandbox_env)
    assert rc == 0, tail
    seen = run_until(["apply", "-c", str(EXAMPLE), "--yes"], sandbox_env, KILL_POINTS[point])
    assert not any(e["event"] == "summary" for e in seen)
    rc, events, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], sandbox_env)
    assert rc == 0, f"the re-run after a kill {point} failed:\n{tail}"
    assert_exactly_once(live)
    assert_nothing_to_do(sandbox_env, live)
