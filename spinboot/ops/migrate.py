"""``spinboot migrate``: a Halyard-engine install moved to the kustomize engine on the same cluster and bucket.

Three parts (docs/migration.md is the runbook):

- **Inventory** (``inventory``): ``hal backup create`` in the Halyard pod (ops/backup.py; kubeconfigs stripped before
  anything else reads the tar) plus the live ``spin-*`` objects. It says what spinboot.yaml covers, carries the
  profile keys and service settings spinboot did not write (``carry``: a kustomize Component the overlay picks up
  through ``spinnaker.kustomize.customizations``), and lists what cannot move by itself.
- **Cutover** (``cutover``): four steps, each recorded in the ConfigMap ``spinboot-migrate`` in Halyard's namespace
  once done, so a killed run resumes at the first step not recorded:
  ``stack-up`` (the kustomize stack beside Halyard's, echo/igor/orca and keel at 0 replicas),
  ``halyard-down`` (every Halyard ``spin-*`` Deployment at 0, replicas remembered first, until their pods are gone),
  ``consumers-up`` (the full build applied: the consumers at their sizes),
  ``exposure`` (each Halyard ``spin-<svc>`` Service now selects the new ``<svc>`` pods, so whatever users and
  callers reach, an Ingress, a LoadBalancer, ``spin-gate:8084`` in the cluster, lands on the new stack).
  No two consumers of one kind ever run at once: the old ones are gone before the new ones start.
- **Rollback** and **finish**: rollback does it backwards (new consumers to 0 first, Services back, Halyard's
  replicas back, the rest of the new stack to 0); finish (after a soak) deletes Halyard's ``spin-*`` Deployments,
  the Services nobody routes to, and the Halyard StatefulSet, keeping the bucket.

All three writing operations hold the Spinnaker cluster's lock (kube/lock.py) in Halyard's namespace (where the
Halyard step takes it) and in Spinnaker's (where the kustomize step takes it), in that order, so neither engine's
apply runs during a migration.

Halyard facts relied on (spinnaker/halyard, halyard-config .../config/model/v1/node/ and halyard-deploy):
``deploymentEnvironment.haServices.{clouddriver,echo}.enabled`` (DeploymentEnvironment.java, HaServices);
``spinnaker.extensibility.{plugins,repositories}`` (Spinnaker.java, Extensibility.java); the per-service
``sidecars``, ``initContainers``, ``hostAliases``, ``affinity``, ``tolerations``, ``nodeSelectors`` of
deploymentEnvironment (DeploymentEnvironment.java); ``encrypted:<engine>!k:v!...`` secret references that Halyard
decrypts when it writes profiles (halyard-core .../secrets/v1/SecretSessionManager.java; the format is kork's
EncryptedSecret); profiles in ``<deployment>/profiles`` and service settings in ``<deployment>/service-settings``
(HalconfigDirectoryStructure.java); service settings ``env`` and ``kubernetes.*`` (ServiceSettings.java,
KubernetesSettings.java). Spring reads ``spinnaker.yml``, ``<svc>.yml`` and their ``-local`` variants from
/opt/spinnaker/config (render/kustomize/facts.py CONFIG_DIR), profile-specific files over plain ones.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..changes import Change, happened
from ..config.model import SpinbootConfig
from ..config.problems import secret_kind
from ..kube import kustomize_apply as ka
from ..kube.halyard import KUBECONFIG_SECRET, STATE_CONFIGMAP as HALYARD_STATE, wait_rollout as halyard_rollout
from ..kube.lock import LeaseLock
from ..kube.resources import Kube
from ..kube.targets import read_record, record_manifest, target_record
from ..render.halyard import halyard_manifests
from ..render.kustomize.facts import SERVICES
from ..render.kustomize.labels import COMPONENT, INSTALL_LABEL
from . import backup as ops_backup

STATE = "spinboot-migrate"
STEPS = ("stack-up", "halyard-down", "consumers-up", "exposure")
# What consumes work shared by both stacks (the bucket, the Pub/Sub subscriptions, the target clusters): echo
# (Pub/Sub, cron triggers), igor (CI and registry polling), orca (runs the stages), keel (its resource checks).
CONSUMERS = ("echo", "igor", "orca", "keel")
HALYARD_SELECTOR = "app=spin"           # Halyard's labels on every spin-* object (KubernetesV2Service)
FIELD_MANAGER = "spinboot-migrate"
POD_GONE_SECONDS = 600
CARRIED_MARK = ".spinboot-migrated"     # in a directory migrate wrote, so it may write it again
_SECRET_KEY = re.compile(r"(password|passwd|secret|token|credential|private.?key|api.?key|client.?key)", re.I)
_ENCRYPTED = ("encrypted:", "encryptedFile:")

Progress = Callable[[str], None]


class MigrateError(Exception):
    """The migration cannot go on; the message says why and what to do."""


class MigrateInputError(MigrateError):
    """Bad input (exit 2): the file or the flags ask for something this install cannot do."""


def _noop(*_a, **_k) -> None:
    pass


# --- state ----------------------------------------------------------------------------------------------------------

def read_state(kube: Kube, cfg: SpinbootConfig) -> dict:
    cm = kube.get(f"/api/v1/namespaces/{cfg.spinnaker.halyard.namespace}/configmaps/{STATE}") or {}
    return {k: json.loads(v) for k, v in (cm.get("data") or {}).items()}


def write_state(kube: Kube, cfg: SpinbootConfig, state: dict) -> None:
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": STATE, "namespace": cfg.spinnaker.halyard.namespace,
                             "labels": {"app.kubernetes.io/managed-by": "spinboot"}},
                "data": {k: json.dumps(v, sort_keys=True) for k, v in sorted(state.items())}})


def _done(state: dict) -> list[str]:
    return list(state.get("steps") or [])


# --- inventory ------------------------------------------------------------------------------------------------------

@dataclass
class Item:
    what: str
    status: str        # covered, differs, carried, manual, blocking
    detail: str = ""

    def as_event(self) -> dict:
        return {"what": self.what, "status": self.status, "detail": self.detail}


@dataclass
class Carried:
    """One file of the Component migrate writes: ``path`` inside it, its text, and what it carries."""
    path: str
    text: str
    service: str
    key: str = ""          # the ConfigMap key it becomes (profiles); "" for a Deployment patch
    env: tuple[str, ...] = ()


@dataclass
class Inventory:
    deployment: str = "default"
    items: list[Item] = field(default_factory=list)
    carried: list[Carried] = field(default_factory=list)
    halyard: dict[str, int] = field(default_factory=dict)     # spin-* Deployment -> replicas (live)

    def add(self, what: str, status: str, detail: str = "") -> None:
        self.items.append(Item(what, status, detail))

    @property
    def blocking(self) -> list[Item]:
        return [i for i in self.items if i.status == "blocking"]


def _tar_members(tar: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return {m.name.removeprefix("./"): t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def _walk_values(obj: Any, path: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_values(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk_values(v, f"{path}[{i}]")
    else:
        yield path, obj


_SAME = object()


def extra(live: Any, written: Any) -> Any:
    """What ``live`` holds that ``written`` (what spinboot wrote) does not: keys added or changed by hand."""
    if isinstance(live, dict) and isinstance(written, dict):
        out = {}
        for k, v in live.items():
            d = v if k not in written else extra(v, written[k])
            if d is not _SAME:
                out[k] = d
        return out or _SAME
    return _SAME if live == written else live


def _split_secrets(doc: Any, where: str, inv: Inventory, path: str = "") -> Any:
    """``doc`` without values that look like credentials (they must not land in a reviewable file); each one
    removed, and each ``encrypted:`` reference kept, is listed for the operator as ``where: key.path`` only."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(v, str) and v.startswith(_ENCRYPTED):
                inv.add(f"{where}: {sub}", "manual", "an encrypted: secret reference (Halyard decrypted these): the "
                        "new service's identity must be able to read that secret store, or move it to a Secret")
                out[k] = v
            elif isinstance(v, str) and v and (_SECRET_KEY.search(str(k)) or secret_kind(v)):
                inv.add(f"{where}: {sub}", "manual", "holds a credential: not carried (a reviewable file must not "
                        "hold it); put it in a Kubernetes Secret and mount it through your customizations")
            else:
                out[k] = _split_secrets(v, where, inv, sub)
        return {k: v for k, v in out.items() if v != {}}
    if isinstance(doc, list):
        return [_split_secrets(v, where, inv, f"{path}[{i}]") for i, v in enumerate(doc)]
    return doc


