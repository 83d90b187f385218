"""spinboot's benchmarks, run against the local sandbox: ``make bench`` (or ``python bench/run.py --help``).

Writes bench/results/latest.json (everything measured, with the machine it ran on), latest.md (the tables
docs/performance.md quotes) and targets.png (apply time against the number of targets). Parts (``--only``):
render, fresh (the Halyard engine's fresh and second apply), kustomize (the kustomize engine's fresh and second
apply and the workloads each change type rolls), scale, matrix.

Every number comes from a real run: ``spinboot`` is started as a subprocess (so interpreter start-up counts, as it
does for an operator), wall time is taken around it, and what the run waited for is taken from the servers, not
from spinboot: the GKE stand-in's operation start and end times, the API servers' pod conditions and Deployment
status, and their audit logs (``server_timeline``). spinboot's own step times (its JSON events) are kept only to
compare. API calls are counted where they land, at the sandbox's servers (spinboot.sandbox.meter). Nothing here
asserts a timing: the tests assert behaviour; this file measures it.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_reports  # noqa: E402
from spinboot.sandbox.meter import Meter  # noqa: E402
from spinboot.sandbox.sandbox import Sandbox  # noqa: E402

EXAMPLE = ROOT / "examples" / "spinboot.yaml"
RESULTS = ROOT / "bench" / "results"
PARTS = ("render", "fresh", "kustomize", "scale", "matrix")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- running spinboot ----------------------------------------------------------------------------------------------


def spinboot(args: list[str], env: dict[str, str], timeout: float = 1800) -> dict:
    """Run ``spinboot ARGS --output json``; wall time, exit code, events, and the child's peak RSS."""
    cmd = [sys.executable, "-m", "spinboot", *args, "--output", "json"]
    started = time.time()   # the servers' clock (same host): the timeline is placed against it
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    wall = time.perf_counter() - t0
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        log(f"spinboot {' '.join(args)} exited {proc.returncode}:\n{out[-2000:]}\n{err[-2000:]}")
    return {"rc": proc.returncode, "wall_s": round(wall, 2), "events": events, "started": started,
            "ended": started + wall}


def step_times(events: list[dict]) -> dict[str, dict]:
    steps: dict[str, dict] = {}
    for e in events:
        if e.get("event") != "step":
            continue
        s = steps.setdefault(e["step"], {"deps": [], "seconds": 0.0})
        if e["status"] == "running":
            s["deps"] = e.get("deps", [])
        elif "seconds" in e:
            s["seconds"] = e["seconds"]
    return steps


def critical_path(steps: dict[str, dict]) -> tuple[float, list[str]]:
    """Longest chain of dependent steps by their measured durations: no scheduler can finish sooner."""
    memo: dict[str, tuple[float, list[str]]] = {}

    def longest(name: str) -> tuple[float, list[str]]:
        if name not in memo:
            best = max((longest(d) for d in steps[name]["deps"] if d in steps), default=(0.0, []))
            memo[name] = (best[0] + steps[name]["seconds"], best[1] + [name])
        return memo[name]

    return max((longest(n) for n in steps), default=(0.0, []))


def summary(events: list[dict]) -> dict:
    return next((e for e in events if e.get("event") == "summary"), {})


