"""Run a command the way a Spinnaker image runs it: ``bash -c COMMAND`` with only that image's tools on PATH.

Halyard runs a docker-registry account's ``passwordCommand`` as ``new ProcessBuilder("bash", "-c", command)``
(halyard DockerRegistryAccountValidator.validate) and so does clouddriver (clouddriver-docker
DockerBearerTokenService.getBasicAuth). Which tools each image holds is operator-readable data in
halconfig/images.yaml, with its sources. The sandbox builds a directory of symlinks to this machine's copies of
exactly those tools and makes it the whole PATH, so a command that needs ``gcloud`` fails in Halyard's image here
as it does on GKE, even though this machine has gcloud.

Known limit: a command naming a tool by absolute path (``/usr/bin/gcloud``) escapes the PATH restriction; the
sandbox has no container file system. Such commands are refused up front when the path is not one the image has.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ...render.yamlio import load_data

# Where this machine's tools are looked up: the standard system directories only (never a venv or pyenv shim,
# whose wrappers need their own PATH).
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
COMMAND_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Image:
    name: str
    tools: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


@lru_cache(maxsize=None)
def images() -> dict[str, Image]:
    """halconfig/images.yaml: image name -> its tools (its base's and its own) and sources."""
    data = load_data("halconfig", "images.yaml")
    bases = data.get("bases") or {}
    out = {}
    for name, spec in (data.get("images") or {}).items():
        base = bases.get(spec.get("base")) or {}
        tools = [str(t) for t in (base.get("tools") or [])] + [str(t) for t in (spec.get("tools") or [])]
        out[name] = Image(name, tuple(dict.fromkeys(tools)),
                          tuple(base.get("sources") or []) + tuple(spec.get("sources") or []))
    return out


def image(name: str) -> Image:
    try:
        return images()[name]
    except KeyError:
        raise KeyError(f"no image {name!r} in halconfig/images.yaml (known: {', '.join(sorted(images()))})") from None


def host_tool(tool: str) -> str | None:
    """This machine's copy of a tool, resolved to a real file (so interpreters find their own prefix)."""
    found = shutil.which(tool, path=HOST_PATH)
    if not found and tool in ("python3", "python"):
        found = sys.executable                    # the interpreter running spinboot has a stdlib at least
    return os.path.realpath(found) if found else None


def make_bin_dir(img: Image, into: Path) -> list[str]:
    """Fill ``into`` with symlinks to this machine's copies of the image's tools; return those it lacks."""
    into.mkdir(parents=True, exist_ok=True)
    missing = []
    for tool in img.tools:
        target = host_tool(tool)
        if target is None:
            missing.append(tool)
            continue
        link = into / tool
        if not link.exists():
            os.symlink(target, link)
    return missing


_ABS_TOOL = re.compile(r"(?:^|[\s;&|(`$])(/(?:usr/)?(?:local/)?s?bin/[A-Za-z0-9._+-]+)")


def run_in_image(image_name: str, command: str, env: dict[str, str] | None = None, home: str | None = None,
                 timeout: float = COMMAND_TIMEOUT_S) -> CommandResult:
    """``bash -c command`` with PATH = the image's tools only, plus ``env`` (e.g. GCE_METADATA_HOST).

    The environment holds nothing else from this process (no sandbox variables, no credentials)."""
    img = image(image_name)
    for path in _ABS_TOOL.findall(command):
        if Path(path).name not in img.tools:
            return CommandResult(127, "", f"bash: {path}: No such file or directory\n")
    with tempfile.TemporaryDirectory(prefix=f"spinboot-{image_name}-") as tmp:
        bindir = Path(tmp) / "bin"
        make_bin_dir(img, bindir)
        bash = bindir / "bash"
        if not bash.exists():
            return CommandResult(127, "", "bash is not in the image\n")
        home_dir = home or str(Path(tmp) / "home")
        Path(home_dir).mkdir(parents=True, exist_ok=True)
        full_env = {"PATH": str(bindir), "HOME": home_dir, "LANG": "C.UTF-8",
                    # gcloud keeps its state here: never this machine's own gcloud configuration.
                    "CLOUDSDK_CONFIG": str(Path(tmp) / "gcloud")}
        full_env.update(env or {})
        try:
            proc = subprocess.run(["bash", "-c", command], executable=str(bash), env=full_env, cwd=home_dir, capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            return CommandResult(124, _text(exc.stdout), _text(exc.stderr) + f"\ntimed out after {timeout:.0f} s")
    return CommandResult(proc.returncode, proc.stdout, proc.stderr)


def _text(b: bytes | str | None) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b