def _yaml_or_none(body: bytes) -> Any:
    try:
        return yaml.safe_load(body)
    except yaml.YAMLError:
        return None


def inventory(cfg: SpinbootConfig, tar: bytes, live_deployments: list[dict]) -> Inventory:
    """What the live Halyard install holds against what spinboot.yaml (kustomize engine) will run. Pure: ``tar`` is
    a ``hal backup create`` already stripped of kubeconfigs, ``live_deployments`` the spin-* Deployments."""
    files = _tar_members(tar)
    hal = yaml.safe_load(files.get("config", b"")) or {}
    name = hal.get("currentDeployment") or "default"
    dep = next((d for d in hal.get("deploymentConfigurations") or [] if d.get("name") == name), {}) or {}
    inv = Inventory(deployment=name)
    inv.halyard = {d["metadata"]["name"]: int((d.get("spec") or {}).get("replicas", 1)) for d in live_deployments}
    s = cfg.spinnaker
    running = set(s.enabled_services)

    # What spinboot.yaml covers.
    version = str(dep.get("version") or "")
    inv.add("version", "covered" if version == s.version else "differs",
            f"Halyard runs {version or '(none)'}, spinboot.yaml says {s.version}")
    bucket = (((dep.get("persistentStorage") or {}).get("gcs") or {}).get("bucket")) or ""
    if bucket == s.storage.bucket:
        inv.add("storage", "covered", f"front50 keeps gs://{bucket}")
    else:
        inv.add("storage", "blocking", f"Halyard's front50 uses gs://{bucket or '(none)'} but spinboot.yaml says "
                f"gs://{s.storage.bucket}: a migration keeps the bucket (set spinnaker.storage.bucket to it)")
    providers = dep.get("providers") or {}
    k8s = {a.get("name") for a in (providers.get("kubernetes") or {}).get("accounts") or []}
    want = {t.name for t in cfg.targets} | {s.deploy_account}
    for a in sorted(k8s & want):
        inv.add(f"kubernetes account {a}", "covered")
    for a in sorted(k8s - want):
        inv.add(f"kubernetes account {a}", "manual", "in Halyard but not in spinboot.yaml: add it as a target, "
                "or it is gone after the cutover")
    regs = {a.get("name") for a in (providers.get("dockerRegistry") or {}).get("accounts") or []}
    for a in sorted(regs):
        inv.add(f"docker-registry account {a}", "covered" if a in {r.name for r in cfg.registries} else "manual",
                "" if a in {r.name for r in cfg.registries} else "not in spinboot.yaml's registries")
    subs = {x.get("name") for x in ((dep.get("pubsub") or {}).get("google") or {}).get("subscriptions") or []}
    for x in sorted(subs):
        ok = x in {r.name for r in cfg.registries}
        inv.add(f"pubsub subscription {x}", "covered" if ok else "manual", "" if ok else "not in spinboot.yaml")

    # Gate's URL: callers keep working only if its path stays.
    sec = dep.get("security") or {}
    old_api = (sec.get("apiSecurity") or {}).get("overrideBaseUrl") or ""
    if old_api:
        from urllib.parse import urlsplit
        same = urlsplit(old_api).path.rstrip("/") == urlsplit(s.exposure.api_url).path.rstrip("/")
        inv.add("Gate URL", "covered" if same else "manual",
                f"{old_api} -> {s.exposure.api_url}" + ("" if same else ": the path changes, so the spin CLI, "
                                                        "webhooks and API callers must be updated"))
    inv.add("in-cluster callers of spin-* Services", "manual",
            "the cutover points spin-<svc> Services at the new pods; callers using spin-gate:8084, spin-echo:8089 "
            "(webhooks) and the like must move to <svc> before --finish, which deletes the spin-* Services no "
            "Ingress routes to")
    iap_live = any("iap" in str(k).lower() for k, _ in _walk_values(
        _yaml_or_none(files.get(f"{name}/profiles/gate-local.yml", b"")) or {}))
    if iap_live or s.exposure.iap:
        inv.add("IAP audience", "manual",
                "the kustomize engine's Ingress makes a new backend service, so IAP's audience "
                "(/projects/NUMBER/global/backendServices/ID) changes: set spinnaker.exposure.iap.audience to the new "
                "backend's once it exists, and re-apply")
    for path, v in _walk_values(hal):
        if isinstance(v, str) and v.startswith(_ENCRYPTED):
            inv.add(f"halconfig {path}", "manual", "an encrypted: secret Halyard decrypted into a profile: "
                    "spinboot.yaml has no place for it; provide it through a Secret in your customizations")
    env = dep.get("deploymentEnvironment") or {}
    ha = [svc for svc, v in (env.get("haServices") or {}).items() if isinstance(v, dict) and v.get("enabled")]
    if ha:
        inv.add("HA services", "manual", f"deploymentEnvironment.haServices: {', '.join(sorted(ha))} split into "
                "roles (e.g. clouddriver-ro/rw/caching, echo-scheduler/worker); the kustomize engine runs one "
                "Deployment per service: size it with spinnaker.sizing, or add role Deployments as customizations")
    ext = (dep.get("spinnaker") or {}).get("extensibility") or {}
    if ext.get("plugins") or ext.get("repositories"):
        inv.add("plugins", "manual", f"spinnaker.extensibility: {len(ext.get('plugins') or {})} plugin(s), "
                f"{len(ext.get('repositories') or {})} repository(ies): add spinnaker.extensibility to the services' "
                "config through customizations")
    for key in ("sidecars", "initContainers", "hostAliases", "affinity", "tolerations", "nodeSelectors"):
        if env.get(key):
            inv.add(f"deploymentEnvironment.{key}", "manual",
                    f"for {', '.join(sorted(env[key]))}: write them as Deployment patches in your customizations")
    for k in ("authn", "authz"):
        if (sec.get(k) or {}).get("enabled"):
            inv.add(f"security.{k}", "manual", "spinboot.yaml configures IAP only: carry the rest as a profile")
    inv.add("Redis data", "manual", "executions and queues in Halyard's Redis (spin-redis) do not move to the new "
            "stack's Redis: let running pipelines finish before the cutover")

    _carry_profiles(inv, files, name, running)
    _carry_settings(inv, files, name, running)
    return inv


