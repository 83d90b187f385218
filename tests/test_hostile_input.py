"""Hostile and malformed spinboot files (issue 6, item 4).

Two promises are tested here. First, whatever bytes the file holds, `spinboot validate` answers exit 2 with a
`FILE:LINE:COL: field.path: ...` line and never a traceback: wrong types, nulls, huge or negative numbers, look-alike
letters, non-UTF-8, BOMs, duplicate keys, alias bombs, deep nesting, tags, several documents, non-string keys and
shell metacharacters in every string that reaches configure.sh. Second, values that are allowed to hold unusual
characters can never inject into the rendered script: each `hal` line parses to exactly the argv expected, the
script passes `bash -n`, and free-form values that do not belong in the script (kubeconfig path and context) are
absent from it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from string import Template

import pytest
import yaml

from spinboot.config.loader import ConfigError, load_config_bytes
from spinboot.render import render_all
from spinboot.render.halgrammar import check_script, load_grammar, parse_script

from .conftest import MINIMAL

# Every string field that reaches configure.sh (or a rendered manifest) is a $placeholder, with its field path and
# line. Values are written as JSON strings, which YAML reads as double-quoted scalars: any payload fits.
FULL = Template("""\
project: $project
cluster: {name: $cluster_name, location: us-central1-b}
spinnaker:
  version: $version
  namespace: $namespace
  deployAccount: $deploy_account
  halyard: {namespace: $halyard_namespace, image: $image}
  storage: {bucket: $bucket, location: $storage_location, rootFolder: $root_folder}
  exposure: {uiUrl: $ui_url, apiUrl: $api_url}
  clouddriver: {sizing: {requestsMemory: $requests_memory, limitsMemory: 12Gi}}
  artifacts:
    gcs: [{name: $gcs_name}]
    github: [{name: $github_name, tokenSecret: {name: $secret_name, key: $secret_key}}]
targets:
  - name: $target_name
    gke: {project: acme-platform, location: us-central1, cluster: platform}
    namespaces: [prod, $namespace_item]
  - name: onprem
    kubeconfig: {path: $kube_path, context: $kube_context}
    namespaces: [apps]
registries:
  - name: $registry_name
    project: acme-platform
    address: $address
    repositories: [$repository]
    subscription: {name: $subscription}
