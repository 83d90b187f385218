"""configure.sh: the Halyard configuration script, run inside the Halyard pod.

The script is safe to run again in the same Halyard: every named item (Kubernetes and docker-registry accounts,
Pub/Sub subscriptions, artifact accounts) is edited when it exists and added when it does not, and items that an
earlier run of spinboot added but the file no longer has are deleted. spinboot records what it added in
``~/.hal/spinboot/managed-<kind>``, so items an operator added by hand are never touched.

Every value from spinboot.yaml is shell-quoted with shlex.quote; the only unquoted expansions are the script's own
path variables. Every ``hal`` line is checked against Halyard's command grammar (tests and ``spinboot render``).

Halyard commands: https://spinnaker.io/docs/reference/halyard/commands/ (copy in halconfig/hal-grammar.json).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from ..config import names
from ..config.model import SpinbootConfig
from . import pod_paths


class Raw(str):
    """A shell word written as is (already quoted), e.g. a path under one of the script's variables."""


def q(value: object) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return shlex.quote(str(value))


def under(var: str, name: str) -> Raw:
    """A path below one of the script's directory variables, with the file name quoted."""
    return Raw(f'"${{{var}}}"/{shlex.quote(name)}')


@dataclass
class Hal:
    words: list[str]
    flags: list[tuple[str, object]] = field(default_factory=list)

    def line(self, indent: str = "") -> str:
        head = indent + "hal " + " ".join(q(w) for w in self.words)
        if not self.flags:
            return head
        rest = [f"{indent}  {flag} {q(value)}" if value is not None else f"{indent}  {flag}" for flag, value in self.flags]
        return " \\\n".join([head] + rest)


@dataclass
class Named:
    """A named item kind managed with get/add/edit/delete, e.g. Kubernetes accounts."""

    kind: str            # key of the managed list, e.g. kubernetes-accounts
    command: list[str]   # e.g. ["config", "provider", "kubernetes", "account"]


K8S = Named("kubernetes-accounts", ["config", "provider", "kubernetes", "account"])
DOCKER = Named("docker-registry-accounts", ["config", "provider", "docker-registry", "account"])
PUBSUB = Named("pubsub-google-subscriptions", ["config", "pubsub", "google", "subscription"])
GCS_ARTIFACT = Named("artifact-gcs-accounts", ["config", "artifact", "gcs", "account"])
GITHUB_ARTIFACT = Named("artifact-github-accounts", ["config", "artifact", "github", "account"])

_PRELUDE = r'''set -euo pipefail
# On failure, name the command that failed (spinboot shows this line when it runs the script).
trap 'rc=$?; printf "spinboot: configure.sh failed at line %%s (exit %%s): %%s\n" "$LINENO" "$rc" "$BASH_COMMAND" >&2' ERR

BUNDLE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HAL_DIR="%(hal)s"
SPINBOOT_DIR="%(spinboot)s"
KUBECONFIG_DIR="%(kubeconfigs)s"
PROFILES_DIR="%(profiles)s"
SERVICE_SETTINGS_DIR="%(settings)s"
mkdir -p "$SPINBOOT_DIR" "$PROFILES_DIR" "$SERVICE_SETTINGS_DIR"

step() { printf '\n== %%s\n' "$*"; }
# managed KIND: what an earlier run of this script added (one name per line; none on a first run).
managed() { if [ -f "$SPINBOOT_DIR/managed-$1" ]; then cat "$SPINBOOT_DIR/managed-$1"; fi; }
# remember KIND NAME...: record what this run manages, atomically.
remember() { local kind="$1"; shift; printf '%%s\n' "$@" > "$SPINBOOT_DIR/managed-$kind.tmp"; mv "$SPINBOOT_DIR/managed-$kind.tmp" "$SPINBOOT_DIR/managed-$kind"; }
# retry_iam WHAT COMMAND...: run COMMAND; while it fails and $SPINBOOT_IAM_WAIT_SECONDS (set by spinboot when this
# apply has just granted Spinnaker access) has not run out, wait and try again: a new IAM grant typically takes
# 2 and sometimes 7 minutes to apply (https://cloud.google.com/iam/docs/access-change-propagation).
retry_iam() { local what="$1"; shift; local end=$((SECONDS + ${SPINBOOT_IAM_WAIT_SECONDS:-0})) delay=10; until "$@"; do if [ "$SECONDS" -ge "$end" ]; then return 1; fi; printf '%%s: not readable yet (new IAM grants take minutes to apply); retrying in %%s s\n' "$what" "$delay"; sleep "$delay"; delay=$((delay < 60 ? delay * 2 : 60)); done; }
# stale KIND NAME...: print what an earlier run added that this run no longer has.
stale() { local kind="$1"; shift; local old keep; while IFS= read -r old; do keep=""; for n in "$@"; do if [ "$n" = "$old" ]; then keep=1; fi; done; if [ -n "$old" ] && [ -z "$keep" ]; then printf '%%s\n' "$old"; fi; done < <(managed "$kind"); }
''' % {
    "hal": pod_paths.HAL_DIR,
    "spinboot": pod_paths.SPINBOOT_DIR,
    "kubeconfigs": pod_paths.KUBECONFIG_DIR,
    "profiles": pod_paths.PROFILES_DIR,
    "settings": pod_paths.SERVICE_SETTINGS_DIR,
}