def _carry_profiles(inv: Inventory, files: dict[str, bytes], dep: str, running: set[str]) -> None:
    """Profiles spinboot did not write, or keys added to one it wrote. ``<svc>-local.yml`` keys become
    ``<svc>.yml`` in that service's ConfigMap (read below spinboot's own ``<svc>-local.yml``, so spinboot.yaml wins
    where both set a key); ``spinnaker-local.yml`` goes to every Java service as it is."""
    prefix, written_prefix = f"{dep}/profiles/", "spinboot/bundle/profiles/"
    java = sorted(r for r in running if r != "deck")
    for member in sorted(m for m in files if m.startswith(prefix)):
        fname = member[len(prefix):]
        body, written = files[member], files.get(written_prefix + fname)
        if written == body:
            inv.add(f"profile {fname}", "covered", "written by spinboot: the kustomize engine renders it from "
                                                   "spinboot.yaml")
            continue
        if not fname.endswith((".yml", ".yaml")):
            inv.add(f"profile {fname}", "manual", "not YAML: merge it by hand into a customization")
            continue
        parsed = _yaml_or_none(body)
        if not isinstance(parsed, dict):
            inv.add(f"profile {fname}", "manual", "not a YAML map (Spring could not read it either): fix it, then "
                    "carry it by hand")
            continue
        doc = extra(parsed, _yaml_or_none(written or b"") or {})
        if doc is _SAME or not doc:
            inv.add(f"profile {fname}", "covered")
            continue
        stem = fname.rsplit(".", 1)[0]
        if stem == "spinnaker-local":
            targets, key = java, "spinnaker-local.yml"
        elif stem.endswith("-local") and stem.removesuffix("-local") in running:
            targets, key = [stem.removesuffix("-local")], f"{stem.removesuffix('-local')}.yml"
        else:
            inv.add(f"profile {fname}", "manual", "for a service the kustomize engine does not run, or a name it "
                                                  "does not read")
            continue
        doc = _split_secrets(doc, f"profile {fname}", inv)
        text = (f"# Carried by spinboot migrate from Halyard's {fname} (keys spinboot did not write).\n"
                + yaml.safe_dump(doc, sort_keys=True))
        for svc in targets:
            inv.carried.append(Carried(f"{svc}/{key}", text, svc, key=key))
        inv.add(f"profile {fname}", "carried", f"as {key} in {', '.join(targets)}'s config")


