"""``hal deploy apply`` for the sandbox: Spinnaker's Deployments and Services, the way Halyard's Kubernetes V2
distributed deployer names and labels them, applied to the deployment account's cluster.

Nothing runs in them (the sandbox's nodes are kwok's), but a test can see what Halyard would have deployed:
which services, images, sizes, service accounts, and (in the ConfigMap ``spinnaker-profiles``) the
``*-local.yml`` profiles. Writes use server-side apply with field manager ``halyard``.

Before deploying, as Halyard: the whole deployment is validated unless ``--no-validate``
(DeploymentController.deploy; spinboot/sandbox/hal/validate.py), and every service's profile is generated
(profiles.py; a kubeconfig that cannot be read fails here even with ``--no-validate``). After the manifests are
applied, the sandbox plays what the services do at startup with their own identity (spinboot/sandbox/spinnaker/
play.py): a refusal fails ``hal deploy apply`` naming the service and the call, and the pods of that service are
reported crash-looping (container waiting in CrashLoopBackOff, not Ready), so its Deployment never becomes
available, as on GKE.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from typing import Any

from spinboot.render.halgrammar import Invocation
from spinboot.sandbox.hal import profiles as hal_profiles
from spinboot.sandbox.hal import validate
from spinboot.sandbox.hal.halconfig import HalFailure, Halconfig

FIELD_MANAGER = "halyard"
# Ports from Halyard's service definitions (halyard-deploy .../services/v1/*Service.java).
PORTS = {"clouddriver": 7002, "deck": 9000, "echo": 8089, "front50": 8080, "gate": 8084, "igor": 8088,
         "orca": 8083, "rosco": 8087, "redis": 6379}
# Halyard deploys redis first: the other services need it at startup.
ORDER = ["redis", "clouddriver", "front50", "orca", "echo", "igor", "rosco", "gate", "deck"]
REDIS_IMAGE = "gcr.io/kubernetes-spinnaker/redis-cluster:v2"   # Halyard's default Redis image
PROFILES_CONFIGMAP = "spinnaker-profiles"
_CALVER = re.compile(r"^(\d{4})\.(\d+)\.(\d+)")


def image(service: str, version: str) -> str:
    """Image for a service: ghcr.io/spinnaker from 2026.1.0 on (DESIGN.md, domain facts), else the frozen registry."""
    if service == "redis":
        return REDIS_IMAGE
    m = _CALVER.match(version or "")
    if m and (int(m.group(1)), int(m.group(2))) >= (2026, 1):
        return f"ghcr.io/spinnaker/{service}:{version}"
    return f"us-docker.pkg.dev/spinnaker-community/docker/{service}:{version}"


def select_services(inv: Invocation) -> list[str]:
    """Services to apply, honouring ``--service-names`` / ``--exclude-service-names`` (``gate`` or ``spin-gate``)."""
    def names(flag: str) -> list[str]:
        out = []
        for n in inv.options.get(flag) or []:
            n = n.removeprefix("spin-")
            if n not in PORTS:
                raise HalFailure(f'Unknown Spinnaker service "{n}" in {flag}; known: {", ".join(sorted(PORTS))}.')
            out.append(n)
        return out
    only, exclude = names("--service-names"), names("--exclude-service-names")
    return [s for s in ORDER if (not only or s in only) and s not in exclude]


def _labels(service: str, version: str) -> dict[str, str]:
    return {"app": "spin", "cluster": f"spin-{service}",
            "app.kubernetes.io/name": service, "app.kubernetes.io/managed-by": "halyard",
            "app.kubernetes.io/part-of": "spinnaker", "app.kubernetes.io/version": version}


def _sizing(dep: dict[str, Any], service: str) -> tuple[dict[str, Any], int]:
    """Container resources and replicas from ``customSizing``: ``<service>`` is the container's sizing,
    ``spin-<service>`` the pod's (Halyard's ComponentSizingEditCommand); the container's wins."""
    custom = (dep.get("deploymentEnvironment") or {}).get("customSizing") or {}
    pod, container = custom.get(f"spin-{service}") or {}, custom.get(service) or {}
    resources: dict[str, Any] = {}
    for kind in ("requests", "limits"):
        merged = {**{k: v for k, v in (pod.get(kind) or {}).items() if v is not None},
                  **{k: v for k, v in (container.get(kind) or {}).items() if v is not None}}
        if merged:
            resources[kind] = {k: str(v) for k, v in merged.items()}
    replicas = container.get("replicas") or pod.get("replicas") or 1
    return resources, int(replicas)


