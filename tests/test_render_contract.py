"""What Spinnaker needs from a render (issue 10), checked on the rendered files: each case failed before its fix.

The sandbox proves the same at deploy time (tests/sandbox/test_startup_play.py, tests/e2e); these pin the
renderers so a regression shows without a sandbox.
"""

from __future__ import annotations

import shlex
import subprocess

import yaml

from spinboot.config import load_config, load_config_bytes
from spinboot.render import render_all
from spinboot.render.halgrammar import parse_script
from spinboot.render.halscript import METADATA_TOKEN_COMMAND

from .conftest import EXAMPLES, MINIMAL

EXAMPLE = (EXAMPLES / "spinboot.yaml").read_text()


def render(text: str) -> dict[str, bytes]:
    return render_all(load_config_bytes(text.encode(), "spinboot.yaml").config)


def hal_lines(files) -> list[list[str]]:
    return [argv for _, argv in parse_script(files["halconfig/configure.sh"].decode())]


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def bindings(files) -> list[dict]:
    return yaml.safe_load(files["gcp/iam.yaml"])["bindings"]


def test_registry_password_command_needs_no_gcloud_and_no_spring_placeholder():
    files = render_all(load_config(EXAMPLES / "spinboot.yaml").config)
    adds = [a for a in hal_lines(files) if a[1:5] == ["config", "provider", "docker-registry", "account"]]
    assert adds
    for argv in adds:
        if "--password-command" in argv:
            cmd = flag(argv, "--password-command")
            assert cmd == METADATA_TOKEN_COMMAND
            # The Halyard image has no gcloud; clouddriver binds the value through Spring, where ${...} resolves.
            assert "gcloud" not in cmd and "$" not in cmd
            assert shlex.split(cmd)[0] == "python3"


