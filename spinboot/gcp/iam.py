"""Spinnaker's Google service account and IAM bindings, by read-modify-write with etags.

A binding is added to the policy that is there; bindings spinboot did not create are never dropped. A write with
a stale etag is refused by the API (ABORTED or FAILED_PRECONDITION); spinboot then reads again and retries
(https://cloud.google.com/iam/docs/policies#etag).

A service account just created is eventually consistent: it reads back at once, but for a while a policy naming it
is refused with INVALID_ARGUMENT "Service account EMAIL does not exist."
(https://cloud.google.com/iam/docs/service-account-overview#eventual-consistency). spinboot waits that out for a
bounded time (``SA_PROPAGATION_SECONDS``), retrying only that refusal and only for a member it is adding.
"""

from __future__ import annotations

import os
import re
import time
from typing import Callable, Protocol

from google.api_core import exceptions
from google.iam.v1 import policy_pb2

from ..changes import Change
from ..render.gcp import Binding, ServiceAccountSpec
from .retry import RETRY, is_transient

CONFLICT_ATTEMPTS = 8
# How long a refusal of a member service account as "does not exist" is retried: IAM changes typically apply within
# 2 minutes (https://cloud.google.com/iam/docs/access-change-propagation).
SA_PROPAGATION_SECONDS = float(os.environ.get("SPINBOOT_IAM_PROPAGATION_TIMEOUT", "120"))
_SA_MISSING = re.compile(r"Service account (\S+?)\.? does not exist")


def _refused_account(exc: BaseException) -> str | None:
    """The email of a service account the policy write was refused for as not existing, if that is the refusal
    (gRPC INVALID_ARGUMENT, or HTTP 400 from Cloud Storage's JSON API: InvalidArgument is a BadRequest)."""
    if not isinstance(exc, exceptions.BadRequest):
        return None
    m = _SA_MISSING.search(str(exc))
    return m.group(1) if m else None


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


Edit = Callable[[policy_pb2.Policy], "tuple[Change, list[str]]"]


def modify_policy(store: PolicyStore, name: str, edit: Edit, on_missing: Callable[[], Change], dry_run: bool = False,
                  progress: Callable[[str], None] = lambda m: None, propagation_timeout: float | None = None,
                  sleep: Callable[[float], None] = time.sleep, verb: str = "apply") -> Change:
    """The one IAM read-modify-write: read the policy, let ``edit`` change it in place and say what it did (a Change,
    and the members it adds), write it back with the etag it was read with.

    A write refused for a stale etag reads again and retries (``CONFLICT_ATTEMPTS`` times); a write lost in transit
    likewise (it may or may not have happened: the next read decides). A member service account IAM does not know
    yet because it was just created is waited for, up to ``propagation_timeout`` seconds (default
    ``SA_PROPAGATION_SECONDS``). An "unchanged" Change, or a dry run, writes nothing."""
    timeout = SA_PROPAGATION_SECONDS if propagation_timeout is None else propagation_timeout
    attempt = 0
    waited_since: float | None = None
    wait_delay = 1.0
    while attempt < CONFLICT_ATTEMPTS:
        try:
            policy = store.get()
        except exceptions.NotFound:
            return on_missing()
        change, added = edit(policy)
        if change.action == "unchanged" or dry_run:
            return change
        try:
            store.set(policy)
            if waited_since is not None:
                progress(f"{name}: accepted after {time.monotonic() - waited_since:.0f} s")
            return change
        except (exceptions.Aborted, exceptions.FailedPrecondition, exceptions.Conflict, exceptions.PreconditionFailed):
            sleep(min(0.1 * 2 ** attempt, 3.0))  # someone else wrote the policy: read it again
            attempt += 1
        except Exception as exc:
            email = _refused_account(exc)
            if email is not None and f"serviceAccount:{email}" in added:
                # A service account made moments ago is not known to IAM policies yet: wait, then read again.
                now = time.monotonic()
                if waited_since is None:
                    waited_since = now
                    progress(f"{name}: service account {email} is new and not yet known to IAM (eventual "
                             f"consistency); retrying for up to {timeout:.0f} s")
                if now - waited_since + wait_delay > timeout:
                    raise IamError(
                        f"{name}: IAM still says service account {email} does not exist after {now - waited_since:.0f} s. "
                        "A new service account can take minutes to be usable in policies: re-run apply shortly. If it "
                        f"persists, check that the account exists (gcloud iam service-accounts describe {email})") from exc
                sleep(wait_delay)
                wait_delay = min(wait_delay * 2, 10.0)
                continue
            # The write failed in transit (GCS retries a policy write only when it carries an etag): it may or may
            # not have happened, so read the policy again and decide from what is there.
            if not is_transient(exc):
                raise
            sleep(min(0.2 * 2 ** attempt, 5.0))
            attempt += 1
    raise IamError(f"{name}: the policy kept changing under us ({CONFLICT_ATTEMPTS} attempts); re-run {verb}")


