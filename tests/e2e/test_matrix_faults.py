"""apply converges, with nothing made twice, while an API fails a fraction of its calls.

Each case starts from a destroyed deployment, makes one API (or several) fail a fraction of its calls with one
error, runs a fresh apply of the example, which must succeed in that one run (transient errors are retried),
checks the faults really fired, and then, with the faults gone, checks every managed thing exists once and a
further apply has nothing to do (zero mutating calls counted at the servers: invariants.assert_nothing_to_do).

Google APIs fail inside the sandbox's gRPC servers (spinboot/sandbox/go/internal/sandboxsrv/faults.go); Kubernetes
API servers and Cloud Storage through the fault-injecting proxy in front of them (cmd/fault-proxy). ``RESET``
resets the client's TCP connection; ``:after`` lets the call through and then fails its response, so the change
happened but the client does not know it (the case that makes naive retries create duplicates).

``make test`` runs a reduced set (every API at once, per family); SPINBOOT_FULL_MATRIX=1 (``make bench``) runs one
case per API and error.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest

from .invariants import EXAMPLE, assert_exactly_once, assert_nothing_to_do, run

FULL = bool(os.environ.get("SPINBOOT_FULL_MATRIX"))
RATE = 0.3

# Service -> the sandbox server that implements it, and a call a fresh apply surely makes to it. Resource Manager
# (Projects) is left out: apply calls it only for the bucket's owner check, which the sandbox skips (its Storage
# stand-in has no project numbers), so faults there could never fire.
GOOGLE = {
    "ClusterManager": ("gke", "CreateCluster"), "IAM": ("gke", "CreateServiceAccount"),
    "Publisher": ("pubsub", "GetTopic"), "Subscriber": ("pubsub", "CreateSubscription"),
    "IAMPolicy": ("pubsub", "SetIamPolicy"),
}
GRPC_CODES = ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "INTERNAL", "RESET", "UNAVAILABLE:after"]
HTTP_CODES = ["429", "500", "503", "RESET", "500:after", "RESET:after"]
KUBE = ["spinnaker", "platform", "platform-lab"]


@dataclass(frozen=True)
class Case:
    name: str
    google: tuple[tuple[str, str], ...] = ()    # (server, spec)
    kube: tuple[tuple[str, str], ...] = ()      # (cluster, spec)
    storage: str = ""


def _cases() -> list[Case]:
    out = [
        Case("every Google API, mixed gRPC errors",
             google=(("gke", f"*=UNAVAILABLE:count=1;ClusterManager/CreateCluster=RESOURCE_EXHAUSTED:count=1:after;"
                             f"*=UNAVAILABLE:rate={RATE / 2};*=RESOURCE_EXHAUSTED:rate={RATE / 2};*=RESET:rate=0.05"),
                     ("pubsub", f"*=UNAVAILABLE:count=1;Subscriber/CreateSubscription=INTERNAL:count=1:after;"
                                f"*=UNAVAILABLE:rate={RATE / 2};*=INTERNAL:rate={RATE / 2};*=RESET:rate=0.05"))),
        Case("every Kubernetes API server and Storage, mixed HTTP errors",
             kube=tuple((c, "*=429:count=1;POST=500:count=1:after;PATCH=RESET:count=1:after;"
                            "*=429:rate=0.1;*=503:rate=0.05;*=500:rate=0.05;*=RESET:rate=0.05;"
                            "POST=500:after:rate=0.2;PATCH=RESET:after:rate=0.1") for c in KUBE),
             storage="*=429:count=1;POST=503:count=1:after;"
                     "*=429:rate=0.1;*=500:rate=0.1;*=RESET:rate=0.05;POST=503:after:rate=0.3"),
    ]
    if not FULL:
        return out
    for service, (server, write) in GOOGLE.items():
        for code in GRPC_CODES:
            # The first matching call of each kind fails for sure, then a fraction of the rest.
            c, _, after = code.partition(":")
            a = ":after" if after else ""
            spec = f"{service}/*={c}:count=1{a};{service}/{write}={c}:count=1{a};{service}/*={c}:rate={RATE}{a}"
            out.append(Case(f"{service} {code}", google=((server, spec),)))
    for cluster in KUBE:
        for code in HTTP_CODES:
            out.append(Case(f"{cluster} apiserver {code}", kube=((cluster, _http_spec(code)),)))
    for code in HTTP_CODES:
        out.append(Case(f"storage {code}", storage=_http_spec(code)))
    return out


def _http_spec(code: str) -> str:
    """The first call, the first create and the first patch fail for sure, then a fraction of all calls."""
    c, _, after = code.partition(":")
    a = ":after" if after else ""
    return f"*={c}:count=1{a};POST={c}:count=1{a};PATCH={c}:count=1{a};*={c}:rate={RATE}{a}"


def _kube_proxy(live, cluster: str):
    location = "us-central1-b" if cluster == "spinnaker" else "us-central1"
    proxy = live.cluster("acme-platform", location, cluster).fault_proxy
    assert proxy is not None, "the e2e sandbox runs with fault proxies"
    return proxy


def _injected(counts: dict) -> int:
    return sum(m.get("injected", 0) for m in counts["methods"].values())


@pytest.mark.matrix
@pytest.mark.parametrize("case", _cases(), ids=lambda c: c.name)
def test_apply_converges_through_faults(case, live, sandbox_env):
    rc, _, tail = run(["destroy", "-c", str(EXAMPLE), "--yes"], sandbox_env)
    assert rc == 0, tail
    servers = {"gke": live.sb.gke, "pubsub": live.sb.pubsub}
    # The Spinnaker cluster does not exist yet: its proxy's faults are set once GKE has created it.
    pending = dict(case.kube)
    targets = [(_kube_proxy(live, c), spec) for c, spec in case.kube if c != "spinnaker"]
    if case.storage:
        targets.append((live.sb.storage_faults, case.storage))
    google = [(servers[s], spec) for s, spec in case.google]
    for handle, spec in google + targets:
        handle.reset_counts()
        handle.set_faults(spec)
    try:
        if "spinnaker" in pending:
            rc, tail = _apply_arming_spinnaker(live, sandbox_env, pending["spinnaker"])
        else:
            rc, events, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], sandbox_env)
            tail = _failures("\n".join(json.dumps(e) for e in events)) + tail
        fired = {str(getattr(h, "admin_url", h)): _injected(h.counts()) for h, _ in google + targets}
    finally:
        for handle, _ in google + targets:
            handle.clear_faults()
        if "spinnaker" in pending:
            _kube_proxy(live, "spinnaker").clear_faults()
    assert rc == 0, f"apply did not get through {case.name}:\n{tail}"
    if "spinnaker" in pending:
        fired["spinnaker"] = _injected(_kube_proxy(live, "spinnaker").counts())
    assert all(n > 0 for n in fired.values()), f"every fault source fired: {fired}"
    assert_exactly_once(live)
    assert_nothing_to_do(sandbox_env, live)


def _failures(stdout: str) -> str:
    """The failed steps' events first: a long run's tail may not hold them."""
    failed = [line for line in stdout.splitlines() if '"status": "failed"' in line]
    return "failed steps:\n" + "\n".join(failed) + "\n...\n" if failed else ""


def _apply_arming_spinnaker(live, env, spec: str) -> tuple[int, str]:
    """Run apply; as soon as the Spinnaker cluster step is done (its API server exists), arm its proxy."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "spinboot", "apply", "-c", str(EXAMPLE), "--yes", "--output",
                             "json"], env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines, armed = [], []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("{"):
            e = json.loads(line)
            if e["event"] == "step" and e.get("step") == "cluster" and e["status"] == "done":
                proxy = _kube_proxy(live, "spinnaker")
                proxy.reset_counts()
                armed.append(proxy.set_faults(spec))
    err = proc.stderr.read()
    proc.wait(timeout=600)
    assert armed, "the cluster step finished"
    return proc.returncode, _failures("".join(lines)) + "".join(lines)[-2000:] + err[-3000:]
