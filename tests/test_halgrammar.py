"""Halyard's grammar as a validator: what real hal (JCommander 1.78 + Halyard) accepts and rejects."""

from __future__ import annotations

import shlex

import pytest

from spinboot.render.halgrammar import Grammar, check_script, load_grammar, parse_script


@pytest.fixture(scope="module")
def g() -> Grammar:
    return load_grammar()


def errors(g: Grammar, line: str) -> list[str]:
    return [str(e) for e in g.check(shlex.split(line))]


K8S_ADD = "hal config provider kubernetes account add"

ACCEPTED = [
    "hal",
    "hal --version",
    "hal config",
    "hal config version edit --version 2026.2.3",
    "hal config version edit --version=2026.2.3",
    "hal -q config version edit --version 2026.2.3",
    "hal config -q version edit --version 2026.2.3 -o yaml",
    "hal config version edit --version 2026.2.3 --output=JSON",
    "hal config version edit --version 2026.2.3 --log debug",
    "hal config version edit --version 2026.2.3 --color false",
    "hal config version edit --version 2026.2.3 -c true -d -a",
    "hal config version edit --version 2026.2.3 --daemon-endpoint http://localhost:8064",
    "hal config provider kubernetes enable",
    "hal config provider kubernetes account list",
    f"{K8S_ADD} platform --context platform --kubeconfig-file /k/p.yaml --namespaces prod,dev",
    f"{K8S_ADD} platform --namespaces prod dev --context platform",
    f"{K8S_ADD} platform --namespaces=prod,dev --omit-kinds=podPreset",
    f"{K8S_ADD} platform --namespaces prod --namespaces dev",
    f"{K8S_ADD} platform --provider-version v2 --only-spinnaker-managed true --cache-threads 2",
    f"{K8S_ADD} platform --provider-version V2 --cache-interval-seconds 600 --service-account false",
    f"{K8S_ADD} platform --kinds deployment --omit-namespaces kube-system",
    f"{K8S_ADD} platform --kinds a --omit-kinds b --no-validate",
    f"{K8S_ADD} platform --docker-registries images --no-validate",
    "hal config provider kubernetes account edit platform --add-namespace qa --remove-namespace dev",
    "hal config provider kubernetes account edit platform --all-namespaces --kubeconfig-file ${HOME}/x",
    "hal config provider kubernetes account get platform",
    "hal config provider kubernetes account delete platform --no-validate",
    "hal config provider docker-registry account add images --address us-docker.pkg.dev "
    "--repositories acme/tasks --cache-interval-seconds 600 --track-digests false --sort-tags-by-date false",
    "hal config pubsub google enable",
    "hal config pubsub google subscription add spinnaker-gcr --project acme --subscription-name spinnaker-gcr "
    "--message-format GCR --ack-deadline-seconds 60",
    "hal config pubsub google subscription add s --project p --subscription-name s --message-format gcr",
    "hal config storage edit --type gcs",
    "hal config storage gcs edit --project acme --bucket acme-spinnaker --bucket-location us",
    "hal config deploy edit --type distributed --account-name spinnaker --location spinnaker",
    "hal config deploy component-sizing clouddriver edit --container-requests-memory 8Gi "
    "--container-limits-memory 12Gi --replicas 1",
    "hal config security ui edit --override-base-url https://spinnaker.acme.dev",
    "hal config security api edit --override-base-url https://spinnaker.acme.dev/gate",
    "hal config features edit --artifacts true",
    "hal config artifact gcs enable",
    "hal config artifact gcs account add gcs --no-validate",
    "hal config artifact github account add gh --token",                  # 0..1: hal prompts
    "hal config artifact github account add gh --token abc",
    "hal config artifact github account add gh --token=abc --username u",
    "hal config ci jenkins master add j --address http://j:8080 --username u --password",
    "hal backup create",
    "hal backup restore --backup-path /home/spinnaker/halyard-2026.tar",
    "hal deploy apply",
    "hal deploy apply --service-names gate deck --wait-for-completion",
    "hal deploy apply --service-names=gate,deck --exclude-service-names echo",
    "hal deploy apply --wait-for-completion-timeout-minutes 15",
    "hal version bom",
    "hal version bom 2026.2.3",
    "hal config provider kubernetes account add --help",               # help skips required checks
    "hal config provider docker-registry account add -h",
    "hal config provider dcos account edit a --remove-credential c1 u1",  # arity 2
]


@pytest.mark.parametrize("line", ACCEPTED)
def test_accepted(g: Grammar, line: str) -> None:
    assert errors(g, line) == []


