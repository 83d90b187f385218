"""The stages of `spinboot apply` and `plan`, as steps of a dependency graph.

    iam:service-accounts ─┬─ pubsub ─────────────────────────────┐
                          ├─ storage ────────────────────────────┤
                          ├─ registry-access ────────────────────┤
                          └─ cluster ── iam:workload-identity ── halyard
    rbac:<target> (one per target, in parallel) ─────────────────┘

Under the kustomize engine (docs/engines.md) the last step is ``spinnaker`` instead of ``halyard``, with the same
inputs: spinboot builds the rendered kustomize tree and server-side applies it (spinboot/kube/kustomize_apply.py).

Pub/Sub, IAM, storage, registry access and every target's RBAC proceed while the cluster is being created; Halyard
waits only for what it needs (echo needs its subscriptions before it starts; Halyard validates registry accounts by
reading them; Halyard needs the target kubeconfigs).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from ..changes import Change
from ..config.model import SpinbootConfig, Target
from ..gcp import artifactregistry as gcp_ar, gke, iam as gcp_iam, pubsub as gcp_pubsub, storage as gcp_storage
from ..gcp.clients import GoogleClients
from ..kube import access
from ..kube.halyard import BUNDLE_DIR, AbsentCluster, HalyardError, apply_halyard, pod_name, wait_rollout
from ..kube.lock import DEFAULT_TIMEOUT_SECONDS, LeaseLock, wait_for_leftover
from ..kube.resources import Kube, KubeError
from ..kube.targets import apply_target, read_record, record_manifest, target_record
from ..render import render_all
from ..render import gcp as render_gcp
from ..render.gcp import bindings_for
from .graph import Step, StepContext

STAGES = ("cluster", "rbac", "pubsub", "halyard")
# IAM changes typically apply within 2 and at most 7 minutes (https://cloud.google.com/iam/docs/access-change-propagation).
IAM_PROPAGATION_SECONDS = 420


@dataclass
class RunOptions:
    dry_run: bool = False
    verify_pubsub: bool = False
    only_targets: tuple[str, ...] = ()
    force_halyard: bool = False
    allow_delete: bool = False   # deletions need --yes (plan only reports them)
    prune: bool = False          # remove the RBAC of targets no longer in the file
    lock_timeout: float | None = None   # seconds to wait for the Spinnaker cluster's lock (None: the default)
    reprove: bool = False        # ask the RBAC proof even if nothing that can reach Spinnaker's account changed


@dataclass
class Shared:
    """Values steps hand to later steps."""

    spinnaker: access.Cluster | None = None
    kubeconfigs: dict[str, bytes] = field(default_factory=dict)
    granted_registry_access: bool = False   # this run made a grant Halyard's validation depends on
    lock: threading.Lock = field(default_factory=threading.Lock)


class Stages:
    def __init__(self, cfg: SpinbootConfig, clients: GoogleClients, opts: RunOptions, base_dir=None):
        self.cfg, self.clients, self.opts = cfg, clients, opts
        self.shared = Shared()
        self.files = render_all(cfg, base_dir=base_dir)   # base_dir: spinboot.yaml's (kustomize customizations)

    # --- access -----------------------------------------------------------------------------------------------

    def target_cluster(self, t: Target) -> access.Cluster:
        if t.kubeconfig:
            return access.from_kubeconfig(t.name, t.kubeconfig.path, t.kubeconfig.context)
        name = f"projects/{t.gke.project}/locations/{t.gke.location}/clusters/{t.gke.cluster}"
        live = gke.get_cluster(self.clients.container, name)
        if live is None:
            raise access.AccessError(f"target {t.name}: GKE cluster {name} does not exist (or this identity may not "
                                     "see it: it needs roles/container.clusterViewer on that project)")
        a = gke.access_of(live)
        return access.Cluster(t.name, a.endpoint, a.ca_pem, token=self.clients.access_token)

    # --- steps ------------------------------------------------------------------------------------------------

    def service_accounts(self, with_nodes: bool) -> Callable[[StepContext], list[Change]]:
        """Spinnaker's Google service account and, when the cluster is in scope, the nodes' minimal one with its
        single project role (it must exist before the node pool that runs as it)."""
        def run(ctx: StepContext) -> list[Change]:
            spec = render_gcp.iam_spec(self.cfg)   # gcp/iam.yaml
            accounts = [spec.service_account] + ([spec.node_service_account] if with_nodes else [])
            changes = []
            for sa in accounts:
                ch = gcp_iam.ensure_service_account(self.clients.iam, sa, self.opts.dry_run)
                if ch.action == "create" and not self.opts.dry_run:
                    gcp_iam.wait_for_service_account(self.clients.iam, sa.name)
                changes.append(ch)
            if with_nodes:
                # A node service account made above may not be known to IAM policies yet: ensure_bindings waits.
                changes += gcp_iam.ensure_bindings(lambda res: gcp_iam.GrpcPolicy(self.clients.projects, res),
                                                   spec.for_service("resourcemanager"), self.opts.dry_run,
                                                   progress=ctx.progress)
            return changes
        return run

    def registry_access(self, ctx: StepContext) -> list[Change]:
        changes = gcp_ar.ensure_registry_access(self.clients.artifact_registry, self.cfg, self.opts.dry_run)
        self.shared.granted_registry_access = any(c.action == "create" for c in changes)
        return changes

    def pubsub(self, ctx: StepContext) -> list[Change]:
        """gcp/pubsub.yaml and the Pub/Sub grants of gcp/iam.yaml, applied from the same specs they render."""
        spec = render_gcp.pubsub_spec(self.cfg)
        changes = gcp_pubsub.ensure_pubsub(self.clients.publisher, self.clients.subscriber, spec,
                                           render_gcp.iam_spec(self.cfg).for_service("pubsub"), self.opts.dry_run)
        if self.opts.verify_pubsub and not self.opts.dry_run:
            for sub in spec.subscriptions:
                seconds = gcp_pubsub.verify_delivery(self.clients.publisher, self.clients.subscriber, sub)
                ctx.progress(f"{sub.name}: test message delivered in {seconds:.2f} s")
        return changes

    def storage(self, ctx: StepContext) -> list[Change]:
        def project_number(project: str) -> str | None:
            try:
                name = self.clients.projects.get_project(name=f"projects/{project}").name
            except Exception:  # no permission to read the project: the owner check is skipped, not the step
                return None
            number = name.split("/")[-1]
            return number if number.isdigit() else None

        # The sandbox's storage emulator reports one fixed project number for every bucket, so the owner check
        # would compare against nothing real there.
        owner_check = None if self.clients.sandbox else project_number
        # gcp/storage.yaml and the bucket's grants in gcp/iam.yaml, applied from the same specs they render.
        return gcp_storage.ensure_bucket(self.clients.storage, render_gcp.storage_spec(self.cfg),
                                         render_gcp.iam_spec(self.cfg).for_service("storage"), self.opts.dry_run,
                                         owner_check)

    def cluster(self, ctx: StepContext) -> list[Change]:
        def node_count(a: gke.ClusterAccess) -> int:
            cluster = access.Cluster("spinnaker", a.endpoint, a.ca_pem, token=self.clients.access_token)
            return _count_nodes(Kube(cluster.api_client(), "spinnaker"), self.cfg.cluster.node_pool.name)

        changes, a = gke.ensure_cluster(self.clients.container, self.cfg, self.opts.dry_run, node_count=node_count,
                                        progress=ctx.progress)
        if a is not None and a.endpoint:
            self.shared.spinnaker = access.Cluster("spinnaker", a.endpoint, a.ca_pem, token=self.clients.access_token)
        return changes

    def workload_identity(self, ctx: StepContext) -> list[Change]:
        return gcp_iam.ensure_bindings(lambda res: gcp_iam.GrpcPolicy(self.clients.iam, res),
                                       bindings_for(self.cfg, "iam"), self.opts.dry_run)

    def rbac(self, t: Target) -> Callable[[StepContext], list[Change]]:
        def run(ctx: StepContext) -> list[Change]:
            cluster = self.target_cluster(t)
            kube = Kube(cluster.api_client(), t.name)
            result = apply_target(kube, t, cluster.endpoint, dry_run=self.opts.dry_run,
                                  allow_delete=self.opts.allow_delete, reprove=self.opts.reprove,
                                  progress=ctx.progress, report=ctx.report)   # says whether it proved, and why
            if result.kubeconfig is not None:
                with self.shared.lock:
                    self.shared.kubeconfigs[t.name] = result.kubeconfig
            return result.changes
        return run

    def halyard(self, ctx: StepContext) -> list[Change]:
        a = self.shared.spinnaker
        if a is None and not self.opts.dry_run:
            raise HalyardError("the Spinnaker cluster cannot be reached yet (see the cluster step: blocked or "
                               "not created), so Halyard was not deployed")
        # A plan before the cluster exists (or has an endpoint) is the same computation against an empty cluster.
        kube = AbsentCluster() if a is None else Kube(a.api_client(), "spinnaker")
        kubeconfigs = dict(self.shared.kubeconfigs)   # plan: from the tokens already issued (apply_target)
        # A grant made moments ago takes minutes to apply; Halyard validates registry accounts by using it.
        iam_wait = IAM_PROPAGATION_SECONDS if self.shared.granted_registry_access else 0

        def run(dry_run: bool) -> list[Change]:
            return apply_halyard(kube, self.cfg, self.files, kubeconfigs, dry_run=dry_run,
                                 progress=ctx.progress, on_line=ctx.output, force=self.opts.force_halyard,
                                 iam_wait_seconds=iam_wait)

        if self.opts.dry_run:
            return run(True)
        # Two runs at once (docs/apply.md, "Two applies at once"): what this step writes, above all the bundle copied
        # into the Halyard pod and configure.sh, happens under the Spinnaker cluster's lock. Planned first, so a run
        # with nothing to do takes no lock and writes nothing; decided again under the lock, so the second of two
        # runs finds the first one's work done (unless --force).
        planned = run(True)
        if not any(c.mutating for c in planned):
            wait_rollout(kube, self.cfg, ctx.progress)   # what apply_halyard does when nothing changed
            return planned
        hns = self.cfg.spinnaker.halyard.namespace
        if kube.get(f"/api/v1/namespaces/{hns}") is None:   # the Lease lives there: a first install makes it first
            from ..render.halyard import halyard_manifests

            kube.apply(next(o for docs in halyard_manifests(self.cfg).values() for o in docs
                            if o["kind"] == "Namespace" and o["metadata"]["name"] == hns))
        with self._lock(kube, ctx):
            # A run killed mid-configure.sh left it running in the pod (its lease expired, its process did not).
            wait_for_leftover(kube, hns, pod_name(), f"{BUNDLE_DIR}/configure.sh", ctx.progress,
                              DEFAULT_TIMEOUT_SECONDS if self.opts.lock_timeout is None else self.opts.lock_timeout)
            return run(False)

    def spinnaker(self, ctx: StepContext) -> list[Change]:
        """The kustomize engine's step (spinboot/kube/kustomize_apply.py): the render's kustomize/ tree built by the
        real kustomize, the target kubeconfig Secret added, applied in waves under the cluster's lock. Planned
        first, so a run with nothing to change takes no lock and writes nothing."""
        from ..kube import kustomize_apply as ka

        built = ka.build_objects(self.files, log=ctx.progress)   # render_all's kustomize/ tree (this engine's)
        kubeconfigs = dict(self.shared.kubeconfigs) if self.cfg.targets else {}
        objs = ka.desired(self.cfg, built, kubeconfigs)
        a = self.shared.spinnaker
        if a is None and not self.opts.dry_run:
            raise KubeError("the Spinnaker cluster cannot be reached yet (see the cluster step: blocked or not "
                            "created), so Spinnaker was not deployed")
        # A plan before the cluster exists (or has an endpoint) is the same computation against an empty cluster.
        kube = AbsentCluster() if a is None else Kube(a.api_client(), "spinnaker")
        # The record of targets --prune reads (spinboot.kube.targets), kept as the Halyard step keeps it.
        ns = self.cfg.spinnaker.state_namespace
        objs.append(record_manifest(ns, {**read_record(kube, ns), **target_record(self.cfg.targets)}))

        def run(dry_run: bool) -> list[Change]:
            return ka.apply_objects(kube, self.cfg, objs, dry_run=dry_run, allow_delete=self.opts.allow_delete,
                                    progress=ctx.progress)

        if self.opts.dry_run:
            return run(True)
        planned = run(True)
        if not any(c.mutating for c in planned):
            ka.wait_rollout(kube, [o for o in objs if o["kind"] in ka.WORKLOADS], ctx.progress)
            return planned
        if kube.get(f"/api/v1/namespaces/{ns}") is None:   # the Lease lives there: a first install makes it first
            kube.apply(next(o for o in objs if o["kind"] == "Namespace" and o["metadata"]["name"] == ns))
        with self._lock(kube, ctx):
            return run(False)

    def _lock(self, kube: Kube, ctx: StepContext) -> LeaseLock:
        """The Spinnaker cluster's lock (spinboot.kube.lock); waiting for it is this step's progress."""
        return LeaseLock(kube, self.cfg.spinnaker.state_namespace, operation=f"{ctx.step.name} step",
                         timeout=self.opts.lock_timeout, progress=ctx.progress, report=ctx.report)

    # --- graphs -----------------------------------------------------------------------------------------------

    def prune_removed(self, ctx: StepContext) -> list[Change]:
        """Remove what spinboot made in targets that were in an earlier file and are not in this one."""
        from ..config.model import Target as TargetModel
        from ..kube.targets import read_record, record_manifest, remove_target

        live = gke.get_cluster(self.clients.container, gke.cluster_name(self.cfg))
        if live is None:
            return []
        a = gke.access_of(live)
        spin = Kube(access.Cluster("spinnaker", a.endpoint, a.ca_pem, token=self.clients.access_token).api_client(),
                    "spinnaker")
        hns = self.cfg.spinnaker.state_namespace
        current = {t.name for t in self.cfg.targets}

        def prune(record: dict) -> list[Change]:
            changes: list[Change] = []
            for name, data in sorted(record.items()):
                if name in current:
                    continue
                gone = TargetModel.model_validate({**data, "namespaces": ["unused"]})
                ctx.progress(f"removing spinboot's RBAC from former target {name}")
                kube = Kube(self.target_cluster(gone).api_client(), name)
                planned = remove_target(kube, name, dry_run=True)
                if planned and not (self.opts.dry_run or self.opts.allow_delete):
                    raise KubeError(f"former target {name}: would delete " + ", ".join(c.ref for c in planned)
                                    + "; re-run with --yes to delete")
                changes += planned if self.opts.dry_run else remove_target(kube, name)
                if not self.opts.dry_run:
                    record.pop(name)
                    spin.apply(record_manifest(hns, record))
            return changes

        record = read_record(spin, hns)
        if self.opts.dry_run or set(record) <= current:
            return prune(record)   # a plan, or nothing to prune: no lock
        # The record is read-modify-written by the Halyard step too; pruning happens under the cluster's lock, and
        # the record is read again there (the run that held the lock before may have pruned already).
        with self._lock(spin, ctx):
            return prune(read_record(spin, hns))

    def rbac_steps(self) -> list[Step]:
        targets = [t for t in self.cfg.targets if not self.opts.only_targets or t.name in self.opts.only_targets]
        steps = [Step(f"rbac:{t.name}", f"RBAC and kubeconfig in {t.name}", self.rbac(t)) for t in targets]
        if self.opts.prune:
            steps.append(Step("rbac:prune", "RBAC of targets removed from the file", self.prune_removed))
        return steps

    def steps(self, stages: tuple[str, ...] = STAGES) -> list[Step]:
        out: list[Step] = []
        sa = "iam:service-accounts"
        if {"pubsub", "halyard", "cluster"} & set(stages):
            out.append(Step(sa, "Google service accounts (Spinnaker's, the nodes')",
                            self.service_accounts(with_nodes="cluster" in stages)))
        if "pubsub" in stages and self.cfg.push_registries:
            out.append(Step("pubsub", "Pub/Sub topics, subscriptions and IAM", self.pubsub, (sa,)))
        if "cluster" in stages:
            # The node pool runs as the nodes' service account, so it must exist first.
            out.append(Step("cluster", f"GKE cluster {self.cfg.cluster.name}", self.cluster, (sa,)))
        rbac = self.rbac_steps() if "rbac" in stages else []
        out += rbac
        if "halyard" in stages:
            out.append(Step("storage", f"GCS bucket {self.cfg.spinnaker.storage.bucket}", self.storage, (sa,)))
            deps = [sa, "storage"]
            if bindings_for(self.cfg, "artifactregistry"):
                # Halyard validates docker-registry accounts by reading the registry as Spinnaker.
                out.append(Step("registry-access", "Artifact Registry read access", self.registry_access, (sa,)))
                deps.append("registry-access")
            if "cluster" in stages:
                out.append(Step("iam:workload-identity", "Workload Identity for Spinnaker's pods", self.workload_identity,
                                (sa, "cluster")))
                deps += ["cluster", "iam:workload-identity"]
            deps += [s.name for s in rbac] + (["pubsub"] if any(s.name == "pubsub" for s in out) else [])
            if engine_of(self.cfg) == "kustomize":   # the same inputs; spinboot applies the build itself
                out.append(Step("spinnaker", "Spinnaker (kustomize build, server-side apply)", self.spinnaker,
                                tuple(deps)))
            else:
                out.append(Step("halyard", "Halyard and Spinnaker", self.halyard, tuple(deps)))
        return out


def engine_of(cfg: SpinbootConfig) -> str:
    """``spinnaker.engine``; absent, kustomize from 2026.1.0 on and halyard before (docs/engines.md). A model
    without the field (before the kustomize engine's config) means halyard."""
    if "engine" not in type(cfg.spinnaker).model_fields:
        return "halyard"
    engine = getattr(cfg.spinnaker, "engine", None)
    if engine:
        return str(getattr(engine, "value", engine))
    from ..config.names import SpinnakerVersion

    return "kustomize" if SpinnakerVersion(cfg.spinnaker.version).halyard_unsupported else "halyard"


def _count_nodes(kube: Kube, pool: str) -> int:
    """The pool's live size: GKE's API does not report it, the cluster's Node objects do."""
    _, data = kube.request("GET", "/api/v1/nodes", query={"labelSelector": f"{gke.POOL_LABEL}={pool}"})
    return len(data.get("items", []))
