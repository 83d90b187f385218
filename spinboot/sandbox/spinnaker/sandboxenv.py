"""What a Spinnaker pod has in the sandbox: where the Google stand-ins are, and its own Google and Kubernetes
identity (docs/dev/spinnaker-side-interfaces.md).

On GKE a pod reaches Google at fixed names and gets Workload Identity tokens from the node's metadata server; its
Kubernetes token is mounted by the kubelet. In the sandbox a "pod" is a local process, so:
- ``SPINBOOT_SANDBOX_ENDPOINTS`` (the path of endpoints.json, or its JSON) says where Storage, Pub/Sub, the
  registry stand-in and the GKE stand-in's admin endpoint are;
- the GKE stand-in's metadata server gives each (cluster, namespace, Kubernetes service account) its own
  ``GCE_METADATA_HOST``; a token is minted only if Workload Identity binds that service account;
- the kubelet's credentials (``SPINBOOT_SANDBOX_KUBELET_KUBECONFIG``) mint a pod's Kubernetes token with
  TokenRequest, as the kubelet does for projected tokens.
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .. import identity

ENDPOINTS_ENV = "SPINBOOT_SANDBOX_ENDPOINTS"
CLUSTER_ENV = "SPINBOOT_SANDBOX_CLUSTER"          # "<project>-<location>-<name>" of the cluster the pod runs in
KUBELET_ENV = "SPINBOOT_SANDBOX_KUBELET_KUBECONFIG"
METADATA_HOST_ENV = "GCE_METADATA_HOST"
# gcloud reads the metadata server's address from GCE_METADATA_ROOT, google-auth and Go from GCE_METADATA_HOST: on
# GKE both resolve metadata.google.internal, so in the sandbox both name the pod's metadata server.
METADATA_ROOT_ENV = "GCE_METADATA_ROOT"
METADATA_IP_ENV = "GCE_METADATA_IP"           # google-auth pings it to detect GCE


# No Google token for a pod: the metadata server refused (Workload Identity not bound) or is missing.
IdentityError = identity.IdentityError


def load_endpoints(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    value = value.strip()
    if value.startswith("{"):
        return json.loads(value)
    return json.loads(Path(value).read_text())


@dataclass
class SandboxEnv:
    endpoints: dict[str, Any] = field(default_factory=dict)
    cluster: str | None = None
    kubelet_kubeconfig: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "SandboxEnv":
        env = os.environ if environ is None else environ
        kubelet = env.get(KUBELET_ENV) or None
        cluster = env.get(CLUSTER_ENV) or None
        if not cluster and kubelet:
            # gkebacking keeps each cluster in <clusters_dir>/<project>-<location>-<name>/admin.kubeconfig
            cluster = Path(kubelet).parent.name
        return cls(load_endpoints(env.get(ENDPOINTS_ENV)), cluster, kubelet)

    # -- Google ----------------------------------------------------------------------------------------------------
    @property
    def storage_url(self) -> str | None:
        url = self.endpoints.get("storage") or os.environ.get("STORAGE_EMULATOR_HOST")
        return url if not url or "://" in url else f"http://{url}"

    @property
    def pubsub_host(self) -> str | None:
        return self.endpoints.get("pubsub") or os.environ.get("PUBSUB_EMULATOR_HOST")

    @property
    def registry_url(self) -> str | None:
        url = self.endpoints.get("registry")
        if not url and self.endpoints.get("gke_admin"):
            # The GKE stand-in serves the registry and says where on its admin endpoint (GET /registry).
            try:
                req = urllib.request.Request(self.endpoints["gke_admin"].rstrip("/") + "/registry")
                with urllib.request.urlopen(req, timeout=5) as resp:
                    url = json.loads(resp.read()).get("url")
            except (OSError, ValueError):
                url = None
            self.endpoints["registry"] = url
        return url if not url or "://" in url else f"http://{url}"

    def metadata_host(self, namespace: str, ksa: str) -> str:
        """The ``GCE_METADATA_HOST`` a pod of ``namespace/ksa`` in this cluster gets."""
        gke_admin = self.endpoints.get("gke_admin")
        if not gke_admin:
            raise IdentityError("no metadata server: endpoints.json has no gke_admin")
        if not self.cluster:
            raise IdentityError(f"no metadata server: the pod's cluster is unknown (set {CLUSTER_ENV})")
        return identity.register(gke_admin, self.cluster, namespace, ksa)

    def token(self, namespace: str, ksa: str) -> tuple[str, str]:
        """(access token, email) of the Google service account Workload Identity gives ``namespace/ksa``."""
        host = self.metadata_host(namespace, ksa)
        token = identity.fetch_token(host)
        try:
            email = identity.fetch_email(host)
        except IdentityError:
            email = ""                      # the email only makes messages clearer
        return token, email

    def pod_env(self, namespace: str, ksa: str) -> dict[str, str]:
        """The metadata variables a pod of ``namespace/ksa`` has (empty when the metadata server is missing)."""
        try:
            host = self.metadata_host(namespace, ksa)
        except IdentityError:
            return {}
        return {METADATA_HOST_ENV: host, METADATA_ROOT_ENV: host, METADATA_IP_ENV: host}

    # -- Kubernetes ------------------------------------------------------------------------------------------------
    def kubelet_api(self) -> Any | None:
        if not self.kubelet_kubeconfig:
            return None
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubelet_kubeconfig)

    def pod_api(self, namespace: str, ksa: str) -> Any | None:
        """A client acting as ``namespace/ksa`` in this cluster (the pod's in-cluster credentials), or None."""
        admin = self.kubelet_api()
        if admin is None:
            return None
        return token_client(admin, namespace, ksa)


def token_client(admin: Any, namespace: str, ksa: str, seconds: int = 3600) -> Any:
    """TokenRequest for ``namespace/ksa`` with ``admin``'s credentials; an ApiClient using that token."""
    from kubernetes import client

    core = client.CoreV1Api(admin)
    req = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[],
                                                                             expiration_seconds=seconds))
    token = core.create_namespaced_service_account_token(ksa, namespace, req).status.token
    conf = client.Configuration()
    conf.host = admin.configuration.host
    conf.ssl_ca_cert = admin.configuration.ssl_ca_cert
    conf.api_key = {"authorization": token}
    conf.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(conf)
