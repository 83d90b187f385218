"""The fault-injecting HTTP(S) proxy (``go/cmd/fault-proxy``) the sandbox can put in front of every Kubernetes API
server and of the Storage stand-in, so tests can make those APIs fail as real ones do.

    proxy = FaultProxy(state_dir, upstream="https://127.0.0.1:6443", upstream_ca="ca.crt",
                       tls=("proxy.crt", "proxy.key"), error_style="kubernetes").start()
    proxy.url                               # what clients use instead of the upstream's URL
    proxy.set_faults("PATCH /rolebindings/=500:after:count=1;*=429:rate=0.1")
    proxy.counts()["methods"]["PATCH rolebindings"]   # {kind, calls, errors, injected, codes}
    proxy.stop()

Rules: ``MATCH=CODE[:count=N][:rate=F][:delay=D][:after][:msg=T]``, separated by ``;`` or newlines. ``MATCH`` is
``*``, a verb, or ``VERB SUBSTRING`` / ``* SUBSTRING`` of the URL path. ``CODE`` is an HTTP status (429 and 503
carry ``Retry-After: 1``; the body is a Kubernetes ``Status`` or a Google JSON error, per ``error_style``),
``RESET`` (the client's TCP connection is reset) or ``OK`` (with ``delay=``, latency only). ``:after`` forwards the
request first, so it takes effect upstream, then fails the response. Upgrades (exec) are never failed; watches
stream through. Calls are counted per verb and resource (``GET namespaces``, ``PATCH rolebindings``,
``POST serviceaccounts/token``); GET/HEAD/OPTIONS, reviews and dry runs are ``read``, the rest ``mutating``.

``iam_gate="storage"`` (``--iam-gate storage``) also enforces Cloud Storage IAM for calls carrying a sandbox identity
token (needs $SPINBOOT_SANDBOX_TOKEN and $SPINBOOT_SANDBOX_IAM_ROLES in ``env``; see docs/sandbox.md): the request
is mapped to the permissions its JSON API method needs, the bucket's policy is read from upstream, and the call is
answered 403 in Cloud Storage's JSON form or forwarded without the token. Operator calls pass unchecked.

The process is handled like the other sandbox servers (spinboot/sandbox/gcp.py): own session, log, PID file in
``state_dir``, stopped at interpreter exit unless detached, reaped from its PID file by a later run.
"""

from __future__ import annotations

import os

from .gcp import FaultAdmin, _GoServer

ERROR_STYLES = ("kubernetes", "google")


class ProxyAdmin(FaultAdmin):
    """Handle on a running proxy started elsewhere (e.g. by a detached cluster): its URL and admin endpoint."""

    def __init__(self, url: str, admin_url: str):
        super().__init__(admin_url)
        self.url = url

    def __repr__(self) -> str:
        return f"ProxyAdmin({self.url!r}, admin={self.admin_url!r})"


class FaultProxy(_GoServer):
    """One fault-proxy process in front of ``upstream`` (``http://`` or ``https://``; ``upstream_ca`` verifies
    the latter). With ``tls=(cert, key)`` it serves HTTPS, else plain HTTP, on 127.0.0.1. Admin methods
    (``counts``, ``reset_counts``, ``mutating_calls``, ``set_faults``, ``add_faults``, ``clear_faults``,
    ``list_faults``) come from :class:`FaultAdmin`."""

    binary = "fault-proxy"

    def __init__(self, state_dir: str | os.PathLike, *, upstream: str, error_style: str = "google",
                 upstream_ca: str | os.PathLike | None = None,
                 tls: tuple[str | os.PathLike, str | os.PathLike] | None = None, iam_gate: str = "", **kw):
        if error_style not in ERROR_STYLES:
            raise ValueError(f"error_style must be one of {ERROR_STYLES}")
        super().__init__(state_dir, **kw)
        self.upstream = upstream
        self.error_style = error_style
        self.upstream_ca = upstream_ca
        self.tls = tls
        self.iam_gate = iam_gate

    def _args(self) -> list[str]:
        args = ["--name", self.name, "--upstream", self.upstream, "--error-style", self.error_style]
        if self.upstream_ca:
            args += ["--upstream-ca", str(self.upstream_ca)]
        if self.tls:
            args += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        if self.iam_gate:
            args += ["--iam-gate", self.iam_gate]
        return args

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:PORT``: where clients reach the upstream through the proxy."""
        return self.address

    def __repr__(self) -> str:
        return f"FaultProxy({self.url or '(stopped)'} -> {self.upstream}, admin={self.admin_url!r})"
