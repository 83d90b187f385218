"""Turn bench results (a dict, as in latest.json) into latest.json, latest.md and targets.png.

Pure: no sandbox, no network. tests/test_bench_report.py renders a small result with it.
"""

from __future__ import annotations

import json
from pathlib import Path


def _calls(c: dict) -> str:
    t = c["totals"]
    return f"{t['read']} read / {t['mutating']} mutating / {t['review']} review"


def _google(c: dict) -> str:
    return ", ".join(f"{svc} {sum(v.values())}" for svc, v in sorted(c["google"].items()) if v) or "0"


def _kube_mutating(c: dict) -> int:
    return sum(v.get("mutating", 0) for v in c["kubernetes"].values())


def _proof(run: dict) -> str:
    """What the run's RBAC proof did: proved or skipped, per target (collapsed when all agree)."""
    kinds = sorted({v.split(":")[0] for v in (run.get("proof") or {}).values()})
    return ", ".join(kinds) if kinds else "—"


def _timeline(tl: dict | None) -> list[str]:
    """The fresh apply as the servers timed it: each link of the critical path, and what is left for spinboot."""
    if not tl or not tl.get("segments"):
        return []
    out = ["Critical path as the servers timed it (seconds from the spinboot process's start; whole-second "
           "Kubernetes timestamps make pod and rollout links exact to about a second):", "",
           "| link (source) | from | to | seconds |", "|---|---|---|---|"]
    out += [f"| {s['name']} ({s['source']}) | {s['start']} | {s['end']} | {s['seconds']} |" for s in tl["segments"]]
    out += [f"| critical path (union of the links) | | | {tl['critical_path_s']} |",
            f"| spinboot's own share of the wall time | | | {tl['spinboot_own_s']} |", ""]
    return out


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def kustomize_sections(k: dict) -> list[str]:
    """The kustomize engine's part: its fresh apply against the servers' critical path, the second apply, and
    which workloads each change type rolled (read from the API server: a new pod template, so new pods)."""
    fr, se = k["fresh"], k["second"]
    tl = fr.get("server_timeline") or {}
    out = ["## Kustomize engine: fresh apply against its critical path", "",
           f"`{k['example']}` without {k['without']}; GKE operations in the sandbox take {k['gke_latency_s']} s.",
           "", "| measure | value |", "|---|---|",
           f"| fresh `apply` wall time (exit {fr['rc']}) | {fr['wall_s']} s |",
           f"| critical path ({' → '.join(fr['critical_path'])}; from "
           f"{fr.get('critical_path_source', 'spinboot’s step timers')}) | {fr['critical_path_s']} s |",
           f"| ratio wall / critical path | {fr.get('ratio_wall_to_critical_path')} |",
           f"| spinboot's own share (wall − critical path) | {tl.get('spinboot_own_s', '—')} s |",
           f"| spinboot's own step chain ({' → '.join(fr.get('step_chain', []))}), to compare | "
           f"{fr.get('step_chain_s')} s |",
           f"| GKE cluster step / spinnaker step (spinboot's timers) | {fr.get('gke_cluster_step_s')} s / "
           f"{fr.get('spinnaker_step_s')} s |",
           f"| GKE's own create operation (its start and end times) | {fr.get('gke_create_operation_s')} s |",
           f"| changes made | {fr['changes']['create']} created, {fr['changes']['update']} updated |",
           f"| calls (counted at the sandbox's servers) | {_calls(fr['calls'])} |", ""]
    out += _timeline(tl)
    out += ["## Kustomize engine: second apply (nothing to do)", "", "| measure | value |", "|---|---|",
            f"| wall time ({len(k['second_wall_s_runs'])} runs) | "
            f"{', '.join(f'{x} s' for x in k['second_wall_s_runs'])} |",
            f"| mutating calls, each run | {', '.join(str(x) for x in k['second_mutating_runs'])} |",
            f"| calls by kind (first run) | {_calls(se['calls'])} |",
            f"| Google calls by service | {_google(se['calls'])} |",
            f"| changes made | {se['changes']['create'] + se['changes']['update'] + se['changes']['delete']} |", ""]
    out += ["## Kustomize engine: workloads rolled per change type", "",
            "Each change applied on top of the one before; rolled = a new pod template (a new ReplicaSet, or a "
            "StatefulSet's new revision) as the API server lists it after the apply.", "",
            "| change | in the file | rolled | scaled, not rolled | not rolled | apply wall | calls |",
            "|---|---|---|---|---|---|---|"]
    for c in k["changes"]:
        wall = f"{c['wall_s']} s" + ("" if c["rc"] == 0 else f" (exit {c['rc']})")
        rolled = f"**{_names(c['rolled'])}**" + "".join(
            f"; {what}: {', '.join(c[key])}" for key, what in (("created", "new"), ("removed", "pruned")) if c.get(key))
        out.append(f"| {c['change']} | {c['what']} | {rolled} | {_names(c['scaled'])} | "
                   f"{len(c['unchanged'])} of {len(c['unchanged']) + len(c['rolled']) + len(c['scaled'])} | "
                   f"{wall} | {_calls(c['calls'])} |")
    return out + [""]


