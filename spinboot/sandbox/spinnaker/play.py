"""The startup play: what Spinnaker's services do when they start, done in the sandbox with their identity.

Input: each service's configuration as the service reads it (config.py), whichever engine produced it; the
sandbox's endpoints and identities (sandboxenv.py); a client for Spinnaker's own cluster. Output: the calls made
and every refusal, each naming the service, the call and the server's answer. A refusal is what would make the
service crash-loop (front50, echo) or silently lose a capability (clouddriver) on GKE.

- front50 (front50-gcs GcsStorageService.ensureBucketExists, @PostConstruct): ``storage.get(bucket)``, creating
  the bucket when it is missing (a refusal: crash loop); then what it does with objects under ``rootFolder``: list
  and read (the cache load, listObjectKeys / loadObject), insert, also over an existing object (storeObject),
  update the last-modified marker's metadata (updateLastModified) and delete (deleteObject). Credentials: without
  ``jsonPath``, GoogleCredentials.getApplicationDefault (GcsConfig.gcsCredentials), i.e. Workload Identity.
- echo (echo-pubsub-google GooglePubsubSubscriber.start; echo-pubsub-core PubsubMessageHandler): every message
  goes through Redis ("Redis not enabled, pubsub requires redis"), and each ``pubsub.google.subscriptions[]`` is
  subscribed with the pod's default credentials when ``jsonPath`` is unset (GooglePubsubCredentialsProvider). The
  play pulls once without acknowledging (what is pulled is released at once) as the pod's identity.
- clouddriver: every Kubernetes call halconfig/contract.yaml lists for it (services.clouddriver.kubernetes: verbs
  per group and resource, scope each-namespace / first-namespace, condition ``always``), in each namespace of each
  account, with the account's own credentials (kubeconfig file and context, or for ``serviceAccount: true`` the
  pod's token). Namespaces are the configured list (KubernetesCredentials.getDeclaredNamespaces:
  ``if (!namespaces.isEmpty()) result = namespaces``; only without one does it list namespaces); ``kinds`` and
  ``omitKinds`` limit the caching lists only. Reads are real; writes are server-side dry runs; calls on one object
  name an object that does not exist, since the API server authorises before it looks (404: allowed, 403:
  refused). Docker-registry accounts run their password command in clouddriver's image
  (DockerBearerTokenService.getBasicAuth) and list tags (DockerRegistryClient.getTags).
Cited sources: spinnaker/front50@ceda49e0, spinnaker/echo@989e20b5, spinnaker/clouddriver@2f5e98f0.
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

import yaml

from ...render.yamlio import load_data
from .config import ServiceConfig, SpinnakerConfig
from .docker import RegistryClient, RegistryError, resolve_password
from .sandboxenv import IdentityError, SandboxEnv

CLOUDDRIVER_IMAGE = "clouddriver"
PROBE_NAME = "spinboot-startup-play"
CALL_TIMEOUT_S = 15
PARALLEL_CALLS = 4          # clouddriver's caching agents run side by side too


@dataclass
class Refusal:
    service: str            # "front50"
    call: str               # "storage.buckets.get on gs://acme-spinnaker"
    reason: str             # the server's answer
    effect: str = "would crash-loop"

    def message(self) -> str:
        return f"spin-{self.service} {self.effect}: {self.call}: {self.reason}"


@dataclass
class PlayResult:
    calls: list[str] = field(default_factory=list)       # "front50: storage.buckets.get on gs://b: ok"
    refusals: list[Refusal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)       # what could not be played here, and why

    def failed_services(self) -> list[str]:
        return list(dict.fromkeys(r.service for r in self.refusals))


class _Play:
    def __init__(self, config: SpinnakerConfig, env: SandboxEnv, spinnaker_api: Any, log: Callable[[str], None]):
        self.config, self.env, self.spinnaker_api, self.log = config, env, spinnaker_api, log
        self.result = PlayResult()

    def ok(self, service: str, call: str) -> None:
        self.result.calls.append(f"{service}: {call}: ok")

    def refuse(self, service: str, call: str, reason: str, effect: str = "would crash-loop") -> None:
        r = Refusal(service, call, " ".join(str(reason).split()), effect)
        self.result.calls.append(f"{service}: {call}: REFUSED")
        self.result.refusals.append(r)
        self.log(r.message())

    def note(self, text: str) -> None:
        self.result.notes.append(text)

    def google_token(self, svc: ServiceConfig, call: str) -> tuple[str, str] | None:
        """The pod's Workload Identity token (the metadata server refuses when the binding is missing)."""
        try:
            return self.env.token(self.config.namespace, svc.service_account)
        except IdentityError as exc:
            self.refuse(svc.name, f"{call} (Google credentials of {self.config.namespace}/{svc.service_account} "
                        "from the metadata server)", str(exc))
            return None


