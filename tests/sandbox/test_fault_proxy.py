"""The fault-injecting proxy (spinboot/sandbox/go/cmd/fault-proxy, spinboot/sandbox/faultproxy.py) in front of a
real sandbox API server: clients cannot tell it from the API server (lists, server-side apply, watches, exec),
injected 429/500/503 answers and connection resets reach the client as such and are counted, ``:after`` really
performs the write upstream, and spinboot's own Kubernetes client converges through all of it. Also: the
Storage stand-in behind its proxy, and how a Sandbox wires the proxies in."""

from __future__ import annotations

import errno
import http.client
import json
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from spinboot.sandbox import gcp, kube
from spinboot.sandbox.faultproxy import FaultProxy, ProxyAdmin
from spinboot.sandbox.kube import KubeCluster, exec_in_pod

NS = "faults"


def _eventually(fn, timeout=20.0, interval=0.1):
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


@pytest.fixture(scope="module")
def go_binaries():
    return gcp.ensure_binaries()


@pytest.fixture(scope="module")
def cluster(sandbox_binaries, go_binaries, sandbox_state_dir):
    c = KubeCluster("faulty", sandbox_state_dir, fault_proxy=True).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture()
def proxy(cluster) -> ProxyAdmin:
    p = cluster.fault_proxy
    p.clear_faults()
    p.reset_counts()
    yield p
    p.clear_faults()


def _config(cluster, host: str) -> client.Configuration:
    cfg = cluster.admin_credentials.configuration()
    cfg.host = host
    return cfg


@pytest.fixture(scope="module")
def via_proxy(cluster) -> client.ApiClient:
    """cluster-admin through the proxy, with the bearer token, as spinboot talks to a GKE endpoint."""
    api = client.ApiClient(_config(cluster, cluster.info()["endpoint"]))
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    except ApiException as e:
        if e.status != 409:
            raise
    return api


@pytest.fixture(scope="module")
def direct(cluster) -> client.CoreV1Api:
    """cluster-admin straight at the API server: what the tests use to see what really happened."""
    return client.CoreV1Api(client.ApiClient(cluster.admin_credentials.configuration()))


def _raw(cluster, method: str, path: str, body: dict | None = None) -> tuple[int, dict, dict]:
    """One HTTP call through the proxy with nothing in between that retries: (status, headers, JSON body)."""
    ctx = ssl.create_default_context(cadata=cluster.ca_pem)
    req = urllib.request.Request(cluster.info()["endpoint"] + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {cluster.admin_credentials.token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}")


def _cm(name: str, **data) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS}, "data": data}


def test_the_endpoint_handed_out_is_the_proxy(cluster):
    info = cluster.info()
    assert info["endpoint"] != cluster.endpoint and info["endpoint"] == cluster.fault_proxy.url
    state = json.loads((cluster.dir / "cluster.json").read_text())
    assert state["fault_proxy"] == {"url": info["endpoint"], "admin": cluster.fault_proxy.admin_url}
    assert "fault-proxy" in cluster.pids
    # The admin kubeconfig (the sandbox's own view) still goes straight to the API server.
    assert cluster.endpoint in cluster.admin_kubeconfig_path.read_text()
    # A fresh handle from cluster.json finds the same proxy.
    again = KubeCluster.attach(cluster.name, cluster.state_dir).fault_proxy
    assert again.admin_url == cluster.fault_proxy.admin_url


def test_list_and_server_side_apply_pass_through_and_are_counted(cluster, via_proxy, direct, proxy):
    from spinboot.kube.resources import Kube

    names = {n.metadata.name for n in client.CoreV1Api(via_proxy).list_namespace().items}
    assert {"default", "kube-system", NS} <= names
    k = Kube(via_proxy, "faulty")
    assert k.apply(_cm("ssa", a="1")).action == "create"
    assert k.apply(_cm("ssa", a="1")).action == "unchanged"
    assert direct.read_namespaced_config_map("ssa", NS).data == {"a": "1"}
    client.AuthorizationV1Api(via_proxy).create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": NS}}})

    methods = proxy.counts()["methods"]
    assert methods["GET namespaces"]["kind"] == "read"
    assert methods["PATCH configmaps"] == {"kind": "mutating", "calls": 1, "errors": 0, "injected": 0}
    assert methods["GET configmaps"]["calls"] == 2
    assert methods["POST selfsubjectaccessreviews"]["kind"] == "read"  # a question, not a change
    assert proxy.mutating_calls() == {"PATCH configmaps": 1}


