"""The schema of spinboot.yaml, as pydantic models.

Field names in the file are camelCase (as Kubernetes and Halyard write them); attributes here are snake_case.
Every model forbids unknown keys so a typo is an error, never silently ignored. Rules that involve a single
field live here as validators; rules across fields (uniqueness, system namespaces) live in ``rules.py`` so that
they can name the exact field that is wrong.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

from . import names
from .problems import ACKNOWLEDGEABLE, UNACKNOWLEDGEABLE, WARNINGS


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        strict=True,  # "2" is not 2: YAML gives real types, and a quoted number is a mistake worth naming
        frozen=True,
        str_strip_whitespace=False,
    )


def _check(pattern: re.Pattern[str], what: str, allowed: str):
    def validate(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid {what} ({allowed})")
        return value

    return AfterValidator(validate)


def _project_id(value: str) -> str:
    problem = names.project_id_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _bucket(value: str) -> str:
    problem = names.bucket_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _cidr(value: str) -> str:
    # Written out as ADDRESS/PREFIX (GKE's cidrBlock is "in CIDR notation"; a bare address would silently be a /32),
    # IPv4 (GKE's authorized networks and the /28 of a private control plane are IPv4; Gate's trusted proxies are
    # matched against the IPv4 addresses Google's front ends and the pods use).
    if "/" not in value and _is_address(value):
        raise ValueError(f"{value!r} is not a CIDR block: the /PREFIX is missing (allowed: e.g. {value}/32 for one "
                         "address, or 203.0.113.0/24)")
    try:
        if "/" not in value:
            raise ValueError(f"{value!r} is not an address/prefix")
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid CIDR block ({exc}; allowed: an address/prefix such as 203.0.113.0/24 "
                         "with no host bits set)") from None
    if net.version != 4:
        raise ValueError(f"{value!r} is an IPv6 block; these take IPv4 CIDR blocks only (allowed: e.g. 203.0.113.0/24)")
    return value


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def _problem(check):
    def validate(value: str) -> str:
        problem = check(value)
        if problem:
            raise ValueError(problem)
        return value

    return AfterValidator(validate)


def _storage_size(value: str) -> str:
    if names.quantity(value) < 1:
        raise ValueError(f"{value!r} is not a volume size (allowed: at least one byte; e.g. 10Gi)")
    return value


def _label_count(value):
    # Before the keys and values are checked one by one: 9 000 labels are refused for their number, at once.
    if isinstance(value, dict) and len(value) > MAX_USER_LABELS:
        raise ValueError(f"{len(value)} labels; a GCP resource has at most 64 and spinboot sets managed-by itself "
                         f"(allowed: at most {MAX_USER_LABELS})")
    return value


def _labels(value: dict[str, str]) -> dict[str, str]:
    # "Each resource can have up to 64 labels" (labeling-resources#requirements), and spinboot adds its own
    # managed-by label to the cluster (render/gcp.py); goog- keys are the ones Google sets (e.g. goog-k8s-*).
    if len(value) > MAX_USER_LABELS:
        raise ValueError(f"{len(value)} labels; a GCP resource has at most 64 and spinboot sets managed-by itself "
                         f"(allowed: at most {MAX_USER_LABELS})")
    for key in value:
        if key == "managed-by":
            raise ValueError("managed-by is spinboot's own label (managed-by: spinboot) (allowed: any other key)")
        if key.startswith("goog-"):
            raise ValueError(f"{key!r}: goog- labels are Google's own (allowed: a key not starting with goog-)")
    return value


def _ack(value: str) -> str:
    if value in UNACKNOWLEDGEABLE:
        raise ValueError(f"{value!r} cannot be acknowledged: dangerouslyAllowSystemNamespaces already says it is "
                         "meant, and the warning stays on every command on purpose (allowed: "
                         f"{', '.join(ACKNOWLEDGEABLE)})")
    if value not in WARNINGS:
        raise ValueError(f"{value!r} is not a warning code (allowed: {', '.join(ACKNOWLEDGEABLE)}; the code is the "
                         "[...] at the end of a warning)")
    return value


def _unique(value: list[str]) -> list[str]:
    twice = sorted({v for v in value if value.count(v) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} listed more than once (allowed: each code once)")
    return value


MAX_USER_LABELS = 63


ProjectId = Annotated[str, AfterValidator(_project_id)]
BucketName = Annotated[str, AfterValidator(_bucket)]
ClusterName = Annotated[str, _check(names.GKE_NAME, "GKE name", names.GKE_NAME_ALLOWED)]
Location = Annotated[str, _check(names.LOCATION, "GCP location", "a region such as us-central1 or a zone such as us-central1-b")]
K8sName = Annotated[str, _check(names.DNS1123_LABEL, "Kubernetes name", names.DNS1123_ALLOWED)]
AccountName = Annotated[str, _check(names.ACCOUNT, "Spinnaker account name", names.ACCOUNT_ALLOWED)]
ServiceAccountId = Annotated[str, _check(names.SA_ID, "service account ID", names.SA_ID_ALLOWED)]
PubSubName = Annotated[str, _check(names.PUBSUB_NAME, "Pub/Sub name", names.PUBSUB_ALLOWED)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Url = Annotated[str, _problem(names.url_problem)]
Quantity = Annotated[str, Field(max_length=24),
                     _check(names.QUANTITY, "Kubernetes resource quantity", "e.g. 8Gi, 12Gi, 2, 1500m")]
MachineType = Annotated[str, Field(max_length=63),
                        _check(names.MACHINE_TYPE, "machine type", "e.g. e2-highmem-4, n2-highmem-8")]
Hostname = Annotated[str, _problem(names.registry_host_problem)]
Repository = Annotated[str, Field(max_length=255), _check(
    names.REPOSITORY, "repository path", "lowercase letters and digits joined by '.', '_', '__' or '-', in parts "
                                         "separated by '/', such as acme-platform/acme/tasks")]
Image = Annotated[str, _problem(names.image_problem)]
Version = Annotated[str, AfterValidator(names.check_spinnaker_version)]
LabelValue = Annotated[str, _problem(names.label_value_problem)]
LabelKey = Annotated[str, _problem(names.label_key_problem)]
AckCode = Annotated[str, AfterValidator(_ack), WithJsonSchema({"type": "string", "enum": list(ACKNOWLEDGEABLE)})]


# The services of a Spinnaker install. The eight core ones always run; the optional ones only when
# spinnaker.services says so (the kustomize engine; Halyard's deployment has its own switches).
CORE_SERVICES = ("clouddriver", "deck", "echo", "front50", "gate", "igor", "orca", "rosco")
OPTIONAL_SERVICES = ("fiat", "kayenta", "keel")
ServiceName = Literal["clouddriver", "deck", "echo", "front50", "gate", "igor", "orca", "rosco",
                      "fiat", "kayenta", "keel"]
# Kustomize is the supported install from 2026.1.0 (Halyard unsupported since, see names.SpinnakerVersion), and
# Spinnaker's images are published as ghcr.io/spinnaker/<service>:<version> from that release on.
KUSTOMIZE_DEFAULT_FROM = (2026, 1, 0)


def _redis_url(value: str) -> str:
    # Each service takes Redis as one URL, redis.connection: redis://HOST:PORT
    # (spinnaker/spinnaker@spinnaker-release-2026.2.3:spinnaker-kustomize/components/redis/files/<svc>.yml);
    # rediss:// is the TLS form, as Memorystore's in-transit encryption serves it. A password in the URL would sit
    # in spinboot.yaml and in the reviewable render: refused, and never echoed back.
    allowed = "redis://HOST:PORT or rediss://HOST:PORT, e.g. redis://10.0.0.3:6379 for Memorystore"
    m = re.fullmatch(r"(rediss?)://([^/?#@:\s]+):([0-9]{1,5})/?", value)
    if not m:
        if "@" in value:
            raise ValueError("the Redis URL carries a user or password (not shown), which would be written into "
                             f"spinboot.yaml and the rendered tree (allowed: {allowed}, with no credentials)")
        raise ValueError(f"{value!r} is not a Redis URL (allowed: {allowed})")
    host, port = m[2], int(m[3])
    if not (_is_address(host) or re.fullmatch(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]{0,61}"
                                              r"[a-z0-9])?)*", host)):
        raise ValueError(f"{value!r}: {host!r} is not a host name or IPv4 address (allowed: {allowed})")
    if not 1 <= port <= 65535:
        raise ValueError(f"{value!r}: port {port} is outside 1-65535 (allowed: {allowed})")
    return value


def _relative_dir(value: str) -> str:
    # Relative to spinboot.yaml, so the same file renders the same tree on every machine and in CI.
    if value.startswith(("/", "~")) or re.match(r"[A-Za-z]:[\\/]", value):
        raise ValueError(f"{value!r} is an absolute path (allowed: a directory relative to spinboot.yaml, e.g. "
                         "kustomize-local)")
    return value


RedisUrl = Annotated[str, Field(max_length=300), AfterValidator(_redis_url)]
RelativeDir = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(lambda v: _printable(v)),
                        AfterValidator(_relative_dir)]
GceAddressName = Annotated[str, _check(re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"), "global address name",
                                       "1 to 63 characters: lowercase letters, digits and '-', starting with a "
                                       "letter, not ending with '-'")]


class Autoscaling(Model):
    min_node_count: int = Field(ge=0, le=1000, description="Smallest node count the autoscaler may choose.")
    max_node_count: int = Field(ge=1, le=1000, description="Largest node count the autoscaler may choose.")

    @model_validator(mode="after")
    def _ordered(self) -> "Autoscaling":
        if self.min_node_count > self.max_node_count:
            raise ValueError(f"minNodeCount {self.min_node_count} is larger than maxNodeCount {self.max_node_count} "
                             "(allowed: minNodeCount <= maxNodeCount)")
        return self


class NodePool(Model):
    name: ClusterName = Field("spinnaker-pool", description="Node pool name.")
    service_account: ServiceAccountId = Field(
        "spinnaker-nodes",
        description="ID of the Google service account the nodes run as, created with only "
                    "roles/container.defaultNodeServiceAccount (not Compute Engine's default service account, which "
                    "holds Editor). Fixed when the pool is created.")
    machine_type: MachineType = Field(
        "e2-highmem-4",
        description="Machine type. High-memory: clouddriver runs out of memory on standard nodes without failing a "
                    "health check.")
    node_count: int = Field(2, ge=1, le=100, description="Nodes per zone of the pool.")
    disk_size_gb: int = Field(100, ge=10, le=65536, description="Boot disk size of each node, GB.")
    autoscaling: Autoscaling | None = Field(None, description="Optional node autoscaling bounds.")


def _printable(value: str) -> str:
    # Free-form text that reaches file headers, terminal output and the OS: a newline, NUL or escape sequence in it
    # is never meant (a NUL in a path is also a ValueError when the file is opened).
    bad = next((ch for ch in value if not ch.isprintable()), None)
    if bad is not None:
        raise ValueError(f"{value!r} contains the control character U+{ord(bad):04X} (allowed: printable text)")
    return value


class AuthorizedNetwork(Model):
    name: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_printable)] = Field(
        description="Display name of the network.")
    cidr: Cidr = Field(description="IPv4 CIDR block allowed to reach the control plane.")


class Cluster(Model):
    name: ClusterName = Field(description="Name of the GKE cluster Spinnaker runs in.")
    location: Location = Field(description="Zone (zonal cluster) or region (regional cluster).")
    release_channel: Literal["RAPID", "REGULAR", "STABLE", "EXTENDED"] = Field(
        "STABLE", description="GKE release channel.")
    node_pool: NodePool = Field(default_factory=NodePool, description="The node pool Spinnaker's pods run on.")
    private_nodes: bool = Field(False, description="Nodes get internal IP addresses only.")
    master_ipv4_cidr_block: Cidr | None = Field(
        None, description="A /28 for the control plane's private endpoint; required when privateNodes is true.")
    egress: Literal["cloud-nat", "none"] | None = Field(
        None,
        description="How private nodes reach the internet, required with privateNodes: true. Spinnaker's images come "
                    "from ghcr.io and Halyard's Redis from Docker Hub, so nodes without a route out cannot pull them. "
                    "cloud-nat: the cluster's network has a Cloud Router with Cloud NAT in the cluster's region (spinboot "
                    "does not create it: see docs/configuration.md); none: every image is mirrored into a registry "
                    "the nodes reach privately (Artifact Registry through Private Google Access).")
    authorized_networks: Annotated[list[AuthorizedNetwork], Field(max_length=100)] = Field(
        default_factory=list, description="Networks allowed to reach the control plane (at most 50 on a public "
                                          "cluster, 100 with privateNodes). Empty: authorized networks off.")
    labels: Annotated[dict[LabelKey, LabelValue], BeforeValidator(_label_count), AfterValidator(_labels)] = Field(
        default_factory=dict, description="Resource labels on the cluster: at most 63 (spinboot adds managed-by), "
                                          "keys and values as GCP allows them (lowercase, up to 63 characters).")

    @property
    def regional(self) -> bool:
        return names.is_region(self.location)


class Halyard(Model):
    image: Image | None = Field(
        None,
        description="Halyard image. Default: ghcr.io/spinnaker/halyard:<version> for 2026.1.0 and later. The old "
                    "us-docker.pkg.dev/spinnaker-community image is frozen.")
    namespace: K8sName = Field("halyard", description="Namespace of the Halyard StatefulSet.")
    storage_size: Annotated[Quantity, AfterValidator(_storage_size)] = Field(
        "10Gi", description="Size of the volume holding ~/.hal.")


class Storage(Model):
    bucket: BucketName = Field(description="GCS bucket for front50 (pipelines, applications) and backups.")
    location: Annotated[str, Field(max_length=40), _problem(names.storage_location_problem)] = Field(
        "us", description="Bucket location: a multi-region (us), a dual-region (nam4) or a region (us-central1).")
    project: ProjectId | None = Field(None, description="Project of the bucket; defaults to the top-level project.")
    root_folder: Annotated[str, _problem(names.root_folder_problem)] = Field(
        "front50", description="Folder inside the bucket for front50's objects.")


class Iap(Model):
    audience: Annotated[str, Field(pattern=r"^/projects/[0-9]+/global/backendServices/[0-9]+$")] = Field(
        description="IAP audience: /projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID.")


class Ingress(Model):
    enabled: bool = Field(False, description="Create the Ingress, BackendConfig and ManagedCertificate.")
    static_ip_name: GceAddressName | None = Field(
        None, description="Name of a reserved global static IP address (kubernetes.io/ingress.global-static-ip-name);"
                          " unset: an ephemeral address, which changes if the Ingress is recreated.")
    managed_certificate: bool = Field(
        True, description="A Google-managed certificate for the URL hosts (needs https:// URLs and DNS pointing at "
                          "the load balancer).")


class Exposure(Model):
    ui_url: Url = Field(description="URL users open for Deck (hal config security ui edit --override-base-url).")
    api_url: Url = Field(
        description="URL of Gate (hal config security api edit --override-base-url): a host of its own "
                    "(https://api.example.com), or the UI's host with the path /gate (https://spinnaker.example.com/gate), "
                    "which Deck's own web server forwards to Gate.")
    behind_google_load_balancer: bool = Field(
        True, description="Gate sits behind Google's HTTPS load balancer: trust its forwarded headers.")
    trusted_proxies: Annotated[list[Cidr], Field(max_length=64)] = Field(
        default_factory=lambda: list(names.DEFAULT_TRUSTED_PROXIES),
        description="Addresses whose X-Forwarded-* headers Gate trusts: Google's front ends (35.191.0.0/16, "
                    "130.211.0.0/22) and the private ranges load-balanced traffic arrives from.")
    iap: Iap | None = Field(None, description="Identity-Aware Proxy in front of Gate.")
    ingress: "Ingress" = Field(
        default_factory=lambda: Ingress(),
        description="GKE Ingress for Deck and Gate (kustomize engine): Google's HTTPS load balancer routing the "
                    "hosts of uiUrl and apiUrl, with a BackendConfig (health check, IAP when iap is set) and a "
                    "ManagedCertificate.")


class ContainerSizing(Model):
    requests_memory: Quantity | None = Field(None, description="Memory request, e.g. 8Gi.")
    limits_memory: Quantity | None = Field(None, description="Memory limit, e.g. 12Gi.")
    requests_cpu: Quantity | None = Field(None, description="CPU request, e.g. 1 or 500m.")
    limits_cpu: Quantity | None = Field(None, description="CPU limit.")
    replicas: int | None = Field(None, ge=1, le=20, description="Pod replicas, 1 to 20.")

    @model_validator(mode="after")
    def _requests_within_limits(self) -> "ContainerSizing":
        # Kubernetes refuses a container whose request exceeds its limit; say so now, not at hal deploy apply.
        for what, req, lim in (("memory", self.requests_memory, self.limits_memory),
                               ("cpu", self.requests_cpu, self.limits_cpu)):
            if req is not None and lim is not None and names.quantity(req) > names.quantity(lim):
                raise ValueError(f"requests {what} {req} is more than limits {what} {lim} "
                                 "(allowed: requests <= limits)")
        return self


class Clouddriver(Model):
    sizing: ContainerSizing = Field(
        default_factory=lambda: ContainerSizing(requestsMemory="8Gi", limitsMemory="12Gi", requestsCpu="1"),
        description="clouddriver's container resources. Out-of-memory reports range from 6 to 12 GiB.")
    poll_interval_seconds: int = Field(
        30, ge=5, le=3600,
        description="Global caching-agent poll interval (redis.poll.intervalSeconds and "
                    "sql.agent.poll.intervalSeconds in clouddriver-local.yml).")


class ArtifactAccountGcs(Model):
    name: AccountName = Field(description="Spinnaker artifact account name.")


def _secret_key(value: str) -> str:
    # Kubernetes' own rule for Secret keys (IsConfigMapKey): the key is also a file name under the mounted Secret,
    # and configure.sh passes that path to hal, so "." and ".." would point outside the token file.
    if value in (".", "..") or value.startswith(".."):
        raise ValueError(f"{value!r} is not a valid Secret key (allowed: letters, digits, '-', '_' and '.', "
                         "not '.' or '..' and not starting with '..')")
    return value


class SecretRef(Model):
    name: K8sName = Field(description="Kubernetes Secret in the Halyard namespace.")
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]{1,253}$"), AfterValidator(_secret_key)] = Field(
        "token", description="Key in the Secret.")


class ArtifactAccountGithub(Model):
    name: AccountName = Field(description="Spinnaker artifact account name.")
    token_secret: SecretRef = Field(
        description="Secret holding the GitHub token; mounted into the Halyard pod, never written by spinboot.")


class Artifacts(Model):
    gcs: Annotated[list[ArtifactAccountGcs], Field(max_length=100)] = Field(
        default_factory=list, description="GCS artifact accounts (Workload Identity).")
    github: Annotated[list[ArtifactAccountGithub], Field(max_length=100)] = Field(
        default_factory=list, description="GitHub artifact accounts.")


class Redis(Model):
    url: RedisUrl | None = Field(
        None, description="An external Redis such as Memorystore (redis://HOST:PORT, rediss:// for TLS; no password "
                          "in the URL). Unset: an in-cluster Redis StatefulSet with a volume.")
    storage_size: Annotated[Quantity, AfterValidator(_storage_size)] = Field(
        "8Gi", description="Volume size of the in-cluster Redis (ignored with url).")


class Services(Model):
    fiat: bool = Field(False, description="Run fiat (authorization). Needs authentication: exposure.iap.")
    kayenta: bool = Field(False, description="Run kayenta (automated canary analysis).")
    keel: bool = Field(False, description="Run keel (managed delivery).")


class Kustomize(Model):
    customizations: RelativeDir | None = Field(
        None, description="Your own kustomize components and patches: a directory relative to spinboot.yaml with a "
                          "kustomization.yaml, applied on top of the tree spinboot generates.")


class Spinnaker(Model):
    version: Version = Field(description="Spinnaker version: calendar (2026.2.3) or 1.x.y.")
    engine: Literal["halyard", "kustomize"] | None = Field(
        None,
        description="What deploys Spinnaker. kustomize: spinboot writes and applies a kustomize tree (the supported "
                    "install from 2026.1.0). halyard: a Halyard pod runs configure.sh (refused from 2027.0.0). "
                    "Unset: kustomize for 2026.1.0 and later, halyard before. See docs/engines.md.")
    namespace: K8sName = Field("spinnaker", description="Namespace Spinnaker's services run in.")
    deploy_account: AccountName = Field(
        "spinnaker-install",
        description="Name of the in-cluster Kubernetes account for Spinnaker's own namespace (used by hal deploy).")
    halyard: Halyard = Field(default_factory=Halyard, description="The Halyard pod.")
    storage: Storage = Field(description="Persistent storage (GCS).")
    service_account: ServiceAccountId = Field(
        "spinnaker", description="ID of Spinnaker's Google service account, bound to its pods by Workload Identity.")
    exposure: Exposure = Field(description="How users and tools reach Deck and Gate.")
    clouddriver: Clouddriver = Field(default_factory=Clouddriver, description="clouddriver sizing and caching.")
    artifacts: Artifacts = Field(default_factory=Artifacts, description="Artifact accounts.")
    redis: Redis = Field(default_factory=Redis, description="Redis for the services (kustomize engine).")
    services: Services = Field(
        default_factory=Services,
        description="Optional services (kustomize engine); clouddriver, deck, echo, front50, gate, igor, orca and "
                    "rosco always run.")
    sizing: Annotated[dict[ServiceName, ContainerSizing], Field(max_length=11)] = Field(
        default_factory=dict,
        description="Container resources and replicas per service (kustomize engine), e.g. {gate: {replicas: 2}}. "
                    "clouddriver.sizing still applies when sizing.clouddriver is not set.")
    kustomize: Kustomize = Field(default_factory=Kustomize, description="The kustomize engine's extras.")

    @model_validator(mode="after")
    def _default_engine(self) -> "Spinnaker":
        # Absent engine: the supported install of the version (kustomize from 2026.1.0, when upstream stopped
        # supporting Halyard). Filled in here so every reader sees "halyard" or "kustomize", never None.
        if self.engine is None:
            new = "kustomize" if names.SpinnakerVersion(self.version).key >= KUSTOMIZE_DEFAULT_FROM else "halyard"
            object.__setattr__(self, "engine", new)
        return self

    @property
    def state_namespace(self) -> str:
        """Where spinboot keeps its state in the Spinnaker cluster (the Lease that serializes runs, the record of
        targets for --prune): the Halyard namespace under the halyard engine, Spinnaker's own under kustomize
        (which has no Halyard namespace)."""
        return self.halyard.namespace if self.engine == "halyard" else self.namespace

    @property
    def enabled_services(self) -> tuple[str, ...]:
        """The services that run: the eight core ones and the optional ones switched on."""
        return CORE_SERVICES + tuple(s for s in OPTIONAL_SERVICES if getattr(self.services, s))

    def sizing_for(self, service: str) -> ContainerSizing | None:
        """A service's resources: spinnaker.sizing.<service>, else (clouddriver) spinnaker.clouddriver.sizing."""
        if service in self.sizing:
            return self.sizing[service]
        return self.clouddriver.sizing if service == "clouddriver" else None