# -- front50 ------------------------------------------------------------------------------------------------------
def _front50(p: _Play, svc: ServiceConfig) -> None:
    gcs = svc.get("spinnaker.gcs") or {}
    if not gcs.get("enabled"):
        p.note("front50: its persistent store is not GCS; only GCS is played in the sandbox")
        return
    bucket_name = gcs.get("bucket")
    if not bucket_name:
        p.refuse("front50", "spinnaker.gcs.bucket", "no bucket configured (hal config storage gcs edit --bucket)")
        return
    if gcs.get("jsonPath"):
        p.note(f"front50: spinnaker.gcs.jsonPath is set ({gcs['jsonPath']}): a key file, not Workload Identity; "
               "the sandbox plays Workload Identity only")
        return
    if not p.env.storage_url:
        p.refuse("front50", f"storage.buckets.get on gs://{bucket_name}", "no Cloud Storage endpoint reachable "
                 "(SPINBOOT_SANDBOX_ENDPOINTS has no storage)")
        return
    got = p.google_token(svc, f"storage.buckets.get on gs://{bucket_name}")
    if got is None:
        return
    token, email = got
    from google.api_core import exceptions as gexc
    from google.cloud import storage
    from google.oauth2.credentials import Credentials

    who = f" for {email}" if email else ""
    client = storage.Client(project=gcs.get("project") or None, credentials=Credentials(token),
                            client_options={"api_endpoint": p.env.storage_url})

    from google.api_core import retry as gretry

    transient = gretry.Retry(predicate=gretry.if_transient_error, initial=0.2, maximum=2.0, timeout=30)

    def attempt(call: str, fn: Callable[[], Any], effect: str = "would fail") -> tuple[bool, Any]:
        try:
            out = transient(fn)()
        except gexc.GoogleAPICallError as exc:
            p.refuse("front50", call, f"denied{who} ({exc.code} {exc.message})" if exc.code in (401, 403)
                     else f"{exc.code} {exc.message}", effect)
            return False, None
        p.ok("front50", call)
        return True, out

    # GcsStorageService.ensureBucketExists (@PostConstruct): storage.get(bucket); null -> storage.create(bucket)
    call = f"storage.buckets.get on gs://{bucket_name}"
    try:
        bucket = transient(client.get_bucket)(bucket_name, timeout=CALL_TIMEOUT_S)
        p.ok("front50", call)
    except gexc.NotFound:
        p.ok("front50", call + " (404: front50 creates it)")
        created, bucket = attempt(f"storage.buckets.create of gs://{bucket_name}",
                                  lambda: client.create_bucket(bucket_name, location=gcs.get("bucketLocation") or None,
                                                               timeout=CALL_TIMEOUT_S), "would crash-loop")
        if not created:
            return
    except gexc.GoogleAPICallError as exc:
        p.refuse("front50", call, f"denied{who} ({exc.code} {exc.message})" if exc.code in (401, 403)
                 else f"{exc.code} {exc.message}")
        return
    # Then what front50 does with its objects, under rootFolder: the cache load lists and reads
    # (listObjectKeys, loadObject); a save inserts, over an existing item too (storeObject: the replacement needs
    # storage.objects.delete), and touches the last-modified marker's metadata (updateLastModified: objects.update);
    # deleting an item deletes (deleteObject). Played on a probe object of its own, removed at the end.
    root = str(gcs.get("rootFolder") or "front50").strip("/")
    name = f"{root}/{PROBE_NAME}/{uuid.uuid4().hex}/specification.json"
    blob = bucket.blob(name)
    where = f"gs://{bucket_name}/{root}/"
    body = json.dumps({"id": PROBE_NAME, "lastModified": int(time.time() * 1000)})
    attempt(f"storage.objects.list under {where} (cache load)",
            lambda: list(client.list_blobs(bucket_name, prefix=root + "/", max_results=1, timeout=CALL_TIMEOUT_S)))
    ok, _ = attempt(f"storage.objects.create under {where} (save)", lambda: blob.upload_from_string(
        body, content_type="application/json", timeout=CALL_TIMEOUT_S))
    if not ok:
        return
    attempt(f"storage.objects.create over an existing object under {where} (save of an existing item: "
            "storage.objects.delete)", lambda: blob.upload_from_string(body, content_type="application/json",
                                                                      timeout=CALL_TIMEOUT_S))

    def touch() -> None:
        blob.metadata = {"spinboot-probe": "1"}
        blob.patch(timeout=CALL_TIMEOUT_S)

    attempt(f"storage.objects.update under {where} (last-modified marker)", touch)
    ok, data = attempt(f"storage.objects.get under {where} (cache load)",
                       lambda: blob.download_as_bytes(timeout=CALL_TIMEOUT_S))
    if ok and data.decode() != body:
        p.refuse("front50", f"storage.objects.get of gs://{bucket_name}/{name}", "read back different content",
                 "would fail")
    attempt(f"storage.objects.delete under {where} (delete)", lambda: blob.delete(timeout=CALL_TIMEOUT_S))


