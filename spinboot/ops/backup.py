"""Backups of Halyard's configuration in front50's bucket, and restoring one into a (new) Halyard pod.

A backup is ``hal backup create`` run in the Halyard pod (Halyard tars ``~/.hal``; files the config points at are
copied into ``.backup/required-files``), copied out through the exec API, stripped of every kubeconfig, and uploaded
as ``gs://BUCKET/spinboot-backups/<UTC timestamp>/`` with the spinboot file and ``backup.json`` (the rendered
bundle's hash). Kubeconfigs carry Spinnaker's long-lived tokens and are minted again on restore, so they never
leave the cluster: the design keeps no credentials outside Kubernetes Secrets.

Restore puts the tar into the pod, ``hal backup restore --backup-path F``, copies the freshly minted kubeconfigs
into ``~/.hal/spinboot/kubeconfigs``, points the accounts at them, ``hal deploy apply``, waits for the rollout, and
records the backup's bundle hash as applied (see ``restore``). All of that happens under the Spinnaker cluster's
lock (spinboot.kube.lock), as the Halyard step and destroy do: a restore next to another run's configure.sh would
have two writers of one halconfig in one pod.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import re
import shlex
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from .. import __version__
from ..changes import Change
from ..config.model import SpinbootConfig
from ..gcp import gke
from ..kube import access
from ..kube.halyard import (BUNDLE_DIR, STATE_CONFIGMAP, _state, kubeconfigs_hash, pod_name, wait_pod_ready,
                            wait_rollout)
from ..kube.lock import DEFAULT_TIMEOUT_SECONDS, LeaseLock, wait_for_leftover
from ..kube.podexec import ExecError, copy_into_pod, exec_in_pod
from ..kube.resources import Kube
from ..render import bundle_hash, pod_paths

PREFIX = "spinboot-backups/"
TAR, META, SPINBOOT_FILE = "halyard.tar", "backup.json", "spinboot.yaml"
RESTORE_DIR = "${HOME}/.spinboot-restore"      # outside ~/.hal, so a later `hal backup create` never nests it
KUBECONFIG_REL = "spinboot/kubeconfigs"          # KUBECONFIG_DIR relative to ~/.hal
# Keys of Halyard's @LocalFile fields that hold a kubeconfig.
KUBECONFIG_KEYS = ("kubeconfigFile",)


class BackupError(Exception):
    pass


Progress = Callable[[str], None]
OnLine = Callable[[str, str], None]


def _noop(*_a) -> None:
    pass


# --- reaching Halyard ------------------------------------------------------------------------------------------

def spinnaker_kube(clients, cfg: SpinbootConfig) -> Kube:
    live = gke.get_cluster(clients.container, gke.cluster_name(cfg))
    if live is None:
        raise BackupError(f"the Spinnaker cluster {gke.cluster_name(cfg)} does not exist: there is no Halyard to back "
                          "up (to rebuild, see docs/runbook.md)")
    a = gke.access_of(live)
    return Kube(access.Cluster("spinnaker", a.endpoint, a.ca_pem, token=clients.access_token).api_client(), "spinnaker")


def _run(kube: Kube, cfg: SpinbootConfig, script: str, on_line: OnLine | None = None, timeout: float = 600):
    try:
        return exec_in_pod(kube.api, cfg.spinnaker.halyard.namespace, pod_name(), ["bash", "-c", script],
                           on_line=on_line, timeout=timeout)
    except ExecError as exc:
        raise BackupError(str(exc)) from None


def hal_backup_create(kube: Kube, cfg: SpinbootConfig, on_line: OnLine = _noop) -> bytes:
    """Run ``hal backup create`` in the pod and copy the tar out (base64 on stdout, checked by sha256).

    The tar holds kubeconfigs with tokens: it is removed from the pod at once, and never printed."""
    ns = cfg.spinnaker.halyard.namespace
    r = _run(kube, cfg, "hal backup create", on_line=on_line)
    if r.returncode != 0:
        raise BackupError(f"hal backup create failed in {ns}/{pod_name()} (exit {r.returncode}): "
                          f"{(r.stderr.strip().splitlines() or ['(no output)'])[-1]}")
    # hal prints "Successfully created a backup at location: \n<path>" (BackupService).
    paths = re.findall(r"(/\S+\.tar)\s*$", r.stdout, re.M)
    if not paths:
        raise BackupError(f"hal backup create did not say where it wrote the backup: {r.stdout.strip()[-300:]}")
    q = shlex.quote(paths[-1])
    r = _run(kube, cfg, f"set -e; f={q}; trap 'rm -f -- \"$f\"' EXIT; sha256sum -- \"$f\" | cut -d' ' -f1; "
                        'base64 -w0 -- "$f"; echo')
    if r.returncode != 0:
        raise BackupError(f"copying {paths[-1]} out of {ns}/{pod_name()} failed (exit {r.returncode}): "
                          f"{r.stderr.strip()[-300:]}")
    digest, _, b64 = r.stdout.strip().partition("\n")
    data = base64.b64decode(b64.strip())
    if hashlib.sha256(data).hexdigest() != digest.strip():
        raise BackupError("the backup copied out of the Halyard pod does not match its sha256: not uploaded")
    return data


# --- stripping kubeconfigs -------------------------------------------------------------------------------------

def _walk(obj):
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def _member_of(value: str, names: set[str]) -> str | None:
    """The tar member a config path designates: relative to ~/.hal, or absolute under some ``.../.hal/``."""
    if value in names:
        return value
    if "/.hal/" in value:
        rel = value.split("/.hal/", 1)[1]
        if rel in names:
            return rel
    return None


def _kubeconfig_secrets(body: bytes) -> list[str] | None:
    """The credential values of a kubeconfig, or None when ``body`` is not one."""
    try:
        doc = yaml.safe_load(body)
    except yaml.YAMLError:
        return None
    if not (isinstance(doc, dict) and doc.get("kind") == "Config" and "users" in doc):
        return None
    out = []
    for u in doc.get("users") or []:
        for k, v in ((u or {}).get("user") or {}).items():
            if k in ("token", "client-key-data", "password", "client-certificate-data") and isinstance(v, str) and v:
                out.append(v)
    return out


@dataclass
class Stripped:
    tar: bytes
    removed: list[str] = field(default_factory=list)
    repointed: dict[str, str] = field(default_factory=dict)   # account → its new kubeconfigFile


def strip_kubeconfigs(tar_bytes: bytes) -> Stripped:
    """Remove every kubeconfig from a Halyard backup and point the accounts at ``spinboot/kubeconfigs/<name>``
    (relative to ~/.hal, where restore puts freshly minted ones). Refuses if any token remains."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as src:
        members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()]
    names = {m.name for m, _ in members}
    config_body = next((b for m, b in members if m.name == "config"), None)
    if config_body is None:
        raise BackupError("the Halyard backup has no config: not a backup of ~/.hal")
    config = yaml.safe_load(config_body) or {}
    drop: set[str] = set()
    secrets: list[str] = []
    out = Stripped(b"")
    for obj in _walk(config):
        for key in KUBECONFIG_KEYS:
            value = obj.get(key)
            member = _member_of(value, names) if isinstance(value, str) else None
            if member is None and not (isinstance(value, str) and value.endswith(".kubeconfig")):
                continue
            if member:
                drop.add(member)
            new = f"{KUBECONFIG_REL}/{pod_paths.kubeconfig_file(obj.get('name') or Path(value).stem)}"
            obj[key] = new
            out.repointed[str(obj.get("name") or value)] = new
    for m, body in members:   # any other kubeconfig (copied by hand, or where spinboot puts them) goes too
        if body is None or m.name == "config":
            continue
        found = _kubeconfig_secrets(body)
        if m.name.startswith(KUBECONFIG_REL + "/") or found is not None:
            drop.add(m.name)
        if m.name in drop:
            secrets += found or []
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as dst:
        for m, body in members:
            if m.name in drop:
                continue
            if m.name == "config":
                body = yaml.safe_dump(config, sort_keys=False).encode()
                m = tarfile.TarInfo("config")
                m.mode, m.size = 0o600, len(body)
            dst.addfile(m, io.BytesIO(body) if body is not None else None)
    out.tar = buf.getvalue()
    out.removed = sorted(drop)
    leaked = [s for s in secrets if len(s) >= 8 and s.encode() in out.tar]
    if leaked:
        raise BackupError("a credential from a kubeconfig is still in the backup after stripping: not uploaded")
    return out


