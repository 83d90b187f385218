"""Where a running sandbox keeps its state, so `spinboot ... --sandbox` can find it."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    return Path(os.environ.get("SPINBOOT_SANDBOX_DIR") or Path.home() / ".local/state/spinboot/sandbox")


def endpoints_file() -> Path:
    """Written by `spinboot sandbox up`: the stand-ins' addresses and the sandbox's access token."""
    return Path(os.environ.get("SPINBOOT_SANDBOX") or state_dir() / "endpoints.json")
