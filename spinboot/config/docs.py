"""Generate docs/configuration.md from the schema, so the reference cannot drift from the code.

Run `make docs` (or `python -m spinboot.config.docs > docs/configuration.md`); a test fails when it is stale.
"""

from __future__ import annotations

import json
import types
import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .model import SpinbootConfig


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return "mapping"
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return {str: "string", int: "integer", bool: "boolean"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _models(annotation) -> list[type[BaseModel]]:
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _models(a)] if origin else []


def _default(field) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            value = value.model_dump(by_alias=True, exclude_none=True)
        return f"`{json.dumps(value)}`" if value not in ({}, []) else "empty"
    if field.default is None or field.default is PydanticUndefined:
        return "unset"
    return f"`{json.dumps(field.default)}`"


def _rows(model: type[BaseModel], prefix: str, out: list[str], seen: set) -> None:
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        nested = _models(field.annotation)
        is_list = "list of" in _type_name(field.annotation)
        shown = key + ("[]" if is_list and nested else "")
        out.append(f"| `{shown}` | {_type_name(field.annotation)} | {_default(field)} | {field.description or ''} |")
        for sub in nested:
            _rows(sub, shown + ".", out, seen)


def generate() -> str:
    rows: list[str] = []
    _rows(SpinbootConfig, "", rows, set())
    head = """# spinboot.yaml reference

Generated from the schema by `make docs`; do not edit by hand. Keys are camelCase. Unknown keys are errors
(with a "did you mean"), so a typo never passes silently. `spinboot schema` prints the same as JSON Schema for
editors (for yaml-language-server: `# yaml-language-server: $schema=spinboot.schema.json` after
`spinboot schema > spinboot.schema.json`).

Every problem is reported at once as `FILE:LINE:COL: field.path: what is wrong (what is allowed)`, exit code 2,
and nothing is touched or written.

| key | type | default | meaning |
|---|---|---|---|
"""
    rules = """
## Rules across fields

- **Names** follow Google's and Kubernetes' rules: GKE cluster and node pool names `[a-z]([-a-z0-9]*[a-z0-9])?`
  up to 40 characters; project IDs 6-30 characters; bucket names as in Cloud Storage (no `goog` prefix, no
  `google`); service-account IDs 6-30 characters; Pub/Sub IDs 3-255 characters; namespaces as DNS labels.
- **Account names** are unique across `targets`, `registries` and `spinnaker.deployAccount`: clouddriver keeps
  one name space for all providers' accounts. Artifact account names are unique among themselves.
- **Namespaces**: each once per target; `kube-system`, `kube-public`, `kube-node-lease`, `gke-*` and `gmp-*` are
  refused unless the target sets `dangerouslyAllowSystemNamespaces: true`. The service account's own namespace
  can never be a system namespace.
- **One target per cluster** (same GKE reference or kubeconfig context twice is an error).
- **Private nodes** need `cluster.masterIpv4CidrBlock`, a /28.
- **Autoscaling**: `minNodeCount <= nodeCount <= maxNodeCount`.
- **Registries**: a docker-registry account needs `repositories` listed; one subscription name per project;
  `cacheIntervalSeconds` at least 30, with a warning under 300 for Google's registries (`gcr.io`, `*.pkg.dev`).
- **Ack deadline** 10 to 600 seconds (Pub/Sub's limits); message retention 10 minutes to 7 days.
- **Spinnaker version**: a calendar version (2025.0.0 or later; 2025.0.0 is 1.38.0) or `1.x.y` up to 1.38.
- **IAP** needs `behindGoogleLoadBalancer: true`.

Warnings (exit code stays 0): a Spinnaker version deployed with Halyard after upstream dropped support (2026.1),
a Halyard image from the frozen community registry, a node pool that is not high-memory or smaller than
Spinnaker's documented minimum (18 GB, 6 vCPU), http URLs behind the load balancer, Google's front-end ranges
missing from `trustedProxies`.
"""
    return head + "\n".join(rows) + "\n" + rules


if __name__ == "__main__":
    print(generate(), end="")