def manifests(dep: dict[str, Any], profiles: dict[str, str], services: list[str],
              service_accounts: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every object ``hal deploy apply`` writes for ``services`` (pure, for tests). ``service_accounts``: service
    -> the Kubernetes service account its pods run as (service-settings ``kubernetes.serviceAccountName``, which
    Halyard's KubernetesV2Service puts into the pod spec, podSpec.yml)."""
    env = dep.get("deploymentEnvironment") or {}
    ns = env.get("location") or "spinnaker"
    version = str(dep.get("version") or "")
    profiles_sha = hashlib.sha256(json.dumps(profiles, sort_keys=True).encode()).hexdigest()[:16]
    objs: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": PROFILES_CONFIGMAP, "namespace": ns,
                     "labels": {"app": "spin", "app.kubernetes.io/managed-by": "halyard"}},
        "data": dict(sorted(profiles.items())),
    }]
    for svc in services:
        labels = _labels(svc, version)
        selector = {"app": "spin", "cluster": f"spin-{svc}"}
        resources, replicas = _sizing(dep, svc)
        container: dict[str, Any] = {"name": svc, "image": image(svc, version),
                                     "ports": [{"containerPort": PORTS[svc], "protocol": "TCP"}]}
        if resources:
            container["resources"] = resources
        objs.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"spin-{svc}", "namespace": ns, "labels": labels,
                         "annotations": {"moniker.spinnaker.io/application": "spin",
                                         "moniker.spinnaker.io/cluster": svc}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": labels,
                                               "annotations": {"spinboot.io/profiles-sha256": profiles_sha}},
                                  "spec": {"containers": [container], "terminationGracePeriodSeconds": 60}}},
        })
        sa = (service_accounts or {}).get(svc)
        if sa:
            objs[-1]["spec"]["template"]["spec"]["serviceAccountName"] = sa
        objs.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"spin-{svc}", "namespace": ns, "labels": labels},
            "spec": {"type": "ClusterIP", "selector": selector,
                     "ports": [{"name": "http" if svc != "redis" else "redis", "port": PORTS[svc],
                                "targetPort": PORTS[svc], "protocol": "TCP"}]},
        })
    return objs


def read_profiles(cfg: Halconfig, deployment: str) -> dict[str, str]:
    d = cfg.dir / deployment / "profiles"
    return {p.name: p.read_text() for p in sorted(d.glob("*.yml"))} if d.is_dir() else {}


def client_for(cfg: Halconfig, dep: dict[str, Any]) -> Any:
    """An ApiClient for the deployment account: its kubeconfig file and context, else this process's own
    credentials (``KUBECONFIG`` or in-cluster), as Halyard's daemon would use."""
    from kubernetes import client, config

    account = _account(dep)
    kubeconfig = cfg.resolve_file(account.get("kubeconfigFile"))
    context = account.get("context")
    if kubeconfig:
        return config.new_client_from_config(config_file=str(kubeconfig), context=context)
    conf = client.Configuration()
    if account.get("serviceAccount") and os.environ.get(KUBELET_ENV):
        return pod_identity_client()
    if account.get("serviceAccount"):
        config.load_incluster_config(client_configuration=conf)
    else:
        try:
            config.load_kube_config(context=context, client_configuration=conf)
        except config.ConfigException:
            config.load_incluster_config(client_configuration=conf)
    return client.ApiClient(conf)


# In the sandbox the Halyard "pod" is a local process on a kwok node, so nothing mounts its service account
# token. The sandbox hands the stand-in what a kubelet has instead: node credentials and the pod's name. With
# them it asks the API server for a token of the pod's own service account (TokenRequest, as the kubelet does
# for projected tokens), so `--service-account true` accounts act with exactly the pod's RBAC.
KUBELET_ENV = "SPINBOOT_SANDBOX_KUBELET_KUBECONFIG"
POD_ENV = "SPINBOOT_SANDBOX_POD"  # namespace/name