# --- the bucket -------------------------------------------------------------------------------------------------

def backup_name(now: dt.datetime | None = None) -> str:
    """``20261126T203157.123Z``: UTC, sorts by time, safe in object names and shells."""
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"


def _bucket(storage, cfg: SpinbootConfig):
    return storage.bucket(cfg.spinnaker.storage.bucket)


def list_backups(storage, cfg: SpinbootConfig) -> tuple[list[str], list[str]]:
    """(complete, incomplete) backup names, oldest first. A backup is complete once its backup.json exists
    (uploaded last)."""
    it = storage.list_blobs(cfg.spinnaker.storage.bucket, prefix=PREFIX)
    files: dict[str, set[str]] = {}
    for blob in it:
        rest = blob.name[len(PREFIX):]
        if "/" in rest:
            name, _, leaf = rest.partition("/")
            files.setdefault(name, set()).add(leaf)
    complete = sorted(n for n, leaves in files.items() if META in leaves and TAR in leaves)
    return complete, sorted(set(files) - set(complete))


def upload(storage, cfg: SpinbootConfig, name: str, tar: bytes, spinboot_file: bytes, meta: dict) -> None:
    b = _bucket(storage, cfg)
    b.blob(f"{PREFIX}{name}/{TAR}").upload_from_string(tar, content_type="application/x-tar")
    b.blob(f"{PREFIX}{name}/{SPINBOOT_FILE}").upload_from_string(spinboot_file, content_type="application/yaml")
    b.blob(f"{PREFIX}{name}/{META}").upload_from_string(json.dumps(meta, indent=2, sort_keys=True).encode(),
                                                       content_type="application/json")


