"""One desired state: what ``spinboot render`` writes to gcp/*.yaml is what ``spinboot apply`` does.

After an apply on the sandbox, the topic, the subscription, the bucket and every IAM policy spinboot writes are
read back from the sandbox's servers (pstest with its IAM service, the Storage emulator behind its proxy, the IAM,
Resource Manager and Artifact Registry stand-ins) and compared with the YAML files render wrote, parsed from disk.
Nothing here calls the specs in Python: a reconciler that rebuilt a label, a role or a setting on its own would
disagree with the file a reviewer reads, and this fails.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import yaml

from ..conftest import EXAMPLES, Cli

EXAMPLE = EXAMPLES / "spinboot.yaml"


@pytest.fixture(scope="module")
def rendered_and_applied(sandbox, tmp_path_factory):
    """gcp/*.yaml as `spinboot render` wrote them, parsed from disk, once `spinboot apply` of the same file is done."""
    cli = Cli()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in sandbox.environ().items():
            mp.setenv(k, v)
        out = tmp_path_factory.mktemp("render") / "bundle"
        r = cli("render", "-c", EXAMPLE, "--dir", out)
        assert r.exit_code == 0, r.output
        gcp = {name: yaml.safe_load((out / "gcp" / f"{name}.yaml").read_text())
               for name in ("pubsub", "iam", "storage")}
        r = cli("apply", "-c", EXAMPLE, "--yes")   # a first apply, or (earlier tests on this sandbox) a converging one
        assert r.exit_code == 0, r.output[-4000:]
    return gcp


def _gcs(sandbox):
    from google.api_core import client_options as co
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="sandbox", credentials=AnonymousCredentials(),
                          client_options=co.ClientOptions(api_endpoint=sandbox.storage_url))


def test_subscription_and_topic_are_what_pubsub_yaml_says(rendered_and_applied, sandbox):
    from google.pubsub_v1 import Subscription

    want = rendered_and_applied["pubsub"]
    assert want["subscriptions"], "the example has a Google registry: gcp/pubsub.yaml must list its subscription"
    sub = sandbox.pubsub.subscriber()
    for spec in want["subscriptions"]:
        live = json.loads(Subscription.to_json(sub.get_subscription(subscription=spec["name"])))
        # The fields gcp/pubsub.yaml shows, read back in the API's JSON form (the same field names).
        assert {k: live.get(k, {} if k in ("expirationPolicy", "labels") else None) for k in spec} == spec
    pub = sandbox.pubsub.publisher()
    for spec in want["topics"]:
        live = pub.get_topic(topic=spec["name"])
        assert live.name == spec["name"]
        # Labels are spinboot's mark only when it created the topic (the sandbox's registries may have made it).
        assert dict(live.labels) in (spec["labels"], {}), dict(live.labels)


def _bucket(sandbox, want: dict) -> dict:
    b = _gcs(sandbox).get_bucket(want["name"])
    return {"name": b.name, "location": (b.location or "").lower(),
            "uniformBucketLevelAccess": b.iam_configuration.uniform_bucket_level_access_enabled,
            "versioning": b.versioning_enabled, "labels": dict(b.labels or {})}


def test_bucket_exists_where_storage_yaml_says(rendered_and_applied, sandbox):
    want = rendered_and_applied["storage"]["bucket"]
    live = _bucket(sandbox, want)
    assert (live["name"], live["location"]) == (want["name"], want["location"].lower())


def test_bucket_settings_are_what_storage_yaml_says(rendered_and_applied, sandbox):
    want = rendered_and_applied["storage"]["bucket"]
    live = _bucket(sandbox, want)
    assert live == {k: (want[k].lower() if k == "location" else want[k]) for k in live}


def _policy(sandbox, service: str, resource: str) -> dict[str, set[str]]:
    """role -> members of the live policy (unconditional bindings), read from the server that holds it."""
    if service == "storage":
        p = _gcs(sandbox).bucket(resource.rsplit("/", 1)[1]).get_iam_policy(requested_policy_version=3)
        return {b["role"]: set(b["members"]) for b in p.bindings if not b.get("condition")}
    client = {"pubsub": sandbox.pubsub.subscriber, "iam": sandbox.gke.iam_admin,
              "resourcemanager": sandbox.gke.projects_client,
              "artifactregistry": sandbox.gke.artifact_registry}[service]()
    p = client.get_iam_policy(request={"resource": resource})
    return {b.role: set(b.members) for b in p.bindings if not b.HasField("condition")}


def test_iam_policies_are_what_iam_yaml_says(rendered_and_applied, sandbox):
    """Every resource spinboot made (the subscription, the bucket, the service account) holds exactly the bindings
    iam.yaml lists for it; resources it only grants on (the project, a repository) hold them among others'."""
    spec = rendered_and_applied["iam"]
    by_resource: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(dict)
    for b in spec["bindings"]:
        by_resource[(b["service"], b["resource"])][b["role"]] = set(b["members"])
    assert {s for s, _ in by_resource} >= {"pubsub", "storage", "iam", "resourcemanager"}
    exact = {"pubsub", "storage", "iam"}
    for (service, resource), want in sorted(by_resource.items()):
        live = _policy(sandbox, service, resource)
        if service in exact:
            assert live == want, (resource, live, want)
        else:
            assert all(members <= live.get(role, set()) for role, members in want.items()), (resource, live, want)
    # The accounts gcp/iam.yaml describes exist as described.
    iam = sandbox.gke.iam_admin()
    for key in ("serviceAccount", "nodeServiceAccount"):
        sa = spec[key]
        live = iam.get_service_account(name=f"projects/{sa['project']}/serviceAccounts/{sa['email']}")
        assert (live.email, live.display_name) == (sa["email"], sa["displayName"])


# --- pure tests (no sandbox): the one IAM read-modify-write and the one node-memory rule ------------------------

class _Store:
    """A policy store with etags, as the IAM APIs keep them: a write with a stale etag is refused (ABORTED)."""

    def __init__(self, bindings: dict[str, list[str]], fail: list[Exception] | None = None):
        from google.iam.v1 import policy_pb2

        self.policy = policy_pb2.Policy(etag=b"1")
        for role, members in bindings.items():
            self.policy.bindings.add(role=role, members=members)
        self.fail = list(fail or [])
        self.writes = 0

    def get(self):
        from google.iam.v1 import policy_pb2

        out = policy_pb2.Policy()
        out.CopyFrom(self.policy)
        return out

    def set(self, policy) -> None:
        from google.api_core import exceptions

        if self.fail:
            raise self.fail.pop(0)
        if policy.etag != self.policy.etag:
            raise exceptions.Aborted("stale etag")
        self.policy.CopyFrom(policy)
        self.policy.etag = str(int(self.policy.etag) + 1).encode()
        self.writes += 1


def _roles(store: _Store) -> dict[str, set[str]]:
    return {b.role: set(b.members) for b in store.policy.bindings}


def test_remove_members_retries_a_stale_etag_and_a_lost_write():
    """destroy's removal goes through the same read-modify-write as apply's grants: a concurrent writer (ABORTED)
    and a write lost in transit (UNAVAILABLE) are both read again and retried, and other members stay."""
    from google.api_core import exceptions

    from spinboot.gcp.iam import remove_members

    ours, theirs = "serviceAccount:spinnaker@p.iam.gserviceaccount.com", "user:ops@example.com"
    store = _Store({"roles/storage.objectAdmin": [ours, theirs], "roles/x": [ours]},
                   fail=[exceptions.Aborted("etag"), exceptions.ServiceUnavailable("lost")])
    ch = remove_members(store, "b", "roles/storage.objectAdmin", [ours], sleep=lambda s: None)
    assert (ch.action, ch.detail) == ("delete", ours)
    assert _roles(store) == {"roles/storage.objectAdmin": {theirs}, "roles/x": {ours}} and store.writes == 1
    # A binding left with no member is dropped (IAM refuses empty bindings); a second run has nothing to do.
    assert remove_members(store, "b", "roles/x", [ours], sleep=lambda s: None).action == "delete"
    assert _roles(store) == {"roles/storage.objectAdmin": {theirs}}
    assert remove_members(store, "b", "roles/x", [ours], sleep=lambda s: None).action == "unchanged"


def test_remove_members_gives_up_when_the_policy_keeps_changing():
    from google.api_core import exceptions

    from spinboot.gcp.iam import CONFLICT_ATTEMPTS, IamError, remove_members

    store = _Store({"roles/x": ["user:a"]}, fail=[exceptions.Aborted("etag")] * CONFLICT_ATTEMPTS)
    with pytest.raises(IamError, match="re-run destroy"):
        remove_members(store, "b", "roles/x", ["user:a"], sleep=lambda s: None)
    assert store.writes == 0


@pytest.mark.parametrize("machine_type,roomy", [
    ("e2-highmem-4", True), ("n2-highmem-8", True), ("m1-megamem-96", True), ("m2-ultramem-208", True),
    ("e2-standard-4", False), ("n2-highcpu-16", False), ("", False),
])
def test_doctor_and_validate_share_the_node_memory_rule(machine_type, roomy):
    """doctor's node-memory check and validate's standard-nodes warning are the same function (they disagreed on
    megamem/ultramem when each had its own copy)."""
    from spinboot.config import rules
    from spinboot.ops import doctor

    assert doctor.high_memory is rules.high_memory
    assert rules.high_memory(machine_type) is roomy