def measured_apply(sb: Sandbox, cfg: Path, timeline: bool = False, extra: tuple[str, ...] = (),
                   engine: str = "halyard") -> dict:
    """One ``apply`` with its wall time, calls counted at the servers, the time each target's API server was busy
    with it (its audit log), spinboot's step times, and with ``timeline`` the critical path as the servers saw it
    (``server_timeline``)."""
    meter = Meter(sb)
    mark = meter.mark()
    run = spinboot(["apply", "-c", str(cfg), "--yes", *extra], sb.environ())
    calls = meter.since(mark)
    steps = step_times(run["events"])
    chain_s, chain = critical_path(steps)
    s = summary(run["events"])
    out = {
        "rc": run["rc"], "wall_s": run["wall_s"],
        # spinboot's own view, to compare with the servers': its longest chain of dependent steps by its timers.
        "step_chain_s": round(chain_s, 2), "step_chain": chain,
        "critical_path_s": round(chain_s, 2), "critical_path": chain, "critical_path_source": "spinboot's step timers",
        "steps_s": {k: v["seconds"] for k, v in steps.items()},
        "serial_sum_s": round(sum(v["seconds"] for v in steps.values()), 2),
        "changes": {k: s.get(k, 0) for k in ("create", "update", "delete", "unchanged")},
        "calls": calls.as_dict(),
        "proof": proof_decisions(run["events"]),
    }
    targets = {name: span for name, span in calls.kubernetes_span_s.items() if "-spinnaker" not in name}
    out["target_server_span_s"] = targets
    if timeline and run["rc"] == 0:
        tl = server_timeline(sb, run["started"], run["ended"], mark, engine=engine)
        out["server_timeline"] = tl
        if tl.get("critical_path_s"):
            out["critical_path_s"] = tl["critical_path_s"]
            out["critical_path"] = [seg["name"] for seg in tl["segments"]]
            out["critical_path_source"] = "the servers"
    return out


def proof_decisions(events: list[dict]) -> dict[str, str]:
    """rbac:<target> → proved / skipped (and why), from the run's ``proof`` events."""
    return {e["step"]: f"{e.get('decision', 'proved')}: {e.get('reason', '')}".rstrip(": ")
            for e in events if e.get("event") == "proof"}


# --- the critical path, as the servers saw it ----------------------------------------------------------------------


def parse_time(value: str) -> float:
    """RFC 3339 (metav1.Time has whole seconds, MicroTime and the GKE stand-in's times have fractions) → epoch s."""
    import re

    v = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(v).timestamp()


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals: overlapping server work is counted once."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def timeline_segments(gke_op: tuple[float, float] | None, halyard_pod: dict | None, execs: list[dict],
                      deployments: list[dict], pods: list[dict] | None = None, waves=None) -> list[dict]:
    """The chain a fresh apply cannot beat, each link timed by a server. Pure: inputs are what the servers returned.

    - the GKE create operation: its startTime and endTime (the GKE stand-in);
    - the Halyard pod: its creationTimestamp to its Ready condition's lastTransitionTime (API server);
    - configure.sh in the pod: the exec request that ran it, received and completed (the API server's audit log);
    - Spinnaker's rollout: the first service Deployment's creationTimestamp to the last one rolled out: its
      Progressing condition at NewReplicaSetAvailable, or Available turning True, whichever is later (the status
      `kubectl rollout status` reads), and its pods' Ready conditions when ``pods`` are given;
    - with ``waves`` (the kustomize engine: workload → (order, name), ``kustomize_wave``) one rollout link per wave
      instead, StatefulSets included: the gaps between waves are spinboot's, not the servers'.
    Whole-second fields (creationTimestamp, lastTransitionTime) make those links exact to about a second."""
    segs = []
    if gke_op:
        segs.append({"name": "GKE create operation", "start": gke_op[0], "end": gke_op[1], "source": "GKE operation"})
    if halyard_pod:
        ready = next((c for c in (halyard_pod.get("status") or {}).get("conditions") or []
                      if c.get("type") == "Ready" and c.get("status") == "True"), None)
        if ready:
            segs.append({"name": "Halyard pod start", "start": parse_time(halyard_pod["metadata"]["creationTimestamp"]),
                         "end": parse_time(ready["lastTransitionTime"]), "source": "pod Ready condition"})
    runs = [e for e in execs if "configure.sh" in e.get("requestURI", "")]
    if runs:
        e = runs[-1]
        segs.append({"name": "configure.sh in the pod", "start": parse_time(e["requestReceivedTimestamp"]),
                     "end": parse_time(e["stageTimestamp"]), "source": "audit log (pods/exec)"})
    if waves is None:
        segs += rollout_segments(deployments, pods or [], lambda d: (0, "Spinnaker rollout"))
    else:
        segs += rollout_segments(deployments, pods or [], waves)
    for seg in segs:
        seg["seconds"] = round(seg["end"] - seg["start"], 2)
    return segs


def _selects(selector: dict | None, labels: dict | None) -> bool:
    want = (selector or {}).get("matchLabels") or {}
    return bool(want) and all((labels or {}).get(k) == v for k, v in want.items())


