"""Shared helpers for spinboot's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from spinboot.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


class Cli:
    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str):
        result = self.runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return result


@pytest.fixture
def cli() -> Cli:
    return Cli()


MINIMAL = (EXAMPLES / "minimal.yaml").read_text()