""")

# placeholder: (valid value, field path, line)
FIELDS = {
    "project": ("acme-platform", "project", 1),
    "cluster_name": ("spinnaker", "cluster.name", 2),
    "version": ("2026.2.3", "spinnaker.version", 4),
    "namespace": ("spinnaker", "spinnaker.namespace", 5),
    "deploy_account": ("spinnaker-install", "spinnaker.deployAccount", 6),
    "halyard_namespace": ("halyard", "spinnaker.halyard.namespace", 7),
    "image": ("ghcr.io/spinnaker/halyard:2026.2.3", "spinnaker.halyard.image", 7),
    "bucket": ("acme-spinnaker", "spinnaker.storage.bucket", 8),
    "storage_location": ("us", "spinnaker.storage.location", 8),
    "root_folder": ("front50", "spinnaker.storage.rootFolder", 8),
    "ui_url": ("https://spinnaker.acme.dev", "spinnaker.exposure.uiUrl", 9),
    "api_url": ("https://spinnaker.acme.dev/gate", "spinnaker.exposure.apiUrl", 9),
    "requests_memory": ("8Gi", "spinnaker.clouddriver.sizing.requestsMemory", 10),
    "gcs_name": ("gcs-artifacts", "spinnaker.artifacts.gcs[0].name", 12),
    "github_name": ("gh", "spinnaker.artifacts.github[0].name", 13),
    "secret_name": ("github-token", "spinnaker.artifacts.github[0].tokenSecret.name", 13),
    "secret_key": ("token", "spinnaker.artifacts.github[0].tokenSecret.key", 13),
    "target_name": ("platform", "targets[0].name", 15),
    "namespace_item": ("dev", "targets[0].namespaces[1]", 17),
    "kube_path": ("/etc/spinboot/onprem.kubeconfig", "targets[1].kubeconfig.path", 19),
    "kube_context": ("onprem-admin", "targets[1].kubeconfig.context", 19),
    "registry_name": ("images", "registries[0].name", 22),
    "address": ("us-docker.pkg.dev", "registries[0].address", 24),
    "repository": ("acme-platform/acme/tasks", "registries[0].repositories[0]", 25),
    "subscription": ("spinnaker-gcr", "registries[0].subscription.name", 26),
}


def full(**values: str) -> str:
    """The full file with the given fields replaced (each written as a double-quoted YAML string)."""
    return FULL.substitute({k: json.dumps(values.get(k, v[0])) for k, v in FIELDS.items()})


def halyard_engine(text: str) -> str:
    """``text`` deployed by Halyard (configure.sh is rendered for the halyard engine only; from 2026.1.0 an unset
    engine is kustomize). Not in FULL itself, whose line numbers the cases above name."""
    return text.replace("\n  namespace: ", "\n  engine: halyard\n  namespace: ", 1)


# Payloads aimed at configure.sh: command substitution, backticks, separators, quotes, newlines, globbing.
SHELL = {
    "dollar-paren": "x$(touch /tmp/spinboot-pwned)",
    "backticks": "x`id`",
    "semicolon": "x; rm -rf ~",
    "single-quote": "x'y",
    "double-quote": 'x"y',
    "newline": "x\nhal deploy apply",
    "pipe-amp": "x|y&z",
    "dollar-var": "$HOME",
    "space-glob": "x *",
}
# Which payload goes to which field: every script-bound field gets at least one, cycling through the payloads.
SCRIPT_FIELDS = ["target_name", "namespace_item", "address", "repository", "ui_url", "api_url", "bucket", "version",
                 "subscription", "gcs_name", "github_name", "secret_name", "secret_key", "storage_location",
                 "root_folder", "deploy_account", "namespace", "halyard_namespace", "image", "requests_memory",
                 "registry_name", "cluster_name", "project"]
_payloads = list(SHELL.items())
INJECTION_CASES = [
    (f"{field}-{_payloads[i % len(_payloads)][0]}", full(**{field: _payloads[i % len(_payloads)][1]}),
     FIELDS[field][1], FIELDS[field][2], None)
    for i, field in enumerate(SCRIPT_FIELDS)
]
# Kubeconfig path and context never reach the script and may hold unusual text, but not control characters.
INJECTION_CASES += [
    ("kube-context-newline", full(kube_context="ctx\nhal deploy apply"), "targets[1].kubeconfig.context", 19,
     "control character U+000A"),
    ("kube-path-nul", full(kube_path="/etc/k\x00.kubeconfig"), "targets[1].kubeconfig.path", 19,
     "control character U+0000"),
    ("kube-context-escape", full(kube_context="\x1b[2Jctx"), "targets[1].kubeconfig.context", 19,
     "control character U+001B"),
    ("secret-key-dotdot", full(secret_key=".."), "spinnaker.artifacts.github[0].tokenSecret.key", 13, "not '.' or '..'"),
    ("url-query", full(ui_url="https://a.dev/?x=$(id)"), "spinnaker.exposure.uiUrl", 9, "not a URL"),
    ("url-userinfo", full(api_url="https://user:pw@a.dev"), "spinnaker.exposure.apiUrl", 9, "not a URL"),
]

BASE = MINIMAL.split("targets:")[0]
DEEP = 200


def minimal(old: str, new: str) -> str:
    assert old in MINIMAL, old
    return MINIMAL.replace(old, new, 1)


CLUSTER = "cluster: {name: spinnaker, location: us-central1-b}"
LOC = "location: us-central1-b}"
NS = "namespaces: [prod]"
ALIAS_BOMB = "".join(f"{k}: &{k} [{', '.join(['*' + p] * 10) if p else '1, 1, 1, 1, 1, 1, 1, 1, 1, 1'}]\n"
                     for p, k in zip(["", "a", "b", "c", "d", "e", "f"], "abcdefg"))

# (id, file text or bytes, field path, line, text the message must contain or None)
STRUCTURE_CASES = [
    # wrong types and nulls, at every level
    ("top-level-list", "- project\n- cluster\n", "(file)", 1, "top level is a list"),
    ("top-level-null", "~\n", "(file)", 1, "top level is a NoneType"),
    ("cluster-null", minimal(CLUSTER, "cluster: null"), "cluster", 3, "expected a mapping"),
    ("storage-null", minimal("storage: {bucket: acme-spinnaker}", "storage: ~"), "spinnaker.storage", 6,
     "expected a mapping"),
    ("target-null", minimal("  - name: platform\n    gke: {project: acme-platform, location: us-central1, "
                            "cluster: platform}\n    namespaces: [prod]\n", "  - null\n"), "targets[0]", 10,
     "expected a mapping"),
    ("project-list", minimal("project: acme-platform", "project: [acme-platform]"), "project", 2, "valid string"),
    ("namespaces-string", minimal(NS, "namespaces: prod"), "targets[0].namespaces", 12, "expected a list"),
    ("namespace-null-item", minimal(NS, "namespaces: [~]"), "targets[0].namespaces[0]", 12,
     "~ is read as no value"),
    ("namespace-nested-list", minimal(NS, "namespaces: [[prod]]"), "targets[0].namespaces[0]", 12, "valid string"),
    ("registries-mapping", MINIMAL + "registries: {images: x}\n", "registries", 13, "expected a list"),
    ("private-nodes-maybe", minimal(LOC, "location: us-central1-b, privateNodes: maybe}"), "cluster.privateNodes", 3,
     "not a boolean"),
    ("node-count-string", minimal(LOC, "location: us-central1-b, nodePool: {nodeCount: \"2; reboot\"}}"),
     "cluster.nodePool.nodeCount", 3, "not a whole number"),
    ("version-timestamp", minimal("version: 2026.2.3", "version: 2026-02-03"), "spinnaker.version", 5,
     "read by YAML as the date 2026-02-03, not text"),
    ("version-bad-date", minimal("version: 2026.2.3", "version: 2026-13-45"), "spinnaker.version", 5,
     "cannot be read as !!timestamp"),
    ("name-is-bool", minimal("name: platform", "name: yes"), "targets[0].name", 10,
     'yes is read by YAML as the boolean true, not text (allowed: text; quote it: "yes")'),
    # huge, negative, non-finite numbers
    ("node-count-10e30", minimal(LOC, f"location: us-central1-b, nodePool: {{nodeCount: {10**30}}}}}"),
     "cluster.nodePool.nodeCount", 3, "out of range"),
    ("disk-negative", minimal(LOC, "location: us-central1-b, nodePool: {diskSizeGb: -100}}"),
     "cluster.nodePool.diskSizeGb", 3, "out of range"),
    ("node-count-inf", minimal(LOC, "location: us-central1-b, nodePool: {nodeCount: .inf}}"),
     "cluster.nodePool.nodeCount", 3, "finite number"),
    ("node-count-nan", minimal(LOC, "location: us-central1-b, nodePool: {nodeCount: .nan}}"),
     "cluster.nodePool.nodeCount", 3, "finite number"),
    ("node-count-5000-digits", minimal(LOC, "location: us-central1-b, nodePool: {nodeCount: " + "9" * 5000 + "}}"),
     "cluster.nodePool.nodeCount", 3, "cannot be read as !!int"),
    ("node-count-huge-hex", minimal(LOC, "location: us-central1-b, nodePool: {nodeCount: 0x" + "f" * 5000 + "}}"),
     "cluster.nodePool.nodeCount", 3, "20000-bit number is out of range"),
    ("list-of-huge-hex", minimal(CLUSTER, "cluster: [0x" + "f" * 5000 + "]"), "cluster", 3,
     "number too long to print"),
    ("project-5000-digits", minimal("project: acme-platform", "project: " + "7" * 5000), "project", 2,
     "cannot be read as !!int"),
    # look-alikes and invisible characters
    ("cyrillic-a-in-target", minimal("name: platform", "name: pl\u0430tform"), "targets[0].name", 10,
     "not a valid Spinnaker account name"),
    ("cyrillic-o-in-namespace", minimal(NS, "namespaces: [pr\u043ed]"), "targets[0].namespaces[0]", 12,
     "not a valid Kubernetes name"),
    ("fullwidth-bucket", minimal("bucket: acme-spinnaker", "bucket: \uff41cme-spinnaker"), "spinnaker.storage.bucket",
     6, "not a valid bucket name"),
    ("zero-width-project", minimal("project: acme-platform", "project: acme\u200b-platform"), "project", 2,
     "not a valid project ID"),
    ("rtl-override-cluster", minimal("name: spinnaker,", "name: \"spin\u202enaker\","), "cluster.name", 3,
     "not a valid GKE name"),
    # bytes
    ("non-utf8-in-name", minimal("name: platform", "name: plat\udcffform").encode("utf-8", "surrogateescape"),
     "targets[0].name", 10, "not UTF-8"),
    ("utf16-file", MINIMAL.encode("utf-16"), "(file)", 1, "not UTF-8"),
    ("bom-then-error", ("\ufeff" + minimal("project: acme-platform", "project: Acme")).encode(), "project", 2,
     "not a valid project ID"),
    ("nul-byte", minimal("project: acme-platform", "project: acme\x00platform"), "project", 2, "U+0000"),
    ("bell-in-namespace", minimal(NS, "namespaces: [pr\x07od]"), "targets[0].namespaces[0]", 12, "U+0007"),
    # YAML structure
    ("duplicate-nested-key", minimal("    namespaces: [prod]", "    namespaces: [prod]\n    name: again"),
     "targets[0].name", 13, "duplicate key 'name', first given on line 10"),
    ("alias-bomb", BASE + ALIAS_BOMB, None, None, "expands to more than 10000 values"),
    ("alias-self-reference", MINIMAL + "x: &loop [*loop]\n", "x[0]", 13, "refers to the mapping or list that contains"),
    ("merge-self-reference", MINIMAL + "x: &m {<<: *m}\n", "x", 13, "refers to the mapping or list that contains"),
    ("deep-flow-nesting", minimal(NS, "namespaces: " + "[" * DEEP + "]" * DEEP), None, 12, "nested more than 64"),
    ("deep-block-nesting", MINIMAL + "x:\n" + "".join("  " * (i + 1) + "a:\n" for i in range(DEEP)) + "  " * (DEEP + 1)
     + "b: 1\n", None, None, "nested more than 64"),
    ("very-long-string", minimal("project: acme-platform", "project: " + "a" * 200_000), "project", 2,
     "(200002 characters)"),
    ("tab-indentation", minimal("  version:", "\tversion:"), "spinnaker", 5, "not valid YAML"),
    ("python-object-tag", minimal("project: acme-platform", "project: !!python/object/apply:os.system [id]"),
     "project", 2, "tag !!python/object/apply:os.system is not allowed"),
    ("python-name-scalar", minimal("bucket: acme-spinnaker", "bucket: !!python/name:os.system ''"),
     "spinnaker.storage.bucket", 6, "not valid YAML"),
    ("custom-tag", minimal(NS, "namespaces: [!shell prod]"), "targets[0].namespaces[0]", 12, "not valid YAML"),
    ("set-tag", minimal(NS, "namespaces: !!set {prod}"), "targets[0].namespaces", 12, "tag !!set is not allowed"),
    ("two-documents", MINIMAL + "---\n" + MINIMAL, "(file)", 13, "expected a single document"),
    ("undefined-alias", minimal(NS, "namespaces: [*prod]"), "targets[0].namespaces[0]", 12, "undefined alias"),
    # keys that are not strings
    ("int-key", MINIMAL + "1: x\n", "1", 13, "unknown key '1'"),
    ("list-key-top", MINIMAL + "[a]: b\n", "(file)", 13, "a key must be a plain string"),
    ("list-key-nested", minimal(CLUSTER, "cluster: {name: spinnaker, location: us-central1-b, [a]: b}"), "cluster", 3,
     "a key must be a plain string"),
    ("mapping-key", minimal("    namespaces: [prod]", "    namespaces: [prod]\n    ? {a: 1}\n    : b"), "targets[0]", 13,
     "a key must be a plain string"),
    ("newline-key", MINIMAL + "\"evil\\nkey\": x\n", "'evil\\nkey'", 13, "unknown key"),
]

CASES = STRUCTURE_CASES + INJECTION_CASES

PROBLEM = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<path>.+?): (?P<message>.*)$")


def test_the_full_file_is_valid():
    """The base of the injection cases is valid, so each case's only problem is the field it changes."""
    loaded = load_config_bytes(full().encode(), "full.yaml")
    assert [t.name for t in loaded.config.targets] == ["platform", "onprem"]