def apply_retention(storage, cfg: SpinbootConfig, keep: int, dry_run: bool = False) -> list[Change]:
    """Keep the newest ``keep`` complete backups (0 keeps all). Older ones go, and so do incomplete ones older
    than the newest kept (an interrupted upload); a newer incomplete one may be a backup running right now."""
    if keep <= 0:
        return []
    complete, incomplete = list_backups(storage, cfg)
    kept = complete[-keep:]
    newest = kept[-1] if kept else ""
    doomed = [n for n in complete[:-keep]] + [n for n in incomplete if n < newest]
    out = []
    b = _bucket(storage, cfg)
    for name in sorted(doomed):
        if not dry_run:
            for blob in list(storage.list_blobs(cfg.spinnaker.storage.bucket, prefix=f"{PREFIX}{name}/")):
                b.blob(blob.name).delete()
        out.append(Change("delete", "backup", f"gs://{cfg.spinnaker.storage.bucket}/{PREFIX}{name}/",
                          detail=f"retention: newest {keep} kept"))
    return out


def resolve_name(storage, cfg: SpinbootConfig, wanted: str) -> str:
    complete, _ = list_backups(storage, cfg)
    if not complete:
        raise BackupError(f"no backup in gs://{cfg.spinnaker.storage.bucket}/{PREFIX} (make one: spinboot backup)")
    if wanted in ("", "latest"):
        return complete[-1]
    name = wanted.removeprefix(f"gs://{cfg.spinnaker.storage.bucket}/").removeprefix(PREFIX).strip("/")
    if name not in complete:
        raise BackupError(f"--from {wanted}: no such complete backup (allowed: latest, "
                          f"{', '.join(complete[-5:])}{' ...' if len(complete) > 5 else ''})")
    return name


