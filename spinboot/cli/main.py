"""The spinboot command line: thin Typer commands over the library (spinboot.config, spinboot.render, ...).

Exit codes: 0 success, 1 failure while acting, 2 bad input (config, flags), 3 `plan --detailed-exitcode` found
changes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from typer import _click
from typer.core import TyperGroup

from .. import __version__
from ..config.model import SpinbootConfig
from . import errors
from .common import (EXIT_BAD_INPUT, EXIT_CHANGES, EXIT_FAILED, EXIT_OK, ConfigOpt, LockTimeoutOpt,  # noqa: F401
                     OutputOpt, SandboxOpt, YesOpt, fail, load_or_exit, make_clients)
from .output import OutputFormat, Reporter, current


def _wants_json(args: list[str]) -> bool:
    for i, a in enumerate(args):
        if a in ("--output", "-o") and i + 1 < len(args) and args[i + 1] == "json":
            return True
        if a in ("--output=json", "-ojson", "-o=json"):
            return True
    return False


class _Group(TyperGroup):
    """The root command: whatever a command did not handle ends as one line with its cause and fix (or a JSON
    ``error`` event) and exit 1, never a traceback (SPINBOOT_DEBUG=1 shows it)."""

    def invoke(self, ctx):
        args = [*ctx._protected_args, *ctx.args]
        try:
            return super().invoke(ctx)
        except _click.exceptions.UsageError as exc:
            if _wants_json(args):  # stdout stays one JSON event per line; the usage text goes to stderr
                Reporter(OutputFormat.json).error(exc.format_message(), code="usage",
                                                  fix="see spinboot --help, or the command's --help")
            raise
        except (typer.Exit, typer.Abort, _click.exceptions.ClickException, BrokenPipeError):
            raise   # click ends a broken pipe (`spinboot ... | head`) quietly, as Unix tools do
        except Exception as exc:
            if os.environ.get(errors.DEBUG_ENV):
                raise
            rep = current()
            if not rep.json and _wants_json(args):
                rep = Reporter(OutputFormat.json)
            failure = errors.explain(exc)
            rep.failure(failure)
            raise typer.Exit(failure.exit_code) from None


app = typer.Typer(
    name="spinboot",
    help="Bootstrap and configure Spinnaker on GKE from one declarative file.",
    cls=_Group,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


# The RBAC proof runs when something that can reach Spinnaker's account changed since the last one (its
# fingerprint, spinboot.kube.targets); --reprove asks it regardless.
ReproveOpt = Annotated[bool, typer.Option(
    "--reprove", help="Ask the RBAC least-privilege proof in every target even if no binding or role that can reach "
                      "Spinnaker's account changed since the last proof.")]

def _version(value: bool) -> None:
    if value:
        typer.echo(f"spinboot {package_version()}")
        raise typer.Exit()


def package_version() -> str:
    """The installed package's version (pyproject.toml), or the source tree's when not installed."""
    from importlib import metadata

    try:
        return metadata.version("spinboot")
    except metadata.PackageNotFoundError:
        return __version__


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Bootstrap and configure Spinnaker on GKE from one declarative file."""