# -- echo ---------------------------------------------------------------------------------------------------------
def _pubsub_retry():
    from google.api_core import retry as gretry

    return gretry.Retry(predicate=gretry.if_transient_error, initial=0.2, maximum=2.0, timeout=30)


_PUBSUB_RETRY = _pubsub_retry()


def _echo(p: _Play, svc: ServiceConfig) -> None:
    google = svc.get("pubsub.google") or {}
    subs = list(google.get("subscriptions") or [])
    if not (svc.get("pubsub.enabled") and google.get("enabled") and subs):
        p.note("echo: no Google Pub/Sub subscriptions enabled; nothing to play")
        return
    # PubsubMessageHandler.Factory: every pub/sub message is de-duplicated in Redis; without it echo refuses.
    if svc.get("redis.enabled") is False:
        p.refuse("echo", "pubsub message handling", "Redis not enabled, pubsub requires redis. Please enable.")
        return
    _redis_reachable(p, svc)
    if not p.env.pubsub_host:
        p.refuse("echo", "Pub/Sub subscribe", "no Pub/Sub endpoint reachable (SPINBOOT_SANDBOX_ENDPOINTS has no pubsub)")
        return
    got = p.google_token(svc, "pubsub.subscriptions.consume")
    if got is None:
        return
    token, email = got
    import grpc
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    channel = grpc.insecure_channel(p.env.pubsub_host)
    try:
        client = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
        # The emulator channel carries no credentials: attach the pod's token as the real client would.
        metadata = [("authorization", f"Bearer {token}")]
        for sub in subs:
            label = sub.get("name") or sub.get("subscriptionName")
            if sub.get("jsonPath"):
                p.note(f"echo: subscription {label} uses a key file (jsonPath); the sandbox plays Workload Identity")
                continue
            path = f"projects/{sub.get('project')}/subscriptions/{sub.get('subscriptionName')}"
            call = f"pubsub.subscriptions.consume on {path} (subscription {label})"
            try:
                with warnings.catch_warnings():   # deprecated, but the emulator would otherwise hold the pull open
                    warnings.simplefilter("ignore", DeprecationWarning)
                    # The subscriber client retries UNAVAILABLE and the like; so does the play.
                    resp = client.pull(subscription=path, max_messages=1, return_immediately=True,
                                       timeout=CALL_TIMEOUT_S, metadata=metadata, retry=_PUBSUB_RETRY)
            except gexc.NotFound as exc:
                p.refuse("echo", call, f"the subscription does not exist; echo gives up on it for good ({exc.message})")
                continue
            except gexc.GoogleAPICallError as exc:
                p.refuse("echo", call, f"denied for {email} ({exc.code} {exc.message})"
                         if exc.code in (401, 403) or "PERMISSION" in str(exc.grpc_status_code or "")
                         else f"{exc.code} {exc.message}")
                continue
            if resp.received_messages:
                # Not ours to consume: hand them back at once (an ack deadline of 0 is a nack).
                try:
                    client.modify_ack_deadline(subscription=path, ack_ids=[m.ack_id for m in resp.received_messages],
                                               ack_deadline_seconds=0, timeout=CALL_TIMEOUT_S, metadata=metadata)
                except gexc.GoogleAPICallError as exc:
                    p.refuse("echo", f"pubsub.subscriptions.consume (modifyAckDeadline) on {path}",
                             f"{exc.code} {exc.message}")
                    continue
            p.ok("echo", call)
    finally:
        channel.close()


def _redis_reachable(p: _Play, svc: ServiceConfig) -> None:
    url = svc.get("redis.connection") or svc.get("services.redis.baseUrl")
    if not url:
        p.refuse("echo", "redis connection", "no Redis configured (services.redis.baseUrl is empty)")
        return
    host = urlsplit(str(url)).hostname or ""
    name, _, rest = host.partition(".")
    if name != "spin-redis":
        p.note(f"echo: external Redis {url} is not reachable from the sandbox; assumed up")
        return
    namespace = rest.split(".")[0] if rest else p.config.namespace
    if p.spinnaker_api is None:
        p.note("echo: no client for Spinnaker's cluster; spin-redis not checked")
        return
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        client.CoreV1Api(p.spinnaker_api).read_namespaced_service("spin-redis", namespace)
    except ApiException as exc:
        if exc.status == 404:
            p.refuse("echo", f"redis connection to {url}", f"there is no Service spin-redis in {namespace}")
        else:
            p.note(f"echo: could not read Service {namespace}/spin-redis ({exc.status}); assumed up")
        return
    p.ok("echo", f"redis connection to {url}")


