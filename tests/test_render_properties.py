"""Properties every render must have, whatever the file: deterministic, least-privilege, valid, grammar-checked."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from spinboot.config import load_config, load_config_bytes
from spinboot.config.names import is_system_namespace
from spinboot.render import render_all
from spinboot.render.halgrammar import check_script, parse_script
from spinboot.render.halscript import q
from spinboot.render.profiles import cidr_regex

from .conftest import EXAMPLES, MINIMAL, ROOT

FILES = [EXAMPLES / "spinboot.yaml", EXAMPLES / "minimal.yaml", ROOT / "tests" / "data" / "legacy-iap-github.yaml"]
DESIGN_PATHS = {"halconfig/configure.sh", "halconfig/profiles/gate-local.yml", "halconfig/profiles/clouddriver-local.yml",
                "MANIFEST.json"}


@pytest.fixture(params=FILES, ids=lambda p: p.stem)
def rendered(request):
    return render_all(load_config(request.param).config)


def docs_of(files):
    for rel, body in files.items():
        if rel.endswith(".yaml") and rel.startswith(("rbac/", "halyard/")):
            for doc in yaml.safe_load_all(body):
                yield rel, doc


def test_render_is_deterministic():
    for f in FILES:
        cfg = load_config(f).config
        assert render_all(cfg) == render_all(load_config(f).config)


def test_render_writes_the_design_paths(cli, tmp_path):
    out = tmp_path / "out"
    result = cli("render", "-c", EXAMPLES / "spinboot.yaml", "-d", out)
    assert result.exit_code == 0, result.output
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert DESIGN_PATHS <= written
    for prefix in ("rbac/platform/", "rbac/platform-lab/", "halyard/", "gcp/", "halconfig/service-settings/"):
        assert any(w.startswith(prefix) for w in written), prefix
    manifest = json.loads((out / "MANIFEST.json").read_text())["files"]
    assert set(manifest) == written - {"MANIFEST.json"}
    for rel, digest in manifest.items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    assert (out / "halconfig/configure.sh").stat().st_mode & 0o111


def test_render_refuses_a_directory_it_did_not_write(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    result = cli("render", "-c", EXAMPLES / "minimal.yaml", "-d", tmp_path)
    assert result.exit_code == 2
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_render_replaces_a_previous_render_whole(cli, tmp_path):
    out = tmp_path / "out"
    assert cli("render", "-c", EXAMPLES / "spinboot.yaml", "-d", out).exit_code == 0
    assert (out / "rbac/platform-lab").is_dir()
    assert cli("render", "-c", EXAMPLES / "minimal.yaml", "-d", out).exit_code == 0
    assert not (out / "rbac/platform-lab").exists(), "files of targets no longer in the file are gone"
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "no temporary directories left behind"


def test_every_hal_line_is_accepted_by_the_grammar(rendered):
    script = rendered["halconfig/configure.sh"].decode()
    invocations = parse_script(script)
    assert len(invocations) >= 10
    assert check_script(script) == []
    assert invocations[-1][1][:3] == ["hal", "deploy", "apply"], "the script ends by deploying"


def test_configure_sh_is_valid_bash(rendered, tmp_path):
    if not shutil.which("bash"):
        pytest.skip("no bash")
    path = tmp_path / "configure.sh"
    path.write_bytes(rendered["halconfig/configure.sh"])
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text


def test_configure_sh_uses_workload_identity_not_keys(rendered):
    script = rendered["halconfig/configure.sh"].decode()
    assert "--json-path" not in script
    assert "hal config storage gcs edit" in script
    assert ("subscription add" in script) == ("--message-format GCR" in script)


def test_no_cluster_admin_and_no_system_namespace(rendered):
    for rel, doc in docs_of(rendered):
        text = json.dumps(doc)
        assert "cluster-admin" not in text, rel
        ns = doc["metadata"].get("namespace")
        assert ns is None or not is_system_namespace(ns), rel
        if doc["kind"] == "Namespace":
            assert not is_system_namespace(doc["metadata"]["name"]), rel
        for rule in doc.get("rules", []):
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rel
            assert "escalate" not in rule["verbs"] and "bind" not in rule["verbs"] and "impersonate" not in rule["verbs"]


def test_cluster_wide_grants_are_read_only(rendered):
    roles = {doc["metadata"]["name"]: doc for _, doc in docs_of(rendered) if doc["kind"] == "ClusterRole"}
    for _, doc in docs_of(rendered):
        if doc["kind"] == "ClusterRoleBinding":
            role = roles[doc["roleRef"]["name"]]
            for rule in role["rules"]:
                assert set(rule["verbs"]) <= {"get", "list", "watch"}, role["metadata"]["name"]
                assert "secrets" not in rule["resources"]


def test_one_rolebinding_per_allowed_namespace():
    cfg = load_config(EXAMPLES / "spinboot.yaml").config
    files = render_all(cfg)
    for t in cfg.targets:
        bound = sorted(doc["metadata"]["namespace"] for rel, doc in docs_of(files)
                       if rel.startswith(f"rbac/{t.name}/") and doc["kind"] == "RoleBinding")
        assert bound == sorted(t.namespaces)


def test_token_secret_is_annotated_for_its_service_account(rendered):
    for rel, doc in docs_of(rendered):
        if doc["kind"] == "Secret":
            assert doc["type"] == "kubernetes.io/service-account-token"
            assert "data" not in doc and "stringData" not in doc, "no secret value is rendered"
            assert doc["metadata"]["annotations"]["kubernetes.io/service-account.name"]


def test_manifests_are_valid_kubernetes(rendered):
    version = kubernetes_validate.latest_version()
    for rel, doc in docs_of(rendered):
        kubernetes_validate.validate(doc, version, strict=True)


def test_halyard_statefulset_shape():
    files = render_all(load_config(EXAMPLES / "spinboot.yaml").config)
    sts = next(doc for rel, doc in docs_of(files) if doc["kind"] == "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "hal"
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/home/spinnaker/.hal"
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["port"] == 8064
    sa = [doc for rel, doc in docs_of(files) if doc["kind"] == "ServiceAccount" and rel.startswith("halyard/")]
    assert len(sa) == 2
    assert all(d["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] ==
               "spinnaker@acme-platform.iam.gserviceaccount.com" for d in sa)


def test_gcp_specs_have_workload_identity():
    files = render_all(load_config(EXAMPLES / "spinboot.yaml").config)
    cluster = yaml.safe_load(files["gcp/cluster.yaml"])["cluster"]
    assert cluster["workloadIdentityConfig"]["workloadPool"] == "acme-platform.svc.id.goog"
    pool = yaml.safe_load(files["gcp/nodepool.yaml"])["nodePool"]
    assert pool["config"]["workloadMetadataConfig"]["mode"] == "GKE_METADATA"
    assert pool["config"]["machineType"] == "e2-highmem-4"
    pubsub = yaml.safe_load(files["gcp/pubsub.yaml"])
    assert [t["name"] for t in pubsub["topics"]] == ["projects/acme-platform/topics/gcr"]
    assert pubsub["subscriptions"][0]["ackDeadlineSeconds"] == 60
    iam = yaml.safe_load(files["gcp/iam.yaml"])
    roles = {(b["resource"], b["role"]) for b in iam["bindings"]}
    assert ("projects/acme-platform/subscriptions/spinnaker-gcr", "roles/pubsub.subscriber") in roles
    assert not any(r.endswith(("/owner", "/editor")) for _, r in roles)


@pytest.mark.parametrize("version,key,absent", [
    ("1.30.4", "protocolHeader", "forward-headers-strategy"),
    ("1.31.0", "forward-headers-strategy", "protocolHeader"),
    ("2026.2.3", "forward-headers-strategy", "protocolHeader"),
])
def test_gate_keys_follow_the_spinnaker_version(version, key, absent):
    cfg = load_config_bytes(MINIMAL.replace("2026.2.3", version).encode(), "f").config
    gate = render_all(cfg)["halconfig/profiles/gate-local.yml"].decode()
    body = "\n".join(line for line in gate.splitlines() if not line.startswith("#"))
    assert key in body and absent not in body
    assert "httpsServerPort" not in body


def test_gate_without_load_balancer_has_no_forwarded_headers():
    cfg = load_config_bytes(MINIMAL.replace("/gate}", "/gate, behindGoogleLoadBalancer: false}").encode(), "f").config
    gate = yaml.safe_load(render_all(cfg)["halconfig/profiles/gate-local.yml"])
    assert gate == {}


@pytest.mark.parametrize("cidr", ["35.191.0.0/16", "130.211.0.0/22", "172.16.0.0/12", "10.1.2.0/23", "203.0.113.7/32"])
def test_trusted_proxy_regex_matches_exactly_the_block(cidr):
    net = ipaddress.ip_network(cidr)
    rx = re.compile(cidr_regex(cidr))
    inside = [net.network_address, net.broadcast_address, net.network_address + (net.num_addresses // 2)]
    outside = [net.network_address - 1, net.broadcast_address + 1]
    assert all(rx.fullmatch(str(a)) for a in inside)
    assert not any(rx.fullmatch(str(a)) for a in outside)


@pytest.mark.parametrize("hostile", ["a'b", "$(touch /tmp/pwned)", "`id`", "a b; rm -rf /", "x\ny", "\"$HOME\"", "--flag"])
def test_shell_quoting_round_trips_hostile_values(hostile):
    out = subprocess.run(["bash", "-c", f"printf '%s' {q(hostile)}"], capture_output=True, text=True, check=True)
    assert out.stdout == hostile
