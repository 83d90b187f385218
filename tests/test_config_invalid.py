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
    ("misspelt-top-key", MINIMAL + "regsitries: []\n", "regsitries", 13, "did you mean 'registries'"),
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
     "targets[0].namespaces[1]", 12, "system namespace"),
    ("gke-prefix", MINIMAL.replace("namespaces: [prod]", "namespaces: [gke-managed-system]"),
     "targets[0].namespaces[0]", 12, "dangerouslyAllowSystemNamespaces"),
    ("duplicate-namespace", MINIMAL.replace("namespaces: [prod]", "namespaces: [prod, dev, prod]"),
     "targets[0].namespaces[2]", 12, "listed twice"),
    ("empty-namespaces", MINIMAL.replace("namespaces: [prod]", "namespaces: []"), "targets[0].namespaces", 12,
     "at least 1 item"),
    ("namespace-uppercase", MINIMAL.replace("namespaces: [prod]", "namespaces: [Prod]"), "targets[0].namespaces[0]", 12,
     "not a valid Kubernetes name"),
    ("target-both-access", MINIMAL.replace("namespaces: [prod]", "namespaces: [prod]\n    kubeconfig: {path: k, context: c}"),
     "targets[0]", 10, "exactly one of gke or kubeconfig"),
    ("target-no-access", MINIMAL.replace("    gke: {project: acme-platform, location: us-central1, cluster: platform}\n", ""),
     "targets[0]", 10, "exactly one of gke or kubeconfig"),
    ("system-sa-namespace", MINIMAL.replace("namespaces: [prod]", "namespaces: [prod]\n    serviceAccount: {namespace: kube-system}"),
     "targets[0].serviceAccount.namespace", 13, "system namespace"),
    ("duplicate-account", MINIMAL + """  - name: platform
    gke: {project: acme-platform, location: us-central1, cluster: other}
    namespaces: [prod]
""", "targets[1].name", 13, "already used by targets[0].name"),
    ("account-clashes-registry", with_registry("""  - name: platform
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
"""), "registries[0].name", 14, "already used by targets[0].name"),
    ("same-cluster-twice", MINIMAL + """  - name: platform-b
    gke: {project: acme-platform, location: us-central1, cluster: platform}
    namespaces: [dev]
""", "targets[1].gke", 14, "same cluster as targets[0]"),
    ("ack-deadline-high", with_registry("""  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
    subscription: {ackDeadlineSeconds: 900}
"""), "registries[0].subscription.ackDeadlineSeconds", 18, "10 to 600"),
    ("ack-deadline-low", with_registry("""  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
    subscription: {ackDeadlineSeconds: 5}
"""), "registries[0].subscription.ackDeadlineSeconds", 18, "10 to 600"),
    ("cache-interval-low", with_registry("""  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
    cacheIntervalSeconds: 10
"""), "registries[0].cacheIntervalSeconds", 18, "30 to 86400"),
    ("registry-without-repositories", with_registry("""  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
"""), "registries[0].repositories", 14, "listed explicitly"),
    ("subscription-name-goog", with_registry("""  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
    subscription: {name: goog-sub}
"""), "registries[0].subscription.name", 18, "not a valid Pub/Sub name"),
    ("duplicate-key", MINIMAL + "project: other-project\n", "project", 13, "duplicate key 'project', first given on line 2"),
    ("targets-not-list", BASE + "targets: platform\n", "targets", 9, "expected a list"),
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
"""), "registries[0].repositories[1]", 17, "projects/acme-shared/topics/gcr"),
    ("artifact-registry-path-too-short", with_registry("""  - name: images
    project: acme-platform
    address: us-docker.pkg.dev
    repositories: [acme/tasks]
"""), "registries[0].repositories[0]", 17, "PROJECT/REPOSITORY/IMAGE"),
    ("google-registry-without-project", with_registry("""  - name: images
    address: europe-docker.pkg.dev
    repositories: [acme-platform/acme/tasks]
"""), "registries[0].project", 14, "needs a subscription there"),
    ("non-google-registry-subscription", with_registry("""  - name: hub
    address: registry-1.docker.io
    repositories: [library/nginx]
    subscription: {name: hub-pushes}
"""), "registries[0].subscription", 17, "nothing publishes its pushes to Pub/Sub"),
    ("non-google-registry-project", with_registry("""  - name: hub
    project: acme-platform
    address: quay.io
    repositories: [acme/tasks]
