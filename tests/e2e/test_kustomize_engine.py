"""The kustomize engine's apply end to end on the sandbox (issue 12, item 4), checked at the servers.

One install, applied once and changed in order: a fresh apply brings every Deployment ready (each pod's start
played by the sandbox's Spinnaker side, spinboot/sandbox/spinnaker/controller.py); a second apply makes no mutating
call; adding a target rolls clouddriver alone; a version bump's plan names each Deployment's image change; an
optional service switched off is refused without --yes and pruned with it; a grant taken away fails apply naming
the service and the call.

The install has a Spinnaker cluster of its own (``spinnaker-k``): the Halyard engine's tests use ``spinnaker`` in the
same session. GKE's Ingress CRDs (BackendConfig, ManagedCertificate) are not served by the sandbox's control planes,
so the example's Ingress is switched off here.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from ..conftest import EXAMPLES
from .conftest import events

CLUSTER = "spinnaker-k"
NS = "spinnaker"
SERVICES = {"clouddriver", "deck", "echo", "front50", "gate", "igor", "orca", "rosco"}
SA = "serviceAccount:spinnaker-k@acme-platform.iam.gserviceaccount.com"


def write_variant(tmp: Path, name: str, *, targets=("platform",), version=None, kayenta=False) -> Path:
    doc = yaml.safe_load((EXAMPLES / "kustomize.yaml").read_text())
    doc["cluster"]["name"] = CLUSTER
    # Google resources of its own too, so the Halyard engine's tests in the same sandbox see only their own grants.
    doc["spinnaker"]["serviceAccount"] = "spinnaker-k"
    doc["spinnaker"]["storage"]["bucket"] = "acme-spinnaker-k"
    for r in doc.get("registries", []):
        r.setdefault("subscription", {})["name"] = "spinnaker-k-gcr"
    doc["spinnaker"]["exposure"].pop("ingress", None)
    doc["targets"] = [t for t in doc["targets"] if t["name"] in targets]
    if version:
        doc["spinnaker"]["version"] = version
    doc["spinnaker"]["services"]["kayenta"] = kayenta
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def apps(live) -> client.AppsV1Api:
    return client.AppsV1Api(live.api(live.cluster("acme-platform", "us-central1-b", CLUSTER)))


def core(live) -> client.CoreV1Api:
    return client.CoreV1Api(live.api(live.cluster("acme-platform", "us-central1-b", CLUSTER)))


def deployments(live) -> dict[str, client.V1Deployment]:
    return {d.metadata.name: d for d in apps(live).list_namespaced_deployment(NS).items}


def text_of(result) -> str:
    return "\n".join(str(v) for e in events(result.stdout) for k in ("error", "message", "detail", "name")
                     if (v := e.get(k))) + "\n" + result.stdout


def run_cli(cli, *args):
    return cli(*[str(a) for a in args])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("kustomize-engine")
    return {"base": write_variant(tmp, "base"),
            "two": write_variant(tmp, "two", targets=("platform", "platform-lab")),
            "bump": write_variant(tmp, "bump", targets=("platform", "platform-lab"), version="2026.3.0"),
            "kayenta": write_variant(tmp, "kayenta", targets=("platform", "platform-lab"), kayenta=True)}


@pytest.fixture(scope="module")
def applied(sandbox, files):
    """The one fresh apply every test below builds on."""
    import os

    from typer.testing import CliRunner

    from spinboot.cli.main import app

    env = sandbox.environ()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        r = CliRunner().invoke(app, ["apply", "-c", str(files["base"]), "--yes", "--output", "json"],
                               catch_exceptions=False)
        yield r
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_fresh_apply_brings_every_deployment_ready(applied, live, sandbox):
    assert applied.exit_code == 0, applied.output[-4000:]
    steps = {e["step"] for e in events(applied.stdout) if e.get("step")}
    assert "spinnaker" in steps and "halyard" not in steps
    deps = deployments(live)
    assert set(deps) == SERVICES
    for d in deps.values():
        assert d.status.available_replicas == d.spec.replicas == d.status.updated_replicas, d.metadata.name
        assert all(c.image.endswith(":2026.2.3") for c in d.spec.template.spec.containers), d.metadata.name
    redis = apps(live).read_namespaced_stateful_set("redis", NS)
    assert redis.status.ready_replicas == redis.spec.replicas
    # Each service's start was played by the sandbox's Spinnaker side (not kwok): its pods are Ready because the
    # play passed, and the play made the real calls.
    log = (sandbox.dir / "spinnaker-controller" / "controller.log").read_text()
    for svc in ("front50", "echo", "clouddriver", "deck"):
        assert f": {svc} started (" in log, log[-3000:]
    assert " refused " not in log, log[-3000:]
    # The kubeconfig Secret is applied but its hash rides on clouddriver's pod template only.
    secret = core(live).read_namespaced_secret("spinboot-clouddriver-kubeconfigs", NS)
    assert set(secret.data) == {"platform.kubeconfig"}
    for name, d in deps.items():
        has = "spinboot.dev/kubeconfigs-sha256" in (d.spec.template.metadata.annotations or {})
        assert has == (name == "clouddriver"), name
    # No secret value in what spinboot printed.
    import base64

    assert base64.b64decode(secret.data["platform.kubeconfig"]).decode() not in applied.output


def test_second_apply_makes_no_mutating_call(applied, live, cli, files, sandbox_env):
    mark = live.mark()
    r = run_cli(cli, "apply", "-c", files["base"], "--yes", "--output", "json")
    assert r.exit_code == 0, r.output[-4000:]
    summary = next(e for e in events(r.stdout) if e["event"] == "summary")
    assert summary["create"] == summary["update"] == summary["delete"] == 0, summary
    assert {k: v for k, v in live.mutations_since(mark).items() if v} == {}


def _generations(live) -> dict[str, tuple[int, str]]:
    return {n: (d.metadata.generation, d.status.observed_generation) for n, d in deployments(live).items()}


def _replicasets(live) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for rs in apps(live).list_namespaced_replica_set(NS).items:
        owner = (rs.metadata.owner_references or [None])[0]
        out.setdefault(owner.name if owner else "", set()).add(rs.metadata.labels.get("pod-template-hash"))
    return out


def test_adding_a_target_rolls_only_clouddriver(applied, live, cli, files, sandbox_env):
    before_gen, before_rs = _generations(live), _replicasets(live)
    r = run_cli(cli, "apply", "-c", files["two"], "--yes", "--output", "json")
    assert r.exit_code == 0, r.output[-4000:]
    after_gen, after_rs = _generations(live), _replicasets(live)
    rolled = sorted(n for n in after_gen if after_gen[n][0] != before_gen[n][0])
    assert rolled == ["clouddriver"], (before_gen, after_gen)
    assert {n for n in after_rs if after_rs[n] != before_rs.get(n)} == {"clouddriver"}
    secret = core(live).read_namespaced_secret("spinboot-clouddriver-kubeconfigs", NS)
    assert set(secret.data) == {"platform.kubeconfig", "platform-lab.kubeconfig"}
    d = deployments(live)["clouddriver"]
    assert d.status.available_replicas == d.spec.replicas == d.status.updated_replicas


def test_a_version_bump_plan_lists_each_image_change(applied, live, cli, files, sandbox_env):
    mark = live.mark()
    r = run_cli(cli, "plan", "-c", files["bump"], "--detailed-exitcode", "--output", "json")
    assert r.exit_code == 3, r.output[-4000:]
    changes = [e for e in events(r.stdout) if e.get("kind") == "Deployment" and e.get("action") == "update"]
    by_name = {e["name"]: e.get("detail", "") for e in changes}
    assert set(by_name) == SERVICES, by_name
    for name, detail in by_name.items():
        assert f":2026.2.3 -> ghcr.io/spinnaker/{name}:2026.3.0" in detail, (name, detail)
    assert {k: v for k, v in live.mutations_since(mark).items() if v} == {}


def test_a_service_switched_off_is_pruned_only_with_yes(applied, live, cli, files, sandbox_env):
    start = _generations(live)
    r = run_cli(cli, "apply", "-c", files["kayenta"], "--yes", "--output", "json")
    assert r.exit_code == 0, r.output[-4000:]
    assert "kayenta" in deployments(live)
    rolled_before = _generations(live)
    # The services whose own config names kayenta roll with it (their config hash changed); no other.
    with_kayenta = {n for n in start if rolled_before[n] != start[n]}

    r = run_cli(cli, "apply", "-c", files["two"], "--output", "json")
    assert r.exit_code == 1, r.output[-4000:]
    out = text_of(r)
    assert "would delete" in out and "Deployment spinnaker/kayenta" in out and "--yes" in out, out[-3000:]
    assert "kayenta" in deployments(live)

    plan = run_cli(cli, "plan", "-c", files["two"], "--output", "json")
    deletes = {(e["kind"], e["name"]) for e in events(plan.stdout) if e.get("action") == "delete"}
    assert ("Deployment", "kayenta") in deletes and ("Service", "kayenta") in deletes, deletes

    r = run_cli(cli, "apply", "-c", files["two"], "--yes", "--output", "json")
    assert r.exit_code == 0, r.output[-4000:]
    assert "kayenta" not in deployments(live)
    assert not [s for s in core(live).list_namespaced_service(NS).items if s.metadata.name == "kayenta"]
    after = _generations(live)
    assert {n for n in after if after[n] != rolled_before[n]} == with_kayenta, (with_kayenta, rolled_before, after)


def _wait_pods_gone(live, names: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {p.metadata.name for p in core(live).list_namespaced_pod(NS).items} & names
        if not left:
            return
        time.sleep(0.3)
    raise AssertionError(f"pods not gone: {left}")


def test_a_grant_taken_away_fails_apply_naming_the_service(applied, live, cli, files, sandbox, sandbox_env,
                                                           monkeypatch):
    """front50's bucket read taken away (and out of what spinboot renders, so apply does not put it back): its
    next start is refused, and apply fails naming front50 and the call, as front50 would crash-loop on GKE."""
    from google.api_core import client_options as co
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from spinboot.gcp.iam import BucketPolicy
    from spinboot.ops.destroy import remove_members
    from spinboot.render import gcp as render_gcp

    role = "roles/storage.legacyBucketReader"
    spec = render_gcp.iam_spec
    monkeypatch.setattr(render_gcp, "iam_spec", lambda cfg: dataclasses.replace(
        spec(cfg), bindings=tuple(b for b in spec(cfg).bindings if b.role != role)))
    gcs = storage.Client(project="sandbox", credentials=AnonymousCredentials(),
                         client_options=co.ClientOptions(api_endpoint=sandbox.storage_url))
    assert remove_members(BucketPolicy(gcs, "acme-spinnaker-k"), "projects/_/buckets/acme-spinnaker-k", role,
                          [SA]).action == "delete"
    try:
        # front50 restarts (a node drained, say): its new pod starts without the grant.
        old = {p.metadata.name for p in core(live).list_namespaced_pod(NS, label_selector=_selector(live, "front50")).items}
        for name in old:
            core(live).delete_namespaced_pod(name, NS)
        _wait_pods_gone(live, old)
        r = run_cli(cli, "apply", "-c", files["two"], "--yes", "--output", "json")
        assert r.exit_code == 1, r.output[-4000:]
        out = text_of(r)
        assert "front50" in out and "CrashLoopBackOff" in out and "storage.buckets.get" in out, out[-3000:]
    finally:
        monkeypatch.undo()
        # The grant is back; this apply may still meet front50 crash-looping (it fails fast then, as on GKE) until
        # the kubelet's next restart of the container, which now starts cleanly.
        first = run_cli(cli, "apply", "-c", files["two"], "--yes", "--output", "json")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            d = deployments(live)["front50"]
            if d.status.available_replicas == d.spec.replicas:
                break
            time.sleep(0.5)
        r = run_cli(cli, "apply", "-c", files["two"], "--yes", "--output", "json")
        assert r.exit_code == 0, (first.output[-2000:], r.output[-4000:])
    d = deployments(live)["front50"]
    assert d.status.available_replicas == d.spec.replicas


def _selector(live, name: str) -> str:
    d = deployments(live)[name]
    return ",".join(f"{k}={v}" for k, v in d.spec.selector.match_labels.items())
