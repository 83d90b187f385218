"""What is wrong with a spinboot file, and how it is said: problems with their place, warning codes, and the
redaction of anything that looks like a credential.

Shared by the loader (shape of the file) and the rules (across fields), so neither imports the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Path_ = tuple[str | int, ...]

# --- warnings: stable codes, so a known one can be acknowledged (`acknowledge:` in spinboot.yaml) --------------

WARNINGS: dict[str, str] = {
    "halyard-unsupported": "Spinnaker 2026.1 or later deployed with Halyard, which upstream no longer supports",
    "halyard-image-frozen": "a Halyard image from the frozen community registry for a version published on ghcr.io",
    "standard-nodes": "a node pool that is not high-memory (clouddriver runs out of memory without failing a check)",
    "small-node-pool": "a node pool smaller than Spinnaker's documented minimum (18 GB, 6 vCPU)",
    "egress-none": "private nodes with egress: none (every image must be mirrored where the nodes reach it)",
    "plain-http": "an http:// URL behind Google's HTTPS load balancer",
    "front-ends-untrusted": "Google's front-end ranges missing from trustedProxies (Gate would redirect to http://)",
    "deck-proxy-untrusted": "Gate reached through Deck's /gate with no private range trusted (Gate would redirect to "
                            "http://)",
    "registry-polling": "a Google registry polled more often than every 300 s (HTTP 429s, then failed pulls)",
    "halyard-removed": "the halyard engine on a release cut after upstream removed Halyard (2026.3): only an older "
                       "Halyard image can deploy it, while its BOM is published",
    "front50-gcs-deprecated": "front50's GCS storage on a release that deprecates it (kept through 2027.0 only)",
    "system-namespace": "a target namespace that is a system namespace, let in by dangerouslyAllowSystemNamespaces",
}
# dangerouslyAllowSystemNamespaces already is the acknowledgement; the warning stays loud on every command on purpose.
UNACKNOWLEDGEABLE = frozenset({"system-namespace"})
ACKNOWLEDGEABLE = tuple(code for code in WARNINGS if code not in UNACKNOWLEDGEABLE)


# --- credentials never echoed ----------------------------------------------------------------------------------

# What a credential looks like, by its documented prefix or shape. A value that matches is never printed: not in a
# problem, not in an error, not in a JSON event.
_SECRETS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((what, re.compile(rx)) for what, rx in (
    # https://github.blog/2021-04-05-behind-githubs-new-authentication-token-formats/
    ("a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{8,}|github_pat_[A-Za-z0-9_]{8,})"),
    # Google OAuth 2.0 access tokens start with ya29. (https://developers.google.com/identity/protocols/oauth2)
    ("a Google access token", r"\bya29\.[0-9A-Za-z_.\-]{8,}"),
    ("a Google refresh token", r"\b1//0[0-9A-Za-z_\-]{20,}"),
    ("a Google API key", r"\bAIza[0-9A-Za-z_\-]{20,}"),
    ("a private key", r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----[A-Za-z0-9+/=\s\\]*(?:-----END[A-Z0-9 ]*PRIVATE KEY-----)?"),
    # Three base64url parts, the first two JSON objects ({" is eyJ): a JWT, e.g. a Kubernetes service-account token.
    ("a JSON Web Token", r"\beyJ[A-Za-z0-9_-]{6,}\.eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"),
    ("a GitLab token", r"\bglpat-[A-Za-z0-9_\-]{12,}"),
    ("a Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{8,}"),
    ("an AWS access key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("a service-account key file", r"\"private_key(?:_id)?\"\s*:"),
))


_ANY_SECRET = re.compile("|".join(f"(?:{rx.pattern})" for _, rx in _SECRETS))


def secret_kind(text: str) -> str | None:
    """What credential ``text`` looks like (e.g. "a GitHub token"), or None."""
    if not isinstance(text, str) or len(text) < 8 or not _ANY_SECRET.search(text):
        return None
    for what, rx in _SECRETS:
        if rx.search(text):
            return what
    return None


def redact(text: str) -> str:
    """``text`` with everything that looks like a credential replaced by what it looks like."""
    if not isinstance(text, str) or len(text) < 8 or not _ANY_SECRET.search(text):
        return text
    for what, rx in _SECRETS:
        text = rx.sub(f"[redacted: {what}]", text)
    return text


def redact_fields(value: Any) -> Any:
    """redact() every string inside a JSON-able value (events)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_fields(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_fields(v) for v in value]
    return value