def markdown(r: dict) -> str:
    m = r["machine"]
    out = [f"# spinboot benchmark results", "",
           f"Measured {m['when']} at commit `{m['commit']}` on {m['cpus']} CPUs, {m['mem_mib']} MiB, "
           f"Python {m['python']} ({m['platform']}). Reproduce with `make bench`; method in docs/performance.md.", ""]
    if "fresh_and_second" in r:
        f = r["fresh_and_second"]
        fr, se = f["fresh"], f["second"]
        out += ["## Fresh apply against its critical path", "",
                f"GKE operations in the sandbox take {f['gke_latency_s']} s (scaled down from minutes).", "",
                "| measure | value |", "|---|---|",
                f"| fresh `apply` wall time | {fr['wall_s']} s |",
                f"| critical path ({' → '.join(fr['critical_path'])}; from "
                f"{fr.get('critical_path_source', 'spinboot’s step timers')}) | {fr['critical_path_s']} s |",
                f"| ratio wall / critical path | {fr['ratio_wall_to_critical_path']} |",
                f"| spinboot's own step chain ({' → '.join(fr.get('step_chain', fr['critical_path']))}), to compare | "
                f"{fr.get('step_chain_s', fr['critical_path_s'])} s |",
                f"| sum of all step times (what a serial tool would take) | {fr['serial_sum_s']} s |",
                f"| GKE cluster step / Halyard step | {fr['gke_cluster_step_s']} s / {fr['halyard_step_s']} s |",
                f"| GKE's own create operation (its start and end times) | {fr.get('gke_create_operation_s')} s |",
                f"| of which: noticing the operation ended (poll backoff) | {fr.get('operation_poll_lag_s')} s |",
                f"| changes made | {fr['changes']['create']} created, {fr['changes']['update']} updated |",
                f"| calls (counted at the sandbox's servers) | {_calls(fr['calls'])} |", ""]
        out += _timeline(fr.get("server_timeline"))
        out += ["## Second apply (nothing to do)", "",
                "| measure | value |", "|---|---|",
                f"| wall time (3 runs) | {', '.join(f'{x} s' for x in f['second_wall_s_runs'])} |",
                f"| calls by kind | {_calls(se['calls'])} |",
                f"| Google calls by service | {_google(se['calls'])} |",
                f"| changes made | {se['changes']['create'] + se['changes']['update'] + se['changes']['delete']} |",
                f"| RBAC proof | {_proof(se)} |", ""]
        methods = {f"{svc} {meth}": n for svc, per in se["calls"]["google_methods"].items() for meth, n in per.items()}
        kube: dict[str, int] = {}
        for per in se["calls"]["kubernetes_requests"].values():
            for k, n in per.items():
                kube[k] = kube.get(k, 0) + n
        out += ["Calls of the second apply, by method:", "", "| call | count |", "|---|---|"]
        out += [f"| {k} | {n} |" for k, n in sorted(methods.items())]
        out += [f"| Kubernetes {k} | {n} |" for k, n in sorted(kube.items())]
        out += [""]
    if r.get("kustomize"):
        out += kustomize_sections(r["kustomize"])
    if r.get("scale"):
        out += ["## Scale: targets and namespaces", "",
                "| targets | namespaces each | fresh apply | target steps: slowest / sum | slowest target at its API "
                "server | fresh calls | second apply | second calls | second: mutating | second: RBAC proof | "
                "second with --reprove |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in r["scale"]:
            fr, se = row["fresh"], row["second"]
            rp = row.get("second_reprove")
            serial = round(sum(v for k, v in fr["steps_s"].items() if k.startswith("rbac:")), 2)
            span = row.get("slowest_target_server_span_s")
            rp_text = "—" if rp is None else f"{rp['wall_s']} s, {_calls(rp['calls'])}"
            out.append(f"| {row['targets']} | {row['namespaces']} | {fr['wall_s']} s | {row['slowest_target_step_s']} s"
                       f" / {serial} s | {'—' if span is None else f'{span} s'}"
                       f" | {_calls(fr['calls'])} | {se['wall_s']} s | {_calls(se['calls'])} | "
                       f"{se['calls']['totals']['mutating']} | {_proof(se)} | {rp_text} |")
        out += ["", "![apply time against targets](targets.png)", ""]
    if "render" in r:
        x = r["render"]
        out += ["## render of the example", "", "| measure | value |", "|---|---|",
                f"| `spinboot render` command, wall (median of {x['runs']}) | {x['command_wall_s_median']} s |",
                f"| its peak RSS | {x['command_peak_rss_mib']} MiB |",
                f"| renderer alone (render_all, median) | {x['render_all_ms_median']} ms |",
                f"| renderer's peak Python heap | {x['render_all_peak_heap_kib']} KiB |",
                f"| files rendered | {x['files']} |", ""]
    if "matrix" in r:
        x = r["matrix"]
        passed = sum(c["outcome"] == "passed" for c in x["cases"])
        out += [f"## Fault-injection and kill-and-re-run matrix ({'full' if x['full'] else 'reduced'})", "",
                f"{passed} of {len(x['cases'])} cases passed in {x['wall_s']} s.", "",
                "| case | outcome | seconds |", "|---|---|---|"]
        out += [f"| `{c['name']}` | {c['outcome']} | {c['seconds']} |" for c in x["cases"]]
        out += [""]
    out += [f"Whole benchmark: {r.get('bench_wall_s', '?')} s.", ""]
    return "\n".join(out)


def plot(r: dict, path: Path) -> Path | None:
    rows = r.get("scale") or []
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for ns in sorted({row["namespaces"] for row in rows}):
        sel = sorted((row for row in rows if row["namespaces"] == ns), key=lambda row: row["targets"])
        xs = [row["targets"] for row in sel]
        ax.plot(xs, [row["fresh"]["wall_s"] for row in sel], marker="o", label=f"fresh apply, {ns} ns/target")
        ax.plot(xs, [row["second"]["wall_s"] for row in sel], marker="s", linestyle="--",
                label=f"second apply, {ns} ns/target")
        # The target steps alone: run side by side (the slowest one is what the run waits for) against what
        # running them one after another would take (their sum).
        bx.plot(xs, [row["slowest_target_step_s"] for row in sel], marker="o", label=f"concurrent, {ns} ns/target")
        bx.plot(xs, [sum(v for k, v in row["fresh"]["steps_s"].items() if k.startswith("rbac:")) for row in sel],
                marker="x", linestyle=":", label=f"one by one (sum), {ns} ns/target")
    ax.set_title("apply wall time (fresh includes GKE create + Halyard)", fontsize=9)
    bx.set_title("target RBAC steps of the fresh apply", fontsize=9)
    for a in (ax, bx):
        a.set_xlabel("target clusters")
        a.set_ylabel("seconds")
        a.set_xticks(sorted({row["targets"] for row in rows}))
        a.set_ylim(bottom=0)
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle("spinboot apply against the sandbox")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_reports(results: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "latest.json", out / "latest.md"]
    paths[0].write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    paths[1].write_text(markdown(results))
    png = plot(results, out / "targets.png")
    return paths + ([png] if png else [])