@app.command("version")
def version_command(output: OutputOpt = OutputFormat.text) -> None:
    """Print spinboot's version."""
    import platform

    rep = Reporter(output)
    v = package_version()
    rep.event("version", f"spinboot {v}", version=v, python=platform.python_version())


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the starter file.")] = Path("spinboot.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    engine: Annotated[str, typer.Option("--engine", help="kustomize (the supported install, default) or halyard "
                                                         "(existing Halyard installs).")] = "kustomize",
    output: OutputOpt = OutputFormat.text,
) -> None:
    """Write a commented starter spinboot.yaml that validates."""
    rep = Reporter(output)
    if engine not in ("kustomize", "halyard"):
        rep.error(f"--engine {engine!r} is not an engine (allowed: kustomize or halyard)")
        raise typer.Exit(EXIT_BAD_INPUT)
    if path.exists() and not force:
        rep.error(f"{path} already exists; nothing was written (allowed: a new path, or --force to overwrite)",
                  file=str(path))
        raise typer.Exit(EXIT_BAD_INPUT)
    starter = (Path(__file__).resolve().parent.parent / "config" / "starter.yaml").read_bytes()
    if engine == "halyard":
        # The starter is written for kustomize; a Halyard install names the engine and its pod instead.
        starter = starter.replace(b"  engine: kustomize ", b"  engine: halyard   ", 1).replace(
            b"  # halyard: {namespace: halyard, image: ghcr.io/spinnaker/halyard:2026.2.3}   # engine: halyard only",
            b"  halyard: {namespace: halyard}    # image: ghcr.io/spinnaker/halyard:<version> unless set; pin what you tested",
            1)
        for key in (b"  redis: ", b"  services: "):
            starter = starter.replace(key, b"  # " + key[2:], 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(starter)
    rep.event("written", f"wrote {path}: edit it, then run: spinboot validate -c {path}", file=str(path))


@app.command()
def validate(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text) -> None:
    """Check the file: exit 0 when valid, 2 when not (every problem is listed)."""
    rep = Reporter(output)
    loaded = load_or_exit(config, rep)
    cfg = loaded.config
    acked = f", {len(loaded.acknowledged)} acknowledged" if loaded.acknowledged else ""
    rep.event("valid", f"{config}: valid ({len(cfg.targets)} target(s), {len(cfg.registries)} registr"
                       f"{'y' if len(cfg.registries) == 1 else 'ies'}, {len(loaded.warnings)} warning(s){acked})",
              file=str(config), targets=len(cfg.targets), registries=len(cfg.registries),
              warnings=len(loaded.warnings), acknowledged=len(loaded.acknowledged))


@app.command()
def schema(output: OutputOpt = OutputFormat.text) -> None:
    """Print the JSON Schema of spinboot.yaml (for editors: yaml-language-server, VS Code)."""
    document = SpinbootConfig.model_json_schema(by_alias=True)
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "spinboot.yaml"
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


def _render_output(value: str) -> str:
    if value not in (OutputFormat.text.value, OutputFormat.json.value):
        raise typer.BadParameter(f"{value!r} is not text or json (-o is --output, as in kubectl; to write the "
                                 f"artifacts to {value}, use -d/--dir: spinboot render -c FILE -d {value})")
    return value


@app.command()
def render(
    config: ConfigOpt = Path("spinboot.yaml"),
    out: Annotated[Path, typer.Option("--dir", "-d", help="Directory to write the artifacts to.")] = Path("out"),
    output: Annotated[str, typer.Option("--output", "-o", callback=_render_output, metavar="[text|json]",
                                        help="text for people, json for one event per line.")] = "text",
) -> None:
    """Write every artifact (Halyard script, profiles, RBAC, Halyard and GCP specs); touches nothing remote."""
    from ..render import OutputDirError, render_all, write_bundle
    from ..render.preflight import check_bundle

    rep = Reporter(OutputFormat(output))
    loaded = load_or_exit(config, rep)
    files = render_all(loaded.config, base_dir=loaded.path.parent)  # customizations are relative to the file
    problems = check_bundle(files)
    if problems:  # a bug in spinboot, not in the file: say so plainly and write nothing
        for p in problems:
            rep.error(f"internal check failed: {p}")
        raise typer.Exit(EXIT_FAILED)
    from ..render import kustomize_build as kb  # the kustomize engine's tree, built and validated (engines.md)
    try:
        files = kb.with_rendered(files, log=lambda s: rep.event("kustomize", None, message=s))
    except (kb.BuildError, kb.InvalidObjects) as exc:
        for p in getattr(exc, "problems", None) or [str(exc)]:
            rep.error(p, code="kustomize-build" if isinstance(exc, kb.BuildError) else "invalid-object")
        rep.error(f"nothing was written to {out}", dir=str(out))
        raise typer.Exit(EXIT_BAD_INPUT)
    except kb.KustomizeError as exc:
        rep.error(str(exc), code="kustomize-unavailable", fix="install Go (or set SPINBOOT_KUSTOMIZE)")
        raise typer.Exit(EXIT_FAILED)
    try:
        write_bundle(files, out)
    except OutputDirError as exc:
        rep.error(str(exc), dir=str(out))
        raise typer.Exit(EXIT_BAD_INPUT)
    except OSError as exc:
        rep.error(f"cannot write {out}: {exc.strerror or exc}; the directory was left as it was", dir=str(out))
        raise typer.Exit(EXIT_FAILED)
    for rel in files:
        rep.event("file", None, path=rel, bytes=len(files[rel]))
    summary = summarize(loaded.config, files)
    rep.event("rendered", f"wrote {len(files)} files to {out}/\n{summary}", dir=str(out), files=len(files))


def summarize(cfg: SpinbootConfig, files: dict[str, bytes]) -> str:
    """A short human summary of what a render produced."""
    lines = [
        f"  cluster     {cfg.project}/{cfg.cluster.location}/{cfg.cluster.name}: "
        f"{cfg.cluster.node_pool.node_count} x {cfg.cluster.node_pool.machine_type}, Workload Identity",
        f"  spinnaker   {cfg.spinnaker.version} in namespace {cfg.spinnaker.namespace}, "
        f"Halyard {cfg.halyard_image}",
    ]
    for t in cfg.targets:
        lines.append(f"  target      {t.name}: namespaces {', '.join(t.namespaces)} "
                     f"({len([f for f in files if f.startswith(f'rbac/{t.name}/')])} RBAC files)")
    for r in cfg.registries:
        lines.append(f"  registry    {r.name}: projects/{r.project}/subscriptions/{r.subscription.name} on topic gcr, "
                     f"polling {r.address} every {r.cache_interval_seconds} s")
    if "halconfig/configure.sh" not in files:   # the kustomize engine
        tree = [f for f in files if f.startswith("kustomize/")]
        lines[1] = f"  spinnaker   {cfg.spinnaker.version} in namespace {cfg.spinnaker.namespace}, kustomize engine"
        lines.append(f"  kustomize   {len(tree)} files under kustomize/, built by the pinned kustomize")
        return "\n".join(lines)
    hal_lines = sum(1 for line in files["halconfig/configure.sh"].decode().splitlines() if line.lstrip().startswith("hal "))
    lines.append(f"  configure.sh {hal_lines} hal commands, each checked against Halyard's grammar")
    return "\n".join(lines)


def run() -> None:
    app()


# --- live commands ---------------------------------------------------------------------------------------------

# SandboxOpt, YesOpt, LockTimeoutOpt and make_clients live in .common (shared with the ops_* modules).


def run_stages(config: Path, output: OutputFormat, sandbox: bool, stages: tuple[str, ...], verb: str,
               dry_run: bool = False, yes: bool = False, detailed_exitcode: bool = False, loaded=None,
               on_results=None, **opts) -> SpinbootConfig:
    """Load the file (or take ``loaded``), run the stages, summarise, exit with the contract's code.
    ``on_results(results)`` sees the step results of a successful run before the exit code is decided."""
    from ..engine.graph import run_graph
    from ..engine.stages import RunOptions, Stages
    from .live import RunView, summarize

    rep = Reporter(output)
    loaded = loaded or load_or_exit(config, rep)
    if opts.get("only_targets"):  # bad input: said before anything is read, credentials or not
        unknown = sorted(set(opts["only_targets"]) - {t.name for t in loaded.config.targets})
        if unknown:
            rep.error(f"--cluster {', '.join(unknown)}: no such target in {config} (allowed: "
                      f"{', '.join(t.name for t in loaded.config.targets)})")
            raise typer.Exit(EXIT_BAD_INPUT)
    clients = make_clients(sandbox, rep)
    st = Stages(loaded.config, clients, RunOptions(dry_run=dry_run, allow_delete=yes or dry_run, **opts),
                base_dir=loaded.path.parent)   # kustomize customizations are relative to the file
    with RunView(rep, verb) as view:
        results = run_graph(st.steps(stages), view)
    failed, mutating = summarize(rep, verb, results, dry_run)
    if failed:
        raise typer.Exit(EXIT_FAILED)
    if on_results:
        on_results(results)
    blocked = any(c.action == "blocked" for r in results.values() for c in r.changes)
    if detailed_exitcode and (mutating or blocked):
        raise typer.Exit(EXIT_CHANGES)
    if blocked and not dry_run:
        raise typer.Exit(EXIT_FAILED)
    return loaded.config


ALL_STAGES = ("cluster", "rbac", "pubsub", "halyard")


def _records(results) -> list[dict]:
    from ..engine.savedplan import change_record

    return [change_record(name, c) for name, r in sorted(results.items()) for c in r.changes]


@app.command()
def plan(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text, sandbox: SandboxOpt = False,
         detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode",
                                                         help="Exit 3 when there are changes, 0 when none.")] = False,
         out: Annotated[str | None, typer.Option(
             "--out", metavar="FILE|gs://BUCKET/OBJECT",
             help="Save the plan to this file (mode 0600) or Cloud Storage object: `spinboot apply FILE` then does "
                  "exactly these changes, or refuses if live state moved.")] = None,
         reprove: ReproveOpt = False,
         ) -> None:
    """Read live state and show what apply would change; changes nothing."""
    from ..engine import savedplan

    rep = Reporter(output)
    if out and savedplan.is_gcs(out):
        try:   # a malformed location is bad input: said before anything is read
            savedplan.split_gcs(out)
        except savedplan.PlanFileError as exc:
            rep.error(str(exc))
            raise typer.Exit(EXIT_BAD_INPUT)

    def save(results) -> None:
        storage = make_clients(sandbox, rep).storage if savedplan.is_gcs(out) else None
        made_by = savedplan.provenance()
        try:
            saved = savedplan.write(out, str(config), config.read_text(), ALL_STAGES, _records(results),
                                    storage=storage, made_by=made_by)
        except savedplan.PlanFileError as exc:
            rep.error(str(exc))
            raise typer.Exit(EXIT_BAD_INPUT)
        except savedplan.PlanStoreError as exc:
            rep.error(f"{exc}; the plan above was not saved")
            raise typer.Exit(EXIT_FAILED)
        rep.event("planfile", f"plan saved to {out} ({len(saved.mutating)} change(s)); apply it with: "
                              f"spinboot apply {out}", file=str(out), changes=len(saved.mutating), **made_by)

    run_stages(config, output, sandbox, ALL_STAGES, "plan", dry_run=True, detailed_exitcode=detailed_exitcode,
               on_results=save if out else None, reprove=reprove)