def test_there_are_at_least_40_hostile_files():
    assert len(CASES) >= 40
    assert set(SCRIPT_FIELDS) <= set(FIELDS)


@pytest.mark.parametrize("case_id,content,path,line,needle", CASES, ids=[c[0] for c in CASES])
def test_hostile_file_exits_2_naming_file_line_column_and_field(cli, tmp_path, case_id, content, path, line, needle):
    f = tmp_path / "spinboot.yaml"
    f.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    result = cli("validate", "-c", f)
    output = result.output
    assert result.exit_code == 2, output[:2000]
    assert "Traceback" not in output
    assert len(output) < 20_000, "a hostile value must not be echoed whole"
    found = [m for m in map(PROBLEM.match, result.stderr.splitlines()) if m and m["file"] == str(f)
             and not m["message"].startswith("warning:")]
    assert found, f"no FILE:LINE:COL: path: message line:\n{result.stderr[:2000]}"
    if path is not None:
        found = [m for m in found if m["path"] == path]
        assert found, f"no problem names {path!r}:\n{result.stderr[:2000]}"
    if line is not None:
        assert any(int(m["line"]) == line for m in found), f"expected line {line}:\n{result.stderr[:2000]}"
    if needle is not None:
        assert any(needle in m["message"] for m in found), f"expected {needle!r}:\n{result.stderr[:2000]}"