def rolled_out(workload: dict, pods: list[dict]) -> tuple[float, float] | None:
    """A Deployment's or StatefulSet's creationTimestamp and the time it was rolled out, or None if it is not.

    Rolled out: a Deployment's Progressing condition at NewReplicaSetAvailable or Available turning True (what
    `kubectl rollout status` reads), and the Ready condition of each of its pods, whichever is latest; a
    StatefulSet (no such conditions) when all its replicas are ready, at its last pod's Ready. Pure."""
    st = workload.get("status") or {}
    conds = {c.get("type"): c for c in st.get("conditions") or []}
    prog, avail = conds.get("Progressing") or {}, conds.get("Available") or {}
    times = [parse_time(prog["lastUpdateTime"])] if prog.get("reason") == "NewReplicaSetAvailable" else []
    times += [parse_time(avail["lastTransitionTime"])] if avail.get("status") == "True" else []
    if workload.get("kind") == "StatefulSet" and st.get("readyReplicas", 0) >= (workload.get("spec") or {}).get(
            "replicas", 1):
        times.append(float("-inf"))   # ready; when is its pods' business
    if not times:
        return None
    selector = (workload.get("spec") or {}).get("selector")
    for pod in pods:
        if _selects(selector, (pod.get("metadata") or {}).get("labels")):
            times += [parse_time(c["lastTransitionTime"]) for c in (pod.get("status") or {}).get("conditions") or []
                      if c.get("type") == "Ready" and c.get("status") == "True"]
    start = parse_time(workload["metadata"]["creationTimestamp"])
    return start, max(times) if max(times) > float("-inf") else start


def rollout_segments(workloads: list[dict], pods: list[dict], group) -> list[dict]:
    """One link per group of workloads (``group(workload)`` → (order, name); ``{members}`` in the name becomes
    the group's workload names): its first workload's creation to its last one rolled out (``rolled_out``). A group
    with a workload not rolled out gets no link rather than a short one. Pure."""
    groups: dict[tuple[int, str], list] = {}
    members: dict[tuple[int, str], list[str]] = {}
    for w in workloads:
        groups.setdefault(group(w), []).append(rolled_out(w, pods))
        members.setdefault(group(w), []).append(w["metadata"].get("name", "?"))
    out = []
    for (order, name), spans in sorted(groups.items()):
        if spans and all(spans):
            name = name.format(members="/".join(sorted(members[(order, name)])))
            out.append({"name": name, "start": min(a for a, _ in spans), "end": max(b for _, b in spans),
                        "source": "Deployment status, pod Ready" if pods else "Deployment status"})
    return out


def kustomize_wave(workload: dict) -> tuple[int, str]:
    """The kustomize engine's rollout wave of a workload (spinboot.kube.kustomize_apply.wave: each wave's rollout
    is awaited before the next is applied), named after the workloads in it."""
    from spinboot.kube.kustomize_apply import wave

    w = wave(workload)[0]
    return w, f"rollout wave {w} ({{members}})"


