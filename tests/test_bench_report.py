"""The pure parts of the benchmark harness: the critical path from a run's events, and the reports."""

from __future__ import annotations

import json

import pytest

from bench.report import markdown, write_reports
from bench.run import critical_path, step_times


def _events(spec: dict[str, tuple[float, list[str]]]) -> list[dict]:
    out = []
    for name, (secs, deps) in spec.items():
        out.append({"event": "step", "step": name, "status": "running", "deps": deps})
        out.append({"event": "step", "step": name, "status": "done", "seconds": secs})
    return out


def test_critical_path_is_the_longest_dependent_chain():
    steps = step_times(_events({
        "iam:service-account": (0.2, []), "pubsub": (5.0, ["iam:service-account"]), "cluster": (30.0, []),
        "iam:workload-identity": (0.1, ["cluster", "iam:service-account"]),
        "halyard": (9.0, ["iam:workload-identity", "rbac:a"]), "rbac:a": (35.0, []),
    }))
    length, chain = critical_path(steps)
    assert chain == ["rbac:a", "halyard"]
    assert length == pytest.approx(44.0)


def _calls(read, mutating):
    return {"totals": {"read": read, "mutating": mutating, "review": 2, "data": 0},
            "google": {"gke": {"read": 1}}, "google_methods": {"gke": {"GetCluster": 1}},
            "kubernetes": {"c": {"read": read - 1, "mutating": mutating}}, "kubernetes_requests": {"c": {"get x": 3}}}


def _apply(wall, mutating):
    return {"rc": 0, "wall_s": wall, "critical_path_s": wall - 1, "critical_path": ["cluster", "halyard"],
            "steps_s": {"cluster": wall - 5, "halyard": 4}, "serial_sum_s": wall + 3,
            "changes": {"create": 3, "update": 0, "delete": 0, "unchanged": 1}, "calls": _calls(10, mutating),
            "ratio_wall_to_critical_path": 1.02, "gke_cluster_step_s": wall - 5, "halyard_step_s": 4}


RESULT = {
    "machine": {"when": "2026-11-26T00:00:00+00:00", "commit": "abc1234", "python": "3.11", "platform": "Linux",
                "cpus": 2, "mem_mib": 1024},
    "fresh_and_second": {"gke_latency_s": 30, "fresh": _apply(44.2, 40), "second": _apply(0.9, 0),
                         "second_wall_s_runs": [0.9, 0.8, 0.85]},
    "scale": [{"targets": n, "namespaces": ns, "fresh": _apply(20 + n, 30), "second": _apply(1 + n / 10, 0),
               "slowest_target_step_s": 0.5 * n} for ns in (1, 50) for n in (1, 4, 8)],
    "render": {"runs": 5, "command_wall_s_median": 0.33, "command_wall_s_max": 0.4, "command_peak_rss_mib": 41.5,
               "render_all_ms_median": 27.0, "render_all_peak_heap_kib": 130.8, "files": 31},
    "matrix": {"full": True, "rc": 0, "wall_s": 100.0,
               "cases": [{"name": "test_x[a]", "seconds": 30.0, "outcome": "passed"}]},
    "bench_wall_s": 600.0,
}


def test_markdown_holds_every_measured_number():
    md = markdown(RESULT)
    for needle in ("| fresh `apply` wall time | 44.2 s |", "| ratio wall / critical path | 1.02 |",
                   "0.9 s, 0.8 s, 0.85 s", "| 8 | 50 | 28 s | 4.0 s / 0 s |", "| its peak RSS | 41.5 MiB |",
                   "1 of 1 cases passed", "gke GetCluster | 1 |", "Kubernetes get x | 3 |"):
        assert needle in md, needle


def test_reports_are_written(tmp_path):
    pytest.importorskip("matplotlib")  # a bench-only dependency: make bench installs it
    paths = write_reports(json.loads(json.dumps(RESULT)), tmp_path)
    assert {p.name for p in paths} == {"latest.json", "latest.md", "targets.png"}
    assert json.loads((tmp_path / "latest.json").read_text())["render"]["files"] == 31
    assert (tmp_path / "targets.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
