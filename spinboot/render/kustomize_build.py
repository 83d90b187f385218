"""The real kustomize, pinned: build it, run ``kustomize build`` on the rendered tree, validate what it prints.

Why the real binary: the kustomize engine's promise is that a user who runs the same pinned ``kustomize build`` on
``DIR/kustomize`` by hand gets byte for byte the ``DIR/kustomize/rendered.yaml`` spinboot wrote and applies. So
spinboot never re-implements kustomize: it builds ``sigs.k8s.io/kustomize/kustomize/v5`` from the Go module proxy
at the version pinned in ``kustomize.toml`` (``go install MODULE@VERSION``, the install kustomize documents),
with the Go handling the sandbox uses (spinboot/gobuild.py), into a cache outside the checkout::

    ${SPINBOOT_TOOLS_CACHE:-~/.cache/spinboot/tools}/
        kustomize-<version>-<key>/kustomize     the binary + manifest.json; appears atomically, by rename
        kustomize-<version>-<key>.build.log     Go's output of the build
        openapi-<kubernetes version>-r<N>.json  Kubernetes' OpenAPI v3 schemas, merged once from the module
        .<entry>.lock                           serialises concurrent builders

``<key>`` hashes the pins and the recipe, so a pin bump builds once and a warm call only stats a file.
``SPINBOOT_KUSTOMIZE=/path`` (it must report the pinned version) or a ``kustomize`` on PATH that reports it are used
instead of building; the log line says which binary runs.

Validation: ``kustomize build`` checks structure, not the Kubernetes API, so a misspelt field in a user's patch
would reach the API server. ``validate_objects`` checks every built object against the OpenAPI v3 documents of the
pinned Kubernetes release (``api/openapi-spec/v3/*.json`` in the ``k8s.io/kubernetes`` module, which the sandbox
build already downloads) with unknown fields refused, as the API server's strict field validation does, plus the
two GKE CRDs the tree uses (below). An object of any other kind is an error: nothing could check it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

from .. import gobuild
from ..config.problems import redact

PINS_FILE = Path(__file__).with_name("kustomize.toml")
ENV_BINARY = "SPINBOOT_KUSTOMIZE"
ENV_CACHE = "SPINBOOT_TOOLS_CACHE"
# Bump when the build recipe changes (flags), so old caches are not reused.
RECIPE = 1
# Bump when the merged-schema transformation (_strict) changes.
SCHEMA_RECIPE = 1
BUILD_TIMEOUT_SECONDS = 300
ROOT_DIR = "kustomize"
RENDERED = f"{ROOT_DIR}/rendered.yaml"

Log = Callable[[str], None]


class KustomizeError(RuntimeError):
    """kustomize (or the schemas) cannot be had or run: a failure of the machine, not of the file."""


class BuildError(Exception):
    """``kustomize build`` refused the tree; ``files`` are the tree's files its message names."""

    def __init__(self, root: Path, message: str, files: list[str]):
        self.root, self.message, self.files = root, message, files
        where = f" (in {', '.join(files)})" if files else ""
        super().__init__(f"kustomize build {root} failed{where}: {message}")


class InvalidObjects(Exception):
    """The built objects break their schemas; ``problems`` name each object and field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} invalid object field(s): " + "; ".join(problems[:3]))


# --- pins and cache ------------------------------------------------------------------------------------------------

def load_pins(path: Path = PINS_FILE) -> dict:
    with path.open("rb") as f:
        data = tomllib.load(f)
    for table, key in (("go", "toolchain"), ("kustomize", "module"), ("kustomize", "version"),
                       ("kubernetes", "version")):
        if not isinstance(data.get(table, {}).get(key), str):
            raise KustomizeError(f"{path}: [{table}] {key} is missing")
    return data


def tools_cache() -> Path:
    """Outside the checkout; overridable so CI can keep it on a persistent volume."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spinboot" / "tools"