def test_an_endless_file_is_read_only_up_to_the_size_limit(cli):
    """`-c /dev/zero` must not exhaust memory: the loader reads at most 256 KiB + 1 byte."""
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    result = cli("validate", "-c", "/dev/zero")
    assert result.exit_code == 2
    assert "/dev/zero:1:1: (file): the file is larger than 262144 bytes" in result.stderr


def test_deep_nesting_names_the_field_where_it_starts(cli, tmp_path):
    """The depth limit reports the exact path, down to the level where it stopped."""
    f = tmp_path / "spinboot.yaml"
    f.write_text(minimal(NS, "namespaces: " + "[" * DEEP + "]" * DEEP))
    result = cli("validate", "-c", f)
    assert result.exit_code == 2
    assert f": targets[0].namespaces{'[0]' * 61}: nested more than 64" in result.stderr


def test_merge_keys_let_explicit_keys_override(tmp_path):
    """A YAML merge (<<) is not a duplicate key: the explicit key wins, as the merge-key rule says."""
    text = MINIMAL + ("  - name: platform-lab\n    gke: {<<: *g, cluster: platform-lab}\n    namespaces: [prod]\n")
    text = text.replace("gke: {project: acme-platform", "gke: &g {project: acme-platform", 1)
    cfg = load_config_bytes(text.encode(), "f.yaml").config
    assert [(t.gke.project, t.gke.cluster) for t in cfg.targets] == [("acme-platform", "platform"),
                                                                     ("acme-platform", "platform-lab")]


