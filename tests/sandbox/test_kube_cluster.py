"""The sandbox's Kubernetes control planes behave like real clusters where spinboot depends on it:
RBAC is enforced, the token controller fills ServiceAccount token Secrets, pods reach Running on kwok nodes
and ``exec`` runs a local command, and stopping a cluster leaves no process behind."""

from __future__ import annotations

import base64
import json
import os
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from spinboot.sandbox.kube import KubeCluster, exec_in_pod, start_clusters

METRICS = Path(os.environ.get("SPINBOOT_SANDBOX_METRICS", "/tmp/spinboot-sandbox-metrics.json"))


def _eventually(fn, timeout=30.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = fn()
            if result:
                return result
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def _namespace(core: client.CoreV1Api, name: str) -> str:
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as e:
        if e.status != 409:
            raise
    return name


def _sa_token_secret(core: client.CoreV1Api, ns: str, sa: str) -> client.V1Secret:
    core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa)))
    core.create_namespaced_secret(ns, client.V1Secret(
        metadata=client.V1ObjectMeta(name=f"{sa}-token", annotations={"kubernetes.io/service-account.name": sa}),
        type="kubernetes.io/service-account-token",
    ))
    return _eventually(
        lambda: (s := core.read_namespaced_secret(f"{sa}-token", ns)).data and "token" in s.data and s, timeout=30
    )


def test_service_account_token_secret_is_filled(kube_cluster, admin_api):
    core = client.CoreV1Api(admin_api)
    ns = _namespace(core, "token-test")
    secret = _sa_token_secret(core, ns, "deployer")
    assert base64.b64decode(secret.data["ca.crt"]).decode() == kube_cluster.ca_pem
    assert base64.b64decode(secret.data["namespace"]).decode() == ns
    token = base64.b64decode(secret.data["token"]).decode()
    assert token.count(".") == 2  # a signed JWT


def test_rbac_forbids_until_rolebinding(kube_cluster, admin_api):
    core = client.CoreV1Api(admin_api)
    rbac = client.RbacAuthorizationV1Api(admin_api)
    ns = _namespace(core, "rbac-test")
    token = base64.b64decode(_sa_token_secret(core, ns, "reader").data["token"]).decode()

    cfg = kube_cluster.admin_credentials.configuration()
    cfg.api_key = {"authorization": f"Bearer {token}"}
    as_reader = client.CoreV1Api(client.ApiClient(cfg))

    with pytest.raises(ApiException) as denied:
        as_reader.list_namespaced_pod(ns)
    assert denied.value.status == 403
    assert "system:serviceaccount:rbac-test:reader" in denied.value.body

    rbac.create_namespaced_role(ns, client.V1Role(
        metadata=client.V1ObjectMeta(name="pod-reader"),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])],
    ))
    rbac.create_namespaced_role_binding(ns, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="reader-pods"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=ns)],
    ))
    _eventually(lambda: as_reader.list_namespaced_pod(ns) is not None, timeout=10)
    # Still only that namespace.
    with pytest.raises(ApiException) as other:
        as_reader.list_namespaced_pod("default")
    assert other.value.status == 403


def test_pod_runs_on_kwok_node_and_exec_runs_local_process(kube_cluster, admin_api, tmp_path):
    core = client.CoreV1Api(admin_api)
    ns = _namespace(core, "spinnaker")
    core.create_namespaced_pod(ns, client.V1Pod(
        metadata=client.V1ObjectMeta(name="halyard-0", labels={"app": "halyard"}),
        spec=client.V1PodSpec(containers=[client.V1Container(
            name="halyard", image="us-docker.pkg.dev/spinnaker-community/docker/halyard:stable",
            resources=client.V1ResourceRequirements(requests={"cpu": "1", "memory": "2Gi"}),
        )]),
    ))
    pod = _eventually(lambda: (p := core.read_namespaced_pod("halyard-0", ns)).status.phase == "Running" and p)
    assert pod.spec.node_name.startswith("kwok-node-")

    # A local stand-in for `hal`, reached through PATH from the exec rule.
    bindir, home, work = tmp_path / "bin", tmp_path / "home", tmp_path / "work"
    for d in (bindir, home, work):
        d.mkdir()
    hal = bindir / "hal"
    hal.write_text('#!/bin/sh\necho "hal $*"\necho "HOME=$HOME"\necho "KUBECONFIG=$KUBECONFIG"\necho "PWD=$(pwd)"\n'
                   'if [ "$1" = fail ]; then echo "boom" >&2; exit 3; fi\n')
    hal.chmod(0o755)
    rule = kube_cluster.add_exec(
        ns, "halyard-0", workdir=work, commands={"hal": hal},
        env={"HOME": str(home), "PATH": f"{bindir}:/usr/bin:/bin",
             "KUBECONFIG": str(kube_cluster.admin_kubeconfig_path)},
    )
    assert rule

    # kwok learns about the rule through a watch: allow a moment.
    res = _eventually(lambda: exec_in_pod(core, ns, "halyard-0", ["hal", "version", "list"]), timeout=15)
    assert res.returncode == 0, res
    lines = res.stdout.splitlines()
    assert lines[0] == "hal version list"
    assert f"HOME={home}" in lines
    assert f"KUBECONFIG={kube_cluster.admin_kubeconfig_path}" in lines
    assert f"PWD={work}" in lines

    failed = exec_in_pod(core, ns, "halyard-0", ["hal", "fail"])
    assert failed.returncode == 3
    assert "hal fail" in failed.stdout
    assert "boom" in failed.stderr