# -- clouddriver ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    kind: str
    group: str
    version: str
    resource: str
    deployable: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def label(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


# The namespaced kinds clouddriver handles (a KubernetesHandler each, clouddriver-kubernetes op/handler/) that
# spinboot's contract names: how to address them and, for the deployable ones, a minimal object to dry-run. What
# clouddriver does with each (verbs, scope, why) is halconfig/contract.yaml's services.clouddriver.kubernetes.
CLOUDDRIVER_KINDS: tuple[Kind, ...] = (
    Kind("ConfigMap", "", "v1", "configmaps", True),
    Kind("Secret", "", "v1", "secrets", True),
    Kind("Service", "", "v1", "services", True),
    Kind("ServiceAccount", "", "v1", "serviceaccounts", True),
    Kind("PersistentVolumeClaim", "", "v1", "persistentvolumeclaims", True),
    Kind("Pod", "", "v1", "pods", True),
    Kind("Event", "", "v1", "events", False),
    Kind("Deployment", "apps", "v1", "deployments", True),
    Kind("ReplicaSet", "apps", "v1", "replicasets", True),
    Kind("StatefulSet", "apps", "v1", "statefulsets", True),
    Kind("DaemonSet", "apps", "v1", "daemonsets", True),
    Kind("ControllerRevision", "apps", "v1", "controllerrevisions", False),
    Kind("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers", True),
    Kind("Ingress", "networking.k8s.io", "v1", "ingresses", True),
    Kind("NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies", True),
    Kind("Job", "batch", "v1", "jobs", True),
    Kind("CronJob", "batch", "v1", "cronjobs", True),
    Kind("PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets", True),
    Kind("Namespace", "", "v1", "namespaces", False),
    Kind("PodMetrics", "metrics.k8s.io", "v1beta1", "pods", False),
)
# API groups the sandbox's clusters do not serve (no metrics-server): a 404 there means "allowed, not served",
# since the API server authorises a request before it routes it.
UNSERVED_GROUPS = {"metrics.k8s.io"}


def kind_for(group: str, resource: str) -> Kind | None:
    base = resource.split("/")[0]
    return next((k for k in CLOUDDRIVER_KINDS if k.group == group and k.resource == base), None)


def contract_entries(service: str = "clouddriver") -> list[dict[str, Any]]:
    """halconfig/contract.yaml ``services.<service>.kubernetes``: what the service does, per group and resource."""
    return list(((load_data("halconfig", "contract.yaml").get("services") or {}).get(service) or {})
                .get("kubernetes") or [])


def _kind_names(k: Kind) -> set[str]:
    """The spellings a clouddriver account's ``kinds``/``omitKinds`` may use for a kind (KubernetesKind.fromString)."""
    base = {k.kind.lower(), k.resource, k.resource.rstrip("s")}
    return base | ({f"{n}.{k.group}" for n in base} if k.group else set())


def caches(account: dict[str, Any], k: Kind) -> bool:
    """KubernetesCredentials.getKindStatus: ``kinds`` limits caching to those, ``omitKinds`` removes some (since
    Spinnaker 1.31 they limit caching only, never what can be deployed)."""
    kinds = {str(x).lower() for x in account.get("kinds") or []}
    omit = {str(x).lower() for x in account.get("omitKinds") or []}
    names = _kind_names(k)
    return (not kinds or bool(names & kinds)) and not names & omit


def cached_kinds(account: dict[str, Any]) -> list[Kind]:
    """The kinds the contract says clouddriver caches (``use: cache``) that this account caches."""
    out = []
    for e in contract_entries():
        k = kind_for(str(e.get("group") or ""), str(e.get("resource") or ""))
        if e.get("use") == "cache" and k and k not in out and caches(account, k):
            out.append(k)
    return out


def probe_manifest(k: Kind, namespace: str) -> dict[str, Any]:
    """A minimal valid object of kind ``k`` for a server-side dry-run create (never persisted)."""
    labels = {"app.kubernetes.io/name": PROBE_NAME}
    meta = {"name": PROBE_NAME, "namespace": namespace, "labels": labels}
    pod_spec = {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
    template = {"metadata": {"labels": labels}, "spec": pod_spec}
    selector = {"matchLabels": labels}
    spec: dict[str, Any] | None = {
        "Service": {"selector": labels, "ports": [{"port": 80}]},
        "PersistentVolumeClaim": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "Pod": pod_spec,
        "Deployment": {"selector": selector, "template": template},
        "ReplicaSet": {"selector": selector, "template": template},
        "StatefulSet": {"selector": selector, "template": template, "serviceName": PROBE_NAME},
        "DaemonSet": {"selector": selector, "template": template},
        "HorizontalPodAutoscaler": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                       "name": PROBE_NAME}, "minReplicas": 1, "maxReplicas": 2},
        "Ingress": {"defaultBackend": {"service": {"name": PROBE_NAME, "port": {"number": 80}}}},
        "NetworkPolicy": {"podSelector": {"matchLabels": labels}},
        "Job": {"template": {"metadata": {"labels": labels}, "spec": {**pod_spec, "restartPolicy": "Never"}}},
        "CronJob": {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": {
            "metadata": {"labels": labels}, "spec": {**pod_spec, "restartPolicy": "Never"}}}}},
        "PodDisruptionBudget": {"minAvailable": 1, "selector": selector},
    }.get(k.kind)
    obj: dict[str, Any] = {"apiVersion": k.api_version, "kind": k.kind, "metadata": meta}
    if spec is not None:
        obj["spec"] = spec
    if k.kind == "ConfigMap":
        obj["data"] = {"probe": "1"}
    if k.kind == "Secret":
        obj["type"] = "Opaque"
        obj["stringData"] = {"probe": "1"}
    return obj


