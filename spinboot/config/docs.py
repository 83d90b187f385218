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
from .problems import ACKNOWLEDGEABLE, UNACKNOWLEDGEABLE, WARNINGS


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


def _is_dict(annotation) -> bool:
    """A mapping of user-chosen keys to models (spinnaker.sizing.<service>), whose rows read KEY.<key>.field."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return typing.get_origin(annotation) is dict


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
            _rows(sub, shown + (".<name>." if _is_dict(field.annotation) else "."), out, seen)


def generate() -> str:
    rows: list[str] = []
    _rows(SpinbootConfig, "", rows, set())
    head = """# spinboot.yaml reference

Generated from the schema by `make docs`; do not edit by hand. Keys are camelCase. Unknown keys are errors
(with a "did you mean"), so a typo never passes silently. `spinboot schema` prints the same as JSON Schema for
editors (for yaml-language-server: `# yaml-language-server: $schema=spinboot.schema.json` after
`spinboot schema > spinboot.schema.json`).

Every problem is reported at once as `FILE:LINE:COL: field.path: what is wrong (what is allowed)`, exit code 2,
and nothing is touched or written: the shape of the file (types, unknown keys, single-field rules) and the rules
across fields, which still run on every part of the file whose own shape is right (the cluster, Spinnaker's
settings, each target, each registry). At most 100 problems are listed, then how many more there are.

| key | type | default | meaning |
|---|---|---|---|
"""
    rules = """
## Rules across fields

- **Names** follow Google's and Kubernetes' rules: GKE cluster and node pool names `[a-z]([-a-z0-9]*[a-z0-9])?`
  up to 40 characters; project IDs 6-30 characters; bucket names as in Cloud Storage (no `goog` prefix, no
  `google` or close misspellings such as `g00gle`); service-account IDs 6-30 characters; Pub/Sub IDs 3-255
  characters; namespaces as DNS labels.
- **Labels** as GCP takes them: at most 63 (a resource has 64 and spinboot sets `managed-by: spinboot`), keys
  starting with a lowercase letter or international character, keys and values up to 63 lowercase letters,
  international characters, digits, `_` and `-`, each under 128 bytes; `managed-by` and `goog-*` keys are refused.
