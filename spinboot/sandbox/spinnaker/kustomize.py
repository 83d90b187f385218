"""The startup play's input for a kustomize install: each service's configuration read from its running
Deployment the way the service itself reads it (the Halyard adapter is spinboot/sandbox/hal/profiles.py).

Nothing here comes from spinboot's renderer: only from the live objects in the cluster.

- Files: the container's volume mounts, materialised from the ConfigMaps and Secrets they name (``items`` and
  ``subPath`` honoured) under a private root directory; absolute paths in the properties that point into a mount
  (kubeconfig files, password files) are rewritten to their copies there.
- Spring: Spinnaker's services import ``/opt/spinnaker/config/`` (spinnaker-gradle-project
  SpinnakerApplicationPlugin: ``-Dspring.config.import=optional:/opt/spinnaker/config/``) and read the config names
  ``spinnaker`` and ``<service>`` with the profiles ``test,local`` unless ``SPRING_PROFILES_ACTIVE`` says otherwise
  (kork DefaultPropertiesBuilder: ``spring.config.name: spinnaker,${spring.application.name}``,
  ``spring.profiles.active: ${netflix.environment},local``; spinnaker/spinnaker@spinnaker-release-2026.2.3).
  Profile-specific files override plain ones, later names override earlier ones, maps merge key by key, dotted
  keys equal nested ones and kebab-case equals camelCase (Spring's relaxed binding), ``${a.b:default}``
  placeholders resolve against the merged properties.
- Identity: the pod template's ``serviceAccountName`` (default ``default``), whose Google identity comes from the
  GKE metadata server stand-in (sandboxenv.py) exactly as for the Halyard engine.
- Deck is not a Spring service: its container's ``API_HOST`` is where its web server forwards ``/gate``, and the
  browser's Gate URL is ``gateUrl`` in a mounted ``settings*.js``.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import yaml

from .config import ServiceConfig, SpinnakerConfig, deep_merge, expand_dotted

CONFIG_DIR = "/opt/spinnaker/config"
DEFAULT_PROFILES = ("test", "local")
_PLACEHOLDER = re.compile(r"\$\{([^}:]+)(?::([^}]*))?\}")
_GATE_URL = re.compile(r"""gateUrl\s*[:=]\s*['"]([^'"]+)['"]""")


class AdapterError(Exception):
    """The Deployment's configuration cannot be read as the service would (a missing ConfigMap, bad YAML)."""