REJECTED = [
    # (line, text that must appear in an error, flag the error must name or None)
    ("hal config bogus", "Expected a command, got bogus", None),
    ("hal bogus", "Expected a command, got bogus", None),
    ("hal config provider kubernetes acount list", "Expected a command, got acount", None),
    ("hal config --bogus", "Expected a command, got --bogus", "--bogus"),
    (f"{K8S_ADD} platform --bogus", "--bogus is not a flag", "--bogus"),
    (f"{K8S_ADD} --bogus", "Unknown option: --bogus", "--bogus"),
    ("hal config provider kubernetes enable --bogus", "main parameter '--bogus'", "--bogus"),
    (f"{K8S_ADD} platform --contextual x", "Unknown option: --contextual", "--contextual"),
    (f"{K8S_ADD} platform --kube-config-file /x", "--kube-config-file is not a flag", "--kube-config-file"),
    ("hal config provider docker-registry account add images", "required: [--address]", "--address"),
    ("hal config version edit", "required: [--version]", "--version"),
    ("hal backup restore", "required: [--backup-path]", "--backup-path"),
    (f"{K8S_ADD}", "No account name supplied", None),
    (f"{K8S_ADD} a b", 'Only one main parameter allowed but found several: "a" and "b"', None),
    ("hal config provider kubernetes account get", "No account name supplied", None),
    ("hal config storage edit gcs", "no main parameter was defined", None),
    (f"{K8S_ADD} platform --no-validate=true", "--no-validate is a switch", "--no-validate"),
    (f"{K8S_ADD} platform --no-validate true", "--no-validate is a switch", "--no-validate"),
    ("hal deploy apply --wait-for-completion yes", "--wait-for-completion is a switch", "--wait-for-completion"),
    ("hal config storage edit --type", "Expected a value after parameter --type", "--type"),
    (f"{K8S_ADD} platform --namespaces", "Expected a value after parameter --namespaces", "--namespaces"),
    ("hal config storage edit --type mysql", "Invalid value for --type parameter", "--type"),
    ("hal config pubsub google subscription add s --message-format JSON", "Invalid value for --message-format",
     "--message-format"),
    ("hal config deploy edit --type kubernetes", "Invalid value for --type", "--type"),
    ("hal config version edit --version 1 -o xml", "Invalid value for -o parameter", "--output"),
    (f"{K8S_ADD} platform --cache-threads two", 'couldn\'t convert "two" to an integer', "--cache-threads"),
    (f"{K8S_ADD} platform --cache-threads 1.5", "to an integer", "--cache-threads"),
    (f"{K8S_ADD} platform --cache-threads 3000000000", "to an integer", "--cache-threads"),
    ("hal config pubsub google subscription add s --ack-deadline-seconds 1m", "to an integer",
     "--ack-deadline-seconds"),
    (f"{K8S_ADD} platform --only-spinnaker-managed yes", "to a boolean", "--only-spinnaker-managed"),
    ("hal config features edit --artifacts 1", "to a boolean", "--artifacts"),
    ("hal config version edit --version 1 --color maybe", "to a boolean", "--color"),
    (f"{K8S_ADD} platform --kinds a --omit-kinds b", 'At most one of "kinds" and "omitKinds"', "--omit-kinds"),
    (f"{K8S_ADD} platform --namespaces a --omit-namespaces b", 'At most one of "namespaces" and "omitNamespaces"',
     "--omit-namespaces"),
    ("hal config provider kubernetes account edit platform --namespaces a --omit-namespaces b",
     "At most one of", "--omit-namespaces"),
    (f"{K8S_ADD} platform --context a --context b", "Can only specify option --context once.", "--context"),
    # variable arity swallows the positional argument, as in JCommander:
    (f"{K8S_ADD} --namespaces prod,dev platform", "No account name supplied", "--namespaces"),
    ("hal config artifact github account add gh --token a b", "Password parameter must have at most 1 argument",
     "--token"),
    ("hal config provider dcos account edit a --remove-credential c1", "Expected 2 values after", None),
    ("hal config provider cloudfoundry account add cf --api a --api-host h --user u --password p "
     "--apps-manager-url not-a-url", "to a URL", "--apps-manager-url"),
    ("hal deploy apply --version", "main parameter '--version'", "--version"),  # --version is hal's, not global
]


@pytest.mark.parametrize("line,text,flag", REJECTED)
def test_rejected(g: Grammar, line: str, text: str, flag: str | None) -> None:
    errs = g.check(shlex.split(line))
    assert errs, f"accepted: {line}"
    assert any(text in str(e) for e in errs), [str(e) for e in errs]
    for e in errs:
        assert str(e).startswith(e.command + ": ")
        assert e.command.startswith("hal")
    if flag:
        assert any(e.flag == flag for e in errs), [(e.flag, str(e)) for e in errs]


def test_errors_name_the_command_path(g: Grammar) -> None:
    (e,) = g.check(shlex.split("hal config provider docker-registry account add images"))
    assert e.command == "hal config provider docker-registry account add"
    assert e.flag == "--address"
    assert str(e) == ("hal config provider docker-registry account add: "
                      "The following option is required: [--address]")


