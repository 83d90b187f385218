"""``spinboot destroy``: remove what spinboot created, and only that.

Ownership is read from live state, as everything else in spinboot: the cluster carries the resource label
``managed-by: spinboot``, subscriptions and the bucket the label spinboot sets when it creates them, the service
account spinboot's display name. Something without the mark was adopted, not created: it stays, and only the IAM
members spinboot added to it are removed. Bindings of other members are never touched (read-modify-write with
etags and the retries of spinboot.gcp.iam's one read-modify-write, ``modify_policy``).

Order: spinboot's RBAC in the targets first (the record of former targets lives in the Spinnaker cluster), then the
cluster, Pub/Sub and the bucket's IAM, and the service account last (nothing may still refer to it). A real destroy
first takes the Spinnaker cluster's lock (spinboot.kube.lock), so it never runs beside another run's Halyard step or
prune, and holds it until the cluster (and the Lease in it) is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from google.api_core import exceptions

from ..changes import Change
from ..config.model import SpinbootConfig, Target
from ..engine.graph import Emit, Step, StepContext, StepResult, run_graph
from ..engine.stages import RunOptions, Stages
from ..gcp import gke
from ..gcp.iam import BucketPolicy, GrpcPolicy, remove_members
from ..gcp.retry import RETRY
from ..kube.lock import LeaseLock
from ..kube.resources import Kube
from ..kube.targets import read_record, remove_target
from ..render.gcp import MANAGED_LABELS, ServiceAccountSpec, iam_spec, pubsub_spec, storage_spec
from .reach import spinnaker_kube

MARK = next(iter(MANAGED_LABELS.items()))   # the label render.gcp's specs set on what spinboot creates


@dataclass
class DestroyOptions:
    dry_run: bool = False
    keep_bucket: bool = True      # front50's data and the backups live there: deleting it is opt-in
    delete_topics: bool = False   # the gcr topic is usually the registry's
    lock_timeout: float | None = None   # seconds to wait for the Spinnaker cluster's lock (None: the default)


class Destroyer:
    def __init__(self, cfg: SpinbootConfig, clients, opts: DestroyOptions):
        self.cfg, self.clients, self.opts = cfg, clients, opts
        self.stages = Stages(cfg, clients, RunOptions(dry_run=opts.dry_run))
        # What apply made is what render.gcp's specs say (gcp/*.yaml): destroy reads the same specs.
        self.iam, self.pubsub_spec, self.bucket = iam_spec(cfg), pubsub_spec(cfg), storage_spec(cfg)
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
        hns = self.cfg.spinnaker.state_namespace
        if kube is None or kube.get(f"/api/v1/namespaces/{hns}") is None:
            ctx.progress(f"no {'Spinnaker cluster' if kube is None else 'namespace ' + hns}: no install to "
                         "serialize with, no lock to take")
            return []
        self._lock = LeaseLock(kube, hns, operation="destroy", timeout=self.opts.lock_timeout, progress=ctx.progress,
                               report=ctx.report)
        self._lock.acquire()
        return []

    # --- targets ----------------------------------------------------------------------------------------------

    def spinnaker_kube(self) -> Kube | None:
        return spinnaker_kube(self.clients, gke.get_cluster(self.clients.container, gke.cluster_name(self.cfg)))

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
        for spec in self.pubsub_spec.subscriptions:
            path = spec.name
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
                out += [remove_members(GrpcPolicy(sub, path), path, b.role, b.members, self.opts.dry_run)
                        for b in self.iam.for_service("pubsub", path)]
                out.append(Change("unchanged", "Pub/Sub subscription", path,
                                  detail="not created by spinboot (no managed-by label): left in place"))
        for topic in (t.name for t in self.pubsub_spec.topics):
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
        st, storage = self.bucket, self.clients.storage
        kind = "GCS bucket"
        bucket = storage.lookup_bucket(st.name)
        if bucket is None:
            return [Change("unchanged", kind, st.name, detail="does not exist")]
        ours = (bucket.labels or {}).get(MARK[0]) == MARK[1]
        if self.opts.keep_bucket or not ours:
            # The bucket stays: only spinboot's member leaves it (the service account is about to be deleted).
            policy = BucketPolicy(storage, st.name)
            unbind = [remove_members(policy, b.resource, b.role, b.members, self.opts.dry_run)
                      for b in self.iam.for_service("storage", st.resource)]
            if self.opts.keep_bucket:
                return unbind + [Change("unchanged", kind, st.name, detail="kept with front50's data and the "
                                                                             "backups (--delete-bucket to delete)")]
            return unbind + [Change("blocked", kind, st.name, detail=(
                f"it has no label {MARK[0]}={MARK[1]}: spinboot did not create it, so it is left alone; delete it "
                f"yourself if it should go: gcloud storage rm -r gs://{st.name}"))]
        if not self.opts.dry_run:
            ctx.progress(f"deleting every object (and version) in gs://{st.name}, then the bucket")
            for blob in list(storage.list_blobs(st.name, versions=True)):
                try:
                    bucket.blob(blob.name, generation=blob.generation).delete()
                except exceptions.NotFound:
                    pass
            bucket.delete()
        return [Change("delete", kind, st.name, detail="with every object in it")]

    def registry_access(self, ctx: StepContext) -> list[Change]:
        """Repositories belong to the teams that push to them: only Spinnaker's read grant leaves them."""
        ar = self.clients.artifact_registry
        return [remove_members(GrpcPolicy(ar, b.resource), b.resource, b.role, b.members, self.opts.dry_run)
                for b in self.iam.for_service("artifactregistry")]

    def service_accounts(self, ctx: StepContext) -> list[Change]:
        """Spinnaker's and the nodes' service accounts (after the cluster that ran as them), when spinboot made
        them; the nodes' project role goes first, since the project stays."""
        iam, spec = self.clients.iam, self.iam
        out = [remove_members(GrpcPolicy(self.clients.projects, b.resource), b.resource, b.role, b.members,
                              self.opts.dry_run) for b in spec.for_service("resourcemanager")]
        for sa in (spec.service_account, spec.node_service_account):
            out += self._service_account(iam, sa)
        return out

    def _service_account(self, iam, sa: ServiceAccountSpec) -> list[Change]:
        name = sa.name
        kind = "Google service account"
        try:
            live = iam.get_service_account(name=name, retry=RETRY)
        except exceptions.NotFound:
            return [Change("unchanged", kind, sa.email, detail="does not exist")]
        if live.display_name != sa.display_name:
            return [remove_members(GrpcPolicy(iam, name), name, b.role, b.members, self.opts.dry_run)
                    for b in self.iam.for_service("iam", name)] + \
                   [Change("unchanged", kind, sa.email, detail="not created by spinboot: left in place")]
        if not self.opts.dry_run:
            try:
                iam.delete_service_account(name=name, retry=RETRY)
            except exceptions.NotFound:
                pass
        return [Change("delete", kind, sa.email, detail="with its IAM bindings")]

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
        if self.pubsub_spec.subscriptions:
            out.append(Step("pubsub", "Pub/Sub subscriptions (and topics with --delete-topics)", self.pubsub))
            deps += ("pubsub",)
        if self.iam.for_service("artifactregistry"):
            out.append(Step("registry-access", "Spinnaker's read access to Artifact Registry", self.registry_access))
            deps += ("registry-access",)
        out.append(Step("iam:service-accounts", "Spinnaker's and the nodes' Google service accounts",
                        self.service_accounts, deps))
        if not self.opts.dry_run:  # the whole destroy waits for the lock (run() gives it back); a dry run takes none
            out = [Step("lock", "the Spinnaker cluster's lock", self.take_lock)] + \
                  [replace(s, deps=s.deps + ("lock",)) for s in out]
        return out
