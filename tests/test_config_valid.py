"""Valid files: the examples, the starter, defaults, warnings."""

from __future__ import annotations

import json

import pytest

from spinboot.config import load_config, load_config_bytes
from spinboot.config.names import SpinnakerVersion, default_halyard_image

from .conftest import EXAMPLES, MINIMAL


@pytest.mark.parametrize("name", ["spinboot.yaml", "minimal.yaml"])
def test_examples_validate(cli, name):
    result = cli("validate", "-c", EXAMPLES / name)
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout


def test_minimal_file_gets_sensible_defaults():
    cfg = load_config(EXAMPLES / "minimal.yaml").config
    assert cfg.cluster.node_pool.machine_type == "e2-highmem-4"
    assert cfg.cluster.node_pool.node_count == 2
    assert cfg.cluster.release_channel == "STABLE"
    assert cfg.spinnaker.namespace == "spinnaker"
    assert cfg.spinnaker.exposure.behind_google_load_balancer is True
    assert cfg.targets[0].service_account.name == "spinnaker"
    assert cfg.halyard_image == "ghcr.io/spinnaker/halyard:2026.2.3"
    assert cfg.workload_pool == "acme-platform.svc.id.goog"


def test_init_writes_a_starter_that_validates(cli, tmp_path):
    path = tmp_path / "spinboot.yaml"
    assert cli("init", path).exit_code == 0
    text = path.read_text()
    assert text.count("#") > 20, "the starter explains itself"
    assert cli("validate", "-c", path).exit_code == 0


def test_init_refuses_to_overwrite(cli, tmp_path):
    path = tmp_path / "spinboot.yaml"
    path.write_text("mine\n")
    result = cli("init", path)
    assert result.exit_code == 2
    assert path.read_text() == "mine\n"
    assert cli("init", path, "--force").exit_code == 0


def test_validate_json_output_is_one_event_per_line(cli):
    result = cli("validate", "-c", EXAMPLES / "spinboot.yaml", "--output", "json")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "valid"
    assert any(e["event"] == "problem" and e["severity"] == "warning" for e in events)


def test_schema_is_json_schema_with_camel_case_keys(cli):
    result = cli("schema")
    doc = json.loads(result.stdout)
    assert doc["additionalProperties"] is False
    assert "nodePool" in json.dumps(doc) and "node_pool" not in json.dumps(doc)


def test_google_registry_polling_under_300s_warns_but_is_valid():
    text = MINIMAL + """registries:
  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
    cacheIntervalSeconds: 60
"""
    loaded = load_config_bytes(text.encode(), "f.yaml")
    assert any(w.path == "registries[0].cacheIntervalSeconds" and "429" in w.message for w in loaded.warnings)


def test_standard_nodes_warn():
    text = MINIMAL.replace("cluster: {name: spinnaker, location: us-central1-b}",
                           "cluster: {name: spinnaker, location: us-central1-b, nodePool: {machineType: e2-standard-2}}")
    loaded = load_config_bytes(text.encode(), "f.yaml")
    paths = {w.path for w in loaded.warnings}
    assert "cluster.nodePool.machineType" in paths and "cluster.nodePool.nodeCount" in paths


def test_dangerous_flag_allows_a_system_namespace():
    text = MINIMAL.replace("namespaces: [prod]", "namespaces: [prod, kube-system]\n    dangerouslyAllowSystemNamespaces: true")
    assert load_config_bytes(text.encode(), "f.yaml").config.targets[0].namespaces == ["prod", "kube-system"]


@pytest.mark.parametrize("version,calendar,new_keys", [
    ("1.30.4", False, False), ("1.31.0", False, True), ("1.38.2", False, True), ("2025.0.0", True, True),
    ("2026.2.3", True, True)])
def test_version_parsing(version, calendar, new_keys):
    v = SpinnakerVersion(version)
    assert v.calendar is calendar
    assert v.uses_spring_boot_25_keys is new_keys


def test_default_halyard_image_follows_the_registry_move():
    assert default_halyard_image("2026.1.0") == "ghcr.io/spinnaker/halyard:2026.1.0"
    assert default_halyard_image("2025.3.1").startswith("us-docker.pkg.dev/spinnaker-community/docker/halyard")


# --- issue 11: warnings with codes, acknowledged or loud; values at the edge of what the APIs allow -------------

def test_a_warning_carries_its_code_and_can_be_acknowledged(cli, tmp_path):
    f = tmp_path / "spinboot.yaml"
    f.write_text(MINIMAL)
    result = cli("validate", "-c", f)
    assert "warning: spinnaker.version: " in result.stderr and result.stderr.rstrip().endswith("[halyard-unsupported]")
    f.write_text(MINIMAL + "acknowledge:\n  - halyard-unsupported   # the move to kustomize is planned\n")
    loaded = load_config_bytes(f.read_bytes(), "f.yaml")
    assert loaded.warnings == [] and [w.code for w in loaded.acknowledged] == ["halyard-unsupported"]
    result = cli("validate", "-c", f)
    assert result.exit_code == 0 and "warning" not in result.stderr
    assert "0 warning(s), 1 acknowledged" in result.stdout
    events = [json.loads(line) for line in cli("validate", "-c", f, "-o", "json").stdout.splitlines()]
    assert [e["event"] for e in events] == ["valid"] and events[0]["acknowledged"] == 1


