"""``spinboot drift``: what was deployed into Spinnaker's namespaces around Spinnaker (docs/drift.md).

Every target is read with Spinnaker's own identity there (the kubeconfig spinboot minted for clouddriver), so
drift sees exactly what Spinnaker may see and nothing outside the allowed namespaces. Each object lands in one
class, from facts in clouddriver's source at spinnaker-release-2026.2.3 (monorepo spinnaker/spinnaker):

* clouddriver annotates every manifest it deploys with ``moniker.spinnaker.io/*`` (a moniker is mandatory) and,
  when it has one, ``artifact.spinnaker.io/*``
  (clouddriver/clouddriver-kubernetes/.../description/manifest/KubernetesManifestAnnotater.java), and treats
  ``moniker.spinnaker.io/application`` as the mark of a Spinnaker-managed object (``onlySpinnakerManaged`` in
  .../caching/agent/KubernetesCachingAgent.java).
* it labels them ``app.kubernetes.io/managed-by: spinnaker``, or ``spinnaker-SUFFIX`` with
  ``kubernetes.v2.managed-by-suffix`` set, overwriting any value the manifest had
  (.../description/manifest/KubernetesManifestLabeler.java, .../names/KubernetesManifestNamer.java).
* it writes with ``kubectl apply`` (client-side, or ``--server-side`` by the strategy annotation), ``kubectl
  replace``, ``kubectl scale``, ``kubectl patch`` and ``kubectl rollout``, never with ``--field-manager``
  (.../op/job/KubectlJobExecutor.java, .../op/handler/CanDeploy.java), so ``managedFields`` shows kubectl's
  default manager names, the same as a person's. The manager name alone proves nothing: the annotations, the time
  order of writes and, with ``--audit``, the writer's identity do.

Classes: **unmanaged** (no Spinnaker annotations), **tampered** (Spinnaker's, then changed by a by-hand kubectl
verb after Spinnaker's last write), **foreign** (Spinnaker's annotations, another install's managed-by value),
and with ``--audit`` **write** (a write into the namespace by a principal other than Spinnaker's).
"""

from __future__ import annotations

import base64
import fnmatch
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import yaml

from ..config.model import SpinbootConfig, Target

SPINNAKER_ANNOTATION_PREFIXES = ("moniker.spinnaker.io/", "artifact.spinnaker.io/")
APPLICATION_ANNOTATION = "moniker.spinnaker.io/application"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
CLASSES = ("unmanaged", "tampered", "foreign", "write")

# kubectl's default field managers (k8s.io/kubectl: apply's "kubectl-client-side-apply", server-side "kubectl",
# "kubectl-replace", "kubectl-create"): what clouddriver's deploys leave (KubectlJobExecutor deploy/replace).
DEPLOY_MANAGERS = frozenset({"kubectl-client-side-apply", "kubectl", "kubectl-replace", "kubectl-create"})
# Changes made in place, the ``kubectl edit``-style verbs. clouddriver's Scale and Patch stages run ``kubectl
# scale`` / ``kubectl patch`` too (KubectlJobExecutor.scale/patch): those two are reported, marked as shared,
# and --audit tells who it was.
CHANGE_MANAGERS = frozenset({"kubectl-edit", "kubectl-set", "kubectl-label", "kubectl-annotate", "kubectl-scale",
                             "kubectl-patch"})
SHARED_WITH_CLOUDDRIVER = frozenset({"kubectl-scale", "kubectl-patch"})
RESTARTED_AT = "spec.template.metadata.annotations.kubectl.kubernetes.io/restartedAt"  # kubectl rollout restart
REPLICAS = "spec.replicas"
# Controllers' own writes (status, HPA scaling, defaults): never a person's.
CONTROLLER_MANAGERS = frozenset({"kube-controller-manager", "kube-scheduler", "kubelet", "kube-apiserver"})

# What the cluster makes by itself in every namespace, and kinds that are records rather than deployments.
INJECTED = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}
SKIPPED_RESOURCES = frozenset({"events", "endpoints", "endpointslices", "controllerrevisions", "leases",
                               "localsubjectaccessreviews"})
