"""`hal deploy apply` of the stand-in against a real API server with RBAC: it deploys Spinnaker's services
through the deploy account's credentials, and fails with the server's message when those may not."""

from __future__ import annotations

import io
import shlex

import yaml
from kubernetes import client

from spinboot.kube.targets import mint_kubeconfig
from spinboot.sandbox.hal.cli import main

K8S = "config provider kubernetes account"


def hal(home, line: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(shlex.split(line), home=home, stdin=io.StringIO(""), stdout=out, stderr=err)
    return code, out.getvalue() + err.getvalue()


def configure(home, kubeconfig, namespace: str) -> None:
    for line in ["config version edit --version 2026.2.3",
                 f"{K8S} add spinnaker --kubeconfig-file {kubeconfig} --context sandbox",
                 f"config deploy edit --type distributed --account-name spinnaker --location {namespace}",
                 "config deploy component-sizing clouddriver edit --container-limits-memory 12Gi"]:
        code, text = hal(home, line)
        assert code == 0, (line, text)


def token_kubeconfig(kube_cluster, admin_api, namespace: str, sa: str, tmp_path) -> str:
    core = client.CoreV1Api(admin_api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": sa}})
    req = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))
    token = core.create_namespaced_service_account_token(sa, namespace, req).status.token
    path = tmp_path / f"{sa}.kubeconfig"
    doc = yaml.safe_load(mint_kubeconfig("sandbox", kube_cluster.endpoint, kube_cluster.ca_pem, token))
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_deploy_apply_creates_spinnaker_services(kube_cluster, admin_api, tmp_path):
    ns = "hal-deploy-ok"
    client.CoreV1Api(admin_api).create_namespace({"metadata": {"name": ns}})
    kc = tmp_path / "admin.kubeconfig"
    kc.write_bytes(mint_kubeconfig("sandbox", kube_cluster.endpoint, kube_cluster.ca_pem,
                                   kube_cluster.admin_credentials.token))
    configure(tmp_path, kc, ns)
    code, text = hal(tmp_path, "deploy apply --service-names gate,clouddriver")
    assert code == 0, text
    apps = client.AppsV1Api(admin_api)
    names = sorted(d.metadata.name for d in apps.list_namespaced_deployment(ns).items)
    assert names == ["spin-clouddriver", "spin-gate"]
    cd = apps.read_namespaced_deployment("spin-clouddriver", ns)
    assert cd.spec.template.spec.containers[0].image == "ghcr.io/spinnaker/clouddriver:2026.2.3"
    assert cd.spec.template.spec.containers[0].resources.limits == {"memory": "12Gi"}
    assert any(m.manager == "halyard" for m in cd.metadata.managed_fields)


def test_deploy_apply_without_rights_fails_with_the_servers_message(kube_cluster, admin_api, tmp_path):
    ns = "hal-deploy-denied"
    client.CoreV1Api(admin_api).create_namespace({"metadata": {"name": ns}})
    kc = token_kubeconfig(kube_cluster, admin_api, ns, "nobody", tmp_path)
    configure(tmp_path, kc, ns)
    code, text = hal(tmp_path, "deploy apply")
    assert code != 0
    assert "403" in text or "forbidden" in text.lower()
    assert client.AppsV1Api(admin_api).list_namespaced_deployment(ns).items == []
