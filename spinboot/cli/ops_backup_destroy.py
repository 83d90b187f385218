"""``spinboot backup``, ``restore`` and ``destroy``: thin commands over spinboot.ops, shown like apply (steps, changes,
summary; one JSON event per line with --output json).

Restore and destroy overwrite or delete: they ask first unless ``--yes``, and when stdin is not a terminal they
never prompt but fail with exit 2 before touching anything (CI must say --yes explicitly).
"""

# No `from __future__ import annotations`: the option types are local to register(), Typer evaluates them.

import sys
from pathlib import Path
from typing import Annotated

import typer


def _confirm(rep, yes: bool, question: str, expect: str | None, flag_hint: str) -> None:
    """Return when confirmed; exit 2 otherwise (never prompt without a terminal)."""
    if yes:
        return
    if not sys.stdin.isatty():
        rep.error(f"{question}: confirmation needed, and stdin is not a terminal so spinboot will not prompt; "
                  f"nothing was changed. Re-run with --yes{flag_hint}.")
        raise typer.Exit(2)
    if expect is None:
        if typer.confirm(question, default=False):
            return
    else:
        typed = typer.prompt(f"{question}\nType the cluster's name ({expect}) to confirm", default="",
                             show_default=False)
        if typed.strip() == expect:
            return
    rep.error("not confirmed; nothing was changed")
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    from ..engine.graph import Step, run_graph
    from .live import RunView, summarize
    from .common import (EXIT_BAD_INPUT, EXIT_FAILED, ConfigOpt, LockTimeoutOpt, OutputOpt, SandboxOpt, YesOpt,
                         load_or_exit, make_clients)
    from .output import OutputFormat, Reporter

    def finish(rep, verb, results, dry_run=False) -> None:
        failed, _ = summarize(rep, verb, results, dry_run)
        blocked = any(c.action == "blocked" for r in results.values() for c in r.changes)
        if failed or blocked:
            raise typer.Exit(EXIT_FAILED)

    @app.command()
    def backup(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text,
               sandbox: SandboxOpt = False,
               keep: Annotated[int, typer.Option("--keep", min=0, help="Keep the newest N backups, delete older "
                                                                       "ones (0 keeps all).")] = 10) -> None:
        """Back up Halyard's config (hal backup create, kubeconfigs removed) to the bucket, with the spinboot file
        and the bundle's hash; keep the newest N."""
        from ..ops import backup as ops
        from ..render import render_all

        rep = Reporter(output)
        loaded = load_or_exit(config, rep)
        cfg = loaded.config
        clients = make_clients(sandbox, rep)
        made: dict[str, str] = {}

        def run(ctx):
            name, changes = ops.backup(clients, cfg, config.read_bytes(), render_all(cfg), keep,
                                       progress=ctx.progress, on_line=ctx.output)
            made["name"] = name
            return changes

        with RunView(rep, "backup") as view:
            results = run_graph([Step("backup", f"Halyard backup to gs://{cfg.spinnaker.storage.bucket}/"
                                                f"{ops.PREFIX}", run)], view)
        if made:
            rep.event("backup", f"backup {made['name']}: restore it with spinboot restore -c {config} --from "
                                f"{made['name']}", name=made["name"], bucket=cfg.spinnaker.storage.bucket,
                      prefix=f"{ops.PREFIX}{made['name']}/")
        finish(rep, "backup", results)

    @app.command()
    def restore(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text,
                sandbox: SandboxOpt = False, yes: YesOpt = False,
                from_: Annotated[str, typer.Option("--from", help="A backup name (as `backup` printed it) or "
                                                                  "latest.")] = "latest",
                lock_timeout: LockTimeoutOpt = None) -> None:
        """Ensure the cluster, target kubeconfigs and Halyard exist (as apply), put a backup into the Halyard pod,
        hal backup restore, hal deploy apply, and wait for the rollout."""
        from ..engine.stages import STAGES, RunOptions, Stages
        from ..kube.resources import Kube
        from ..ops import backup as ops

        rep = Reporter(output)
        loaded = load_or_exit(config, rep)
        cfg = loaded.config
        _confirm(rep, yes, f"restore replaces Halyard's configuration in {cfg.cluster.name} with backup {from_}",
                 None, "")
        clients = make_clients(sandbox, rep)
        try:
            name = ops.resolve_name(clients.storage, cfg, from_)
            tar, meta = ops.download(clients.storage, cfg, name)
        except ops.BackupError as exc:
            rep.error(str(exc))
            raise typer.Exit(EXIT_BAD_INPUT if "--from" in str(exc) or "no backup" in str(exc) else EXIT_FAILED)
        st = Stages(cfg, clients, RunOptions(allow_delete=yes, lock_timeout=lock_timeout))

        def run(ctx):
            kube = Kube(st.shared.spinnaker.api_client(), "spinnaker")
            return ops.restore(kube, cfg, tar, meta, dict(st.shared.kubeconfigs), st.files,
                               progress=ctx.progress, on_line=ctx.output, lock_timeout=lock_timeout,
                               report=ctx.report)

        steps = st.steps(STAGES) + [Step("restore", f"restore backup {name} into Halyard", run, ("halyard",))]
        with RunView(rep, "restore") as view:
            results = run_graph(steps, view)
        if results["restore"].status == "done":
            rep.event("restored", f"restored backup {name} (made {meta.get('created', '?')} from bundle "
                                  f"{meta.get('bundleSha256', '')[:12]})", name=name,
                      bundleSha256=meta.get("bundleSha256"), created=meta.get("created"))
        finish(rep, "restore", results)

    @app.command()
    def destroy(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text,
                sandbox: SandboxOpt = False, yes: YesOpt = False,
                keep_bucket: Annotated[bool, typer.Option(
                    "--keep-bucket/--delete-bucket",
                    help="Keep front50's bucket (its pipelines and the backups); only spinboot's IAM member is "
                         "removed from it. --delete-bucket deletes it and every object in it.")] = True,
                delete_topics: Annotated[bool, typer.Option(
                    "--delete-topics", help="Also delete each registry project's gcr topic when no other "
                                            "subscription reads it (it is usually the registry's).")] = False,
                dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be deleted; delete "
                                                                        "nothing.")] = False,
                lock_timeout: LockTimeoutOpt = None) -> None:
        """Remove what spinboot created: the cluster, target RBAC, subscriptions, its IAM members, the service
        account (and, if asked, the bucket and topics). Leaves alone what it did not create."""
        from ..ops.destroy import DestroyOptions, Destroyer

        rep = Reporter(output)
        loaded = load_or_exit(config, rep)
        cfg = loaded.config
        if not dry_run:
            # Before any call: without a terminal and without --yes nothing is read or changed.
            if not yes and not sys.stdin.isatty():
                _confirm(rep, yes, f"destroy deletes cluster {cfg.cluster.name} and what spinboot made for it", None,
                         " (or --dry-run to see what it would delete)")
        clients = make_clients(sandbox, rep)
        if dry_run or not yes:
            with RunView(rep, "destroy (dry run)") as view:
                planned = run_graph(Destroyer(cfg, clients, DestroyOptions(True, keep_bucket, delete_topics)).steps(),
                                    view)
            failed, deletes = summarize(rep, "destroy", planned, True)
            if dry_run:
                if failed:
                    raise typer.Exit(EXIT_FAILED)
                return
            _confirm(rep, yes, f"destroy deletes the {deletes} thing(s) above", cfg.cluster.name, "")
        with RunView(rep, "destroy") as view:
            results = Destroyer(cfg, clients, DestroyOptions(False, keep_bucket, delete_topics, lock_timeout)).run(view)
        finish(rep, "destroy", results)
