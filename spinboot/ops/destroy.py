"""``spinboot destroy``: remove what spinboot created, and only that.

Ownership is read from live state, as everything else in spinboot: the cluster carries the resource label
``managed-by: spinboot``, subscriptions and the bucket the label spinboot sets when it creates them, the service
account spinboot's display name. Something without the mark was adopted, not created: it stays, and only the IAM
members spinboot added to it are removed. Bindings of other members are never touched (read-modify-write with
etags, as in spinboot.gcp.iam).

Order: spinboot's RBAC in the targets first (the record of former targets lives in the Spinnaker cluster), then the
cluster, Pub/Sub and the bucket's IAM, and the service account last (nothing may still refer to it). A real destroy
first takes the Spinnaker cluster's lock (spinboot.kube.lock), so it never runs beside another run's Halyard step or
prune, and holds it until the cluster (and the Lease in it) is gone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

from google.api_core import exceptions

from ..changes import Change
from ..config.model import SpinbootConfig, Target
from ..engine.graph import Emit, Step, StepContext, StepResult, run_graph
from ..engine.stages import RunOptions, Stages
from ..gcp import gke
from ..gcp.iam import CONFLICT_ATTEMPTS, BucketPolicy, GrpcPolicy, IamError, PolicyStore
from ..gcp.pubsub import topic_path, subscription_path
from ..gcp.retry import RETRY
from ..kube import access
from ..kube.lock import LeaseLock
from ..kube.resources import Kube
from ..kube.targets import read_record, remove_target
from ..render.gcp import bindings_for, iam_spec

MARK = ("managed-by", "spinboot")


@dataclass
class DestroyOptions:
    dry_run: bool = False
    keep_bucket: bool = True      # front50's data and the backups live there: deleting it is opt-in
    delete_topics: bool = False   # the gcr topic is usually the registry's
    lock_timeout: float | None = None   # seconds to wait for the Spinnaker cluster's lock (None: the default)


def remove_members(store: PolicyStore, resource: str, role: str, members: list[str], dry_run: bool = False) -> Change:
    """Take ``members`` out of ``role`` on the resource; every other member and binding stays."""
    name = f"{role} on {resource}"
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            policy = store.get()
        except exceptions.NotFound:
            return Change("unchanged", "IAM binding", name, detail="resource gone")
        present = sorted({m for b in policy.bindings if b.role == role and not b.HasField("condition")
                          for m in b.members if m in members})
        if not present:
            return Change("unchanged", "IAM binding", name)
        if dry_run:
            return Change("delete", "IAM binding", name, detail=", ".join(present))
        keep = []
        for b in policy.bindings:
            if b.role == role and not b.HasField("condition"):
                rest = [m for m in b.members if m not in members]
                del b.members[:]
                b.members.extend(rest)
            if b.members:
                keep.append(b)
        # Rebuild the list without emptied bindings (IAM refuses bindings without members).
        copies = [type(b)() for b in keep]
        for c, b in zip(copies, keep):
            c.CopyFrom(b)
        del policy.bindings[:]
        policy.bindings.extend(copies)
        try:
            store.set(policy)
            return Change("delete", "IAM binding", name, detail=", ".join(present))
        except (exceptions.Aborted, exceptions.FailedPrecondition, exceptions.Conflict):
            time.sleep(min(0.1 * 2 ** attempt, 3.0))
    raise IamError(f"{name}: the policy kept changing under us ({CONFLICT_ATTEMPTS} attempts); re-run destroy")


class Destroyer:
    def __init__(self, cfg: SpinbootConfig, clients, opts: DestroyOptions):
        self.cfg, self.clients, self.opts = cfg, clients, opts
        self.stages = Stages(cfg, clients, RunOptions(dry_run=opts.dry_run))
        self.member = f"serviceAccount:{cfg.service_account_email}"
        self._lock: LeaseLock | None = None

    # --- the lock ---------------------------------------------------------------------------------------------

    def run(self, emit: Emit) -> dict[str, StepResult]:
        """Run the destroy; a real one holds the Spinnaker cluster's lock (spinboot.kube.lock) from the start until
        the cluster is deleted (the Lease goes with it), and gives it back whatever ends the run."""
        try:
            return run_graph(self.steps(), emit)
        finally:
            if self._lock is not None:
                self._lock.release()

    def take_lock(self, ctx: StepContext) -> list[Change]:
        """Wait for a Halyard step or prune of another run to finish; none starts until this destroy is done."""
        kube = self.spinnaker_kube()
        hns = self.cfg.spinnaker.halyard.namespace
        if kube is None or kube.get(f"/api/v1/namespaces/{hns}") is None:
            ctx.progress(f"no {'Spinnaker cluster' if kube is None else 'namespace ' + hns}: no Halyard to "
                         "serialize with, no lock to take")
            return []
        self._lock = LeaseLock(kube, hns, operation="destroy", timeout=self.opts.lock_timeout, progress=ctx.progress,
                               report=ctx.report)
        self._lock.acquire()
        return []

    # --- targets ----------------------------------------------------------------------------------------------

    def spinnaker_kube(self) -> Kube | None:
        live = gke.get_cluster(self.clients.container, gke.cluster_name(self.cfg))
        if live is None:
            return None
        a = gke.access_of(live)
        return Kube(access.Cluster("spinnaker", a.endpoint, a.ca_pem, token=self.clients.access_token).api_client(),
                    "spinnaker")

    def targets(self) -> list[Target]:
        """The file's targets and those recorded in the Spinnaker cluster (removed from the file, not pruned)."""
        out = list(self.cfg.targets)
        kube = self.spinnaker_kube()
        if kube is not None:
            for name, data in sorted(read_record(kube, self.cfg.spinnaker.halyard.namespace).items()):
                if name not in {t.name for t in out}:
                    out.append(Target.model_validate({**data, "namespaces": ["unused"]}))
        return out

    def target(self, t: Target) -> Callable[[StepContext], list[Change]]:
        def run(ctx: StepContext) -> list[Change]:
            if t.gke and gke.get_cluster(self.clients.container, f"projects/{t.gke.project}/locations/"
                                                               f"{t.gke.location}/clusters/{t.gke.cluster}") is None:
                return [Change("unchanged", "target cluster", t.name, detail="the cluster is gone: nothing to remove")]
            kube = Kube(self.stages.target_cluster(t).api_client(), t.name)
            return [Change(c.action, c.kind, c.name, c.namespace, f"in target {t.name}")
                    for c in remove_target(kube, t.name, dry_run=self.opts.dry_run)]
        return run

    # --- Google -----------------------------------------------------------------------------------------------

    def cluster(self, ctx: StepContext) -> list[Change]:
        cfg, container = self.cfg, self.clients.container
        name = gke.cluster_name(cfg)
        live = gke.get_cluster(container, name)
        kind = "GKE cluster"
        if live is None:
            return [Change("unchanged", kind, cfg.cluster.name, detail="does not exist")]
        if live.resource_labels.get(MARK[0]) != MARK[1]:
            return [Change("blocked", kind, cfg.cluster.name, detail=(
                f"it has no label {MARK[0]}={MARK[1]}: spinboot did not create it (or the label was removed), so it "
                f"is left alone; delete it yourself if it should go: gcloud container clusters delete {cfg.cluster.name}"
                f" --location {cfg.cluster.location}"))]
        if not self.opts.dry_run:
            ctx.progress(f"deleting cluster {cfg.cluster.name} (waits for the operation)")
            try:
                op = container.delete_cluster(name=name, retry=RETRY)
            except exceptions.FailedPrecondition:   # an operation is running on it: wait, then delete
                gke._wait_running_operations(container, cfg, ctx.progress)
                op = container.delete_cluster(name=name, retry=RETRY)
            except exceptions.NotFound:
                return [Change("unchanged", kind, cfg.cluster.name, detail="already gone")]
            if self._lock is not None:  # the Lease is deleted with the cluster: nothing to renew or release
                self._lock.forget()
            gke.wait_operation(container, cfg.project, cfg.cluster.location, op, f"delete cluster {cfg.cluster.name}",
                               ctx.progress)
        return [Change("delete", kind, cfg.cluster.name, detail=f"{cfg.cluster.location}, with Halyard and Spinnaker")]

    def pubsub(self, ctx: StepContext) -> list[Change]:
        pub, sub = self.clients.publisher, self.clients.subscriber
        out: list[Change] = []
        ours: set[str] = set()
        for r in self.cfg.push_registries:
            path = subscription_path(r)
            try:
                live = sub.get_subscription(request={"subscription": path}, retry=RETRY)
            except exceptions.NotFound:
                out.append(Change("unchanged", "Pub/Sub subscription", path, detail="does not exist"))
                continue
            if live.labels.get(MARK[0]) == MARK[1]:
                ours.add(path)
                if not self.opts.dry_run:
                    try:
                        sub.delete_subscription(request={"subscription": path}, retry=RETRY)
                    except exceptions.NotFound:
                        pass
                out.append(Change("delete", "Pub/Sub subscription", path, detail="with its IAM policy"))
            else:
                out.append(remove_members(GrpcPolicy(sub, path), path, "roles/pubsub.subscriber", [self.member],
                                          self.opts.dry_run))
                out.append(Change("unchanged", "Pub/Sub subscription", path,
                                  detail="not created by spinboot (no managed-by label): left in place"))
        for project in sorted({r.project for r in self.cfg.push_registries}):
            topic = topic_path(project)
            if not self.opts.delete_topics:
                out.append(Change("unchanged", "Pub/Sub topic", topic, detail="kept (--delete-topics to delete)"))
                continue
            try:
                subs = [s for s in pub.list_topic_subscriptions(request={"topic": topic}, retry=RETRY)
                        if s not in ours]
            except exceptions.NotFound:
                out.append(Change("unchanged", "Pub/Sub topic", topic, detail="does not exist"))
                continue
            if subs:
                out.append(Change("unchanged", "Pub/Sub topic", topic,
                                  detail=f"kept: {len(subs)} other subscription(s) still read it"))
                continue
            if not self.opts.dry_run:
                try:
                    pub.delete_topic(request={"topic": topic}, retry=RETRY)
                except exceptions.NotFound:
                    pass
            out.append(Change("delete", "Pub/Sub topic", topic))
        return out

    def storage(self, ctx: StepContext) -> list[Change]:
        st, storage = self.cfg.spinnaker.storage, self.clients.storage
        kind = "GCS bucket"
        bucket = storage.lookup_bucket(st.bucket)
        if bucket is None:
            return [Change("unchanged", kind, st.bucket, detail="does not exist")]
        ours = (bucket.labels or {}).get(MARK[0]) == MARK[1]
        if self.opts.keep_bucket or not ours:
            # The bucket stays: only spinboot's member leaves it (the service account is about to be deleted).
            policy = BucketPolicy(storage, st.bucket)
            unbind = [remove_members(policy, b["resource"], b["role"], b["members"], self.opts.dry_run)
                      for b in bindings_for(self.cfg, "storage")]
            if self.opts.keep_bucket:
                return unbind + [Change("unchanged", kind, st.bucket, detail="kept with front50's data and the "
                                                                             "backups (--delete-bucket to delete)")]
            return unbind + [Change("blocked", kind, st.bucket, detail=(
                f"it has no label {MARK[0]}={MARK[1]}: spinboot did not create it, so it is left alone; delete it "
                f"yourself if it should go: gcloud storage rm -r gs://{st.bucket}"))]
        if not self.opts.dry_run:
            ctx.progress(f"deleting every object (and version) in gs://{st.bucket}, then the bucket")
            for blob in list(storage.list_blobs(st.bucket, versions=True)):
                try:
                    bucket.blob(blob.name, generation=blob.generation).delete()
                except exceptions.NotFound:
                    pass
            bucket.delete()
        return [Change("delete", kind, st.bucket, detail="with every object in it")]

    def registry_access(self, ctx: StepContext) -> list[Change]:
        """Repositories belong to the teams that push to them: only Spinnaker's read grant leaves them."""
        ar = self.clients.artifact_registry
        return [remove_members(GrpcPolicy(ar, b["resource"]), b["resource"], b["role"], b["members"], self.opts.dry_run)
                for b in bindings_for(self.cfg, "artifactregistry")]

    def service_accounts(self, ctx: StepContext) -> list[Change]:
        """Spinnaker's and the nodes' service accounts (after the cluster that ran as them), when spinboot made
        them; the nodes' project role goes first, since the project stays."""
        iam, spec = self.clients.iam, iam_spec(self.cfg)
        out = [remove_members(GrpcPolicy(self.clients.projects, b["resource"]), b["resource"], b["role"], b["members"],
                              self.opts.dry_run) for b in bindings_for(self.cfg, "resourcemanager")]
        for sa in (spec["serviceAccount"], spec["nodeServiceAccount"]):
            out += self._service_account(iam, sa)
        return out

    def _service_account(self, iam, sa: dict) -> list[Change]:
        name = f"projects/{sa['project']}/serviceAccounts/{sa['email']}"
        kind = "Google service account"
        try:
            live = iam.get_service_account(name=name, retry=RETRY)
        except exceptions.NotFound:
            return [Change("unchanged", kind, sa["email"], detail="does not exist")]
        if live.display_name != sa["displayName"]:
            return [remove_members(GrpcPolicy(iam, name), name, b["role"], b["members"], self.opts.dry_run)
                    for b in bindings_for(self.cfg, "iam", name)] + \
                   [Change("unchanged", kind, sa["email"], detail="not created by spinboot: left in place")]
        if not self.opts.dry_run:
            try:
                iam.delete_service_account(name=name, retry=RETRY)
            except exceptions.NotFound:
                pass
        return [Change("delete", kind, sa["email"], detail="with its IAM bindings")]

    # --- the graph --------------------------------------------------------------------------------------------

    def steps(self) -> list[Step]:
        targets = [Step(f"rbac:{t.name}", f"spinboot's RBAC in {t.name}", self.target(t)) for t in self.targets()]
        names = tuple(s.name for s in targets)
        out = targets + [
            # The cluster goes after the targets: it holds the record of former targets, needed to re-run.
            Step("cluster", f"GKE cluster {self.cfg.cluster.name}", self.cluster, names),
            Step("storage", f"GCS bucket {self.cfg.spinnaker.storage.bucket}", self.storage),
        ]
        deps = ("cluster", "storage")
        if self.cfg.push_registries:
            out.append(Step("pubsub", "Pub/Sub subscriptions (and topics with --delete-topics)", self.pubsub))
            deps += ("pubsub",)
        if bindings_for(self.cfg, "artifactregistry"):
            out.append(Step("registry-access", "Spinnaker's read access to Artifact Registry", self.registry_access))
            deps += ("registry-access",)
        out.append(Step("iam:service-accounts", "Spinnaker's and the nodes' Google service accounts",
                        self.service_accounts, deps))
        if not self.opts.dry_run:  # the whole destroy waits for the lock (run() gives it back); a dry run takes none
            out = [Step("lock", "the Spinnaker cluster's lock", self.take_lock)] + \
                  [replace(s, deps=s.deps + ("lock",)) for s in out]
        return out
