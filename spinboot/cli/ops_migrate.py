"""``spinboot migrate``: a thin command over spinboot.ops.migrate (docs/migration.md).

Without --rollback/--finish: the inventory first (also all that --dry-run does), then the cutover, which runs the
kustomize engine's apply steps (IAM, Pub/Sub, storage, target RBAC: what the new stack needs) with the cutover as
its last step. Exit 0 done, 1 failed while acting (re-run it: it resumes), 2 bad input or a blocking inventory item.
"""

# No `from __future__ import annotations`: the option types are local to register(), Typer evaluates them.

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    from .common import (EXIT_BAD_INPUT, EXIT_FAILED, ConfigOpt, LockTimeoutOpt, OutputOpt, SandboxOpt, YesOpt,
                         load_or_exit, make_clients)
    from .output import OutputFormat, Reporter

    @app.command()
    def migrate(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text,
                sandbox: SandboxOpt = False, yes: YesOpt = False,
                rollback: Annotated[bool, typer.Option("--rollback", help="Return to the Halyard stack (new "
                                                       "consumers to 0 first).")] = False,
                finish: Annotated[bool, typer.Option("--finish", help="After the soak: remove Halyard's stack "
                                                     "(needs --yes). The bucket is kept.")] = False,
                dry_run: Annotated[bool, typer.Option("--dry-run", help="Only the inventory: what would move, what "
                                                      "cannot; nothing is written.")] = False,
                out: Annotated[Optional[Path], typer.Option(
                    "--out", help="Write the carried profiles and settings (a kustomize Component) here instead of "
                                  "the customizations directory.")] = None,
                min_soak: Annotated[str, typer.Option("--min-soak", help="--finish: how long the new stack must "
                                                      "have run since the cutover (30m, 24h, 7d).")] = "24h",
                lock_timeout: LockTimeoutOpt = None,
                ) -> None:
        """Move a Halyard-engine install to the kustomize engine (same cluster, same bucket), resumably."""
        from ..engine.graph import Step, run_graph
        from ..ops import backup as ops_backup
        from ..ops import migrate as m
        from .live import RunView, summarize

        rep = Reporter(output)
        loaded = load_or_exit(config, rep)
        cfg = loaded.config
        bad = []
        if cfg.spinnaker.engine != "kustomize":
            line = (loaded.positions.get(("spinnaker", "engine")) or loaded.positions.get(("spinnaker",)) or (0, 0))[0]
            bad.append(f"{config}:{line}: spinnaker.engine: {cfg.spinnaker.engine!r}; migrate reads the file already "
                       "switched to the engine it moves to (allowed: kustomize)")
        if rollback and finish:
            bad.append("--rollback and --finish: one or the other")
        if finish and not yes:
            bad.append("--finish deletes Halyard's stack: it needs --yes")
        try:
            soak = m.parse_duration(min_soak)
        except ValueError as exc:
            bad.append(str(exc))
        if bad:
            for b in bad:
                rep.error(b, code="bad-input")
            raise typer.Exit(EXIT_BAD_INPUT)
        clients = make_clients(sandbox, rep)
        try:
            kube = ops_backup.spinnaker_kube(clients, cfg)
        except ops_backup.BackupError as exc:
            rep.error(str(exc))
            raise typer.Exit(EXIT_FAILED)

        def run(steps, verb: str) -> None:
            with RunView(rep, verb) as view:
                results = run_graph(steps, view)
            failed, _ = summarize(rep, verb, results, False)
            if failed:
                raise typer.Exit(EXIT_FAILED)

        def locked(op: str, fn):
            def step(ctx):
                with m.locks(kube, cfg, f"migrate {op}", lock_timeout, ctx.progress, ctx.report):
                    return fn(ctx)
            return step

        if rollback:
            run([Step("migrate:rollback", "back to the Halyard stack",
                      locked("--rollback", lambda ctx: m.rollback(kube, cfg, progress=ctx.progress,
                                                                   report=ctx.report)))], "migrate --rollback")
            return
        if finish:
            state = m.read_state(kube, cfg)
            why = m.not_ready_to_finish(state, soak)
            if why:
                rep.error(why, code="bad-input")
                raise typer.Exit(EXIT_BAD_INPUT)
            run([Step("migrate:finish", "remove the Halyard stack",
                      locked("--finish", lambda ctx: m.finish(kube, cfg, soak, progress=ctx.progress,
                                                               report=ctx.report)))], "migrate --finish")
            return

        state = m.read_state(kube, cfg)
        if state.get("finished"):
            rep.event("migrate", "the migration was finished: Halyard's stack is gone (use spinboot apply)",
                      action="finished", at=state["finished"])
            return
        try:
            inv = m.read_install(kube, cfg, progress=lambda msg: rep.event("progress", msg, message=msg))
        except (m.MigrateError, ops_backup.BackupError) as exc:
            rep.error(str(exc))
            raise typer.Exit(EXIT_FAILED)
        show(rep, inv, state)
        plan = m.carry_dir(cfg, Path(config), out)
        if inv.carried:
            if dry_run:
                rep.event("carry", f"would write {len(inv.carried)} carried file(s) to {plan.directory}",
                          directory=str(plan.directory), files=[c.path for c in inv.carried])
            else:
                written = m.write_carried(plan, inv.carried)
                said = (f"carried {len(written)} file(s) into {plan.directory} (a kustomize Component): review "
                        "them" if written else f"{plan.directory} was written by an earlier run: kept as it is")
                rep.event("carry", said + (f"; then {plan.instruction}" if plan.instruction else ""),
                          directory=str(plan.directory), files=written, instruction=plan.instruction)
        if dry_run:
            return
        if inv.blocking:
            for i in inv.blocking:
                rep.error(f"{i.what}: {i.detail}", code="blocking")
            raise typer.Exit(EXIT_BAD_INPUT)

        from ..engine.stages import RunOptions, Stages
        from ..kube import kustomize_apply as ka
        from ..render import render_all

        files = render_all(cfg, base_dir=loaded.path.parent)   # customizations are relative to the file
        try:
            built = ka.build_objects(files)
        except Exception as exc:  # noqa: BLE001 - the customizations do not build: bad input, said as kustomize says
            rep.error(f"kustomize build of {config}'s tree failed: {exc}", code="bad-input")
            raise typer.Exit(EXIT_BAD_INPUT)
        missing = m.missing_from_build(built, inv.carried, plan.directory)
        if missing:
            rep.error(f"the build does not hold what was carried yet ({', '.join(missing[:6])}): "
                      f"{plan.instruction or 'reference ' + str(plan.directory) + ' from your customizations'}; "
                      "nothing was changed", code="not-carried")
            raise typer.Exit(EXIT_BAD_INPUT)
        if not yes:
            if not sys.stdin.isatty():
                rep.error("the cutover scales Halyard's services to 0 (a short outage while the new ones start): "
                          "re-run with --yes", code="needs-yes")
                raise typer.Exit(EXIT_BAD_INPUT)
            if not typer.confirm("Cut over from Halyard to the kustomize stack now?"):
                raise typer.Exit(EXIT_BAD_INPUT)

        st = Stages(cfg, clients, RunOptions(allow_delete=yes, lock_timeout=lock_timeout), base_dir=loaded.path.parent)
        steps = st.steps(("cluster", "rbac", "pubsub", "halyard"))
        spin = next(s for s in steps if s.name == "spinnaker")

        def cutover(ctx):
            objs = ka.desired(cfg, built, dict(st.shared.kubeconfigs) if cfg.targets else {})
            with m.locks(kube, cfg, "migrate", lock_timeout, ctx.progress, ctx.report):
                return m.cutover(kube, cfg, objs, progress=ctx.progress, report=ctx.report, allow_delete=yes)

        steps = [s for s in steps if s is not spin] + [Step("migrate", "cutover: Halyard -> kustomize", cutover,
                                                            spin.deps)]
        run(steps, "migrate")
        if not rep.json:
            rep.out.print(f"\nCut over. Soak, then: spinboot migrate -c {config} --finish --yes   "
                          f"(or back: --rollback)", markup=False)

    def show(rep, inv, state: dict) -> None:
        done = list(state.get("steps") or [])
        for i in inv.items:
            rep.event("inventory", None, **i.as_event())
        from ..ops.migrate import STEPS

        rep.event("migrate", None, action="plan", steps=list(STEPS), done=done, halyard=inv.halyard)
        if rep.json:
            return
        from rich.table import Table
        from rich.text import Text

        style = {"covered": "green", "differs": "yellow", "carried": "cyan", "manual": "magenta", "blocking": "red"}
        t = Table(title=f"Halyard install (deployment {inv.deployment}) against spinboot.yaml", title_justify="left")
        for c in ("status", "what", "detail"):
            t.add_column(c, overflow="fold")
        for i in inv.items:
            t.add_row(Text(i.status, style=style.get(i.status)), Text(i.what), Text(i.detail))
        rep.out.print(t)
        rep.out.print("Halyard's Deployments: " + ", ".join(f"{k}={v}" for k, v in sorted(inv.halyard.items())),
                      markup=False)
        rep.out.print("Cutover steps: " + " -> ".join(f"{s}{' (done)' if s in done else ''}"
                                                       for s in ("stack-up", "halyard-down", "consumers-up",
                                                                 "exposure")), markup=False)