def pod_identity_client() -> Any:
    from kubernetes import client, config

    admin = config.new_client_from_config(config_file=os.environ[KUBELET_ENV])
    namespace, name = os.environ[POD_ENV].split("/", 1)
    from spinboot.sandbox.spinnaker.sandboxenv import token_client

    sa = client.CoreV1Api(admin).read_namespaced_pod(name, namespace).spec.service_account_name or "default"
    return token_client(admin, namespace, sa)


def _account(dep: dict[str, Any]) -> dict[str, Any]:
    env = dep.get("deploymentEnvironment") or {}
    name = env.get("accountName")
    if not name:
        raise HalFailure("No account name supplied for the deployment environment "
                       "(hal config deploy edit --account-name).")
    for a in ((dep.get("providers") or {}).get("kubernetes") or {}).get("accounts") or []:
        if a.get("name") == name:
            return a
    raise HalFailure(f'Problems in {dep.get("name")}.deploymentEnvironment: Account "{name}" is not a configured '
                   "kubernetes account.")


def _preflight(dep: dict[str, Any]) -> None:
    if not dep.get("version"):
        raise HalFailure("In order to deploy Spinnaker, a version must be specified (hal config version edit "
                       "--version).")
    kind = str((dep.get("deploymentEnvironment") or {}).get("type") or "LocalDebian")
    if kind.lower() != "distributed":
        raise HalFailure(f'Deployment type "{kind}" is not supported by the sandbox stand-in (only Distributed).')
    _account(dep)


def _apply_one(api: Any, obj: dict[str, Any]) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    kw = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": "application/apply-patch+yaml"}
    name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
    if obj["kind"] == "Deployment":
        call = client.AppsV1Api(api).patch_namespaced_deployment
    elif obj["kind"] == "Service":
        call = client.CoreV1Api(api).patch_namespaced_service
    elif obj["kind"] == "ConfigMap":
        call = client.CoreV1Api(api).patch_namespaced_config_map
    else:  # pragma: no cover
        raise ValueError(obj["kind"])
    try:
        call(name, ns, obj, **kw)
    except ApiException as e:
        # Clients before 35 cannot serialise a dict as apply-patch+yaml ("Cannot prepare a request message",
        # status 0) but send a str as is; JSON is YAML.
        if e.status not in (0, None):
            raise
        call(name, ns, json.dumps(obj), **kw)


def _ensure_namespace(api: Any, ns: str) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)
    try:
        core.read_namespace(ns)
    except ApiException as e:
        if e.status == 404:
            core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        elif e.status != 403:             # may not read namespaces: assume it exists, the applies will tell
            raise


def _wait(api: Any, ns: str, services: list[str], timeout_s: float) -> list[str]:
    from kubernetes import client

    apps = client.AppsV1Api(api)
    deadline = time.monotonic() + timeout_s
    pending = list(services)
    while pending and time.monotonic() < deadline:
        for svc in list(pending):
            st = apps.read_namespaced_deployment_status(f"spin-{svc}", ns).status
            want = apps.read_namespaced_deployment(f"spin-{svc}", ns).spec.replicas or 0
            if (st.ready_replicas or 0) >= want:
                pending.remove(svc)
        if pending:
            time.sleep(1)
    return pending


