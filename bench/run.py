"""spinboot's benchmarks, run against the local sandbox: ``make bench`` (or ``python bench/run.py --help``).

Writes bench/results/latest.json (everything measured, with the machine it ran on), latest.md (the tables
docs/performance.md quotes) and targets.png (apply time against the number of targets).

Every number comes from a real run: ``spinboot`` is started as a subprocess (so interpreter start-up counts, as it
does for an operator), wall time is taken around it, step times come from its JSON events, and API calls are
counted where they land, at the sandbox's servers (spinboot.sandbox.meter). Nothing here asserts a timing:
the tests assert behaviour; this file measures it.
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


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- running spinboot ----------------------------------------------------------------------------------------------


def spinboot(args: list[str], env: dict[str, str], timeout: float = 1800) -> dict:
    """Run ``spinboot ARGS --output json``; wall time, exit code, events, and the child's peak RSS."""
    cmd = [sys.executable, "-m", "spinboot", *args, "--output", "json"]
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
    return {"rc": proc.returncode, "wall_s": round(wall, 2), "events": events}


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


def measured_apply(sb: Sandbox, cfg: Path) -> dict:
    """One ``apply`` with its wall time, step times, critical path and calls counted at the servers."""
    meter = Meter(sb)
    mark = meter.mark()
    run = spinboot(["apply", "-c", str(cfg), "--yes"], sb.environ())
    calls = meter.since(mark)
    steps = step_times(run["events"])
    cp, chain = critical_path(steps)
    s = summary(run["events"])
    return {
        "rc": run["rc"], "wall_s": run["wall_s"], "critical_path_s": round(cp, 2), "critical_path": chain,
        "steps_s": {k: v["seconds"] for k, v in steps.items()},
        "serial_sum_s": round(sum(v["seconds"] for v in steps.values()), 2),
        "changes": {k: s.get(k, 0) for k in ("create", "update", "delete", "unchanged")},
        "calls": calls.as_dict(),
    }


# --- scenarios -----------------------------------------------------------------------------------------------------


def fresh_and_second(workdir: Path, latency_s: float) -> dict:
    """Fresh apply of the example at a realistic (scaled-down) GKE latency, then the same apply again."""
    sb = Sandbox(state_dir=workdir / "sbx-fresh", gke_latency_s=latency_s, log=log)
    sb.up()
    try:
        from spinboot.config import load_config

        sb.seed(load_config(EXAMPLE).config)
        log(f"fresh apply of {EXAMPLE.name} with GKE operations taking {latency_s} s")
        fresh = measured_apply(sb, EXAMPLE)
        fresh["ratio_wall_to_critical_path"] = round(fresh["wall_s"] / fresh["critical_path_s"], 3) \
            if fresh["critical_path_s"] else None
        fresh["gke_cluster_step_s"] = fresh["steps_s"].get("cluster", 0.0)
        fresh["halyard_step_s"] = fresh["steps_s"].get("halyard", 0.0)
        # The critical path: the GKE create operation as GKE timed it, plus the Halyard rollout.
        op = gke_create_seconds(sb, "acme-platform", "us-central1-b", "spinnaker")
        fresh["gke_create_operation_s"] = op
        if op:
            floor = op + fresh["halyard_step_s"]
            fresh["gke_operation_plus_halyard_s"] = round(floor, 2)
            fresh["ratio_wall_to_gke_operation_plus_halyard"] = round(fresh["wall_s"] / floor, 3)
            fresh["operation_poll_lag_s"] = round(fresh["gke_cluster_step_s"] - op, 2)
        log(f"fresh: {fresh['wall_s']} s wall, critical path {fresh['critical_path_s']} s "
            f"({' -> '.join(fresh['critical_path'])})")
        second = [measured_apply(sb, EXAMPLE) for _ in range(3)]
        log(f"second apply: {[s['wall_s'] for s in second]} s, mutating calls "
            f"{[s['calls']['totals']['mutating'] for s in second]}")
        return {"gke_latency_s": latency_s, "fresh": fresh, "second": second[0],
                "second_wall_s_runs": [s["wall_s"] for s in second]}
    finally:
        sb.down()


def gke_create_seconds(sb: Sandbox, project: str, location: str, cluster: str) -> float | None:
    """How long GKE itself took to create the cluster: its CREATE_CLUSTER operation's start and end times."""
    import re

    def ts(s: str) -> dt.datetime:
        return dt.datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", s).replace("Z", "+00:00"))

    cm = sb.gke.cluster_manager()
    ops = cm.list_operations(parent=f"projects/{project}/locations/{location}").operations
    done = [o for o in ops if o.operation_type.name == "CREATE_CLUSTER" and o.end_time
            and o.target_link.endswith(f"/clusters/{cluster}")]
    return round((ts(done[-1].end_time) - ts(done[-1].start_time)).total_seconds(), 2) if done else None


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
                fresh = measured_apply(sb, cfg)
                second = measured_apply(sb, cfg)
                targets_s = max((v for k, v in fresh["steps_s"].items() if k.startswith("rbac:")), default=0.0)
                row = {"targets": n, "namespaces": ns, "fresh": fresh, "second": second,
                       "slowest_target_step_s": targets_s}
                log(f"  fresh {fresh['wall_s']} s (rc {fresh['rc']}), second {second['wall_s']} s, "
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
    ap.add_argument("--only", default="render,fresh,scale,matrix", help="which parts to run (comma-separated)")
    ap.add_argument("--reduced-matrix", action="store_true", help="run the CI-sized fault/kill matrix, not the full one")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = ap.parse_args(argv)
    parts = set(args.only.split(","))
    results: dict = {"machine": machine(), "spinboot_example": str(EXAMPLE.relative_to(ROOT))}
    prev = args.out / "latest.json"
    if prev.is_file() and parts != {"render", "fresh", "scale", "matrix"}:
        results = {**json.loads(prev.read_text()), **results}  # a partial run keeps the other parts' numbers
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spinboot-bench-") as tmp:
        work = Path(tmp)
        if "render" in parts:
            log("render")
            results["render"] = render_cost(work)
        if "fresh" in parts:
            results["fresh_and_second"] = fresh_and_second(work, args.latency)
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
    return 1 if failed or bad_runs or results.get("matrix", {}).get("rc", 0) not in (0, 5) else 0


if __name__ == "__main__":
    sys.exit(main())