def test_warnings_name_their_code_in_json(cli):
    events = [json.loads(line) for line in cli("validate", "-c", EXAMPLES / "minimal.yaml", "-o", "json").stdout.splitlines()]
    warning = next(e for e in events if e["event"] == "problem")
    assert warning["severity"] == "warning" and warning["code"] == "halyard-unsupported"


SYSTEM = MINIMAL.replace("namespaces: [prod]", "namespaces: [prod, kube-system]\n    dangerouslyAllowSystemNamespaces: true")


@pytest.mark.parametrize("command", [["validate"], ["render", "-d", "OUT"], ["plan"], ["status"]])
def test_a_system_namespace_let_in_is_loud_on_every_command(cli, tmp_path, monkeypatch, command):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("SPINBOOT_SANDBOX", raising=False)
    f = tmp_path / "spinboot.yaml"
    f.write_text(SYSTEM)
    result = cli(*[str(tmp_path / "out") if c == "OUT" else c for c in command], "-c", f)
    assert "Traceback" not in result.output
    [line] = [ln for ln in result.stderr.splitlines() if "[system-namespace]" in ln]
    assert ": warning: targets[0].namespaces[1]: DANGER: Spinnaker may deploy into kube-system" in line
    assert "acme-platform/us-central1/platform" in line


def test_a_system_namespace_warning_cannot_be_acknowledged(cli, tmp_path):
    f = tmp_path / "spinboot.yaml"
    f.write_text(SYSTEM + "acknowledge: [system-namespace]\n")
    result = cli("validate", "-c", f)
    assert result.exit_code == 2 and "cannot be acknowledged" in result.stderr
    events = [json.loads(line) for line in cli("validate", "-c", EXAMPLES / "minimal.yaml", "-o", "json").stdout.splitlines()]
    assert not any(e.get("loud") for e in events)
    f.write_text(SYSTEM)
    events = [json.loads(line) for line in cli("validate", "-c", f, "-o", "json").stdout.splitlines()]
    loud = [e for e in events if e.get("loud")]
    assert len(loud) == 1 and loud[0]["code"] == "system-namespace" and loud[0]["severity"] == "warning"


@pytest.mark.parametrize("change", [
    ("location: us-central1-b}", "location: us-central1-b, labels: {\u00e9quipe: sr\u00e9, team: '', cost_center: a-1}}"),
    ("location: us-central1-b}", "location: us-central1-b, labels: {" + ", ".join(f"k{i}: v" for i in range(63)) + "}}"),
    ("location: us-central1-b}", "location: us-central1-b, privateNodes: true, masterIpv4CidrBlock: 172.16.0.32/28, "
                                 "egress: cloud-nat, authorizedNetworks: ["
     + ", ".join(f"{{name: n{i}, cidr: 10.0.{i}.0/24}}" for i in range(100)) + "]}"),
    ("uiUrl: https://spinnaker.acme.dev, apiUrl: https://spinnaker.acme.dev/gate",
     "uiUrl: https://xn--bcher-kva.example:8443/%7Eui, apiUrl: http://10.1.2.3:8084"),
    ("version: 2026.2.3", "version: 2026.2.3\n  halyard: {image: 'localhost:5000/spin__naker/hal--yard:v1.2@sha256:"
     + "0" * 64 + "'}"),
    ("version: 2026.2.3", "version: 2026.0.10"),
    ("version: 2026.2.3", "version: 1.38.0"),
    ("bucket: acme-spinnaker}", "bucket: acme-spinnaker, location: NAM4, rootFolder: .front50}"),
    ("bucket: acme-spinnaker}", "bucket: acme-spinnaker, location: US-CENTRAL1}"),
    ("namespaces: [prod]", "namespaces: [prod, \"no\", \"on\", kubernetes]"),
])
def test_values_at_the_edge_of_what_the_apis_allow_are_valid(change):
    text = MINIMAL.replace(*change)
    assert text != MINIMAL
    load_config_bytes(text.encode(), "f.yaml")


def test_registry_addresses_and_repositories_at_the_edge():
    text = MINIMAL + """registries:
  - name: local
    address: localhost:5000
    repositories: [team/app__v2, team/app--v3, a.b/c_d]
  - name: ip
    address: 10.0.0.5:5443
    repositories: [app]
"""
    cfg = load_config_bytes(text.encode(), "f.yaml").config
    assert [r.address for r in cfg.registries] == ["localhost:5000", "10.0.0.5:5443"]
