"""Local fakes of what the Halyard pod reaches in the sandbox, for running the ``hal`` stand-in without a sandbox.

Halyard validates a docker-registry account by running its password command and reading tags from the registry
(spinboot/sandbox/hal/validate.py). Outside the sandbox there is neither a metadata server nor a registry, so a
test that runs configure.sh against the bare stand-in would (rightly) fail there. :func:`fake_google` starts
minimal fakes that speak the same protocols as the sandbox's real parts (docs/dev/spinnaker-side-interfaces.md):

    with fake_google(tmp_path) as env:          # {"GCE_METADATA_HOST": ..., "SPINBOOT_SANDBOX_ENDPOINTS": ...}
        subprocess.run([... "hal" ...], env={**os.environ, **env})

The metadata server hands out ``token`` (``refuse=True`` makes it answer 403, as GKE's does without a Workload
Identity binding); the registry serves every ``LOCATION-docker.pkg.dev`` / ``gcr.io`` repository with two tags to
Basic ``oauth2accesstoken:<token>`` and refuses any other credentials with Artifact Registry's wording.
These are fakes: tests/sandbox/ uses the real stand-ins.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import threading
from pathlib import Path
from typing import Iterator

GOOD_TOKEN = "sbx1.fake-identity-token"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class FakeMetadata(http.server.BaseHTTPRequestHandler):
    token = GOOD_TOKEN
    email = "spinnaker@acme-platform.iam.gserviceaccount.com"
    refuse = ""                      # a reason: every token request is refused (403) with it

    def log_message(self, *a) -> None:
        pass

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Metadata-Flavor", "Google")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.headers.get("Metadata-Flavor") != "Google":
            return self._send(403, b"Missing Metadata-Flavor:Google header.")
        if self.path.split("?")[0].endswith("/service-accounts/default/token"):
            if type(self).refuse:
                return self._send(403, type(self).refuse.encode())
            return self._send(200, json.dumps({"access_token": type(self).token, "expires_in": 3599,
                                               "token_type": "Bearer"}).encode())
        if self.path.endswith("/service-accounts/default/email"):
            return self._send(200, type(self).email.encode())
        return self._send(404, b"not found")


class FakeRegistry(http.server.BaseHTTPRequestHandler):
    token = GOOD_TOKEN
    seen_hosts: list[str] = []
    realm = ""                       # set by fake_google: the registry's own URL, as the sandbox's stand-in does

    def log_message(self, *a) -> None:
        pass

    def _json(self, code: int, doc: dict, headers: dict | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0]
        type(self).seen_hosts.append(host)
        if not (host.endswith("-docker.pkg.dev") or host.endswith("gcr.io")):
            return self._json(404, {"errors": [{"code": "NAME_UNKNOWN", "message": f"unknown registry host {host}"}]})
        if self.path.startswith("/v2/token"):
            auth = self.headers.get("Authorization", "")
            user, _, pw = (base64.b64decode(auth[6:]).decode().partition(":") if auth.startswith("Basic ")
                           else ("", "", ""))
            if user == "oauth2accesstoken" and pw == type(self).token:
                return self._json(200, {"token": "fake-registry-token"})
            return self._json(403, {"errors": [{"code": "DENIED", "message": "Permission "
                                                "\"artifactregistry.repositories.downloadArtifacts\" denied on "
                                                "resource (or it may not exist)"}]})
        if self.path.endswith("/tags/list"):
            repo = self.path[len("/v2/"):-len("/tags/list")]
            if self.headers.get("Authorization") != "Bearer fake-registry-token":
                challenge = (f'Bearer realm="{type(self).realm or "https://" + host}/v2/token",service="{host}",'
                             f'scope="repository:{repo}:pull"')
                return self._json(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                                  {"WWW-Authenticate": challenge})
            return self._json(200, {"name": repo, "tags": ["1.0.0", "latest"]})
        return self._json(404, {"errors": [{"code": "NOT_FOUND", "message": self.path}]})


def _serve(handler: type) -> tuple[_Server, str]:
    srv = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"127.0.0.1:{srv.server_address[1]}"


@contextlib.contextmanager
def fake_google(directory: Path | str) -> Iterator[dict[str, str]]:
    """Start the fakes; yield the environment variables the Halyard pod would have."""
    md, md_host = _serve(FakeMetadata)
    reg, reg_host = _serve(FakeRegistry)
    FakeRegistry.seen_hosts = []
    FakeRegistry.realm = f"http://{reg_host}"
    endpoints = Path(directory) / "fake-endpoints.json"
    endpoints.write_text(json.dumps({"registry": f"http://{reg_host}"}))
    try:
        yield {"GCE_METADATA_HOST": md_host, "GCE_METADATA_ROOT": md_host, "GCE_METADATA_IP": md_host,
               "SPINBOOT_SANDBOX_ENDPOINTS": str(endpoints)}
    finally:
        md.shutdown()
        reg.shutdown()
        md.server_close()
        reg.server_close()