def cache_key(pins: dict) -> str:
    blob = json.dumps({"recipe": RECIPE, "go": pins["go"], "kustomize": pins["kustomize"]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cached_binary(pins: dict | None = None) -> Path:
    """Where the pinned build lives (whether or not it exists yet)."""
    pins = pins or load_pins()
    return tools_cache() / f"kustomize-{pins['kustomize']['version']}-{cache_key(pins)}" / "kustomize"


def reported_version(binary: str | Path) -> str | None:
    """What ``kustomize version`` prints (``v5.8.2``), or None when the file does not run as kustomize. kustomize
    reads its version from the Go build info that ``go install MODULE@VERSION`` records (sigs.k8s.io/kustomize:
    kustomize/commands/version/version.go prints api/provenance/provenance.go's GetProvenance().Semver(), which
    falls back to debug.ReadBuildInfo), so no -X stamping is needed."""
    try:
        proc = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=20,
                              stdin=subprocess.DEVNULL, env=_clean_env(None))
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode:
        return None
    out = proc.stdout.strip()
    # Older builds print "{Version:kustomize/v5.x.y ...}"; keep only the version.
    m = re.search(r"v\d+\.\d+\.\d+\S*", out)
    return m.group(0).rstrip("}") if m else out or None


def kustomize_binary(log: Log | None = None) -> Path:
    """The pinned kustomize: ``$SPINBOOT_KUSTOMIZE``, else one on PATH reporting the pinned version, else the cached
    build (built first if missing; minutes cold, a stat warm)."""
    log = log or gobuild.noop
    pins = load_pins()
    want = pins["kustomize"]["version"]
    override = os.environ.get(ENV_BINARY)
    if override:
        got = reported_version(override)
        if got != want:
            raise KustomizeError(f"{ENV_BINARY}={override} " + (f"reports {got}" if got else "does not run as "
                                 "kustomize") + f", but spinboot is pinned to kustomize {want}: point it at "
                                 f"kustomize {want} or unset it (spinboot then builds its own)")
        log(f"kustomize {want}: {override} (from {ENV_BINARY})")
        return Path(override)
    on_path = shutil.which("kustomize")
    if on_path:
        got = reported_version(on_path)
        if got == want:
            log(f"kustomize {want}: {on_path} (from PATH)")
            return Path(on_path)
        log(f"kustomize on PATH ({on_path}) reports {got or 'nothing'}, not the pinned {want}: not used")
    binary = _ensure_built(pins, log)
    log(f"kustomize {want}: {binary} (spinboot's build)")
    return binary


def _ensure_built(pins: dict, log: Log) -> Path:
    final = cached_binary(pins)
    if final.is_file() and os.access(final, os.X_OK):
        return final
    root = tools_cache()
    root.mkdir(parents=True, exist_ok=True)
    entry = final.parent
    with gobuild.locked(root / f".{entry.name}.lock", log):
        if final.is_file() and os.access(final, os.X_OK):  # another process built it while we waited
            return final
        mod, version, toolchain = pins["kustomize"]["module"], pins["kustomize"]["version"], pins["go"]["toolchain"]
        logfile = root / f"{entry.name}.build.log"
        log(f"building kustomize {version} from the Go module proxy into {entry} (Go output: {logfile})")
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=root))
        try:
            t0 = time.monotonic()
            env = gobuild.go_env(toolchain, tmp) | {"GOBIN": str(tmp / "bin")}
            go = gobuild.find_go()
            with logfile.open("w") as out:
                goversion = gobuild.run([go, "env", "GOVERSION"], tmp, env, out, log, capture=True).strip()
                # -trimpath and no VCS stamping: the binary does not depend on where it was built.
                gobuild.run([go, "install", "-trimpath", "-ldflags=-s -w", f"{mod}@{version}"], tmp, env, out, log)
            built = tmp / "bin" / "kustomize"
            got = reported_version(built)
            if got != version:
                raise KustomizeError(f"the kustomize built from {mod}@{version} reports {got}; see {logfile}")
            secs = round(time.monotonic() - t0, 1)
            (tmp / "bin" / "manifest.json").write_text(json.dumps(
                {"module": mod, "version": version, "go": goversion, "build_seconds": secs}, indent=2) + "\n")
            if entry.exists():  # a partial directory left by a crash
                shutil.rmtree(entry)
            os.rename(tmp / "bin", entry)
            log(f"built kustomize {version} in {secs} s")
        except RuntimeError as exc:
            raise KustomizeError(str(exc)) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# --- build ---------------------------------------------------------------------------------------------------------

