"""Counting API calls where they land: at the sandbox's servers, not in spinboot.

Google calls are counted by the gRPC stand-ins (per method, classified read / mutating / data by
``sandboxsrv.Kind``) and, for Cloud Storage's JSON API, by the fault proxy the sandbox always puts in front of the
Storage stand-in (per verb and path shape, go/cmd/fault-proxy/counters.go: GET/HEAD are reads, the rest mutating);
Kubernetes calls by each API server's audit log, which records every request made with the
sandbox's admin token (spinboot's "Google credential"; see ``kube.ADMIN_USER``). A call that is retried counts
once per attempt, as a quota would. Tests use this to assert "the second apply made zero mutating calls"; the
benchmarks use it to report calls by kind.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .kube import MUTATING_VERBS, REVIEW_RESOURCES, KubeCluster

if TYPE_CHECKING:
    from .sandbox import Sandbox

READ_VERBS = {"get", "list", "watch"}


def kube_kind(event: dict) -> str:
    """read, mutating, or review (SubjectAccessReview and friends: a POST that changes nothing)."""
    ref = event.get("objectRef") or {}
    if ref.get("resource") in REVIEW_RESOURCES:
        return "review"
    if event.get("verb") in MUTATING_VERBS:
        return "read" if "dryRun=All" in event.get("requestURI", "") else "mutating"
    return "read"


def kube_key(event: dict) -> str:
    ref = event.get("objectRef") or {}
    res = ref.get("resource") or event.get("requestURI", "?").split("?")[0]
    if ref.get("subresource"):
        res += "/" + ref["subresource"]
    return f"{event.get('verb')} {res}"


@dataclass
class Calls:
    """Calls by server: ``google[service][kind]`` and ``kubernetes[cluster][kind]``, with per-method detail."""

    google: dict[str, dict[str, int]] = field(default_factory=dict)
    google_methods: dict[str, dict[str, int]] = field(default_factory=dict)
    kubernetes: dict[str, dict[str, int]] = field(default_factory=dict)
    kubernetes_requests: dict[str, dict[str, int]] = field(default_factory=dict)
    # How long each API server was busy with the run: its first request received to its last answer (audit log).
    kubernetes_span_s: dict[str, float] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        out: Counter = Counter()
        for per in (*self.google.values(), *self.kubernetes.values()):
            out.update(per)
        return {k: out.get(k, 0) for k in ("read", "mutating", "review", "data")}

    def as_dict(self) -> dict:
        return {"totals": self.totals(), "google": self.google, "google_methods": self.google_methods,
                "kubernetes": self.kubernetes, "kubernetes_requests": self.kubernetes_requests,
                "kubernetes_span_s": self.kubernetes_span_s}


class Meter:
    """``mark()`` before a run, ``since(mark)`` after it."""

    def __init__(self, sb: "Sandbox"):
        self.sb = sb

    def clusters(self) -> list[KubeCluster]:
        out = []
        for f in sorted(self.sb.clusters_dir.glob("*/cluster.json")):
            with contextlib.suppress(Exception):
                out.append(KubeCluster.attach(f.parent.name, self.sb.clusters_dir))
        return out

    def google_servers(self) -> list[tuple[str, object]]:
        """(service, counter handle) for every Google API the sandbox serves; Storage is counted by its proxy."""
        out = [("gke", self.sb.gke), ("pubsub", self.sb.pubsub)]
        if self.sb.storage_faults is not None:
            out.append(("storage", self.sb.storage_faults))
        return out

    def mark(self) -> dict[str, int]:
        """Reset the Google counters and remember where each audit log stands."""
        for _, server in self.google_servers():
            server.reset_counts()
        return {c.name: len(c.audit_events()) for c in self.clusters()}

    def since(self, mark: dict[str, int]) -> Calls:
        calls = Calls()
        for service, server in self.google_servers():
            counts = server.counts()
            calls.google[service] = {k: v for k, v in counts["totals"].items() if v}
            # gRPC methods ("/google.container.v1.ClusterManager/GetCluster") by their last part; the Storage
            # proxy's keys ("GET storage/v1/b/{}/iam") whole.
            calls.google_methods[service] = {m.rsplit("/", 1)[-1] if m.startswith("/") else m: c["calls"]
                                             for m, c in counts["methods"].items() if c["calls"]}
        for c in self.clusters():
            events = c.audit_events()[mark.get(c.name, 0):]
            if not events:
                continue
            calls.kubernetes[c.name] = dict(Counter(kube_kind(e) for e in events))
            calls.kubernetes_requests[c.name] = dict(Counter(kube_key(e) for e in events))
            with contextlib.suppress(KeyError, ValueError):
                calls.kubernetes_span_s[c.name] = round(
                    max(_micro(e["stageTimestamp"]) for e in events)
                    - min(_micro(e["requestReceivedTimestamp"]) for e in events), 3)
        return calls


def _micro(value: str) -> float:
    """An audit event's MicroTime (RFC 3339 with microseconds) in epoch seconds."""
    import datetime as dt

    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