def server_timeline(sb: Sandbox, started: float, ended: float, mark: dict[str, int],
                    project: str = "acme-platform", location: str = "us-central1-b", cluster: str = "spinnaker",
                    halyard_ns: str = "halyard", spinnaker_ns: str = "spinnaker", engine: str = "halyard") -> dict:
    """Read the segments of ``timeline_segments`` from the servers after a run that went from ``started`` to
    ``ended`` (epoch s); times are returned relative to ``started``. The kustomize engine has no Halyard pod: its
    links are the GKE operation and one rollout per wave, read from the install's Deployments, StatefulSets and
    pods (selected by the install label every object of the tree carries, spinboot/render/kustomize/labels.py)."""
    from kubernetes import client, config

    from spinboot.sandbox.kube import KubeCluster

    op = gke_create_operation(sb, project, location, cluster, since=started - 1)
    kc = KubeCluster.attach(f"{project}-{location}-{cluster}", sb.clusters_dir)
    api = config.new_client_from_config(config_file=str(kc.admin_kubeconfig_path))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)

    def listed(items, kind: str) -> list[dict]:
        return [{**api.sanitize_for_serialization(i), "kind": kind} for i in items]

    if engine == "kustomize":
        from spinboot.render.kustomize.labels import INSTALL_LABEL

        sel = f"{INSTALL_LABEL}={spinnaker_ns}"
        workloads = listed(apps.list_namespaced_deployment(spinnaker_ns, label_selector=sel).items, "Deployment")
        workloads += listed(apps.list_namespaced_stateful_set(spinnaker_ns, label_selector=sel).items, "StatefulSet")
        pods = listed(core.list_namespaced_pod(spinnaker_ns).items, "Pod")
        segs = timeline_segments(op, None, [], workloads, pods=pods, waves=kustomize_wave)
    else:
        pods = [api.sanitize_for_serialization(p) for p in core.list_namespaced_pod(halyard_ns).items]
        deployments = [api.sanitize_for_serialization(d) for d in
                       apps.list_namespaced_deployment(spinnaker_ns, label_selector="app=spin").items]
        execs = [e for e in kc.audit_events()[mark.get(kc.name, 0):]
                 if (e.get("objectRef") or {}).get("subresource") == "exec"]
        segs = timeline_segments(op, pods[0] if pods else None, execs, deployments)
    cp = union_seconds([(s["start"], s["end"]) for s in segs])
    for seg in segs:
        seg["start"], seg["end"] = round(seg["start"] - started, 2), round(seg["end"] - started, 2)
    wall = ended - started
    return {"segments": segs, "critical_path_s": round(cp, 2), "wall_s": round(wall, 2),
            "spinboot_own_s": round(wall - cp, 2), "ratio_wall_to_critical_path": round(wall / cp, 3) if cp else None}


# --- scenarios -----------------------------------------------------------------------------------------------------


def fresh_and_second(workdir: Path, latency_s: float) -> dict:
    """Fresh apply of the example at a realistic (scaled-down) GKE latency, then the same apply again."""
    sb = Sandbox(state_dir=workdir / "sbx-fresh", gke_latency_s=latency_s, log=log)
    sb.up()
    try:
        from spinboot.config import load_config

        sb.seed(load_config(EXAMPLE).config)
        log(f"fresh apply of {EXAMPLE.name} with GKE operations taking {latency_s} s")
        fresh = measured_apply(sb, EXAMPLE, timeline=True)
        fresh["ratio_wall_to_critical_path"] = round(fresh["wall_s"] / fresh["critical_path_s"], 3) \
            if fresh["critical_path_s"] else None
        fresh["gke_cluster_step_s"] = fresh["steps_s"].get("cluster", 0.0)
        fresh["halyard_step_s"] = fresh["steps_s"].get("halyard", 0.0)
        gke = next((s for s in fresh.get("server_timeline", {}).get("segments", [])
                    if s["name"] == "GKE create operation"), None)
        fresh["gke_create_operation_s"] = gke["seconds"] if gke else None
        if gke:
            # spinboot's cluster step against the operation it waited for: how late it noticed the end.
            fresh["operation_poll_lag_s"] = round(fresh["gke_cluster_step_s"] - gke["seconds"], 2)
        log(f"fresh: {fresh['wall_s']} s wall, critical path at the servers {fresh['critical_path_s']} s "
            f"({' -> '.join(fresh['critical_path'])}); spinboot's step chain {fresh['step_chain_s']} s")
        second = [measured_apply(sb, EXAMPLE) for _ in range(3)]
        log(f"second apply: {[s['wall_s'] for s in second]} s, mutating calls "
            f"{[s['calls']['totals']['mutating'] for s in second]}")
        return {"gke_latency_s": latency_s, "fresh": fresh, "second": second[0],
                "second_wall_s_runs": [s["wall_s"] for s in second]}
    finally:
        sb.down()


# --- the kustomize engine ------------------------------------------------------------------------------------------

KUSTOMIZE_EXAMPLE = ROOT / "examples" / "kustomize.yaml"
EXTRA_TARGET = {"name": "platform-extra", "namespaces": ["prod"],
                "gke": {"project": "acme-platform", "location": "us-central1", "cluster": "platform-extra"}}


