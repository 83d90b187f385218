"""How commands speak: rich text for people, or one JSON event per line (--output json) for CI.

Whatever is printed, text or JSON, passes through the same redaction: a value that looks like a credential (a
token, a private key) is never shown (spinboot.config.problems.redact).
"""

from __future__ import annotations

import enum
import json
import sys
from typing import Any

from rich.console import Console

from ..config.problems import redact, redact_fields


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"


_current: "Reporter | None" = None


def current() -> "Reporter":
    """The reporter the running command made (for failures caught outside it); text when there is none yet."""
    return _current or Reporter(OutputFormat.text)


class Reporter:
    def __init__(self, fmt: OutputFormat = OutputFormat.text):
        global _current
        self.fmt = OutputFormat(fmt)
        # emoji=False: rich would print "spinboot.yaml:100:3" as "spinboot.yaml💯3".
        self.out = Console(highlight=False, soft_wrap=True, emoji=False)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
        _current = self

    @property
    def json(self) -> bool:
        return self.fmt == OutputFormat.json

    def event(self, event: str, text: str | None = None, **fields: Any) -> None:
        """Emit an event: a JSON line, or ``text`` for people (nothing when text is None)."""
        if self.json:
            sys.stdout.write(json.dumps({"event": event, **redact_fields(fields)}, sort_keys=True) + "\n")
            sys.stdout.flush()
        elif text is not None:
            self.out.print(redact(text), markup=False)

    def problem(self, p) -> None:
        if self.json:
            self.event("problem", **{k: v for k, v in p.as_event().items() if k != "event"})
        elif getattr(p, "loud", False):
            # Loud on purpose: a system namespace let in by dangerouslyAllowSystemNamespaces, on every command.
            self.err.print(str(p), style="bold white on red", markup=False)
        else:
            style = "yellow" if p.severity == "warning" else "red"
            self.err.print(str(p), style=style, markup=False)

    def error(self, message: str, code: str | None = None, fix: str | None = None, **fields: Any) -> None:
        """One line: ``error: MESSAGE`` on stderr, or an ``error`` event (with ``code`` and ``fix`` when known)."""
        extra = {k: v for k, v in (("code", code), ("fix", fix)) if v is not None}
        if self.json:
            self.event("error", message=message, **extra, **fields)
        else:
            self.err.print(f"error: {redact(message)}", style="red", markup=False)

    def failure(self, failure) -> None:
        """A cli.errors.Failure: its one line, and its code and fix in JSON."""
        self.error(failure.message, code=failure.code, fix=failure.fix)