def _carry_settings(inv: Inventory, files: dict[str, bytes], dep: str, running: set[str]) -> None:
    """Service settings spinboot did not write: ``env`` becomes a Deployment patch; anything else is listed."""
    prefix, written_prefix = f"{dep}/service-settings/", "spinboot/bundle/service-settings/"
    for member in sorted(m for m in files if m.startswith(prefix)):
        fname = member[len(prefix):]
        svc = fname.rsplit(".", 1)[0]
        if not isinstance(_yaml_or_none(files[member]) or {}, dict):
            inv.add(f"service-settings {fname}", "manual", "not a YAML map: fix it, then carry it by hand")
            continue
        doc = extra(_yaml_or_none(files[member]) or {}, _yaml_or_none(files.get(written_prefix + fname) or b"") or {})
        if doc is _SAME or not doc:
            inv.add(f"service-settings {fname}", "covered")
            continue
        if svc not in running:
            inv.add(f"service-settings {fname}", "manual", "for a service the kustomize engine does not run")
            continue
        env = {k: str(v) for k, v in (doc.pop("env", None) or {}).items()}
        if env:
            safe = _split_secrets(env, f"service-settings {fname}: env", inv)
            safe = {k: v for k, v in safe.items() if not str(v).startswith(_ENCRYPTED)}
            if safe:
                patch = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": svc},
                         "spec": {"template": {"spec": {"containers": [
                             {"name": svc, "env": [{"name": k, "value": v} for k, v in sorted(safe.items())]}]}}}}
                inv.carried.append(Carried(f"{svc}/deployment-env.yaml",
                                           f"# Carried by spinboot migrate from Halyard's service-settings/{fname} "
                                           "(env).\n" + yaml.safe_dump(patch, sort_keys=False), svc,
                                           env=tuple(sorted(safe))))
                inv.add(f"service-settings {fname}: env", "carried", f"{', '.join(sorted(safe))} on {svc}")
        rest = [p for p, _ in _walk_values(doc)]
        if rest:
            inv.add(f"service-settings {fname}", "manual", f"{', '.join(rest[:8])}: Halyard deploy settings the "
                    "kustomize engine does not read; write them as Deployment patches in your customizations")