"""), "registries[0].project", 15, "not a Google registry"),
]



# Issue 11, item 8: what the consuming API would refuse is refused here, naming its documented limit.
LOC = "location: us-central1-b}"


def cluster_with(extra: str) -> str:
    return MINIMAL.replace(LOC, f"location: us-central1-b, {extra}}}")


def registry_with(address: str = "us-docker.pkg.dev", extra: str = "") -> str:
    return with_registry(f"""  - name: images
    project: acme-platform
    address: {address}
    repositories: [acme-platform/acme/tasks]
{extra}""")


LABELS_64 = "labels: {" + ", ".join(f"k{i}: v" for i in range(64)) + "}"
NETWORKS_51 = "authorizedNetworks: [" + ", ".join(f"{{name: n{i}, cidr: 10.0.{i}.0/24}}" for i in range(51)) + "]"
CASES += [
    # GCP labels (https://cloud.google.com/compute/docs/labeling-resources#requirements)
    ("labels-64", cluster_with(LABELS_64), "cluster.labels", 3, "at most 63"),
    ("label-managed-by", cluster_with("labels: {managed-by: me}"), "cluster.labels", 3, "spinboot's own label"),
    ("label-goog", cluster_with("labels: {goog-x: y}"), "cluster.labels", 3, "goog- labels are Google's own"),
    ("label-key-digit-first", cluster_with("labels: {1team: sre}"), "cluster.labels.1team", 3, "not a valid label key"),
    ("label-value-64", cluster_with("labels: {team: " + "a" * 64 + "}"), "cluster.labels.team", 3,
     "not a valid label value"),
    ("label-key-bytes", cluster_with("labels: {" + "\u65e5" * 50 + ": x}"), "cluster.labels." + "\u65e5" * 50, 3,
     "bytes in UTF-8 (allowed: under 128 bytes)"),
    # CIDR forms and GKE's authorized-network limit
    ("networks-51-public", cluster_with(NETWORKS_51), "cluster.authorizedNetworks", 3, "at most 50 on a public"),
    ("cidr-bare-address", cluster_with("authorizedNetworks: [{name: o, cidr: 203.0.113.7}]"),
     "cluster.authorizedNetworks[0].cidr", 3, "the /PREFIX is missing"),
    ("cidr-ipv6", cluster_with("authorizedNetworks: [{name: o, cidr: '2001:db8::/32'}]"),
     "cluster.authorizedNetworks[0].cidr", 3, "IPv6"),
    ("cidr-leading-zeros", cluster_with("authorizedNetworks: [{name: o, cidr: 010.0.0.0/8}]"),
     "cluster.authorizedNetworks[0].cidr", 3, "not a valid CIDR block"),
    ("trusted-proxy-bare", MINIMAL.replace("apiUrl: https://spinnaker.acme.dev/gate}",
                                           "apiUrl: https://spinnaker.acme.dev/gate, trustedProxies: [10.1.2.3]}"),
     "spinnaker.exposure.trustedProxies[0]", 7, "/PREFIX is missing"),
    # URL hosts: DNS names, lowercase, ASCII (IDNA)
    ("url-uppercase-host", MINIMAL.replace("uiUrl: https://spinnaker.acme.dev", "uiUrl: https://Spinnaker.acme.dev"),
     "spinnaker.exposure.uiUrl", 7, "in lowercase, spinnaker.acme.dev"),
    ("url-trailing-dot", MINIMAL.replace("uiUrl: https://spinnaker.acme.dev", "uiUrl: https://spinnaker.acme.dev."),
     "spinnaker.exposure.uiUrl", 7, "trailing dot"),
    ("url-label-ends-with-dash", MINIMAL.replace("uiUrl: https://spinnaker.acme.dev", "uiUrl: https://spinnaker-.dev"),
     "spinnaker.exposure.uiUrl", 7, "label 'spinnaker-'"),
    ("url-numeric-host", MINIMAL.replace("uiUrl: https://spinnaker.acme.dev", "uiUrl: https://999.1.1.1"),
     "spinnaker.exposure.uiUrl", 7, "neither a host name nor an IPv4 address"),
    ("url-unicode-host", MINIMAL.replace("uiUrl: https://spinnaker.acme.dev", "uiUrl: https://b\u00fccher.example"),
     "spinnaker.exposure.uiUrl", 7, "its ASCII form, xn--bcher-kva.example"),
    ("url-bad-punycode", MINIMAL.replace("uiUrl: https://spinnaker.acme.dev", "uiUrl: https://xn--zz.dev"),
     "spinnaker.exposure.uiUrl", 7, "not valid punycode"),
    ("url-bad-escape", MINIMAL.replace("uiUrl: https://spinnaker.acme.dev", "uiUrl: https://spinnaker.acme.dev/%zz"),
     "spinnaker.exposure.uiUrl", 7, "%XX escapes"),
    ("url-port-leading-zero", MINIMAL.replace("uiUrl: https://spinnaker.acme.dev", "uiUrl: https://a.dev:0443"),
     "spinnaker.exposure.uiUrl", 7, "without leading zeros"),
    # Spinnaker version forms
    ("version-leading-zero", MINIMAL.replace("version: 2026.2.3", "version: 2026.02.3"), "spinnaker.version", 5,
     "did you mean 2026.2.3?"),
    ("version-v-prefix", MINIMAL.replace("version: 2026.2.3", "version: v2026.2.3"), "spinnaker.version", 5,
     "without a 'v'"),
    # registry host:port
    ("registry-scheme", registry_with("https://us-docker.pkg.dev"), "registries[0].address", 16, "leave out the scheme"),
    ("registry-path", registry_with("us-docker.pkg.dev/acme"), "registries[0].address", 16, "has no path"),
    ("registry-port-0", registry_with("registry.acme.dev:0"), "registries[0].address", 16, "port '0' is not valid"),
    ("registry-port-99999", registry_with("registry.acme.dev:99999"), "registries[0].address", 16,
     "port 1 to 65535"),
    ("registry-underscore", registry_with("my_registry.acme.dev"), "registries[0].address", 16, "label 'my_registry'"),
    ("repository-triple-underscore", registry_with().replace("acme-platform/acme/tasks", "acme-platform/acme/a___b"),
     "registries[0].repositories[0]", 17, "not a valid repository path"),
    # image references (the Docker reference grammar)
    ("image-no-registry", MINIMAL.replace("version: 2026.2.3", "version: 2026.2.3\n  halyard: {image: spinnaker/halyard:1.0}"),
     "spinnaker.halyard.image", 6, "names no registry"),
    ("image-no-tag", MINIMAL.replace("version: 2026.2.3", "version: 2026.2.3\n  halyard: {image: ghcr.io/spinnaker/halyard}"),
     "spinnaker.halyard.image", 6, "no tag or digest"),
    ("image-short-digest", MINIMAL.replace("version: 2026.2.3", "version: 2026.2.3\n  halyard: {image: 'ghcr.io/s/h@sha256:abc'}"),
     "spinnaker.halyard.image", 6, "is not a digest"),
    ("image-uppercase-path", MINIMAL.replace("version: 2026.2.3", "version: 2026.2.3\n  halyard: {image: ghcr.io/Spin/h:1}"),
     "spinnaker.halyard.image", 6, "not a valid image path"),
    ("image-tag-starts-with-dot", MINIMAL.replace("version: 2026.2.3", "version: 2026.2.3\n  halyard: {image: 'ghcr.io/s/h:.1'}"),
     "spinnaker.halyard.image", 6, "tag '.1' is not valid"),
    # values that would reach a hal flag starting with '-'
    ("storage-location-dash", MINIMAL.replace("bucket: acme-spinnaker}", "bucket: acme-spinnaker, location: -us}"),
     "spinnaker.storage.location", 6, "not a Cloud Storage location"),
    ("root-folder-dash", MINIMAL.replace("bucket: acme-spinnaker}", "bucket: acme-spinnaker, rootFolder: -rf}"),
     "spinnaker.storage.rootFolder", 6, "not starting with '-'"),
    ("bucket-g00gle", MINIMAL.replace("bucket: acme-spinnaker", "bucket: acme-g00gle"), "spinnaker.storage.bucket", 6,
     "not a valid bucket name"),
    ("namespace-kube-prefix", MINIMAL.replace("namespaces: [prod]", "namespaces: [kube-flannel]"),
     "targets[0].namespaces[0]", 12, "system namespace"),
    # YAML 1.1 surprises: said how YAML read them
    ("namespace-no", MINIMAL.replace("namespaces: [prod]", "namespaces: [prod, no]"), "targets[0].namespaces[1]", 12,
     'no is read by YAML as the boolean false, not text (allowed: text; quote it: "no")'),
    ("spinnaker-namespace-off", MINIMAL.replace("version: 2026.2.3", "version: 2026.2.3\n  namespace: off"),
     "spinnaker.namespace", 6, "read by YAML as the boolean false"),
    ("node-count-octal", cluster_with("nodePool: {nodeCount: 010}"), "cluster.nodePool.nodeCount", 3,
     "010 is read by YAML 1.1 as the octal number 8"),
    ("node-count-08", cluster_with("nodePool: {nodeCount: 08}"), "cluster.nodePool.nodeCount", 3,
     "08 has a leading zero, so YAML 1.1 reads it as text"),
    ("cache-interval-base-60", registry_with(extra="    cacheIntervalSeconds: 10:00\n"),
     "registries[0].cacheIntervalSeconds", 18, "10:00 is read by YAML 1.1 as the base-60 number 600"),
    ("label-value-on", cluster_with("labels: {env: on}"), "cluster.labels.env", 3,
     "on is read by YAML as the boolean true"),
    ("version-empty", MINIMAL.replace("version: 2026.2.3", "version:"), "spinnaker.version", 5, "read as no value"),
    # acknowledging warnings
    ("acknowledge-unknown", MINIMAL + "acknowledge: [halyard-unsuported]\n", "acknowledge[0]", 13,
     "not a warning code"),
    ("acknowledge-system-namespace", MINIMAL + "acknowledge: [system-namespace]\n", "acknowledge[0]", 13,
     "cannot be acknowledged"),
    ("acknowledge-twice", MINIMAL + "acknowledge: [plain-http, plain-http]\n", "acknowledge", 13,
     "listed more than once"),
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
    assert cli("render", "-c", good, "-d", out).exit_code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("namespaces: [prod]", "namespaces: [kube-system]"))
    result = cli("render", "-c", bad, "-d", out)
    assert result.exit_code == 2
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    fresh = tmp_path / "fresh"
    assert cli("render", "-c", bad, "-d", fresh).exit_code == 2
    assert not fresh.exists()


def test_json_output_reports_problems_as_events(cli, tmp_path):
    import json

    f = tmp_path / "spinboot.yaml"
    f.write_text(MINIMAL + "regsitries: []\n")
    result = cli("validate", "-c", f, "--output", "json")
    assert result.exit_code == 2
    events = [json.loads(line) for line in result.stdout.splitlines()]
    problem = next(e for e in events if e["event"] == "problem" and e["severity"] == "error")
    assert problem["path"] == "regsitries" and problem["line"] == 13 and problem["file"] == str(f)
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


def test_shape_and_cross_field_problems_are_reported_in_one_run(cli, tmp_path):
    """Unknown keys do not hide the rules of the part they are in (a system namespace in the target with the typo,
    the cluster's private-node rules), nor rules across targets, nor Spinnaker's rules."""
    f = tmp_path / "spinboot.yaml"
    f.write_text(MINIMAL.replace("project: acme-platform\ncluster", "project: X\ncluster")
                 .replace("location: us-central1-b}", "location: us-central1-b, privateNodes: true, releaseChanel: S}")
                 .replace("namespaces: [prod]", "namespaces: [prod, kube-system]\n    tpyo: 1")
                 .replace("apiUrl: https://spinnaker.acme.dev/gate", "apiUrl: https://spinnaker.acme.dev/api")
                 + """  - name: platform
    gke: {project: acme-platform, location: us-central1, cluster: other}
    namespaces: [dev, dev]
""")
    result = cli("validate", "-c", f)
    assert result.exit_code == 2
    err = result.stderr
    for path, needle in [("project", "not a valid project ID"),               # shape
                         ("cluster.releaseChanel", "did you mean"),            # shape
                         ("cluster.privateNodes", "masterIpv4CidrBlock"),      # rule, in the cluster with the typo
                         ("targets[0].tpyo", "unknown key"),                   # shape
                         ("targets[0].namespaces[1]", "system namespace"),     # rule, in the target with the typo
                         ("targets[1].name", "already used by targets[0].name"),  # rule across targets
                         ("targets[1].namespaces[1]", "listed twice"),         # rule
                         ("spinnaker.exposure.apiUrl", "no path but /gate")]:  # rule
        assert any(f": {path}: " in ln and needle in ln for ln in err.splitlines()), (path, err)


def test_a_file_with_hundreds_of_problems_lists_the_first_hundred(cli, tmp_path):
    f = tmp_path / "spinboot.yaml"
    f.write_text(MINIMAL + "".join(f"unknown{i}: 1\n" for i in range(300)))
    result = cli("validate", "-c", f)
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if re.match(re.escape(str(f)) + r":\d+:\d+: ", ln)]
    assert len(lines) == 101, "100 problems (the file's one warning among them), then how many more"
    assert lines[-1].endswith("... and 201 more problem(s) not listed (allowed: fix these first and run again)")
    assert f"{f}: 300 problem(s); nothing was done." in result.stderr