def _clean_env(home: Path | None) -> dict[str, str]:
    """Nothing of the caller's environment reaches kustomize (no KUSTOMIZE_PLUGIN_HOME, XDG_CONFIG_HOME, locale),
    so the build depends on the tree alone; HOME is an empty directory."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C", "TZ": "UTC"}
    if home is not None:
        env["HOME"] = str(home)
    return env


def build_tree(root: Path, log: Log | None = None, shown_as: str | None = None) -> str:
    """Exactly what ``kustomize build ROOT`` prints with kustomize's default flags, as a user runs it (defaults in
    kustomize/commands/build/: flagloadrestrictor.go LoadRestrictionsRootOnly, flagenableplugins.go and
    flagenablehelm.go off), run with a clean environment. Raises BuildError with kustomize's own message and the files it names (relative
    to ``shown_as``, the name the user knows the root by, when the build runs in a scratch copy)."""
    root = Path(root).resolve()
    binary = kustomize_binary(log)
    with tempfile.TemporaryDirectory(prefix="spinboot-kustomize-home-") as home:
        try:
            proc = subprocess.run([str(binary), "build", str(root)], cwd=root, capture_output=True,
                                  env=_clean_env(Path(home)), stdin=subprocess.DEVNULL, timeout=BUILD_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired as exc:
            raise KustomizeError(f"kustomize build {root} did not finish in {BUILD_TIMEOUT_SECONDS} s "
                                 "(a remote base that does not answer?)") from exc
    if proc.returncode:
        message = proc.stderr.decode(errors="replace").strip()
        message = redact(message.removeprefix("Error: ").strip() or f"exit {proc.returncode}")
        prefix = f"{shown_as.rstrip('/')}/" if shown_as else ""
        named = sorted({prefix + str(Path(p).resolve().relative_to(root))
                        for p in re.findall(r"(/[^\s'\":]+)", message)
                        if _is_under(Path(p), root) and not Path(p).is_dir()})
        raise BuildError(Path(shown_as) if shown_as else root, message.replace(f"{root}/", prefix), named)
    return proc.stdout.decode()


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError):
        return False
    return path.resolve() != root


def with_rendered(files: dict[str, bytes], log: Log | None = None) -> dict[str, bytes]:
    """``files`` plus ``kustomize/rendered.yaml``: the tree under ``kustomize/`` written to a scratch directory,
    built by the pinned kustomize and validated; MANIFEST.json recomputed. A bundle without a kustomize tree (the
    Halyard engine) comes back unchanged. Raises BuildError or InvalidObjects (the file's fault: exit 2)."""
    import yaml

    from .bundle import MANIFEST, manifest

    tree = {rel: body for rel, body in files.items() if rel.startswith(f"{ROOT_DIR}/") and rel != RENDERED}
    if f"{ROOT_DIR}/kustomization.yaml" not in tree:
        return files
    with tempfile.TemporaryDirectory(prefix="spinboot-kustomize-") as scratch:
        for rel, body in tree.items():
            path = Path(scratch) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        out = build_tree(Path(scratch) / ROOT_DIR, log, shown_as=ROOT_DIR)
    docs = [d for d in yaml.safe_load_all(out) if d is not None]
    problems = validate_objects(docs)
    if problems:
        raise InvalidObjects(problems)
    result = {rel: body for rel, body in files.items() if rel != MANIFEST}
    result[RENDERED] = out.encode()
    result = dict(sorted(result.items()))
    result[MANIFEST] = manifest(result)
    return result


# --- schemas -------------------------------------------------------------------------------------------------------

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_REF = "#/components/schemas/"

# Hand-written, for the GKE kinds the tree uses (no OpenAPI document of GKE's CRDs ships in a module). Fields and
# types from the CRDs' Go types and GKE's documentation:
#  - BackendConfig: kubernetes/ingress-gce pkg/apis/backendconfig/v1/types.go (BackendConfigSpec and the *Config
#    types), documented at https://cloud.google.com/kubernetes-engine/docs/how-to/ingress-configuration
#  - ManagedCertificate: https://cloud.google.com/kubernetes-engine/docs/how-to/managed-certs ("spec.domains": up to
#    100 non-wildcard domains); each domain's syntax and 63-character limit as in the validation schema of
#    GoogleCloudPlatform/gke-managed-certs deploy/managedcertificates-crd.yaml.
_INT = {"type": "integer"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}


def _obj(props: dict, required: tuple[str, ...] = ()) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


def _top(api_version: str, kind: str, spec: dict) -> dict:
    return _obj({"apiVersion": {"const": api_version}, "kind": {"const": kind},
                 "metadata": {"$ref": _REF + OBJECT_META}, "spec": spec, "status": {"type": "object"}},
                ("spec",))


_HEADERS = _obj({"headers": {"type": "array", "items": _STR}})
GKE_SCHEMAS: dict[tuple[str, str], dict] = {
    ("cloud.google.com/v1", "BackendConfig"): _top("cloud.google.com/v1", "BackendConfig", _obj({
        "iap": _obj({"enabled": _BOOL, "oauthclientCredentials": _obj(
            {"secretName": _STR, "clientID": _STR, "clientSecret": _STR}, ("secretName",))}, ("enabled",)),
        "cdn": {"type": "object", "properties": {"enabled": _BOOL}, "required": ["enabled"],
                "additionalProperties": True},  # CDN's many cache knobs are not spinboot's concern
        "securityPolicy": _obj({"name": _STR}, ("name",)),
        "timeoutSec": _INT,
        "connectionDraining": _obj({"drainingTimeoutSec": _INT}),
        "sessionAffinity": _obj({"affinityType": _STR, "affinityCookieTtlSec": _INT}),
        "customRequestHeaders": _HEADERS,
        "customResponseHeaders": _HEADERS,
        "healthCheck": _obj({"checkIntervalSec": _INT, "timeoutSec": _INT, "healthyThreshold": _INT,
                             "unhealthyThreshold": _INT, "type": {"enum": ["HTTP", "HTTPS", "HTTP2"]},
                             "port": {"type": "integer", "minimum": 1, "maximum": 65535}, "requestPath": _STR}),
        "logging": _obj({"enable": _BOOL, "sampleRate": {"type": "number", "minimum": 0, "maximum": 1}}),
    })),
    ("networking.gke.io/v1", "ManagedCertificate"): _top("networking.gke.io/v1", "ManagedCertificate", _obj({
        "domains": {"type": "array", "minItems": 1, "maxItems": 100, "items": {
            "type": "string", "maxLength": 63,
            "pattern": r"^(([a-zA-Z0-9]+|[a-zA-Z0-9][-a-zA-Z0-9]*[a-zA-Z0-9])\.)+[a-zA-Z][-a-zA-Z0-9]*[a-zA-Z0-9]\.?$"}},
    }, ("domains",))),
}

# A Kubernetes quantity (k8s.io/apimachinery/pkg/api/resource/quantity.go, ParseQuantity): a signed decimal number
# and one suffix: binary SI (Ki..Ei), decimal SI (n, u, m, k, M..E) or a decimal exponent. "8GB" is refused there.
QUANTITY_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$"


def _strict(schemas: dict) -> dict:
    """The API server's view, in JSON Schema terms: unknown fields are refused (strict field validation) unless a
    schema preserves them, and quantities must parse."""
    for schema in _walk(schemas):
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    quantity = schemas.get("io.k8s.apimachinery.pkg.api.resource.Quantity")
    if quantity:
        quantity["oneOf"] = [{"type": "string", "pattern": QUANTITY_PATTERN}, {"type": "number"}]
    return schemas


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):  # property names are not schemas
                for sub in value.values():
                    yield from _walk(sub)
            elif key not in ("enum", "default", "example", "x-kubernetes-validations"):
                yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _openapi_file(version: str) -> Path:
    return tools_cache() / f"openapi-{version}-r{SCHEMA_RECIPE}.json"


