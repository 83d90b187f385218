"""Docs that are generated must be current; the README must keep its two first commands."""

from spinboot.config.docs import generate

from .conftest import ROOT


def test_configuration_reference_is_current():
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == generate(), "docs/configuration.md is stale: run `make docs`"


def test_readme_starts_with_demo_and_test():
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:10])
    assert "make demo" in head and "make test" in head
