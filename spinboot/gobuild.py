"""Building Go programs from the Go module proxy: the pieces the sandbox and the renderer's tools share.

Neither ``spinboot.sandbox`` (control planes, stand-ins) nor ``spinboot.render`` (kustomize) may depend on the
other, so the Go handling both need lives here: finding a Go launcher, the build environment (the pinned
toolchain through ``GOTOOLCHAIN=<pin>+auto``, modules and checksums from Go's defaults), running the go command
with its output in a build log, and a file lock so that concurrent builders (pytest workers, several tools, CI)
build a cache entry once.

Checksums: the Go command verifies every module against sum.golang.org, reached through
``$GOPROXY/sumdb/sum.golang.org/`` when the proxy supports it (proxy.golang.org does), so no ``GONOSUMDB`` or
``GOSUMDB=off`` is ever set.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

Log = Callable[[str], None]


def noop(_: str) -> None:
    pass


def find_go() -> str:
    """Any Go will do as launcher: GOTOOLCHAIN makes it run (or fetch) the pinned toolchain."""
    for cand in (os.environ.get("SPINBOOT_GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if cand and Path(cand).is_file():
            return cand
    raise RuntimeError("no Go toolchain found: install Go or set SPINBOOT_GO")


def go_env(toolchain: str, tmp: Path) -> dict[str, str]:
    """The environment of every build: pinned toolchain (a module that needs a newer Go still builds), static
    binaries, no VCS stamping or workspace from the caller's directory, temporary files kept in ``tmp``."""
    env = dict(os.environ)
    env.update(
        GOTOOLCHAIN=f"{toolchain}+auto",
        CGO_ENABLED="0",
        GOFLAGS="-buildvcs=false",
        GOWORK="off",
        # Module/proxy/sumdb settings are Go's defaults; see the module docstring for why they suffice.
        GOPROXY=os.environ.get("GOPROXY", "https://proxy.golang.org,direct"),
        TMPDIR=str(tmp),
    )
    return env


@contextlib.contextmanager
def locked(path: Path, log: Log = noop) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing); says so when it has to wait for another builder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another build holding {path}")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run(args: list[str], cwd: Path, env: dict, out, log: Log = noop, capture: bool = False) -> str:
    """Run a go command with its output streamed to the build log ``out``; raise with the log tail on failure.
    ``capture``: return stdout (JSON, a version) and send only stderr (progress) to the log."""
    out.write(f"\n$ (cd {cwd} && {' '.join(args)})\n")
    out.flush()
    if capture:
        proc = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=out, text=True,
                              stdin=subprocess.DEVNULL)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(args[:3])} failed (exit {proc.returncode}) in {cwd}; see {out.name}")
        return proc.stdout
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    captured: list[str] = []
    assert proc.stdout
    for line in proc.stdout:
        out.write(line)
        out.flush()
        captured.append(line)
    rc = proc.wait()
    if rc:
        tail = "".join(captured[-30:])
        raise RuntimeError(f"{' '.join(args[:3])} failed (exit {rc}) in {cwd}; see {out.name}\n{tail}")
    return "".join(captured)


def module_download(go: str, mod: str, env: dict, out, cwd: Path, log: Log = noop) -> dict:
    """``go mod download -json mod@version``: the module's directory (``Dir``) and go.mod (``GoMod``) in the module
    cache; a cached module costs no network."""
    return json.loads(run([go, "mod", "download", "-json", mod], cwd, env, out, log, capture=True))