# --- problems ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    column: int
    path: str
    message: str
    severity: str = "error"  # or "warning"
    code: str | None = None  # warnings: a key of WARNINGS
    loud: bool = False       # shown prominently on every command (a system namespace let in on purpose)

    def __post_init__(self) -> None:
        # Whatever a message quotes, a credential in it is never shown.
        object.__setattr__(self, "message", redact(self.message))
        object.__setattr__(self, "path", redact(self.path))

    def __str__(self) -> str:
        # As compilers do: FILE:LINE:COL: warning: ... [code], the code being what `acknowledge:` takes.
        where = f"{self.file}:{self.line}:{self.column}"
        prefix = "warning: " if self.severity == "warning" else ""
        suffix = f" [{self.code}]" if self.code else ""
        return f"{where}: {prefix}{self.path or '(file)'}: {self.message}{suffix}"

    def as_event(self) -> dict[str, Any]:
        event = {"event": "problem", "severity": self.severity, "file": self.file, "line": self.line,
                 "column": self.column, "path": self.path, "message": self.message}
        if self.code:
            event["code"] = self.code
        if self.loud:
            event["loud"] = True
        return event


class ConfigError(Exception):
    """The file is invalid; ``problems`` says everything that is wrong with it."""

    def __init__(self, problems: list[Problem], more: int = 0):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
        self.more = more  # problems found but not listed (the last problem says how many)

    @property
    def errors(self) -> int:
        """How many errors the file has, listed or not."""
        return sum(p.severity == "error" for p in self.problems) - (1 if self.more else 0) + self.more


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = str(part)
            # A key with a newline or escape sequence must not break the one-line FILE:LINE:COL: path format, and
            # a key of 100 000 characters is not printed whole.
            part = part if part.isprintable() else repr(part)
            if len(part) > 80:
                part = f"{part[:40]}...({len(part)} characters)"
            out += ("." if out else "") + part
    return out


def show(value: Any, limit: int = 80) -> str:
    """repr() for messages: shortened when long, safe for ints past Python's 4300-digit str() limit, and never a
    credential."""
    if isinstance(value, str):
        kind = secret_kind(value)
        if kind:
            return f"a value that looks like {kind} (not shown)"
    try:
        text = repr(value)
    except ValueError:
        if isinstance(value, int):
            return f"a {value.bit_length()}-bit number"
        return f"a {type(value).__name__} holding a number too long to print"
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text)} characters)"


class Positions:
    """Maps each path in the document to the line and column (1-based) where it is written."""

    def __init__(self, file: str):
        self.file = file
        self.map: dict[Path_, tuple[int, int]] = {(): (1, 1)}
        self.text: dict[Path_, str] = {}  # scalars as written, e.g. "1.30" that YAML reads as 1.3
        self.quoted: set[Path_] = set()   # scalars written in quotes (their text is text, whatever it looks like)

    def at(self, path: Path_) -> tuple[int, int]:
        for n in range(len(path), -1, -1):
            if path[:n] in self.map:
                return self.map[path[:n]]
        return (1, 1)

    def problem(self, path: Path_, message: str, severity: str = "error", code: str | None = None,
                loud: bool = False) -> Problem:
        line, col = self.at(path)
        return Problem(self.file, line, col, format_path(path), message, severity, code, loud)
