"""The kustomize engine's tree (spinboot/render/kustomize): what it must and must not contain, that a change rolls
only the service it concerns, that the real pinned kustomize builds it, and golden files.

A deliberate change of the tree: ``SPINBOOT_UPDATE_GOLDENS=1 pytest tests/test_render_kustomize.py``, then review
``git diff tests/goldens/kustomize``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from spinboot.config import load_config
from spinboot.config.loader import load_config_bytes
from spinboot.render import render_all
from spinboot.render.kustomize import (CustomizationsError, KUBECONFIG_MOUNT, KUBECONFIG_SECRET, kubeconfig_secret,
                                       tree)
from spinboot.render.kustomize.facts import SERVICES
from spinboot.render.kustomize.labels import COMPONENT, CONFIG_HASH, INSTALL_LABEL

from .conftest import EXAMPLES, ROOT

GOLDENS = ROOT / "tests" / "goldens" / "kustomize"
UPDATE = os.environ.get("SPINBOOT_UPDATE_GOLDENS") == "1"
EXAMPLE = EXAMPLES / "kustomize.yaml"
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CORE = {"clouddriver", "deck", "echo", "front50", "gate", "igor", "orca", "rosco"}


def example_data() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def config_of(data: dict, base: Path = EXAMPLES):
    return load_config_bytes(yaml.safe_dump(data).encode(), str(base / "spinboot.yaml"), base / "spinboot.yaml").config


def variant() -> dict:
    """Every branch the example leaves out: Gate on a host of its own, IAP, external Redis, optional services,
    per-service sizing, a non-GKE target, an older calendar version."""
    data = example_data()
    s = data["spinnaker"]
    s["version"] = "2026.1.0"
    s["exposure"].update({"apiUrl": "https://api.spinnaker.acme.dev",
                          "iap": {"audience": "/projects/123456/global/backendServices/789"}})
    s["exposure"]["ingress"] = {"enabled": True, "managedCertificate": True}
    s["redis"] = {"url": "redis://10.0.0.3:6379"}
    s["services"] = {"fiat": True, "kayenta": True, "keel": True}
    s["sizing"]["orca"] = {"requestsMemory": "3Gi", "limitsMemory": "4Gi", "requestsCpu": "750m", "limitsCpu": "2",
                           "replicas": 3}
    data["targets"].append({"name": "onprem", "kubeconfig": {"path": "/etc/k/config", "context": "onprem"},
                            "namespaces": ["apps"], "cacheIntervalSeconds": 120})
    return data


CASES = {"example": example_data, "variant": variant}


def docs_of(files: dict[str, str]) -> list[dict]:
    """Every Kubernetes object written in the tree (not the kustomizations or the services' config files)."""
    out = []
    for rel, body in files.items():
        if rel.endswith(".yaml") and not rel.endswith(("kustomization.yaml", "-service-patch.yaml")):
            out += [d for d in yaml.load_all(body, Loader=Loader) if d]
    return out


def kinds(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def build(files: dict[str, str]) -> list[dict]:
    """The tree built by the real pinned kustomize (spinboot/render/kustomize_build.py) and schema-validated."""
    try:
        from spinboot.render import kustomize_build as kb
    except ImportError:
        pytest.skip("spinboot/render/kustomize_build.py (helper kustomize-binary) is not there yet")
    try:
        rendered = kb.with_rendered({rel: body.encode() for rel, body in files.items()})
    except kb.KustomizeError as exc:
        pytest.skip(f"the pinned kustomize cannot be had on this machine: {exc}")
    return [d for d in yaml.load_all(rendered[kb.RENDERED], Loader=Loader) if d]


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    cfg = config_of(CASES[request.param]())
    return request.param, cfg, tree(cfg, EXAMPLES)


def test_no_cluster_wide_rights_anywhere(case):
    _, cfg, files = case
    docs = docs_of(files)
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert not [rel for rel, body in files.items() if "cluster-admin" in body]
    for binding in kinds(docs, "RoleBinding").values():
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "clouddriver",
                                        "namespace": cfg.spinnaker.namespace}]
    # Only clouddriver (its in-cluster account) gets an API token.
    tokens = {d["metadata"]["name"] for d in docs
              if d["kind"] == "ServiceAccount" and d["automountServiceAccountToken"]}
    assert tokens == {"clouddriver"}


