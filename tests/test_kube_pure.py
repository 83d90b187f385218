"""Pure parts of spinboot.kube: comparing desired and live objects, minting kubeconfigs."""

from __future__ import annotations

import base64

import yaml

from spinboot.kube.podexec import tar_gz
from spinboot.kube.resources import APPLIED_HASH, changed_paths, contains, same_object, with_applied_hash
from spinboot.kube.targets import mint_kubeconfig


def test_contains_ignores_what_the_server_adds():
    want = {"spec": {"ports": [{"port": 8064}], "selector": {"app": "h"}}}
    live = {"metadata": {"uid": "x"}, "spec": {"ports": [{"port": 8064, "protocol": "TCP"}], "selector": {"app": "h"},
                                                "clusterIP": "10.0.0.1"}}
    assert contains(live, want)


def test_contains_sees_changed_values_and_list_lengths():
    want = {"subjects": [{"name": "a"}, {"name": "b"}], "rules": [{"verbs": ["get"]}]}
    assert not contains({"subjects": [{"name": "a"}], "rules": [{"verbs": ["get"]}]}, want)



def test_a_dry_run_result_is_compared_without_server_fields_and_names_removed_ones():
    live = {"kind": "Secret", "metadata": {"name": "s", "resourceVersion": "5", "managedFields": [{"manager": "x"}],
                                           "labels": {"a": "1", "gone": "2"}},
            "data": {"platform.kubeconfig": "c2VjcmV0", "platform-lab.kubeconfig": "c2VjcmV0"}}
    same = {**live, "metadata": {**live["metadata"], "resourceVersion": "6", "managedFields": []}}
    assert same_object(live, same)
    after = {"kind": "Secret", "metadata": {"name": "s", "labels": {"a": "1"}},
             "data": {"platform.kubeconfig": "c2VjcmV0"}}
    assert not same_object(live, after)
    # Paths only, never values (this is a Secret).
    assert changed_paths(live, after) == ["-data.platform-lab.kubeconfig", "-metadata.labels.gone"]


def test_applied_hash_follows_the_desired_object_only():
    a = {"kind": "ConfigMap", "metadata": {"name": "c", "labels": {"x": "1"}}, "data": {"k": "v"}}
    ha = with_applied_hash(a)["metadata"]["annotations"][APPLIED_HASH]
    assert with_applied_hash(with_applied_hash(a))["metadata"]["annotations"][APPLIED_HASH] == ha
    dropped = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    assert with_applied_hash(dropped)["metadata"]["annotations"][APPLIED_HASH] != ha


def test_minted_kubeconfig_has_one_context_named_after_the_target():
    doc = yaml.safe_load(mint_kubeconfig("platform", "https://10.0.0.1", "CA PEM", "tok"))
    assert doc["current-context"] == "platform"
    assert [c["name"] for c in doc["contexts"]] == ["platform"]
    assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == b"CA PEM"
    assert doc["users"][0]["user"] == {"token": "tok"}


def test_tar_is_deterministic():
    files = {"configure.sh": (b"#!/bin/sh\n", 0o755), "profiles/gate-local.yml": (b"{}\n", 0o644)}
    assert tar_gz(files) == tar_gz(dict(reversed(list(files.items()))))
