"""``spinboot drift`` on the sandbox: after an apply, objects deployed with Spinnaker's identity and annotations (as
clouddriver deploys them, with the real kubectl and so its field managers), by hand with an admin kubeconfig, and
changed in place with kubectl edit / scale; each lands in its class with its writer, and --audit names the
principal from the Logging stand-in's GKE-shaped audit entries."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from spinboot.kube.halyard import KUBECONFIG_SECRET
from spinboot.sandbox.kube import ADMIN_USER

from ..conftest import EXAMPLES
from .conftest import apply_example, events

pytestmark = pytest.mark.skipif(not shutil.which("kubectl"), reason="the test drives the real kubectl")

EXAMPLE = EXAMPLES / "spinboot.yaml"
SPIN = ("acme-platform", "us-central1-b", "spinnaker")
PLATFORM = ("acme-platform", "us-central1", "platform")


def spinnaker_object(kind: str, name: str, body: dict, managed_by: str = "spinnaker") -> dict:
    """A manifest as clouddriver sends it to kubectl: moniker and artifact annotations, managed-by label
    (KubernetesManifestAnnotater / KubernetesManifestLabeler at spinnaker-release-2026.2.3)."""
    api = {"Deployment": "apps/v1", "ConfigMap": "v1", "Service": "v1"}[kind]
    return {"apiVersion": api, "kind": kind, "metadata": {
        "name": name, "namespace": "prod",
        "annotations": {"moniker.spinnaker.io/application": "shop", "moniker.spinnaker.io/cluster": f"{kind.lower()} {name}",
                        "artifact.spinnaker.io/type": f"kubernetes/{kind.lower()}", "artifact.spinnaker.io/name": name,
                        "artifact.spinnaker.io/location": "prod"},
        "labels": {"app.kubernetes.io/managed-by": managed_by, "app.kubernetes.io/name": "shop"}}, **body}


def deployment_body(name: str) -> dict:
    return {"spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": name, "image": "us-docker.pkg.dev/acme-platform/acme/tasks:1"}]}}}}


@pytest.fixture(scope="module")
def world(sandbox, tmp_path_factory):
    """Apply the example, then deploy around Spinnaker in platform/prod; yields the kubectl runners."""
    apply_example(sandbox, EXAMPLE)
    env = sandbox.environ()
    d = tmp_path_factory.mktemp("drift")
    # Spinnaker's identity: the kubeconfig spinboot minted for clouddriver, from its Secret.
    spin_admin = sandbox.admin_kubeconfig(*SPIN)
    secret = json.loads(subprocess.run(
        ["kubectl", "--kubeconfig", str(spin_admin), "-n", "halyard", "get", "secret", KUBECONFIG_SECRET, "-o", "json"],
        check=True, capture_output=True, text=True).stdout)
    kdir = d / "kubeconfigs"
    kdir.mkdir(mode=0o700)
    for key, value in secret["data"].items():
        p = kdir / key
        p.write_bytes(base64.b64decode(value))
        p.chmod(0o600)
    spinnaker_kc = kdir / "platform.kubeconfig"
    # A person's admin kubeconfig: on GKE a Google token, here the sandbox's (its user is ADMIN_USER).
    doc = yaml.safe_load(spinnaker_kc.read_text())
    doc["users"][0]["user"] = {"token": json.loads(Path(env["SPINBOOT_SANDBOX"]).read_text())["token"]}
    admin_kc = d / "admin.kubeconfig"
    admin_kc.write_text(yaml.safe_dump(doc))
    admin_kc.chmod(0o600)

    def kubectl(kc: Path, *args: str, stdin: str | None = None, extra_env: dict | None = None) -> str:
        r = subprocess.run(["kubectl", "--kubeconfig", str(kc), "-n", "prod", *args], input=stdin, text=True,
                           capture_output=True, env={**os.environ, **(extra_env or {})}, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def as_spinnaker(obj: dict) -> None:   # clouddriver's deploy: kubectl apply -f - (KubectlJobExecutor.deploy)
        kubectl(spinnaker_kc, "apply", "-o", "json", "-f", "-", stdin=json.dumps(obj))

    as_spinnaker(spinnaker_object("Deployment", "shop-web", deployment_body("shop-web")))
    as_spinnaker(spinnaker_object("Deployment", "shop-api", deployment_body("shop-api")))
    as_spinnaker(spinnaker_object("ConfigMap", "shop-config", {"data": {"mode": "blue"}}))
    as_spinnaker(spinnaker_object("Deployment", "lab-worker", deployment_body("lab-worker"), "spinnaker-lab"))
    cart = spinnaker_object("Deployment", "shop-cart", deployment_body("shop-cart"))
    as_spinnaker(cart)
    as_spinnaker(spinnaker_object("ConfigMap", "shop-old", {"data": {"mode": "old"}}))
    # By hand, with the admin kubeconfig: a new Deployment, and in-place changes to Spinnaker's objects.
    kubectl(admin_kc, "create", "deployment", "hotfix", "--image=us-docker.pkg.dev/acme-platform/acme/tasks:2")
    kubectl(admin_kc, "scale", "deployment/shop-api", "--replicas=3")
    kubectl(admin_kc, "edit", "configmap/shop-config", extra_env={"EDITOR": "sed -i s/blue/green/"})
    # A person's kubectl apply of Spinnaker's own manifest leaves clouddriver's manager name: only --audit sees it.
    cart["spec"]["template"]["spec"]["containers"][0]["image"] = "us-docker.pkg.dev/acme-platform/acme/tasks:3"
    kubectl(admin_kc, "apply", "-f", "-", stdin=json.dumps(cart))
    kubectl(admin_kc, "delete", "configmap/shop-old")
    yield {"kdir": kdir, "admin": admin_kc}
    kubectl(admin_kc, "delete", "deployment/shop-web", "deployment/shop-api", "deployment/lab-worker",
            "deployment/hotfix", "deployment/shop-cart", "configmap/shop-config", "--wait=false")


def drift(cli, *args) -> tuple[int, list[dict]]:
    r = cli("drift", "-c", EXAMPLE, "--output", "json", *args)
    return r.exit_code, events(r.stdout)


def by_name(evs: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in evs if e["event"] == "drift" and e["class"] != "write"}


def test_each_object_lands_in_its_class_with_its_writer(world, cli, sandbox_env):
    code, evs = drift(cli, "--target", "platform")
    assert code == 3, evs
    found = by_name(evs)
    hotfix = found["hotfix"]
    assert (hotfix["class"], hotfix["kind"], hotfix["writer"], hotfix["manager"], hotfix["namespace"]) == (
        "unmanaged", "Deployment", "kubectl (by hand)", "kubectl-create", "prod") and hotfix["at"]
    # kubectl scale: the default manager "kubectl" on the scale subresource (what the real kubectl leaves).
    assert (found["shop-api"]["class"], found["shop-api"]["manager"]) == ("tampered", "kubectl")
    assert "spec.replicas" in found["shop-api"]["detail"] and "scale subresource" in found["shop-api"]["detail"]
    assert (found["shop-config"]["class"], found["shop-config"]["manager"]) == ("tampered", "kubectl-edit")
    assert (found["lab-worker"]["class"], found["lab-worker"]["writer"]) == ("foreign", "managed-by spinnaker-lab")
    assert "shop-web" not in found, "deployed by Spinnaker and untouched: not drift"
    assert "shop-cart" not in found, "re-applied by hand with kubectl apply: managedFields cannot tell (--audit can)"
    # Owned objects (the ReplicaSets and Pods of these Deployments), tokens and injected objects are left out.
    assert not [e for e in found.values() if e["kind"] in ("ReplicaSet", "Pod", "ServiceAccount")], found
    summary = next(e for e in evs if e["event"] == "summary")
    assert summary["tampered"] >= 2 and summary["foreign"] >= 1 and summary["unmanaged"] >= 1 and summary["errors"] == 0


def test_clean_namespace_reports_nothing_and_exits_0(world, cli, sandbox_env):
    code, evs = drift(cli, "--target", "platform", "--namespace", "dev")
    assert code == 0, evs
    assert not [e for e in evs if e["event"] == "drift"]
    text = cli("drift", "-c", EXAMPLE, "--target", "platform", "--namespace", "dev")
    assert text.exit_code == 0 and "platform/dev: clean" in text.stdout


def test_audit_names_the_principal(world, cli, sandbox_env):
    code, evs = drift(cli, "--target", "platform", "--namespace", "prod", "--audit", "--since", "1h")
    assert code == 3, evs
    found = by_name(evs)
    assert {found[n]["principal"] for n in ("hotfix", "shop-api", "shop-config")} == {ADMIN_USER}
    writes = {(e["kind"], e["name"]): e for e in evs if e["event"] == "drift" and e["class"] == "write"}
    # What managedFields cannot show: a hand apply of Spinnaker's manifest, and a deletion.
    cart, old = writes[("deployments", "shop-cart")], writes[("configmaps", "shop-old")]
    assert cart["writer"] == cart["principal"] == ADMIN_USER and cart["detail"].startswith("io.k8s.apps.v1.deployments.")
    assert old["detail"] == "io.k8s.core.v1.configmaps.delete core/v1/namespaces/prod/configmaps/shop-old"
    # Objects already reported carry their principal instead of a second finding; spinboot's own RoleBinding in
    # prod (written with the same identity by apply) is never one.
    assert ("deployments", "hotfix") not in writes and not any(k == "rolebindings" for k, _ in writes), writes


def test_cronjob_mode_reads_only_with_spinnakers_kubeconfig_and_status_counts(world, cli, sandbox_env):
    # What the CronJob runs: no Google client, no Spinnaker-cluster access, only the mounted kubeconfigs.
    code, evs = drift(cli, "--kubeconfig-dir", world["kdir"], "--target", "platform")
    assert code == 3 and by_name(evs)["hotfix"]["class"] == "unmanaged"
    r = cli("status", "-c", EXAMPLE, "--output", "json")
    st = next(e for e in events(r.stdout) if e["event"] == "status")
    assert st["drift"]["tampered"] >= 2 and st["drift"]["unmanaged"] >= 1 and not st["drift"]["errors"], st["drift"]
