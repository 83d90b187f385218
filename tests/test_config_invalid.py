"""Invalid files: exit 2, a message naming FILE:LINE:COL and the exact field path, nothing written."""

from __future__ import annotations

import re

import pytest

from .conftest import MINIMAL

TARGET = """targets:
  - name: platform
    gke: {project: acme-platform, location: us-central1, cluster: platform}
    namespaces: [prod]
"""
BASE = MINIMAL.split("targets:")[0]


def with_registry(body: str) -> str:
    return MINIMAL + "registries:\n" + body


# (id, file text, expected field path, expected line, text the message must contain)
CASES = [
    ("misspelt-top-key", MINIMAL + "regsitries: []\n", "regsitries", 12, "did you mean 'registries'"),
    ("misspelt-nested-key", MINIMAL.replace("location: us-central1-b}", "location: us-central1-b, releaseChanel: STABLE}"),
     "cluster.releaseChanel", 3, "did you mean 'releaseChannel'"),
    ("missing-project", MINIMAL.replace("project: acme-platform\n", ""), "project", 1, "required"),
    ("bad-project-id", MINIMAL.replace("project: acme-platform", "project: Acme_Platform"), "project", 2,
     "not a valid project ID"),
    ("project-with-google", MINIMAL.replace("project: acme-platform", "project: my-google-proj"), "project", 2, "google"),
    ("cluster-name-underscore", MINIMAL.replace("name: spinnaker,", "name: spin_naker,"), "cluster.name", 3,
     "not a valid GKE name"),
    ("cluster-name-too-long", MINIMAL.replace("name: spinnaker,", "name: " + "a" * 41 + ","), "cluster.name", 3,
     "1 to 40 characters"),
    ("bad-location", MINIMAL.replace("us-central1-b", "mars"), "cluster.location", 3, "not a valid GCP location"),
    ("release-channel", MINIMAL.replace("location: us-central1-b}", "location: us-central1-b, releaseChannel: FAST}"),
     "cluster.releaseChannel", 3, "'RAPID', 'REGULAR', 'STABLE' or 'EXTENDED'"),
    ("node-count-zero", MINIMAL.replace("location: us-central1-b}", "location: us-central1-b, nodePool: {nodeCount: 0}}"),
     "cluster.nodePool.nodeCount", 3, "1 to 100"),
    ("node-count-string", MINIMAL.replace("location: us-central1-b}", "location: us-central1-b, nodePool: {nodeCount: two}}"),
     "cluster.nodePool.nodeCount", 3, "not a whole number"),
    ("cidr-host-bits", MINIMAL.replace("location: us-central1-b}",
                                       "location: us-central1-b, authorizedNetworks: [{name: o, cidr: 10.0.0.1/8}]}"),
     "cluster.authorizedNetworks[0].cidr", 3, "host bits set"),
    ("cidr-garbage", MINIMAL.replace("location: us-central1-b}",
                                     "location: us-central1-b, authorizedNetworks: [{name: o, cidr: office}]}"),
     "cluster.authorizedNetworks[0].cidr", 3, "not a valid CIDR"),
    ("private-without-master-cidr", MINIMAL.replace("location: us-central1-b}", "location: us-central1-b, privateNodes: true}"),
     "cluster.privateNodes", 3, "masterIpv4CidrBlock"),
    ("autoscaling-inverted", MINIMAL.replace("location: us-central1-b}",
                                             "location: us-central1-b, nodePool: {autoscaling: {minNodeCount: 5, maxNodeCount: 2}}}"),
     "cluster.nodePool.autoscaling", 3, "minNodeCount <= maxNodeCount"),
    ("version-float", MINIMAL.replace("version: 2026.2.3", "version: 1.30"), "spinnaker.version", 5, 'quote it: "1.30"'),
    ("version-nonexistent-1x", MINIMAL.replace("version: 2026.2.3", "version: 1.40.0"), "spinnaker.version", 5,
     "calendar versions"),
    ("version-garbage", MINIMAL.replace("version: 2026.2.3", "version: latest"), "spinnaker.version", 5,
     "not a Spinnaker version"),
    ("bucket-uppercase", MINIMAL.replace("bucket: acme-spinnaker", "bucket: Acme"), "spinnaker.storage.bucket", 6,
     "not a valid bucket name"),
    ("bucket-goog", MINIMAL.replace("bucket: acme-spinnaker", "bucket: goog-bucket"), "spinnaker.storage.bucket", 6,
     "goog"),
    ("service-account-short", MINIMAL.replace("version: 2026.2.3", "version: 2026.2.3\n  serviceAccount: spin"),
     "spinnaker.serviceAccount", 6, "6 to 30 characters"),
    ("ui-url-not-url", MINIMAL.replace("uiUrl: https://spinnaker.acme.dev", "uiUrl: spinnaker.acme.dev"),
     "spinnaker.exposure.uiUrl", 7, "not a URL"),
    ("iap-bad-audience", MINIMAL.replace("apiUrl: https://spinnaker.acme.dev/gate}",
                                         "apiUrl: https://spinnaker.acme.dev/gate, iap: {audience: my-app}}"),
     "spinnaker.exposure.iap.audience", 7, "/projects/"),
    ("iap-without-lb", MINIMAL.replace("apiUrl: https://spinnaker.acme.dev/gate}",
                                       "apiUrl: https://spinnaker.acme.dev/gate, behindGoogleLoadBalancer: false, "
                                       "iap: {audience: /projects/1/global/backendServices/2}}"),
     "spinnaker.exposure.iap", 7, "behindGoogleLoadBalancer"),
    ("kube-system", MINIMAL.replace("namespaces: [prod]", "namespaces: [prod, kube-system]"),
     "targets[0].namespaces[1]", 11, "system namespace"),
    ("gke-prefix", MINIMAL.replace("namespaces: [prod]", "namespaces: [gke-managed-system]"),
     "targets[0].namespaces[0]", 11, "dangerouslyAllowSystemNamespaces"),
    ("duplicate-namespace", MINIMAL.replace("namespaces: [prod]", "namespaces: [prod, dev, prod]"),
     "targets[0].namespaces[2]", 11, "listed twice"),
    ("empty-namespaces", MINIMAL.replace("namespaces: [prod]", "namespaces: []"), "targets[0].namespaces", 11,
     "at least 1 item"),
    ("namespace-uppercase", MINIMAL.replace("namespaces: [prod]", "namespaces: [Prod]"), "targets[0].namespaces[0]", 11,
     "not a valid Kubernetes name"),
    ("target-both-access", MINIMAL.replace("namespaces: [prod]", "namespaces: [prod]\n    kubeconfig: {path: k, context: c}"),
     "targets[0]", 9, "exactly one of gke or kubeconfig"),
    ("target-no-access", MINIMAL.replace("    gke: {project: acme-platform, location: us-central1, cluster: platform}\n", ""),
     "targets[0]", 9, "exactly one of gke or kubeconfig"),
    ("system-sa-namespace", MINIMAL.replace("namespaces: [prod]", "namespaces: [prod]\n    serviceAccount: {namespace: kube-system}"),
     "targets[0].serviceAccount.namespace", 12, "system namespace"),
    ("duplicate-account", MINIMAL + """  - name: platform
    gke: {project: acme-platform, location: us-central1, cluster: other}
    namespaces: [prod]
""", "targets[1].name", 12, "already used by targets[0].name"),
    ("account-clashes-registry", with_registry("""  - name: platform
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
"""), "registries[0].name", 13, "already used by targets[0].name"),
    ("same-cluster-twice", MINIMAL + """  - name: platform-b
    gke: {project: acme-platform, location: us-central1, cluster: platform}
    namespaces: [dev]
""", "targets[1].gke", 13, "same cluster as targets[0]"),
    ("ack-deadline-high", with_registry("""  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
    subscription: {ackDeadlineSeconds: 900}
"""), "registries[0].subscription.ackDeadlineSeconds", 17, "10 to 600"),
    ("ack-deadline-low", with_registry("""  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
    subscription: {ackDeadlineSeconds: 5}
"""), "registries[0].subscription.ackDeadlineSeconds", 17, "10 to 600"),
    ("cache-interval-low", with_registry("""  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
    cacheIntervalSeconds: 10
"""), "registries[0].cacheIntervalSeconds", 17, "30 to 86400"),
    ("registry-without-repositories", with_registry("""  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
"""), "registries[0].repositories", 13, "listed explicitly"),
    ("subscription-name-goog", with_registry("""  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
    subscription: {name: goog-sub}
"""), "registries[0].subscription.name", 17, "not a valid Pub/Sub name"),
    ("duplicate-key", MINIMAL + "project: other-project\n", "project", 12, "duplicate key 'project', first given on line 2"),
    ("targets-not-list", BASE + "targets: platform\n", "targets", 8, "expected a list"),
    ("cluster-not-mapping", MINIMAL.replace("cluster: {name: spinnaker, location: us-central1-b}", "cluster: spinnaker"),
     "cluster", 3, "expected a mapping"),
    ("label-uppercase", MINIMAL.replace("location: us-central1-b}", "location: us-central1-b, labels: {team: SRE}}"),
     "cluster.labels.team", 3, "not a valid label value"),
    # Issue 10: what Spinnaker could not live with is refused before anything is touched.
    ("api-url-other-path", MINIMAL.replace("apiUrl: https://spinnaker.acme.dev/gate", "apiUrl: https://spinnaker.acme.dev/api"),
     "spinnaker.exposure.apiUrl", 7, "no path but /gate"),
    ("api-url-gate-on-other-host", MINIMAL.replace("apiUrl: https://spinnaker.acme.dev/gate", "apiUrl: https://api.acme.dev/gate"),
     "spinnaker.exposure.apiUrl", 7, "only on the UI's own host"),
    ("private-nodes-no-egress", MINIMAL.replace("location: us-central1-b}", "location: us-central1-b, privateNodes: true, "
                                                "masterIpv4CidrBlock: 172.16.0.32/28}"),
     "cluster.privateNodes", 3, "cluster.egress is not set"),
    ("egress-without-private-nodes", MINIMAL.replace("location: us-central1-b}", "location: us-central1-b, egress: cloud-nat}"),
     "cluster.egress", 3, "only with privateNodes"),
    ("repository-in-other-project", with_registry("""  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme-platform/acme/tasks, acme-shared/base/python]
"""), "registries[0].repositories[1]", 16, "projects/acme-shared/topics/gcr"),
    ("artifact-registry-path-too-short", with_registry("""  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme/tasks]
"""), "registries[0].repositories[0]", 16, "PROJECT/REPOSITORY/IMAGE"),
    ("google-registry-without-project", with_registry("""  - name: images
    address: europe-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
"""), "registries[0].project", 13, "needs a subscription there"),
    ("non-google-registry-subscription", with_registry("""  - name: hub
    address: registry-1.docker.io
    repositories: [library/nginx]
    subscription: {name: hub-pushes}
"""), "registries[0].subscription", 16, "nothing publishes its pushes to Pub/Sub"),
    ("non-google-registry-project", with_registry("""  - name: hub
    project: acme-platform
    address: quay.io
    repositories: [acme/tasks]
"""), "registries[0].project", 14, "not a Google registry"),
]


