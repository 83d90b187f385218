"""The spinboot command line: thin Typer commands over the library (spinboot.config, spinboot.render, ...).

Exit codes: 0 success, 1 failure while acting, 2 bad input (config, flags), 3 `plan --detailed-exitcode` found
changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .. import __version__
from ..config import ConfigError, load_config
from ..config.model import SpinbootConfig
from .output import OutputFormat, Reporter

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CHANGES = 0, 1, 2, 3

app = typer.Typer(
    name="spinboot",
    help="Bootstrap and configure Spinnaker on GKE from one declarative file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The spinboot file.", show_default=True)]
OutputOpt = Annotated[OutputFormat, typer.Option("--output", help="text for people, json for one event per line.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spinboot {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Bootstrap and configure Spinnaker on GKE from one declarative file."""


def load_or_exit(path: Path, rep: Reporter):
    """Load the file, report warnings; on any problem report them all and exit 2 (nothing touched)."""
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        for p in exc.problems:
            rep.problem(p)
        errors = sum(p.severity == "error" for p in exc.problems)
        rep.event("invalid", None if rep.json else f"{path}: {errors} problem(s); nothing was done.",
                  file=str(path), errors=errors)
        if not rep.json:
            rep.err.print(f"{path}: {errors} problem(s); nothing was done.", style="red", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    for w in loaded.warnings:
        rep.problem(w)
    return loaded


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the starter file.")] = Path("spinboot.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    output: OutputOpt = OutputFormat.text,
) -> None:
    """Write a commented starter spinboot.yaml that validates."""
    rep = Reporter(output)
    if path.exists() and not force:
        rep.error(f"{path} already exists; nothing was written (allowed: a new path, or --force to overwrite)",
                  file=str(path))
        raise typer.Exit(EXIT_BAD_INPUT)
    starter = (Path(__file__).resolve().parent.parent / "config" / "starter.yaml").read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(starter)
    rep.event("written", f"wrote {path}: edit it, then run: spinboot validate -c {path}", file=str(path))


@app.command()
def validate(config: ConfigOpt = Path("spinboot.yaml"), output: OutputOpt = OutputFormat.text) -> None:
    """Check the file: exit 0 when valid, 2 when not (every problem is listed)."""
    rep = Reporter(output)
    loaded = load_or_exit(config, rep)
    cfg = loaded.config
    rep.event("valid", f"{config}: valid ({len(cfg.targets)} target(s), {len(cfg.registries)} registr"
                       f"{'y' if len(cfg.registries) == 1 else 'ies'}, {len(loaded.warnings)} warning(s))",
              file=str(config), targets=len(cfg.targets), registries=len(cfg.registries),
              warnings=len(loaded.warnings))


@app.command()
def schema(output: OutputOpt = OutputFormat.text) -> None:
    """Print the JSON Schema of spinboot.yaml (for editors: yaml-language-server, VS Code)."""
    document = SpinbootConfig.model_json_schema(by_alias=True)
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "spinboot.yaml"
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


@app.command()
def render(
    config: ConfigOpt = Path("spinboot.yaml"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the artifacts to.")] = Path("out"),
    output: OutputOpt = OutputFormat.text,
) -> None:
    """Write every artifact (Halyard script, profiles, RBAC, Halyard and GCP specs); touches nothing remote."""
    from ..render import OutputDirError, render_all, write_bundle
    from ..render.preflight import check_bundle

    rep = Reporter(output)
    loaded = load_or_exit(config, rep)
    files = render_all(loaded.config)
    problems = check_bundle(files)
    if problems:  # a bug in spinboot, not in the file: say so plainly and write nothing
        for p in problems:
            rep.error(f"internal check failed: {p}")
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
    hal_lines = sum(1 for line in files["halconfig/configure.sh"].decode().splitlines() if line.lstrip().startswith("hal "))
    lines.append(f"  configure.sh {hal_lines} hal commands, each checked against Halyard's grammar")
    return "\n".join(lines)


def run() -> None:
    app()
