"""Rules across fields of a spinboot file. Each finding names the exact field it is about.

The rules run on Sections: the parts of the file whose shape is right. For a valid file that is all of it; for a
file with shape problems it is every part that still validates on its own (the cluster, Spinnaker's settings, each
target, each registry), so one run reports the shape problems and the cross-field problems together.

Every warning has a stable code (problems.WARNINGS) that `acknowledge:` can name.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from . import names, releases
from .model import OPTIONAL_SERVICES, Cluster, Registry, SpinbootConfig, Spinnaker, Target
from .problems import Positions, Problem, format_path

# Spinnaker's docs ask for at least 18 GB and 6 cores for the cluster; clouddriver alone has been seen using 6-12 GiB.
MIN_CLUSTER_MEMORY_GB = 18
MIN_CLUSTER_VCPU = 6
# Memory per vCPU of common GCE families (https://cloud.google.com/compute/docs/general-purpose-machines,
# https://cloud.google.com/compute/docs/memory-optimized-machines). Used only to warn, never to refuse.
_GB_PER_VCPU = {"standard": 4, "highmem": 8, "highcpu": 1, "megamem": 14, "ultramem": 24}
# "Public clusters can have up to 50 authorized network CIDR ranges; private clusters can have up to 100."
# (https://cloud.google.com/kubernetes-engine/docs/how-to/authorized-networks#limitations)
MAX_AUTHORIZED_NETWORKS_PUBLIC = 50
MAX_AUTHORIZED_NETWORKS_PRIVATE = 100


def machine_shape(machine_type: str) -> tuple[int, float] | None:
    """(vCPUs, GB) of a predefined machine type such as e2-highmem-4, or None when unknown."""
    m = re.fullmatch(r"(?:e2|n1|n2|n2d|n4|c2|c2d|c3|c3d|c4|t2d|m1|m2|m3)-(standard|highmem|highcpu|megamem|ultramem)-([0-9]+)",
                     machine_type)
    if not m:
        return None
    vcpu = int(m[2])
    gb = _GB_PER_VCPU[m[1]] * vcpu
    if machine_type.startswith("n1-"):
        gb = {"standard": 3.75, "highmem": 6.5, "highcpu": 0.9}.get(m[1], gb / vcpu) * vcpu
    return vcpu, gb


def high_memory(machine_type: str) -> bool:
    """The one node-memory rule (validate warns, doctor fails): clouddriver has run out of memory on standard nodes
    without failing a health check, so Spinnaker's nodes should be a high-memory family."""
    return any(f in machine_type for f in ("highmem", "megamem", "ultramem"))