def test_watch_streams_through(cluster, via_proxy, direct, proxy):
    core = client.CoreV1Api(via_proxy)
    seen: list[str] = []
    started = threading.Event()

    def run():
        w = watch.Watch()
        started.set()
        for ev in w.stream(core.list_namespaced_config_map, NS, timeout_seconds=15):
            seen.append(f"{ev['type']} {ev['object'].metadata.name}")
            if ev["object"].metadata.name == "watched":
                w.stop()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    started.wait()
    time.sleep(0.5)  # let the watch open
    t0 = time.monotonic()
    direct.create_namespaced_config_map(NS, _cm("watched", x="1"))
    t.join(timeout=15)
    assert "ADDED watched" in seen
    assert time.monotonic() - t0 < 5, "the event came only when the watch ended, not as it happened"
    assert proxy.counts()["methods"]["GET configmaps"]["calls"] >= 1


def test_status_faults_reach_the_client_and_never_reach_the_server(cluster, direct, proxy):
    proxy.set_faults("GET /configmaps/=429:count=1;POST /configmaps=500:count=1;DELETE=503:count=1")
    status, headers, body = _raw(cluster, "GET", f"/api/v1/namespaces/{NS}/configmaps/nope")
    assert (status, headers.get("Retry-After"), body["kind"], body["reason"]) == (429, "1", "Status", "TooManyRequests")
    assert body["details"]["retryAfterSeconds"] == 1
    status, _, body = _raw(cluster, "POST", f"/api/v1/namespaces/{NS}/configmaps", _cm("never"))
    assert (status, body["reason"], body["code"]) == (500, "InternalError", 500)
    with pytest.raises(ApiException) as e:
        direct.read_namespaced_config_map("never", NS)
    assert e.value.status == 404, "a fault without :after must not reach the API server"
    direct.create_namespaced_config_map(NS, _cm("doomed"))
    status, headers, body = _raw(cluster, "DELETE", f"/api/v1/namespaces/{NS}/configmaps/doomed")
    assert (status, headers.get("Retry-After"), body["reason"]) == (503, "1", "ServiceUnavailable")
    assert direct.read_namespaced_config_map("doomed", NS)
    # Once their counts are used up the rules retire: the same calls go through.
    assert _raw(cluster, "GET", f"/api/v1/namespaces/{NS}/configmaps/doomed")[0] == 200

    m = proxy.counts()["methods"]
    assert m["GET configmaps"] == {"kind": "read", "calls": 2, "errors": 1, "injected": 1, "codes": {"429": 1}}
    assert m["POST configmaps"]["codes"] == {"500": 1} and m["POST configmaps"]["kind"] == "mutating"
    assert m["DELETE configmaps"]["codes"] == {"503": 1}
    assert [f["fired"] for f in proxy.list_faults()] == [1, 1, 1]


def test_after_fault_performs_the_write_and_loses_the_answer(cluster, direct, proxy):
    proxy.set_faults("POST /configmaps=500:after:count=1")
    status, _, body = _raw(cluster, "POST", f"/api/v1/namespaces/{NS}/configmaps", _cm("made-once", v="1"))
    assert status == 500 and body["reason"] == "InternalError"
    assert direct.read_namespaced_config_map("made-once", NS).data == {"v": "1"}, "the write happened upstream"
    # The naive retry of a create now meets the object it made.
    status, _, body = _raw(cluster, "POST", f"/api/v1/namespaces/{NS}/configmaps", _cm("made-once", v="1"))
    assert (status, body["reason"]) == (409, "AlreadyExists")
    assert proxy.counts()["methods"]["POST configmaps"]["codes"] == {"500": 1, "409": 1}


def _https(cluster) -> http.client.HTTPSConnection:
    host, port = cluster.info()["endpoint"].removeprefix("https://").split(":")
    return http.client.HTTPSConnection(host, int(port), timeout=10,
                                       context=ssl.create_default_context(cadata=cluster.ca_pem))