class GkeRef(Model):
    project: ProjectId = Field(description="Project of the target cluster.")
    location: Location = Field(description="Zone or region of the target cluster.")
    cluster: ClusterName = Field(description="Name of the target cluster.")


class KubeconfigRef(Model):
    path: Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_printable)] = Field(
        description="Path of a kubeconfig on the machine running spinboot (used only to apply RBAC).")
    context: Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_printable)] = Field(
        description="Context in that kubeconfig.")


class TargetServiceAccount(Model):
    name: K8sName = Field("spinnaker", description="Spinnaker's Kubernetes service account in the target.")
    namespace: K8sName = Field("spinnaker", description="Namespace of that service account.")


class Target(Model):
    name: AccountName = Field(description="Spinnaker Kubernetes account name for this cluster.")
    gke: GkeRef | None = Field(None, description="The target is a GKE cluster.")
    kubeconfig: KubeconfigRef | None = Field(None, description="The target is reached through a kubeconfig.")
    namespaces: Annotated[list[K8sName], Field(min_length=1, max_length=500)] = Field(
        description="Namespaces Spinnaker may deploy to; it gets a RoleBinding in each and nothing elsewhere.")
    service_account: TargetServiceAccount = Field(
        default_factory=TargetServiceAccount, description="Spinnaker's own service account in this cluster.")
    cache_interval_seconds: int | None = Field(
        None, ge=30, le=86400, description="Caching interval of this Kubernetes account (clouddriver default 30).")
    dangerously_allow_system_namespaces: bool = Field(
        False, description="Allow kube-system, kube-public, kube-node-lease, gke-* and gmp-* in namespaces. Dangerous.")

    @model_validator(mode="after")
    def _one_access(self) -> "Target":
        if (self.gke is None) == (self.kubeconfig is None):
            raise ValueError("set exactly one of gke or kubeconfig (allowed: gke: {project, location, cluster} "
                             "or kubeconfig: {path, context})")
        return self