@app.command()
def apply(ctx: typer.Context,
          plan_file: Annotated[str | None, typer.Argument(
              metavar="PLAN",
              help="A plan saved by `spinboot plan --out FILE` (a file or gs://BUCKET/OBJECT): apply exactly it (its "
                   "own spinboot.yaml; with --config, only if that is the file the plan was made from), or refuse if "
                   "live state moved since.", show_default=False)] = None,
          config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text, sandbox: SandboxOpt = False,
          yes: YesOpt = False,
          verify: Annotated[bool, typer.Option("--verify", help="Prove Pub/Sub delivery with a test message (see pubsub apply --verify).")] = False,
          lock_timeout: LockTimeoutOpt = None,
          reprove: ReproveOpt = False,
          ) -> None:
    """Make live state match the file: every stage, in dependency order, in parallel where possible."""
    loaded = None
    if plan_file is not None:
        # --config given with a plan: the plan must have been made from that file (Cloud Build: the merged one).
        expect = config if ctx.get_parameter_source("config") == _click.core.ParameterSource.COMMANDLINE else None
        loaded, yes = _check_saved_plan(plan_file, output, sandbox, expect), True   # the plan showed its deletions
    cfg = run_stages(config, output, sandbox, ALL_STAGES, "apply", yes=yes, loaded=loaded,
                     verify_pubsub=verify, lock_timeout=lock_timeout, reprove=reprove)
    report_spinnaker(Reporter(output), cfg)