def test_reset_resets_the_connection(cluster, direct, proxy):
    proxy.set_faults("GET /namespaces=RESET:count=1;POST /configmaps=RESET:after:count=1")
    auth = {"Authorization": f"Bearer {cluster.admin_credentials.token}", "Content-Type": "application/json"}
    conn = _https(cluster)
    conn.request("GET", "/api/v1/namespaces", headers=auth)
    # Over TLS, Python (OpenSSL 3) reports the RST as a ragged EOF: http.client's RemoteDisconnected, a
    # ConnectionResetError. Plain HTTP shows the errno itself (test_storage_through_its_proxy).
    with pytest.raises(ConnectionResetError):
        conn.getresponse()
    conn.close()

    conn = _https(cluster)
    conn.request("POST", f"/api/v1/namespaces/{NS}/configmaps", body=json.dumps(_cm("reset-after")), headers=auth)
    with pytest.raises(ConnectionResetError):
        conn.getresponse()
    conn.close()
    assert direct.read_namespaced_config_map("reset-after", NS), "RESET:after lets the write through"

    m = proxy.counts()["methods"]
    assert m["GET namespaces"]["codes"] == {"RESET": 1} and m["POST configmaps"]["codes"] == {"RESET": 1}


def test_spinboot_kube_client_converges_through_faults(cluster, via_proxy, direct, proxy):
    """Every kind of fault, once each, on the calls an apply makes: spinboot retries and makes the object once."""
    from spinboot.kube.resources import Kube

    proxy.set_faults("GET /configmaps/=429:count=1;GET /configmaps/=RESET:count=1;GET /configmaps/=500:count=1;"
                     "PATCH /configmaps/=503:count=1;PATCH /configmaps/=RESET:after:count=1;"
                     "PATCH /configmaps/=500:after:count=1")
    t0 = time.monotonic()
    change = Kube(via_proxy, "faulty").apply(_cm("converged", k="v"))
    assert change.action == "create"
    assert direct.read_namespaced_config_map("converged", NS).data == {"k": "v"}
    assert all(f["fired"] == 1 for f in proxy.list_faults()), proxy.list_faults()
    assert time.monotonic() - t0 < 30
    assert Kube(via_proxy, "faulty").apply(_cm("converged", k="v")).action == "unchanged"