@pytest.mark.parametrize("case_id,text,path,line,needle", CASES, ids=[c[0] for c in CASES])
def test_invalid_file_exits_2_naming_file_line_and_field(cli, tmp_path, case_id, text, path, line, needle):
    f = tmp_path / "spinboot.yaml"
    f.write_text(text)
    result = cli("validate", "-c", f)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if re.match(re.escape(str(f)) + r":\d+:\d+: ", ln)
             and ": warning: " not in ln]
    matching = [ln for ln in lines if f": {path}: " in ln]
    assert matching, f"no problem names {path!r}:\n{result.stderr}"
    assert any(ln.startswith(f"{f}:{line}:") for ln in matching), f"expected line {line}:\n{result.stderr}"
    assert any(needle in ln for ln in matching), f"expected {needle!r}:\n{result.stderr}"
    assert "Traceback" not in result.output


def test_there_are_many_invalid_cases():
    assert len(CASES) >= 25


def test_every_problem_is_reported_at_once(cli, tmp_path):
    f = tmp_path / "spinboot.yaml"
    f.write_text(MINIMAL.replace("project: acme-platform", "project: X")
                 .replace("us-central1-b", "mars").replace("bucket: acme-spinnaker", "bucket: A"))
    result = cli("validate", "-c", f)
    assert result.exit_code == 2
    for path in ("project", "cluster.location", "spinnaker.storage.bucket"):
        assert f": {path}: " in result.stderr


