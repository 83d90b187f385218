"""Spinnaker's Google identity in the sandbox: the GKE stand-in's metadata server (docs/dev/spinnaker-side-interfaces.md).

    host = register(gke_admin, "acme-platform-us-central1-b-spinnaker", "spinnaker", "spinnaker")
    env["GCE_METADATA_HOST"] = host          # what a pod of that Kubernetes service account gets
    token = fetch_token(host)                # as google-auth fetches it on GKE; raises IdentityError if refused

A token is minted only when Workload Identity really binds the Kubernetes service account: the cluster has it on,
the service account is annotated ``iam.gke.io/gcp-service-account``, the Google service account exists and grants
``roles/iam.workloadIdentityUser`` to ``serviceAccount:PROJECT.svc.id.goog[NS/KSA]``. Otherwise the refusal says
which link is missing. The token (``sbx1....``) is accepted by every Google stand-in, which evaluate IAM for it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
EMAIL_PATH = "/computeMetadata/v1/instance/service-accounts/default/email"


class IdentityError(Exception):
    """The metadata server refused (the reason is its message) or could not be reached."""


def register(gke_admin: str, cluster: str, namespace: str, ksa: str, timeout: float = 10) -> str:
    """The metadata host (``127.0.0.1:PORT``) for pods of ``namespace/ksa`` in ``cluster``
    (``<project>-<location>-<name>``); idempotent."""
    body = json.dumps({"cluster": cluster, "namespace": namespace, "serviceAccount": ksa}).encode()
    req = urllib.request.Request(gke_admin.rstrip("/") + "/metadata/identities", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())["host"]
    except urllib.error.HTTPError as exc:
        raise IdentityError(f"metadata server registration of {namespace}/{ksa} in {cluster} refused "
                            f"({exc.code}): {exc.read().decode(errors='replace').strip()}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise IdentityError(f"GKE stand-in admin endpoint {gke_admin} unreachable: {getattr(exc, 'reason', exc)}") from None


def metadata_get(host: str, path: str, timeout: float = 10) -> str:
    """GET a metadata path with ``Metadata-Flavor: Google`` (the header GCE and GKE require)."""
    req = urllib.request.Request(f"http://{host}{path}", headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read().decode()
    except urllib.error.HTTPError as exc:
        raise IdentityError(f"metadata server refused ({exc.code}): {exc.read().decode(errors='replace').strip()}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise IdentityError(f"metadata server {host} unreachable: {getattr(exc, 'reason', exc)}") from None


def fetch_token(host: str) -> str:
    """The access token of the Google service account the pod acts as."""
    return json.loads(metadata_get(host, TOKEN_PATH))["access_token"]


def fetch_email(host: str) -> str:
    return metadata_get(host, EMAIL_PATH).strip()
