"""``spinboot doctor``: each known failure mode of a Spinnaker-on-GKE install, checked against live state, with
its fix. The facts behind each check are in DESIGN.md "Domain facts" and docs/operations.md."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import asdict

import yaml
from google.api_core import exceptions

from ..config.model import SpinbootConfig
from ..config.names import FROZEN_HALYARD_REPOSITORY
from ..config.rules import high_memory
from ..gcp.iam import GrpcPolicy
from ..kube import access
from ..kube.resources import KubeError
from ..kube.targets import prove_least_privilege
from ..render.gcp import iam_spec, pubsub_spec
from ..render.halyard import HALYARD_NAME
from ..render.pod_paths import kubeconfig_context
from ..render.profiles import newest_kubectl
from ..render.rbac import token_secret_name
from . import contract
from .checks import Check
from .status import connect, deployment, pod_file, target_kubeconfigs

MIN_POLL_SECONDS = 300
OLD_GATE_KEYS = ("protocolHeader", "remoteIpHeader", "internalProxies")
NEW_GATE_KEYS = ("protocol-header", "remote-ip-header", "internal-proxies")


def _version(v: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", v or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _keys(d, prefix=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _keys(v, f"{prefix}{k}.")
            yield f"{prefix}{k}"


def run_checks(clients, cfg: SpinbootConfig) -> list[Check]:
    """Every check, in a fixed order; a missing cluster is the only early exit (nothing else can be read)."""
    from kubernetes import client as kclient

    from ..engine.stages import RunOptions, Stages
    from ..kube.resources import Kube

    checks: list[Check] = []
    live = connect(clients, cfg)
    if live.kube is None:
        return [Check("cluster", "fail", f"cluster {cfg.cluster.name} does not exist", "spinboot apply")]
    dep = deployment(live.halconfig)
    version = str(dep.get("version") or cfg.spinnaker.version)
    major, minor = _version(version)
    calendar = major >= 2025

    # clouddriver memory: standard nodes ran out silently (DESIGN: Memory). The rule is validate's (config.rules).
    pool = next((p for p in live.cluster.node_pools if p.name == cfg.cluster.node_pool.name), None)
    mt = pool.config.machine_type if pool else ""
    roomy = bool(mt) and high_memory(mt)
    checks.append(Check("node-memory", "ok" if roomy else "fail",
                        f"node pool {cfg.cluster.node_pool.name} runs {mt or 'nothing'}",
                        "" if roomy else "set cluster.nodePool.machineType to e2-highmem-4 (clouddriver "
                        "runs out of memory on standard nodes without failing a health check), then spinboot apply"))

    # registry polling: faster than 300 s earns 429s (DESIGN: Registry polling).
    fast = [f"{a.get('name')} every {a.get('cacheIntervalSeconds', 30)} s"
            for a in (dep.get("providers") or {}).get("dockerRegistry", {}).get("accounts", [])
            if int(a.get("cacheIntervalSeconds") or 30) < MIN_POLL_SECONDS]
    checks.append(Check("registry-polling", "fail" if fast else "ok",
                        ("polls too often: " + ", ".join(fast)) if fast else "registry accounts poll every ≥300 s",
                        f"set cacheIntervalSeconds: 600 on the registry and spinboot apply; use Pub/Sub triggers"
                        if fast else ""))

    # gate-local keys the running version ignores (DESIGN: Gate behind Google's load balancer).
    gate = yaml.safe_load(pod_file(live, cfg, ".hal/default/profiles/gate-local.yml") or "") or {}
    keys = set(_keys(gate))
    ignored = sorted(k for k in keys if k.split(".")[-1] in (OLD_GATE_KEYS if (calendar or (major, minor) >= (1, 31))
                                                               else NEW_GATE_KEYS + ("forward-headers-strategy",)))
    checks.append(Check("gate-keys", "fail" if ignored else "ok",
                        (f"Spinnaker {version} ignores {', '.join(ignored)} in gate-local.yml") if ignored
                        else "gate-local.yml uses keys this version reads",
                        "remove the hand edit from ~/.hal/default/profiles/gate-local.yml and run spinboot halyard "
                        "apply --force (spinboot renders the keys by version)" if ignored else ""))

    # Halyard image on the frozen registry (DESIGN: Versions).
    sts = live.kube.get(f"/apis/apps/v1/namespaces/{cfg.spinnaker.halyard.namespace}/statefulsets/{HALYARD_NAME}") or {}
    images = [c.get("image", "") for c in (((sts.get("spec") or {}).get("template") or {}).get("spec") or {})
              .get("containers", [])]
    frozen = [i for i in images if i.startswith(FROZEN_HALYARD_REPOSITORY)]
    checks.append(Check("halyard-image", "fail" if frozen or not images else "ok",
                        f"Halyard image {', '.join(images) or 'missing'}",
                        "set spinnaker.halyard.image to ghcr.io/spinnaker/halyard:<version> (the old registry is "
                        "frozen) and spinboot apply" if frozen or not images else ""))

    # Spinnaker 2026.1+ by Halyard: works, unsupported upstream.
    checks.append(Check("halyard-supported", "warn" if (major, minor) >= (2026, 1) else "ok",
                        f"Spinnaker {version} deployed by Halyard" + (" (unsupported upstream since 2026.1)"
                                                                      if (major, minor) >= (2026, 1) else ""),
                        "plan the move to the kustomize install, which upstream supports from 2026.1 (Halyard still "
                        "works meanwhile)"
                        if (major, minor) >= (2026, 1) else ""))

    # Subscriptions and their grants (DESIGN: Pub/Sub), as gcp/pubsub.yaml and gcp/iam.yaml list them.
    grants = iam_spec(cfg)
    for sub in pubsub_spec(cfg).subscriptions:
        path, cid = sub.name, f"subscription:{sub.registry}"
        try:
            clients.subscriber.get_subscription(request={"subscription": path})
        except exceptions.NotFound:
            checks.append(Check(cid, "fail", f"{path} is missing (echo gives up for good)",
                                "spinboot pubsub apply, then restart echo"))
            continue
        pol = GrpcPolicy(clients.subscriber, path).get()
        lacking = [f"{m} lacks {b.role}" for b in grants.for_service("pubsub", path) for m in b.members
                   if not any(lb.role == b.role and m in lb.members for lb in pol.bindings)]
        checks.append(Check(cid, "fail" if lacking else "ok",
                            f"{path} exists" + (", but " + "; ".join(lacking) if lacking else ""),
                            "spinboot pubsub apply" if lacking else ""))

    # The Spinnaker contract, Google side: every call a service makes as Spinnaker's service account.
    checks += contract.google_checks(clients.troubleshooter, cfg)

    # Targets: credentials, least privilege, token Secret, version skew.
    stages = Stages(cfg, clients, RunOptions(dry_run=True))
    minted = target_kubeconfigs(live, cfg)
    spin_minor = _version(live.cluster.current_master_version)
    for t in cfg.targets:
        try:
            admin = Kube(stages.target_cluster(t).api_client(), t.name)
        except Exception as exc:
            checks.append(Check(f"target:{t.name}", "fail", f"cannot reach: {exc}",
                                f"check target {t.name} in the file (gke: project, location, cluster; or kubeconfig: "
                                f"path, context) and your access to that cluster, then spinboot rbac apply --cluster "
                                f"{t.name}"))
            continue
        sa = t.service_account
        secret = admin.get(f"/api/v1/namespaces/{sa.namespace}/secrets/{token_secret_name(t)}")
        has = bool(secret and (secret.get("data") or {}).get("token"))
        checks.append(Check(f"token-secret:{t.name}", "ok" if has else "fail",
                            f"{sa.namespace}/{token_secret_name(t)} " + ("present" if has else "missing or empty"),
                            "" if has else f"spinboot rbac apply --cluster {t.name}, then spinboot halyard apply"))
        # Credentials: call the target with the minted kubeconfig.
        kc = minted.get(t.name)
        cred_ok, why = False, "no minted kubeconfig in the Secret"
        if kc:
            fd, p = tempfile.mkstemp()   # mode 0600: it holds the account's token
            try:
                os.write(fd, kc)
                os.close(fd)
                # Reached as clouddriver reaches it: through the kubeconfig, by spinboot.kube.access.
                api = access.from_kubeconfig(t.name, p, kubeconfig_context(t.name)).api_client()
                kclient.AppsV1Api(api).list_namespaced_deployment(t.namespaces[0], limit=1)
                cred_ok, why = True, "minted kubeconfig works"
            except Exception as exc:
                why = f"minted kubeconfig fails: {getattr(exc, 'status', '')} {getattr(exc, 'reason', exc)}"
            finally:
                os.unlink(p)
        checks.append(Check(f"credentials:{t.name}", "ok" if cred_ok else "fail", why,
                            "" if cred_ok else f"spinboot rbac apply --cluster {t.name} && spinboot halyard apply"))
        # Least privilege: the very proof apply asks (spinboot.kube.targets), always asked here.
        try:
            proof = prove_least_privilege(admin, t)
            checks.append(Check(f"privilege:{t.name}", "ok", f"least privilege holds ({len(proof)} access reviews)"))
        except KubeError as exc:
            checks.append(Check(f"privilege:{t.name}", "fail", str(exc),
                                "remove the RoleBindings/ClusterRoleBindings to the account that spinboot did not make "
                                f"(kubectl get rolebindings,clusterrolebindings -A -o wide | grep {sa.name}), then "
                                f"spinboot rbac apply --cluster {t.name}"))
        # The Spinnaker contract, Kubernetes side: every verb clouddriver needs, in every listed namespace.
        checks += contract.rbac_checks(admin, t)
        _, ver = admin.request("GET", "/version")
        tv = (int(ver.get("major", 0)), int(re.sub(r"\D", "", ver.get("minor", "0")) or 0))
        kubectl = newest_kubectl(version)
        if kubectl:
            # The kubectl clouddriver runs is known per release (releases/guardrails.yaml); kubectl supports servers
            # within one minor (https://kubernetes.io/releases/version-skew-policy/#kubectl).
            kminor = int(kubectl.rsplit(".", 1)[1])
            skew = abs(tv[1] - kminor) if tv[0] == 1 else 99
            checks.append(Check(f"version-skew:{t.name}", "warn" if skew > 1 else "ok",
                                f"clouddriver runs {kubectl} (the newest in its {version} image) against a "
                                f"{tv[0]}.{tv[1]} server",
                                "upgrade Spinnaker to a release whose clouddriver ships a kubectl within one minor "
                                "of the target (releases/guardrails.yaml)" if skew > 1 else ""))
        else:
            skew = abs(tv[1] - spin_minor[1]) if tv[0] == spin_minor[0] else 99
            checks.append(Check(f"version-skew:{t.name}", "warn" if skew > 1 else "ok",
                                f"target {tv[0]}.{tv[1]} vs Spinnaker cluster {spin_minor[0]}.{spin_minor[1]} (no "
                                f"record of clouddriver's kubectl for {version}; proxy check)",
                                "upgrade the older cluster so they are within one minor" if skew > 1 else ""))
    # Deployments made around Spinnaker (docs/drift.md): not a failure of the install, so a warning at most.
    from .drift import counts as drift_counts

    dr = drift_counts(clients, cfg, live)
    found = {k: v for k, v in dr.items() if k != "errors" and v}
    checks.append(Check("drift", "warn" if found or dr.get("errors") else "ok",
                        "; ".join(dr.get("errors") or []) or (", ".join(f"{v} {k}" for k, v in found.items())
                                                              or "nothing deployed around Spinnaker"),
                        "spinboot drift -c FILE shows each object and its writer (docs/drift.md)"
                        if found or dr.get("errors") else ""))
    return checks


def as_dicts(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]