@pytest.mark.parametrize("raw,needle", [
    (b"project: acme\xff\n", "not UTF-8"),
    (b"project: [unclosed\n", "not valid YAML"),
    (b"", "the file is empty"),
    (b"- a\n- b\n", "top level is a list"),
    (b"a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n", "expands to more than"),
    (b"project: !!python/object:os.system x\n", "not valid YAML"),
    (b"project: a\n---\nproject: b\n", "not valid YAML"),
])
def test_unreadable_files_exit_2(cli, tmp_path, raw, needle):
    f = tmp_path / "spinboot.yaml"
    f.write_bytes(raw)
    result = cli("validate", "-c", f)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert "Traceback" not in result.output


def test_missing_file_exits_2(cli, tmp_path):
    result = cli("validate", "-c", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_invalid_file_leaves_the_output_directory_untouched(cli, tmp_path):
    out = tmp_path / "out"
    good = tmp_path / "good.yaml"
    good.write_text(MINIMAL)
    assert cli("render", "-c", good, "-o", out).exit_code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("namespaces: [prod]", "namespaces: [kube-system]"))
    result = cli("render", "-c", bad, "-o", out)
    assert result.exit_code == 2
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    fresh = tmp_path / "fresh"
    assert cli("render", "-c", bad, "-o", fresh).exit_code == 2
    assert not fresh.exists()


