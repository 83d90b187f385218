"""Saved plans: `spinboot plan --out FILE`, then `spinboot apply FILE` (Terraform's saved-plan workflow).

The file holds the spinboot.yaml the plan was made from (so the apply uses exactly it, whatever the working copy
says now), every change the plan found, and a fingerprint of them. ``apply FILE`` plans again against live state
first: when the changes (and so the live state they were read from) are the same, it applies them; when live state
moved since the plan, it refuses and says what differs, so what was reviewed on the pull request is what runs.

The file holds no secret: spinboot.yaml holds none by design, and changes name objects and field paths, never
values. It is written with mode 0600 all the same, as every file spinboot writes about live state.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..changes import Change

FORMAT = "spinboot-plan/1"


class PlanFileError(Exception):
    """The file is not a spinboot plan, or not one this spinboot can apply (exit 2)."""


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

    @property
    def mutating(self) -> list[dict]:
        return [c for c in self.changes if c["action"] in ("create", "update", "delete")]


def write(path: Path, config_name: str, config_text: str, stages: tuple[str, ...], records: list[dict]) -> SavedPlan:
    plan = SavedPlan(config_name, config_text, tuple(stages), records, fingerprint(records))
    doc = {"format": FORMAT, "config": {"name": config_name, "text": config_text,
                                        "sha256": hashlib.sha256(config_text.encode()).hexdigest()},
           "stages": list(stages), "changes": records, "fingerprint": plan.fingerprint}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return plan


def read(path: Path) -> SavedPlan:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PlanFileError(f"{path}: not a readable spinboot plan ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PlanFileError(f"{path}: not a spinboot plan (allowed: a file written by `spinboot plan --out`, "
                            f"format {FORMAT})")
    try:
        cfg = doc["config"]
        text = cfg["text"]
        if hashlib.sha256(text.encode()).hexdigest() != cfg["sha256"]:
            raise PlanFileError(f"{path}: the spinboot.yaml inside the plan was changed after the plan was made")
        records = doc["changes"]
        plan = SavedPlan(cfg["name"], text, tuple(doc["stages"]), records, doc["fingerprint"])
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
