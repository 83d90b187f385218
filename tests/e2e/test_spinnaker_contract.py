"""Spinnaker's side of the contract on the whole sandbox (issue 10): what spinboot configures must let Spinnaker's
services start, and a missing grant or RBAC rule must fail `apply` naming the service and the call, the way the
service would fail on GKE. `doctor` proves the same read-only.

Each seeded case takes the grant or rule out of what spinboot renders (so apply does not put it back) and out of
live state, re-runs the Halyard step, checks the failure, then restores. make test runs two grant cases and one
rule case; SPINBOOT_FULL_MATRIX=1 runs every grant spinboot makes and every rule in rbac/rules.yaml.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import yaml
from kubernetes import client

from spinboot.gcp.iam import BucketPolicy, GrpcPolicy
from spinboot.ops.destroy import remove_members
from spinboot.render import gcp as render_gcp
from spinboot.render import rbac as render_rbac

from ..conftest import EXAMPLES, ROOT
from .conftest import events

EXAMPLE = EXAMPLES / "spinboot.yaml"
FULL = bool(os.environ.get("SPINBOOT_FULL_MATRIX"))
SA = "serviceAccount:spinnaker@acme-platform.iam.gserviceaccount.com"
BUCKET = "acme-spinnaker"
SUB = "projects/acme-platform/subscriptions/spinnaker-gcr"
REPO = "projects/acme-platform/locations/us/repositories/acme"

# (role on its resource, the service that breaks, words the failure must carry)
GRANTS = [
    ("roles/storage.legacyBucketReader", "front50", ["spin-front50 would crash-loop", "storage.buckets.get"]),
    ("roles/artifactregistry.reader", "halyard", ["images", "artifactregistry.repositories.downloadArtifacts"]),
    ("roles/storage.objectAdmin", "front50", ["spin-front50", "storage.objects.create"]),
    ("roles/pubsub.subscriber", "echo", ["spin-echo would crash-loop", "pubsub.subscriptions.consume"]),
]
REDUCED_GRANTS = {"roles/storage.legacyBucketReader"}
RULES = [(rule["apiGroups"][0], res) for rule in yaml.safe_load((ROOT / "rbac" / "rules.yaml").read_text())["deploy"]
         for res in rule["resources"]]
REDUCED_RULES = {("", "persistentvolumeclaims")}


def _grant_cases():
    for role, service, words in GRANTS:
        marks = [] if FULL or role in REDUCED_GRANTS else [pytest.mark.skip(reason="full matrix only")]
        yield pytest.param(role, service, words, id=role.split("/")[1], marks=marks)


def _rule_cases():
    for group, res in RULES:
        marks = [] if FULL or (group, res) in REDUCED_RULES else [pytest.mark.skip(reason="full matrix only")]
        yield pytest.param(group, res, id=f"{group or 'core'}-{res}", marks=marks)


@pytest.fixture(scope="module")
def applied(sandbox):
    from typer.testing import CliRunner

    from spinboot.cli.main import app

    env = sandbox.environ()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        r = CliRunner().invoke(app, ["apply", "-c", str(EXAMPLE), "--yes"], catch_exceptions=False)
        assert r.exit_code == 0, r.output[-4000:]
        # Other modules may have applied the same file on this sandbox already: run configure.sh (and so the
        # startup play) for certain.
        r = CliRunner().invoke(app, ["halyard", "apply", "-c", str(EXAMPLE), "--force", "--yes", "--output", "json"],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output[-4000:]
        yield [e for e in events(r.stdout)]
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _halyard_apply(cli) -> tuple[int, str]:
    r = cli("halyard", "apply", "-c", EXAMPLE, "--force", "--yes", "--output", "json")
    text = "\n".join(str(v) for e in events(r.stdout) for k in ("error", "line", "message") if (v := e.get(k)))
    return r.exit_code, text


def _store(sb, role: str):
    gke = sb.gke
    if role.startswith("roles/storage."):
        from google.cloud import storage

        from google.api_core import client_options as co
        from google.auth.credentials import AnonymousCredentials

        gcs = storage.Client(project="sandbox", credentials=AnonymousCredentials(),
                             client_options=co.ClientOptions(api_endpoint=sb.storage_url))
        return BucketPolicy(gcs, BUCKET), f"projects/_/buckets/{BUCKET}"
    if role == "roles/pubsub.subscriber":
        return GrpcPolicy(sb.pubsub.subscriber(), SUB), SUB
    return GrpcPolicy(gke.artifact_registry(), REPO), REPO


def test_apply_plays_spinnakers_startup(applied):
    """The Halyard step ran the startup play with Spinnaker's identity and every service passed."""
    lines = [e["line"] for e in applied if e["event"] == "output" and e.get("step") == "halyard"]
    started = [ln for ln in lines if "Start Spinnaker's services" in ln]
    assert started and all(s in started[-1] for s in ("clouddriver", "echo", "front50", "deck")), lines[-30:]
    assert any("Validation" not in ln for ln in lines)