class Script:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.managed: dict[str, tuple[Named, list[str]]] = {}

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def step(self, title: str) -> None:
        self.add("", f"step {q(title)}")

    def hal(self, words: list[str], flags: list[tuple[str, object]] | None = None) -> None:
        self.add(Hal(words, flags or []).line())

    def upsert(self, kind: Named, name: str, flags: list[tuple[str, object]], edit_flags: list | None = None,
               iam_wait: bool = False) -> None:
        """Edit the item when Halyard has it, add it otherwise; remember it as managed by spinboot. ``iam_wait``:
        Halyard validates the item by reading a Google resource as Spinnaker, so retry while new grants apply."""
        # --no-validate: `get` validates the whole item (Halyard runs a registry account's password command and
        # reads its tags), so a briefly unreadable registry would look like a missing account and turn edit into
        # a failing add.
        get = Hal(kind.command + ["get", name], [("--no-validate", None)]).line()
        edit = Hal(kind.command + ["edit", name], flags if edit_flags is None else edit_flags)
        add = Hal(kind.command + ["add", name], flags)
        block = [f"if {get} >/dev/null 2>&1; then", edit.line("  ") if edit.flags else "  : # nothing to edit",
                 "else", add.line("  "), "fi"]
        if iam_wait:
            fn = f"upsert_{len(self.lines)}"  # unique per script; names may differ only in - and _
            self.add(f"{fn}() {{", *("  " + ln for ln in "\n".join(block).split("\n")), "}",
                     f"retry_iam {q(f'{kind.kind[:-1]} {name}')} {fn}")
        else:
            self.add(*block)
        self.managed.setdefault(kind.kind, (kind, []))[1].append(name)

    def prune_and_remember(self, kinds: list[Named]) -> None:
        """Delete what earlier runs added and the file no longer has, then record the current lists."""
        for kind in kinds:
            current = self.managed.get(kind.kind, (kind, []))[1]
            args = " ".join(q(n) for n in current)
            stale = f"stale {kind.kind}" + (f" {args}" if args else "")
            delete = Hal(kind.command + ["delete", Raw('"$old"')]).line("  ")
            self.add(f"for old in $({stale}); do", f'  echo "removing {kind.kind[:-1]} $old (no longer in spinboot.yaml)"',
                     delete, "done")
            self.add(f"remember {kind.kind}" + (f" {args}" if args else ""))

    def text(self, header: str) -> bytes:
        return ("#!/usr/bin/env bash\n" + header + _PRELUDE + "\n".join(self.lines) + "\n").encode()


ALL_KINDS = [K8S, DOCKER, PUBSUB, GCS_ARTIFACT, GITHUB_ARTIFACT]