def test_every_spinnaker_image_carries_the_version(case):
    _, cfg, files = case
    deployments = kinds(docs_of(files), "Deployment")
    assert set(deployments) >= CORE
    for name, dep in deployments.items():
        assert [c["image"] for c in containers(dep)] == [f"ghcr.io/spinnaker/{name}:{cfg.spinnaker.version}"]
    assert not [rel for rel, body in files.items() if "latest" in body and rel.endswith(".yaml")]


def test_every_workload_has_probes_security_context_and_resources(case):
    _, _, files = case
    docs = docs_of(files)
    workloads = list(kinds(docs, "Deployment").values()) + list(kinds(docs, "StatefulSet").values())
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        name = w["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0, name
        for c in pod["containers"]:
            assert c["readinessProbe"] and c["livenessProbe"] and c["startupProbe"], name
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"], name
        if w["kind"] == "Deployment":
            svc = SERVICES[name]
            (c,) = pod["containers"]
            assert c["ports"] == [{"name": "http", "containerPort": svc.port, "protocol": "TCP"}]
            probe = c["readinessProbe"]
            if svc.health_path:
                assert probe["httpGet"] == {"path": "/health", "port": "http"}, name
            else:
                assert probe["tcpSocket"] == {"port": "http"}, name
            assert pod["securityContext"]["runAsUser"] == (33 if name == "deck" else 10111)
            assert w["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]


def test_sizing_and_optional_services_follow_the_file():
    cfg = config_of(variant())
    deps = kinds(docs_of(tree(cfg, EXAMPLES)), "Deployment")
    assert set(deps) == CORE | {"fiat", "kayenta", "keel"}
    assert deps["orca"]["spec"]["replicas"] == 3
    assert containers(deps["orca"])[0]["resources"] == {"requests": {"cpu": "750m", "memory": "3Gi"},
                                                        "limits": {"memory": "4Gi", "cpu": "2"}}
    assert deps["gate"]["spec"]["replicas"] == 2
    # spinnaker.sizing.clouddriver of the example
    assert containers(deps["clouddriver"])[0]["resources"]["limits"]["memory"] == "12Gi"
    base = config_of(example_data())
    assert set(kinds(docs_of(tree(base, EXAMPLES)), "Deployment")) == CORE


def test_redis_in_cluster_or_external():
    inside = tree(config_of(example_data()), EXAMPLES)
    sts = kinds(docs_of(inside), "StatefulSet")["redis"]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"
    spinnaker = yaml.safe_load(inside["kustomize/base/echo/spinnaker.yml"])
    assert spinnaker["services"]["redis"] == {"baseUrl": "redis://redis:6379", "enabled": True}

    outside = tree(config_of(variant()), EXAMPLES)
    assert not kinds(docs_of(outside), "StatefulSet")
    assert "kustomize/base/redis/redis.yaml" not in outside
    for svc in ("echo", "orca", "gate", "clouddriver"):
        spinnaker = yaml.safe_load(outside[f"kustomize/base/{svc}/spinnaker.yml"])
        assert spinnaker["services"]["redis"]["baseUrl"] == "redis://10.0.0.3:6379"


def test_workload_identity_only_on_the_google_callers(case):
    _, cfg, files = case
    docs = docs_of(files)
    sas = kinds(docs, "ServiceAccount")
    annotated = {n for n, sa in sas.items()
                 if (sa["metadata"].get("annotations") or {}).get("iam.gke.io/gcp-service-account")
                 == cfg.service_account_email}
    assert annotated == {"clouddriver", "echo", "front50"}
    for name, dep in kinds(docs, "Deployment").items():
        assert dep["spec"]["template"]["spec"]["serviceAccountName"] == name


def test_clouddriver_accounts_and_the_kubeconfig_secret():
    cfg = config_of(variant())
    files = tree(cfg, EXAMPLES)
    local = yaml.safe_load(files["kustomize/base/clouddriver/clouddriver-local.yml"])
    accounts = {a["name"]: a for a in local["kubernetes"]["accounts"]}
    assert accounts["spinnaker-install"] == {"name": "spinnaker-install", "serviceAccount": True,
                                             "namespaces": ["spinnaker"], "cacheIntervalSeconds": 30}
    assert accounts["onprem"]["namespaces"] == ["apps"] and accounts["onprem"]["cacheIntervalSeconds"] == 120
    assert local["kubernetes"]["kubectl"]["executable"].startswith("kubectl-1.")
    (registry,) = local["dockerRegistry"]["accounts"]
    assert registry["address"] == "https://us-docker.pkg.dev" and registry["cacheIntervalSeconds"] == 600
    assert registry["username"] == "oauth2accesstoken" and "metadata.google.internal" in registry["passwordCommand"]

    secret = kubeconfig_secret(cfg, {t.name: f"kubeconfig of {t.name}".encode() for t in cfg.targets})
    assert secret["metadata"]["name"] == KUBECONFIG_SECRET
    assert secret["metadata"]["labels"][INSTALL_LABEL] == "spinnaker"
    files_in_secret = {f"{KUBECONFIG_MOUNT}/{k}" for k in secret["data"]}
    targets = {a["kubeconfigFile"] for a in accounts.values() if "kubeconfigFile" in a}
    assert files_in_secret == targets and len(targets) == 3
    dep = kinds(docs_of(files), "Deployment")["clouddriver"]
    mounts = {m["mountPath"]: m["name"] for m in containers(dep)[0]["volumeMounts"]}
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols[mounts[KUBECONFIG_MOUNT]]["secret"]["secretName"] == KUBECONFIG_SECRET
    # The kubeconfigs themselves never enter the reviewable tree.
    assert not [rel for rel, body in files.items() if "kubeconfig of" in body or rel.endswith(".kubeconfig")]
    with pytest.raises(ValueError, match="not in spinboot.yaml"):
        kubeconfig_secret(cfg, {"nope": b"x"})


def test_service_config_reads_the_file(case):
    _, cfg, files = case
    echo = yaml.safe_load(files["kustomize/base/echo/echo-local.yml"])
    assert echo["redis"]["enabled"] is True
    assert echo["pubsub"]["google"]["subscriptions"] == [
        {"name": "images", "project": "acme-platform", "subscriptionName": "spinnaker-gcr", "ackDeadlineSeconds": 60,
         "messageFormat": "GCR"}]
    front50 = yaml.safe_load(files["kustomize/base/front50/front50-local.yml"])["spinnaker"]["gcs"]
    assert front50 == {"enabled": True, "bucket": "acme-spinnaker", "bucketLocation": "us", "rootFolder": "front50",
                       "project": "acme-platform"}
    igor = yaml.safe_load(files["kustomize/base/igor/igor-local.yml"])
    assert igor["dockerRegistry"] == {"enabled": True}
    assert igor["services"]["keel"]["enabled"] is cfg.spinnaker.services.keel
    gate = yaml.safe_load(files["kustomize/base/gate/gate-local.yml"])
    assert gate["server"]["forward-headers-strategy"] == "native"
    assert set(gate["server"]["tomcat"]) == {"remoteip"}   # not the camelCase keys Spring Boot 2.5+ ignores
    assert ("google" in gate) == (cfg.spinnaker.exposure.iap is not None)
    for svc, dep in kinds(docs_of(files), "Deployment").items():
        env = {e["name"]: e["value"] for e in containers(dep)[0]["env"]}
        if svc != "deck":
            assert env["SPRING_PROFILES_ACTIVE"] == "local"
            assert {f"{svc}/spinnaker.yml", f"{svc}/{svc}-local.yml"} <= {
                rel.removeprefix("kustomize/base/") for rel in files}


def test_gate_url_is_consistent_across_deck_probes_and_ingress(case):
    _, cfg, files = case
    docs = docs_of(files)
    api = cfg.spinnaker.exposure.api_url
    settings_js = files["kustomize/base/deck/settings-local.js"]
    assert f'gateUrl = "{api}";' in settings_js
    deck = kinds(docs, "Deployment")["deck"]
    env = {e["name"]: e["value"] for e in containers(deck)[0]["env"]}
    gate_port = SERVICES["gate"].port
    assert env["API_HOST"] == f"http://gate:{gate_port}"
    assert kinds(docs, "Service")["gate"]["spec"]["ports"][0]["port"] == gate_port
    ingress = kinds(docs, "Ingress")["spinnaker"]
    routed = {r["host"]: r["http"]["paths"][0]["backend"]["service"]["name"] for r in ingress["spec"]["rules"]}
    backend_configs = kinds(docs, "BackendConfig")
    if api.endswith("/gate"):
        assert routed == {"spinnaker.acme.dev": "deck"}   # Deck forwards /gate to API_HOST
        assert set(backend_configs) == {"deck-backend"}
    else:
        assert routed == {"spinnaker.acme.dev": "deck", "api.spinnaker.acme.dev": "gate"}
        gate_check = backend_configs["gate-backend"]["spec"]
        probe = containers(kinds(docs, "Deployment")["gate"])[0]["readinessProbe"]["httpGet"]
        assert gate_check["healthCheck"] == {"type": "HTTP", "requestPath": probe["path"], "port": gate_port}
        assert gate_check["iap"] == {"enabled": True}
        assert "authEnabled = true" in settings_js
    patches = [rel for rel in files if rel.endswith("-service-patch.yaml")]
    assert len(patches) == len(backend_configs)


def changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {rel for rel in set(a) | set(b) if a.get(rel) != b.get(rel)}


def test_adding_a_target_changes_only_clouddrivers_config():
    data = example_data()
    before = tree(config_of(data), EXAMPLES)
    data["targets"].append({"name": "platform-eu", "gke": {"project": "acme-platform", "location": "europe-west1",
                                                           "cluster": "platform-eu"}, "namespaces": ["prod"]})
    after = tree(config_of(data), EXAMPLES)
    assert changed(before, after) == {"kustomize/base/clouddriver/clouddriver-local.yml",
                                      "kustomize/base/clouddriver/deployment.yaml"}
    dep = lambda f: yaml.safe_load(f["kustomize/base/clouddriver/deployment.yaml"])  # noqa: E731
    assert dep(before)["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH] != \
        dep(after)["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]
    rolled = rolled_services(before, after)
    if rolled is not None:
        assert rolled == {"clouddriver"}


def test_a_subscription_change_changes_only_echos_config():
    data = example_data()
    before = tree(config_of(data), EXAMPLES)
    data["registries"][0]["subscription"] = {"name": "spinnaker-gcr-2", "ackDeadlineSeconds": 120}
    after = tree(config_of(data), EXAMPLES)
    assert changed(before, after) == {"kustomize/base/echo/echo-local.yml", "kustomize/base/echo/deployment.yaml"}
    rolled = rolled_services(before, after)
    if rolled is not None:
        assert rolled == {"echo"}


def test_switching_an_optional_service_changes_only_the_services_that_read_it():
    """kayenta is read by gate and orca, keel by echo, gate, igor and orca; fiat by every service (upstream
    @Conditional* at the release: config_files.OPTIONAL_READERS); deck's UI switches cover all three."""
    data = example_data()
    data["spinnaker"]["exposure"]["iap"] = {"audience": "/projects/123456/global/backendServices/789"}  # for fiat
    before = tree(config_of(data), EXAMPLES)
    data["spinnaker"]["services"]["kayenta"] = True
    after = tree(config_of(data), EXAMPLES)
    touched = {rel.split("/")[2] for rel in changed(before, after)}
    assert touched == {"kayenta", "gate", "orca", "deck"} | ({"kustomization.yaml"} & touched)
    assert "feature.canary = true" in after["kustomize/base/deck/settings-local.js"]
    assert yaml.safe_load(after["kustomize/base/gate/gate-local.yml"])["services"]["kayenta"]["enabled"] is True
    assert yaml.safe_load(after["kustomize/base/orca/orca-local.yml"])["services"]["kayenta"]["enabled"] is True
    data["spinnaker"]["services"]["fiat"] = True
    with_fiat = tree(config_of(data), EXAMPLES)
    assert {rel.split("/")[2] for rel in changed(after, with_fiat)} >= CORE | {"fiat", "kayenta"}


def rolled_services(before: dict[str, str], after: dict[str, str]) -> set[str] | None:
    """Services whose built pod template differs (the ConfigMap name hash and CONFIG_HASH); None without kustomize."""
    try:
        a, b = build(before), build(after)
    except pytest.skip.Exception:
        return None
    templates = lambda docs: {d["metadata"]["name"]: d["spec"]["template"] for d in docs  # noqa: E731
                              if d["kind"] in ("Deployment", "StatefulSet")}
    ta, tb = templates(a), templates(b)
    configmaps = lambda docs: {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}  # noqa: E731
    renamed = configmaps(a) ^ configmaps(b)
    assert {n.rsplit("-", 2)[0] for n in renamed} == {s for s in ta if ta[s] != tb.get(s)}
    return {s for s in ta if ta[s] != tb.get(s)}


def test_the_real_kustomize_builds_it(case):
    _, cfg, files = case
    docs = build(files)
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for d in docs:
        labels = d["metadata"]["labels"]
        assert labels[INSTALL_LABEL] == cfg.spinnaker.namespace, d["metadata"]["name"]
        assert labels["app.kubernetes.io/managed-by"] == "spinboot"
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == cfg.spinnaker.namespace
    for dep in [d for d in docs if d["kind"] == "Deployment"]:
        name = dep["metadata"]["name"]
        # selectors stay the component alone (immutable; never matching the Halyard engine's spin-* pods)
        assert dep["spec"]["selector"] == {"matchLabels": {COMPONENT: name}}
        (volume,) = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
        cm = volume["configMap"]["name"]
        assert cm.startswith(f"{name}-config-")
        assert cm in {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}


def test_customizations_are_copied_and_referenced(tmp_path):
    custom = tmp_path / "kustomize-local"
    custom.mkdir()
    (custom / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\npatches:\n- path: gate-replicas.yaml\n")
    (custom / "gate-replicas.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: gate\nspec:\n  replicas: 5\n")
    data = example_data()
    data["spinnaker"]["kustomize"] = {"customizations": "kustomize-local"}
    cfg = config_of(data, tmp_path)
    files = tree(cfg, tmp_path)
    assert files["kustomize/custom/gate-replicas.yaml"] == (custom / "gate-replicas.yaml").read_text()
    assert yaml.safe_load(files["kustomize/kustomization.yaml"])["components"] == ["custom"]
    gate = kinds(build(files), "Deployment")["gate"]
    assert gate["spec"]["replicas"] == 5

    # A directory of plain patches (no kustomization): each is listed as a patch.
    (custom / "kustomization.yaml").unlink()
    files = tree(cfg, tmp_path)
    overlay = yaml.safe_load(files["kustomize/kustomization.yaml"])
    assert "components" not in overlay and {"path": "custom/gate-replicas.yaml"} in overlay["patches"]

    shutil.rmtree(custom)
    with pytest.raises(CustomizationsError, match="kustomize-local"):
        tree(cfg, tmp_path)


def test_render_all_writes_the_tree_only_for_the_kustomize_engine():
    files = render_all(load_config(EXAMPLE).config)
    assert "kustomize/kustomization.yaml" in files and not [r for r in files if r.startswith("halconfig/")]
    halyard = render_all(load_config(EXAMPLES / "spinboot.yaml").config)
    assert not [r for r in halyard if r.startswith("kustomize/")]


@pytest.mark.parametrize("name", sorted(CASES))
def test_tree_matches_goldens(name):
    files = tree(config_of(CASES[name]()), EXAMPLES)
    golden_dir = GOLDENS / name
    if UPDATE:
        shutil.rmtree(golden_dir, ignore_errors=True)
        for rel, body in files.items():
            (golden_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden_dir / rel).write_text(body)
    expected = {str(p.relative_to(golden_dir)): p.read_text() for p in golden_dir.rglob("*")
                if p.is_file() and p.name != "rendered.yaml"}
    assert sorted(files) == sorted(expected), "the set of tree files changed; update the goldens if deliberate"
    for rel, body in files.items():
        assert body == expected[rel], f"{rel} differs from tests/goldens/kustomize/{name}/{rel}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_build_matches_golden(name):
    """What a user's `kustomize build` of the tree prints, byte for byte (the pinned kustomize)."""
    from spinboot.render import kustomize_build as kb
    files = tree(config_of(CASES[name]()), EXAMPLES)
    try:
        rendered = kb.with_rendered({rel: body.encode() for rel, body in files.items()})[kb.RENDERED]
    except kb.KustomizeError as exc:
        pytest.skip(f"the pinned kustomize cannot be had on this machine: {exc}")
    golden = GOLDENS / name / "rendered.yaml"
    if UPDATE:
        golden.write_bytes(rendered)
    assert rendered == golden.read_bytes(), f"kustomize build output differs from {golden}"
