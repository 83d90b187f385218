"""Pure parts of spinboot.kube: comparing desired and live objects, minting kubeconfigs."""

from __future__ import annotations

import base64

import yaml

from spinboot.kube.podexec import tar_gz
from spinboot.kube.resources import contains, differences
from spinboot.kube.targets import mint_kubeconfig


def test_contains_ignores_what_the_server_adds():
    want = {"spec": {"ports": [{"port": 8064}], "selector": {"app": "h"}}}
    live = {"metadata": {"uid": "x"}, "spec": {"ports": [{"port": 8064, "protocol": "TCP"}], "selector": {"app": "h"},
                                                "clusterIP": "10.0.0.1"}}
    assert contains(live, want)
    assert differences(live, want) == []


def test_contains_sees_changed_values_and_list_lengths():
    want = {"subjects": [{"name": "a"}, {"name": "b"}], "rules": [{"verbs": ["get"]}]}
    assert not contains({"subjects": [{"name": "a"}], "rules": [{"verbs": ["get"]}]}, want)
    assert differences({"subjects": [{"name": "a"}, {"name": "c"}], "rules": [{"verbs": ["list"]}]}, want) == \
        ["subjects[1].name", "rules[0].verbs[0]"]


def test_minted_kubeconfig_has_one_context_named_after_the_target():
    doc = yaml.safe_load(mint_kubeconfig("platform", "https://10.0.0.1", "CA PEM", "tok"))
    assert doc["current-context"] == "platform"
    assert [c["name"] for c in doc["contexts"]] == ["platform"]
    assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == b"CA PEM"
    assert doc["users"][0]["user"] == {"token": "tok"}


def test_tar_is_deterministic():
    files = {"configure.sh": (b"#!/bin/sh\n", 0o755), "profiles/gate-local.yml": (b"{}\n", 0o644)}
    assert tar_gz(files) == tar_gz(dict(reversed(list(files.items()))))
