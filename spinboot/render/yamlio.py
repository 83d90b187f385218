"""Deterministic YAML output and ${name} templates over the operator-readable data files."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import yaml

from ..resources import data_path


class _Dumper(yaml.SafeDumper):
    """Block style, no aliases, keys in the order given: same input, same bytes."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)


def dump_all(docs: list[Any], header: str = "") -> bytes:
    body = "---\n".join(dump(d) for d in docs)
    return (comment(header) + body).encode()


def comment(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.strip().splitlines()) if text.strip() else ""


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")


@lru_cache(maxsize=None)
def _read(*parts: str) -> str:
    return data_path(*parts).read_text()


def template(parts: tuple[str, ...], values: dict[str, Any]) -> tuple[str, Any]:
    """Read a data file, return (its leading comment, its data with ${name} filled in).

    A value that is exactly ``${name}`` takes the typed value (an int stays an int); inside a longer string it is
    substituted as text. An unknown name is a bug in spinboot, so it raises.
    """
    text = _read(*parts)
    lead = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lead.append(line[1:].strip())
    data = yaml.safe_load(text)

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str):
            whole = _PLACEHOLDER.fullmatch(node)
            if whole:
                return values[whole[1]]
            return _PLACEHOLDER.sub(lambda m: str(values[m[1]]), node)
        return node

    return "\n".join(lead), fill(data)


def load_data(*parts: str) -> Any:
    return yaml.safe_load(_read(*parts))