def _ensure_openapi(pins: dict, log: Log) -> Path:
    """Merge the release's ``api/openapi-spec/v3/*.json`` into one cached file: schemas plus a GVK index."""
    version = pins["kubernetes"]["version"]
    final = _openapi_file(version)
    if final.is_file():
        return final
    root = tools_cache()
    root.mkdir(parents=True, exist_ok=True)
    with gobuild.locked(root / f".{final.name}.lock", log):
        if final.is_file():
            return final
        log(f"reading Kubernetes {version} OpenAPI v3 schemas from the k8s.io/kubernetes module")
        with tempfile.TemporaryDirectory(dir=root, prefix=".tmp-openapi-") as tmp:
            env = gobuild.go_env(pins["go"]["toolchain"], Path(tmp))
            with (root / f"{final.stem}.log").open("w") as out:
                try:
                    info = gobuild.module_download(gobuild.find_go(), f"k8s.io/kubernetes@{version}", env, out,
                                                   Path(tmp), log)
                except RuntimeError as exc:
                    raise KustomizeError(f"cannot download k8s.io/kubernetes@{version}: {exc}") from exc
            spec_dir = Path(info["Dir"]) / "api" / "openapi-spec" / "v3"
            schemas: dict[str, Any] = {}
            for doc in sorted(spec_dir.glob("*.json")):
                schemas.update(json.loads(doc.read_text()).get("components", {}).get("schemas", {}))
            if not schemas:
                raise KustomizeError(f"no OpenAPI v3 schemas in {spec_dir}")
            gvk: dict[str, str] = {}
            for name, schema in sorted(schemas.items()):
                meta = schema.get("properties", {}).get("metadata", {})
                if _REF + OBJECT_META not in json.dumps(meta):
                    continue  # lists, WatchEvent, DeleteOptions...: not objects one applies
                for g in schema.get("x-kubernetes-group-version-kind", []):
                    api_version = f"{g['group']}/{g['version']}" if g["group"] else g["version"]
                    gvk[f"{api_version} {g['kind']}"] = name
            data = {"kubernetes": version, "gvk": gvk, "schemas": _strict(schemas)}
            part = Path(tmp) / "openapi.json"
            part.write_text(json.dumps(data, sort_keys=True))
            os.rename(part, final)
    return final