def _camel(key: str) -> str:
    parts = key.split("-")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def relaxed(value: Any) -> Any:
    """Spring's relaxed names: ``kubeconfig-file`` and ``kubeconfigFile`` are one property."""
    if isinstance(value, dict):
        return {_camel(str(k)): relaxed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [relaxed(v) for v in value]
    return value


def _lookup(props: dict, dotted: str) -> Any:
    cur: Any = props
    for part in _camel(dotted).split("."):
        part = _camel(part)
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def resolve(value: Any, props: dict, env: dict[str, str], depth: int = 0) -> Any:
    if isinstance(value, dict):
        return {k: resolve(v, props, env, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, props, env, depth) for v in value]
    if not isinstance(value, str) or "${" not in value or depth > 8:
        return value

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        got = _lookup(props, name)
        if got is None:
            got = env.get(name.upper().replace(".", "_").replace("-", ""))
        if got is None:
            return default if default is not None else m.group(0)
        return str(resolve(got, props, env, depth + 1))

    return _PLACEHOLDER.sub(sub, value)


def _source_files(api: Any, namespace: str, volume: dict) -> dict[str, bytes]:
    """key -> bytes of a ConfigMap, Secret or projected volume (``items`` renames and selects keys)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)
    out: dict[str, bytes] = {}

    def one(kind: str, src: dict) -> None:
        name = src.get("name") or src.get("secretName")
        try:
            if kind == "configMap":
                obj = core.read_namespaced_config_map(name, namespace)
                data = {k: v.encode() for k, v in (obj.data or {}).items()}
                data.update({k: base64.b64decode(v) for k, v in (obj.binary_data or {}).items()})
            else:
                obj = core.read_namespaced_secret(name, namespace)
                data = {k: base64.b64decode(v) for k, v in (obj.data or {}).items()}
        except ApiException as exc:
            if exc.status == 404 and src.get("optional"):
                return
            raise AdapterError(f"{kind} {namespace}/{name}: {exc.status} {exc.reason}") from None
        items = src.get("items")
        if items:
            for it in items:
                if it["key"] in data:
                    out[it.get("path") or it["key"]] = data[it["key"]]
                elif not src.get("optional"):
                    raise AdapterError(f"{kind} {namespace}/{name} has no key {it['key']}")
        else:
            out.update(data)

    if volume.get("configMap"):
        one("configMap", volume["configMap"])
    elif volume.get("secret"):
        one("secret", volume["secret"])
    elif volume.get("projected"):
        for s in volume["projected"].get("sources") or []:
            if s.get("configMap"):
                one("configMap", s["configMap"])
            elif s.get("secret"):
                one("secret", s["secret"])
    return out


def materialise(api: Any, namespace: str, pod_spec: dict, container: dict, root: Path) -> dict[str, Path]:
    """Write the container's mounted ConfigMaps and Secrets under ``root`` (mode 0600 files); returns each mount
    path -> its copy."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mounts: dict[str, Path] = {}
    for m in container.get("volumeMounts") or []:
        vol = volumes.get(m["name"]) or {}
        files = _source_files(api, namespace, vol)
        if not files and not any(vol.get(k) for k in ("configMap", "secret", "projected")):
            continue   # emptyDir and the like: nothing to read
        dest = root / m["mountPath"].lstrip("/")
        if m.get("subPath"):
            data = files.get(m["subPath"])
            if data is None:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            dest.write_bytes(data)
            os.chmod(dest, 0o600)
        else:
            dest.mkdir(parents=True, exist_ok=True, mode=0o700)
            for name, data in files.items():
                (dest / name).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                (dest / name).write_bytes(data)
                os.chmod(dest / name, 0o600)
        mounts[m["mountPath"].rstrip("/") or "/"] = dest
    return mounts


def _container_env(container: dict) -> dict[str, str]:
    return {e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "value" in e}


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AdapterError(f"{path.name}: not YAML the service can read: {exc}") from None
    return data if isinstance(data, dict) else {}


def _rewrite_paths(value: Any, mounts: dict[str, Path]) -> Any:
    if isinstance(value, dict):
        return {k: _rewrite_paths(v, mounts) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_paths(v, mounts) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        for mount, copy in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if value == mount or value.startswith(mount.rstrip("/") + "/"):
                return str(copy) + value[len(mount):]
    return value


def spring_properties(service: str, config_dirs: list[Path], env: dict[str, str]) -> dict:
    """What Spring gives the service from ``config_dirs`` (see the module docstring for the rules)."""
    profiles = [p.strip() for p in (env.get("SPRING_PROFILES_ACTIVE") or ",".join(DEFAULT_PROFILES)).split(",")
                if p.strip()]
    merged: dict = {}
    for profile in [None] + profiles:
        for name in ("spinnaker", service):
            for d in config_dirs:
                fname = f"{name}.yml" if profile is None else f"{name}-{profile}.yml"
                merged = deep_merge(merged, relaxed(expand_dotted(_read_yaml(d / fname))))
    return resolve(merged, merged, env)


def service_config(api: Any, deployment: dict, root: Path) -> ServiceConfig:
    """The ServiceConfig of the service a Spinnaker Deployment runs; files are copied under ``root``."""
    meta = deployment["metadata"]
    ns = meta["namespace"]
    labels = meta.get("labels") or {}
    service = labels.get("app.kubernetes.io/component") or labels.get("app.kubernetes.io/name") or \
        meta["name"].removeprefix("spin-")
    pod_spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = pod_spec.get("containers") or []
    container = next((c for c in containers if c.get("name") == service), containers[0] if containers else {})
    mounts = materialise(api, ns, pod_spec, container, root)
    env = _container_env(container)
    ksa = pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount") or "default"
    if service == "deck":
        gate_url = ""
        for copy in mounts.values():
            for js in sorted(copy.glob("settings*.js")) if copy.is_dir() else []:
                m = _GATE_URL.search(js.read_text(errors="replace"))
                gate_url = m.group(1) if m else gate_url
        return ServiceConfig("deck", {"deck": {"gateUrl": gate_url,
                                               "apiHost": env.get("API_HOST", "http://localhost:8084")}}, ksa)
    dirs = [mounts[m] for m in sorted(mounts) if m == CONFIG_DIR or m.rstrip("/").endswith("/.spinnaker")]
    for var in ("SPRING_CONFIG_ADDITIONAL_LOCATION", "SPRING_CONFIG_IMPORT", "SPRING_CONFIG_LOCATION"):
        for loc in (env.get(var) or "").split(","):
            loc = loc.strip().removeprefix("optional:").removeprefix("file:").rstrip("/")
            if loc in mounts and mounts[loc] not in dirs:
                dirs.append(mounts[loc])
    props = _rewrite_paths(spring_properties(service, dirs, env), mounts)
    return ServiceConfig(service, props, ksa)


def spinnaker_config(api: Any, deployment: dict, root: Path) -> SpinnakerConfig:
    """A one-service SpinnakerConfig for the play (files resolve under ``root``)."""
    svc = service_config(api, deployment, root)
    return SpinnakerConfig(namespace=deployment["metadata"]["namespace"], services={svc.name: svc}, files_dir=root)