def apply(cfg: Halconfig, inv: Invocation, out: Any, api_client: Any = None) -> int:
    """Run ``hal deploy apply``; ``api_client`` replaces the account's credentials (tests, the sandbox)."""
    from kubernetes.client.rest import ApiException

    dep = cfg.deployment(inv.options.get("--deployment"))
    out.step("Get current deployment")
    if not inv.options.get("--no-validate"):
        _preflight(dep)
        # DeploymentController.deploy: the deployment is validated before anything is deployed
        problems = validate.deployment(dep, cfg)
        if problems.failing:
            raise validate.ValidationFailed(problems, "Failed to deploy Spinnaker.")
        if problems.items:
            out.stderr.write(problems.format() + "\n")
    # A service whose settings say skipLifeCycleManagement (e.g. an external Redis with overrideBaseUrl) is not
    # deployed by Halyard (ServiceSettings.skipLifeCycleManagement).
    services = [s for s in select_services(inv)
                if not hal_profiles.service_settings(cfg, dep["name"], s).get("skipLifeCycleManagement")]
    spinnaker = hal_profiles.spinnaker_config(cfg, dep, services)
    out.step("Prep deployment")
    if inv.options.get("--prep-only"):
        return 0
    out.result("Preparation complete... deploying Spinnaker")
    api = api_client or client_for(cfg, dep)
    ns = spinnaker.namespace
    accounts = {s: c.service_account for s, c in spinnaker.services.items() if c.service_account != "default"}
    try:
        _ensure_namespace(api, ns)
        for obj in manifests(dep, read_profiles(cfg, dep["name"]), services, accounts):
            _apply_one(api, obj)
            if obj["kind"] == "Service":
                out.step(f"Deploy {obj['metadata']['name']}")
    except ApiException as e:
        out.step("Apply deployment", ok=False)
        raise HalFailure(f"Failed to deploy Spinnaker: ({e.status}) {e.reason}: {_api_message(e)}") from e
    _startup_play(spinnaker, api, out)
    if inv.options.get("--wait-for-completion"):
        minutes = inv.options.get("--wait-for-completion-timeout-minutes") or 10
        left = _wait(api, ns, services, minutes * 60)
        if left:
            raise HalFailure(f"Timed out waiting for {', '.join('spin-' + s for s in left)} to become ready.")
    out.step("Apply deployment")
    out.result("Run `hal deploy connect` to connect to Spinnaker.")
    return 0


def _api_message(e: Any) -> str:
    try:
        return json.loads(e.body).get("message") or str(e.body)
    except (TypeError, ValueError):
        return str(e.body)


MAX_REFUSALS_SHOWN = 8


def _startup_play(spinnaker: Any, api: Any, out: Any) -> None:
    """Play the services' startup (spinboot/sandbox/spinnaker/play.py); on refusals, crash-loop their pods and
    fail with every service and call named."""
    from spinboot.sandbox.spinnaker import play as startup
    from spinboot.sandbox.spinnaker.sandboxenv import SandboxEnv

    env = SandboxEnv.from_environ()
    kubelet = env.kubelet_api()             # the kubelet reports container states; tests fall back to the deployer
    result = startup.play(spinnaker, env, spinnaker_api=kubelet or api)
    counts: dict[str, int] = {}
    for c in result.calls:
        counts[c.split(":", 1)[0]] = counts.get(c.split(":", 1)[0], 0) + 1
    played = sorted(counts)
    summary = ", ".join(f"{s}: {n} call{'s' if n != 1 else ''}" for s, n in sorted(counts.items()))
    out.step(f"Start Spinnaker's services ({summary or 'nothing to play'})", ok=not result.refusals)
    for note in result.notes:
        out.raw(f"  (sandbox) {note}")
    failed = set(result.failed_services())
    for svc in played:
        if svc not in failed:
            try:
                startup.mark_recovered(kubelet or api, spinnaker.namespace, svc)   # a fixed crash loop recovers
            except Exception:  # noqa: BLE001 - nothing was marked, or the pods are gone
                pass
    if not result.refusals:
        return
    lines = []
    for svc in result.failed_services():
        mine = [r for r in result.refusals if r.service == svc]
        lines += [f"  {r.message()}" for r in mine[:MAX_REFUSALS_SHOWN]]
        if len(mine) > MAX_REFUSALS_SHOWN:
            lines.append(f"  ... and {len(mine) - MAX_REFUSALS_SHOWN} more refusals for spin-{svc}")
        try:
            startup.mark_crash_looping(kubelet or api, spinnaker.namespace, svc,
                                       "\n".join(r.message() for r in mine))
        except Exception as exc:  # noqa: BLE001 - the refusal stands; say why the pods could not show it
            lines.append(f"  (could not mark spin-{svc}'s pods not ready: {exc})")
    n = len(result.refusals)
    raise HalFailure(f"Spinnaker's services would not start cleanly ({n} refusal{'s' if n != 1 else ''}, "
                     f"{', '.join('spin-' + s for s in result.failed_services())} left not ready):\n"
                     + "\n".join(lines))