@functools.lru_cache(maxsize=4)
def _validators(path: Path) -> tuple[dict, dict]:
    """(kind key -> validator, components) for one cached schema file; built once per process."""
    import jsonschema

    data = json.loads(path.read_text())
    components = {"schemas": dict(data["schemas"])}
    keys = dict(data["gvk"])
    for (api_version, kind), schema in GKE_SCHEMAS.items():
        name = f"spinboot.gke.{api_version.replace('/', '.')}.{kind}"
        components["schemas"][name] = _strict({name: json.loads(json.dumps(schema))})[name]
        keys[f"{api_version} {kind}"] = name
    cls = _with_list_keys(jsonschema.Draft202012Validator)
    validators = {key: cls({"$ref": _REF + name, "components": components}) for key, name in keys.items()}
    return validators, components


def _with_list_keys(base):
    """Add the list semantics server-side apply enforces (structured-merge-diff: duplicate entries of a map list or
    a set are refused), e.g. two containers or two env vars of one name."""
    import jsonschema

    def list_map_keys(validator, keys, instance, schema):
        if not validator.is_type(instance, "array") or schema.get("x-kubernetes-list-type") != "map":
            return
        seen: set = set()
        for i, item in enumerate(instance):
            if not isinstance(item, dict):
                continue
            key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
            if key in seen:
                named = ", ".join(f"{k}={item.get(k)!r}" for k in keys if k in item)
                yield jsonschema.ValidationError(f"[{i}]: duplicate entry ({named})")
            seen.add(key)

    def list_type(validator, kind, instance, schema):
        if kind != "set" or not validator.is_type(instance, "array"):
            return
        seen = [json.dumps(x, sort_keys=True) for x in instance]
        for i, item in enumerate(seen):
            if item in seen[:i]:
                yield jsonschema.ValidationError(f"[{i}]: duplicate entry {instance[i]!r}")

    return jsonschema.validators.extend(base, {"x-kubernetes-list-map-keys": list_map_keys,
                                               "x-kubernetes-list-type": list_type})