def test_admin_credentials_are_private(kube_cluster):
    creds = kube_cluster.admin_credentials
    for p in (kube_cluster.admin_kubeconfig_path, creds.key_file, creds.ca_file.with_name("admin.token")):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    # And the kubeconfig works for a client built the usual way.
    from kubernetes import config as kconfig

    api = kconfig.new_client_from_config(str(kube_cluster.admin_kubeconfig_path))
    assert client.VersionApi(api).get_code().git_version == "v1.36.3"


def _record(key: str, value) -> None:
    data = json.loads(METRICS.read_text()) if METRICS.exists() else {}
    data[key] = value
    METRICS.write_text(json.dumps(data, indent=2) + "\n")


def test_three_clusters_start_concurrently_and_stop_without_leftovers(sandbox_binaries, sandbox_state_dir):
    t0 = time.monotonic()
    clusters = start_clusters(["alpha", "beta", "gamma"], sandbox_state_dir)
    elapsed = time.monotonic() - t0
    try:
        assert len({c.endpoint for c in clusters}) == 3
        time.sleep(5)  # let controllers settle before sampling memory
        rss = {c.name: c.rss_bytes() for c in clusters}
        pids = [pid for c in clusters for pid in c.alive_pids()]
        assert len(pids) >= 15
    finally:
        for c in clusters:
            c.stop()
    _record("three_clusters_warm_start_seconds", round(elapsed, 2))
    _record("per_cluster_start_seconds", {c.name: c.started_seconds for c in clusters})
    _record("rss_mib", {n: {p: round(b / 2**20) for p, b in r.items()} | {"total": round(sum(r.values()) / 2**20)}
                        for n, r in rss.items()})
    for c in clusters:
        assert c.alive_pids() == []
    still = [pid for pid in pids if _running(pid)]
    assert still == [], f"processes survived stop: {still}"
    assert elapsed < 45, f"three clusters took {elapsed:.1f} s"


def test_provision_cli_detaches_and_deprovision_reaps(sandbox_binaries, sandbox_state_dir):
    args = [sys.executable, "-m", "spinboot.sandbox.kube"]
    common = ["--state-dir", str(sandbox_state_dir), "--name", "provisioned"]
    try:
        out = subprocess.run([*args, "provision", *common], capture_output=True, text=True, timeout=180, check=True)
        info = json.loads(out.stdout.strip().splitlines()[-1])
        assert info["endpoint"].startswith("https://127.0.0.1:")
        # The caller has exited; the cluster still answers, with the CA it printed.
        ctx = ssl.create_default_context(cadata=info["ca_pem"])
        ctx.load_cert_chain(*_client_pair(Path(info["admin_kubeconfig"]), sandbox_state_dir))
        with urllib.request.urlopen(info["endpoint"] + "/readyz", context=ctx, timeout=5) as r:
            assert r.status == 200
        # provision is idempotent while the cluster runs.
        again = subprocess.run([*args, "provision", *common], capture_output=True, text=True, timeout=60, check=True)
        assert json.loads(again.stdout.strip().splitlines()[-1])["endpoint"] == info["endpoint"]
        pids = KubeCluster.attach("provisioned", sandbox_state_dir).alive_pids()
        assert len(pids) == 5
    finally:
        subprocess.run([*args, "deprovision", *common], timeout=60, check=True)
    assert KubeCluster.attach("provisioned", sandbox_state_dir).alive_pids() == []
    # They were re-parented to init when provision exited; init reaps them a moment later.
    assert [p for p in pids if _running(p)] == []


def _running(pid: int) -> bool:
    """True for a live process; a zombie waiting for init to reap it is dead already."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _client_pair(kubeconfig: Path, tmp: Path) -> tuple[str, str]:
    import yaml

    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
    crt, key = tmp / "cli-client.crt", tmp / "cli-client.key"
    crt.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    return str(crt), str(key)