def _check_saved_plan(plan_file: str, output: OutputFormat, sandbox: bool, expect: Path | None = None):
    """Read a saved plan (a file, or gs:// with the run's Storage client) and plan again against live state: the
    loaded config when nothing moved, else exit 1. ``expect``: a spinboot file the plan must have been made from
    (exit 2 otherwise)."""
    from ..config import ConfigError, load_config_bytes
    from ..engine import savedplan
    from ..engine.graph import run_graph
    from ..engine.stages import RunOptions, Stages

    rep = Reporter(output)
    clients = None
    try:
        if savedplan.is_gcs(plan_file):
            savedplan.split_gcs(plan_file)   # bad input is said before credentials are looked for
            clients = make_clients(sandbox, rep)
        saved = savedplan.read(plan_file, storage=clients.storage if clients else None)
        loaded = load_config_bytes(saved.config_text.encode(), saved.config_name)
    except savedplan.PlanFileError as exc:
        rep.error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT)
    except savedplan.PlanStoreError as exc:
        rep.error(f"{exc}; nothing was applied")
        raise typer.Exit(EXIT_FAILED)
    except ConfigError as exc:
        for p in exc.problems:
            rep.problem(p)
        raise typer.Exit(EXIT_BAD_INPUT)
    if expect is not None:
        try:
            mine = expect.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            rep.error(f"{expect}: cannot read it to compare with the plan ({exc}); nothing was applied")
            raise typer.Exit(EXIT_BAD_INPUT)
        if mine != saved.config_text:
            rep.error(f"{plan_file}: made from another spinboot file than {expect} (its {saved.config_name} differs); "
                      "nothing was applied. Plan this file and apply that plan")
            raise typer.Exit(EXIT_BAD_INPUT)
    who = savedplan.describe_provenance(saved.made_by)
    message = (f"{plan_file}: checking live state against the plan ({len(saved.mutating)} change(s)"
               + (f", made by {who}" if who else "") + ")")
    rep.event("progress", message, step="plan", message=message,
              **({"madeBy": saved.made_by} if saved.made_by else {}))
    clients = clients or make_clients(sandbox, rep)
    results = run_graph(Stages(loaded.config, clients, RunOptions(dry_run=True, allow_delete=True),
                                base_dir=loaded.path.parent).steps(saved.stages),
                        lambda e: None)
    failed = [n for n, r in results.items() if r.status != "done"]
    if failed:
        rep.error(f"{plan_file}: could not read live state to check the plan ({', '.join(failed)}: "
                  f"{next(r.error for r in results.values() if r.error)}); nothing was applied")
        raise typer.Exit(EXIT_FAILED)
    moved = savedplan.moved(saved, _records(results))
    if moved:
        rep.error(f"{plan_file}: live state moved since the plan was made, so it is not applied (run spinboot plan "
                  "again and review it): " + "; ".join(moved[:10]) + (f"; and {len(moved) - 10} more" if len(moved) > 10 else ""))
        raise typer.Exit(EXIT_FAILED)
    return loaded