SKIPPED_SECRET_TYPES = frozenset({"kubernetes.io/service-account-token", "helm.sh/release.v1"})
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class Finding:
    """One object (or, with --audit, one write) that is drift; ``writer`` is who, ``at`` when (RFC 3339)."""

    klass: str
    target: str
    namespace: str
    kind: str
    name: str
    writer: str
    manager: str = ""
    at: str | None = None
    detail: str = ""
    principal: str | None = None

    def as_event(self) -> dict[str, Any]:
        d = asdict(self)
        d["class"] = d.pop("klass")
        return {k: v for k, v in d.items() if v not in (None, "")}


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    scanned: list[dict] = field(default_factory=list)   # {target, namespace, objects}
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {c: sum(1 for f in self.findings if f.klass == c) for c in CLASSES}


# --- pure classification -------------------------------------------------------------------------------------

def expected_managed_by(suffix: str | None) -> str:
    """The label value this install's clouddriver writes (KubernetesManifestLabeler.storeLabels)."""
    return f"spinnaker-{suffix}" if suffix else "spinnaker"


def writer_of(manager: str) -> str:
    """A person-readable name for a field manager: who usually writes under that name."""
    if manager in DEPLOY_MANAGERS or manager.startswith("kubectl"):
        return "kubectl (by hand)"
    if manager == "helm":
        return "Helm"
    if manager.startswith("argocd"):
        return "Argo CD"
    if manager in ("kustomize-controller", "helm-controller"):
        return "Flux"
    if manager == "spinboot":
        return "spinboot"
    return f"unknown ({manager})" if manager else "unknown"


def field_paths(fields: dict | None, prefix: str = "") -> list[str]:
    """Leaf paths of a managedFields ``fieldsV1`` set, e.g. ``spec.replicas`` (list keys shown as ``[...]``)."""
    out: list[str] = []
    for key, sub in (fields or {}).items():
        if key == ".":
            continue
        part = key[2:] if key.startswith("f:") else "[" + key[2:] + "]" if key[:2] in ("k:", "v:", "i:") else key
        path = f"{prefix}.{part}" if prefix and not part.startswith("[") else f"{prefix}{part}"
        if sub:
            out += field_paths(sub, path)
        else:
            out.append(path)
    return out


def _entries(obj: dict) -> list[dict]:
    """managedFields entries that are writes to the object itself (status and other controllers' entries out)."""
    return [e for e in (obj.get("metadata") or {}).get("managedFields") or []
            if e.get("subresource", "") in ("", "scale") and e.get("manager") not in CONTROLLER_MANAGERS]


def _is_deploy(e: dict) -> bool:
    """A write the way clouddriver deploys: client-side apply, replace, create, or server-side apply as "kubectl"."""
    m = e.get("manager")
    return not e.get("subresource") and (m in DEPLOY_MANAGERS - {"kubectl"} or (m == "kubectl" and e.get("operation") == "Apply"))


def is_spinnakers(obj: dict) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return any(k.startswith(SPINNAKER_ANNOTATION_PREFIXES) for k in annotations)