def test_exec_is_never_faulted(cluster, via_proxy, direct, proxy, tmp_path):
    direct.create_namespaced_pod(NS, client.V1Pod(
        metadata=client.V1ObjectMeta(name="shell-0"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")])))
    _eventually(lambda: direct.read_namespaced_pod("shell-0", NS).status.phase == "Running")
    script = tmp_path / "hello"
    script.write_text("#!/bin/sh\necho \"hello $*\"\n")
    script.chmod(0o755)
    cluster.add_exec(NS, "shell-0", env={"PATH": "/usr/bin:/bin"}, commands={"hello": script})
    proxy.set_faults("*=500")  # every plain call fails; the exec upgrade goes through
    core = client.CoreV1Api(via_proxy)
    res = _eventually(lambda: exec_in_pod(core, NS, "shell-0", ["hello", "world"]), timeout=15)
    assert res.returncode == 0 and res.stdout.strip() == "hello world"
    assert _raw(cluster, "GET", f"/api/v1/namespaces/{NS}/pods/shell-0")[0] == 500
    m = proxy.counts()["methods"]
    assert m["GET pods/exec"]["injected"] == 0 and m["GET pods/exec"]["errors"] == 0


def _gone(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_stopping_the_cluster_stops_its_proxy(cluster):
    """Last of the cluster tests: it stops the module's cluster."""
    pid = cluster.pids["fault-proxy"]
    assert pid in cluster.alive_pids()
    cluster.stop()
    assert not cluster.alive_pids() and _gone(pid)


def test_fault_proxies_env_turns_proxies_on(monkeypatch, tmp_path):
    monkeypatch.setenv(kube.FAULT_PROXIES_ENV, "1")
    assert KubeCluster("a", tmp_path).with_proxy
    monkeypatch.setenv(kube.FAULT_PROXIES_ENV, "0")
    assert not KubeCluster("a", tmp_path).with_proxy
    monkeypatch.delenv(kube.FAULT_PROXIES_ENV)
    assert not KubeCluster("a", tmp_path).with_proxy
    assert KubeCluster("a", tmp_path, fault_proxy=True).with_proxy


# --- Storage -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def storage_proxy(go_binaries, tmp_path_factory):
    from spinboot.sandbox.sandbox import StorageEmulator

    d = tmp_path_factory.mktemp("gcs")
    emu = StorageEmulator(d / "storage").start()
    p = FaultProxy(d / "proxy", upstream=emu.url, error_style="google").start()
    try:
        yield p
    finally:
        p.stop()
        emu.stop()


def test_storage_through_its_proxy(storage_proxy):
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    gcs = storage.Client(project="sandbox", credentials=AnonymousCredentials(),
                         client_options={"api_endpoint": storage_proxy.url})
    storage_proxy.set_faults("GET /b/=503:count=1:msg=try later")
    with pytest.raises(exceptions.NotFound):
        gcs.get_bucket("faulty-bucket")  # the 503 is retried by the client library, then the real answer
    storage_proxy.set_faults("POST /b=429:count=1")
    with pytest.raises(exceptions.TooManyRequests) as e:
        gcs.create_bucket("faulty-bucket", retry=None)
    assert e.value.code == 429 and "sandbox fault injection" in e.value.message
    gcs.create_bucket("faulty-bucket", retry=None)
    assert gcs.get_bucket("faulty-bucket").name == "faulty-bucket"
    storage_proxy.set_faults("GET=RESET:count=1")
    host, port = storage_proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"GET /storage/v1/b/faulty-bucket HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(ConnectionResetError) as e:
            raw.recv(100)
        assert e.value.errno == errno.ECONNRESET
    m = storage_proxy.counts()["methods"]
    assert m["POST storage/v1/b"] == {"kind": "mutating", "calls": 2, "errors": 1, "injected": 1, "codes": {"429": 1}}
    assert m["GET storage/v1/b/{}"]["codes"]["503"] == 1


def test_proxy_process_is_a_sandbox_server(go_binaries, tmp_path):
    """Own session, PID file, reaped by a later run that uses the same state dir."""
    p = FaultProxy(tmp_path, upstream="http://127.0.0.1:9", error_style="kubernetes", name="orphan",
                   extra_args=["--exit-with-parent=false"]).start()
    pid = int(p.pid_path.read_text())
    assert os.getsid(pid) == pid
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(p.url + "/api/v1/namespaces", timeout=5)
    assert e.value.code == 502  # upstream down: the proxy answers as a gateway does
    p.proc = None  # forget it, as a killed test run would
    FaultProxy(tmp_path, upstream="http://127.0.0.1:9", name="orphan")._reap_stale()
    _eventually(lambda: _gone(pid), timeout=15)


def test_sandbox_wires_the_proxies_in(sandbox_binaries, go_binaries, tmp_path):
    """Sandbox(fault_proxies=True): spinboot's Storage endpoint is the proxy, a cluster made through the GKE
    stand-in is handed out at its proxy, and the proxies are sandbox processes like the others."""
    from google.cloud import container_v1

    from spinboot.gcp.gke import wait_operation
    from spinboot.sandbox.sandbox import Sandbox

    sb = Sandbox(tmp_path / "sbx", gke_latency_s=0.1, fault_proxies=True).up()
    try:
        proxy = sb.storage_faults
        assert sb.environ()["STORAGE_EMULATOR_HOST"] == proxy.url != sb.storage.url
        ep = json.loads(sb.endpoints_path.read_text())
        assert ep["storage"] == proxy.url and ep["storage_admin"] == proxy.admin_url
        env = open(f"/proc/{sb.gke.proc.pid}/environ", "rb").read().split(b"\0")
        assert f"{kube.FAULT_PROXIES_ENV}=1".encode() in env
        assert proxy.proc.pid in sb.leftovers()
        with urllib.request.urlopen(proxy.url + "/storage/v1/b?project=sandbox", timeout=5) as r:
            assert r.status == 200
        assert proxy.counts()["methods"]["GET storage/v1/b"]["calls"] == 1

        cm = sb.gke.cluster_manager()
        op = cm.create_cluster(parent="projects/acme-proj/locations/us-central1", cluster=container_v1.Cluster(
            name="c", node_pools=[container_v1.NodePool(name="pool", initial_node_count=1)]))
        wait_operation(cm, "acme-proj", "us-central1", op, "create", timeout=120)
        endpoint = cm.get_cluster(name="projects/acme-proj/locations/us-central1/clusters/c").endpoint
        faults = sb.cluster_faults("acme-proj", "us-central1", "c")
        assert f"https://{endpoint}" == faults.url != kube.KubeCluster.attach("acme-proj-us-central1-c", sb.clusters_dir).endpoint
        assert faults.counts()["totals"]["read"] == 0  # nothing but spinboot would come through it
        assert set(KubeCluster.attach("acme-proj-us-central1-c", sb.clusters_dir).alive_pids()) <= set(sb.leftovers())
    finally:
        sb.down()
    assert sb.leftovers() == []