def report_spinnaker(rep: Reporter, cfg: SpinbootConfig) -> None:
    """What an operator wants after an apply: where Spinnaker is and what it is connected to."""
    s = cfg.spinnaker
    accounts = [{"name": s.deploy_account, "cluster": cfg.cluster.name, "namespaces": [s.namespace]}]
    for t in cfg.targets:
        where = f"{t.gke.project}/{t.gke.location}/{t.gke.cluster}" if t.gke else t.kubeconfig.context
        accounts.append({"name": t.name, "cluster": where, "namespaces": t.namespaces})
    subs = [f"projects/{r.project}/subscriptions/{r.subscription.name}" for r in cfg.registries]
    rep.event("spinnaker", None, cluster=f"{cfg.project}/{cfg.cluster.location}/{cfg.cluster.name}",
              version=s.version, deck=s.exposure.ui_url, gate=s.exposure.api_url, accounts=accounts,
              subscriptions=subs)
    if rep.json:
        return
    out = rep.out
    out.print(f"\nSpinnaker {s.version} in {cfg.project}/{cfg.cluster.location}/{cfg.cluster.name}, namespace "
              f"{s.namespace}", style="bold", markup=False)
    for a in accounts:
        out.print(f"  account      {a['name']}: {a['cluster']}, namespaces {', '.join(a['namespaces'])}", markup=False)
    for sub in subs:
        out.print(f"  subscription {sub}", markup=False)
    prefix = "spin-" if s.engine == "halyard" else ""   # Halyard names its Services spin-<svc>; the tree <svc>
    out.print(f"  Deck         {s.exposure.ui_url}   (service {prefix}deck:9000 in {s.namespace})", markup=False)
    out.print(f"  Gate         {s.exposure.api_url}   (service {prefix}gate:8084 in {s.namespace})", markup=False)