def skip_reason(kind: str, obj: dict, ignore: Iterable[str] = ()) -> str | None:
    """Why an object is not drift's business (None: it is): owned by another object, made by the cluster, a
    token or Helm record, spinboot's own, or on the file's ignore list."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    if meta.get("ownerReferences"):
        return "owned"
    if (kind, name) in INJECTED:
        return "injected"
    if kind == "Secret" and obj.get("type") in SKIPPED_SECRET_TYPES:
        return "record"
    if (meta.get("labels") or {}).get(MANAGED_BY_LABEL) == "spinboot":
        return "spinboot"
    for pattern in ignore:
        pk, _, pn = pattern.partition("/")
        if fnmatch.fnmatchcase(kind.lower(), pk.lower()) and fnmatch.fnmatchcase(name, pn):
            return "ignored"
    return None


def classify(target: str, namespace: str, kind: str, obj: dict, managed_by: str,
             hpa_targets: frozenset[tuple[str, str]] = frozenset()) -> Finding | None:
    """The class of one object (None: Spinnaker's and untouched). ``hpa_targets``: (kind, name) an HPA scales."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    entries = _entries(obj)
    if not is_spinnakers(obj):
        last = max(entries, key=lambda e: e.get("time") or "", default=None)
        manager = (last or {}).get("manager", "")
        writers = sorted({writer_of(e.get("manager", "")) for e in entries})
        return Finding("unmanaged", target, namespace, kind, name, writer_of(manager), manager,
                       (last or {}).get("time") or meta.get("creationTimestamp"),
                       "no moniker.spinnaker.io annotations" + (f"; writers: {', '.join(writers)}"
                                                                if len(writers) > 1 else ""))
    label = (meta.get("labels") or {}).get(MANAGED_BY_LABEL)
    if label is not None and label != managed_by:
        return Finding("foreign", target, namespace, kind, name, f"managed-by {label}", "",
                       meta.get("creationTimestamp"), f"this install's clouddriver labels {managed_by}")
    spin_times = [e.get("time") or "" for e in entries if _is_deploy(e)]
    last_deploy = max(spin_times, default="")
    changes = []
    for e in entries:
        manager = e.get("manager", "")
        scaled = e.get("subresource") == "scale"
        if not (scaled or manager in CHANGE_MANAGERS):
            continue
        # kubectl scale writes the scale subresource under the default manager "kubectl" and the API server
        # records no time for it (seen with kubectl 1.32 against kube-apiserver 1.36): an entry still there owns
        # the replica count, since a later apply that sets replicas takes the field (and the entry) back.
        if e.get("time") and e["time"] < last_deploy:
            continue
        paths = field_paths(e.get("fieldsV1"))
        if paths and all(p == RESTARTED_AT for p in paths):
            continue   # a restart, not a change
        if (kind, name) in hpa_targets and paths and set(paths) <= {REPLICAS}:
            continue   # the HPA owns the replica count
        changes.append((e.get("time") or "", manager, paths, scaled))
    if not changes:
        return None
    at, manager, paths, scaled = max(changes)
    detail = ", ".join(paths[:6]) + (" …" if len(paths) > 6 else "")
    if scaled:
        detail += " (kubectl scale, through the scale subresource; clouddriver's Scale stage writes the same way: "\
                  "--audit names the writer)"
    elif manager in SHARED_WITH_CLOUDDRIVER:
        detail += f" ({manager} is also what clouddriver's {manager[8:].title()} stage leaves; --audit names the writer)"
    return Finding("tampered", target, namespace, kind, name, writer_of(manager), manager, at or None,
                   f"after Spinnaker's last write{(' at ' + last_deploy) if last_deploy else ''}: {detail}")


# --- audit entries (Cloud Audit Logs, GKE's k8s.io service) -------------------------------------------------

@dataclass(frozen=True)
class AuditWrite:
    principal: str
    method: str          # io.k8s.apps.v1.deployments.update
    resource: str        # apps/v1/namespaces/prod/deployments/web
    at: str

    @property
    def parts(self) -> tuple[str, str, str, str] | None:
        """(namespace, resource plural, name, subresource) from resourceName, None when not namespaced."""
        m = re.match(r"^[^/]+/[^/]+/namespaces/([^/]+)/([^/]+)/([^/]+)(?:/([^/]+))?$", self.resource)
        return (m.group(1), m.group(2), m.group(3), m.group(4) or "") if m else None

    @property
    def verb(self) -> str:
        return self.method.rsplit(".", 1)[-1]


def audit_findings(target: Target, writes: Iterable[AuditWrite], known: Iterable[str],
                   spinboot_objects: set[tuple[str, str, str]]) -> list[Finding]:
    """Writes into the target's allowed namespaces by principals other than Spinnaker's service account, the
    file's known principals, and spinboot's own objects (its RoleBindings there). One finding per object: the
    latest write, with who."""
    sa = target.service_account
    ok = {f"system:serviceaccount:{sa.namespace}:{sa.name}", *known}
    latest: dict[tuple[str, str, str], AuditWrite] = {}
    for w in writes:
        p = w.parts
        if p is None or w.verb not in WRITE_VERBS or w.principal in ok or p[0] not in target.namespaces:
            continue
        if (p[0], p[1], p[2]) in spinboot_objects:
            continue
        key = (p[0], p[1], p[2])
        if key not in latest or w.at >= latest[key].at:
            latest[key] = w
    return [Finding("write", target.name, ns, res, name, w.principal, "", w.at, f"{w.method} {w.resource}",
                    principal=w.principal) for (ns, res, name), w in sorted(latest.items())]


def attach_principals(findings: list[Finding], writes: list[AuditWrite], plural_of: dict[str, str]) -> list[Finding]:
    """Name the principal of each tampered/unmanaged finding from the latest audit write to that object."""
    out = []
    for f in findings:
        plural = plural_of.get(f.kind, "")
        match = [w for w in writes if w.parts and w.parts[:3] == (f.namespace, plural, f.name)]
        if match and f.klass in ("unmanaged", "tampered"):
            w = max(match, key=lambda w: w.at)
            f = Finding(**{**asdict(f), "principal": w.principal})
        out.append(f)
    return out


def audit_filter(project: str, location: str, cluster: str, namespace: str, since: datetime) -> str:
    """The Cloud Logging filter for GKE Admin Activity audit entries (writes only) into one namespace
    (https://cloud.google.com/kubernetes-engine/docs/how-to/audit-logging)."""
    log = f"projects/{project}/logs/cloudaudit.googleapis.com%2Factivity"
    return (f'logName="{log}" AND resource.type="k8s_cluster" AND resource.labels.location="{location}" AND '
            f'resource.labels.cluster_name="{cluster}" AND protoPayload.resourceName:"/namespaces/{namespace}/" AND '
            f'timestamp>="{since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}"')


def read_audit(clients, target: Target, namespaces: list[str], since: datetime,
               limit: int = 5000) -> list[AuditWrite]:
    """Audit writes into ``namespaces`` of the target through Cloud Logging (google-cloud-logging's gapic
    client); refused writes are left out."""
    from google.cloud.audit import audit_log_pb2

    if not target.gke:
        return []
    out: list[AuditWrite] = []
    for ns in namespaces:
        request = {"resource_names": [f"projects/{target.gke.project}"], "order_by": "timestamp asc",
                   "filter": audit_filter(target.gke.project, target.gke.location, target.gke.cluster, ns, since),
                   "page_size": 1000}
        for entry in clients.logging.list_log_entries(request=request):
            log = audit_log_pb2.AuditLog()
            any_ = type(entry).pb(entry).proto_payload
            if not any_.Unpack(log) or log.status.code:
                continue   # a refused write changed nothing
            ts = type(entry).pb(entry).timestamp.ToDatetime(tzinfo=timezone.utc)
            out.append(AuditWrite(log.authentication_info.principal_email, log.method_name, log.resource_name,
                                  ts.strftime("%Y-%m-%dT%H:%M:%SZ")))
            if len(out) >= limit:
                return out
    return out


def parse_since(text: str) -> datetime:
    """``30m``, ``24h``, ``7d`` before now."""
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not m:
        raise ValueError(f"--since {text!r}: use a number and s, m, h or d (e.g. 24h)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
    return datetime.now(timezone.utc) - timedelta(**{unit: int(m.group(1))})


# --- reading targets with Spinnaker's identity ---------------------------------------------------------------

def kubeconfigs_from_secret(live, cfg: SpinbootConfig) -> dict[str, bytes]:
    """The kubeconfigs spinboot minted for clouddriver: Halyard's Secret, or the kustomize engine's."""
    from ..kube.halyard import KUBECONFIG_SECRET

    found: dict[str, bytes] = {}
    for ns, secret in ((cfg.spinnaker.halyard.namespace, KUBECONFIG_SECRET),
                       (cfg.spinnaker.namespace, "spinboot-clouddriver-kubeconfigs")):
        s = live.kube.get(f"/api/v1/namespaces/{ns}/secrets/{secret}") or {}
        for k, v in (s.get("data") or {}).items():
            found.setdefault(k.removesuffix(".kubeconfig"), base64.b64decode(v))
    return found


def _spinnaker_cluster(clients, cfg: SpinbootConfig):
    """The Spinnaker cluster's API server only (not status's full connect, which also execs into Halyard's pod):
    drift needs nothing there but the kubeconfig Secret."""
    from types import SimpleNamespace

    from .reach import spinnaker_cluster

    cluster, kube = spinnaker_cluster(clients, cfg)
    return SimpleNamespace(cluster=cluster, kube=kube)


def kube_for(name: str, kubeconfig: bytes):
    """A Kube acting as Spinnaker's account (the kubeconfig's only user)."""
    from kubernetes import config as kconfig

    from ..kube.resources import Kube

    api = kconfig.new_client_from_config_dict(yaml.safe_load(kubeconfig))
    api.configuration.retries = 0
    return Kube(api, name)


def readable_resources(kube, namespace: str, discovery: dict) -> list[tuple[str, str, str]]:
    """(collection path prefix, plural, Kind) of every namespaced resource Spinnaker's account may list in
    ``namespace``, as the API server itself says (SelfSubjectRulesReview) and discovery names them."""
    _, review = kube.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                             body={"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
                                   "spec": {"namespace": namespace}})
    out: dict[tuple[str, str], tuple[str, str, str]] = {}
    for rule in (review.get("status") or {}).get("resourceRules") or []:
        if not {"list", "*"} & set(rule.get("verbs") or []):
            continue
        for group in rule.get("apiGroups") or []:
            for res in rule.get("resources") or []:
                if "/" in res or res in SKIPPED_RESOURCES or group == "metrics.k8s.io":
                    continue
                for prefix, plural, kind in _discover(kube, group, discovery):
                    if res in ("*", plural) and plural not in SKIPPED_RESOURCES:
                        out[(prefix, plural)] = (prefix, plural, kind)
    return sorted(out.values())


def _discover(kube, group: str, cache: dict) -> list[tuple[str, str, str]]:
    if group in cache:
        return cache[group]
    if group == "":
        prefix = "/api/v1"
    else:
        status, g = kube.request("GET", f"/apis/{group}", ok=(404,))
        gv = ((g or {}).get("preferredVersion") or {}).get("groupVersion") if status != 404 else None
        if not gv:
            cache[group] = []
            return []
        prefix = f"/apis/{gv}"
    status, data = kube.request("GET", prefix, ok=(404,))
    cache[group] = [(prefix, r["name"], r["kind"]) for r in (data or {}).get("resources") or []
                    if r.get("namespaced") and "/" not in r["name"] and "list" in (r.get("verbs") or [])] \
        if status != 404 else []
    return cache[group]


def scan_target(kube, target: Target, cfg: SpinbootConfig, namespaces: list[str],
                report: Report) -> dict[str, str]:
    """Classify everything Spinnaker's account can list in ``namespaces``; returns Kind -> plural (for --audit)."""
    from kubernetes.client.exceptions import ApiException

    drift = cfg.drift
    managed_by = expected_managed_by(drift.managed_by_suffix)
    discovery: dict = {}
    plural_of: dict[str, str] = {}
    for ns in namespaces:
        try:
            resources = readable_resources(kube, ns, discovery)
            listed: list[tuple[str, dict]] = []
            for prefix, plural, kind in resources:
                plural_of[kind] = plural
                status, data = kube.request("GET", f"{prefix}/namespaces/{ns}/{plural}", ok=(403, 404))
                if status == 403:
                    report.errors.append(f"target {target.name}: Spinnaker's account may not list {plural} in {ns}")
                    continue
                listed += [(kind, o) for o in (data or {}).get("items") or []]
        except ApiException as exc:
            report.errors.append(f"target {target.name}, namespace {ns}: HTTP {exc.status} {exc.reason}")
            continue
        hpa = frozenset((((o.get("spec") or {}).get("scaleTargetRef") or {}).get("kind", ""),
                         ((o.get("spec") or {}).get("scaleTargetRef") or {}).get("name", ""))
                        for k, o in listed if k == "HorizontalPodAutoscaler")
        count = 0
        for kind, obj in listed:
            if skip_reason(kind, obj, drift.ignore):
                continue
            count += 1
            f = classify(target.name, ns, kind, obj, managed_by, hpa)
            if f:
                report.findings.append(f)
        report.scanned.append({"target": target.name, "namespace": ns, "objects": count})
    return plural_of


def run(clients, cfg: SpinbootConfig, target: str | None = None, namespace: str | None = None,
        kubeconfigs: dict[str, bytes] | None = None, audit: bool = False, since: datetime | None = None) -> Report:
    """Drift in every target (or one) and allowed namespace (or one). ``kubeconfigs``: Spinnaker's, by target
    name; read from the Spinnaker cluster when None."""
    from ..render.rbac import target_manifests

    report = Report()
    targets = [t for t in cfg.targets if target in (None, t.name)]
    if kubeconfigs is None:
        live = _spinnaker_cluster(clients, cfg)
        if live.kube is None:
            report.errors.append(f"cluster {cfg.cluster.name} does not exist: nothing to compare with")
            return report
        kubeconfigs = kubeconfigs_from_secret(live, cfg)
    for t in targets:
        namespaces = [n for n in t.namespaces if namespace in (None, n)]
        if not namespaces:
            continue
        if t.name not in kubeconfigs:
            report.errors.append(f"target {t.name}: no kubeconfig minted for Spinnaker's account (spinboot apply "
                                 "mints it)")
            continue
        try:
            kube = kube_for(t.name, kubeconfigs[t.name])
            plural_of = scan_target(kube, t, cfg, namespaces, report)
        except Exception as exc:  # one unreachable target must not hide the others' drift
            report.errors.append(f"target {t.name}: {type(exc).__name__}: {getattr(exc, 'reason', exc)}")
            continue
        if audit:
            if not t.gke:
                report.errors.append(f"target {t.name}: --audit needs a GKE target (Cloud Audit Logs)")
                continue
            try:
                writes = read_audit(clients, t, namespaces, since or parse_since("24h"))
            except Exception as exc:
                report.errors.append(f"target {t.name}: reading Cloud Audit Logs failed: {exc}")
                continue
            writes = [w for w in writes if w.parts and w.parts[0] in namespaces]
            ours = {(o["metadata"].get("namespace", ""), _plural(o["kind"]), o["metadata"]["name"])
                    for docs in target_manifests(t).values() for o in docs}
            mine = attach_principals([f for f in report.findings if f.target == t.name], writes, plural_of)
            # An object already reported carries its writer's principal; a "write" finding is what managedFields
            # cannot show (a person's kubectl apply of a Spinnaker manifest, a deletion).
            seen = {(f.namespace, plural_of.get(f.kind, ""), f.name) for f in mine}
            ours |= seen
            report.findings = [f for f in report.findings if f.target != t.name] + mine + audit_findings(
                t, writes, cfg.drift.known_principals, ours)
    return report


def _plural(kind: str) -> str:
    return {"RoleBinding": "rolebindings", "ServiceAccount": "serviceaccounts", "Secret": "secrets",
            "Namespace": "namespaces", "ClusterRole": "clusterroles"}.get(kind, kind.lower() + "s")


def counts(clients, cfg: SpinbootConfig, live=None) -> dict[str, Any]:
    """Finding counts per class for ``spinboot status`` (errors as a list; never raises)."""
    try:
        kubeconfigs = kubeconfigs_from_secret(live, cfg) if live is not None and live.kube is not None else None
        r = run(clients, cfg, kubeconfigs=kubeconfigs)
        return {**{k: v for k, v in r.counts().items() if k != "write"}, "errors": r.errors}
    except Exception as exc:
        return {"errors": [f"{type(exc).__name__}: {exc}"]}


# --- the scheduled check ------------------------------------------------------------------------------------

CRONJOB_NAME = "spinboot-drift"


def cronjob_manifests(cfg: SpinbootConfig, image: str, schedule: str, config_text: str) -> list[dict]:
    """A CronJob in the Spinnaker cluster that runs ``spinboot drift --output json`` with nothing but Spinnaker's
    own kubeconfigs (the Secret spinboot minted for clouddriver, mounted read-only): it reads the targets exactly
    as clouddriver may, and needs no Kubernetes API rights of its own (no service account token is mounted) and
    no Google identity. A finding fails the Job (exit 3), which is what the alert watches."""
    from ..kube.halyard import KUBECONFIG_SECRET

    engine = getattr(cfg.spinnaker, "engine", None) or "halyard"
    if engine == "kustomize":
        namespace, secret = cfg.spinnaker.namespace, "spinboot-clouddriver-kubeconfigs"
    else:
        namespace, secret = cfg.spinnaker.halyard.namespace, KUBECONFIG_SECRET
    labels = {"app.kubernetes.io/name": CRONJOB_NAME, MANAGED_BY_LABEL: "spinboot"}
    meta = {"name": CRONJOB_NAME, "namespace": namespace, "labels": labels}
    pod = {
        "serviceAccountName": CRONJOB_NAME, "automountServiceAccountToken": False, "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "drift", "image": image,
            "args": ["drift", "-c", "/etc/spinboot/spinboot.yaml", "--kubeconfig-dir", "/var/run/spinboot/kubeconfigs",
                     "--output", "json"],
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/spinboot", "readOnly": True},
                             {"name": "kubeconfigs", "mountPath": "/var/run/spinboot/kubeconfigs", "readOnly": True},
                             {"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "config", "configMap": {"name": CRONJOB_NAME}},
                    {"name": "kubeconfigs", "secret": {"secretName": secret, "defaultMode": 0o400}},
                    {"name": "tmp", "emptyDir": {}}],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "automountServiceAccountToken": False},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"spinboot.yaml": config_text}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
         "spec": {"schedule": schedule, "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 1,
                  "failedJobsHistoryLimit": 3,
                  "jobTemplate": {"spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 86400,
                                           "template": {"metadata": {"labels": labels}, "spec": pod}}}}},
    ]
