"""What went wrong, in one line with its fix, for failures that are not about the file's content.

Every command ends the same way on such a failure: one line `error: CAUSE: FIX` on stderr (or a JSON `error` event
with `code`, `message` and `fix`), exit 1, no traceback. ``explain`` maps an exception to that line; ``preflight``
checks, before a command reads anything, that there are credentials and that Google (or the sandbox) answers, so
the first minutes of a new operator end in a sentence, not a stack trace or a two-minute wait.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from ..config.problems import redact

ADC_LOGIN = "run `gcloud auth application-default login`"
DEBUG_ENV = "SPINBOOT_DEBUG"  # set it to see the traceback of an unexpected failure
PREFLIGHT_TIMEOUT_SECONDS = float(os.environ.get("SPINBOOT_PREFLIGHT_TIMEOUT", "15"))


class Failure(Exception):
    """A failure said in one line: what happened (cause) and what to do (fix); ``code`` is stable, for CI."""

    def __init__(self, code: str, cause: str, fix: str, exit_code: int = 1):
        self.code, self.cause, self.fix, self.exit_code = code, redact(cause), redact(fix), exit_code
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.cause}: {self.fix}"


def short(exc: BaseException, limit: int = 240) -> str:
    """An exception's own words, on one line, redacted, shortened."""
    text = " ".join(str(getattr(exc, "message", None) or exc or type(exc).__name__).split())
    text = redact(text) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def no_credentials(exc: BaseException | None = None) -> Failure:
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path and not Path(path).expanduser().is_file():
        return Failure("no-credentials", f"GOOGLE_APPLICATION_CREDENTIALS points at {path}, which is not a file",
                       f"fix or unset it, {ADC_LOGIN}, or use --sandbox")
    return Failure("no-credentials", "no Google credentials", f"{ADC_LOGIN}, or use --sandbox")


def network(what: str, exc: BaseException) -> Failure:
    return Failure("network", f"cannot reach {what} ({network_reason(exc)})",
                   "check the network, DNS and proxy settings (HTTPS_PROXY), or use --sandbox")


def network_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words: which name did not resolve, or who refused."""
    import re

    import urllib3

    from ..gcp.retry import exception_chain

    proxy = any(isinstance(e, urllib3.exceptions.ProxyError) for e in exception_chain(exc))
    for e in exception_chain(exc):
        if isinstance(e, urllib3.exceptions.NameResolutionError):
            host = getattr(getattr(e, "conn", None), "host", None) or "the host"
            return f"DNS lookup of {host} failed"
        if isinstance(e, socket.gaierror):
            return f"DNS lookup failed: {e.strerror or e}"
        if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == 111:
            return "the proxy refused the connection" if proxy else "connection refused"
    text = " ".join(str(exc).split())
    m = re.search(r"errors? resolving ([^:\s]+)|Failed to resolve '([^']+)'|DNS resolution failed for ([^:\s]+)", text)
    if m:
        return f"DNS lookup of {next(g for g in m.groups() if g)} failed"
    if re.search(r"Connection refused", text, re.I):
        return "the proxy refused the connection" if proxy else "connection refused"
    if re.search(r"Network is unreachable|No route to host", text, re.I):
        return "no route to the network"
    if proxy:
        return "cannot connect to the proxy"
    return short(exc, 160)


def explain(exc: BaseException) -> Failure:
    """The one-line cause and fix of an exception a command did not handle itself."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc

    from ..gcp.retry import is_unreachable

    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        return explain(exc.cause)
    if isinstance(exc, aexc.DefaultCredentialsError):
        return no_credentials(exc)
    if isinstance(exc, aexc.RefreshError):
        return Failure("credentials-refused", f"Google refused the credentials ({short(exc)})",
                       f"{ADC_LOGIN} again, or check the service account spinboot runs as; or use --sandbox")
    if isinstance(exc, aexc.TransportError) or is_unreachable(exc):
        return network("Google Cloud", exc)
    if isinstance(exc, gexc.Unauthenticated):
        return Failure("credentials-refused", f"Google did not accept the credentials ({short(exc)})",
                       f"{ADC_LOGIN} again; or use --sandbox")
    if isinstance(exc, gexc.PermissionDenied):
        return Failure("permission-denied", f"Google refused the call ({short(exc)})",
                       "grant the identity running spinboot the roles in docs/apply.md (\"Access\")")
    if isinstance(exc, gexc.GoogleAPICallError):
        return Failure("google-api", f"Google API call failed ({short(exc)})",
                       "re-run the command; if it keeps failing, see docs/reliability.md")
    try:
        from kubernetes.client.exceptions import ApiException
    except ImportError:  # pragma: no cover
        ApiException = ()  # type: ignore[assignment]
    if isinstance(exc, ApiException):
        return Failure("kubernetes-api", f"Kubernetes API call failed (HTTP {exc.status} {short(exc.reason or exc)})",
                       "re-run the command; for 401/403 check the cluster's access (docs/apply.md, \"Access\")")
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        return Failure("os", f"{exc.strerror or short(exc)}{where}", "check the path and its permissions")
    return Failure("internal", f"unexpected {type(exc).__name__} ({short(exc)})",
                   f"this is a bug in spinboot: re-run with {DEBUG_ENV}=1 to see the traceback, and report it")


# --- before touching anything --------------------------------------------------------------------------------

def preflight_google(clients) -> None:
    """Credentials exist and Google answers: one token refresh, bounded in time. Raises Failure."""
    from google.auth import exceptions as aexc
    from google.auth.transport.requests import Request

    try:
        creds = clients.credentials  # Application Default Credentials, found once and shared by every client
    except aexc.DefaultCredentialsError as exc:
        raise no_credentials(exc) from None
    try:
        if not creds.valid:
            creds.refresh(functools.partial(Request(), timeout=PREFLIGHT_TIMEOUT_SECONDS))
    except aexc.RefreshError as exc:
        if isinstance(exc.__cause__, aexc.TransportError):
            raise network("Google's token service", exc) from None
        raise explain(exc) from None
    except (aexc.TransportError, OSError) as exc:
        raise network("Google's token service", exc) from None


def preflight_sandbox(endpoints, timeout: float = 2.0) -> None:
    """Every stand-in the sandbox wrote into its endpoints file accepts a connection. Raises Failure."""
    for what, address in (("GKE API", endpoints.gke), ("Pub/Sub", endpoints.pubsub),
                          ("Cloud Storage", endpoints.storage)):
        parts = urlsplit(address if "://" in address else f"//{address}")
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout):
                pass
        except OSError as exc:
            raise Failure("sandbox-unreachable",
                          f"the sandbox does not answer ({what} at {address}: {exc.strerror or short(exc)})",
                          "start it with `spinboot sandbox up`, or see `spinboot sandbox status`") from None