def kustomize_doc() -> dict:
    """examples/kustomize.yaml as the sandbox can serve it: without its Ingress, whose BackendConfig and
    ManagedCertificate are GKE's CRDs, which the sandbox's control planes do not serve (as in
    tests/e2e/test_kustomize_engine.py)."""
    doc = yaml.safe_load(KUSTOMIZE_EXAMPLE.read_text())
    doc["spinnaker"]["exposure"].pop("ingress", None)
    return doc


def _add_target(doc: dict) -> None:
    doc["targets"].append(copy.deepcopy(EXTRA_TARGET))


def _subscription(doc: dict) -> None:
    # ackDeadlineSeconds is a field of each of echo's pubsub.google.subscriptions (spinnaker/spinnaker at
    # spinnaker-release-2026.2.3, echo/echo-pubsub-google/src/main/java/com/netflix/spinnaker/echo/config/
    # GooglePubsubProperties.java), so spinboot writes it into echo's config (render/kustomize/config_files.py,
    # echo_local) as well as onto the Pub/Sub subscription: the change reaches one service's config.
    sub = doc["registries"][0]["subscription"]
    sub["ackDeadlineSeconds"] = sub.get("ackDeadlineSeconds", 60) * 2


def _bump(doc: dict) -> None:
    doc["spinnaker"]["version"] = "2026.3.0"


def _sizing(doc: dict) -> None:
    doc["spinnaker"]["sizing"].setdefault("orca", {})["requestsMemory"] = "3Gi"


# Applied in this order, each on top of the one before; the bump last (it rolls everything).
KUSTOMIZE_CHANGES = (
    ("add a target", "targets: + platform-extra (1 namespace)", _add_target),
    ("change a registry subscription", "registries[images].subscription.ackDeadlineSeconds: 60 → 120", _subscription),
    ("change one service's sizing", "spinnaker.sizing.orca.requestsMemory: 2Gi (default) → 3Gi", _sizing),
    ("bump the version", "spinnaker.version: 2026.2.3 → 2026.3.0", _bump),
)


def workload_revisions(sb: Sandbox, namespace: str = "spinnaker",
                       cluster: str = "acme-platform-us-central1-b-spinnaker") -> dict[str, dict]:
    """Each workload of the install with its current pod template as the API server identifies it: a
    Deployment's newest ReplicaSet (highest ``deployment.kubernetes.io/revision``) by its ``pod-template-hash``, a
    StatefulSet's ``status.updateRevision``; and its replicas."""
    from kubernetes import client, config

    from spinboot.render.kustomize.labels import INSTALL_LABEL

    api = config.new_client_from_config(config_file=str(sb.clusters_dir / cluster / "admin.kubeconfig"))
    apps = client.AppsV1Api(api)
    sel = f"{INSTALL_LABEL}={namespace}"
    newest: dict[str, tuple[int, str]] = {}
    for rs in apps.list_namespaced_replica_set(namespace).items:
        owner = next((o.name for o in rs.metadata.owner_references or [] if o.kind == "Deployment"), None)
        rev = int((rs.metadata.annotations or {}).get("deployment.kubernetes.io/revision", "0"))
        if owner and rev >= newest.get(owner, (-1, ""))[0]:
            newest[owner] = (rev, (rs.metadata.labels or {}).get("pod-template-hash", ""))
    out = {d.metadata.name: {"kind": "Deployment", "replicas": d.spec.replicas,
                             "template": newest.get(d.metadata.name, (0, ""))[1]}
           for d in apps.list_namespaced_deployment(namespace, label_selector=sel).items}
    out.update({s.metadata.name: {"kind": "StatefulSet", "replicas": s.spec.replicas,
                                  "template": s.status.update_revision or ""}
                for s in apps.list_namespaced_stateful_set(namespace, label_selector=sel).items})
    return out


def rolls(before: dict[str, dict], after: dict[str, dict]) -> dict[str, list[str]]:
    """What an apply did to the workloads, from two ``workload_revisions``: ``rolled`` (a new pod template: new
    pods replace all the old ones), ``scaled`` (replicas changed, same template), ``created``, ``removed``,
    ``unchanged``. Pure."""
    both = sorted(set(before) & set(after))
    rolled = [n for n in both if before[n]["template"] != after[n]["template"]]
    scaled = [n for n in both if n not in rolled and before[n]["replicas"] != after[n]["replicas"]]
    return {"rolled": rolled, "scaled": scaled, "created": sorted(set(after) - set(before)),
            "removed": sorted(set(before) - set(after)),
            "unchanged": [n for n in both if n not in rolled and n not in scaled]}


