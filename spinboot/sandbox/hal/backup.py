"""``hal backup create`` / ``hal backup restore`` as Halyard's BackupService does them.

Halyard tars the contents of ``~/.hal`` (entries relative to it) into ``$HOME/halyard-<timestamp>.tar``. Local
files the config points at (kubeconfigs, JSON keys) are first copied into ``~/.hal/.backup/required-files`` and
the tarred config refers to them by paths relative to ``~/.hal``, so a restore on another machine is complete;
relative paths are resolved against ``~/.hal`` (``Halconfig.resolve_file``). Restore unpacks over ``~/.hal``.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import tarfile
from pathlib import Path
from typing import Any

import yaml

from spinboot.sandbox.hal.halconfig import HalFailure, Halconfig

REQUIRED_FILES = Path(".backup") / "required-files"
# Keys whose values are local files (Halyard's @LocalFile fields that spinboot may set).
FILE_KEYS = {"kubeconfigFile", "jsonPath", "tokenFile", "passwordFile", "usernamePasswordFile", "sshPrivateKeyFilePath"}
OMIT = {"service-logs"}          # BackupService.omitPaths


def _walk(obj: Any):
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def create(cfg: Halconfig, now: dt.datetime | None = None) -> Path:
    """Write the backup tar into ``$HOME`` and return its path."""
    now = now or dt.datetime.now(dt.timezone.utc)
    # Same shape as Halyard's SimpleDateFormat("'halyard'-yyyy-MM-dd_HH-mm-ss-SSSXXX'.tar'").
    stamp = now.strftime("%Y-%m-%d_%H-%M-%S-") + f"{now.microsecond // 1000:03d}" + \
        (now.strftime("%z")[:3] + ":" + now.strftime("%z")[3:] if now.utcoffset() else "Z")
    out = cfg.home / f"halyard-{stamp}.tar"
    config = copy.deepcopy(cfg.data)
    files: dict[str, Path] = {}
    for obj in _walk(config):
        for key in FILE_KEYS & obj.keys():
            src = cfg.resolve_file(obj[key])
            if src is None:
                continue
            if not src.is_file():
                raise HalFailure(f'Unable to back up "{obj[key]}": no such file.')
            rel = REQUIRED_FILES / f"{len(files)}-{src.name}"
            files[str(rel)] = src
            obj[key] = str(rel)
    with tarfile.open(out, "w") as tar:
        if cfg.dir.is_dir():
            for p in sorted(cfg.dir.rglob("*")):
                rel = p.relative_to(cfg.dir)
                if (rel.parts[0] in OMIT or rel.parts[0] == ".backup" or p.is_dir()
                        or rel in (Path("config"), Path("config.tmp"))
                        or (p.name.startswith("halyard-") and p.suffix == ".tar")):   # never nest old backups
                    continue
                tar.add(p, arcname=str(rel), recursive=False)
        data = yaml.safe_dump(config, sort_keys=False).encode()
        info = tarfile.TarInfo("config")
        info.size, info.mode, info.mtime = len(data), 0o600, int(now.timestamp())
        tar.addfile(info, io.BytesIO(data))
        for arc, src in files.items():
            tar.add(src, arcname=arc, recursive=False)
    out.chmod(0o600)                 # it holds credentials
    return out


def restore(cfg: Halconfig, backup_path: str) -> None:
    """Unpack a backup over ``~/.hal`` (existing files are replaced, as Halyard does)."""
    src = Path(backup_path)
    if not src.is_file():
        raise HalFailure(f"Failed to open backup: {backup_path} (No such file or directory)")
    cfg.dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(src) as tar:
            for m in tar.getmembers():
                if m.name.startswith("/") or ".." in Path(m.name).parts:
                    raise HalFailure(f"Failed to read archive entry: unsafe path {m.name}")
            tar.extractall(cfg.dir, filter="data")
    except tarfile.TarError as e:
        raise HalFailure(f"Failed to open backup: {e}") from e
    if (cfg.dir / "config").exists():
        cfg.data = yaml.safe_load((cfg.dir / "config").read_text())