# --- the carried Component ------------------------------------------------------------------------------------------

@dataclass
class CarryPlan:
    directory: Path
    instruction: str = ""      # what the operator must still do for the overlay to pick it up ("" if nothing)


def carry_dir(cfg: SpinbootConfig, config_path: Path, out: Path | None) -> CarryPlan:
    """Where the carried Component goes. The customizations directory itself when it is empty (or holds only an
    earlier migrate output): the overlay then uses it at once. Otherwise a ``halyard-migrated`` directory the
    operator references (the message says how)."""
    custom = cfg.spinnaker.kustomize.customizations
    base = config_path.resolve().parent
    if out is not None:
        return CarryPlan(out, f"reference {out} from your customizations (a kustomize Component)")
    if custom:
        c = Path(custom) if Path(custom).is_absolute() else base / custom
        existing = [p for p in c.rglob("*") if p.is_file()] if c.is_dir() else []
        if not existing or (c / CARRIED_MARK).is_file():
            return CarryPlan(c)
        return CarryPlan(c / "halyard-migrated", f"add `components: [halyard-migrated]` to {c}/kustomization.yaml "
                         "(a kustomize Component; create it if there is none, listing your patches there)")
    d = base / "halyard-migrated"
    return CarryPlan(d, f"set spinnaker.kustomize.customizations: halyard-migrated in {config_path}")


def write_carried(plan: CarryPlan, carried: list[Carried]) -> list[str]:
    """Write the Component (kustomization.yaml, the profile files, the env patches); returns the files written.
    A file that exists is never overwritten: once written it is the operator's to review and edit (a resumed run
    must not undo that), and one deleted with its kustomization entry is deliberately not carried."""
    d = plan.directory
    d.mkdir(parents=True, exist_ok=True)
    if (d / CARRIED_MARK).is_file():
        return []
    gens: dict[str, list[str]] = {}
    patches = []
    written = []
    for c in carried:
        p = d / c.path
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            p.write_text(c.text)
            written.append(str(p))
        if c.key:
            gens.setdefault(c.service, []).append(f"{c.key}={c.path}")
        else:
            patches.append({"path": c.path})
    kust: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component"}
    if gens:   # merged into the base's generated <svc>-config (render/kustomize manifests.config_map_name)
        kust["configMapGenerator"] = [{"name": f"{svc}-config", "behavior": "merge", "files": sorted(files)}
                                      for svc, files in sorted(gens.items())]
    if patches:
        kust["patches"] = patches
    if not (d / "kustomization.yaml").exists():
        (d / "kustomization.yaml").write_text("# Written by spinboot migrate: what Halyard held that spinboot.yaml "
                                              "does not say. Review it.\n" + yaml.safe_dump(kust, sort_keys=False))
        written.append(str(d / "kustomization.yaml"))
    (d / CARRIED_MARK).write_text("spinboot migrate wrote this directory; it no longer writes into it\n")
    return written


def missing_from_build(built: list[dict], carried: list[Carried], directory: Path | None = None) -> list[str]:
    """Carried content the build does not hold yet (the overlay does not reference the Component). With
    ``directory``, items whose file the operator deleted from it are not asked for."""
    if directory is not None and (directory / CARRIED_MARK).is_file():
        carried = [c for c in carried if (directory / c.path).is_file()]
    maps = {}
    for o in built:
        if o.get("kind") == "ConfigMap":
            svc = ((o["metadata"].get("labels") or {}).get(COMPONENT))
            maps.setdefault(svc, set()).update((o.get("data") or {}).keys())
    envs = {}
    for o in built:
        if o.get("kind") == "Deployment":
            for c in o["spec"]["template"]["spec"].get("containers") or []:
                envs.setdefault(ka.service_of(o), set()).update(e["name"] for e in c.get("env") or [])
    out = []
    for c in carried:
        if c.key and c.key not in maps.get(c.service, set()):
            out.append(f"{c.key} in {c.service}-config")
        for e in c.env:
            if e not in envs.get(c.service, set()):
                out.append(f"env {e} on {c.service}")
    return out


# --- reading the live install ---------------------------------------------------------------------------------------

def halyard_deployments(kube: Kube, cfg: SpinbootConfig) -> list[dict]:
    return kube.list("apps/v1", "Deployment", cfg.spinnaker.namespace, labels=HALYARD_SELECTOR)


