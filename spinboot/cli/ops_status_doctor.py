"""``spinboot status`` and ``spinboot doctor``: thin commands over spinboot.ops; read-only, so no --yes.

A table on a terminal, JSON with --output json; exit 1 when something is down (status) or a check fails (doctor),
so CI and cron can alert on the exit code alone.
"""

# No `from __future__ import annotations`: the option types are local to register(), Typer evaluates them.

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    from .common import EXIT_FAILED, ConfigOpt, OutputOpt, SandboxOpt, load_or_exit, make_clients
    from .output import OutputFormat, Reporter

    @app.command()
    def status(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text,
               sandbox: SandboxOpt = False) -> None:
        """One screen: cluster, node pool, Halyard, Spinnaker services, accounts, subscriptions, last apply."""
        from rich.table import Table

        from ..ops.status import gather

        rep = Reporter(output)
        cfg = load_or_exit(config, rep).config
        info = gather(make_clients(sandbox, rep), cfg)
        if rep.json:
            rep.event("status", ok=not info["problems"], **info)
        else:
            t = Table(title=f"spinboot status: {cfg.cluster.name}", show_header=True)
            t.add_column("what"); t.add_column("state"); t.add_column("detail")
            c = info["cluster"]
            t.add_row("cluster", c.get("status", ""), f"{c.get('location', '')} {c.get('version', '')} "
                                                      f"{c.get('endpoint', '')}")
            if "nodePool" in info:
                p = info["nodePool"]
                t.add_row("node pool", f"{p['ready']}/{p['nodes']} ready", f"{p['name']} {p['machineType']}")
                h = info["halyard"]
                t.add_row("halyard", "ready" if h["ready"] else "NOT READY", f"bundle {(h['bundleSha256'] or '-')[:12]}")
                for s in info["services"]:
                    t.add_row(f"service {s['name']}", "ready" if s["ready"] else "NOT READY",
                              f"{s['available']}/{s['replicas']}")
                for a in info["accounts"]:
                    t.add_row(f"account {a['name']}", "in halconfig" if a["inHalconfig"] else "MISSING", a["kind"])
                for s in info["subscriptions"]:
                    t.add_row("subscription", "exists" if s["exists"] else "MISSING",
                              f"{s['name']} backlog {s['backlog']}")
                dr = info.get("drift") or {}
                t.add_row("drift", "ERROR" if dr.get("errors") else str(sum(v for k, v in dr.items() if k != "errors")),
                          ", ".join(f"{v} {k}" for k, v in dr.items() if k != "errors") + " (spinboot drift)")
                t.add_row("last apply", "", ", ".join(f"{k}={v[:12]}" for k, v in sorted(info["lastApply"].items())))
            rep.out.print(t)
            for p in info["problems"]:
                rep.err.print(f"down: {p}", style="red", markup=False)
        if info["problems"]:
            raise typer.Exit(EXIT_FAILED)

    @app.command()
    def doctor(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text,
               sandbox: SandboxOpt = False) -> None:
        """Check live state for the known failure modes; each finding with its fix."""
        from rich.table import Table

        from ..ops.doctor import as_dicts, run_checks

        rep = Reporter(output)
        cfg = load_or_exit(config, rep).config
        checks = run_checks(make_clients(sandbox, rep), cfg)
        if rep.json:
            for c in as_dicts(checks):
                rep.event("check", **c)
        else:
            t = Table(title="spinboot doctor")
            for col in ("check", "status", "message", "fix"):
                t.add_column(col, overflow="fold")
            style = {"ok": "green", "warn": "yellow", "fail": "red"}
            for c in checks:
                t.add_row(c.id, f"[{style[c.status]}]{c.status}[/]", c.message, c.fix)
            rep.out.print(t)
        failed = [c for c in checks if c.status == "fail"]
        rep.event("summary", f"{len(checks)} checks, {len(failed)} failed", checks=len(checks), failed=len(failed))
        if failed:
            raise typer.Exit(EXIT_FAILED)