def _path(k: Kind, namespace: str | None) -> str:
    prefix = f"/apis/{k.group}/{k.version}" if k.group else f"/api/{k.version}"
    return f"{prefix}/namespaces/{namespace}/{k.resource}" if namespace else f"{prefix}/{k.resource}"


# Answers a service retries rather than gives up on: clouddriver's kubectl calls are retried by its caching agents
# and operations, and Google's clients retry them (https://cloud.google.com/storage/docs/retry-strategy). The
# sandbox's fault injection produces exactly these, and they must not read as refusals.
TRANSIENT_STATUS = (429, 500, 502, 503, 504)
TRANSIENT_ATTEMPTS = 6


def _request(api: Any, method: str, path: str, query: dict[str, str] | None = None, body: Any = None) -> tuple[int, Any]:
    delay = 0.2
    for attempt in range(TRANSIENT_ATTEMPTS):
        try:
            status, data = _request_once(api, method, path, query, body)
        except Exception as exc:  # noqa: BLE001 - a reset or dropped connection: retried like a 503
            if attempt == TRANSIENT_ATTEMPTS - 1:
                raise
            status, data = None, exc
        if status not in TRANSIENT_STATUS and status is not None:
            return status, data
        if attempt == TRANSIENT_ATTEMPTS - 1:
            return status, data
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


def _request_once(api: Any, method: str, path: str, query: dict[str, str] | None = None,
                  body: Any = None) -> tuple[int, Any]:
    _, url, headers, payload, _ = api.param_serialize(
        method=method, resource_path=path, query_params=list((query or {}).items()),
        header_params={"Content-Type": "application/merge-patch+json" if method == "PATCH" else "application/json",
                       "Accept": "application/json"}, body=body,
        auth_settings=["BearerToken"])
    resp = api.call_api(method, url, header_params=headers, body=payload, _request_timeout=CALL_TIMEOUT_S)
    resp.read()
    text = (resp.data or b"").decode(errors="replace")
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        data = {"message": text}
    return resp.status, data


def _why(status: int, data: Any) -> str:
    msg = data.get("message") if isinstance(data, dict) else None
    return f"({status}) {msg or data}"


def _account_api(p: _Play, svc: ServiceConfig, account: dict[str, Any]) -> Any | None:
    name = account.get("name")
    if account.get("serviceAccount"):
        # In-cluster credentials: the token of the service account clouddriver's pods run as.
        try:
            api = p.env.pod_api(p.config.namespace, svc.service_account)
        except Exception as exc:  # noqa: BLE001 - the TokenRequest's failure is the reason
            p.refuse("clouddriver", f"account {name}: in-cluster credentials of {p.config.namespace}/"
                     f"{svc.service_account}", str(exc), effect="would fail")
            return None
        if api is None:
            p.note(f"clouddriver: account {name} uses the pod's service account; no kubelet credentials here to "
                   "act as it")
        return api
    from kubernetes import config as kconfig

    path = account.get("kubeconfigFile")
    context = account.get("context")
    try:
        doc = yaml.safe_load(open(path).read()) if path else None
    except (OSError, yaml.YAMLError) as exc:
        p.refuse("clouddriver", f"account {name}: kubeconfig {path}", str(exc), effect="would fail")
        return None
    if not isinstance(doc, dict):
        p.refuse("clouddriver", f"account {name}: kubeconfig {path}", "not a kubeconfig", effect="would fail")
        return None
    context = context or doc.get("current-context")
    if context not in {c.get("name") for c in doc.get("contexts") or [] if isinstance(c, dict)}:
        # kubectl --kubeconfig F --context C, as clouddriver's KubectlJobExecutor runs it
        p.refuse("clouddriver", f"account {name}: kubectl --context {context}",
                 f"error: context was not found for specified context: {context} (in {path})", effect="would fail")
        return None
    try:
        return kconfig.new_client_from_config(config_file=path, context=context, persist_config=False)
    except Exception as exc:  # noqa: BLE001
        p.refuse("clouddriver", f"account {name}: kubeconfig {path}", str(exc), effect="would fail")
        return None


