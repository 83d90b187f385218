"""What a step did, or in a plan would do, to one resource: the common currency of plan, apply and events."""

from __future__ import annotations

from dataclasses import dataclass

ACTIONS = ("create", "update", "delete", "unchanged", "blocked")


@dataclass(frozen=True)
class Change:
    action: str        # create, update, delete, unchanged, or blocked (needs an operator: see detail)
    kind: str          # e.g. RoleBinding, GKE cluster, Pub/Sub subscription
    name: str
    namespace: str | None = None
    detail: str = ""

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"

    @property
    def mutating(self) -> bool:
        return self.action in ("create", "update", "delete")

    def as_dict(self) -> dict:
        d = {"action": self.action, "kind": self.kind, "name": self.name}
        if self.namespace:
            d["namespace"] = self.namespace
        if self.detail:
            d["detail"] = self.detail
        return d


# --- changes reported as they happen ------------------------------------------------------------------------------
# A step that writes three objects and then fails has still made three changes: the engine must say so. Writes
# happen in the step's own thread, so the engine installs a reporter there and every reconciler reports a write the
# moment the API accepted it (``happened``), whatever the step does next.

import contextlib  # noqa: E402
import threading  # noqa: E402
from typing import Callable, Iterator  # noqa: E402

_local = threading.local()


@contextlib.contextmanager
def reporting(callback: Callable[[Change], None]) -> Iterator[None]:
    previous = getattr(_local, "callback", None)
    _local.callback = callback
    try:
        yield
    finally:
        _local.callback = previous


def happened(change: Change) -> Change:
    """Report a change that was just made to live state (nothing for dry runs: only call it after a write)."""
    callback = getattr(_local, "callback", None)
    if callback is not None and change.mutating:
        callback(change)
    return change