# Prints an access token for the pod's Google service account, from the GKE metadata server, with python3 alone
# (both the Halyard and the clouddriver image have it). GCE_METADATA_HOST, honoured as google-auth honours it,
# lets a test point it elsewhere. It holds no "$": clouddriver binds the command from Spring configuration, where
# "${...}" would be read as a property placeholder.
METADATA_TOKEN_COMMAND = (
    "python3 -c 'import json, os, urllib.request as u; "
    "h = os.environ.get(\"GCE_METADATA_HOST\", \"metadata.google.internal\"); "
    "r = u.Request(\"http://\" + h + \"/computeMetadata/v1/instance/service-accounts/default/token\", "
    "headers={\"Metadata-Flavor\": \"Google\"}); "
    "print(json.load(u.urlopen(r, timeout=10))[\"access_token\"])'"
)
# clouddriver's default Kubernetes account cache interval; passed explicitly so that removing the setting from
# spinboot.yaml resets it (an `account edit` keeps every value it is not given).
CLOUDDRIVER_CACHE_INTERVAL_SECONDS = 30


def _target_flags(t) -> list[tuple[str, object]]:
    flags: list[tuple[str, object]] = [
        ("--kubeconfig-file", under("KUBECONFIG_DIR", pod_paths.kubeconfig_file(t.name))),
        ("--context", pod_paths.kubeconfig_context(t.name)),
        ("--namespaces", ",".join(t.namespaces)),
        ("--cache-interval-seconds", t.cache_interval_seconds or CLOUDDRIVER_CACHE_INTERVAL_SECONDS),
    ]
    return flags


def _registry_flags(r) -> list[tuple[str, object]]:
    flags: list[tuple[str, object]] = [
        ("--address", r.address),
        ("--repositories", ",".join(r.repositories)),
        ("--cache-interval-seconds", r.cache_interval_seconds),
        # Both make clouddriver fetch every tag's manifest on every poll: more requests, more 429s.
        ("--track-digests", False),
        ("--sort-tags-by-date", False),
    ]
    if names.is_google_registry(r.address):
        # A short-lived token for Spinnaker's Google service account (Workload Identity), no JSON key. Halyard runs
        # the command itself to validate the account (in the Halyard image, which has no gcloud) and clouddriver
        # runs it at every poll, both as `bash -c` (docs/spinnaker-contract.md), so it must work in both images.
        flags += [("--username", "oauth2accesstoken"), ("--password-command", METADATA_TOKEN_COMMAND)]
    return flags