Call = tuple[str, str, str, dict, Any, tuple[int, ...]]     # (label, method, path, query, body, passing statuses)


def _verb_call(verb: str, k: Kind, resource: str, ns: str | None) -> tuple[str, str, dict, Any, tuple[int, ...]] | None:
    """The request ``kubectl``/clouddriver makes for ``verb`` on ``resource`` (maybe a subresource).

    Calls on one object go to a name that does not exist: the API server authorises before it looks the object up,
    so 404 means allowed and 403 refused. Writes are server-side dry runs."""
    sub = resource.split("/", 1)[1] if "/" in resource else ""
    coll = _path(k, ns)
    one = f"{coll}/{PROBE_NAME}" + (f"/{sub}" if sub else "")
    dry = {"dryRun": "All", "fieldManager": "spinnaker"}
    unserved = (404, 503) if k.group in UNSERVED_GROUPS else ()
    if verb == "list" and not sub:
        return "GET", coll, {"limit": "1"}, None, (200, *unserved)
    if verb == "get":
        return "GET", one, {}, None, (200, 404, *((400,) if sub == "log" else ()), *unserved)
    if verb == "create" and not sub and k.deployable:
        return "POST", coll, dry, probe_manifest(k, ns or ""), (200, 201, 409)
    if verb == "patch":
        body = {"spec": {"replicas": 1}} if sub == "scale" else {"metadata": {"labels": {"spinboot.dev/probe": "1"}}}
        return "PATCH", one, dry, body, (200, 404)
    if verb == "update" and not sub and k.deployable:
        return "PUT", one, dry, probe_manifest(k, ns or ""), (200, 201, 404, 409)
    if verb == "delete" and not sub:
        return "DELETE", one, {"dryRun": "All"}, None, (200, 202, 404)
    return None


def _applies(entry: dict[str, Any], in_cluster: bool) -> bool:
    who = str(entry.get("account") or "target+in-cluster").split("+")
    return ("in-cluster" if in_cluster else "target") in who


def account_calls(account: dict[str, Any], namespaces: list[str], in_cluster: bool,
                  notes: list[str] | None = None) -> list[Call]:
    """Every request clouddriver makes for ``account`` in its namespaces, from the contract's entries (scope
    each-namespace / first-namespace, condition ``always``); one request per verb, resource and namespace."""
    merged: dict[tuple[str, str, str, str], list[str]] = {}
    for e in contract_entries():
        group, resource = str(e.get("group") or ""), str(e.get("resource") or "")
        if "*" in (group, resource) or e.get("condition") != "always" or not _applies(e, in_cluster):
            continue
        if e.get("scope") not in ("each-namespace", "first-namespace"):
            continue
        k = kind_for(group, resource)
        if k is None:
            if notes is not None:
                notes.append(f"clouddriver: no sandbox probe for {resource} ({group or 'core'}) in the contract")
            continue
        if e.get("use") == "cache" and not caches(account, k):
            continue
        for ns in namespaces[:1] if e.get("scope") == "first-namespace" else namespaces:
            for verb in e.get("verbs") or []:
                merged.setdefault((verb, group, resource, ns), []).append(str(e.get("use") or ""))
    name = account.get("name")
    calls: list[Call] = []
    for (verb, group, resource, ns), uses in merged.items():
        k = kind_for(group, resource)
        req = _verb_call(verb, k, resource, ns) if k else None
        if req is None:
            if notes is not None:
                notes.append(f"clouddriver: {verb} {resource} ({group or 'core'}) is not played in the sandbox")
            continue
        method, path, query, body, passing = req
        label = resource + (f".{group}" if group else "")
        how = ", server-side dry run" if method in ("POST", "PATCH", "PUT", "DELETE") else ""
        calls.append((f"account {name}: {verb} {label} in namespace {ns} ({', '.join(dict.fromkeys(uses))}{how})",
                      method, path, query, body, passing))
    return calls


