"""Spinnaker's Google service account and IAM bindings, by read-modify-write with etags.

A binding is added to the policy that is there; bindings spinboot did not create are never dropped. A write with
a stale etag is refused by the API (ABORTED or FAILED_PRECONDITION); spinboot then reads again and retries
(https://cloud.google.com/iam/docs/policies#etag).
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

from google.api_core import exceptions
from google.iam.v1 import policy_pb2

from ..changes import Change
from .retry import RETRY, is_transient

CONFLICT_ATTEMPTS = 8


class IamError(Exception):
    pass


class PolicyStore(Protocol):
    def get(self) -> policy_pb2.Policy: ...
    def set(self, policy: policy_pb2.Policy) -> None: ...


class GrpcPolicy:
    """A resource whose client has get_iam_policy/set_iam_policy(request={resource, policy})."""

    def __init__(self, client, resource: str):
        self.client, self.resource = client, resource

    def get(self) -> policy_pb2.Policy:
        return self.client.get_iam_policy(request={"resource": self.resource}, retry=RETRY)

    def set(self, policy: policy_pb2.Policy) -> None:
        self.client.set_iam_policy(request={"resource": self.resource, "policy": policy}, retry=RETRY)


class BucketPolicy:
    """A GCS bucket's policy through the JSON API (google-cloud-storage), read as version 3 so conditional
    bindings survive the read-modify-write unchanged."""

    def __init__(self, storage_client, bucket: str):
        self.bucket = storage_client.bucket(bucket)

    def get(self) -> policy_pb2.Policy:
        from google.cloud.storage.retry import DEFAULT_RETRY

        p = self.bucket.get_iam_policy(requested_policy_version=3, retry=DEFAULT_RETRY)  # a read: always safe
        out = policy_pb2.Policy(version=p.version or 1, etag=(p.etag or "").encode())
        self._conditions = {}
        for i, b in enumerate(p.bindings):
            nb = out.bindings.add(role=b["role"], members=sorted(b["members"]))
            if b.get("condition"):
                c = b["condition"]
                nb.condition.expression = c.get("expression", "")
                nb.condition.title = c.get("title", "")
                nb.condition.description = c.get("description", "")
        self._raw = p
        return out

    def set(self, policy: policy_pb2.Policy) -> None:
        p = self._raw
        bindings = []
        for b in policy.bindings:
            entry = {"role": b.role, "members": set(b.members)}
            if b.HasField("condition"):
                entry["condition"] = {k: v for k, v in (("expression", b.condition.expression),
                                                         ("title", b.condition.title),
                                                         ("description", b.condition.description)) if v}
            bindings.append(entry)
        p.bindings = bindings
        self.bucket.set_iam_policy(p)


def ensure_binding(store: PolicyStore, resource: str, role: str, members: list[str], dry_run: bool = False,
                   kind: str = "IAM binding") -> Change:
    """Make ``members`` hold ``role`` on the resource; leave every other binding as it is."""
    name = f"{role} on {resource}"
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            policy = store.get()
        except exceptions.NotFound:
            if dry_run:  # the resource does not exist yet: the binding comes with it
                return Change("create", kind, name, detail=", ".join(members))
            raise IamError(f"cannot read the IAM policy of {resource}: it does not exist") from None
        binding = next((b for b in policy.bindings if b.role == role and not b.HasField("condition")), None)
        have = set(binding.members) if binding else set()
        missing = [m for m in members if m not in have]
        if not missing:
            return Change("unchanged", kind, name)
        if dry_run:
            return Change("create", kind, name, detail=", ".join(missing))
        if binding is None:
            binding = policy.bindings.add(role=role)
        binding.members.extend(missing)
        try:
            store.set(policy)
            return Change("create", kind, name, detail=", ".join(missing))
        except (exceptions.Aborted, exceptions.FailedPrecondition, exceptions.Conflict, exceptions.PreconditionFailed):
            time.sleep(min(0.1 * 2 ** attempt, 3.0))  # someone else wrote the policy: read it again
        except Exception as exc:
            # The write failed in transit (GCS retries a policy write only when it carries an etag): it may or may
            # not have happened, so read the policy again and decide from what is there.
            if not is_transient(exc):
                raise
            time.sleep(min(0.2 * 2 ** attempt, 5.0))
    raise IamError(f"{name}: the policy kept changing under us ({CONFLICT_ATTEMPTS} attempts); re-run apply")


def ensure_service_account(iam, spec: dict, dry_run: bool = False) -> Change:
    """A Google service account as ``iam_spec`` describes it (``project``, ``accountId``, ``email``,
    ``displayName``)."""
    from google.cloud import iam_admin_v1

    email = spec["email"]
    name = f"projects/{spec['project']}/serviceAccounts/{email}"
    try:
        iam.get_service_account(name=name, retry=RETRY)
        return Change("unchanged", "Google service account", email)
    except exceptions.NotFound:
        pass
    if not dry_run:
        try:
            iam.create_service_account(request=iam_admin_v1.CreateServiceAccountRequest(
                name=f"projects/{spec['project']}", account_id=spec["accountId"],
                service_account=iam_admin_v1.ServiceAccount(display_name=spec["displayName"])), retry=RETRY)
        except exceptions.AlreadyExists:
            pass
    return Change("create", "Google service account", email)


def ensure_bindings(store_for: Callable[[str], PolicyStore], bindings: list[dict], dry_run: bool = False) -> list[Change]:
    """Apply ``iam_spec`` bindings (``resource``, ``role``, ``members``) through each resource's policy store."""
    return [ensure_binding(store_for(b["resource"]), b["resource"], b["role"], b["members"], dry_run)
            for b in bindings]


def wait_for_service_account(iam, name: str, timeout: float = 60, sleep: Callable[[float], None] = time.sleep) -> None:
    """A new service account can take a moment to be usable in IAM policies; wait until it reads back."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            iam.get_service_account(name=name, retry=RETRY)
            return
        except exceptions.NotFound:
            if time.monotonic() > deadline:
                raise IamError(f"service account {name} not visible after {timeout:.0f} s") from None
            sleep(1)