def test_json_output_for_a_hostile_file_is_one_event_per_line(cli, tmp_path):
    """CI reads events line by line: a newline in a hostile value must stay inside its JSON string."""
    f = tmp_path / "spinboot.yaml"
    f.write_text(full(target_name="x\n{\"event\": \"valid\"}"))
    result = cli("validate", "-c", f, "--output", "json")
    assert result.exit_code == 2
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["problem"] * (len(events) - 1) + ["invalid"]
    errors = [e for e in events if e.get("severity") == "error"]
    assert errors[0]["path"] == "targets[0].name" and errors[0]["line"] == 15


# --- nothing injects into the rendered script -------------------------------------------------------------------

# Values inside each field's grammar, chosen to be as unusual as that grammar allows (Gate's URL may carry no
# path but /gate on the UI's host: config rules).
ODD_BUT_VALID = [
    dict(ui_url="https://spinnaker.acme.dev:8443/%24%28id%29/~root/..%60x%60", api_url="http://gate-1.acme.dev:65535",
         kube_path="/tmp/$(touch pwned)/`id`; 'q\" *.kubeconfig", kube_context="ctx; rm -rf / $(id) 'q\" `b` #c",
         secret_key="-rf", storage_location="US", root_folder="_x-.", subscription="s~+%._-$(x)".replace("$(x)", "x")),
    dict(ui_url="https://a.b/%2F", api_url="https://a.b/gate/", kube_path="~/.kube/conf ig",
         kube_context="user@cluster:6443/ns|x&y", secret_key=".hidden", storage_location="EU", root_folder="_",
         subscription="Sub%2B~"),
    dict(ui_url="http://x", api_url="https://x--y.z", kube_path="--kubeconfig=/x;y", kube_context="--help \\",
         secret_key="a..b", storage_location="nam4", root_folder="..a", subscription="abc"),
]