def _kubernetes_account(p: _Play, svc: ServiceConfig, account: dict[str, Any]) -> None:
    name = account.get("name")
    api = _account_api(p, svc, account)
    if api is None:
        return
    effect = "would fail"
    try:
        namespaces = [str(n) for n in account.get("namespaces") or []]
        if namespaces and account.get("omitNamespaces"):
            # KubernetesAccountProperties.validate
            p.refuse("clouddriver", f"account {name}", "At most one of 'namespaces' and 'omitNamespaces' can be "
                     "specified", effect)
            return
        if not namespaces:
            # Only without a namespace list does clouddriver list namespaces (KubernetesCredentials
            # .getDeclaredNamespaces: `if (!namespaces.isEmpty()) result = namespaces`).
            status, data = _request(api, "GET", "/api/v1/namespaces")
            call = f"account {name}: list namespaces (cluster-wide; the account has no namespace list)"
            if status != 200:
                p.refuse("clouddriver", call, _why(status, data), effect)
                return
            p.ok("clouddriver", call)
            omit = set(account.get("omitNamespaces") or [])
            namespaces = [i["metadata"]["name"] for i in data.get("items", []) if i["metadata"]["name"] not in omit]
        calls = account_calls(account, namespaces, bool(account.get("serviceAccount")), p.result.notes)

        def run(c: Call) -> tuple[str, int, Any, tuple[int, ...]]:
            call, method, path, query, body, passing = c
            status, data = _request(api, method, path, query, body)
            return call, status, data, passing

        with ThreadPoolExecutor(PARALLEL_CALLS) as pool:   # clouddriver's caching agents run side by side too
            for call, status, data, passing in pool.map(run, calls):
                if status in passing:
                    p.ok("clouddriver", call)
                else:
                    p.refuse("clouddriver", call, _why(status, data), effect)
    finally:
        api.close()


def _docker_account(p: _Play, svc: ServiceConfig, account: dict[str, Any]) -> None:
    name = account.get("name")
    env = p.env.pod_env(p.config.namespace, svc.service_account)
    pw = resolve_password(account, CLOUDDRIVER_IMAGE, env=env, base_dir=p.config.files_dir)
    hint = ""
    if account.get("passwordCommand") and (pw.command_stderr.strip() or not pw.value):
        hint = f"; its password command in clouddriver's image said: {pw.command_stderr.strip() or '(nothing)'}"
    client = RegistryClient(p.env.registry_url, str(account.get("address") or ""), account.get("username"), pw.value)
    for repo in account.get("repositories") or []:
        call = f"docker-registry account {name}: list tags of {client.host}/{repo}"
        try:
            client.tags(str(repo))
        except RegistryError as exc:
            p.refuse("clouddriver", call, f"{exc}{hint}", effect="would fail")
            continue
        p.ok("clouddriver", call)


def _clouddriver(p: _Play, svc: ServiceConfig) -> None:
    k8s = svc.get("kubernetes") or {}
    if k8s.get("enabled", True):
        for account in k8s.get("accounts") or []:
            _kubernetes_account(p, svc, account)
    docker = svc.get("dockerRegistry") or {}
    if docker.get("enabled", True):
        for account in docker.get("accounts") or []:
            _docker_account(p, svc, account)


# -- deck ---------------------------------------------------------------------------------------------------------
GATE_PATH = "/gate"   # the only path Deck's web server forwards (deck's docker/spinnaker.conf: ProxyPass /gate)


def _deck(p: _Play, svc: ServiceConfig) -> None:
    """The browser calls Gate at its base URL. A URL with a path of its own reaches the load balancer's UI backend,
    i.e. Deck, whose web server forwards /gate to $API_HOST: that must be Gate's Service, reachable from Deck's
    pod. A Gate URL with a host of its own is routed to Gate by the load balancer (nothing to play here)."""
    gate_url = str(svc.get("deck.gateUrl") or "")
    path = urlsplit(gate_url).path.rstrip("/")
    if not path:
        p.ok("deck", f"Gate at {gate_url or '(default)'}: a host of its own, routed by the load balancer")
        return
    call = f"forward {gate_url} ({GATE_PATH} in Deck's web server) to $API_HOST"
    if path != GATE_PATH:
        p.refuse("deck", call, f"Deck's web server forwards only {GATE_PATH}; {path} is served by Deck itself",
                 effect="cannot reach Gate")
        return
    api_host = urlsplit(str(svc.get("deck.apiHost") or ""))
    host = (api_host.hostname or "").split(".")
    if host[0] in ("localhost", "127") or not host[0]:
        p.refuse("deck", call, f"API_HOST is {svc.get('deck.apiHost')}: inside Deck's pod, where nothing listens "
                               "(Halyard sets API_HOST only when Deck serves TLS; set it in service-settings/deck.yml)",
                 effect="cannot reach Gate")
        return
    ns = host[1] if len(host) > 1 else p.config.namespace
    status, data = _request(p.spinnaker_api, "GET", f"/api/v1/namespaces/{ns}/services/{host[0]}")
    ports = {pt.get("port") for pt in ((data or {}).get("spec") or {}).get("ports") or []} if status == 200 else set()
    if api_host.port not in ports:
        p.refuse("deck", call, f"API_HOST {svc.get('deck.apiHost')}: no Service {ns}/{host[0]} on port "
                               f"{api_host.port} ({_why(status, data) if status != 200 else 'ports ' + str(sorted(ports))})",
                 effect="cannot reach Gate")
        return
    p.ok("deck", f"{call}: Service {ns}/{host[0]}:{api_host.port}")


