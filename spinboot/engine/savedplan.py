"""Saved plans: `spinboot plan --out FILE`, then `spinboot apply FILE` (Terraform's saved-plan workflow).

The file holds the spinboot.yaml the plan was made from (so the apply uses exactly it, whatever the working copy
says now), every change the plan found, and a fingerprint of them. ``apply FILE`` plans again against live state
first: when the changes (and so the live state they were read from) are the same, it applies them; when live state
moved since the plan, it refuses and says what differs, so what was reviewed on the pull request is what runs.

The file holds no secret: spinboot.yaml holds none by design, and changes name objects and field paths, never
values. ``write`` checks that before anything is stored (a text that looks like a credential is refused), and a local
file is written with mode 0600 all the same, as every file spinboot writes about live state.

A plan may also live in Cloud Storage (``gs://BUCKET/OBJECT``), read and written with the same google-cloud-storage
client spinboot uses for front50's bucket, so Cloud Build's pull-request build can keep it where the merge build
finds it (docs/ci.md); in the sandbox that client reaches its Storage stand-in. The file records which build made it
(Cloud Build's ``BUILD_ID``, trigger and commit, when set) so the apply can say whose plan it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..changes import Change
from ..config.problems import secret_kind

FORMAT = "spinboot-plan/1"
GCS_SCHEME = "gs://"
# Bucket names: 3-63 characters of lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or
# digit (https://cloud.google.com/storage/docs/buckets#naming); object names: 1-1024 bytes of UTF-8
# (https://cloud.google.com/storage/docs/objects#naming).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")
# Where Cloud Build puts what names a build (passed into the step's env by cloudbuild.yaml).
BUILD_ENV = (("build", "BUILD_ID"), ("project", "PROJECT_ID"), ("trigger", "TRIGGER_NAME"), ("commit", "COMMIT_SHA"))


class PlanFileError(Exception):
    """The file is not a spinboot plan, or not one this spinboot can apply, or its location is malformed (exit 2)."""


class PlanStoreError(Exception):
    """The plan's location could not be read or written (permissions, network): a failure while acting (exit 1)."""


def is_gcs(location: str | os.PathLike) -> bool:
    return str(location).startswith(GCS_SCHEME)


def split_gcs(location: str) -> tuple[str, str]:
    """(bucket, object) of ``gs://BUCKET/OBJECT``; PlanFileError when it is not one Cloud Storage would accept."""
    bucket, _, name = location[len(GCS_SCHEME):].partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise PlanFileError(f"{location}: {bucket!r} is not a Cloud Storage bucket name (allowed: 3-63 lowercase "
                            "letters, digits, '-', '_', '.'; e.g. gs://acme-spinboot-plans/plans/NAME.json)")
    if not name or name.endswith("/") or len(name.encode()) > 1024 or name in (".", "..") or "\n" in name:
        raise PlanFileError(f"{location}: no object name after the bucket (allowed: gs://BUCKET/OBJECT, e.g. "
                            f"gs://{bucket}/plans/NAME.json)")
    return bucket, name


def provenance(environ: dict | None = None) -> dict:
    """Which build made the plan: Cloud Build's BUILD_ID, PROJECT_ID, TRIGGER_NAME, COMMIT_SHA, when set."""
    env = os.environ if environ is None else environ
    return {key: env[var] for key, var in BUILD_ENV if env.get(var)}


def describe_provenance(made_by: dict) -> str:
    """``Cloud Build 1234 (trigger spinboot-plan, commit 0abc123)``, or "" when the plan was made by hand."""
    if not made_by.get("build"):
        return ""
    extra = [f"{k} {made_by[k][:12] if k == 'commit' else made_by[k]}" for k in ("trigger", "commit") if made_by.get(k)]
    return f"Cloud Build {made_by['build']}" + (f" ({', '.join(extra)})" if extra else "")


def change_record(step: str, c: Change) -> dict:
    return {"step": step, "action": c.action, "kind": c.kind, "name": c.name, "namespace": c.namespace or "",
            "detail": c.detail or ""}


