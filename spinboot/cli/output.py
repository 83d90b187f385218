"""How commands speak: rich text for people, or one JSON event per line (--output json) for CI."""

from __future__ import annotations

import enum
import json
import sys
from typing import Any

from rich.console import Console


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"


class Reporter:
    def __init__(self, fmt: OutputFormat = OutputFormat.text):
        self.fmt = fmt
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def json(self) -> bool:
        return self.fmt == OutputFormat.json

    def event(self, event: str, text: str | None = None, **fields: Any) -> None:
        """Emit an event: a JSON line, or ``text`` for people (nothing when text is None)."""
        if self.json:
            sys.stdout.write(json.dumps({"event": event, **fields}, sort_keys=True) + "\n")
            sys.stdout.flush()
        elif text is not None:
            self.out.print(text, markup=False)

    def problem(self, p) -> None:
        if self.json:
            self.event("problem", **{k: v for k, v in p.as_event().items() if k != "event"})
        else:
            style = "yellow" if p.severity == "warning" else "red"
            self.err.print(str(p), style=style, markup=False)

    def error(self, message: str, **fields: Any) -> None:
        if self.json:
            self.event("error", message=message, **fields)
        else:
            self.err.print(f"error: {message}", style="red", markup=False)