def download(storage, cfg: SpinbootConfig, name: str) -> tuple[bytes, dict]:
    b = _bucket(storage, cfg)
    meta = json.loads(b.blob(f"{PREFIX}{name}/{META}").download_as_bytes())
    tar = b.blob(f"{PREFIX}{name}/{TAR}").download_as_bytes()
    if meta.get("halyardTar", {}).get("sha256") not in (None, hashlib.sha256(tar).hexdigest()):
        raise BackupError(f"backup {name}: {TAR} does not match the sha256 in {META} (corrupt or changed)")
    return tar, meta


# --- the two operations ----------------------------------------------------------------------------------------

def backup(clients, cfg: SpinbootConfig, spinboot_file: bytes, files: dict[str, bytes], keep: int,
           progress: Progress = _noop, on_line: OnLine = _noop, now: dt.datetime | None = None) -> tuple[str, list[Change]]:
    """Back up Halyard's config to the bucket; returns the backup's name and what changed (retention included)."""
    kube = spinnaker_kube(clients, cfg)
    progress("hal backup create in the Halyard pod")
    raw = hal_backup_create(kube, cfg, on_line=on_line)
    stripped = strip_kubeconfigs(raw)
    progress(f"removed {len(stripped.removed)} kubeconfig file(s) from the backup (they are minted again on restore)")
    name = backup_name(now)
    meta = {
        "name": name, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "spinbootVersion": __version__, "spinnakerVersion": cfg.spinnaker.version,
        "cluster": gke.cluster_name(cfg), "bundleSha256": bundle_hash(files),
        "halyardTar": {"sha256": hashlib.sha256(stripped.tar).hexdigest(), "bytes": len(stripped.tar)},
        "kubeconfigsRemoved": stripped.removed, "accountsRepointed": stripped.repointed,
    }
    progress(f"uploading to gs://{cfg.spinnaker.storage.bucket}/{PREFIX}{name}/")
    upload(clients.storage, cfg, name, stripped.tar, spinboot_file, meta)
    changes = [Change("create", "backup", f"gs://{cfg.spinnaker.storage.bucket}/{PREFIX}{name}/",
                      detail=f"{len(stripped.tar)} bytes, bundle {meta['bundleSha256'][:12]}, kubeconfigs removed")]
    changes += apply_retention(clients.storage, cfg, keep)
    return name, changes


