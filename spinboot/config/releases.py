"""Release guardrails: what a Spinnaker release line no longer ships, read from releases/guardrails.yaml.

The table is data an operator can read (each fact names the upstream file it was read from); this module is the only
reader. Rules (``rules.py``) ask it for the problems of a file's version and engine, the renderers and ``doctor`` ask
it which kubectl clouddriver's image runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import yaml

from ..resources import data_path
from .names import SpinnakerVersion


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    """The whole table (releases/guardrails.yaml), parsed once."""
    return yaml.safe_load(data_path("releases", "guardrails.yaml").read_text())


def _key(version: str) -> tuple[int, int, int]:
    return SpinnakerVersion(version).key


def _within(version: str, entry: dict) -> bool:
    return _key(entry["from"]) <= _key(version) <= _key(entry["through"])


def kubectl_line(version: str) -> dict | None:
    """The kubectl entry covering ``version``, or None when the table has no record of it."""
    return next((e for e in table()["kubectl"] if _within(version, e)), None)


def newest_kubectl(version: str) -> str | None:
    """The newest kubectl binary in clouddriver's image for this release (e.g. kubectl-1.29), or None."""
    line = kubectl_line(version)
    return line["executable"] if line else None


def kubectl_problem(version: str, executable: str) -> str | None:
    """Why ``executable`` (a name such as kubectl-1.29) does not exist in clouddriver's image for ``version``, or
    None when it exists or the table has no record of the version. For settings carried into clouddriver's config
    from elsewhere (a Halyard profile, a user's patch): clouddriver fails every operation of an account whose kubectl
    is missing."""
    line = kubectl_line(version)
    if line is None or executable in ("kubectl", *line["binaries"]):
        return None
    return (f"{executable} is not in clouddriver's {version} image, which ships {', '.join(line['binaries'])} "
            f"({line['source'][0]}) (allowed: one of those; {line['executable']} is the newest)")


def removal(rid: str) -> dict:
    return next(e for e in table()["removals"] if e["id"] == rid)


@dataclass(frozen=True)
class Finding:
    """One guardrail that applies to a file: the field it is about, error or warning, and why."""

    path: tuple
    severity: str          # "error" or "warning"
    message: str
    code: str | None = None


def findings(version: str, engine: str | None, halyard_image_set: bool) -> list[Finding]:
    """The guardrails a file with this version and engine runs into, from the table's removals."""
    out: list[Finding] = []
    v = _key(version)
    h = removal("halyard")
    if engine == "halyard":
        if v >= _key(h["refuse"]):
            out.append(Finding(("spinnaker", "engine"), "error",
                               f"the halyard engine cannot deploy Spinnaker {version}: Halyard was removed upstream "
                               f"after the {h['lastLine']} line ({h['source'][0]}) and spinboot refuses it from "
                               f"{h['refuse']} on (allowed: engine: kustomize, or a version before {h['refuse']}; "
                               "spinboot migrate moves a Halyard install over)"))
        elif v >= _key(h["warnFrom"]):
            if halyard_image_set:
                out.append(Finding(("spinnaker", "engine"), "warning",
                                   f"Spinnaker {version} is cut after Halyard's removal ({h['source'][0]}): no "
                                   f"Halyard of its own exists, and the one set in spinnaker.halyard.image deploys it "
                                   "only while upstream still publishes its BOM (allowed; recommended: engine: "
                                   "kustomize)", "halyard-removed"))
            else:
                out.append(Finding(("spinnaker", "version"), "error",
                                   f"no Halyard image is built for Spinnaker {version} (Halyard was removed upstream "
                                   f"after the {h['lastLine']} line: {h['source'][0]}), so the default "
                                   f"ghcr.io/spinnaker/halyard:{version} does not exist (allowed: engine: kustomize, "
                                   f"or spinnaker.halyard.image set to a {h['lastLine']} Halyard)"))
    g = removal("front50-gcs")
    if v >= _key(g["refuse"]):
        out.append(Finding(("spinnaker", "storage"), "error",
                           f"Spinnaker {version}'s front50 may no longer read GCS: upstream keeps GCS metadata "
                           f"storage through the {g['lastLine']} line only ({g['source'][0]}), and spinboot "
                           f"configures front50 with GCS (allowed: a version of the {g['lastLine']} line or earlier; "
                           "front50 SQL is not configured by spinboot yet)"))
    elif v >= _key(g["warnFrom"]):
        out.append(Finding(("spinnaker", "storage"), "warning",
                           f"front50's GCS storage is deprecated in Spinnaker {version} and kept through the "
                           f"{g['lastLine']} line only ({g['source'][0]}); spinboot refuses it from {g['refuse']} "
                           "(allowed; plan the move to front50 SQL before then)", "front50-gcs-deprecated"))
    return out