@pytest.mark.matrix
@pytest.mark.parametrize("role,service,words", list(_grant_cases()))
def test_a_grant_taken_away_fails_apply_naming_the_service_and_call(applied, sandbox, sandbox_env, cli, monkeypatch,
                                                                    role, service, words):
    spec = render_gcp.iam_spec

    def without(cfg):
        out = spec(cfg)
        return dataclasses.replace(out, bindings=tuple(b for b in out.bindings if b.role != role))

    store, resource = _store(sandbox, role)
    monkeypatch.setattr(render_gcp, "iam_spec", without)
    assert remove_members(store, resource, role, [SA]).action == "delete"
    try:
        code, text = _halyard_apply(cli)
        assert code == 1, text[-3000:]
        for w in words:
            assert w in text, (w, text[-3000:])
    finally:
        monkeypatch.undo()
        code, text = _halyard_apply(cli)                     # the grant is back, and so is every service
        assert code == 0, text[-3000:]


@pytest.mark.matrix
@pytest.mark.parametrize("group,resource", list(_rule_cases()))
def test_a_rule_taken_out_of_rules_yaml_fails_apply_naming_clouddriver(applied, sandbox_env, cli, monkeypatch,
                                                                       group, resource):
    rules = render_rbac.rules

    def narrowed():
        out = rules()
        deploy = [dict(r, resources=[x for x in r["resources"] if not (r["apiGroups"][0] == group and x == resource)])
                  for r in out["deploy"]]
        return {**out, "deploy": [r for r in deploy if r["resources"]]}

    monkeypatch.setattr(render_rbac, "rules", narrowed)
    try:
        code, text = _halyard_apply(cli)
        assert code == 1, text[-3000:]
        assert "spin-clouddriver" in text and resource.split("/")[0] in text, text[-3000:]
    finally:
        monkeypatch.undo()
        code, text = _halyard_apply(cli)
        assert code == 0, text[-3000:]


def test_doctor_proves_the_contract_and_names_a_missing_grant(applied, sandbox, sandbox_env, cli):
    r = cli("doctor", "-c", EXAMPLE, "--output", "json")
    checks = {e["id"]: e for e in events(r.stdout) if e["event"] == "check"}
    contract = {k: v for k, v in checks.items() if k.startswith("spinnaker:")}
    assert r.exit_code == 0, {k: v for k, v in checks.items() if v["status"] == "fail"}
    assert f"spinnaker:front50-storage.buckets.get:{BUCKET}" in contract
    assert "spinnaker:echo-pubsub.subscriptions.consume:spinnaker-gcr" in contract
    assert "spinnaker:clouddriver-apps/controllerrevisions:platform" in contract
    assert all(c["status"] == "ok" for c in contract.values()), contract

    store, resource = _store(sandbox, "roles/storage.legacyBucketReader")
    remove_members(store, resource, "roles/storage.legacyBucketReader", [SA])
    try:
        r = cli("doctor", "-c", EXAMPLE, "--output", "json")
        checks = {e["id"]: e for e in events(r.stdout) if e["event"] == "check"}
        assert r.exit_code == 1
        bad = checks[f"spinnaker:front50-storage.buckets.get:{BUCKET}"]
        assert bad["status"] == "fail" and "roles/storage.legacyBucketReader" in bad["fix"], bad
        assert checks[f"spinnaker:front50-storage.objects.get:{BUCKET}"]["status"] == "ok"
    finally:
        assert cli("apply", "-c", EXAMPLE, "--yes").exit_code == 0

    # The Kubernetes side: a ClusterRole edited by hand loses ControllerRevisions.
    from kubernetes import config

    kc = sandbox.admin_kubeconfig("acme-platform", "us-central1", "platform")
    rbac = client.RbacAuthorizationV1Api(config.new_client_from_config(config_file=str(kc)))
    name = "spinboot:spinnaker:spinnaker:deploy"
    role = rbac.read_cluster_role(name)
    kept = [r for r in role.rules if "controllerrevisions" not in (r.resources or [])]
    rbac.patch_cluster_role(name, {"rules": [client.ApiClient().sanitize_for_serialization(r) for r in kept]})
    try:
        r = cli("doctor", "-c", EXAMPLE, "--output", "json")
        checks = {e["id"]: e for e in events(r.stdout) if e["event"] == "check"}
        bad = checks["spinnaker:clouddriver-apps/controllerrevisions:platform"]
        assert r.exit_code == 1 and bad["status"] == "fail" and "list in prod" in bad["message"], bad
    finally:
        assert cli("rbac", "apply", "-c", EXAMPLE, "--yes").exit_code == 0