def _unconditional(policy: policy_pb2.Policy, role: str):
    """Bindings of ``role`` without a condition: the only ones spinboot adds to or takes from."""
    return [b for b in policy.bindings if b.role == role and not b.HasField("condition")]


def ensure_binding(store: PolicyStore, resource: str, role: str, members: list[str] | tuple[str, ...],
                   dry_run: bool = False, kind: str = "IAM binding", progress: Callable[[str], None] = lambda m: None,
                   propagation_timeout: float | None = None, sleep: Callable[[float], None] = time.sleep) -> Change:
    """Make ``members`` hold ``role`` on the resource; leave every other binding as it is."""
    name = f"{role} on {resource}"

    def edit(policy: policy_pb2.Policy) -> tuple[Change, list[str]]:
        found = _unconditional(policy, role)
        have = {m for b in found for m in b.members}
        missing = [m for m in members if m not in have]
        if not missing:
            return Change("unchanged", kind, name), []
        binding = found[0] if found else policy.bindings.add(role=role)
        binding.members.extend(missing)
        return Change("create", kind, name, detail=", ".join(missing)), missing

    def on_missing() -> Change:
        if dry_run:  # the resource does not exist yet: the binding comes with it
            return Change("create", kind, name, detail=", ".join(members))
        raise IamError(f"cannot read the IAM policy of {resource}: it does not exist")

    return modify_policy(store, name, edit, on_missing, dry_run, progress, propagation_timeout, sleep)


def remove_members(store: PolicyStore, resource: str, role: str, members: list[str] | tuple[str, ...],
                   dry_run: bool = False, sleep: Callable[[float], None] = time.sleep) -> Change:
    """Take ``members`` out of ``role`` on the resource (destroy); every other member and binding stays."""
    name = f"{role} on {resource}"

    def edit(policy: policy_pb2.Policy) -> tuple[Change, list[str]]:
        present = sorted({m for b in _unconditional(policy, role) for m in b.members if m in members})
        if not present:
            return Change("unchanged", "IAM binding", name), []
        keep = []
        for b in policy.bindings:
            if b.role == role and not b.HasField("condition"):
                rest = [m for m in b.members if m not in members]
                del b.members[:]
                b.members.extend(rest)
            if b.members:
                keep.append(policy_pb2.Binding())
                keep[-1].CopyFrom(b)
        # Rebuild the list without emptied bindings (IAM refuses bindings without members).
        del policy.bindings[:]
        policy.bindings.extend(keep)
        return Change("delete", "IAM binding", name, detail=", ".join(present)), []

    return modify_policy(store, name, edit, lambda: Change("unchanged", "IAM binding", name, detail="resource gone"),
                         dry_run, sleep=sleep, verb="destroy")


def ensure_service_account(iam, spec: ServiceAccountSpec, dry_run: bool = False) -> Change:
    """A Google service account as ``iam_spec`` describes it."""
    from google.cloud import iam_admin_v1

    try:
        iam.get_service_account(name=spec.name, retry=RETRY)
        return Change("unchanged", "Google service account", spec.email)
    except exceptions.NotFound:
        pass
    if not dry_run:
        try:
            iam.create_service_account(request=iam_admin_v1.CreateServiceAccountRequest(
                name=f"projects/{spec.project}", account_id=spec.account_id,
                service_account=iam_admin_v1.ServiceAccount(display_name=spec.display_name)), retry=RETRY)
        except exceptions.AlreadyExists:
            pass
    return Change("create", "Google service account", spec.email)


def ensure_bindings(store_for: Callable[[str], PolicyStore], bindings: list[Binding], dry_run: bool = False,
                    progress: Callable[[str], None] = lambda m: None) -> list[Change]:
    """Apply ``iam_spec`` bindings through each resource's policy store."""
    return [ensure_binding(store_for(b.resource), b.resource, b.role, b.members, dry_run, progress=progress)
            for b in bindings]


def wait_for_service_account(iam, name: str, timeout: float = 60, sleep: Callable[[float], None] = time.sleep) -> None:
    """A new service account can take a moment to read back; wait until it does. (Reading back is not enough for
    IAM policies to accept it: ensure_binding waits for that separately.)"""
    deadline = time.monotonic() + timeout
    while True:
        try:
            iam.get_service_account(name=name, retry=RETRY)
            return
        except exceptions.NotFound:
            if time.monotonic() > deadline:
                raise IamError(f"service account {name} not visible after {timeout:.0f} s") from None
            sleep(1)