def _drop_nulls(value: Any) -> Any:
    """The API server decodes a JSON null as an absent field; so does this check."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _describe(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "a document that is not an object"
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = meta.get("name", "<no name>")
    ns = meta.get("namespace")
    return f"{doc.get('kind', '<no kind>')} {ns + '/' if ns else ''}{name} ({doc.get('apiVersion', '<no apiVersion>')})"


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(the object)"


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def _message(err) -> str:
    v, val, inst = err.validator, err.validator_value, err.instance
    if v == "type":
        return f"must be {val if isinstance(val, str) else ' or '.join(val)}, not {_json_type(inst)}"
    if v == "oneOf" and isinstance(val, list):
        if any("pattern" in s for s in val if isinstance(s, dict)) and isinstance(inst, str):
            return f"{inst!r} is not a Kubernetes quantity (e.g. 512Mi, 8Gi, 500m, 2)"
        return f"must be {' or '.join(s.get('type', '?') for s in val if isinstance(s, dict))}, not {_json_type(inst)}"
    if v == "const":
        return f"must be {val!r}"
    if v == "enum":
        return f"{inst!r} is not one of {', '.join(map(repr, val))}"
    if v == "pattern":
        return f"{inst!r} does not match {val}"
    text = err.message
    return text if len(text) <= 200 else text[:197] + "..."


def validate_objects(docs: list[dict], log: Log | None = None) -> list[str]:
    """Schema problems of built objects, one line each naming the object and the field; empty when all are valid.
    Unknown kinds are problems too (nothing could check them)."""
    log = log or gobuild.noop
    validators, _ = _validators(_ensure_openapi(load_pins(), log))
    problems: list[str] = []
    for doc in docs:
        what = _describe(doc)
        if not isinstance(doc, dict):
            problems.append(f"{what}: every document must be a Kubernetes object")
            continue
        key = f"{doc.get('apiVersion')} {doc.get('kind')}"
        validator = validators.get(key)
        if validator is None:
            problems.append(f"{what}: unknown kind {doc.get('kind')!r} of apiVersion {doc.get('apiVersion')!r} "
                            "(allowed: Kubernetes' built-in kinds, BackendConfig and ManagedCertificate)")
            continue
        body = _drop_nulls(doc)
        if not (body.get("metadata") or {}).get("name"):
            problems.append(f"{what}: metadata.name is required")
        for err in sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path]):
            problems.append(redact(f"{what}: {_path(err.absolute_path)}: {_message(err)}"))
    return problems


def main(argv: list[str] | None = None) -> int:
    """``python -m spinboot.render.kustomize_build``: build (or find) the pinned kustomize and the schemas; used by
    ``make sandbox-build`` so CI's cache is warm."""
    import sys

    def log(s: str) -> None:
        print(f"[kustomize] {s}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    try:
        print(kustomize_binary(log))
        print(_ensure_openapi(load_pins(), log))
    except KustomizeError as exc:
        log(f"error: {exc}")
        return 1
    log(f"done in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
