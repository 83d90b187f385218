"""Security properties checked at the sandbox, independently of spinboot's own checks.

- The RBAC proof across all targets: the test asks each target's API server itself (SubjectAccessReview, as the
  cluster admin) what Spinnaker's account may do, for every rule in rbac/rules.yaml, in every namespace.
- No secret value anywhere it could leak: every output stream and JSON event of every command, every file
  spinboot left on the workstation (its working and temporary directories), every rendered review file, and every
  file in the Halyard pod other than the credential files themselves. The secrets scanned for are the ones the
  sandbox really issued: its Google access token, each target's service-account token, and the tokens inside the
  minted kubeconfigs, raw and base64-encoded.
- Credential files are 0600, and in the Halyard pod kubeconfigs live only under ~/.hal.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import ROOT
from .invariants import EXAMPLE, TARGETS, kubeconfigs_under, run

SA_USER = "system:serviceaccount:spinnaker:spinnaker"


@pytest.fixture(scope="module")
def applied(live, sandbox):
    env = sandbox.environ()
    rc, _, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], env)
    assert rc == 0, tail
    return env


def _target_api(live, name):
    return live.api(live.cluster("acme-platform", "us-central1", name))


def _allowed(authz, namespace: str | None, group: str, resource: str, verb: str) -> bool:
    from kubernetes import client

    res, _, sub = resource.partition("/")
    attrs = client.V1ResourceAttributes(group=group, resource=res, subresource=sub or None, verb=verb,
                                        namespace=namespace)
    review = authz.create_subject_access_review(client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(user=SA_USER, groups=["system:serviceaccounts",
                                                                     "system:serviceaccounts:spinnaker",
                                                                     "system:authenticated"],
                                              resource_attributes=attrs)))
    return bool(review.status.allowed)


def test_rbac_proof_across_all_targets(applied, live):
    from kubernetes import client

    rc, events, tail = run(["rbac", "apply", "-c", str(EXAMPLE), "--reprove"], applied)
    assert rc == 0, tail
    proofs = {e["step"]: e for e in events if e["event"] == "proof"}
    assert set(proofs) == {f"rbac:{t}" for t in TARGETS}, "spinboot proved every target"
    assert all(e.get("decision") == "proved" and e["checks"] for e in proofs.values()), \
        "--reprove asks the reviews even when the fingerprint is unchanged"

    rules = yaml.safe_load((ROOT / "rbac" / "rules.yaml").read_text())
    for target, allowed_ns in TARGETS.items():
        api = _target_api(live, target)
        authz = client.AuthorizationV1Api(api)
        namespaces = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
        assert set(allowed_ns) < set(namespaces)
        wrong, checked = [], 0
        for ns in namespaces:
            for rule in rules["deploy"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            checked += 1
                            if _allowed(authz, ns, group, resource, verb) != (ns in allowed_ns):
                                wrong.append(f"{verb} {resource} in {ns}")
            # Never more than the rules: no RBAC escalation, no impersonation, no service account tokens.
            for group, resource, verb in (("rbac.authorization.k8s.io", "rolebindings", "create"),
                                          ("rbac.authorization.k8s.io", "roles", "escalate"),
                                          ("", "serviceaccounts", "impersonate"),
                                          ("", "serviceaccounts/token", "create")):
                if _allowed(authz, ns, group, resource, verb):
                    wrong.append(f"{verb} {resource} in {ns}")
        # Nothing cluster-wide: with a namespace list clouddriver never reads namespaces (rbac/rules.yaml).
        for group, resource, verb in (("", "secrets", "list"), ("", "nodes", "get"), ("", "namespaces", "create"),
                                      ("", "namespaces", "list"), ("", "namespaces", "get"),
                                      ("rbac.authorization.k8s.io", "clusterrolebindings", "create"),
                                      ("apps", "deployments", "create")):
            if _allowed(authz, None, group, resource, verb):
                wrong.append(f"cluster-wide {verb} {resource} allowed")
        assert not wrong, f"{target}: {wrong}"
        assert checked > 100 * len(namespaces) // 2


def _issued_secrets(live) -> list[str]:
    """Every credential the sandbox issued that spinboot handled."""
    from kubernetes import client

    secrets = [live.sb.token]
    for target in TARGETS:
        data = client.CoreV1Api(_target_api(live, target)).read_namespaced_secret("spinnaker-token", "spinnaker").data
        secrets.append(base64.b64decode(data["token"]).decode())
    home = live.cluster("acme-platform", "us-central1-b", "spinnaker").dir / "pods" / "halyard" / "halyard-0"
    for kc in (home / ".hal/spinboot/kubeconfigs").glob("*.kubeconfig"):
        for user in yaml.safe_load(kc.read_text())["users"]:
            if user["user"].get("token"):
                secrets.append(user["user"]["token"])
    secrets = sorted(set(secrets))
    assert len(secrets) >= 1 + len(TARGETS)
    return secrets


def _forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.b64encode(raw).rstrip(b"="), raw[: max(16, len(raw) // 2)]]


def _leaks(blob: bytes, secrets: list[str]) -> list[str]:
    return [f"{s[:4]}…({len(s)} chars)" for s in secrets if any(f in blob for f in _forms(s))]


def _files(root: Path, skip: Path | None = None):
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink() and not (skip and p.is_relative_to(skip)):
            yield p


def test_no_secret_in_any_output_log_file_review_file_or_event(applied, live, tmp_path):
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    changed = work / "spinboot.yaml"
    changed.write_text(EXAMPLE.read_text().replace("ackDeadlineSeconds: 60", "ackDeadlineSeconds: 75"))
    env = {**os.environ, **applied, "TMPDIR": str(tmp), "COLUMNS": "200"}
    commands = [
        ["apply", "-c", str(changed), "--yes"],                        # acts, in text (log) form
        ["apply", "-c", str(changed), "--yes", "--output", "json"],   # JSON events
        ["apply", "-c", str(EXAMPLE), "--yes", "--output", "json"],
        ["plan", "-c", str(EXAMPLE)],
        ["plan", "-c", str(EXAMPLE), "--output", "json"],
        ["rbac", "apply", "-c", str(EXAMPLE), "--output", "json"],
        ["halyard", "apply", "-c", str(EXAMPLE), "--force"],           # copies kubeconfigs, runs configure.sh
        ["status", "-c", str(EXAMPLE)],
        ["status", "-c", str(EXAMPLE), "--output", "json"],
        ["doctor", "-c", str(EXAMPLE), "--output", "json"],
        ["render", "-c", str(EXAMPLE), "-d", str(work / "review")],
    ]
    streams = []
    for args in commands:
        proc = subprocess.run([sys.executable, "-m", "spinboot", *args], env=env, cwd=work, capture_output=True)
        assert proc.returncode in (0, 1), (args, proc.stdout[-2000:], proc.stderr[-2000:])
        streams.append((" ".join(args[:2]), proc.stdout + proc.stderr))
    secrets = _issued_secrets(live)
    assert all(_leaks(b"x" + base64.b64encode(s.encode()) + b"x", [s]) for s in secrets), "the scan finds them"

    found = []
    for what, blob in streams:
        found += [f"output of {what}: {leak}" for leak in _leaks(blob, secrets)]
    for root in (work, tmp):  # whatever spinboot left on the workstation: review files, temporary files
        for p in _files(root):
            found += [f"{p}: {leak}" for leak in _leaks(p.read_bytes(), secrets)]
    assert any((work / "review").rglob("configure.sh")), "the review render happened"
    home = live.cluster("acme-platform", "us-central1-b", "spinnaker").dir / "pods" / "halyard" / "halyard-0"
    creds = home / ".hal/spinboot/kubeconfigs"
    for p in _files(home, skip=creds):  # Halyard's config, spinboot's records and logs in the pod
        found += [f"{p}: {leak}" for leak in _leaks(p.read_bytes(), secrets)]
    assert not found, found


def test_credential_files_are_private_and_only_under_hal(applied, live):
    home = live.cluster("acme-platform", "us-central1-b", "spinnaker").dir / "pods" / "halyard" / "halyard-0"
    kubeconfigs = kubeconfigs_under(home)
    assert len(kubeconfigs) >= len(TARGETS)
    outside = [str(p) for p in kubeconfigs if not p.is_relative_to(home / ".hal")]
    assert not outside, f"kubeconfigs outside ~/.hal in the Halyard pod: {outside}"
    loose = [f"{p}: {oct(stat.S_IMODE(p.stat().st_mode))}" for p in kubeconfigs if stat.S_IMODE(p.stat().st_mode) != 0o600]
    assert not loose, loose
    assert stat.S_IMODE((home / ".hal/spinboot/kubeconfigs").stat().st_mode) & 0o077 == 0


def test_halyard_pod_mounts_no_kubeconfig_outside_hal(applied, live):
    """The pod's own spec: ~/.hal is its volume; the only other mounts are read-only token Secrets the file names
    (never the Secret that holds the minted kubeconfigs, which exists for restore)."""
    from kubernetes import client

    api = live.api(live.cluster("acme-platform", "us-central1-b", "spinnaker"))
    sts = client.AppsV1Api(api).read_namespaced_stateful_set("halyard", "halyard")
    pod = sts.spec.template.spec
    secret_volumes = {v.name: v.secret.secret_name for v in pod.volumes or [] if v.secret}
    assert "spinboot-target-kubeconfigs" not in secret_volumes.values()
    for c in pod.containers:
        for m in c.volume_mounts or []:
            if m.name in secret_volumes:
                assert m.read_only and m.mount_path.startswith("/home/spinnaker/secrets/"), m
            else:
                assert m.mount_path == "/home/spinnaker/.hal", m
