"""Golden files: every renderer's output for the examples, byte for byte.

A deliberate renderer change: `make goldens`, then review `git diff tests/goldens` before committing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from spinboot.config import load_config
from spinboot.render import render_all

from .conftest import EXAMPLES, ROOT

GOLDENS = ROOT / "tests" / "goldens"
UPDATE = os.environ.get("SPINBOOT_UPDATE_GOLDENS") == "1"
CASES = {
    "example": EXAMPLES / "spinboot.yaml",
    "minimal": EXAMPLES / "minimal.yaml",
    "legacy-iap-github": ROOT / "tests" / "data" / "legacy-iap-github.yaml",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_render_matches_goldens(name):
    files = render_all(load_config(CASES[name]).config)
    golden_dir = GOLDENS / name
    if UPDATE:
        shutil.rmtree(golden_dir, ignore_errors=True)
        for rel, body in files.items():
            (golden_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden_dir / rel).write_bytes(body)
    expected = {str(p.relative_to(golden_dir)): p.read_bytes() for p in golden_dir.rglob("*") if p.is_file()}
    assert sorted(files) == sorted(expected), "the set of rendered files changed; run `make goldens` if deliberate"
    for rel, body in files.items():
        assert body == expected[rel], f"{rel} differs from tests/goldens/{name}/{rel}; run `make goldens` if deliberate"