def fingerprint(records: list[dict]) -> str:
    canon = json.dumps(sorted(records, key=lambda r: json.dumps(r, sort_keys=True)), sort_keys=True,
                       separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


@dataclass
class SavedPlan:
    config_name: str
    config_text: str
    stages: tuple[str, ...]
    changes: list[dict]
    fingerprint: str
    made_by: dict = field(default_factory=dict)   # provenance(): not covered by the fingerprint, for messages only

    @property
    def mutating(self) -> list[dict]:
        return [c for c in self.changes if c["action"] in ("create", "update", "delete")]


def write(location: str | os.PathLike, config_name: str, config_text: str, stages: tuple[str, ...],
          records: list[dict], storage=None, made_by: dict | None = None) -> SavedPlan:
    """Write the plan to a local file (mode 0600, replaced atomically) or to ``gs://BUCKET/OBJECT`` with
    ``storage`` (a google.cloud.storage.Client). Nothing is written when the plan holds anything that looks like a
    credential (it never should: see the module's docstring)."""
    plan = SavedPlan(config_name, config_text, tuple(stages), records, fingerprint(records), dict(made_by or {}))
    doc = {"format": FORMAT, "config": {"name": config_name, "text": config_text,
                                        "sha256": hashlib.sha256(config_text.encode()).hexdigest()},
           "stages": list(stages), "changes": records, "fingerprint": plan.fingerprint}
    if plan.made_by:
        doc["madeBy"] = plan.made_by
    body = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    leak = secret_kind(body)
    if leak:
        raise PlanStoreError(f"{location}: not written: the plan would hold what looks like {leak} (a plan holds "
                             "spinboot.yaml and change records only; this is a bug, please report it)")
    if is_gcs(location):
        _upload(str(location), body.encode(), storage)
        return plan
    path = Path(location)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.replace(tmp, path)
    except OSError as exc:
        raise PlanStoreError(f"{path}: cannot write the plan ({exc.strerror or exc})") from None
    return plan


def _upload(location: str, body: bytes, storage) -> None:
    from google.api_core import exceptions

    bucket, name = split_gcs(location)
    try:
        storage.bucket(bucket).blob(name).upload_from_string(body, content_type="application/json")
    except exceptions.NotFound:
        raise PlanStoreError(f"{location}: bucket {bucket} does not exist (create it: docs/ci.md, \"Saved plans\")") \
            from None
    except exceptions.GoogleAPICallError as exc:
        raise PlanStoreError(f"{location}: cannot write the plan: {exc.code} {exc.message}") from None


def _download(location: str, storage) -> bytes:
    from google.api_core import exceptions

    bucket, name = split_gcs(location)
    try:
        return storage.bucket(bucket).blob(name).download_as_bytes()
    except exceptions.NotFound:
        raise PlanFileError(f"{location}: no such plan (it is written by `spinboot plan --out {location}`; in Cloud "
                            "Build by the pull-request build of this same spinboot file: docs/ci.md)") from None
    except exceptions.GoogleAPICallError as exc:
        raise PlanStoreError(f"{location}: cannot read the plan: {exc.code} {exc.message}") from None


def read(location: str | os.PathLike, storage=None) -> SavedPlan:
    """Read and check a plan from a local file or ``gs://BUCKET/OBJECT`` (with ``storage``)."""
    try:
        raw = _download(str(location), storage) if is_gcs(location) else Path(location).read_bytes()
        doc = json.loads(raw.decode())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PlanFileError(f"{location}: not a readable spinboot plan ({exc})") from None
    path = location
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PlanFileError(f"{path}: not a spinboot plan (allowed: a file written by `spinboot plan --out`, "
                            f"format {FORMAT})")
    try:
        cfg = doc["config"]
        text = cfg["text"]
        if hashlib.sha256(text.encode()).hexdigest() != cfg["sha256"]:
            raise PlanFileError(f"{path}: the spinboot.yaml inside the plan was changed after the plan was made")
        records = doc["changes"]
        made_by = doc.get("madeBy") or {}
        if not isinstance(made_by, dict):
            raise TypeError("madeBy is not a mapping")
        plan = SavedPlan(cfg["name"], text, tuple(doc["stages"]), records, doc["fingerprint"],
                         {k: str(v) for k, v in made_by.items()})
    except (KeyError, TypeError) as exc:
        raise PlanFileError(f"{path}: a spinboot plan with a missing or malformed field ({exc})") from None
    if fingerprint(plan.changes) != plan.fingerprint:
        raise PlanFileError(f"{path}: the changes inside the plan were edited after the plan was made")
    return plan


def moved(saved: SavedPlan, now: list[dict]) -> list[str]:
    """What differs between the saved plan's changes and a fresh plan's, as lines for the refusal message."""
    key = lambda r: (r["step"], r["kind"], r["namespace"], r["name"])  # noqa: E731
    before = {key(r): r for r in saved.changes}
    after = {key(r): r for r in now}
    out = []
    for k in sorted(set(before) | set(after)):
        b, a = before.get(k), after.get(k)
        what = f"{k[1]} {k[2] + '/' if k[2] else ''}{k[3]}"
        if b is None:
            out.append(f"{what}: now {a['action']} (not in the plan)")
        elif a is None:
            out.append(f"{what}: planned {b['action']}, now nothing to do")
        elif (b["action"], b["detail"]) != (a["action"], a["detail"]):
            out.append(f"{what}: planned {b['action']} {b['detail']}".rstrip() + f", now {a['action']} {a['detail']}".rstrip())
    return out
