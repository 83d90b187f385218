"""A check's result, shared by doctor's checks and the Spinnaker contract's proofs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Check:
    id: str
    status: str   # ok | warn | fail
    message: str
    fix: str = ""
