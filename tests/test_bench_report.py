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


def test_server_timeline_links_come_from_server_fields():
    from bench.run import parse_time, timeline_segments, union_seconds

    t = parse_time("2026-11-27T10:00:00Z")
    pod = {"metadata": {"creationTimestamp": "2026-11-27T10:00:31Z"},
           "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-27T10:00:33Z"}]}}
    execs = [{"requestURI": "/api/v1/namespaces/halyard/pods/halyard-0/exec?command=tar",
              "requestReceivedTimestamp": "2026-11-27T10:00:33.500000Z", "stageTimestamp": "2026-11-27T10:00:33.600000Z"},
             {"requestURI": "/api/v1/namespaces/halyard/pods/halyard-0/exec?command=bash&command=configure.sh",
              "requestReceivedTimestamp": "2026-11-27T10:00:34.000000Z", "stageTimestamp": "2026-11-27T10:00:40.250000Z"}]
    deps = [{"metadata": {"creationTimestamp": "2026-11-27T10:00:38Z"}, "status": {"conditions": [
        {"type": "Available", "status": "True", "lastTransitionTime": "2026-11-27T10:00:39Z"},
        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
         "lastUpdateTime": "2026-11-27T10:00:42Z"}]}}]
    segs = timeline_segments((t + 0.5, t + 30.5), pod, execs, deps)
    assert [(s["name"], s["seconds"]) for s in segs] == [
        ("GKE create operation", 30.0), ("Halyard pod start", 2.0), ("configure.sh in the pod", 6.25),
        ("Spinnaker rollout", 4.0)]
    # 30 + 2 + (34..42 where configure.sh and the rollout overlap) = 40
    assert union_seconds([(s["start"], s["end"]) for s in segs]) == pytest.approx(40.0)
    # A Deployment not rolled out yet: no rollout link rather than a short one.
    assert "Spinnaker rollout" not in [s["name"] for s in timeline_segments(None, None, [], deps + [
        {"metadata": {"creationTimestamp": "2026-11-27T10:00:38Z"}, "status": {}}])]


def _workload(kind, name, created, ready=None, replicas=1, labels=None):
    """A Deployment or StatefulSet as the API server returns it (camelCase), rolled out at ``ready`` if given."""
    status = {}
    if ready and kind == "Deployment":
        status["conditions"] = [{"type": "Available", "status": "True", "lastTransitionTime": ready},
                                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                                 "lastUpdateTime": ready}]
    if ready and kind == "StatefulSet":
        status["readyReplicas"] = replicas
    return {"kind": kind, "metadata": {"name": name, "creationTimestamp": created,
                                       "labels": {"app.kubernetes.io/component": name, **(labels or {})}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}}, "status": status}


def _pod(app, ready):
    return {"metadata": {"labels": {"app": app}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready}]}}


def test_kustomize_timeline_has_one_link_per_wave_and_leaves_the_gaps_to_spinboot():
    from bench.run import kustomize_wave, parse_time, timeline_segments, union_seconds

    t = parse_time("2026-11-27T10:00:00Z")
    ts = lambda s: f"2026-11-27T10:00:{s:02d}Z"  # noqa: E731
    workloads = [_workload("StatefulSet", "redis", ts(31), ready=True),
                 _workload("Deployment", "front50", ts(35), ts(38)),
                 _workload("Deployment", "clouddriver", ts(35), ts(37)),
                 _workload("Deployment", "orca", ts(40), ts(42)), _workload("Deployment", "deck", ts(44), ts(45))]
    # redis has no rollout conditions: its pod's Ready is when it was up; a pod Ready after the Deployment's own
    # conditions (a second replica) moves that Deployment's end.
    pods = [_pod("redis", ts(33)), _pod("clouddriver", ts(39)), _pod("other", ts(59))]
    segs = timeline_segments((t, t + 30), None, [], workloads, pods=pods, waves=kustomize_wave)
    assert [(s["name"], s["seconds"]) for s in segs] == [
        ("GKE create operation", 30.0), ("rollout wave 1 (redis)", 2.0),
        ("rollout wave 2 (clouddriver/front50)", 4.0), ("rollout wave 3 (orca)", 2.0), ("rollout wave 5 (deck)", 1.0)]
    # 30 + 2 + 4 + 2 + 1: the second between waves 1 and 2 (33 → 35) and the others are spinboot's own share.
    assert union_seconds([(s["start"], s["end"]) for s in segs]) == pytest.approx(39.0)
    # A wave with one workload not rolled out has no link; the waves before it keep theirs.
    late = workloads + [_workload("Deployment", "echo", ts(40))]
    names = [s["name"] for s in timeline_segments(None, None, [], late, pods=pods, waves=kustomize_wave)]
    assert names == ["rollout wave 1 (redis)", "rollout wave 2 (clouddriver/front50)", "rollout wave 5 (deck)"]