def render_configure_sh(cfg: SpinbootConfig, files: dict[str, bytes]) -> bytes:
    """``files``: the engine's other rendered files (profiles and service settings the script installs)."""
    s = cfg.spinnaker
    sc = Script()

    sc.step(f"Spinnaker version {s.version}")
    sc.hal(["config", "version", "edit"], [("--version", s.version)])

    st = s.storage
    sc.step(f"Storage: gs://{st.bucket} (Workload Identity, no JSON key)")
    sc.hal(["config", "storage", "gcs", "edit"], [("--project", cfg.storage_project), ("--bucket", st.bucket),
                                                  ("--bucket-location", st.location), ("--root-folder", st.root_folder)])
    sc.hal(["config", "storage", "edit"], [("--type", "gcs")])

    sc.step("Kubernetes accounts")
    sc.hal(["config", "provider", "kubernetes", "enable"])
    # The in-cluster account for Spinnaker's own namespace: clouddriver and Halyard use their pod's service account.
    sc.upsert(K8S, s.deploy_account, [("--service-account", True), ("--namespaces", s.namespace)])
    for t in cfg.targets:
        sc.upsert(K8S, t.name, _target_flags(t))

    accounts = [r for r in cfg.registries if r.docker_registry_account]
    if accounts:
        sc.step("Docker registry accounts")
        sc.hal(["config", "provider", "docker-registry", "enable"])
        for r in accounts:
            sc.upsert(DOCKER, r.name, _registry_flags(r), iam_wait=names.is_google_registry(r.address))

    if cfg.push_registries:
        sc.step("Pub/Sub subscriptions for image pushes (the gcr topic of each registry project)")
        sc.hal(["config", "pubsub", "google", "enable"])
        for r in cfg.push_registries:
            sc.upsert(PUBSUB, r.name, [("--project", r.project), ("--subscription-name", r.subscription.name),
                                       ("--message-format", "GCR"),
                                       ("--ack-deadline-seconds", r.subscription.ack_deadline_seconds)])

    art = s.artifacts
    if art.gcs or art.github:
        sc.step("Artifact accounts")
    if art.gcs:
        sc.hal(["config", "artifact", "gcs", "enable"])
        for a in art.gcs:
            sc.upsert(GCS_ARTIFACT, a.name, [])
    if art.github:
        sc.hal(["config", "artifact", "github", "enable"])
        for a in art.github:
            token = Raw(f"{pod_paths.SECRETS_DIR}/github-{shlex.quote(a.name)}/{shlex.quote(a.token_secret.key)}")
            sc.upsert(GITHUB_ARTIFACT, a.name, [("--token-file", token)])

    sc.step("Base URLs")
    sc.hal(["config", "security", "ui", "edit"], [("--override-base-url", s.exposure.ui_url)])
    sc.hal(["config", "security", "api", "edit"], [("--override-base-url", s.exposure.api_url)])

    # IAP through Halyard's own settings, so that Gate and Deck both know authentication is on (Halyard writes
    # Gate's google.iap settings and Deck's auth flag from security.authn.iap).
    if s.exposure.iap:
        sc.step("Identity-Aware Proxy")
        sc.hal(["config", "security", "authn", "iap", "edit"], [("--audience", s.exposure.iap.audience)])
        sc.hal(["config", "security", "authn", "iap", "enable"])
    else:
        sc.hal(["config", "security", "authn", "iap", "disable"])

    sc.step(f"Distributed deployment into namespace {s.namespace}")
    sc.hal(["config", "deploy", "edit"], [("--type", "distributed"), ("--account-name", s.deploy_account),
                                          ("--location", s.namespace)])
    sizing = s.clouddriver.sizing
    sizing_flags = [(flag, value) for flag, value in (
        ("--container-requests-memory", sizing.requests_memory), ("--container-limits-memory", sizing.limits_memory),
        ("--container-requests-cpu", sizing.requests_cpu), ("--container-limits-cpu", sizing.limits_cpu),
        ("--replicas", sizing.replicas)) if value is not None]
    # Reset, then set: a value removed from the file must not linger in Halyard (edit can only add or change).
    sc.hal(["config", "deploy", "component-sizing", "clouddriver", "delete"])
    if sizing_flags:
        sc.hal(["config", "deploy", "component-sizing", "clouddriver", "edit"], sizing_flags)

    sc.step("Profiles and service settings")
    installed = sorted(rel.removeprefix("halconfig/") for rel in files
                       if rel.startswith(("halconfig/profiles/", "halconfig/service-settings/")))
    for rel in installed:
        sc.add(f'install -m 0644 "$BUNDLE_DIR/{rel}" "$HAL_DIR/default/{rel}"')
    # A file an earlier run installed and this render no longer has (e.g. deck.yml once Gate has a host of its
    # own) must not keep configuring Spinnaker.
    words = " ".join(q(rel) for rel in installed)
    sc.add(f"for old in $(stale files {words}); do", '  echo "removing $old (no longer rendered)"',
           '  rm -f "$HAL_DIR/default/$old"', "done", f"remember files {words}")
    # Kubeconfigs of targets no longer in the file leave ~/.hal too (spinboot copies in the current ones).
    keep = " ".join(q(pod_paths.kubeconfig_file(t.name)) for t in cfg.targets)
    sc.add('if [ -d "$KUBECONFIG_DIR" ]; then',
           '  for f in "$KUBECONFIG_DIR"/*.kubeconfig; do',
           '    [ -e "$f" ] || continue',
           f'    case " {keep} " in *" $(basename "$f") "*) ;; *) echo "removing $(basename "$f") (target no longer in spinboot.yaml)"; rm -f "$f" ;; esac',
           '  done',
           'fi')

    sc.step("Remove what an earlier run added and spinboot.yaml no longer has")
    sc.prune_and_remember(ALL_KINDS)

    sc.step("Deploy")
    sc.hal(["deploy", "apply"])
    sc.add("", "step 'Halyard configuration applied'")

    header = (
        f"# Halyard configuration for Spinnaker {s.version} on GKE cluster {cfg.cluster.name} "
        f"({cfg.project}).\n"
        "# Generated by spinboot from spinboot.yaml. Do not edit: change the file and re-render.\n"
        "# Runs inside the Halyard pod (spinboot halyard apply copies it there with the profiles and kubeconfigs).\n"
        "# Safe to run again: items are added or edited; items an earlier run added and the file no longer has are\n"
        "# deleted; items added by hand are left alone.\n"
    )
    return sc.text(header)
