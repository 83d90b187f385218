"""spinnaker.engine and what hangs on it (issue 12): the default by version, the kustomize-only settings and their
rules, the examples, `init`, and the release guardrails table (releases/guardrails.yaml) with its reader."""

from __future__ import annotations

import json

import pytest
import yaml

from spinboot.config import ConfigError, load_config
from spinboot.config import releases
from spinboot.config.model import CORE_SERVICES
from spinboot.render.profiles import clouddriver_local

from .conftest import EXAMPLES, ROOT

KUSTOMIZE = (EXAMPLES / "kustomize.yaml").read_text()

# A kustomize-era file without engine, built to be edited line by line in the tests below.
BASE = """project: acme-platform
cluster: {name: spinnaker, location: us-central1-b}
spinnaker:
  version: 2026.2.3
  storage: {bucket: acme-spinnaker}
  exposure: {uiUrl: https://spinnaker.acme.dev, apiUrl: https://spinnaker.acme.dev/gate}
targets:
  - name: platform
    gke: {project: acme-platform, location: us-central1, cluster: platform}
    namespaces: [prod]
"""


def spin(*lines: str, version: str = "2026.2.3", base: str = BASE) -> str:
    """BASE with ``lines`` added under spinnaker: (each indented by two spaces) and the version replaced."""
    extra = "".join(f"  {line}\n" for line in lines)
    return base.replace("  version: 2026.2.3\n", f"  version: {version}\n{extra}")