- **Addresses**: CIDR blocks written as `ADDRESS/PREFIX`, IPv4, no host bits set; at most 50 authorized networks
  on a public cluster and 100 with `privateNodes` (GKE's limits). URLs are `http(s)://host[:port][/path]` with a
  lowercase DNS host (an internationalized name in its ASCII `xn--` form; the message gives it), a port 1-65535 and
  a path of unreserved characters and `%XX` escapes. A registry `address` is `HOST[:PORT]` without scheme or path.
- **Images** follow the Docker reference grammar with the registry written out and a tag or digest
  (`ghcr.io/spinnaker/halyard:2026.2.3`, `REGISTRY/PATH@sha256:...`); repository paths likewise.
- **Flags**: no value that reaches a `hal` flag in configure.sh can start with `-` (bucket location and root
  folder included), so no value reads as a flag.
- **Account names** are unique across `targets`, `registries` and `spinnaker.deployAccount`: clouddriver keeps
  one name space for all providers' accounts. Artifact account names are unique among themselves.
- **Namespaces**: each once per target; system namespaces (`kube-*`, which Kubernetes reserves, `gke-*` and
  `gmp-*`) are refused unless the target sets `dangerouslyAllowSystemNamespaces: true`, and then every command that
  reads the file warns about each one (`system-namespace`, which cannot be acknowledged). The service account's own
  namespace can never be a system namespace.
- **One target per cluster** (same GKE reference or kubeconfig context twice is an error).
- **Private nodes** need `cluster.masterIpv4CidrBlock`, a /28.
- **Autoscaling**: `minNodeCount <= nodeCount <= maxNodeCount`.
- **Registries**: a docker-registry account needs `repositories` listed; one subscription name per project;
  `cacheIntervalSeconds` at least 30, with a warning under 300 for Google's registries (`gcr.io`, `*.pkg.dev`).
- **Ack deadline** 10 to 600 seconds (Pub/Sub's limits); message retention 10 minutes to 7 days.
- **Spinnaker version**: a calendar version (2025.0.0 or later; 2025.0.0 is 1.38.0) or `1.x.y` up to 1.38,
  without a `v` or leading zeros (`2026.02.3` names no release).
- **IAP** needs `behindGoogleLoadBalancer: true`.
- **Engine** (docs/engines.md): unset means kustomize from 2026.1.0, halyard before. kustomize needs 2026.1.0 or
  later (its images are `ghcr.io/spinnaker/<service>:<version>`); `redis`, `services`, `sizing`, `kustomize` and
  `exposure.ingress` are read by the kustomize engine only and refused with halyard. The release guardrails
  (releases/guardrails.yaml) refuse the halyard engine from 2027.0.0, and on 2026.3 without `halyard.image`;
  front50's GCS storage warns from 2026.3 and is refused from 2027.1.0.
- **Services**: `fiat: true` needs `exposure.iap` (without authentication fiat lets nobody use an account);
  `sizing` names a running service, and clouddriver in `sizing` or in `clouddriver.sizing`, not both.
- **Redis URL**: `redis://HOST:PORT` or `rediss://HOST:PORT`, no user or password.
- **Ingress** needs `behindGoogleLoadBalancer: true` and DNS host names in `uiUrl`/`apiUrl` without a port;
  `https://` with `managedCertificate: true`.
- **Customizations**: a directory relative to spinboot.yaml that holds a `kustomization.yaml`.

## YAML that does not mean what it looks like

spinboot reads YAML 1.1, as Kubernetes does, and refuses a plain value whose meaning YAML would change silently,
saying how YAML read it: `010` (the octal number 8), `10:00` (600, in base 60), `08` (text, not a number), and,
where text is meant, `no`/`yes`/`on`/`off` (booleans), `1.30` (the number 1.3), `2026-02-03` (a date) and an empty
value, `~` or `null` (nothing). Quote the value to keep it as written: `namespaces: ["no"]`, `version: "1.30"`.

## Credentials and size

A value (or key) that looks like a credential (a GitHub token `ghp_...`, a Google access token `ya29....`, a
private key, a JSON Web Token, an API key) is an error wherever it is: spinboot.yaml holds no credentials. It is
never echoed back, in text or JSON; every message and event spinboot prints is redacted the same way.

A file is at most 256 KiB, 10 000 values (YAML aliases expanded) and 64 levels deep, so that a pathological file is
refused in a fraction of a second. Lists are bounded as well: 200 targets, 500 namespaces per target, 100
registries, 500 repositories per registry, 64 trusted proxies, 100 artifact accounts of each kind.
"""
    warnings = ["", "## Warnings", "",
                "A warning does not change the exit code. Each has a code, printed at the end of the warning\n"
                "(`FILE:LINE:COL: warning: path: message [code]`, and `code` in the JSON `problem` event). A known\n"
                "warning can be acknowledged in the file, so CI logs show only what is new; `validate` still counts\n"
                "acknowledged warnings:",
                "", "```yaml", "acknowledge:", "  - halyard-unsupported   # the move to kustomize is planned", "```", "",
                "| code | warns about |", "|---|---|"]
    for code, what in WARNINGS.items():
        note = " Cannot be acknowledged." if code in UNACKNOWLEDGEABLE else ""
        warnings.append(f"| `{code}` | {what}.{note} |")
    assert set(ACKNOWLEDGEABLE) | set(UNACKNOWLEDGEABLE) == set(WARNINGS)
    return head + "\n".join(rows) + "\n" + rules + "\n".join(warnings) + "\n"


if __name__ == "__main__":
    print(generate(), end="")