def kustomize_engine(workdir: Path, latency_s: float) -> dict:
    """The kustomize engine on its own sandbox: a fresh apply of examples/kustomize.yaml against its critical path
    as the servers timed it, the same apply three times more (nothing to do), then one apply per change type
    (``KUSTOMIZE_CHANGES``) with the workloads it rolled, read from the API server."""
    from spinboot.config import load_config

    def write(name: str, doc: dict) -> Path:
        path = workdir / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    sb = Sandbox(state_dir=workdir / "sbx-kustomize", gke_latency_s=latency_s, log=log)
    sb.up()
    try:
        doc = kustomize_doc()
        seed = copy.deepcopy(doc)
        _add_target(seed)   # the target the first change adds exists beforehand, as a team's cluster would
        sb.seed(load_config(write("kustomize-seed.yaml", seed)).config)
        cfg = write("kustomize.yaml", doc)
        log(f"kustomize engine: fresh apply of {KUSTOMIZE_EXAMPLE.name} with GKE operations taking {latency_s} s")
        fresh = measured_apply(sb, cfg, timeline=True, engine="kustomize")
        fresh["ratio_wall_to_critical_path"] = round(fresh["wall_s"] / fresh["critical_path_s"], 3) \
            if fresh["critical_path_s"] else None
        fresh["gke_cluster_step_s"] = fresh["steps_s"].get("cluster", 0.0)
        fresh["spinnaker_step_s"] = fresh["steps_s"].get("spinnaker", 0.0)
        gke = next((s for s in fresh.get("server_timeline", {}).get("segments", [])
                    if s["name"] == "GKE create operation"), None)
        fresh["gke_create_operation_s"] = gke["seconds"] if gke else None
        log(f"kustomize fresh: rc {fresh['rc']}, {fresh['wall_s']} s wall, critical path at the servers "
            f"{fresh['critical_path_s']} s ({' -> '.join(fresh['critical_path'])})")
        second = [measured_apply(sb, cfg) for _ in range(3)]
        log(f"kustomize second apply: {[s['wall_s'] for s in second]} s, mutating calls "
            f"{[s['calls']['totals']['mutating'] for s in second]}")
        changes = []
        for i, (name, what, change) in enumerate(KUSTOMIZE_CHANGES):
            doc = copy.deepcopy(doc)
            change(doc)
            path = write(f"kustomize-change-{i}.yaml", doc)
            before = workload_revisions(sb, doc["spinnaker"]["namespace"])
            run = measured_apply(sb, path)
            did = rolls(before, workload_revisions(sb, doc["spinnaker"]["namespace"]))
            log(f"  {name}: rc {run['rc']}, {run['wall_s']} s, rolled {did['rolled'] or 'nothing'}")
            changes.append({"change": name, "what": what, "rc": run["rc"], "wall_s": run["wall_s"],
                            "calls": run["calls"], "changes": run["changes"], **did})
        return {"example": str(KUSTOMIZE_EXAMPLE.relative_to(ROOT)), "gke_latency_s": latency_s,
                "without": "exposure.ingress (GKE CRDs the sandbox does not serve)", "fresh": fresh,
                "second": second[0], "second_wall_s_runs": [s["wall_s"] for s in second],
                "second_mutating_runs": [s["calls"]["totals"]["mutating"] for s in second],
                "changes": changes}
    finally:
        sb.down()


def gke_create_operation(sb: Sandbox, project: str, location: str, cluster: str,
                         since: float = 0.0) -> tuple[float, float] | None:
    """The cluster's latest CREATE_CLUSTER operation started after ``since``: its start and end (epoch s), as GKE
    timed it."""
    cm = sb.gke.cluster_manager()
    ops = cm.list_operations(parent=f"projects/{project}/locations/{location}").operations
    done = [(parse_time(o.start_time), parse_time(o.end_time)) for o in ops
            if o.operation_type.name == "CREATE_CLUSTER" and o.end_time
            and o.target_link.endswith(f"/clusters/{cluster}")]
    done = sorted(t for t in done if t[0] >= since)
    return done[-1] if done else None


