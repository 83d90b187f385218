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
