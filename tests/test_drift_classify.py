"""spinboot drift's classification (pure): which class each object lands in, and with which writer."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from spinboot.config.model import Target
from spinboot.ops.drift import (AuditWrite, audit_filter, audit_findings, classify, expected_managed_by,
                                field_paths, parse_since, skip_reason, writer_of)

SPIN_ANN = {"moniker.spinnaker.io/application": "web", "moniker.spinnaker.io/cluster": "deployment web",
            "artifact.spinnaker.io/type": "kubernetes/deployment"}


def entry(manager, time, fields=None, operation="Update", subresource=None):
    e = {"manager": manager, "operation": operation, "time": time, "fieldsType": "FieldsV1",
         "fieldsV1": fields or {"f:metadata": {"f:labels": {"f:app": {}}}}}
    if subresource:
        e["subresource"] = subresource
    return e


def obj(entries, annotations=None, labels=None, name="web", **extra):
    meta = {"name": name, "namespace": "prod", "creationTimestamp": "2026-11-27T10:00:00Z", "managedFields": entries}
    if annotations is not None:
        meta["annotations"] = annotations
    if labels is not None:
        meta["labels"] = labels
    return {"metadata": meta, **extra}


def spin(entries, managed_by="spinnaker"):
    return obj(entries, dict(SPIN_ANN), {"app.kubernetes.io/managed-by": managed_by})


def test_hand_made_object_is_unmanaged_with_its_writer_and_time():
    f = classify("platform", "prod", "Deployment", obj([entry("kubectl-client-side-apply", "2026-11-27T10:00:01Z")]),
                 "spinnaker")
    assert (f.klass, f.writer, f.manager, f.at) == ("unmanaged", "kubectl (by hand)", "kubectl-client-side-apply",
                                                      "2026-11-27T10:00:01Z")


@pytest.mark.parametrize("manager,writer", [("helm", "Helm"), ("argocd-controller", "Argo CD"),
                                            ("kustomize-controller", "Flux"), ("terraform", "unknown (terraform)")])
def test_unmanaged_writer_names(manager, writer):
    assert classify("t", "prod", "Service", obj([entry(manager, "2026-11-27T10:00:01Z")]), "spinnaker").writer == writer
    assert writer_of(manager) == writer


def test_spinnaker_deployment_untouched_is_not_drift():
    o = spin([entry("kubectl-client-side-apply", "2026-11-27T10:00:01Z"),
              entry("kube-controller-manager", "2026-11-27T10:00:05Z", subresource="status")])
    assert classify("t", "prod", "Deployment", o, "spinnaker") is None


@pytest.mark.parametrize("manager", ["kubectl-edit", "kubectl-set", "kubectl-label", "kubectl-annotate",
                                     "kubectl-scale", "kubectl-patch"])
def test_change_after_spinnakers_last_write_is_tampered(manager):
    o = spin([entry("kubectl-client-side-apply", "2026-11-27T10:00:01Z"),
              entry(manager, "2026-11-27T10:05:00Z", {"f:spec": {"f:replicas": {}}})])
    f = classify("t", "prod", "Deployment", o, "spinnaker")
    assert (f.klass, f.manager, f.at) == ("tampered", manager, "2026-11-27T10:05:00Z")
    assert "spec.replicas" in f.detail
    assert ("--audit" in f.detail) == (manager in ("kubectl-scale", "kubectl-patch"))


def test_kubectl_scale_as_the_real_kubectl_leaves_it():
    """kubectl 1.32's scale: manager "kubectl" on the scale subresource, no time recorded (seen on the sandbox)."""
    o = spin([entry("kubectl-client-side-apply", "2026-11-27T10:00:01Z"),
              entry("kubectl", None, {"f:spec": {"f:replicas": {}}}, subresource="scale")])
    f = classify("t", "prod", "Deployment", o, "spinnaker")
    assert (f.klass, f.manager, f.at, f.writer) == ("tampered", "kubectl", None, "kubectl (by hand)")
    assert "scale subresource" in f.detail and "spec.replicas" in f.detail
    # The same name by server-side apply is a deploy, not a change.
    ssa = spin([entry("kubectl", "2026-11-27T10:00:01Z", operation="Apply")])
    assert classify("t", "prod", "Deployment", ssa, "spinnaker") is None