def scale_config(n_targets: int, n_namespaces: int) -> dict:
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["targets"] = [
        {"name": f"bench-{i}", "gke": {"project": "acme-platform", "location": "us-central1", "cluster": f"bench-{i}"},
         "namespaces": [f"ns-{j:02d}" for j in range(1, n_namespaces + 1)]}
        for i in range(1, n_targets + 1)]
    return cfg


def scale(workdir: Path, targets: list[int], namespaces: list[int], latency_s: float) -> list[dict]:
    """Fresh and second apply for each (targets, namespaces-per-target) pair, on one sandbox seeded for the
    largest; ``destroy`` between runs takes spinboot's work away so each fresh apply starts from the same place."""
    from spinboot.config import load_config

    biggest = workdir / "scale-max.yaml"
    biggest.write_text(yaml.safe_dump(scale_config(max(targets), max(namespaces)), sort_keys=False))
    sb = Sandbox(state_dir=workdir / "sbx-scale", gke_latency_s=latency_s, log=log)
    t0 = time.perf_counter()
    sb.up()
    out = []
    try:
        sb.seed(load_config(biggest).config)
        log(f"{max(targets)} target clusters seeded with {max(namespaces)} namespaces each in "
            f"{time.perf_counter() - t0:.0f} s")
        for ns in namespaces:
            for n in targets:
                cfg = workdir / f"scale-{n}x{ns}.yaml"
                cfg.write_text(yaml.safe_dump(scale_config(n, ns), sort_keys=False))
                gone = spinboot(["destroy", "-c", str(biggest), "--yes"], sb.environ())
                if gone["rc"] != 0:
                    raise RuntimeError("destroy between scale runs failed")
                log(f"{n} targets x {ns} namespaces: fresh apply")
                fresh = measured_apply(sb, cfg, timeline=True)
                second = measured_apply(sb, cfg)
                reprove = measured_apply(sb, cfg, extra=("--reprove",))   # what every second apply cost before
                targets_s = max((v for k, v in fresh["steps_s"].items() if k.startswith("rbac:")), default=0.0)
                row = {"targets": n, "namespaces": ns, "fresh": fresh, "second": second, "second_reprove": reprove,
                       "slowest_target_step_s": targets_s,
                       # The same, as the targets' API servers saw it: first request to last answer, per target.
                       "slowest_target_server_span_s": max(fresh["target_server_span_s"].values(), default=0.0)}
                log(f"  fresh {fresh['wall_s']} s (rc {fresh['rc']}), second {second['wall_s']} s "
                    f"(proof {sorted(set(second['proof'].values()))}), second with --reprove {reprove['wall_s']} s, "
                    f"second's mutating calls {second['calls']['totals']['mutating']}")
                out.append(row)
    finally:
        sb.down()
    return out


def render_cost(workdir: Path, runs: int = 5) -> dict:
    """``spinboot render`` of the example: wall time and peak RSS of the process; and the renderer alone
    in this process (time and peak Python heap, by tracemalloc)."""
    walls, rss = [], []
    for i in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "spinboot", "render", "-c", str(EXAMPLE), "-d",
                                 str(workdir / f"render-{i}")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - t0)
        rss.append(usage.ru_maxrss * 1024)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"render failed: {proc.stderr.read().decode()[-2000:]}")
        proc.stderr.close()
    from spinboot.config import load_config
    from spinboot.render.bundle import render_all

    cfg = load_config(EXAMPLE).config
    inner = []
    render_all(cfg)  # warm: imports and template loading are the command's cost, measured above
    for _ in range(20):
        t0 = time.perf_counter()
        files = render_all(cfg)
        inner.append(time.perf_counter() - t0)
    tracemalloc.start()  # separately: tracing slows every allocation down
    render_all(cfg)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"runs": runs, "command_wall_s_median": round(statistics.median(walls), 3),
            "command_wall_s_max": round(max(walls), 3), "command_peak_rss_mib": round(max(rss) / 2**20, 1),
            "render_all_ms_median": round(statistics.median(inner) * 1000, 2),
            "render_all_peak_heap_kib": round(peak / 1024, 1), "files": len(files)}