def read_install(kube: Kube, cfg: SpinbootConfig, progress: Progress = _noop) -> Inventory:
    """``hal backup create`` in the Halyard pod, kubeconfigs stripped at once (their tokens never reach the
    inventory), then ``inventory``."""
    live = halyard_deployments(kube, cfg)
    if not live:
        raise MigrateError(f"no Halyard install in namespace {cfg.spinnaker.namespace} (no Deployments labelled "
                           f"{HALYARD_SELECTOR}): nothing to migrate")
    progress("hal backup create in the Halyard pod (read-only for the install)")
    tar = ops_backup.strip_kubeconfigs(ops_backup.hal_backup_create(kube, cfg)).tar
    return inventory(cfg, tar, live)


# --- cutover --------------------------------------------------------------------------------------------------------

def kept(cfg: SpinbootConfig) -> set[str]:
    """Halyard Deployments the new stack still needs: spin-redis when spinnaker.redis.url points at it."""
    url = cfg.spinnaker.redis.url or ""
    return {"spin-redis"} if "//spin-redis" in url else set()


def _scale(kube: Kube, obj: dict, replicas: int) -> Change:
    meta = obj["metadata"]
    if int((obj.get("spec") or {}).get("replicas", 1)) == replicas:
        return Change("unchanged", obj["kind"], meta["name"], meta["namespace"], f"replicas {replicas}")
    plural = "deployments" if obj["kind"] == "Deployment" else "statefulsets"
    kube.request("PATCH", f"/apis/apps/v1/namespaces/{meta['namespace']}/{plural}/{meta['name']}",
                 body={"spec": {"replicas": replicas}}, content_type="application/merge-patch+json",
                 query={"fieldManager": FIELD_MANAGER})
    return happened(Change("update", obj["kind"], meta["name"], meta["namespace"], f"replicas -> {replicas}"))


