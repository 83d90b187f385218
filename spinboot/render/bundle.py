"""Everything `spinboot render` writes, and writing it atomically with MANIFEST.json."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..config.model import SpinbootConfig
from .deploy_engine import ENGINES
from .gcp import render_gcp
from .kustomize import settings as kustomize_settings, tree as kustomize_tree
from .rbac import render_rbac

MANIFEST = "MANIFEST.json"
EXECUTABLE = {"halconfig/configure.sh"}


def render_all(cfg: SpinbootConfig, engine: str | None = None, base_dir: Path | None = None) -> dict[str, bytes]:
    """Relative path → content of every artifact, manifest included. Pure and deterministic. ``engine``: default
    spinnaker.engine; ``base_dir``: spinboot.yaml's directory (the kustomize customizations are relative to it)."""
    engine = engine or kustomize_settings.engine(cfg)
    files: dict[str, bytes] = {}
    if engine == "kustomize":
        files.update({rel: body.encode() for rel, body in kustomize_tree(cfg, base_dir).items()})
    else:
        files.update(ENGINES[engine].render(cfg))
    files.update(render_rbac(cfg))
    files.update(render_gcp(cfg))
    files = dict(sorted(files.items()))
    files[MANIFEST] = manifest(files)
    return files


def manifest(files: dict[str, bytes]) -> bytes:
    entries = {path: hashlib.sha256(body).hexdigest() for path, body in sorted(files.items()) if path != MANIFEST}
    return (json.dumps({"generator": "spinboot", "files": entries}, indent=2, sort_keys=True) + "\n").encode()


def bundle_hash(files: dict[str, bytes]) -> str:
    """One hash for what Halyard is given: every ``halconfig/`` file. A change only GKE or a target sees (cluster
    labels, autoscaling, RBAC rules) leaves it alone, so it does not re-run configure.sh and ``hal deploy apply``."""
    h = hashlib.sha256()
    for rel in sorted(r for r in files if r.startswith("halconfig/")):
        h.update(rel.encode() + b"\0" + hashlib.sha256(files[rel]).digest())
    return h.hexdigest()


class OutputDirError(Exception):
    pass


def write_bundle(files: dict[str, bytes], out_dir: Path) -> None:
    """Write the bundle so that the directory holds either the old bundle or the new one, never a mix.

    The files are written to a temporary sibling and swapped in with renames. An existing directory is replaced
    only when it is a previous spinboot render (it has MANIFEST.json) or empty, so `-d .` cannot wipe a checkout.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputDirError(f"{out_dir} exists and is not a directory (allowed: a new or spinboot-rendered directory)")
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
            raise OutputDirError(f"{out_dir} is not empty and holds no {MANIFEST}: it is not a spinboot render, so it "
                                 "is left alone (allowed: a new, empty or previously rendered directory)")
    parent = out_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.render-", dir=parent))
    try:
        for rel, body in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            os.chmod(path, 0o755 if rel in EXECUTABLE else 0o644)
        os.chmod(tmp, 0o755)
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=parent))
            os.rmdir(old)
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
