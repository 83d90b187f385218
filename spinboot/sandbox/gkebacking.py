"""The hooks the sandbox's GKE API server runs to back each GKE cluster with a real Kubernetes control plane.

    python -m spinboot.sandbox.gkebacking create --state-dir D --token T [--pool-dir P] --name NAME
    python -m spinboot.sandbox.gkebacking delete --state-dir D --name NAME
    python -m spinboot.sandbox.gkebacking nodes  --state-dir D --name NAME --pool POOL --count N

``create`` starts the control plane (detached), makes it accept the sandbox's Google access token as GKE accepts
Google tokens, and wires ``exec`` into Halyard's pod to the local ``hal`` stand-in with what a kubelet would give
the pod, and what GKE gives it: the metadata server of its Kubernetes service account (``GCE_METADATA_HOST``,
registered with the GKE stand-in, whose admin URL arrives as $SPINBOOT_SANDBOX_GKE_ADMIN) and where the Google
endpoints are ($SPINBOOT_SANDBOX_ENDPOINTS, passed through). It prints ``{endpoint, ca_pem, admin_kubeconfig,
api_server}``: ``api_server`` is the control plane itself, which the metadata server reads service accounts from
(``endpoint`` may be a fault proxy). ``nodes`` keeps the pool's fake nodes at the size the GKE API was asked for, labelled as GKE labels them
(``cloud.google.com/gke-nodepool``), so reading a pool's live size works as on GKE.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import kube
from .hal import launcher_dir, launcher_env

POOL_LABEL = "cloud.google.com/gke-nodepool"
HALYARD_POD = ("halyard", "halyard-0")
HALYARD_KSA = "halyard"  # the Halyard StatefulSet's service account (spinboot/render/halyard.py)
GKE_ADMIN_ENV = "SPINBOOT_SANDBOX_GKE_ADMIN"
ENDPOINTS_ENV = "SPINBOOT_SANDBOX_ENDPOINTS"


def _log(msg: str) -> None:
    print(f"[gkebacking] {msg}", file=sys.stderr, flush=True)


def create(state_dir: str, name: str, token: str) -> dict:
    cluster = kube.KubeCluster(name, state_dir, log=_log, admin_token=token)
    existing = cluster.dir / "cluster.json"
    if existing.exists():
        try:
            attached = kube.KubeCluster.attach(name, state_dir)
            if attached.alive_pids():
                cluster = attached
        except kube.ClusterError:
            pass
    if not cluster.alive_pids():
        cluster.start(detach=True)
    ns, pod = HALYARD_POD
    home = cluster.dir / "pods" / ns / pod
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": str(home),
        "PATH": f"{launcher_dir()}:/usr/local/bin:/usr/bin:/bin",
        # What a kubelet has for the pod: node credentials and the pod's identity (see sandbox/hal/deploy.py).
        "SPINBOOT_SANDBOX_KUBELET_KUBECONFIG": str(cluster.admin_kubeconfig_path),
        "SPINBOOT_SANDBOX_POD": f"{ns}/{pod}",
        # Which cluster the pod runs in (spinboot/sandbox/spinnaker/sandboxenv.py).
        "SPINBOOT_SANDBOX_CLUSTER": name,
        **launcher_env(),
    }
    if os.environ.get(ENDPOINTS_ENV):
        env[ENDPOINTS_ENV] = os.environ[ENDPOINTS_ENV]
    if os.environ.get(GKE_ADMIN_ENV):
        from .identity import register

        # GKE_METADATA node pools serve every pod the metadata server of its Kubernetes service account:
        # google-auth and Go's client read GCE_METADATA_HOST (google-auth pings GCE_METADATA_IP), gcloud
        # GCE_METADATA_ROOT.
        host = register(os.environ[GKE_ADMIN_ENV], name, ns, HALYARD_KSA)
        env.update(GCE_METADATA_HOST=host, GCE_METADATA_IP=host, GCE_METADATA_ROOT=host)
    _ensure_volumes(cluster)
    _ensure_gke_crds(cluster)
    cluster.add_exec(ns, pod, env=env, workdir=home, commands={"hal": launcher_dir() / "hal"}, name="spinboot-halyard")
    return {**cluster.info(), "api_server": cluster.endpoint}


# The custom resources every GKE cluster serves for Ingress (GKE installs their CRDs itself): BackendConfig
# (kubernetes/ingress-gce, pkg/apis/backendconfig) and ManagedCertificate (GoogleCloudPlatform/gke-managed-certs).
# Their fields are checked before apply by spinboot.render.kustomize_build.GKE_SCHEMAS; here they only need to exist.
GKE_CRDS = (("cloud.google.com", "v1", "BackendConfig", "backendconfigs"),
            ("networking.gke.io", "v1", "ManagedCertificate", "managedcertificates"))


def _ensure_gke_crds(cluster: "kube.KubeCluster") -> None:
    from kubernetes import client, config

    api = client.ApiextensionsV1Api(config.new_client_from_config(config_file=str(cluster.admin_kubeconfig_path)))
    for group, version, kind, plural in GKE_CRDS:
        body = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.{group}"},
                "spec": {"group": group, "scope": "Namespaced",
                         "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                         "versions": [{"name": version, "served": True, "storage": True,
                                       "subresources": {"status": {}},
                                       "schema": {"openAPIV3Schema": {
                                           "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
        try:
            api.create_custom_resource_definition(body)
        except client.exceptions.ApiException as exc:
            if exc.status != 409:
                raise
    deadline = time.monotonic() + 30
    names = {f"{plural}.{group}" for group, _, _, plural in GKE_CRDS}
    while time.monotonic() < deadline:
        ready = {c.metadata.name for c in api.list_custom_resource_definition().items
                 if any(cond.type == "Established" and cond.status == "True" for cond in (c.status.conditions or []))}
        if names <= ready:
            return
        time.sleep(0.2)
    raise RuntimeError(f"GKE's CRDs were not established in 30 s: {sorted(names)}")


def _ensure_volumes(cluster: "kube.KubeCluster", count: int = 4) -> None:
    """Persistent volumes for claims to bind to, as GKE's default storage class would provide (Halyard's
    StatefulSet keeps ~/.hal on one). Pre-created, since the sandbox has no disk provisioner."""
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.admin_kubeconfig_path)))
    for i in range(count):
        path = cluster.dir / "volumes" / f"pv-{i}"
        path.mkdir(parents=True, exist_ok=True)
        body = {"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": f"sandbox-pv-{i}", "labels": {"app.kubernetes.io/managed-by": "spinboot-sandbox"}},
                "spec": {"capacity": {"storage": "1Ti"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                         "persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": str(path)}}}
        try:
            core.create_persistent_volume(body)
        except client.exceptions.ApiException as exc:
            if exc.status != 409:
                raise


def delete(state_dir: str, name: str) -> None:
    """Stop the control plane and drop what lived on the cluster's disks (the Halyard pod's home, volumes), as
    deleting a GKE cluster does; logs stay for post-mortems."""
    import shutil

    try:
        kube.KubeCluster.attach(name, state_dir).stop()
    except kube.ClusterError:
        pass
    for sub in ("pods", "volumes"):
        shutil.rmtree(Path(state_dir) / name / sub, ignore_errors=True)


def set_nodes(state_dir: str, name: str, pool: str, count: int) -> int:
    """Make exactly ``count`` Ready fake nodes carry the pool's label; returns how many were added or removed."""
    from kubernetes import client, config

    c = kube.KubeCluster.attach(name, state_dir)
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(c.admin_kubeconfig_path)))
    nodes = core.list_node(label_selector=f"{POOL_LABEL}={pool}").items
    have = sorted(n.metadata.name for n in nodes)
    changed = 0
    for extra in have[count:]:
        core.delete_node(extra)
        changed += 1
    for i in range(len(have), count):
        node = f"gke-{name[-20:]}-{pool[:20]}-{i}".lower()
        body = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node, "labels": {POOL_LABEL: pool, "type": "kwok", "kubernetes.io/hostname": node,
                                                  "kubernetes.io/os": "linux"},
                         "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "status": {"allocatable": kube.NODE_RESOURCES, "capacity": kube.NODE_RESOURCES},
        }
        try:
            core.create_node(body)
        except client.exceptions.ApiException as exc:
            if exc.status != 409:
                raise
        changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spinboot.sandbox.gkebacking", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    cr = sub.add_parser("create")
    cr.add_argument("--state-dir", required=True)
    cr.add_argument("--token", default=os.environ.get("SPINBOOT_SANDBOX_TOKEN"))
    cr.add_argument("--name", required=True)
    de = sub.add_parser("delete")
    de.add_argument("--state-dir", required=True)
    de.add_argument("--name", required=True)
    no = sub.add_parser("nodes")
    no.add_argument("--state-dir", required=True)
    no.add_argument("--name", required=True)
    no.add_argument("--pool", required=True)
    no.add_argument("--count", type=int, required=True)
    args = p.parse_args(argv)
    if args.cmd == "create":
        if not args.token:
            p.error("--token (or SPINBOOT_SANDBOX_TOKEN) is required")
        print(json.dumps(create(args.state_dir, args.name, args.token)), flush=True)
    elif args.cmd == "delete":
        delete(args.state_dir, args.name)
    else:
        set_nodes(args.state_dir, args.name, args.pool, args.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
