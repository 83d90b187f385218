"""The pinned kustomize (issue 12 item 3): built from the Go module proxy and cached, a build equal to a hand run,
schema validation of what it prints, and `spinboot render` writing kustomize/rendered.yaml or exiting 2.

Real parts: the kustomize binary is the one spinboot builds (the Go build cache makes a rebuild seconds once
`make sandbox-build` ran), the schemas are Kubernetes' own OpenAPI documents. Until the tree renderer lands in
render_all, the render tests feed a small tree of their own through the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from spinboot import gobuild
from spinboot.render import kustomize_build as kb

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "spinboot.yaml"

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: gate
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/component: gate}
  template:
    metadata:
      labels: {app.kubernetes.io/component: gate}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 10111}
      containers:
        - name: gate
          image: ghcr.io/spinnaker/gate:2026.2.3
          env: [{name: SPRING_PROFILES_ACTIVE, value: local}]
          ports: [{name: http, containerPort: 8084}]
          readinessProbe: {httpGet: {path: /health, port: http}}
          resources: {requests: {memory: 1Gi, cpu: 500m}, limits: {memory: 2Gi}}
          volumeMounts: [{name: config, mountPath: /opt/spinnaker/config}]
      volumes: [{name: config, configMap: {name: gate-config}}]
"""

# A base and an overlay, with what makes a kustomize build worth checking byte for byte: a generated ConfigMap
# whose name gets a content hash (and the Deployment's reference to it rewritten), labels, a namespace, a patch.
TREE = {
    "kustomize/base/kustomization.yaml": """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [deployment.yaml, service.yaml]
configMapGenerator:
  - name: gate-config
    files: [gate-local.yml]
""",
    "kustomize/base/deployment.yaml": DEPLOYMENT,
    "kustomize/base/service.yaml": """\
apiVersion: v1
kind: Service
metadata: {name: gate}
spec:
  selector: {app.kubernetes.io/component: gate}
  ports: [{name: http, port: 8084, targetPort: http}]
""",
    "kustomize/base/gate-local.yml": "server:\n  forward-headers-strategy: native\n",
    "kustomize/kustomization.yaml": """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: spinnaker
labels:
  - pairs: {app.kubernetes.io/part-of: spinnaker, app.kubernetes.io/managed-by: spinboot}
    includeSelectors: false
resources: [base, exposure.yaml]
patches:
  - target: {kind: Deployment, name: gate}
    patch: |-
      - op: replace
        path: /spec/replicas
        value: 2
""",
    "kustomize/exposure.yaml": """\
apiVersion: cloud.google.com/v1
kind: BackendConfig
metadata: {name: gate}
spec:
  iap: {enabled: true}
  healthCheck: {type: HTTP, requestPath: /health, port: 8084}
---
apiVersion: networking.gke.io/v1
kind: ManagedCertificate
metadata: {name: spinnaker}
spec:
  domains: [spinnaker.acme.dev]
""",
}


def write_tree(root: Path, tree: dict[str, str] = TREE) -> Path:
    for rel, text in tree.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "kustomize"


@pytest.fixture(scope="module")
def binary() -> Path:
    return kb.kustomize_binary()


# --- pins ----------------------------------------------------------------------------------------------------------

def test_pins_follow_the_sandbox():
    """Schemas of the Kubernetes the sandbox runs, built with the sandbox's Go (the two pins files must agree)."""
    ours = kb.load_pins()
    with (ROOT / "spinboot" / "sandbox" / "versions.toml").open("rb") as f:
        sandbox = tomllib.load(f)
    assert ours["kubernetes"]["version"] == sandbox["kubernetes"]["version"]
    assert ours["go"]["toolchain"] == sandbox["go"]["toolchain"]
    assert ours["kustomize"]["module"] == "sigs.k8s.io/kustomize/kustomize/v5"


# --- the binary ----------------------------------------------------------------------------------------------------

