"""Server-side apply with field manager ``spinboot``, comparison with live state, and pruning.

Apply has server-side apply's real semantics (https://kubernetes.io/docs/reference/using-api/server-side-apply/):
fields spinboot set before and no longer sets are removed, as the API server removes fields a manager stops
applying. To know whether anything would change, apply does what ``kubectl diff --server-side`` does: a dry-run
apply, compared with the live object; only a difference is written (forced, because spinboot owns the fields it
sets). Each applied object carries a hash of what spinboot applied (``spinboot.dev/applied-sha256``), so an
object whose live state still holds every field of an unchanged desired object is known to be unchanged without
the dry run: a second ``apply`` makes no mutating call and no extra request.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..changes import Change, happened
from .retry import kube_retry

FIELD_MANAGER = "spinboot"
APPLIED_HASH = "spinboot.dev/applied-sha256"
# Fields the API server maintains: never a difference spinboot made.
_SERVER_FIELDS = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid")
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
    ("coordination.k8s.io/v1", "Lease"): ("/apis/coordination.k8s.io/v1", "leases", True),  # spinboot.kube.lock
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
        """Make the live object exactly what spinboot applies (fields it dropped are removed); returns what
        changed. With ``dry_run`` nothing is written; an object in a namespace that does not exist yet is a
        "create" (the same plan creates the namespace)."""
        meta = obj["metadata"]
        obj = with_applied_hash(obj)
        live = self.get(obj)
        if live is not None and contains(live, obj):
            return Change("unchanged", obj["kind"], meta["name"], meta.get("namespace"))
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if live is not None or dry_run:
            # What the object would become (kubectl diff --server-side): the server drops fields spinboot owned
            # and no longer applies, and defaults the rest, so the comparison is the server's own.
            try:
                _, after = self.request("PATCH", object_path(obj), body=obj, query={**query, "dryRun": "All"},
                                        content_type="application/apply-patch+yaml")
            except ApiException as exc:
                if dry_run and live is None and exc.status == 404:
                    return Change("create", obj["kind"], meta["name"], meta.get("namespace"))
                raise KubeError(f"{self.name}: cannot apply {obj['kind']} {_ref(meta)}: {_reason(exc)}") from None
            if live is not None and same_object(live, after):
                return Change("unchanged", obj["kind"], meta["name"], meta.get("namespace"))
            if dry_run:
                return Change("create" if live is None else "update", obj["kind"], meta["name"], meta.get("namespace"),
                              "" if live is None else ", ".join(changed_paths(live, after)))
        try:
            _, after = self.request("PATCH", object_path(obj), body=obj, query=query,
                                    content_type="application/apply-patch+yaml")
        except ApiException as exc:
            raise KubeError(f"{self.name}: cannot apply {obj['kind']} {_ref(meta)}: {_reason(exc)}") from None
        if live is None:
            return happened(Change("create", obj["kind"], meta["name"], meta.get("namespace")))
        return happened(Change("update", obj["kind"], meta["name"], meta.get("namespace"),
                               ", ".join(changed_paths(live, after))))

    def delete(self, obj: dict, dry_run: bool = False) -> Change:
        meta = obj["metadata"]
        query = {"dryRun": "All"} if dry_run else None
        try:
            self.request("DELETE", object_path(obj), query=query, ok=(404,))
        except ApiException as exc:
            raise KubeError(f"{self.name}: cannot delete {obj['kind']} {_ref(meta)}: {_reason(exc)}") from None
        change = Change("delete", obj["kind"], meta["name"], meta.get("namespace"))
        return change if dry_run else happened(change)

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


def with_applied_hash(obj: dict) -> dict:
    """``obj`` with an annotation hashing it (without the annotation): live objects carrying the same hash were
    last applied from exactly this desired state."""
    import hashlib

    meta = dict(obj["metadata"])
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != APPLIED_HASH}
    bare = {**obj, "metadata": {**meta, "annotations": annotations} if annotations else
            {k: v for k, v in meta.items() if k != "annotations"}}
    digest = hashlib.sha256(json.dumps(bare, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return {**obj, "metadata": {**meta, "annotations": {**annotations, APPLIED_HASH: digest}}}


def _comparable(obj: dict) -> dict:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_FIELDS}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def same_object(live: dict, after: dict) -> bool:
    """Whether a dry-run apply's result equals the live object (server-maintained fields and status aside)."""
    return _comparable(live) == _comparable(after)


def changed_paths(live: Any, after: Any, path: str = "") -> list[str]:
    """Field paths that differ between the live object and what it would become (added, changed or removed), for
    plan output. Values are never shown: Secrets pass through here."""
    if path == "" and isinstance(live, dict) and isinstance(after, dict):
        live, after = _comparable(live), _comparable(after)
    if isinstance(live, dict) and isinstance(after, dict):
        out = []
        for k in sorted(set(live) | set(after)):
            sub = f"{path}.{k}" if path else k
            if k not in after:
                out.append(f"-{sub}")
            elif k not in live:
                out.append(f"+{sub}")
            else:
                out += changed_paths(live[k], after[k], sub)
        return out
    return [] if live == after else [path]


def _ref(meta: dict) -> str:
    return (meta.get("namespace") + "/" if meta.get("namespace") else "") + meta["name"]


def _reason(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return f"HTTP {exc.status}: {body.get('message') or exc.reason}"
    except ValueError:
        return f"HTTP {exc.status}: {exc.reason}"