def test_change_overwritten_by_a_later_spinnaker_deploy_is_not_drift():
    o = spin([entry("kubectl-edit", "2026-11-27T10:00:01Z"), entry("kubectl-client-side-apply", "2026-11-27T10:09:00Z")])
    assert classify("t", "prod", "Deployment", o, "spinnaker") is None


def test_restart_and_hpa_replicas_are_not_tampering():
    restart = {"f:spec": {"f:template": {"f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/restartedAt": {}}}}}}
    o = spin([entry("kubectl-client-side-apply", "2026-11-27T10:00:01Z"), entry("kubectl-patch", "2026-11-27T11:00:00Z", restart)])
    assert classify("t", "prod", "Deployment", o, "spinnaker") is None
    scaled = spin([entry("kubectl-client-side-apply", "2026-11-27T10:00:01Z"),
                   entry("kubectl", None, {"f:spec": {"f:replicas": {}}}, subresource="scale")])
    assert classify("t", "prod", "Deployment", scaled, "spinnaker", frozenset({("Deployment", "web")})) is None
    assert classify("t", "prod", "Deployment", scaled, "spinnaker").klass == "tampered"


def test_another_installs_suffix_is_foreign_and_ours_is_not():
    assert expected_managed_by(None) == "spinnaker" and expected_managed_by("prod") == "spinnaker-prod"
    o = spin([entry("kubectl-client-side-apply", "2026-11-27T10:00:01Z")], managed_by="spinnaker-lab")
    f = classify("t", "prod", "Deployment", o, "spinnaker-prod")
    assert (f.klass, f.writer) == ("foreign", "managed-by spinnaker-lab")
    assert classify("t", "prod", "Deployment", o, "spinnaker-lab") is None


def test_skipped_objects():
    assert skip_reason("ReplicaSet", {"metadata": {"name": "web-1", "ownerReferences": [{"kind": "Deployment"}]}}) == "owned"
    assert skip_reason("ConfigMap", {"metadata": {"name": "kube-root-ca.crt"}}) == "injected"
    assert skip_reason("Secret", {"metadata": {"name": "x"}, "type": "helm.sh/release.v1"}) == "record"
    assert skip_reason("Secret", {"metadata": {"name": "t"}, "type": "kubernetes.io/service-account-token"}) == "record"
    assert skip_reason("ConfigMap", {"metadata": {"name": "istio-ca-root-cert"}}, ["configmap/istio-*"]) == "ignored"
    assert skip_reason("Secret", {"metadata": {"name": "istio-ca-root-cert"}}, ["ConfigMap/istio-*"]) is None
    assert skip_reason("Deployment", {"metadata": {"name": "web"}}) is None


def test_field_paths():
    assert field_paths({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
        'k:{"name":"web"}': {".": {}, "f:image": {}}}}}}}) == [
        "spec.replicas", 'spec.template.spec.containers[{"name":"web"}].image']