def _argv(calls: list[list[str]], *words: str) -> list[list[str]]:
    return [argv for argv in calls if argv[1:1 + len(words)] == list(words)]


@pytest.mark.parametrize("values", ODD_BUT_VALID, ids=[f"set{i}" for i in range(len(ODD_BUT_VALID))])
def test_unusual_values_stay_single_arguments_in_configure_sh(tmp_path, values):
    cfg = load_config_bytes(halyard_engine(full(**values)).encode(), "odd.yaml").config
    files = render_all(cfg)
    script = files["halconfig/configure.sh"].decode()
    calls = [argv for _line, argv in parse_script(script)]
    g = load_grammar()
    assert check_script(script, g) == []

    assert _argv(calls, "config", "security", "ui", "edit") == [
        ["hal", "config", "security", "ui", "edit", "--override-base-url", values["ui_url"]]]
    assert _argv(calls, "config", "security", "api", "edit") == [
        ["hal", "config", "security", "api", "edit", "--override-base-url", values["api_url"]]]
    assert _argv(calls, "config", "storage", "gcs", "edit") == [
        ["hal", "config", "storage", "gcs", "edit", "--project", "acme-platform", "--bucket", "acme-spinnaker",
         "--bucket-location", values["storage_location"], "--root-folder", values["root_folder"]]]
    token = f"/home/spinnaker/secrets/github-gh/{values['secret_key']}"
    for verb in ("add", "edit"):
        assert _argv(calls, "config", "artifact", "github", "account", verb) == [
            ["hal", "config", "artifact", "github", "account", verb, "gh", "--token-file", token]]
    for verb in ("add", "edit"):
        sub = _argv(calls, "config", "pubsub", "google", "subscription", verb)
        assert sub == [["hal", "config", "pubsub", "google", "subscription", verb, "images", "--project",
                        "acme-platform", "--subscription-name", values["subscription"], "--message-format", "GCR",
                        "--ack-deadline-seconds", "60"]]
        onprem = [a for a in _argv(calls, "config", "provider", "kubernetes", "account", verb) if a[6] == "onprem"]
        assert onprem == [["hal", "config", "provider", "kubernetes", "account", verb, "onprem", "--kubeconfig-file",
                           "${KUBECONFIG_DIR}/onprem.kubeconfig", "--context", "onprem", "--namespaces", "apps",
                           "--cache-interval-seconds", "30"]]
    # The operator's kubeconfig stays on the operator's machine: neither its path nor its context is in the script.
    assert values["kube_path"] not in script and values["kube_context"] not in script
    # Nothing but hal lines, spinboot's helpers and its install lines run: no stray command word from a value.
    _bash_n(tmp_path, script)


@pytest.mark.parametrize("values", ODD_BUT_VALID, ids=[f"set{i}" for i in range(len(ODD_BUT_VALID))])
def test_unusual_values_do_not_inject_into_rendered_yaml(values):
    """The kubeconfig context is written into RBAC file headers as a comment: it must stay a comment."""
    cfg = load_config_bytes(full(**values).encode(), "odd.yaml").config
    files = render_all(cfg)
    for rel, body in files.items():
        if rel.endswith((".yaml", ".yml")):
            docs = [d for d in yaml.safe_load_all(body) if d is not None]
            assert all(isinstance(d, dict) for d in docs), rel
    onprem = {rel: body.decode() for rel, body in files.items() if rel.startswith("rbac/onprem/")}
    assert onprem
    for rel, text in onprem.items():
        header = [line for line in text.splitlines() if values["kube_context"] in line]
        assert header and all(line.startswith("# ") for line in header), rel


