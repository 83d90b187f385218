"""What "converged, with no duplicates" means for the example file, checked at the sandbox's servers.

Shared by the kill-and-re-run and fault-injection matrices: after a disturbed apply and a clean re-run, each
thing spinboot manages exists exactly once, and a further apply has nothing to do, as counted by the servers
(conftest.Live: audit logs, the Google stand-ins' and the Storage proxy's counters), not by spinboot's summary.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from ..conftest import EXAMPLES

EXAMPLE = EXAMPLES / "spinboot.yaml"
TARGETS = {"platform": ["dev", "prod"], "platform-lab": ["dev", "prod"]}
SA = "serviceAccount:spinnaker@acme-platform.iam.gserviceaccount.com"


def spinboot_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "spinboot", *args, "--output", "json"]


def run(args: list[str], env: dict, timeout: float = 600) -> tuple[int, list[dict], str]:
    proc = subprocess.run(spinboot_cmd(*args), env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stdout[-3000:] + proc.stderr[-3000:]


def run_until(args: list[str], env: dict, stop, timeout: float = 600) -> list[dict]:
    """Start spinboot and SIGKILL it (no clean-up of any kind, as a lost VM would) as soon as ``stop(event)``
    is true for one of its JSON events. Returns the events it printed."""
    proc = subprocess.Popen(spinboot_cmd(*args), env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:
            if line.startswith("{"):
                seen.append(json.loads(line))
                if stop(seen[-1]):
                    break
            if time.monotonic() > deadline:
                raise AssertionError("the kill point was never reached: " + json.dumps(seen[-5:]))
        else:
            raise AssertionError("apply finished before the kill point: " + json.dumps(seen[-5:]))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    return seen


def summary(events: list[dict]) -> dict:
    return next(e for e in events if e["event"] == "summary")


def live_from_env(env: dict):
    """The servers' counters of the sandbox ``env`` points spinboot at (its endpoints file), as a ``Live``."""
    from types import SimpleNamespace

    from spinboot.sandbox.gcp import FaultAdmin

    from .conftest import Live

    ep = json.loads(Path(env["SPINBOOT_SANDBOX"]).read_text())
    return Live(SimpleNamespace(gke=FaultAdmin(ep["gke_admin"]), pubsub=FaultAdmin(ep["pubsub_admin"]),
                                storage_faults=FaultAdmin(ep["storage_admin"]),
                                clusters_dir=Path(ep["clusters_dir"])))


def assert_nothing_to_do(env: dict, live=None) -> None:
    """A further apply makes no mutating call, as the servers count them: the GKE/IAM and Pub/Sub stand-ins'
    method counters, the Storage proxy's counters and every API server's audit log (reviews and dry runs are
    questions, not changes). spinboot's own summary is only checked to agree with them."""
    live = live or live_from_env(env)
    mark = live.mark()
    rc, events, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], env)
    assert rc == 0, tail
    mutations = {server: calls for server, calls in live.mutations_since(mark).items() if calls}
    assert mutations == {}, f"a further apply still changed something, counted at the servers: {mutations}\n{tail}"
    s = summary(events)
    assert s["create"] == s["update"] == s["delete"] == 0, f"the servers saw no change but spinboot reports one:\n{tail}"


def assert_exactly_once(live) -> None:
    """Everything the example asks for exists once: no duplicate cluster, pool, binding, token or account."""
    from kubernetes import client

    cm = live.sb.gke.cluster_manager()
    clusters = [c for c in cm.list_clusters(parent="projects/acme-platform/locations/-").clusters
                if c.name == "spinnaker"]
    assert len(clusters) == 1 and len(clusters[0].node_pools) == 1, clusters
    for name, namespaces in TARGETS.items():
        api = live.api(live.cluster("acme-platform", "us-central1", name))
        rbac, core = client.RbacAuthorizationV1Api(api), client.CoreV1Api(api)
        bound = sorted(rb.metadata.namespace for rb in rbac.list_role_binding_for_all_namespaces(
            label_selector="spinboot.dev/target=" + name).items)
        assert bound == namespaces, (name, bound)
        sas = [sa.metadata.name for sa in core.list_namespaced_service_account("spinnaker").items]
        assert sas.count("spinnaker") == 1
        tokens = [s for s in core.list_namespaced_secret("spinnaker").items
                  if s.type == "kubernetes.io/service-account-token"
                  and (s.metadata.annotations or {}).get("kubernetes.io/service-account.name") == "spinnaker"]
        assert len(tokens) == 1, [t.metadata.name for t in tokens]
        bindings = Counter(f"{rb.metadata.namespace}/{rb.role_ref.name}"
                           for rb in rbac.list_role_binding_for_all_namespaces().items
                           if any(s.name == "spinnaker" for s in rb.subjects or []))
        assert all(n == 1 for n in bindings.values()), bindings
    sub = live.sb.pubsub.subscriber()
    subs = [s for s in live.sb.pubsub.publisher().list_topic_subscriptions(topic="projects/acme-platform/topics/gcr")]
    # The example's subscription exactly once (other installs in the same sandbox have theirs, by other names).
    assert subs.count("projects/acme-platform/subscriptions/spinnaker-gcr") == 1, subs
    policy = sub.get_iam_policy(request={"resource": "projects/acme-platform/subscriptions/spinnaker-gcr"})
    for b in policy.bindings:
        assert len(b.members) == len(set(b.members)), b
    assert sum(SA in b.members for b in policy.bindings if b.role == "roles/pubsub.subscriber") == 1
    sp = live.cluster("acme-platform", "us-central1-b", "spinnaker")
    home = sp.dir / "pods" / "halyard" / "halyard-0"
    dc = yaml.safe_load((home / ".hal/config").read_text())["deploymentConfigurations"][0]
    accounts = [a["name"] for a in dc["providers"]["kubernetes"]["accounts"]]
    assert sorted(accounts) == ["platform", "platform-lab", "spinnaker-install"], accounts
    apps = client.AppsV1Api(live.api(sp))
    assert [s.metadata.name for s in apps.list_namespaced_stateful_set("halyard").items] == ["halyard"]


def kubeconfigs_under(root: Path) -> list[Path]:
    """Files below ``root`` that hold a kubeconfig (by content, whatever their name)."""
    out = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            try:
                head = p.read_bytes()[:65536]
            except OSError:
                continue
            if b"apiVersion: v1" in head and b"kind: Config" in head or b'"kind": "Config"' in head:
                out.append(p)
    return out