def test_metadata_token_command_prints_the_token(tmp_path):
    """The command as bash -c runs it, against a local metadata server (GCE_METADATA_HOST, as google-auth)."""
    import http.server
    import json
    import threading

    class Metadata(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = (self.path == "/computeMetadata/v1/instance/service-accounts/default/token"
                  and self.headers.get("Metadata-Flavor") == "Google")
            body = json.dumps({"access_token": "tok-123", "expires_in": 3599, "token_type": "Bearer"}).encode()
            self.send_response(200 if ok else 403)
            self.end_headers()
            self.wfile.write(body if ok else b"missing Metadata-Flavor")

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        out = subprocess.run(["bash", "-c", METADATA_TOKEN_COMMAND], capture_output=True, text=True, timeout=30,
                             env={"PATH": "/usr/bin:/bin", "GCE_METADATA_HOST": f"127.0.0.1:{srv.server_port}"})
    finally:
        srv.shutdown()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "tok-123"


def test_front50_may_read_its_bucket_and_clouddriver_its_repositories():
    files = render_all(load_config(EXAMPLES / "spinboot.yaml").config)
    have = {(b["role"], b["resource"]) for b in bindings(files)}
    assert ("roles/storage.objectAdmin", "projects/_/buckets/acme-spinnaker") in have
    # front50's GcsStorageService.ensureBucketExists calls storage.buckets.get, which objectAdmin lacks.
    assert ("roles/storage.legacyBucketReader", "projects/_/buckets/acme-spinnaker") in have
    # Applied, on the repository only (never project-wide).
    assert ("roles/artifactregistry.reader", "projects/acme-platform/locations/us/repositories/acme") in have
    assert "operatorGrants" not in yaml.safe_load(files["gcp/iam.yaml"])


def test_nodes_run_as_a_minimal_service_account():
    files = render_all(load_config(EXAMPLES / "minimal.yaml").config)
    pool = yaml.safe_load(files["gcp/nodepool.yaml"])["nodePool"]
    assert pool["config"]["serviceAccount"] == "spinnaker-nodes@acme-platform.iam.gserviceaccount.com"
    roles = [b["role"] for b in bindings(files) if b["members"] == [f"serviceAccount:{pool['config']['serviceAccount']}"]]
    assert roles == ["roles/container.defaultNodeServiceAccount"]


def test_deck_reaches_a_path_based_gate_through_its_service():
    path_based = render(MINIMAL)                                  # apiUrl https://spinnaker.acme.dev/gate
    deck = yaml.safe_load(path_based["halconfig/service-settings/deck.yml"])
    assert deck == {"env": {"API_HOST": "http://spin-gate.spinnaker:8084"}}
    host_based = render(MINIMAL.replace("apiUrl: https://spinnaker.acme.dev/gate", "apiUrl: https://api.acme.dev"))
    assert "halconfig/service-settings/deck.yml" not in host_based
    # configure.sh installs what is rendered and removes what an earlier render installed and this one lacks.
    script = host_based["halconfig/configure.sh"].decode()
    assert "remember files" in script and 'rm -f "$HAL_DIR/default/$old"' in script


def test_iap_is_configured_through_halyard():
    iap = MINIMAL.replace("apiUrl: https://spinnaker.acme.dev/gate}",
                          "apiUrl: https://spinnaker.acme.dev/gate, iap: {audience: /projects/1/global/backendServices/2}}")
    files = render(iap)
    lines = hal_lines(files)
    edit = next(a for a in lines if a[1:6] == ["config", "security", "authn", "iap", "edit"])
    assert flag(edit, "--audience") == "/projects/1/global/backendServices/2"
    assert ["hal", "config", "security", "authn", "iap", "enable"] in lines
    gate = yaml.safe_load(files["halconfig/profiles/gate-local.yml"]) or {}
    assert "google" not in gate                        # Halyard writes Gate's IAP settings from security.authn.iap
    # Without IAP, an earlier enable is undone.
    assert ["hal", "config", "security", "authn", "iap", "disable"] in hal_lines(render(MINIMAL))


def test_only_google_registries_get_subscriptions():
    text = MINIMAL + """registries:
  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
  - name: hub
    address: registry-1.docker.io
    repositories: [library/nginx]
"""
    files = render(text)
    subs = yaml.safe_load(files["gcp/pubsub.yaml"])["subscriptions"]
    assert [s["name"] for s in subs] == ["projects/acme-platform/subscriptions/spinnaker-gcr"]
    assert subs[0]["expirationPolicy"] == {}          # never expires: echo does not re-create it
    lines = hal_lines(files)
    assert [a[6] for a in lines if a[1:6] == ["config", "pubsub", "google", "subscription", "add"]] == ["images"]
    hub = next(a for a in lines if a[1:6] == ["config", "provider", "docker-registry", "account", "add"] and a[6] == "hub")
    assert "--password-command" not in hub


def test_account_edits_carry_every_setting():
    """An `account edit` keeps what it is not given: a setting removed from the file must be sent as its default."""
    files = render(MINIMAL)
    edit = next(a for a in hal_lines(files)
                if a[1:6] == ["config", "provider", "kubernetes", "account", "edit"] and a[6] == "platform")
    assert flag(edit, "--cache-interval-seconds") == "30"


def test_clouddriver_runs_the_newest_kubectl_of_its_image():
    files = render(MINIMAL)                                       # 2026.2.3: the image's default kubectl is 1.22
    local = yaml.safe_load(files["halconfig/profiles/clouddriver-local.yml"])
    assert local["kubernetes"]["kubectl"]["executable"] == "kubectl-1.29"
    # A release line spinboot has no facts for keeps clouddriver's default.
    old = yaml.safe_load(render(MINIMAL.replace("version: 2026.2.3", "version: 1.33.2"))[
        "halconfig/profiles/clouddriver-local.yml"])
    assert "kubernetes" not in old


def test_account_existence_checks_do_not_validate():
    """`hal ... account get` validates (for a registry: runs the password command, reads tags); a briefly
    unreadable registry must not make the script take an existing account for a missing one."""
    script = render_all(load_config(EXAMPLES / "spinboot.yaml").config)["halconfig/configure.sh"].decode()
    gets = [a for a in hal_lines({"halconfig/configure.sh": script.encode()}) if "get" in a[1:7]]
    assert gets and all("--no-validate" in a for a in gets)


def test_registry_validation_waits_for_new_grants_only_when_told(tmp_path):
    """configure.sh retries a Google registry account while $SPINBOOT_IAM_WAIT_SECONDS lasts (spinboot sets it
    when the same apply has just granted access) and fails at once without it."""
    script = render_all(load_config(EXAMPLES / "spinboot.yaml").config)["halconfig/configure.sh"].decode()
    prelude = script[:script.index("\nstep ")]
    probe = prelude + '\nn=0; flaky() { n=$((n + 1)); [ "$n" -ge 2 ]; }\nretry_iam thing flaky && echo "ok after $n"\n'
    fast = subprocess.run(["bash", "-c", probe.replace("sleep \"$delay\"", "sleep 0")], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert fast.returncode != 0 and "ok after" not in fast.stdout
    waited = subprocess.run(["bash", "-c", probe.replace("sleep \"$delay\"", "sleep 0")], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                            "SPINBOOT_IAM_WAIT_SECONDS": "60"})
    assert waited.returncode == 0 and "ok after 2" in waited.stdout, waited.stderr
    assert "not readable yet" in waited.stdout


def test_gate_behind_deck_must_trust_the_pod_range():
    """Through Deck's /gate forwarding, Gate's direct peer is Deck's pod: if no private range is trusted, Gate
    ignores the load balancer's X-Forwarded-Proto."""
    narrow = MINIMAL.replace("apiUrl: https://spinnaker.acme.dev/gate}",
                             "apiUrl: https://spinnaker.acme.dev/gate, trustedProxies: [35.191.0.0/16, 130.211.0.0/22]}")
    warnings = [str(w) for w in load_config_bytes(narrow.encode(), "f.yaml").warnings]
    assert any("arrive from Deck's pod" in w for w in warnings), warnings
    assert not any("arrive from Deck's pod" in str(w) for w in load_config_bytes(MINIMAL.encode(), "f.yaml").warnings)