def test_script_fields_reject_every_shell_metacharacter():
    """A broader sweep than the cases above: every script-bound field refuses every shell metacharacter."""
    allowed_by_grammar = {  # characters a field's own grammar admits, which shell-quoting then handles
        "ui_url": set("%~"), "api_url": set("%~"), "subscription": set("%~+"),
    }
    for field in SCRIPT_FIELDS:
        valid = FIELDS[field][0]
        for ch in "$`;'\"\n|&<>(){}[]*?!#\\ \t":
            if ch in allowed_by_grammar.get(field, set()):
                continue
            value = valid[: len(valid) // 2] + ch + valid[len(valid) // 2:]
            with pytest.raises(ConfigError) as info:
                load_config_bytes(full(**{field: value}).encode(), "f.yaml")
            assert any(p.path == FIELDS[field][1] for p in info.value.problems), (field, ch)


def _bash_n(tmp_path, script: str) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    f = tmp_path / "configure.sh"
    f.write_text(script)
    proc = subprocess.run([bash, "-n", str(f)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


# --- issue 11, item 8 -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", [f for f in SCRIPT_FIELDS if f != "secret_key"])
def test_no_value_that_reaches_a_hal_flag_can_start_with_a_dash(field):
    """configure.sh passes values as `--flag VALUE`. Halyard's parser would take even `-x` as the value, but a value
    that reads as a flag is refused anyway (the Secret key only ever appears inside a path, /home/.../KEY)."""
    valid = FIELDS[field][0]
    for value in ("-" + valid, "--" + valid, "--help"):
        with pytest.raises(ConfigError) as info:
            load_config_bytes(full(**{field: value}).encode(), "f.yaml")
        assert any(p.path == FIELDS[field][1] for p in info.value.problems), (field, value)


def test_a_secret_key_starting_with_a_dash_stays_inside_a_path():
    files = render_all(load_config_bytes(halyard_engine(full(secret_key="-rf")).encode(), "f.yaml").config)
    calls = [argv for _line, argv in parse_script(files["halconfig/configure.sh"].decode())]
    tokens = [a[a.index("--token-file") + 1] for a in calls if "--token-file" in a]
    assert tokens and all(t.startswith("/") and t.endswith("/-rf") for t in tokens)


# Shaped like the real thing, made up for this test, and assembled at run time so that no secret scanner
# (the before-stop hook's included) mistakes the repository for one holding credentials.
_KEY = "PRIVATE" + " KEY"
SECRETS = {
    "github-token": "ghp_" + "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6",
    "github-pat": "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRS",
    "google-access-token": "ya29" + ".a0AfB_byC1d2E3f4G5h6I7j8K9l0M1n2O3p4Q5r6S7t8U9v0W",
    "google-api-key": "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "jwt": "eyJhbGciOi" + "JSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    "private-key": f"-----BEGIN RSA {_KEY}-----\nMIIEpAIBAAKCAQEA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q\n-----END RSA {_KEY}-----\n",
}
# Where a pasted credential might land: a free-form value, a checked name, a list item, an unknown key.
SECRET_PLACES = {
    "kube_context": lambda v: full(kube_context=v),
    "project": lambda v: full(project=v),
    "namespace_item": lambda v: full(namespace_item=v),
    "unknown-key": lambda v: full() + f"{json.dumps(v)}: x\n",
}


@pytest.mark.parametrize("place", list(SECRET_PLACES))
@pytest.mark.parametrize("kind", list(SECRETS))
def test_a_value_that_looks_like_a_secret_is_refused_and_never_echoed(cli, tmp_path, kind, place):
    secret = SECRETS[kind]
    f = tmp_path / "spinboot.yaml"
    f.write_text(SECRET_PLACES[place](secret))
    needles = {secret, secret[:16], secret.split("\n")[1] if "\n" in secret else secret[-16:]}
    for output in ("text", "json"):
        result = cli("validate", "-c", f, "-o", output)
        assert result.exit_code == 2, result.output
        assert not any(n in result.output for n in needles), f"{kind} echoed:\n{result.output[:2000]}"
        assert "spinboot.yaml holds no credentials" in result.output
        assert "Traceback" not in result.output


def test_redaction_covers_every_message_and_event():
    from spinboot.config.problems import Problem, redact, redact_fields

    for kind, secret in SECRETS.items():
        line = f"error: Google said: {secret!r} is not allowed (allowed: text)"
        assert secret[:16] not in redact(line) and "[redacted: " in redact(line), kind
        assert "(allowed: text)" in redact(line), "what follows the credential is kept"
        p = Problem("f", 1, 1, "x", f"{secret} is wrong")
        assert secret[:16] not in str(p) and secret[:16] not in json.dumps(p.as_event())
    assert redact_fields({"a": [SECRETS["jwt"], {"b": SECRETS["github-token"]}]}) == \
        {"a": ["[redacted: a JSON Web Token]", {"b": "[redacted: a GitHub token]"}]}
    assert redact("ghost_town and github.com/ghp and ya29 are fine") == "ghost_town and github.com/ghp and ya29 are fine"


def _pathological() -> dict[str, bytes]:
    from spinboot.config.loader import MAX_FILE_BYTES

    def fill(prefix: str, item: str, suffix: str = "") -> bytes:
        n = (MAX_FILE_BYTES - len(prefix) - len(suffix)) // len(item)
        return (prefix + item * n + suffix).encode()

    ns = MINIMAL.replace("namespaces: [prod]", "namespaces: [prod")
    target = "  - name: t\n    gke: {project: acme-platform, location: us-central1, cluster: c}\n    namespaces: [kube-system]\n"
    return {
        "huge-list": fill(ns, ", prod", "]\n"),
        "huge-list-of-bad-names": fill(ns, ", Prod", "]\n"),
        "thousands-of-targets": fill(MINIMAL, target),
        "thousands-of-unknown-keys": fill(MINIMAL, "k: 1\n".replace("k", "unknownkey")),
        "thousands-of-labels": fill(MINIMAL.replace("location: us-central1-b}", "location: us-central1-b, labels: {a0: b"),
                                    ", Ab: Cd", "}}\n"),
        "huge-string": fill("project: ", "a", "\n" + MINIMAL.split("\n", 2)[2]),
        "deep-flow": fill("x: ", "[", "\n"),
        "deep-block": fill(MINIMAL + "x:\n", "  a:\n"),
        "deep-mapping": fill("x: ", "{a: ", "\n"),
        "alias-bomb": (BASE + ALIAS_BOMB).encode(),
        "wide-and-deep-aliases": (BASE + "a: &a [" + ", ".join(["x"] * 500) + "]\n"
                                  + "".join(f"b{i}: [*a, *a, *a]\n" for i in range(100))).encode(),
        "one-byte-over-the-limit": (MINIMAL + "#" + "x" * (MAX_FILE_BYTES - len(MINIMAL))).encode(),
    }


@pytest.mark.parametrize("name", list(_pathological()))
def test_a_pathological_file_is_refused_in_under_a_second(name):
    import time

    raw = _pathological()[name]
    t0, c0 = time.monotonic(), time.process_time()
    with pytest.raises(ConfigError) as info:
        load_config_bytes(raw, "f.yaml")
    cpu, wall = time.process_time() - c0, time.monotonic() - t0
    assert cpu < 1.0, f"{name}: {cpu:.2f} s of CPU"
    assert wall < 3.0, f"{name}: {wall:.2f} s"  # generous: other jobs share the machine
    assert 1 <= len(info.value.problems) <= 101
    assert sum(len(str(p)) for p in info.value.problems) < 60_000, "nothing is echoed whole"


def test_a_file_of_exactly_the_size_limit_is_read():
    from spinboot.config.loader import MAX_FILE_BYTES

    raw = (MINIMAL + "#" + "x" * (MAX_FILE_BYTES - len(MINIMAL) - 2) + "\n").encode()
    assert len(raw) == MAX_FILE_BYTES
    load_config_bytes(raw, "f.yaml")


@pytest.mark.parametrize("field,value", [
    ("ui_url", "https://" + "A" * 100_000 + ".dev"), ("ui_url", "https://a.dev/" + "%" * 100_000),
    ("image", "ghcr.io/" + "X" * 100_000 + ":1"), ("image", "ghcr.io/a:" + "t" * 100_000),
    ("address", "R" * 100_000 + ":5000"), ("repository", "a/" + "B" * 100_000), ("version", "2026." + "0" * 100_000 + ".1"),
    ("storage_location", "-" * 100_000), ("root_folder", "-" * 100_000), ("secret_key", "." * 100_000),
])
def test_a_huge_value_is_never_echoed_whole(cli, tmp_path, field, value):
    f = tmp_path / "spinboot.yaml"
    f.write_text(full(**{field: value}))
    result = cli("validate", "-c", f)
    assert result.exit_code == 2 and len(result.output) < 20_000, result.output[:3000]
    assert f": {FIELDS[field][1]}: " in result.stderr


def test_labels_with_huge_keys_are_not_echoed(cli, tmp_path):
    f = tmp_path / "spinboot.yaml"
    f.write_text(MINIMAL.replace(LOC, "location: us-central1-b, labels: {" + "K" * 100_000 + ": v}}"))
    result = cli("validate", "-c", f)
    assert result.exit_code == 2 and len(result.output) < 20_000
