"""A docker-registry account's two steps, as Halyard and clouddriver take them: resolve the password, list tags.

Password: ``password``, else ``passwordCommand`` run as ``bash -c`` in the image's environment (see toolset.py),
else ``passwordFile`` (clouddriver-docker DockerBearerTokenService.getBasicAuth; halyard
DockerRegistryAccountValidator.validate). The output is trimmed; a failing command still yields its (usually
empty) output, and Halyard only warns about it, so the refusal comes from the registry.

Tags: the Docker Registry HTTP API v2 with the token flow (clouddriver-docker DockerRegistryClient.getTags and
DockerBearerTokenService.getToken): ``GET /v2/REPO/tags/list`` answers 401 with ``WWW-Authenticate: Bearer
realm=...,service=...[,scope=...]``; the client asks the realm for a token with ``Basic username:password``, then
repeats the read with ``Bearer TOKEN``.

In the sandbox there is no DNS for registries: a Google registry host (``LOCATION-docker.pkg.dev``, ``gcr.io``)
is reached at the Artifact Registry stand-in (endpoints.json ``registry``) with the real host in the ``Host``
header, as DNS would route it (docs/dev/spinnaker-side-interfaces.md). Other hosts cannot be reached from here.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .toolset import run_in_image

TIMEOUT_S = 15.0
_GOOGLE_REGISTRY = re.compile(r"^(?:[a-z0-9-]+-docker\.pkg\.dev|(?:[a-z]+\.)?gcr\.io)$")


class RegistryError(Exception):
    """A registry read that failed; the message is what clouddriver's client would report."""


@dataclass
class Password:
    value: str
    # (severity, message) Halyard reports while resolving it (DockerRegistryAccountValidator)
    problems: list[tuple[str, str]] = field(default_factory=list)
    command_stderr: str = ""


def resolve_password(account: dict[str, Any], image: str, env: dict[str, str] | None = None,
                     home: str | None = None, base_dir: Path | None = None) -> Password:
    """The password an image running ``account``'s settings would get (with Halyard's warnings)."""
    password, command, pfile = account.get("password"), account.get("passwordCommand"), account.get("passwordFile")
    if password:
        return Password(str(password))
    if command:
        res = run_in_image(image, str(command), env=env, home=home)
        out = Password(res.stdout.strip(), command_stderr=res.stderr)
        if res.returncode != 0:
            out.problems.append(("WARNING", "Password command returned non 0 return code, stderr/stdout was:"
                                 + res.stderr))
        if not out.value:
            out.problems.append(("WARNING", "Resolved Password was empty, missing dependencies for running "
                                 "password command?"))
        return out
    if pfile:
        path = Path(str(pfile))
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            value = path.read_text()
        except OSError as exc:
            return Password("", [("FATAL", f"Cannot find provided path: {exc}.")])
        return Password(value, [("WARNING", "The supplied password file is empty.")] if not value else [])
    return Password("")


def registry_host(address: str) -> str:
    """``https://us-docker.pkg.dev/`` -> ``us-docker.pkg.dev`` (Halyard accepts an address with or without a scheme)."""
    a = str(address).strip()
    if "://" not in a:
        a = "https://" + a
    return urllib.parse.urlsplit(a).netloc.lower()


def served_by_sandbox(host: str) -> bool:
    return bool(_GOOGLE_REGISTRY.match(host.split(":")[0]))


class RegistryClient:
    """Tags of a repository on ``address``, reached through ``registry_url`` (the sandbox's AR stand-in)."""

    def __init__(self, registry_url: str | None, address: str, username: str | None, password: str):
        self.host = registry_host(address)
        self.registry_url = (registry_url or "").rstrip("/")
        self.username, self.password = username or "", password

    def _open(self, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """GET ``url`` (a URL on the real registry host); connect to the stand-in when the sandbox serves it."""
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc.lower()
        if self.registry_url and host == urllib.parse.urlsplit(self.registry_url).netloc.lower():
            host = self.host                  # a realm naming the stand-in itself: keep the registry's Host
        elif not served_by_sandbox(host):
            raise RegistryError(f"{host}: no such host (the sandbox reaches only Artifact Registry and gcr.io "
                                "hosts, through its registry stand-in)")
        if not self.registry_url:
            raise RegistryError(f"{host}: unreachable: this sandbox has no registry stand-in (endpoints.json has "
                                "no 'registry')")
        target = self.registry_url + parts.path + (f"?{parts.query}" if parts.query else "")
        req = urllib.request.Request(target, headers={**headers, "Host": host,
                                                      "User-Agent": "Spinnaker-Clouddriver (sandbox)"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers.items()), exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise RegistryError(f"{host}: {getattr(exc, 'reason', exc)}") from None

    def _token(self, challenge: str, repository: str) -> str:
        params = parse_challenge(challenge)
        realm = params.get("realm")
        if not realm:
            raise RegistryError("Www-Authenticate header must provide 'realm' parameter.")
        query = {"scope": params.get("scope") or f"repository:{repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {}
        if self.username or self.password:
            basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        status, _, body = self._open(realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query), headers)
        if status != 200:
            raise RegistryError(f"Authentication failed: {status} {_reason(body)}")
        try:
            doc = json.loads(body)
        except ValueError:
            raise RegistryError("Authentication failed: token response is not JSON") from None
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise RegistryError("Authentication failed: no token in the token response")
        return token

    def _get(self, path: str, repository: str) -> Any:
        url = f"https://{self.host}{path}"
        status, headers, body = self._open(url, {})
        if status == 401:
            challenge = next((v for k, v in headers.items() if k.lower() == "www-authenticate"), "")
            if not challenge.lower().startswith("bearer"):
                raise RegistryError(f"Status 401 for {path} without a Bearer challenge: {_reason(body)}")
            token = self._token(challenge, repository)
            status, headers, body = self._open(url, {"Authorization": f"Bearer {token}"})
        if status != 200:
            raise RegistryError(f"Status {status} for {path}: {_reason(body)}")
        try:
            return json.loads(body)
        except ValueError:
            raise RegistryError(f"{path}: the registry's answer is not JSON") from None

    def tags(self, repository: str) -> list[str]:
        return list(self._get(f"/v2/{repository}/tags/list", repository).get("tags") or [])

    def catalog(self) -> list[str]:
        return list(self._get("/v2/_catalog", "").get("repositories") or [])


def parse_challenge(header: str) -> dict[str, str]:
    """``Bearer realm="...",service="...",scope="..."`` -> its parameters (RFC 2617 form, as clouddriver parses it)."""
    rest = header.split(" ", 1)[1] if " " in header else ""
    return {k.lower(): v for k, v in re.findall(r'([A-Za-z]+)="?([^",]*)"?', rest)}


def _reason(body: bytes) -> str:
    text = body.decode(errors="replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:300] or "(no body)"
    if isinstance(doc, dict):
        errs = doc.get("errors")
        if isinstance(errs, list) and errs:
            return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errs
                             if isinstance(e, dict))
        err = doc.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if isinstance(err, str):
            return err
    return text[:300]