def _stage_app(name: str, help_text: str) -> typer.Typer:
    sub = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


cluster_app = _stage_app("cluster", "The Spinnaker GKE cluster and its node pool.")
rbac_app = _stage_app("rbac", "Spinnaker's service account and RBAC in each target cluster.")
pubsub_app = _stage_app("pubsub", "Pub/Sub topics and subscriptions for image-push triggers.")
halyard_app = _stage_app("halyard", "Halyard in the Spinnaker cluster, its configuration, and hal deploy apply.")


@cluster_app.command("apply")
def cluster_apply(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text,
                  sandbox: SandboxOpt = False, yes: YesOpt = False) -> None:
    """Create the cluster, or change in place what can change."""
    run_stages(config, output, sandbox, ("cluster",), "cluster apply", yes=yes)


@rbac_app.command("apply")
def rbac_apply(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text,
               sandbox: SandboxOpt = False, yes: YesOpt = False,
               cluster: Annotated[list[str], typer.Option("--cluster", help="Only this target (repeatable).")] = [],
               prune: Annotated[bool, typer.Option("--prune", help="Also remove spinboot's RBAC from targets that "
                                                                   "are no longer in the file.")] = False,
               lock_timeout: LockTimeoutOpt = None, reprove: ReproveOpt = False,
               ) -> None:
    """Apply Spinnaker's service account and namespace-scoped RBAC, mint kubeconfigs, prove least privilege."""
    run_stages(config, output, sandbox, ("rbac",), "rbac apply", yes=yes, only_targets=tuple(cluster), prune=prune,
               lock_timeout=lock_timeout, reprove=reprove)


@pubsub_app.command("apply")
def pubsub_apply(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text,
                 sandbox: SandboxOpt = False,
                 verify: Annotated[bool, typer.Option("--verify", help="Publish a test message (a DELETE of a non-existent image; every subscriber of the topic sees it) and receive it on Spinnaker's subscription.")] = False
                 ) -> None:
    """Ensure each registry project's gcr topic, Spinnaker's subscriptions and their IAM."""
    run_stages(config, output, sandbox, ("pubsub",), "pubsub apply", verify_pubsub=verify)


@halyard_app.command("apply")
def halyard_apply(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text,
                  sandbox: SandboxOpt = False, yes: YesOpt = False,
                  force: Annotated[bool, typer.Option("--force", help="Run configure.sh even if unchanged.")] = False,
                  lock_timeout: LockTimeoutOpt = None,
                  ) -> None:
    """Deploy Halyard, run the configuration script in its pod, and wait for Spinnaker's rollout."""
    run_stages(config, output, sandbox, ("cluster", "rbac", "pubsub", "halyard"), "halyard apply", yes=yes,
               force_halyard=force, lock_timeout=lock_timeout)


# --- the local sandbox -----------------------------------------------------------------------------------------