def test_json_output_reports_problems_as_events(cli, tmp_path):
    import json

    f = tmp_path / "spinboot.yaml"
    f.write_text(MINIMAL + "regsitries: []\n")
    result = cli("validate", "-c", f, "--output", "json")
    assert result.exit_code == 2
    events = [json.loads(line) for line in result.stdout.splitlines()]
    problem = next(e for e in events if e["event"] == "problem")
    assert problem["path"] == "regsitries" and problem["line"] == 12 and problem["file"] == str(f)
    assert events[-1]["event"] == "invalid"


@pytest.mark.parametrize("change,path,needle", [
    (("location: us-central1-b}", "location: us-central1-b, nodePool: {nodeCount: \"2\"}}"),
     "cluster.nodePool.nodeCount", "is text, not a whole number"),
    (("location: us-central1-b}", "location: us-central1-b, node_pool: {nodeCount: 2}}"),
     "cluster.node_pool", "did you mean 'nodePool'"),
    (("uiUrl: https://spinnaker.acme.dev", "uiUrl: https://spinnaker.acme.dev:99999"),
     "spinnaker.exposure.uiUrl", "port 1 to 65535"),
    (("version: 2026.2.3", "version: 2026.2.3\n  clouddriver: {sizing: {requestsMemory: 16Gi, limitsMemory: 1Gi}}"),
     "spinnaker.clouddriver.sizing", "requests memory 16Gi is more than limits memory 1Gi"),
])
def test_review_findings_stay_fixed(cli, tmp_path, change, path, needle):
    f = tmp_path / "spinboot.yaml"
    f.write_text(MINIMAL.replace(*change))
    result = cli("validate", "-c", f)
    assert result.exit_code == 2, result.output
    assert any(f": {path}: " in ln and needle in ln for ln in result.stderr.splitlines()), result.stderr