def test_binary_builds_once_under_a_lock_then_comes_from_the_cache(tmp_path, monkeypatch):
    """Two processes on an empty cache: one builds, the other waits for it; a third call only finds the file."""
    cache = tmp_path / "tools"
    env = dict(os.environ, SPINBOOT_TOOLS_CACHE=str(cache), PATH=_path_without_kustomize())
    env.pop(kb.ENV_BINARY, None)
    code = ("import sys; from spinboot.render import kustomize_build as kb; "
            "print(kb.kustomize_binary(lambda s: print('LOG', s, flush=True)))")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    paths = {o.strip().splitlines()[-1] for o in outs}
    assert len(paths) == 1
    built = Path(paths.pop())
    assert built.parent.parent == cache and built.parent.name.startswith(f"kustomize-{kb.load_pins()['kustomize']['version']}-")
    assert sum(o.count("LOG building kustomize") for o in outs) == 1, outs
    assert kb.reported_version(built) == kb.load_pins()["kustomize"]["version"]
    manifest = json.loads((built.parent / "manifest.json").read_text())
    assert manifest["version"] == kb.load_pins()["kustomize"]["version"] and manifest["go"].startswith("go")

    monkeypatch.setenv("SPINBOOT_TOOLS_CACHE", str(cache))
    monkeypatch.setenv("PATH", _path_without_kustomize())
    monkeypatch.delenv(kb.ENV_BINARY, raising=False)

    def no_go():
        raise AssertionError("a warm cache must not run Go")

    monkeypatch.setattr(gobuild, "find_go", no_go)
    logs: list[str] = []
    assert kb.kustomize_binary(logs.append) == built
    assert logs == [f"kustomize {kb.load_pins()['kustomize']['version']}: {built} (spinboot's build)"]


def test_a_pinned_kustomize_can_come_from_the_environment_or_path(binary, tmp_path, monkeypatch):
    want = kb.load_pins()["kustomize"]["version"]
    monkeypatch.setenv(kb.ENV_BINARY, str(binary))
    logs: list[str] = []
    assert kb.kustomize_binary(logs.append) == binary
    assert logs == [f"kustomize {want}: {binary} (from {kb.ENV_BINARY})"]

    old = tmp_path / "old" / "kustomize"  # some other kustomize release a user has installed
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho v5.0.1\n")
    old.chmod(0o755)
    monkeypatch.setenv(kb.ENV_BINARY, str(old))
    with pytest.raises(kb.KustomizeError, match=f"reports v5.0.1, but spinboot is pinned to kustomize {want}"):
        kb.kustomize_binary()

    monkeypatch.delenv(kb.ENV_BINARY)
    monkeypatch.setenv("PATH", f"{old.parent}:{_path_without_kustomize()}")
    logs = []
    assert kb.kustomize_binary(logs.append) == kb.cached_binary()  # the wrong one is passed over, and said so
    assert f"kustomize on PATH ({old}) reports v5.0.1, not the pinned {want}: not used" in logs

    good = tmp_path / "good"
    good.mkdir()
    (good / "kustomize").symlink_to(binary)
    monkeypatch.setenv("PATH", f"{good}:{_path_without_kustomize()}")
    logs = []
    assert kb.kustomize_binary(logs.append) == good / "kustomize"
    assert logs == [f"kustomize {want}: {good / 'kustomize'} (from PATH)"]


def _path_without_kustomize() -> str:
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and not (Path(p) / "kustomize").exists())


# --- build ---------------------------------------------------------------------------------------------------------

def test_build_tree_equals_a_hand_run(binary, tmp_path, monkeypatch):
    """The user's own shell (their environment, another working directory, a relative path) gets the same bytes."""
    monkeypatch.delenv(kb.ENV_BINARY, raising=False)
    root = write_tree(tmp_path / "out")
    ours = kb.build_tree(root)
    hand = subprocess.run([str(binary), "build", "out/kustomize"], cwd=tmp_path, capture_output=True,
                          env=dict(os.environ, HOME=str(Path.home())), check=True).stdout
    assert ours.encode() == hand
    docs = list(yaml.safe_load_all(ours))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["BackendConfig", "ConfigMap", "Deployment", "ManagedCertificate", "Service"]
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert cm["metadata"]["name"].startswith("gate-config-")  # kustomize's content hash, and the reference follows
    assert dep["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]
    assert dep["spec"]["replicas"] == 2 and all(d["metadata"]["namespace"] == "spinnaker" for d in docs)
    assert kb.validate_objects(docs) == []


def test_build_failure_names_the_file_and_kustomizes_message(tmp_path):
    tree = dict(TREE)
    tree["kustomize/kustomization.yaml"] = TREE["kustomize/kustomization.yaml"].replace("exposure.yaml",
                                                                                      "missing.yaml")
    root = write_tree(tmp_path, tree)
    with pytest.raises(kb.BuildError) as err:
        kb.build_tree(root)
    assert "missing.yaml" in err.value.message
    assert str(root) in str(err.value)

    tree = dict(TREE)
    tree["kustomize/base/service.yaml"] = "apiVersion: v1\nkind: Service\nmetadata: {name: [not, a, name]}\n"
    with pytest.raises(kb.BuildError) as err:
        kb.build_tree(write_tree(tmp_path / "two", tree))
    assert err.value.files == ["base/service.yaml"] and "missing metadata.name" in err.value.message


# --- validation ----------------------------------------------------------------------------------------------------

def _deployment() -> dict:
    return yaml.safe_load(DEPLOYMENT)


def test_validation_passes_good_objects():
    docs = [_deployment(), *yaml.safe_load_all(TREE["kustomize/exposure.yaml"]),
            yaml.safe_load(TREE["kustomize/base/service.yaml"]),
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "clouddriver"},
             "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "creationTimestamp": None},
             "data": {"a": "b"}}]
    assert kb.validate_objects(docs) == []