def matrices(workdir: Path, full: bool) -> dict:
    """The fault-injection and kill-and-re-run tests, full matrix, with their outcome per case."""
    junit = workdir / "matrix.xml"
    env = {**os.environ, "SPINBOOT_FULL_MATRIX": "1" if full else ""}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--basetemp={workdir / 'pytest'}", f"--junitxml={junit}", "-m", "matrix",
                           str(ROOT / "tests" / "e2e")], env=env, cwd=ROOT, capture_output=True, text=True)
    import xml.etree.ElementTree as ET

    cases = []
    if junit.is_file():
        for tc in ET.parse(junit).getroot().iter("testcase"):
            outcome = "failed" if tc.find("failure") is not None or tc.find("error") is not None else \
                "skipped" if tc.find("skipped") is not None else "passed"
            cases.append({"name": tc.get("name"), "seconds": round(float(tc.get("time", 0)), 1), "outcome": outcome})
    if proc.returncode != 0:
        log(f"matrix tests failed:\n{proc.stdout[-4000:]}")
    return {"full": full, "rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 1), "cases": cases}


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    mem = 0
    try:
        mem = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))) // 1024
    except (OSError, StopIteration):
        pass
    return {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
            "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "mem_mib": mem}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=30.0, help="GKE operation latency for the fresh apply (s)")
    ap.add_argument("--scale-latency", type=float, default=2.0, help="GKE operation latency in the scale runs (s)")
    ap.add_argument("--targets", default="1,4,8", help="target counts for the scale runs")
    ap.add_argument("--namespaces", default="1,50", help="namespaces per target for the scale runs")
    ap.add_argument("--only", default=",".join(PARTS), help="which parts to run (comma-separated): "
                    + ", ".join(PARTS))
    ap.add_argument("--reduced-matrix", action="store_true", help="run the CI-sized fault/kill matrix, not the full one")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = ap.parse_args(argv)
    parts = set(args.only.split(","))
    results: dict = {"machine": machine(), "spinboot_example": str(EXAMPLE.relative_to(ROOT))}
    prev = args.out / "latest.json"
    unknown = parts - set(PARTS)
    if unknown:
        ap.error(f"unknown part(s): {', '.join(sorted(unknown))} (parts: {', '.join(PARTS)})")
    if prev.is_file() and parts != set(PARTS):
        results = {**json.loads(prev.read_text()), **results}  # a partial run keeps the other parts' numbers
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spinboot-bench-") as tmp:
        work = Path(tmp)
        if "render" in parts:
            log("render")
            results["render"] = render_cost(work)
        if "fresh" in parts:
            results["fresh_and_second"] = fresh_and_second(work, args.latency)
        if "kustomize" in parts:
            results["kustomize"] = kustomize_engine(work, args.latency)
        if "scale" in parts:
            results["scale"] = scale(work, [int(x) for x in args.targets.split(",")],
                                     [int(x) for x in args.namespaces.split(",")], args.scale_latency)
        if "matrix" in parts:
            log("fault-injection and kill-and-re-run matrix (pytest -m matrix)")
            results["matrix"] = matrices(work, full=not args.reduced_matrix)
    results["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    written = write_reports(copy.deepcopy(results), args.out)
    for p in written:
        log(f"wrote {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}")
    failed = [c["name"] for c in results.get("matrix", {}).get("cases", []) if c["outcome"] == "failed"]
    bad_runs = [r for r in results.get("scale", []) if r["fresh"]["rc"] or r["second"]["rc"]]
    if "kustomize" in parts:
        k = results["kustomize"]
        bad_runs += [k["fresh"]] if k["fresh"]["rc"] or k["second"]["rc"] else []
        bad_runs += [c for c in k["changes"] if c["rc"]]
    return 1 if failed or bad_runs or results.get("matrix", {}).get("rc", 0) not in (0, 5) else 0


if __name__ == "__main__":
    sys.exit(main())
