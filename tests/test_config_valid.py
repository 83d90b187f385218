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