class Subscription(Model):
    name: PubSubName = Field("spinnaker-gcr", description="Subscription ID on the registry project's gcr topic.")
    ack_deadline_seconds: int = Field(60, ge=10, le=600, description="Ack deadline, 10 to 600 seconds.")
    message_retention_seconds: int = Field(
        604800, ge=600, le=604800, description="How long unacknowledged messages are kept (10 minutes to 7 days).")


class Registry(Model):
    name: AccountName = Field(description="Spinnaker name of this registry (docker-registry account and subscription).")
    project: ProjectId | None = Field(
        None, description="Google registries: the project whose gcr topic announces pushes (projects/P/topics/gcr), "
                          "which is the project every listed repository lives in. Other registries publish no "
                          "Pub/Sub messages: leave it out.")
    address: Hostname = Field(description="Registry host, e.g. us-docker.pkg.dev or gcr.io.")
    repositories: Annotated[list[Repository], Field(max_length=500)] = Field(
        default_factory=list, description="Repositories to index, listed explicitly (no catalog crawling).")
    cache_interval_seconds: int = Field(
        600, ge=30, le=86400,
        description="How often clouddriver polls the registry. Google's registries answer fast polling with 429s.")
    subscription: Subscription = Field(
        default_factory=Subscription,
        description="The Pub/Sub subscription for Spinnaker (Google registries only; it never expires).")
    docker_registry_account: bool = Field(
        True, description="Also add a docker-registry account (needs repositories).")