def test_audit_findings_leave_out_spinnaker_known_principals_and_spinboots_objects():
    t = Target.model_validate({"name": "platform", "gke": {"project": "acme-platform", "location": "us-central1", "cluster": "platform"},
                               "namespaces": ["prod", "dev"]})
    w = [AuditWrite("system:serviceaccount:spinnaker:spinnaker", "io.k8s.apps.v1.deployments.update",
                    "apps/v1/namespaces/prod/deployments/web", "2026-11-27T10:00:00Z"),
         AuditWrite("alice@acme.dev", "io.k8s.apps.v1.deployments.scale.patch",
                    "apps/v1/namespaces/prod/deployments/web/scale", "2026-11-27T10:01:00Z"),
         AuditWrite("alice@acme.dev", "io.k8s.apps.v1.deployments.patch",
                    "apps/v1/namespaces/prod/deployments/web", "2026-11-27T10:02:00Z"),
         AuditWrite("argocd@acme.dev", "io.k8s.core.v1.configmaps.create",
                    "core/v1/namespaces/dev/configmaps/x", "2026-11-27T10:00:00Z"),
         AuditWrite("bob@acme.dev", "io.k8s.core.v1.configmaps.create",
                    "core/v1/namespaces/other/configmaps/x", "2026-11-27T10:00:00Z"),
         AuditWrite("ci@acme.dev", "io.k8s.authorization.rbac.v1.rolebindings.create",
                    "rbac.authorization.k8s.io/v1/namespaces/prod/rolebindings/spinnaker", "2026-11-27T10:00:00Z")]
    out = audit_findings(t, w, ["argocd@acme.dev"], {("prod", "rolebindings", "spinnaker")})
    assert [(f.namespace, f.kind, f.name, f.principal, f.at) for f in out] == [
        ("prod", "deployments", "web", "alice@acme.dev", "2026-11-27T10:02:00Z")]


def test_audit_filter_and_since():
    since = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
    f = audit_filter("p", "us-central1", "c", "prod", since)
    assert 'logName="projects/p/logs/cloudaudit.googleapis.com%2Factivity"' in f
    assert 'protoPayload.resourceName:"/namespaces/prod/"' in f and 'timestamp>="2026-11-27T10:00:00Z"' in f
    assert parse_since("2h") < datetime.now(timezone.utc)
    with pytest.raises(ValueError):
        parse_since("2 weeks")


def test_cronjob_runs_with_nothing_but_spinnakers_kubeconfigs():
    from spinboot.config import load_config
    from spinboot.ops.drift import cronjob_manifests

    from .conftest import EXAMPLES

    cfg = load_config(EXAMPLES / "spinboot.yaml").config
    sa, cm, cron = cronjob_manifests(cfg, "img:1", "*/30 * * * *", "project: x\n")
    assert (sa["kind"], cm["kind"], cron["kind"]) == ("ServiceAccount", "ConfigMap", "CronJob")
    assert cron["metadata"]["namespace"] == cfg.spinnaker.halyard.namespace and cron["spec"]["schedule"] == "*/30 * * * *"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and sa["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    assert c["args"][:1] == ["drift"] and "--kubeconfig-dir" in c["args"] and "--audit" not in c["args"]
    assert c["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]
    secret = next(v["secret"] for v in pod["volumes"] if "secret" in v)
    assert secret == {"secretName": "spinboot-target-kubeconfigs", "defaultMode": 0o400}
    assert cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0


def test_bad_flags_exit_2_before_anything_remote(cli, monkeypatch):
    from .conftest import EXAMPLES

    monkeypatch.delenv("SPINBOOT_SANDBOX", raising=False)
    for args, word in ((["--target", "nope"], "--target nope"), (["--namespace", "kube-system"], "--namespace"),
                       (["--since", "forever"], "--since")):
        r = cli("drift", "-c", EXAMPLES / "spinboot.yaml", "--output", "json", *args)
        assert r.exit_code == 2 and word in r.stdout, r.stdout


def test_managed_by_suffix_reaches_clouddriver_local():
    import yaml

    from spinboot.config.model import SpinbootConfig
    from spinboot.render.profiles import clouddriver_local
    from spinboot.config import load_config

    from .conftest import EXAMPLES

    cfg = load_config(EXAMPLES / "spinboot.yaml").config
    assert "managed-by-suffix" not in clouddriver_local(cfg).decode()
    with_suffix = SpinbootConfig.model_validate({**cfg.model_dump(by_alias=True), "drift": {"managedBySuffix": "prod"}})
    assert yaml.safe_load(clouddriver_local(with_suffix))["kubernetes"]["v2"] == {"managed-by-suffix": "prod"}