def test_validation_names_each_bad_field():
    dep = _deployment()
    dep["spec"]["replica"] = 2  # misspelt: kustomize passes it, the API server's strict validation does not
    container = dep["spec"]["template"]["spec"]["containers"][0]
    container["resources"]["limits"]["memory"] = "8GB"
    container["ports"][0]["containerPort"] = "8084"
    dep["spec"]["template"]["spec"]["containers"].append({"name": "gate", "image": "x"})
    problems = kb.validate_objects([dep])
    assert problems == [
        "Deployment gate (apps/v1): spec: Additional properties are not allowed ('replica' was unexpected)",
        "Deployment gate (apps/v1): spec.template.spec.containers: [1]: duplicate entry (name='gate')",
        "Deployment gate (apps/v1): spec.template.spec.containers[0].ports[0].containerPort: must be integer, not "
        "a string",
        "Deployment gate (apps/v1): spec.template.spec.containers[0].resources.limits.memory: '8GB' is not a "
        "Kubernetes quantity (e.g. 512Mi, 8Gi, 500m, 2)",
    ]


def test_validation_of_the_gke_kinds():
    bc, cert = yaml.safe_load_all(TREE["kustomize/exposure.yaml"])
    bc["spec"]["iap"] = {"enable": True}
    bc["spec"]["healthCheck"]["type"] = "TCP"
    cert["spec"]["domains"] = ["*.acme.dev"]
    problems = kb.validate_objects([bc, cert])
    assert "BackendConfig gate (cloud.google.com/v1): spec.iap: 'enabled' is a required property" in problems
    assert any("spec.iap: Additional properties are not allowed ('enable'" in p for p in problems)
    assert any(p.startswith("BackendConfig gate (cloud.google.com/v1): spec.healthCheck.type: 'TCP' is not one of")
               for p in problems)
    assert any(p.startswith("ManagedCertificate spinnaker (networking.gke.io/v1): spec.domains[0]: '*.acme.dev'")
               for p in problems)
    assert len(problems) == 4


def test_unknown_kinds_and_dropped_api_versions_are_errors():
    problems = kb.validate_objects([
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
        {"apiVersion": "extensions/v1beta1", "kind": "Ingress", "metadata": {"name": "gate"}},  # gone since 1.22
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}},
    ])
    assert problems == [
        "Widget w (example.com/v1): unknown kind 'Widget' of apiVersion 'example.com/v1' (allowed: Kubernetes' "
        "built-in kinds, BackendConfig and ManagedCertificate)",
        "Ingress gate (extensions/v1beta1): unknown kind 'Ingress' of apiVersion 'extensions/v1beta1' (allowed: "
        "Kubernetes' built-in kinds, BackendConfig and ManagedCertificate)",
        "ConfigMap <no name> (v1): metadata.name is required",
    ]


# --- spinboot render -----------------------------------------------------------------------------------------------

def _render_with_tree(monkeypatch, tmp_path, tree: dict[str, str], *args: str):
    """`spinboot render` with the engine's tree replaced by ``tree`` (until render_all renders one itself)."""
    from spinboot.cli.main import app
    from spinboot.render import bundle

    real = bundle.render_all

    def render_all(cfg, *a, **kw):
        files = {r: b for r, b in real(cfg, *a, **kw).items() if not r.startswith("kustomize/")}
        files.update({rel: text.encode() for rel, text in tree.items()})
        return files

    monkeypatch.setattr("spinboot.render.render_all", render_all)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["render", "-c", str(EXAMPLE), "-d", str(out), *args])
    return result, out