sandbox_app = typer.Typer(help="The local sandbox: real Kubernetes control planes, Google's Pub/Sub server, a GKE "
                               "API server and a Halyard stand-in, on loopback.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("up")
def sandbox_up(
    seed: Annotated[Path | None, typer.Option("--seed", help="Create the target clusters this spinboot file "
                                                              "names, with their namespaces.")] = None,
    gke_latency: Annotated[float, typer.Option("--gke-latency", help="Seconds a GKE operation takes.")] = 2.0,
    fault_proxies: Annotated[bool, typer.Option("--fault-proxies", help="Put a fault-injecting proxy in front of "
                                                "every Kubernetes API server and Storage (docs/sandbox.md); default: $SPINBOOT_SANDBOX_FAULT_PROXIES.")] = False,
    output: OutputOpt = OutputFormat.text,
) -> None:
    """Start the sandbox in the background (stop it with `spinboot sandbox down`)."""
    from ..sandbox.sandbox import Sandbox

    rep = Reporter(output)
    cfg = load_or_exit(seed, rep).config if seed else None
    sb = Sandbox(detach=True, gke_latency_s=gke_latency, fault_proxies=fault_proxies or None,
                 log=lambda m: rep.event("progress", f"  {m}", message=m))
    t0 = __import__("time").monotonic()
    try:
        sb.up()
        seeded = sb.seed(cfg) if cfg else []
    except Exception as exc:
        sb.down()
        rep.error(f"sandbox up failed: {exc}; everything it started was stopped")
        raise typer.Exit(EXIT_FAILED)
    ep = sb.endpoints()
    seconds = round(__import__("time").monotonic() - t0, 1)
    rep.event("sandbox", None, status="up", seconds=seconds, seeded=seeded,
              **{k: v for k, v in ep.items() if k != "token"})
    if not rep.json:
        rep.out.print(f"sandbox up in {seconds} s ({sb.dir})", markup=False)
        rep.out.print(f"  GKE API        {ep['gke']} (insecure gRPC)", markup=False)
        rep.out.print(f"  Pub/Sub        PUBSUB_EMULATOR_HOST={ep['pubsub']}", markup=False)
        rep.out.print(f"  Cloud Storage  STORAGE_EMULATOR_HOST={ep['storage']}", markup=False)
        for name in seeded:
            t = next(t for t in cfg.targets if t.name == name)
            rep.out.print(f"  target {name}: kubectl --kubeconfig "
                          f"{sb.admin_kubeconfig(t.gke.project, t.gke.location, t.gke.cluster)} get ns", markup=False)
        rep.out.print(f"Use it: spinboot apply -c FILE --sandbox   (or export SPINBOOT_SANDBOX={sb.endpoints_path})",
                      markup=False)


@sandbox_app.command("down")
def sandbox_down(output: OutputOpt = OutputFormat.text) -> None:
    """Stop every sandbox process and cluster; nothing is left running."""
    from ..sandbox.sandbox import Sandbox

    rep = Reporter(output)
    sb = Sandbox()
    sb.down()
    left = sb.leftovers()
    if left:
        rep.error(f"processes still running after down: {left}")
        raise typer.Exit(EXIT_FAILED)
    rep.event("sandbox", "sandbox down: nothing left running", status="down")


@sandbox_app.command("status")
def sandbox_status(output: OutputOpt = OutputFormat.text) -> None:
    """Show whether the sandbox runs, its endpoints and its clusters."""
    from ..sandbox.sandbox import Sandbox

    rep = Reporter(output)
    info = Sandbox().status()
    rep.event("sandbox", None, **info)
    if not rep.json:
        if not info["running"]:
            rep.out.print("sandbox: not running (start it with: spinboot sandbox up)", markup=False)
            return
        rep.out.print(f"sandbox: running ({info['state_dir']})", markup=False)
        for k in ("gke", "pubsub", "storage"):
            rep.out.print(f"  {k:8} {info['endpoints'][k]}", markup=False)
        for c in info["clusters"]:
            rep.out.print(f"  cluster {c['name']}: {c['endpoint']} ({'up' if c['up'] else 'down'}); "
                          f"kubectl --kubeconfig {c['admin_kubeconfig']}", markup=False)


# --- operations (status, doctor, backup, restore, destroy) -----------------------------------------------------
# Each lives in its own module with a register(app) function; one line each below.
from . import ops_backup_destroy as _backup_destroy; _backup_destroy.register(app)  # noqa: E402
from . import ops_status_doctor as _status_doctor; _status_doctor.register(app)  # noqa: E402
from . import ops_drift as _drift; _drift.register(app)  # noqa: E402
from . import ops_migrate as _migrate; _migrate.register(app)  # noqa: E402