def _wait_pods_gone(kube: Kube, ns: str, selector: str, what: str, progress: Progress,
                    timeout: float = POD_GONE_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    said = -1
    while True:
        pods = kube.list("v1", "Pod", ns, labels=selector)
        if not pods:
            return
        if len(pods) != said:
            progress(f"waiting for {len(pods)} pod(s) of {what} to be gone")
            said = len(pods)
        if time.monotonic() > deadline:
            raise MigrateError(f"{what}: {len(pods)} pod(s) still there after {timeout:.0f} s "
                               f"({', '.join(p['metadata']['name'] for p in pods[:5])}); nothing further was changed")
        time.sleep(0.5)


def with_consumers_at_zero(objs: list[dict]) -> list[dict]:
    out = []
    for o in objs:
        if o.get("kind") == "Deployment" and ka.service_of(o) in CONSUMERS:
            o = json.loads(json.dumps(o))
            o["spec"]["replicas"] = 0
        out.append(o)
    return out


def _switch_patch(svc: str, live: dict) -> list[dict]:
    ports = [{**p, "targetPort": "http"} for p in (live.get("spec") or {}).get("ports") or []]
    return [{"op": "replace", "path": "/spec/selector", "value": {COMPONENT: svc}},
            {"op": "replace", "path": "/spec/ports", "value": ports}]


def _patch_service(kube: Kube, ns: str, name: str, ops: list[dict]) -> None:
    kube.request("PATCH", f"/api/v1/namespaces/{ns}/services/{name}", body=ops,
                 content_type="application/json-patch+json", query={"fieldManager": FIELD_MANAGER})


def locks(kube: Kube, cfg: SpinbootConfig, operation: str, timeout: float | None, progress: Progress, report):
    """Both engines' locks, Halyard's namespace first (the one order every migrate takes them in)."""
    from contextlib import ExitStack

    stack = ExitStack()
    for ns in (cfg.spinnaker.halyard.namespace, cfg.spinnaker.namespace):
        stack.enter_context(LeaseLock(kube, ns, operation=operation, timeout=timeout, progress=progress,
                                      report=report))
    return stack


def cutover(kube: Kube, cfg: SpinbootConfig, objs: list[dict], *, progress: Progress = _noop,
            report: Callable[..., None] = _noop, allow_delete: bool = False) -> list[Change]:
    """The four steps, each skipped when already recorded. ``objs``: the kustomize build as apply applies it
    (kustomize_apply.desired). The caller holds the locks."""
    ns = cfg.spinnaker.namespace
    state = read_state(kube, cfg)
    if state.get("finished"):
        raise MigrateError("this migration was finished (--finish): Halyard's stack is gone; use spinboot apply")
    changes: list[Change] = []

    def record(step: str, **more) -> None:
        state.update(more)
        state["steps"] = [s for s in STEPS if s in _done(state) or s == step]
        write_state(kube, cfg, state)
        report("migrate", action="step", name=step, status="done")
        progress(f"step {step} done (recorded in {cfg.spinnaker.halyard.namespace}/{STATE})")

    # The record of targets rbac apply --prune reads moves to where the kustomize engine keeps it
    # (spinnaker.state_namespace), with the targets the Halyard engine recorded, so a former one stays prunable.
    hns, sns = cfg.spinnaker.halyard.namespace, cfg.spinnaker.state_namespace
    objs = objs + [record_manifest(sns, {**read_record(kube, hns), **read_record(kube, sns),
                                         **target_record(cfg.targets)})]
    if "stack-up" not in _done(state):
        progress("stack-up: the kustomize stack beside Halyard's, echo, igor and orca at 0 replicas")
        changes += ka.apply_objects(kube, cfg, with_consumers_at_zero(objs), allow_delete=allow_delete,
                                    progress=progress)
        record("stack-up")
    if "halyard-down" not in _done(state):
        keep = kept(cfg)
        live = [d for d in halyard_deployments(kube, cfg) if d["metadata"]["name"] not in keep]
        remembered = dict(state.get("halyardReplicas") or {})
        for d in live:   # remembered before the first is scaled: a killed run must not remember 0
            remembered.setdefault(d["metadata"]["name"], int((d.get("spec") or {}).get("replicas", 1)))
        state["halyardReplicas"] = remembered
        write_state(kube, cfg, state)
        progress(f"halyard-down: {len(live)} spin-* Deployment(s) to 0")
        for d in live:
            changes.append(_scale(kube, d, 0))
        selector = HALYARD_SELECTOR + "".join(f",cluster!={k}" for k in sorted(keep))
        _wait_pods_gone(kube, ns, selector, "Halyard's spin-* Deployments", progress)
        record("halyard-down")
    if "consumers-up" not in _done(state):
        progress("consumers-up: the full build, echo, igor and orca at their sizes")
        changes += ka.apply_objects(kube, cfg, objs, allow_delete=allow_delete, progress=progress)
        record("consumers-up")
    if "exposure" not in _done(state):
        running = {ka.service_of(o) for o in objs if o.get("kind") in ka.WORKLOADS}
        saved = dict(state.get("services") or {})
        switched = []
        for s in kube.list("v1", "Service", ns, labels=HALYARD_SELECTOR):
            name = s["metadata"]["name"]
            svc = name.removeprefix("spin-")
            if svc not in running or svc == "redis" or svc not in SERVICES:
                continue
            saved.setdefault(name, {"selector": s["spec"].get("selector"), "ports": s["spec"].get("ports")})
            switched.append((name, svc, s))
        state["services"] = saved
        write_state(kube, cfg, state)
        for name, svc, s in switched:
            if (s["spec"].get("selector") or {}) != {COMPONENT: svc}:
                _patch_service(kube, ns, name, _switch_patch(svc, s))
                changes.append(happened(Change("update", "Service", name, ns, f"selects the new {svc} pods")))
        record("exposure", cutoverAt=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    return changes


def rollback(kube: Kube, cfg: SpinbootConfig, *, progress: Progress = _noop,
             report: Callable[..., None] = _noop) -> list[Change]:
    """Back to the Halyard stack, the cutover backwards: the new consumers to 0 (and their pods gone) before
    anything else, the spin-* Services back to Halyard's pods, Halyard's Deployments to their remembered replicas
    (rollout awaited), then the rest of the new stack to 0. Each part is idempotent, so a killed rollback is run
    again; the record is removed last. The new stack's objects stay (at 0): ``spinboot migrate`` brings them back."""
    ns = cfg.spinnaker.namespace
    state = read_state(kube, cfg)
    if state.get("finished"):
        raise MigrateError("this migration was finished (--finish): there is no Halyard stack to return to; "
                           "restore it with spinboot restore")
    if not state:
        raise MigrateError(f"no migration recorded in {cfg.spinnaker.halyard.namespace}/{STATE}: nothing to roll back")
    changes: list[Change] = []
    mine = f"{INSTALL_LABEL}={ns}"
    new = kube.list("apps/v1", "Deployment", ns, labels=mine) + kube.list("apps/v1", "StatefulSet", ns, labels=mine)
    consumers = [o for o in new if ka.service_of(o) in CONSUMERS]
    progress("rollback: the new echo, igor and orca to 0")
    for o in consumers:
        changes.append(_scale(kube, o, 0))
    comps = ",".join(sorted({ka.service_of(o) for o in consumers}))
    if comps:
        _wait_pods_gone(kube, ns, f"{COMPONENT} in ({comps})", "the new consumers", progress)
    report("migrate", action="rollback", name="consumers-down", status="done")
    for name, spec in sorted((state.get("services") or {}).items()):
        live = kube.get(f"/api/v1/namespaces/{ns}/services/{name}")
        if live is None or live["spec"].get("selector") == spec["selector"]:
            continue
        _patch_service(kube, ns, name, [{"op": "replace", "path": "/spec/selector", "value": spec["selector"]},
                                        {"op": "replace", "path": "/spec/ports", "value": spec["ports"]}])
        changes.append(happened(Change("update", "Service", name, ns, "selects Halyard's pods again")))
    report("migrate", action="rollback", name="exposure", status="done")
    remembered = state.get("halyardReplicas") or {}
    for d in halyard_deployments(kube, cfg):
        want = remembered.get(d["metadata"]["name"])
        if want is not None:
            changes.append(_scale(kube, d, int(want)))
    progress("rollback: waiting for Halyard's spin-* Deployments")
    halyard_rollout(kube, cfg, progress)
    report("migrate", action="rollback", name="halyard-up", status="done")
    for o in new:
        if o not in consumers:
            changes.append(_scale(kube, o, 0))
    kube.delete({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": STATE, "namespace": cfg.spinnaker.halyard.namespace}})
    report("migrate", action="rollback", name="stack-down", status="done")
    return changes


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text or "")
    if not m:
        raise ValueError(f"--min-soak {text!r}: not a duration (allowed: a number and s, m, h or d, e.g. 30m, 24h)")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def not_ready_to_finish(state: dict, min_soak_seconds: float) -> str:
    """Why --finish must not run yet ("" when it may): the cutover is incomplete, or the soak is not over."""
    if state.get("finished"):
        return ""
    if "exposure" not in _done(state):
        return "--finish: the cutover is not complete (run spinboot migrate first)"
    at = dt.datetime.fromisoformat(state["cutoverAt"])
    soaked = (dt.datetime.now(dt.timezone.utc) - at).total_seconds()
    if soaked < min_soak_seconds:
        return (f"--finish: the new stack has run {soaked / 3600:.2f} h since the cutover ({state['cutoverAt']}); "
                f"the soak is {min_soak_seconds / 3600:.2f} h (--min-soak)")
    return ""


def finish(kube: Kube, cfg: SpinbootConfig, min_soak_seconds: float, *, progress: Progress = _noop,
           report: Callable[..., None] = _noop) -> list[Change]:
    """Remove Halyard's stack after the soak: spin-* Deployments, ConfigMaps and Secrets; spin-* Services that no
    Ingress routes to and that are not LoadBalancer/NodePort (those are what users reach: kept, and said); the
    Halyard StatefulSet, Service, RBAC and its kubeconfig Secret. The bucket, Halyard's namespace (the lock and
    spinboot's records live there) and Halyard's volume claim are kept."""
    ns, hns = cfg.spinnaker.namespace, cfg.spinnaker.halyard.namespace
    state = read_state(kube, cfg)
    if state.get("finished"):
        return [Change("unchanged", "Halyard stack", "spin-*", ns, "already removed")]
    why = not_ready_to_finish(state, min_soak_seconds)
    if why:
        raise MigrateInputError(why)
    changes: list[Change] = []
    routed = set()
    for ing in kube.list("networking.k8s.io/v1", "Ingress", ns):   # a kind kustomize_apply registers
        for _, v in _walk_values(ing.get("spec") or {}):
            if isinstance(v, str) and v.startswith("spin-"):
                routed.add(v)
    keep = kept(cfg)
    for kind, api in (("Deployment", "apps/v1"), ("ConfigMap", "v1"), ("Secret", "v1"), ("Service", "v1")):
        for o in kube.list(api, kind, ns, labels=HALYARD_SELECTOR):
            name = o["metadata"]["name"]
            if name in keep:
                continue
            if kind == "Service" and (name in routed or o["spec"].get("type") in ("LoadBalancer", "NodePort")):
                changes.append(Change("unchanged", kind, name, ns, "kept: users reach it (it selects the new pods); "
                                      "move them to the new Service, then delete it"))
                continue
            changes.append(kube.delete(o))
    doomed = [o for docs in halyard_manifests(cfg).values() for o in docs if o["kind"] != "Namespace"]
    doomed += [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": KUBECONFIG_SECRET, "namespace": hns}},
               {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": HALYARD_STATE, "namespace": hns}}]
    for o in doomed:
        if kube.get(o) is not None:
            changes.append(kube.delete(o))
    state["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    write_state(kube, cfg, state)
    report("migrate", action="finish", name="halyard-removed", status="done")
    return changes


__all__ = ["CONSUMERS", "Inventory", "MigrateError", "MigrateInputError", "STATE", "STEPS", "carry_dir", "cutover",
           "finish", "inventory", "locks", "missing_from_build", "not_ready_to_finish", "parse_duration", "read_install", "read_state",
           "rollback", "with_consumers_at_zero", "write_carried"]
