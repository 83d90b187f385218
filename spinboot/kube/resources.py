"""Server-side apply with field manager ``spinboot``, comparison with live state, and pruning.

Apply reads the live object first and sends nothing when every field spinboot sets already has its value, so a
second ``apply`` makes no mutating call (like ``kubectl apply --server-side``, but without the no-op PATCH). A
change is sent as a server-side apply patch (https://kubernetes.io/docs/reference/using-api/server-side-apply/),
forced, because spinboot owns the fields it sets.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..changes import Change
from .retry import kube_retry

FIELD_MANAGER = "spinboot"
MANAGED_LABEL = "app.kubernetes.io/managed-by"

# (apiVersion, kind) → (API prefix, plural, namespaced)
KINDS: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("v1", "Secret"): ("/api/v1", "secrets", True),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps", True),
    ("v1", "Service"): ("/api/v1", "services", True),
    ("v1", "Pod"): ("/api/v1", "pods", True),
    ("apps/v1", "StatefulSet"): ("/apis/apps/v1", "statefulsets", True),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    ("rbac.authorization.k8s.io/v1", "Role"): ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
}


class KubeError(Exception):
    """A Kubernetes call failed for a reason retrying will not fix; the message says which object and why."""


def collection_path(api_version: str, kind: str, namespace: str | None = None) -> str:
    prefix, plural, namespaced = KINDS[(api_version, kind)]
    if namespaced and namespace:
        return f"{prefix}/namespaces/{quote(namespace)}/{plural}"
    return f"{prefix}/{plural}"


def object_path(obj: dict) -> str:
    meta = obj["metadata"]
    return collection_path(obj["apiVersion"], obj["kind"], meta.get("namespace")) + "/" + quote(meta["name"], safe="")


class Kube:
    """Thin, retried REST access to one API server through the official client's transport and auth."""

    def __init__(self, api: client.ApiClient, name: str = "cluster"):
        self.api = api
        self.name = name

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None,
                content_type: str = "application/json", ok: tuple[int, ...] = ()) -> tuple[int, Any]:
        """One REST call with the client's auth and TLS; statuses in ``ok`` are returned, others raise."""

        @kube_retry
        def call():
            _, url, headers, payload, _ = self.api.param_serialize(
                method=method, resource_path=path, query_params=list((query or {}).items()),
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body, auth_settings=["BearerToken"])
            resp = self.api.call_api(method, url, header_params=headers, body=payload)
            resp.read()
            text = (resp.data or b"").decode()
            try:
                data = json.loads(text) if text else {}
            except ValueError:
                data = {"message": text}
            if 200 <= resp.status <= 299 or resp.status in ok:
                return resp.status, data
            raise ApiException(status=resp.status, reason=resp.reason, body=text)

        return call()

    def get(self, obj_or_path: dict | str) -> dict | None:
        path = obj_or_path if isinstance(obj_or_path, str) else object_path(obj_or_path)
        status, data = self.request("GET", path, ok=(404,))
        return None if status == 404 else data

    def apply(self, obj: dict, dry_run: bool = False) -> Change:
        """Make the live object carry every field of ``obj``; returns what changed."""
        meta = obj["metadata"]
        live = self.get(obj)
        if live is not None and contains(live, obj):
            return Change("unchanged", obj["kind"], meta["name"], meta.get("namespace"))
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        try:
            self.request("PATCH", object_path(obj), body=obj, query=query,
                         content_type="application/apply-patch+yaml")
        except ApiException as exc:
            raise KubeError(f"{self.name}: cannot apply {obj['kind']} {_ref(meta)}: {_reason(exc)}") from None
        action = "create" if live is None else "update"
        detail = "" if live is None else ", ".join(differences(live, obj))
        return Change(action, obj["kind"], meta["name"], meta.get("namespace"), detail)

    def delete(self, obj: dict, dry_run: bool = False) -> Change:
        meta = obj["metadata"]
        query = {"dryRun": "All"} if dry_run else None
        try:
            self.request("DELETE", object_path(obj), query=query, ok=(404,))
        except ApiException as exc:
            raise KubeError(f"{self.name}: cannot delete {obj['kind']} {_ref(meta)}: {_reason(exc)}") from None
        return Change("delete", obj["kind"], meta["name"], meta.get("namespace"))

    def list(self, api_version: str, kind: str, namespace: str | None = None, labels: str | None = None) -> list[dict]:
        query = {"labelSelector": labels} if labels else None
        _, data = self.request("GET", collection_path(api_version, kind, namespace), query=query)
        items = data.get("items", [])
        for item in items:  # list items carry no apiVersion/kind; put them back so they can be passed to delete
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items


def contains(live: Any, want: Any) -> bool:
    """True when every field of ``want`` has the same value in ``live`` (fields the server adds are ignored)."""
    if isinstance(want, dict):
        return isinstance(live, dict) and all(k in live and contains(live[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(live, list) and len(live) == len(want) and all(contains(a, b) for a, b in zip(live, want))
    return live == want


def differences(live: Any, want: Any, path: str = "") -> list[str]:
    """Field paths where ``live`` does not carry ``want``'s value (for plan output)."""
    if isinstance(want, dict) and isinstance(live, dict):
        out = []
        for k, v in want.items():
            sub = f"{path}.{k}" if path else k
            out += [sub] if k not in live else differences(live[k], v, sub)
        return out
    if isinstance(want, list) and isinstance(live, list) and len(want) == len(live):
        return [d for i, (a, b) in enumerate(zip(live, want)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if live == want else [path]


def _ref(meta: dict) -> str:
    return (meta.get("namespace") + "/" if meta.get("namespace") else "") + meta["name"]


def _reason(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return f"HTTP {exc.status}: {body.get('message') or exc.reason}"
    except ValueError:
        return f"HTTP {exc.status}: {exc.reason}"