def load(tmp_path, text: str, name: str = "spinboot.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return load_config(f)


def errors(tmp_path, text: str) -> list:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    return [p for p in exc.value.problems if p.severity == "error"]


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def the_error(tmp_path, text: str, path: str, where: str, needle: str):
    """The one error at ``path``, on the line holding ``where``, saying ``needle``."""
    found = [p for p in errors(tmp_path, text) if p.path == path]
    assert found, f"no error at {path}"
    p = found[0]
    assert p.line == line_of(text, where), (p.line, str(p))
    assert needle in p.message, p.message
    assert str(p).startswith(f"{tmp_path / 'spinboot.yaml'}:{p.line}:")
    return p


# --- the engine and its default --------------------------------------------------------------------------------

@pytest.mark.parametrize("version,engine", [("2026.1.0", "kustomize"), ("2026.2.3", "kustomize"),
                                            ("2025.4.4", "halyard"), ("2025.0.0", "halyard"), ("1.30.6", "halyard")])
def test_absent_engine_follows_the_version(tmp_path, version, engine):
    cfg = load(tmp_path, spin(version=version)).config
    assert cfg.spinnaker.engine == engine
    assert "engine" not in cfg.spinnaker.model_fields_set


def test_a_named_engine_is_kept(tmp_path):
    assert load(tmp_path, spin("engine: halyard")).config.spinnaker.engine == "halyard"
    assert load(tmp_path, spin("engine: kustomize", version="2026.1.0")).config.spinnaker.engine == "kustomize"


def test_an_unknown_engine_names_the_choices(tmp_path):
    text = spin("engine: helm")
    p = the_error(tmp_path, text, "spinnaker.engine", "engine: helm", "halyard")
    assert "kustomize" in p.message


def test_halyard_is_refused_from_2027(tmp_path):
    text = spin("engine: halyard", version="2027.0.0")
    p = the_error(tmp_path, text, "spinnaker.engine", "engine: halyard", "halyard engine cannot deploy")
    assert "#7865" in p.message and "engine: kustomize" in p.message


def test_without_engine_2027_is_kustomize_and_not_refused_for_halyard(tmp_path):
    loaded = load(tmp_path, spin(version="2027.0.0"))
    assert loaded.config.spinnaker.engine == "kustomize"
    assert [w.code for w in loaded.warnings] == ["front50-gcs-deprecated"]


def test_halyard_on_a_line_cut_after_its_removal_needs_an_image(tmp_path):
    text = spin("engine: halyard", version="2026.3.0")
    the_error(tmp_path, text, "spinnaker.version", "version: 2026.3.0", "no Halyard image is built")
    pinned = spin("engine: halyard", "halyard: {image: ghcr.io/spinnaker/halyard:2026.2.3}", version="2026.3.0")
    codes = [w.code for w in load(tmp_path, pinned).warnings]
    assert "halyard-removed" in codes and "halyard-unsupported" in codes
    acked = load(tmp_path, pinned + "acknowledge: [halyard-removed, halyard-unsupported, front50-gcs-deprecated]\n")
    assert acked.warnings == [] and len(acked.acknowledged) == 3


def test_kustomize_needs_images_on_ghcr(tmp_path):
    the_error(tmp_path, spin("engine: kustomize", version="2025.4.4"), "spinnaker.engine", "engine: kustomize",
              "2026.1.0")


def test_halyard_warning_only_for_the_halyard_engine(tmp_path):
    assert [w.code for w in load(tmp_path, spin("engine: halyard")).warnings] == ["halyard-unsupported"]
    assert load(tmp_path, spin()).warnings == []


@pytest.mark.parametrize("line,key", [
    ("redis: {url: 'redis://10.0.0.3:6379'}", "redis"),
    ("services: {kayenta: true}", "services"),
    ("sizing: {gate: {replicas: 2}}", "sizing"),
    ("kustomize: {customizations: patches}", "kustomize"),
])
def test_kustomize_only_settings_are_refused_with_halyard(tmp_path, line, key):
    text = spin("engine: halyard", line)
    the_error(tmp_path, text, f"spinnaker.{key}", line.split(":")[0] + ":", "read only by the kustomize engine")


def test_ingress_is_refused_with_halyard(tmp_path):
    text = BASE.replace("/gate}", "/gate, ingress: {enabled: true}}").replace(
        "  version: 2026.2.3\n", "  version: 2026.2.3\n  engine: halyard\n")
    the_error(tmp_path, text, "spinnaker.exposure.ingress.enabled", "ingress:", "kustomize engine only")


# --- services, sizing ------------------------------------------------------------------------------------------

def test_core_services_always_run_and_optional_ones_when_enabled(tmp_path):
    s = load(tmp_path, spin("services: {kayenta: true}")).config.spinnaker
    assert s.enabled_services == CORE_SERVICES + ("kayenta",)
    assert load(tmp_path, spin()).config.spinnaker.enabled_services == CORE_SERVICES


def test_fiat_needs_authentication(tmp_path):
    text = spin("services: {fiat: true}")
    p = the_error(tmp_path, text, "spinnaker.services.fiat", "services:", "authenticated users")
    assert "iap" in p.message and "not supported" in p.message
    with_iap = text.replace("/gate}", "/gate, iap: {audience: /projects/123/global/backendServices/456}}")
    assert load(tmp_path, with_iap).config.spinnaker.enabled_services[-1] == "fiat"


def test_sizing_per_service_with_the_old_clouddriver_key_still_honoured(tmp_path):
    s = load(tmp_path, spin("sizing: {gate: {replicas: 2, requestsMemory: 1Gi}}")).config.spinnaker
    assert s.sizing_for("gate").replicas == 2
    assert s.sizing_for("clouddriver").limits_memory == "12Gi"       # spinnaker.clouddriver.sizing's default
    assert s.sizing_for("deck") is None
    s = load(tmp_path, spin("clouddriver: {sizing: {requestsMemory: 10Gi}}")).config.spinnaker
    assert s.sizing_for("clouddriver").requests_memory == "10Gi"


def test_sizing_twice_or_for_a_service_that_does_not_run(tmp_path):
    twice = spin("clouddriver: {sizing: {requestsMemory: 10Gi}}", "sizing: {clouddriver: {requestsMemory: 9Gi}}")
    the_error(tmp_path, twice, "spinnaker.sizing.clouddriver", "sizing: {clouddriver", "sized twice")
    the_error(tmp_path, spin("sizing: {keel: {replicas: 1}}"), "spinnaker.sizing.keel", "sizing:", "does not run")
    the_error(tmp_path, spin("sizing: {halyard: {replicas: 1}}"), "spinnaker.sizing.halyard", "sizing:", "clouddriver")


# --- redis -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["redis://10.0.0.3:6379", "rediss://redis.internal.example:6378", "redis://redis:6379/"])
def test_redis_url_forms(tmp_path, url):
    assert load(tmp_path, spin(f"redis: {{url: '{url}'}}")).config.spinnaker.redis.url == url


@pytest.mark.parametrize("url,needle", [
    ("http://10.0.0.3:6379", "not a Redis URL"),
    ("redis://10.0.0.3", "not a Redis URL"),
    ("redis://10.0.0.3:0", "outside 1-65535"),
    ("redis://10.0.0.3:6379/0?x=1", "not a Redis URL"),
    ("redis://Bad_Host:6379", "not a host name"),
])
def test_bad_redis_urls(tmp_path, url, needle):
    text = spin(f"redis: {{url: '{url}'}}")
    the_error(tmp_path, text, "spinnaker.redis.url", "redis:", needle)


def test_a_password_in_the_redis_url_is_refused_and_never_shown(tmp_path):
    text = spin("redis: {url: 'redis://default:s3cr3t-pw@10.0.0.3:6379'}")
    p = the_error(tmp_path, text, "spinnaker.redis.url", "redis:", "user or password")
    assert "s3cr3t-pw" not in str(p)


def test_redis_defaults(tmp_path):
    r = load(tmp_path, spin()).config.spinnaker.redis
    assert r.url is None and r.storage_size == "8Gi"


# --- ingress ---------------------------------------------------------------------------------------------------

def ingress(text: str, fields: str = "enabled: true") -> str:
    return text.replace("  exposure: {", "  exposure: {ingress: {" + fields + "}, ")


def test_ingress_serves_the_url_hosts(tmp_path):
    cfg = load(tmp_path, ingress(BASE, "enabled: true, staticIpName: spinnaker-ui")).config
    assert cfg.spinnaker.exposure.ingress.static_ip_name == "spinnaker-ui"
    assert cfg.spinnaker.exposure.ingress.managed_certificate is True


@pytest.mark.parametrize("ui,needle", [
    ("https://10.1.2.3", "routes by host name"),
    ("https://spinnaker", "routes by host name"),
    ("http://spinnaker.acme.dev", "managed certificate serves https"),
    ("https://spinnaker.acme.dev:8443", "80 and 443 only"),
])
def test_ingress_hosts_must_be_servable(tmp_path, ui, needle):
    text = ingress(BASE.replace("uiUrl: https://spinnaker.acme.dev,", f"uiUrl: {ui},").replace(
        "apiUrl: https://spinnaker.acme.dev/gate", "apiUrl: https://api.acme.dev"))
    the_error(tmp_path, text, "spinnaker.exposure.uiUrl", "exposure:", needle)


def test_ingress_without_a_managed_certificate_may_be_http(tmp_path):
    text = ingress(BASE.replace("https://", "http://"), "enabled: true, managedCertificate: false")
    assert load(tmp_path, text).config.spinnaker.exposure.ingress.enabled


def test_ingress_needs_google_load_balancer(tmp_path):
    text = ingress(BASE.replace("/gate}", "/gate, behindGoogleLoadBalancer: false}"))
    the_error(tmp_path, text, "spinnaker.exposure.ingress.enabled", "exposure:", "Google's HTTPS load balancer")


def test_static_ip_name_is_a_gce_name(tmp_path):
    the_error(tmp_path, ingress(BASE, "enabled: true, staticIpName: Spin_IP"),
              "spinnaker.exposure.ingress.staticIpName", "exposure:", "global address name")


# --- customizations --------------------------------------------------------------------------------------------

def test_customizations_dir_is_relative_to_the_file_and_has_a_kustomization(tmp_path):
    text = spin("kustomize: {customizations: patches}")
    the_error(tmp_path, text, "spinnaker.kustomize.customizations", "kustomize:", "no such directory")
    (tmp_path / "patches").mkdir()
    the_error(tmp_path, text, "spinnaker.kustomize.customizations", "kustomize:", "no kustomization.yaml")
    (tmp_path / "patches" / "kustomization.yaml").write_text("kind: Component\n")
    assert load(tmp_path, text).config.spinnaker.kustomize.customizations == "patches"
    the_error(tmp_path, spin("kustomize: {customizations: /etc/patches}"), "spinnaker.kustomize.customizations",
              "kustomize:", "absolute path")


# --- examples and init -----------------------------------------------------------------------------------------

def test_examples_name_their_engine():
    for name, engine in (("spinboot.yaml", "halyard"), ("minimal.yaml", "halyard"), ("kustomize.yaml", "kustomize")):
        loaded = load_config(EXAMPLES / name)
        assert "engine" in loaded.config.spinnaker.model_fields_set and loaded.config.spinnaker.engine == engine


def test_kustomize_example_is_the_story_of_the_halyard_one(cli):
    """The sandbox seeds its projects and clusters from examples/spinboot.yaml: the kustomize example must use the
    same ones."""
    k, h = load_config(EXAMPLES / "kustomize.yaml").config, load_config(EXAMPLES / "spinboot.yaml").config
    assert (k.project, k.cluster, k.targets, k.registries) == (h.project, h.cluster, h.targets, h.registries)
    assert k.spinnaker.storage == h.spinnaker.storage and k.spinnaker.exposure.ingress.enabled
    result = cli("validate", "-c", EXAMPLES / "kustomize.yaml", "-o", "json")
    assert result.exit_code == 0
    assert [json.loads(line)["event"] for line in result.stdout.splitlines()] == ["valid"]   # no warnings


def test_init_offers_kustomize_and_halyard(cli, tmp_path):
    assert cli("init", tmp_path / "k.yaml").exit_code == 0
    assert load_config(tmp_path / "k.yaml").config.spinnaker.engine == "kustomize"
    assert cli("init", "--engine", "halyard", tmp_path / "h.yaml").exit_code == 0
    h = load_config(tmp_path / "h.yaml").config
    assert h.spinnaker.engine == "halyard" and "halyard" in h.spinnaker.model_fields_set
    result = cli("init", "--engine", "helm", tmp_path / "x.yaml")
    assert result.exit_code == 2 and not (tmp_path / "x.yaml").exists()


# --- release guardrails ----------------------------------------------------------------------------------------

def test_the_table_cites_a_source_for_every_fact():
    table = yaml.safe_load((ROOT / "releases" / "guardrails.yaml").read_text())
    for section in ("kubectl", "apiGroups", "removals"):
        assert table[section]
        for entry in table[section]:
            assert entry["source"] and all(isinstance(s, str) and s for s in entry["source"]), entry


def test_kubectl_has_one_record():
    """halconfig/kubectl.yaml moved into the table; the renderer reads the table."""
    assert not (ROOT / "halconfig" / "kubectl.yaml").exists()
    assert releases.newest_kubectl("2026.2.3") == "kubectl-1.29"
    assert releases.newest_kubectl("1.34.0") == "kubectl-1.29"
    assert releases.newest_kubectl("2026.3.1") == "kubectl-1.33"
    assert releases.newest_kubectl("1.33.2") is None and releases.newest_kubectl("2027.0.0") is None


def test_kubectl_129_breaks_on_2026_3():
    problem = releases.kubectl_problem("2026.3.0", "kubectl-1.29")
    assert problem and "kubectl-1.30, kubectl-1.31, kubectl-1.32, kubectl-1.33" in problem
    assert releases.kubectl_problem("2026.2.3", "kubectl-1.29") is None
    assert releases.kubectl_problem("2026.3.0", "kubectl") is None
    assert releases.kubectl_problem("2027.0.0", "kubectl-1.29") is None     # no record: nothing claimed


def test_clouddriver_is_pointed_at_the_newest_kubectl_of_its_release(tmp_path):
    for version, kubectl in (("2026.2.3", "kubectl-1.29"), ("2026.3.0", "kubectl-1.33")):
        cfg = load(tmp_path, spin(version=version)).config
        assert yaml.safe_load(clouddriver_local(cfg))["kubernetes"]["kubectl"]["executable"] == kubectl


@pytest.mark.parametrize("version,severity", [("2026.2.3", None), ("2026.3.0", "warning"), ("2027.0.5", "warning"),
                                              ("2027.1.0", "error")])
def test_front50_gcs_by_release(tmp_path, version, severity):
    text = spin(version=version)
    if severity == "error":
        p = the_error(tmp_path, text, "spinnaker.storage", "storage:", "may no longer read GCS")
        assert "DeprecatedStorageBackend.java" in p.message
        return
    codes = [w.code for w in load(tmp_path, text).warnings]
    assert codes == (["front50-gcs-deprecated"] if severity else [])


def test_validate_says_why_in_json(cli, tmp_path):
    f = tmp_path / "spinboot.yaml"
    f.write_text(spin("engine: halyard", version="2027.0.0"))
    result = cli("validate", "-c", f, "-o", "json")
    assert result.exit_code == 2
    events = [json.loads(line) for line in result.stdout.splitlines()]
    problem = next(e for e in events if e["event"] == "problem" and e["path"] == "spinnaker.engine")
    assert problem["line"] == 5 and "Halyard was removed upstream" in problem["message"]


def test_docs_show_the_table():
    """docs/engines.md renders the table for people: every line, removal and source file appears there."""
    doc = (ROOT / "docs" / "engines.md").read_text()
    table = releases.table()
    for line in table["kubectl"]:
        assert line["executable"] in doc and ", ".join(b.removeprefix("kubectl-") for b in line["binaries"][1:]) in doc
    for r in table["removals"]:
        assert f"| {r['lastLine']} |" in doc
        for source in r["source"]:
            ref = source.split(":")[-1].rsplit("/", 1)[-1] if ":" in source else source.split(" ")[0].split("#")[1]
            assert ref.split(" ")[0] in doc, ref
    for a in table["apiGroups"]:
        assert f"`{a['apiVersion']}`" in doc