def _valid(model: type[BaseModel], value: Any) -> Any:
    """``value`` validated as ``model``, or None. Unknown keys alone do not make a part unusable: they change the
    meaning of nothing else (and are reported as shape problems), so the part is validated without them."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if not all(e["type"] == "extra_forbidden" for e in errors):
            return None
        value = copy.deepcopy(value)
        for e in errors:
            *parents, key = e["loc"]
            container = value
            try:
                for part in parents:
                    container = container[part]
                del container[key]
            except (KeyError, IndexError, TypeError):
                return None
        try:
            return model.model_validate(value)
        except (ValidationError, ValueError, TypeError):
            return None
    except (ValueError, TypeError):
        return None


@dataclass
class Sections:
    """The parts of a file the rules read, each present only when its own shape is right."""

    cluster: Cluster | None = None
    spinnaker: Spinnaker | None = None
    targets: list[tuple[int, Target]] = field(default_factory=list)        # (index in the file, target)
    registries: list[tuple[int, Registry]] = field(default_factory=list)   # (index in the file, registry)

    @classmethod
    def of(cls, cfg: SpinbootConfig) -> "Sections":
        return cls(cfg.cluster, cfg.spinnaker, list(enumerate(cfg.targets)), list(enumerate(cfg.registries)))

    @classmethod
    def from_data(cls, data: Any) -> "Sections":
        """The valid parts of a document that is not valid as a whole."""
        if not isinstance(data, dict):
            return cls()

        def items(key: str, model: type[BaseModel]) -> list[tuple[int, Any]]:
            value = data.get(key)
            if not isinstance(value, list):
                return []
            return [(i, m) for i, m in ((i, _valid(model, v)) for i, v in enumerate(value)) if m is not None]

        return cls(_valid(Cluster, data["cluster"]) if "cluster" in data else None,
                   _valid(Spinnaker, data["spinnaker"]) if "spinnaker" in data else None,
                   items("targets", Target), items("registries", Registry))


def check_rules(sec: Sections | SpinbootConfig, pos: Positions) -> list[Problem]:
    if isinstance(sec, SpinbootConfig):
        sec = Sections.of(sec)
    out: list[Problem] = []

    def err(path, message):
        out.append(pos.problem(tuple(path), message))

    def warn(path, message, code: str, loud: bool = False):
        out.append(pos.problem(tuple(path), message, severity="warning", code=code, loud=loud))

    if sec.cluster is not None:
        _cluster_rules(sec.cluster, err, warn)
    s = sec.spinnaker
    if s is not None:
        _spinnaker_rules(s, err, warn)
        # The file's own directory: spinnaker.kustomize.customizations is relative to it.
        _engine_rules(s, Path(pos.file).parent, err, warn)

    # --- accounts: one name space in clouddriver across providers ------------------------------------------------
    accounts: dict[str, tuple] = {s.deploy_account: ("spinnaker", "deployAccount")} if s is not None else {}
    for i, t in sec.targets:
        here = ("targets", i, "name")
        if t.name in accounts:
            err(here, f"account name {t.name!r} is already used by {format_path(accounts[t.name])} "
                      "(allowed: names unique across targets, registries and spinnaker.deployAccount)")
        accounts.setdefault(t.name, here)
    for i, r in sec.registries:
        here = ("registries", i, "name")
        if r.name in accounts:
            err(here, f"account name {r.name!r} is already used by {format_path(accounts[r.name])} "
                      "(allowed: names unique across targets, registries and spinnaker.deployAccount)")
        accounts.setdefault(r.name, here)

    # --- targets ------------------------------------------------------------------------------------------------
    clusters: dict[tuple, int] = {}
    for i, t in sec.targets:
        ref = (t.gke.project, t.gke.location, t.gke.cluster) if t.gke else (t.kubeconfig.path, t.kubeconfig.context)
        if ref in clusters:
            err(("targets", i, "gke" if t.gke else "kubeconfig"),
                f"the same cluster as targets[{clusters[ref]}] (allowed: one target per cluster; list all its "
                "namespaces there)")
        clusters.setdefault(ref, i)
        seen_ns: dict[str, int] = {}
        where = f"{t.gke.project}/{t.gke.location}/{t.gke.cluster}" if t.gke else f"context {t.kubeconfig.context}"
        for j, ns in enumerate(t.namespaces):
            if ns in seen_ns:
                err(("targets", i, "namespaces", j), f"namespace {ns!r} is listed twice (also at namespaces[{seen_ns[ns]}])"
                                                    " (allowed: each namespace once)")
            seen_ns.setdefault(ns, j)
            if names.is_system_namespace(ns):
                if not t.dangerously_allow_system_namespaces:
                    err(("targets", i, "namespaces", j),
                        f"{ns!r} is a system namespace: Spinnaker deploying there can break the cluster (allowed: your "
                        "application namespaces; to insist, set dangerouslyAllowSystemNamespaces: true on this target)")
                else:
                    # Said on every command that loads the file, and never silenced by acknowledge: the flag is
                    # the acknowledgement, and whoever runs spinboot next should still see it.
                    warn(("targets", i, "namespaces", j),
                         f"DANGER: Spinnaker may deploy into {ns}, a system namespace of {where}: one bad pipeline "
                         "there can break the cluster (allowed only because dangerouslyAllowSystemNamespaces: true is "
                         "set on this target; remove the namespace to make this go away)", "system-namespace",
                         loud=True)
        if names.is_system_namespace(t.service_account.namespace):
            err(("targets", i, "serviceAccount", "namespace"),
                f"{t.service_account.namespace!r} is a system namespace (allowed: a namespace of Spinnaker's own, "
                "e.g. spinnaker)")

    # --- registries ---------------------------------------------------------------------------------------------
    subs: dict[tuple[str, str], int] = {}
    for i, r in sec.registries:
        google = names.is_google_registry(r.address)
        if not google:
            # Only Google's registries publish pushes to a gcr topic; a subscription elsewhere would never fire.
            for key in ("project", "subscription"):
                if key in r.model_fields_set:
                    err(("registries", i, key),
                        f"{r.address} is not a Google registry: nothing publishes its pushes to Pub/Sub, so a "
                        "subscription would never deliver a trigger (allowed: leave project and subscription out; "
                        "trigger pipelines from the registry's webhook instead)")
        elif r.project is None:
            err(("registries", i, "project"),
                f"{r.address} publishes pushes to projects/PROJECT/topics/gcr of the project that holds the "
                "repositories, and Spinnaker needs a subscription there (allowed: the project of the listed "
                "repositories, e.g. acme-platform)")
        else:
            key = (r.project, r.subscription.name)
            if key in subs:
                err(("registries", i, "subscription", "name"),
                    f"subscription {r.subscription.name!r} in project {r.project!r} is already used by "
                    f"registries[{subs[key]}] (allowed: one subscription name per project)")
            subs.setdefault(key, i)
        if google:
            for j, repo in enumerate(r.repositories):
                resource, problem = names.artifact_registry_repository(r.address, repo)
                if problem:
                    err(("registries", i, "repositories", j), problem)
                elif r.project and not resource.startswith(f"projects/{r.project}/"):
                    other = resource.split("/")[1]
                    err(("registries", i, "repositories", j),
                        f"{repo} lives in project {other!r}, whose pushes are announced on projects/{other}/topics/gcr,"
                        f" not on projects/{r.project}/topics/gcr: Spinnaker would never hear of them (allowed: "
                        f"repositories of project {r.project!r} here; add a registries entry with project: {other} "
                        "for this one)")
        if r.docker_registry_account and not r.repositories:
            err(("registries", i, "repositories"),
                "a docker-registry account needs its repositories listed explicitly: crawling the catalog of a "
                "Google registry earns HTTP 429s (allowed: e.g. repositories: [acme/tasks], or "
                "dockerRegistryAccount: false for triggers only)")
        if google and r.cache_interval_seconds < 300:
            warn(("registries", i, "cacheIntervalSeconds"),
                 f"{r.cache_interval_seconds} s polls {r.address} often enough to earn HTTP 429s, after which even "
                 "image pulls fail (allowed; recommended: 600, with Pub/Sub triggers for new images)",
                 "registry-polling")
    return out


def _cluster_rules(c: Cluster, err, warn) -> None:
    if c.private_nodes:
        if c.master_ipv4_cidr_block is None:
            err(("cluster", "privateNodes"), "privateNodes is true but masterIpv4CidrBlock is not set "
                                             "(allowed: add cluster.masterIpv4CidrBlock, a /28 such as 172.16.0.32/28)")
        elif ipaddress.ip_network(c.master_ipv4_cidr_block).prefixlen != 28:
            err(("cluster", "masterIpv4CidrBlock"), f"{c.master_ipv4_cidr_block!r} is not a /28 (allowed: a /28 block)")
        if c.egress is None:
            err(("cluster", "privateNodes"),
                "privateNodes is true but cluster.egress is not set: private nodes have no route to ghcr.io (Spinnaker's "
                "images) or Docker Hub (Halyard's Redis) and every pod would stay in ImagePullBackOff (allowed: "
                "egress: cloud-nat when the network has Cloud NAT in this region, or egress: none when every image "
                "is mirrored into a registry reached through Private Google Access)")
        elif c.egress == "none":
            warn(("cluster", "egress"),
                 "egress: none: Spinnaker's images (ghcr.io/spinnaker) and Redis must be mirrored into a registry the "
                 "nodes reach privately, or pods will not start (allowed; make sure the mirror exists)", "egress-none")
    else:
        if c.master_ipv4_cidr_block is not None:
            err(("cluster", "masterIpv4CidrBlock"),
                "set only with privateNodes: true (allowed: remove it, or set privateNodes)")
        if c.egress is not None:
            err(("cluster", "egress"), "set only with privateNodes: true: public nodes reach the internet themselves "
                                       "(allowed: remove it, or set privateNodes)")
    limit = MAX_AUTHORIZED_NETWORKS_PRIVATE if c.private_nodes else MAX_AUTHORIZED_NETWORKS_PUBLIC
    if len(c.authorized_networks) > limit:
        err(("cluster", "authorizedNetworks"),
            f"{len(c.authorized_networks)} authorized networks; GKE allows at most {limit} on a "
            f"{'private' if c.private_nodes else 'public'} cluster (allowed: at most {limit}; merge adjacent blocks)")
    seen_net: dict[str, int] = {}
    for i, net in enumerate(c.authorized_networks):
        if net.cidr in seen_net:
            err(("cluster", "authorizedNetworks", i, "cidr"),
                f"{net.cidr} is already listed at authorizedNetworks[{seen_net[net.cidr]}] (allowed: each block once)")
        seen_net.setdefault(net.cidr, i)
    pool = c.node_pool
    if pool.autoscaling and not (pool.autoscaling.min_node_count <= pool.node_count <= pool.autoscaling.max_node_count):
        err(("cluster", "nodePool", "nodeCount"),
            f"nodeCount {pool.node_count} is outside autoscaling bounds {pool.autoscaling.min_node_count}.."
            f"{pool.autoscaling.max_node_count} (allowed: minNodeCount <= nodeCount <= maxNodeCount)")
    shape = machine_shape(pool.machine_type)
    if shape:
        vcpu, gb = shape
        zones = 3 if c.regional else 1
        total_gb, total_cpu = gb * pool.node_count * zones, vcpu * pool.node_count * zones
        if not high_memory(pool.machine_type):
            warn(("cluster", "nodePool", "machineType"),
                 f"{pool.machine_type} is not a high-memory type: clouddriver has run out of memory on standard nodes "
                 "without failing a health check (allowed, but e2-highmem-4 or larger is recommended)", "standard-nodes")
        if total_gb < MIN_CLUSTER_MEMORY_GB or total_cpu < MIN_CLUSTER_VCPU:
            warn(("cluster", "nodePool", "nodeCount"),
                 f"the pool has {total_cpu} vCPU and {total_gb:g} GB in all; Spinnaker asks for at least "
                 f"{MIN_CLUSTER_VCPU} vCPU and {MIN_CLUSTER_MEMORY_GB} GB (recommended: 2 x e2-highmem-4)",
                 "small-node-pool")


def _spinnaker_rules(s: Spinnaker, err, warn) -> None:
    version = names.SpinnakerVersion(s.version)
    if version.halyard_unsupported and s.engine == "halyard":
        warn(("spinnaker", "version"),
             f"Spinnaker {s.version} is deployed with Halyard, which upstream stopped supporting in 2026.1.0 "
             "(allowed; kustomize is the supported install from 2026.1 on)", "halyard-unsupported")
    image = s.halyard.image or names.default_halyard_image(s.version)
    if image.startswith(names.FROZEN_HALYARD_REPOSITORY) and version.images_on_ghcr:
        warn(("spinnaker", "halyard", "image"),
             f"{image} comes from the frozen community registry; {s.version} images are on {names.GHCR} "
             f"(recommended: {names.default_halyard_image(s.version)})", "halyard-image-frozen")
    e = s.exposure
    api, ui = urlsplit(e.api_url), urlsplit(e.ui_url)
    if api.path.rstrip("/"):
        # Deck's web server forwards only /gate to Gate (its API_HOST); any other path reaches Deck itself.
        if api.path.rstrip("/") != "/gate":
            err(("spinnaker", "exposure", "apiUrl"),
                f"{e.api_url}: Gate's URL may carry no path but /gate (Deck forwards /gate to Gate; any other path "
                "would reach Deck itself) (allowed: a host of its own such as https://api.example.com, or "
                f"{ui.scheme}://{ui.netloc}/gate)")
        elif (api.scheme, api.netloc) != (ui.scheme, ui.netloc):
            err(("spinnaker", "exposure", "apiUrl"),
                f"{e.api_url}: a /gate path works only on the UI's own host, where Deck forwards it to Gate "
                f"(allowed: {ui.scheme}://{ui.netloc}/gate, or {api.scheme}://{api.netloc} with no path)")
        elif e.behind_google_load_balancer and not any(
                ipaddress.ip_network(t).overlaps(ipaddress.ip_network(p)) for t in e.trusted_proxies
                for p in names.PRIVATE_RANGES[:3]):
            # Through Deck, Gate's direct peer is Deck's pod, not Google's front end.
            warn(("spinnaker", "exposure", "trustedProxies"),
                 "Gate's /gate requests arrive from Deck's pod, whose address is in none of the trusted proxies: "
                 "Gate will ignore X-Forwarded-Proto and build http:// redirects (recommended: include the "
                 "cluster's pod range, e.g. 10.0.0.0/8)", "deck-proxy-untrusted")
    if e.iap and not e.behind_google_load_balancer:
        err(("spinnaker", "exposure", "iap"), "IAP works only behind Google's load balancer "
                                              "(allowed: set behindGoogleLoadBalancer: true, or remove iap)")
    if e.behind_google_load_balancer:
        for key, url in (("uiUrl", e.ui_url), ("apiUrl", e.api_url)):
            if url.startswith("http://"):
                warn(("spinnaker", "exposure", key),
                     f"{url} is plain http behind Google's HTTPS load balancer (recommended: https://)", "plain-http")
        trusted = [ipaddress.ip_network(n) for n in e.trusted_proxies]
        for rng in names.GOOGLE_FRONT_END_RANGES:
            if not any(ipaddress.ip_network(rng).subnet_of(t) for t in trusted):
                warn(("spinnaker", "exposure", "trustedProxies"),
                     f"{rng} (Google's front ends) is not trusted: Gate will ignore the load balancer's "
                     "X-Forwarded-Proto and redirect to http:// (recommended: include it)", "front-ends-untrusted")
    for where, ns in ((("spinnaker", "namespace"), s.namespace), (("spinnaker", "halyard", "namespace"), s.halyard.namespace)):
        if names.is_system_namespace(ns):
            err(where, f"{ns!r} is a system namespace (allowed: a namespace of its own, e.g. spinnaker or halyard)")
    artifact_names: dict[str, tuple] = {}
    for kind in ("gcs", "github"):
        for i, a in enumerate(getattr(s.artifacts, kind)):
            here = ("spinnaker", "artifacts", kind, i, "name")
            if a.name in artifact_names:
                err(here, f"artifact account {a.name!r} is already used by {format_path(artifact_names[a.name])} "
                          "(allowed: unique artifact account names)")
            artifact_names.setdefault(a.name, here)


# What only the kustomize engine reads: the Halyard engine would silently ignore it, so it is refused there.
_KUSTOMIZE_ONLY = ("redis", "services", "sizing", "kustomize")


def _engine_rules(s: Spinnaker, base: Path, err, warn) -> None:
    """The deploy engine and what depends on it: its default by version, what each engine reads, the release
    guardrails (releases/guardrails.yaml), optional services, the Ingress and the user's customizations."""
    chosen = "engine" in s.model_fields_set
    how = "" if chosen else f" (engine is unset, so {s.engine} for {s.version})"
    if s.engine == "kustomize" and not names.SpinnakerVersion(s.version).images_on_ghcr:
        err(("spinnaker", "engine") if chosen else ("spinnaker", "version"),
            f"the kustomize engine pins every image to {names.GHCR}/<service>:{s.version}, and Spinnaker publishes "
            f"there from 2026.1.0 only (allowed: version 2026.1.0 or later, or engine: halyard)")
    for f in releases.findings(s.version, s.engine, s.halyard.image is not None):
        path = f.path if (chosen or f.path != ("spinnaker", "engine")) else ("spinnaker", "version")
        (err(path, f.message + how) if f.severity == "error" else warn(path, f.message + how, f.code))
    ingress = s.exposure.ingress
    if s.engine == "halyard":
        for key in _KUSTOMIZE_ONLY:
            if key in s.model_fields_set:
                hint = "; clouddriver's resources: spinnaker.clouddriver.sizing" if key == "sizing" else ""
                err(("spinnaker", key), f"read only by the kustomize engine; the halyard engine would ignore it "
                                        f"(allowed: remove it{hint}, or engine: kustomize){how}")
        if ingress.enabled:
            err(("spinnaker", "exposure", "ingress", "enabled"),
                "the GKE Ingress is written by the kustomize engine only (allowed: remove it, or engine: kustomize)"
                + how)
        return
    if "sizing" in s.model_fields_set:
        for svc in s.sizing:
            if svc in OPTIONAL_SERVICES and not getattr(s.services, svc):
                err(("spinnaker", "sizing", svc), f"{svc} does not run: spinnaker.services.{svc} is false "
                                                  f"(allowed: remove this, or services.{svc}: true)")
        if "clouddriver" in s.sizing and "sizing" in s.clouddriver.model_fields_set:
            err(("spinnaker", "sizing", "clouddriver"),
                "clouddriver is sized twice, here and in spinnaker.clouddriver.sizing (allowed: one of them)")
    if s.services.fiat and s.exposure.iap is None:
        # With no authentication Gate serves everyone as the anonymous user, and once Fiat is on that user is
        # allowed no accounts at all (gate/gate-core/src/main/java/com/netflix/spinnaker/gate/security/anonymous/
        # AnonymousConfig.java at spinnaker-release-2026.2.3): Spinnaker would be unusable.
        err(("spinnaker", "services", "fiat"),
            "fiat needs authenticated users: without authentication Gate treats everyone as anonymous, and with "
            "fiat on the anonymous user may use no account (allowed: set spinnaker.exposure.iap, the authentication "
            "spinboot configures, or fiat: false; OAuth, SAML and LDAP are not supported by spinboot)")
    if ingress.enabled:
        e = s.exposure
        if not e.behind_google_load_balancer:
            err(("spinnaker", "exposure", "ingress", "enabled"),
                "a GKE Ingress is Google's HTTPS load balancer (allowed: behindGoogleLoadBalancer: true, or no "
                "ingress)")
        for key, url in (("uiUrl", e.ui_url), ("apiUrl", e.api_url)):
            parts = urlsplit(url)
            host = parts.hostname or ""
            if _is_ip(host) or "." not in host:
                err(("spinnaker", "exposure", key),
                    f"{url}: the Ingress routes by host name and a certificate names a domain, not {host!r} "
                    "(allowed: a DNS name such as spinnaker.example.com)")
            elif ingress.managed_certificate and parts.scheme != "https":
                err(("spinnaker", "exposure", key),
                    f"{url}: the managed certificate serves https:// (allowed: https://{parts.netloc}{parts.path}, or "
                    "ingress.managedCertificate: false)")
            elif parts.port not in (None, 443 if parts.scheme == "https" else 80):
                err(("spinnaker", "exposure", key),
                    f"{url}: Google's load balancer listens on 80 and 443 only (allowed: no port)")
    c = s.kustomize.customizations
    if c is not None:
        where = (base / c)
        if not where.is_dir():
            err(("spinnaker", "kustomize", "customizations"),
                f"{c}: no such directory next to the file ({where}) (allowed: a directory relative to "
                "spinboot.yaml holding a kustomization.yaml)")
        elif not any((where / n).is_file() for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")):
            err(("spinnaker", "kustomize", "customizations"),
                f"{c} has no kustomization.yaml, so kustomize cannot use it (allowed: a directory with a "
                "kustomization.yaml, e.g. kind: Component with your patches)")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
