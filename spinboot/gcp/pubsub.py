"""Image-push triggers: each registry project's ``gcr`` topic, Spinnaker's subscription on it, and its IAM.

Container Registry and Artifact Registry publish every push to ``projects/<registry-project>/topics/gcr``
(https://cloud.google.com/artifact-registry/docs/configure-notifications). Echo gives up for good when its
subscription does not exist at start-up, so this runs before Halyard deploys Spinnaker.
"""

from __future__ import annotations

import json
import time
import uuid

from google.api_core import exceptions
from google.protobuf import duration_pb2, field_mask_pb2

from ..changes import Change, happened
from ..render.gcp import Binding, PubSubSpec, SubscriptionSpec, TopicSpec
from .iam import GrpcPolicy, ensure_bindings
from .retry import RETRY


class PubSubError(Exception):
    pass


def ensure_topic(publisher, topic: TopicSpec, dry_run: bool = False) -> Change:
    """The registry creates the topic when notifications are configured; spinboot adopts it or creates it."""
    path = topic.name
    try:
        publisher.get_topic(request={"topic": path}, retry=RETRY)
        return Change("unchanged", "Pub/Sub topic", path)
    except exceptions.NotFound:
        pass
    if not dry_run:
        try:
            publisher.create_topic(request={"name": path, "labels": dict(topic.labels)}, retry=RETRY)
        except exceptions.AlreadyExists:
            return Change("unchanged", "Pub/Sub topic", path)
        return happened(Change("create", "Pub/Sub topic", path))
    return Change("create", "Pub/Sub topic", path)


# An expiration policy without a ttl: the subscription never expires. Without one, Pub/Sub deletes a subscription
# after 31 days without subscriber activity, and echo never re-creates or retries it
# (https://cloud.google.com/pubsub/docs/subscription-properties#expiration_period).
NEVER_EXPIRE = {"ttl": None}


def _expiry_seconds(live) -> int | None:
    """Seconds of inactivity after which the live subscription is deleted, or None when it never expires."""
    pb = type(live).pb(live)
    if not pb.HasField("expiration_policy") or not pb.expiration_policy.HasField("ttl"):
        return None
    return int(pb.expiration_policy.ttl.seconds) or None


def ensure_subscription(subscriber, spec: SubscriptionSpec, dry_run: bool = False) -> Change:
    """Create the subscription as ``spec`` says, or bring a live one's ack deadline, retention and expiry to it.
    Labels (spinboot's ownership mark) are written only at creation: an adopted subscription stays someone else's."""
    path = spec.name
    want_ack, want_retention = spec.ack_deadline_seconds, spec.message_retention_seconds
    try:
        live = subscriber.get_subscription(request={"subscription": path}, retry=RETRY)
    except exceptions.NotFound:
        live = None
    if live is None:
        change = Change("create", "Pub/Sub subscription", path, detail=f"ack deadline {want_ack} s")
        if not dry_run:
            try:
                subscriber.create_subscription(request={
                    "name": path, "topic": spec.topic,
                    "ack_deadline_seconds": want_ack,
                    "message_retention_duration": duration_pb2.Duration(seconds=want_retention),
                    "expiration_policy": NEVER_EXPIRE,
                    "labels": dict(spec.labels),
                }, retry=RETRY)
            except exceptions.AlreadyExists:
                pass
            else:
                happened(change)
        return change
    if live.topic != spec.topic:
        return Change("blocked", "Pub/Sub subscription", path, detail=(
            f"it is attached to {live.topic}, not {spec.topic}, and a subscription's topic cannot change: "
            f"delete it (gcloud pubsub subscriptions delete {path}) and re-run, or choose another subscription.name"))
    drift, paths = [], []
    if live.ack_deadline_seconds != want_ack:
        drift.append(f"ack deadline {live.ack_deadline_seconds} → {want_ack} s")
        paths.append("ack_deadline_seconds")
    live_retention = live.message_retention_duration.total_seconds() if live.message_retention_duration else None
    if live_retention is not None and int(live_retention) != want_retention:
        drift.append(f"retention {int(live_retention)} → {want_retention} s")
        paths.append("message_retention_duration")
    ttl = _expiry_seconds(live)
    if ttl is not None:
        drift.append(f"expires after {ttl // 86400} idle days → never")
        paths.append("expiration_policy")
    if not drift:
        return Change("unchanged", "Pub/Sub subscription", path)
    if not dry_run:
        subscriber.update_subscription(request={
            "subscription": {"name": path, "topic": live.topic,
                             "ack_deadline_seconds": want_ack,
                             "message_retention_duration": duration_pb2.Duration(seconds=want_retention),
                             "expiration_policy": NEVER_EXPIRE},
            "update_mask": field_mask_pb2.FieldMask(paths=paths),
        }, retry=RETRY)
        return happened(Change("update", "Pub/Sub subscription", path, detail=", ".join(drift)))
    return Change("update", "Pub/Sub subscription", path, detail=", ".join(drift))


def ensure_pubsub(publisher, subscriber, spec: PubSubSpec, bindings: list[Binding],
                  dry_run: bool = False) -> list[Change]:
    """Topics, then each subscription followed by the ``bindings`` on it (render.gcp's ``pubsub_spec`` and the
    ``pubsub`` part of ``iam_spec``: what gcp/pubsub.yaml and gcp/iam.yaml show)."""
    changes: list[Change] = [ensure_topic(publisher, t, dry_run) for t in spec.topics]
    for sub in spec.subscriptions:
        changes.append(ensure_subscription(subscriber, sub, dry_run))
        changes += ensure_bindings(lambda resource: GrpcPolicy(subscriber, resource),
                                   [b for b in bindings if b.resource == sub.name], dry_run)
    return changes


def verify_delivery(publisher, subscriber, sub: SubscriptionSpec, timeout: float = 30) -> float:
    """Publish a GCR-format test message on the topic and receive it on Spinnaker's subscription; returns seconds.

    Only the test message is acknowledged; anything else pulled meanwhile is handed back at once (ack deadline 0)
    so echo still gets it. If echo is running it may take the test message first: verify before it starts.
    """
    marker = uuid.uuid4().hex
    # Every subscriber of the topic sees this message, so it must not look like a push anyone acts on: a DELETE
    # of an image in a repository that does not exist.
    repo = f"{sub.registry_address}/spinboot-verify/probe"
    payload = {"action": "DELETE", "digest": f"{repo}@sha256:{'0' * 64}", "tag": f"{repo}:{marker}"}
    started = time.monotonic()
    publisher.publish(sub.topic, json.dumps(payload).encode(), spinboot_verify=marker).result(timeout=timeout)
    path = sub.name
    while time.monotonic() - started < timeout:
        resp = subscriber.pull(request={"subscription": path, "max_messages": 10}, timeout=10, retry=RETRY)
        others = []
        for m in resp.received_messages:
            if m.message.attributes.get("spinboot_verify") == marker:
                subscriber.acknowledge(request={"subscription": path, "ack_ids": [m.ack_id]}, retry=RETRY)
                if others:
                    subscriber.modify_ack_deadline(request={"subscription": path, "ack_ids": others,
                                                            "ack_deadline_seconds": 0}, retry=RETRY)
                return time.monotonic() - started
            others.append(m.ack_id)
        if others:
            subscriber.modify_ack_deadline(request={"subscription": path, "ack_ids": others, "ack_deadline_seconds": 0},
                                           retry=RETRY)
    raise PubSubError(f"{path}: the test message published on {sub.topic} did not arrive within "
                      f"{timeout:.0f} s (is echo consuming it? is the subscription attached to that topic?)")