def account_edits(tar: bytes) -> list[tuple[str, str, str]]:
    """(deployment, account, kubeconfig file name) for each account the backup points at spinboot/kubeconfigs."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        config = yaml.safe_load(t.extractfile("config").read()) or {}
    out = []
    for dep in config.get("deploymentConfigurations") or []:
        for acct in ((dep.get("providers") or {}).get("kubernetes") or {}).get("accounts") or []:
            value = acct.get("kubeconfigFile") or ""
            if value.startswith(KUBECONFIG_REL + "/"):
                out.append((dep.get("name") or "default", acct["name"], value.rsplit("/", 1)[1]))
    return out


def restore(kube: Kube, cfg: SpinbootConfig, tar: bytes, meta: dict, kubeconfigs: dict[str, bytes],
            files: dict[str, bytes], progress: Progress = _noop, on_line: OnLine = _noop,
            lock_timeout: float | None = None, report: Callable[..., None] | None = None) -> list[Change]:
    """Put a backup into the Halyard pod and deploy it, holding the Spinnaker cluster's lock throughout.

    The backup's bundle hash is recorded as applied: the restored halconfig is what that bundle's configure.sh (plus
    any hand edits) produced. So the next ``apply`` with the same file changes nothing, and with a different file
    it runs configure.sh again on top of the restored config, which is what the file asks for.

    ``lock_timeout``: seconds to wait for another run holding the lock (None: the lock's default; 0: do not wait);
    ``report`` gets the lock's ``lock`` events.
    """
    ns = cfg.spinnaker.halyard.namespace
    # `hal backup restore` unpacks the tar over ~/.hal, replacing the files there, then loads and saves the
    # halconfig (restore() in spinnaker/spinnaker@spinnaker-release-2026.2.3:
    # halyard/halyard-backup/src/main/java/com/netflix/spinnaker/halyard/backup/services/v1/BackupService.java):
    # the files another run's configure.sh is editing. Hence the lock.
    with LeaseLock(kube, ns, operation="restore", timeout=lock_timeout, progress=progress, report=report):
        # A run killed mid-configure.sh left it running in the pod: it would write the halconfig being restored.
        wait_for_leftover(kube, ns, pod_name(), f"{BUNDLE_DIR}/configure.sh", progress,
                          DEFAULT_TIMEOUT_SECONDS if lock_timeout is None else lock_timeout)
        return _restore_locked(kube, cfg, tar, meta, kubeconfigs, files, progress, on_line)


def _restore_locked(kube: Kube, cfg: SpinbootConfig, tar: bytes, meta: dict, kubeconfigs: dict[str, bytes],
                    files: dict[str, bytes], progress: Progress, on_line: OnLine) -> list[Change]:
    ns = cfg.spinnaker.halyard.namespace
    wait_pod_ready(kube, ns, pod_name(), progress)
    edits = account_edits(tar)
    have = {pod_paths.kubeconfig_file(n) for n in kubeconfigs}
    missing = sorted({f"{a} ({f})" for _, a, f in edits if f not in have})
    if missing:
        raise BackupError("the backup's accounts " + ", ".join(missing) + " have no kubeconfig: they are not targets "
                          "in this file (add them as targets, or remove the accounts by hand after restoring)")
    try:
        progress("copying the backup into the Halyard pod")
        copy_into_pod(kube.api, ns, pod_name(), RESTORE_DIR, {TAR: (tar, 0o600)}, replace=True)
        if kubeconfigs:
            copy_into_pod(kube.api, ns, pod_name(), pod_paths.KUBECONFIG_DIR,
                          {pod_paths.kubeconfig_file(n): (b, 0o600) for n, b in kubeconfigs.items()}, replace=True)
    except ExecError as exc:
        raise BackupError(str(exc)) from None
    lines = ["set -euo pipefail", f"trap 'rm -rf \"{RESTORE_DIR}\"' EXIT",
             f'hal backup restore --backup-path "{RESTORE_DIR}/{TAR}"']
    for dep, account, fname in edits:
        lines.append(f"hal config provider kubernetes account edit {shlex.quote(account)} --deployment "
                     f"{shlex.quote(dep)} --kubeconfig-file \"{pod_paths.KUBECONFIG_DIR}/{fname}\"")
    lines.append("hal deploy apply")
    progress("hal backup restore, kubeconfigs re-pointed, hal deploy apply")
    r = _run(kube, cfg, "\n".join(lines) + "\n", on_line=on_line, timeout=3600)
    if r.returncode != 0:
        raise BackupError(f"restoring in {ns}/{pod_name()} failed (exit {r.returncode}): "
                          f"{(r.stderr.strip().splitlines() or ['(no output)'])[-1]}")
    restored_hash = meta.get("bundleSha256", "")
    kube.apply(_state(cfg, restored_hash, kubeconfigs_hash(kubeconfigs)))
    changes = [Change("update", "Halyard configuration", "halconfig", ns,
                      f"restored backup {meta.get('name')}; {len(edits)} account(s) re-pointed at fresh kubeconfigs")]
    if restored_hash != bundle_hash(files):
        changes.append(Change("unchanged", "Halyard configuration", STATE_CONFIGMAP, ns,
                              "the file differs from the backup's: the next apply runs configure.sh on top"))
    wait_rollout(kube, cfg, progress)
    return changes