DriftPattern = Annotated[str, Field(pattern=r"^[A-Za-z*?]{1,63}/[-a-z0-9.*?]{1,253}$")]


class Drift(Model):
    """``spinboot drift`` (docs/drift.md): what it leaves out, and how this install's objects are told apart."""

    ignore: Annotated[list[DriftPattern], Field(max_length=200)] = Field(
        default_factory=list,
        description="KIND/NAME glob patterns drift does not report, e.g. ConfigMap/istio-ca-root-cert or "
                    "Secret/sh.helm.*; the kind matches case-insensitively.")
    managed_by_suffix: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$")] | None = Field(
        None, description="clouddriver's kubernetes.v2.managedBySuffix for this install: its objects are labelled "
                          "app.kubernetes.io/managed-by: spinnaker-SUFFIX, so another install's are told apart "
                          "(foreign). Unset: plain spinnaker, as clouddriver's default.")
    known_principals: Annotated[list[Annotated[str, Field(min_length=1, max_length=320)]], Field(max_length=100)] = Field(
        default_factory=list,
        description="drift --audit: principals (emails or Kubernetes user names) whose writes are expected, "
                    "besides Spinnaker's service account (e.g. a GitOps controller's); writes to spinboot's own "
                    "objects are never reported.")


class SpinbootConfig(Model):
    """The whole spinboot.yaml."""

    project: ProjectId = Field(description="GCP project of the Spinnaker cluster.")
    cluster: Cluster = Field(description="The GKE cluster Spinnaker runs in.")
    spinnaker: Spinnaker = Field(description="Spinnaker itself.")
    targets: Annotated[list[Target], Field(max_length=200)] = Field(
        default_factory=list, description="Clusters Spinnaker deploys to.")
    registries: Annotated[list[Registry], Field(max_length=100)] = Field(
        default_factory=list, description="Registries: image-push triggers and accounts.")
    drift: Drift = Field(default_factory=Drift, description="spinboot drift: what it ignores (docs/drift.md).")
    acknowledge: Annotated[list[AckCode], AfterValidator(_unique)] = Field(
        default_factory=list,
        description="Warning codes this file acknowledges: those warnings are no longer printed (validate counts "
                    "them), so CI logs show only what is new. The code is the [...] at the end of a warning; see "
                    "\"Warnings\" below. system-namespace cannot be acknowledged.")

    @property
    def service_account_email(self) -> str:
        return f"{self.spinnaker.service_account}@{self.project}.iam.gserviceaccount.com"

    @property
    def workload_pool(self) -> str:
        return f"{self.project}.svc.id.goog"

    @property
    def node_service_account_email(self) -> str:
        return f"{self.cluster.node_pool.service_account}@{self.project}.iam.gserviceaccount.com"

    @property
    def push_registries(self) -> list[Registry]:
        """Registries whose pushes Google publishes to a gcr topic (Container Registry and Artifact Registry):
        only these get a subscription (https://cloud.google.com/artifact-registry/docs/configure-notifications)."""
        return [r for r in self.registries if r.project and names.is_google_registry(r.address)]

    @property
    def storage_project(self) -> str:
        return self.spinnaker.storage.project or self.project

    @property
    def halyard_image(self) -> str:
        return self.spinnaker.halyard.image or names.default_halyard_image(self.spinnaker.version)