PLAYS: dict[str, Callable[[_Play, ServiceConfig], None]] = {
    "front50": _front50, "echo": _echo, "clouddriver": _clouddriver, "deck": _deck}


def play(config: SpinnakerConfig, env: SandboxEnv | None = None, spinnaker_api: Any = None,
         log: Callable[[str], None] = lambda _m: None) -> PlayResult:
    """Play the startup of every configured service that has a play; never raises for a refusal."""
    p = _Play(config, env or SandboxEnv.from_environ(), spinnaker_api, log)
    for name, svc in config.services.items():
        fn = PLAYS.get(name)
        if fn is None:
            continue
        try:
            fn(p, svc)
        except Exception as exc:  # noqa: BLE001 - a crash of the play is reported as the service's failure
            p.refuse(name, "startup", f"{type(exc).__name__}: {exc}")
    return p.result


# -- what a crash loop looks like ----------------------------------------------------------------------------------
def mark_crash_looping(api: Any, namespace: str, service: str, message: str, wait_s: float = 30.0) -> int:
    """Report ``spin-<service>``'s pods as the kubelet reports a crash loop: container waiting in
    CrashLoopBackOff, last termination exit 1 with ``message``, pod not Ready. The Deployment then never becomes
    available, as on GKE. Returns how many pods were marked."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    selector = f"app=spin,cluster=spin-{service}"
    deadline = time.monotonic() + wait_s
    pods: list[Any] = []
    while True:
        pods = [x for x in core.list_namespaced_pod(namespace, label_selector=selector).items
                if not x.metadata.deletion_timestamp]
        # Wait until kwok has started them (its pod-ready stage moves Pending pods to Running and Ready, and only
        # Pending ones): marking a Pending pod would be overwritten.
        if pods and all(x.status.phase == "Running" for x in pods) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for pod in pods:
        containers = [c.name for c in pod.spec.containers]
        statuses = [{
            "name": c.name, "image": c.image, "imageID": "", "ready": False, "started": False, "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": f"back-off 2m40s restarting failed "
                                  f"container={c.name} pod={pod.metadata.name}_{namespace}"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": message[:4096],
                                         "startedAt": now, "finishedAt": now}},
        } for c in pod.spec.containers]
        conditions = []
        for cond in pod.status.conditions or []:
            c = api.sanitize_for_serialization(cond)
            if cond.type in ("Ready", "ContainersReady"):
                c.update(status="False", reason="ContainersNotReady",
                         message=f"containers with unready status: [{' '.join(containers)}]", lastTransitionTime=now)
            conditions.append(c)
        if not any(c["type"] == "Ready" for c in conditions):
            conditions.append({"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                               "lastTransitionTime": now})
        body = {"status": {"containerStatuses": statuses, "conditions": conditions}}
        core.patch_namespaced_pod_status(pod.metadata.name, namespace, body,
                                         _content_type="application/merge-patch+json")
    return len(pods)


def mark_recovered(api: Any, namespace: str, service: str) -> int:
    """Undo :func:`mark_crash_looping` once the service's startup passes: the kubelet's next restart of a
    crash-looping container succeeds, and the pod becomes Ready again. Returns how many pods were restored."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    restored = 0
    for pod in core.list_namespaced_pod(namespace, label_selector=f"app=spin,cluster=spin-{service}").items:
        statuses = pod.status.container_statuses or []
        if not any(cs.state and cs.state.waiting and cs.state.waiting.reason == "CrashLoopBackOff" for cs in statuses):
            continue
        new_statuses = []
        for cs in statuses:
            d = api.sanitize_for_serialization(cs)
            d.update(ready=True, started=True, restartCount=(cs.restart_count or 0) + 1,
                     state={"running": {"startedAt": now}})
            new_statuses.append(d)
        conditions = []
        for cond in pod.status.conditions or []:
            c = api.sanitize_for_serialization(cond)
            if cond.type in ("Ready", "ContainersReady"):
                c = {"type": cond.type, "status": "True", "lastTransitionTime": now}
            conditions.append(c)
        core.patch_namespaced_pod_status(pod.metadata.name, namespace,
                                         {"status": {"containerStatuses": new_statuses, "conditions": conditions}},
                                         _content_type="application/merge-patch+json")
        restored += 1
    return restored
