"""Checks every render passes before anything is written: a failure here is a bug in spinboot, not in the file."""

from __future__ import annotations

import yaml

from .halgrammar import check_script


def check_bundle(files: dict[str, bytes]) -> list[str]:
    problems = []
    script = files.get("halconfig/configure.sh")
    if script is not None:
        for lineno, err in check_script(script.decode()):
            problems.append(f"halconfig/configure.sh:{lineno}: Halyard would reject this line: {err}")
    for path, body in files.items():
        if path.endswith((".yaml", ".yml")):
            try:
                list(yaml.safe_load_all(body))
            except yaml.YAMLError as exc:
                problems.append(f"{path}: not valid YAML: {exc}")
    return problems