def test_parse_values(g: Grammar) -> None:
    inv = g.parse(shlex.split(f"{K8S_ADD} platform --namespaces prod,dev qa --context=ctx --cache-threads 2 "
                              "--only-spinnaker-managed TRUE --provider-version V2 -q"))
    assert inv.ok and inv.path == K8S_ADD and inv.args == ["platform"]
    assert inv.options == {"--namespaces": ["prod", "dev", "qa"], "--context": "ctx", "--cache-threads": 2,
                           "--only-spinnaker-managed": True, "--provider-version": "v2", "--quiet": True}


def test_password_without_value_is_none(g: Grammar) -> None:
    inv = g.parse(shlex.split("hal config artifact github account add gh --token --username u"))
    assert inv.ok and inv.options["--token"] is None and inv.options["--username"] == "u"


def test_arity_one_takes_next_token_even_a_flag(g: Grammar) -> None:
    # JCommander's processFixedArity does not look at what the value is.
    inv = g.parse(shlex.split(f"{K8S_ADD} platform --context --namespaces"))
    assert inv.ok and inv.options["--context"] == "--namespaces"


def test_enum_normalised_to_the_choice(g: Grammar) -> None:
    inv = g.parse(shlex.split("hal config deploy edit --type distributed"))
    assert inv.options["--type"] == "Distributed"


def test_resolve_longest_path(g: Grammar) -> None:
    assert g.resolve(["hal", "config", "provider", "kubernetes", "account", "add", "x"]) == K8S_ADD
    assert g.resolve(["hal", "config", "bogus"]) == "hal config"


def test_every_command_accepts_its_required_flags(g: Grammar) -> None:
    """A minimal valid line for every one of Halyard's commands is accepted; an unknown flag never is."""
    for path, cmd in g.commands.items():
        if cmd.subcommands and path != "hal":
            continue
        argv = path.split() + ([f"x{len(cmd.args)}"] if cmd.args else [])
        for p in {p.name: p for p in cmd.params.values()}.values():
            if not p.required:
                continue
            if p.arity == 0:
                argv.append(p.name)
            elif p.arity == "0..1":
                argv += [p.name, "secret"]
            elif p.arity == 2:
                argv += [p.name, "a", "b"]
            else:
                value = {"integer": "1", "boolean": "true", "url": "https://x.example"}.get(p.value_type, "v")
                argv += [p.name, p.choices[0] if p.choices else value]
        assert g.check(argv) == [], (argv, [str(e) for e in g.check(argv)])
        bad = argv + ["--not-a-hal-flag"]
        assert g.check(bad), bad


def test_grammar_is_cached() -> None:
    assert load_grammar() is load_grammar()


SCRIPT = r'''#!/usr/bin/env bash
set -euo pipefail
# hal config bogus   <- a comment, not a command
hal config version edit --version 2026.2.3
if ! hal config provider kubernetes account get platform >/dev/null 2>&1; then
  hal config provider kubernetes account add platform \
    --context platform \
    --kubeconfig-file "${KUBECONFIG_DIR}/platform.kubeconfig" \
    --namespaces prod,dev
else
  hal config provider kubernetes account edit platform --kubeconfig-file "$HOME"/.hal/k --namespaces=prod,dev
fi
hal config pubsub google enable || true
cat > "$HOME/.hal/default/profiles/gate-local.yml" <<'EOF'
server:
  tomcat:
    remoteip:
      internal-proxies: '35\.191\.\d+\.\d+|130\.211\.\d+\.\d+
hal config bogus
EOF
mkdir -p x && hal deploy apply --service-names gate,deck 2>&1 | tee log
FOO=bar hal config storage edit --type gcs; hal config deploy edit --account-name platform --location $NS
echo "hal config not-a-command"
hal config bogus --flag   # comment
'''


def test_parse_script() -> None:
    found = parse_script(SCRIPT)
    assert [ln for ln, _ in found] == [4, 5, 6, 11, 13, 21, 22, 22, 24]
    assert found[2][1] == ["hal", "config", "provider", "kubernetes", "account", "add", "platform",
                           "--context", "platform", "--kubeconfig-file", "${KUBECONFIG_DIR}/platform.kubeconfig",
                           "--namespaces", "prod,dev"]
    assert found[1][1] == ["hal", "config", "provider", "kubernetes", "account", "get", "platform"]
    assert found[3][1][-2:] == ["$HOME/.hal/k", "--namespaces=prod,dev"]
    assert found[4][1] == ["hal", "config", "pubsub", "google", "enable"]
    assert found[5][1] == ["hal", "deploy", "apply", "--service-names", "gate,deck"]
    assert found[7][1][-1] == "$NS"
    assert found[8][1] == ["hal", "config", "bogus", "--flag"]


def test_check_script_reports_line_numbers() -> None:
    problems = check_script(SCRIPT)
    assert [(ln, e.command) for ln, e in problems] == [(24, "hal config")]