def test_rolls_tells_a_new_pod_template_from_a_replica_change():
    from bench.run import rolls

    before = {"clouddriver": {"kind": "Deployment", "replicas": 1, "template": "aaa"},
              "gate": {"kind": "Deployment", "replicas": 2, "template": "bbb"},
              "echo": {"kind": "Deployment", "replicas": 1, "template": "ccc"},
              "kayenta": {"kind": "Deployment", "replicas": 1, "template": "ddd"},
              "redis": {"kind": "StatefulSet", "replicas": 1, "template": "redis-1"}}
    after = {**before, "clouddriver": {"kind": "Deployment", "replicas": 1, "template": "eee"},
             "gate": {"kind": "Deployment", "replicas": 3, "template": "bbb"},
             "redis": {"kind": "StatefulSet", "replicas": 1, "template": "redis-2"},
             "keel": {"kind": "Deployment", "replicas": 1, "template": "fff"}}
    del after["kayenta"]
    assert rolls(before, after) == {"rolled": ["clouddriver", "redis"], "scaled": ["gate"], "created": ["keel"],
                                    "removed": ["kayenta"], "unchanged": ["echo"]}
    assert rolls(before, before)["rolled"] == []


KUSTOMIZE = {
    "example": "examples/kustomize.yaml", "without": "exposure.ingress", "gke_latency_s": 30.0,
    "fresh": {**_apply(52.5, 61), "critical_path_s": 45.0, "critical_path": ["GKE create operation", "rollout wave 1"],
              "critical_path_source": "the servers", "step_chain_s": 50.1, "step_chain": ["cluster", "spinnaker"],
              "spinnaker_step_s": 20.0, "gke_create_operation_s": 30.0, "ratio_wall_to_critical_path": 1.167,
              "server_timeline": {"segments": [{"name": "rollout wave 1 (redis)",
                                                "source": "Deployment status, pod Ready",
                                                "start": 31.0, "end": 33.0, "seconds": 2.0}],
                                  "critical_path_s": 45.0, "spinboot_own_s": 7.5}},
    "second": _apply(1.7, 0), "second_wall_s_runs": [1.7, 1.6, 1.65], "second_mutating_runs": [0, 0, 0],
    "changes": [{"change": "add a target", "what": "targets: + platform-extra", "rc": 0, "wall_s": 6.2,
                 "calls": _calls(40, 9), "changes": {}, "rolled": ["clouddriver"], "scaled": [], "created": [],
                 "removed": [], "unchanged": ["deck", "echo", "front50", "gate", "igor", "orca", "redis", "rosco"]},
                {"change": "bump the version", "what": "2026.2.3 → 2026.3.0", "rc": 1, "wall_s": 9.0,
                 "calls": _calls(40, 9), "changes": {}, "rolled": ["clouddriver", "front50"], "scaled": ["gate"],
                 "created": ["keel"], "removed": [], "unchanged": ["redis"]}],
}


def test_markdown_has_the_kustomize_part():
    md = markdown({**RESULT, "kustomize": KUSTOMIZE})
    for needle in ("## Kustomize engine: fresh apply against its critical path",
                   "| fresh `apply` wall time (exit 0) | 52.5 s |", "| ratio wall / critical path | 1.167 |",
                   "| spinboot's own share (wall − critical path) | 7.5 s |",
                   "| rollout wave 1 (redis) (Deployment status, pod Ready) | 31.0 | 33.0 | 2.0 |",
                   "| mutating calls, each run | 0, 0, 0 |", "1.7 s, 1.6 s, 1.65 s",
                   "| add a target | targets: + platform-extra | **clouddriver** | none | 8 of 9 | 6.2 s |",
                   "| **clouddriver, front50**; new: keel | gate | 1 of 4 | 9.0 s (exit 1) |"):
        assert needle in md, needle
    assert "Kustomize engine" not in markdown(RESULT)