def test_render_writes_rendered_yaml_a_hand_build_reproduces(binary, monkeypatch, tmp_path):
    result, out = _render_with_tree(monkeypatch, tmp_path, TREE)
    assert result.exit_code == 0, result.output
    rendered = (out / kb.RENDERED).read_bytes()
    hand = subprocess.run([str(binary), "build", str(out / "kustomize")], capture_output=True, check=True).stdout
    assert rendered == hand
    manifest = json.loads((out / "MANIFEST.json").read_text())["files"]
    assert kb.RENDERED in manifest and "kustomize/base/deployment.yaml" in manifest


def test_render_exits_2_naming_the_object(monkeypatch, tmp_path):
    tree = dict(TREE)
    tree["kustomize/base/deployment.yaml"] = DEPLOYMENT.replace("replicas: 1", "replica: 1")
    result, out = _render_with_tree(monkeypatch, tmp_path, tree, "-o", "json")
    assert result.exit_code == 2, result.output
    errors = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    errors = [e for e in errors if e["event"] == "error"]
    assert errors[0]["code"] == "invalid-object"
    assert errors[0]["message"] == ("Deployment spinnaker/gate (apps/v1): spec: Additional properties are not "
                                    "allowed ('replica' was unexpected)")
    assert not out.exists()  # nothing written


def test_render_of_a_broken_tree_exits_2(monkeypatch, tmp_path):
    tree = dict(TREE)
    tree["kustomize/kustomization.yaml"] += "  - path: nowhere.yaml\n"
    result, out = _render_with_tree(monkeypatch, tmp_path, tree)
    assert result.exit_code == 2, result.output
    assert "\nerror: kustomize build kustomize failed (in kustomize/nowhere.yaml): " in result.output
    assert "spinboot-kustomize-" not in result.output  # the scratch copy is not what the user knows
    assert not out.exists()


def test_halyard_bundles_need_no_kustomize():
    files = {"halconfig/configure.sh": b"#!/bin/sh\n", "MANIFEST.json": b"{}"}
    assert kb.with_rendered(files) is files


def test_module_entry_point_prints_the_binary(binary):
    """What `make sandbox-build` runs."""
    proc = subprocess.run([sys.executable, "-m", "spinboot.render.kustomize_build"], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != kb.ENV_BINARY})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == str(kb.cached_binary())


# --- the real tree (examples/kustomize.yaml) -----------------------------------------------------------------------

KUSTOMIZE_EXAMPLE = ROOT / "examples" / "kustomize.yaml"


def test_render_of_the_kustomize_example_is_what_a_hand_build_prints(binary, tmp_path):
    """Issue 12's "done when": the tree a user builds by hand (their shell, their working directory) is
    byte-identical to the rendered.yaml spinboot applies, and every built object passes validation."""
    from spinboot.cli.main import app

    result = CliRunner().invoke(app, ["render", "-c", str(KUSTOMIZE_EXAMPLE), "-d", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    rendered = (tmp_path / "out" / kb.RENDERED).read_bytes()
    hand = subprocess.run([str(binary), "build", "kustomize"], cwd=tmp_path / "out", capture_output=True,
                          check=True).stdout
    assert rendered == hand
    docs = list(yaml.safe_load_all(rendered))
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap", "BackendConfig", "ManagedCertificate"}
    assert kb.validate_objects(docs) == []


def test_a_bad_user_patch_exits_2_naming_the_object(tmp_path):
    """A misspelt field in the user's customizations: kustomize accepts it, validation names it, nothing is written."""
    from spinboot.cli.main import app

    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\npatches:\n  - path: gate-replicas.yaml\n")
    (tmp_path / "custom" / "gate-replicas.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: gate}\nspec: {replcas: 3}\n")
    config = tmp_path / "spinboot.yaml"
    config.write_text(KUSTOMIZE_EXAMPLE.read_text().replace(
        "  engine: kustomize\n", "  engine: kustomize\n  kustomize: {customizations: custom}\n", 1))
    result = CliRunner().invoke(app, ["render", "-c", str(config), "-d", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert ("error: Deployment spinnaker/gate (apps/v1): spec: Additional properties are not allowed ('replcas' was "
            "unexpected)") in result.output
    assert not (tmp_path / "out").exists()
