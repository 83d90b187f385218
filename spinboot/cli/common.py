"""What every command shares: exit codes, the common options, loading the file, and the Google (or sandbox)
clients with their preflight. The command modules (main, ops_*) import from here and never from each other, so the
CLI has no import cycle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..config import ConfigError, load_config
from .errors import Failure, preflight_google, preflight_sandbox
from .output import OutputFormat, Reporter

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CHANGES = 0, 1, 2, 3

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The spinboot file.", show_default=True)]
# -o is --output, as kubectl users expect (render's directory option is -d/--dir).
OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o",
                                                 help="text for people, json for one event per line.")]
SandboxOpt = Annotated[bool, typer.Option("--sandbox", help="Act on the local sandbox (spinboot sandbox up) instead "
                                                            "of Google Cloud. Also: SPINBOOT_SANDBOX=endpoints.json.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do destructive changes (deletions) without asking.")]
LockTimeoutOpt = Annotated[float | None, typer.Option(
    "--lock-timeout", min=0, metavar="SECONDS",
    help="How long to wait while another run holds the Spinnaker cluster's lock (its Halyard step, prune or destroy) "
         "before failing with exit 1; 0: do not wait. Default: as long as a Halyard step can take (98 min). "
         "docs/apply.md, \"Two applies at once\".")]


def load_or_exit(path: Path, rep: Reporter):
    """Load the file, report warnings; on any problem report them all and exit 2 (nothing touched)."""
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        for p in exc.problems:
            rep.problem(p)
        errors = exc.errors
        summary = f"{path}: {errors} problem(s); nothing was done."
        rep.event("invalid", None, file=str(path), errors=errors)
        if not rep.json:
            rep.err.print(summary, style="red", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    for w in loaded.warnings:
        rep.problem(w)
    return loaded


def fail(rep: Reporter, failure: Failure):
    """Say a Failure in one line (or an error event) and exit with its code."""
    rep.failure(failure)
    raise typer.Exit(failure.exit_code)


def make_clients(sandbox: bool, rep: Reporter):
    """The Google clients for this run, after checking that they can work: credentials exist and Google answers
    (or the sandbox answers). On failure: one line with the cause and the fix, exit 1, nothing touched."""
    from ..gcp.clients import GoogleClients, SandboxEndpoints
    from ..sandbox.paths import endpoints_file

    if sandbox or os.environ.get("SPINBOOT_SANDBOX"):
        path = endpoints_file()
        if not path.is_file():
            fail(rep, Failure("no-sandbox", f"no sandbox is running ({path} does not exist)",
                              "start one with `spinboot sandbox up`"))
        try:
            endpoints = SandboxEndpoints.load(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            fail(rep, Failure("no-sandbox", f"{path} is not a sandbox's endpoints file ({type(exc).__name__}: {exc})",
                              "restart the sandbox: `spinboot sandbox down`, then `spinboot sandbox up`"))
        try:
            preflight_sandbox(endpoints)
        except Failure as failure:
            fail(rep, failure)
        return GoogleClients(endpoints)
    clients = GoogleClients()
    try:
        preflight_google(clients)
    except Failure as failure:
        fail(rep, failure)
    return clients
