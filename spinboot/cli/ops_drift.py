"""``spinboot drift``: a thin command over spinboot.ops.drift (docs/drift.md). Read-only, so no --yes.

A table per target and namespace on a terminal, one ``drift`` event per finding with --output json. Exit 0 when
nothing drifted, 3 when something did (the plan convention), 1 when a target could not be read, 2 for bad input.
"""

# No `from __future__ import annotations`: the option types are local to register(), Typer evaluates them.

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    from .common import (EXIT_BAD_INPUT, EXIT_CHANGES, EXIT_FAILED, ConfigOpt, OutputOpt, SandboxOpt, load_or_exit,
                         make_clients)
    from .output import OutputFormat, Reporter

    @app.command()
    def drift(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text,
              sandbox: SandboxOpt = False,
              target: Annotated[Optional[str], typer.Option("--target", help="Only this target.")] = None,
              namespace: Annotated[Optional[str], typer.Option("--namespace", help="Only this namespace.")] = None,
              audit: Annotated[bool, typer.Option("--audit", help="Also read GKE's Cloud Audit Logs: writes into "
                                                  "the namespaces by anyone but Spinnaker, with who.")] = False,
              since: Annotated[str, typer.Option("--since", help="--audit: how far back (30m, 24h, 7d).")] = "24h",
              kubeconfig_dir: Annotated[Optional[Path], typer.Option(
                  "--kubeconfig-dir", help="Read Spinnaker's kubeconfigs (TARGET.kubeconfig) from this directory "
                                           "instead of the Spinnaker cluster, e.g. the Secret mounted in the "
                                           "CronJob.")] = None,
              cronjob: Annotated[Optional[str], typer.Option(
                  "--cronjob", metavar="IMAGE", help="Print a least-privilege CronJob that runs drift with IMAGE "
                                                     "(a spinboot image) in the Spinnaker cluster, and exit.")] = None,
              schedule: Annotated[str, typer.Option("--schedule", help="--cronjob: its schedule.")] = "0 * * * *",
              ) -> None:
        """What was deployed into Spinnaker's namespaces around Spinnaker: unmanaged, tampered, foreign."""
        from ..ops import drift as d

        rep = Reporter(output)
        loaded = load_or_exit(config, rep)
        cfg = loaded.config
        bad = []
        if target and target not in {t.name for t in cfg.targets}:
            bad.append(f"--target {target}: not a target in {config} (targets: "
                       f"{', '.join(t.name for t in cfg.targets) or 'none'})")
        if namespace and not any(namespace in t.namespaces for t in cfg.targets if target in (None, t.name)):
            bad.append(f"--namespace {namespace}: not an allowed namespace of "
                       f"{'target ' + target if target else 'any target'} in {config}")
        try:
            since_at = d.parse_since(since)
        except ValueError as exc:
            bad.append(str(exc))
        if bad:
            for b in bad:
                rep.error(b, code="bad-flag")
            raise typer.Exit(EXIT_BAD_INPUT)
        if cronjob:
            import yaml

            docs = d.cronjob_manifests(cfg, cronjob, schedule, Path(config).read_text())
            rep.out.print(yaml.safe_dump_all(docs, sort_keys=False), markup=False, end="")
            return
        kubeconfigs = None
        if kubeconfig_dir is not None:
            kubeconfigs = {p.name.removesuffix(".kubeconfig"): p.read_bytes()
                           for p in sorted(Path(kubeconfig_dir).glob("*.kubeconfig"))}
        clients = make_clients(sandbox, rep) if (kubeconfigs is None or audit) else None
        report = d.run(clients, cfg, target=target, namespace=namespace, kubeconfigs=kubeconfigs, audit=audit,
                       since=since_at)
        show(rep, report, audit)
        for e in report.errors:
            rep.error(e, code="drift-read")
        counts = report.counts()
        rep.event("summary", None, verb="drift", **counts, errors=len(report.errors),
                  namespaces=len(report.scanned))
        if not rep.json:
            total = sum(counts.values())
            style = "green" if not total else "yellow"
            rep.out.print(("no drift: " if not total else "drift: ") + ", ".join(
                f"{v} {k}" for k, v in counts.items() if v or k != "write") +
                f" in {len(report.scanned)} namespace(s)", style=style, markup=False)
        if report.errors:
            raise typer.Exit(EXIT_FAILED)
        if report.findings:
            raise typer.Exit(EXIT_CHANGES)

    def show(rep, report, audit: bool) -> None:
        from rich.table import Table
        from rich.text import Text

        if rep.json:
            for f in report.findings:
                rep.event("drift", **f.as_event())
            return
        style = {"unmanaged": "yellow", "tampered": "red", "foreign": "magenta", "write": "cyan"}
        for s in report.scanned:
            rows = [f for f in report.findings if (f.target, f.namespace) == (s["target"], s["namespace"])]
            if not rows:
                rep.out.print(f"{s['target']}/{s['namespace']}: clean ({s['objects']} objects)", style="green",
                              markup=False)
                continue
            t = Table(title=f"{s['target']} / {s['namespace']}", title_justify="left")
            cols = ["class", "kind", "name", "writer", "when", "detail"] + (["principal"] if audit else [])
            for c in cols:
                t.add_column(c, overflow="fold")
            for f in rows:
                cells = [f.kind, f.name, f.writer, f.at or "", f.detail] + ([f.principal or ""] if audit else [])
                t.add_row(Text(f.klass, style=style[f.klass]), *(Text(c) for c in cells))
            rep.out.print(t)
