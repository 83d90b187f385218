"""Saved plans (spinboot/engine/savedplan.py): what the file holds, and what makes `apply FILE` refuse."""

from __future__ import annotations

import json
import stat

import pytest

from spinboot.changes import Change
from spinboot.engine import savedplan

RECORDS = [savedplan.change_record("rbac:platform", Change("create", "RoleBinding", "spinboot:spinnaker:deploy", "prod")),
           savedplan.change_record("halyard", Change("unchanged", "Halyard configuration", "configure.sh", "halyard",
                                                     "bundle 0123 already applied"))]


def test_plan_file_round_trips_privately(tmp_path):
    path = tmp_path / "p.plan"
    written = savedplan.write(path, "spinboot.yaml", "project: acme-platform\n", ("rbac", "halyard"), RECORDS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = savedplan.read(path)
    assert back.fingerprint == written.fingerprint and back.config_text == "project: acme-platform\n"
    assert [c["action"] for c in back.mutating] == ["create"]


@pytest.mark.parametrize("tamper,words", [
    (lambda d: d["config"].__setitem__("text", "project: other-project\n"), "spinboot.yaml inside the plan was changed"),
    (lambda d: d["changes"][0].__setitem__("action", "delete"), "changes inside the plan were edited"),
    (lambda d: d.__setitem__("format", "terraform"), "not a spinboot plan"),
    (lambda d: d.pop("changes"), "missing or malformed"),
])
def test_an_edited_or_foreign_plan_is_refused(tmp_path, tamper, words):
    path = tmp_path / "p.plan"
    savedplan.write(path, "spinboot.yaml", "project: acme-platform\n", ("rbac",), RECORDS)
    doc = json.loads(path.read_text())
    tamper(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(savedplan.PlanFileError, match=words):
        savedplan.read(path)


def test_moved_says_what_differs():
    now = [dict(RECORDS[0], action="unchanged"),
           savedplan.change_record("rbac:platform", Change("update", "ClusterRole", "r", None, "rules"))]
    lines = savedplan.moved(savedplan.SavedPlan("f", "", (), RECORDS, savedplan.fingerprint(RECORDS)), now)
    assert "RoleBinding prod/spinboot:spinnaker:deploy: planned create, now unchanged" in lines
    assert "ClusterRole r: now update (not in the plan)" in lines
    assert any(line.startswith("Halyard configuration halyard/configure.sh: planned unchanged") for line in lines)
    assert savedplan.fingerprint(list(reversed(RECORDS))) == savedplan.fingerprint(RECORDS)
