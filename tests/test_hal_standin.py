"""The sandbox's hal stand-in: grammar-checked command lines over a temporary $HOME/.hal."""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spinboot.sandbox.hal import launcher_dir, launcher_env
from spinboot.sandbox.hal.cli import main
from spinboot.sandbox.hal import deploy

K8S = "config provider kubernetes account"
SUB = "config pubsub google subscription"


class Run:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def hal(tmp_path: Path):
    """hal(line) runs the stand-in with HOME=tmp_path and returns its exit code and output."""
    def run(line: str, stdin: str = "", api_client=None) -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = main(shlex.split(line), home=tmp_path, stdin=io.StringIO(stdin), stdout=out, stderr=err,
                    api_client=api_client)
        return Run(code, out.getvalue(), err.getvalue())
    run.home = tmp_path
    return run


def config(home: Path) -> dict:
    return yaml.safe_load((home / ".hal" / "config").read_text())


def deployment(home: Path) -> dict:
    c = config(home)
    assert c["currentDeployment"] == "default"
    return c["deploymentConfigurations"][0]


# -- rejection ----------------------------------------------------------------------------------------------------
def test_rejects_unknown_flag(hal) -> None:
    r = hal(f"{K8S} add platform --bogus-flag x")
    assert r.code != 0
    assert "--bogus-flag" in r.err and "hal config provider kubernetes account add" in r.err
    assert not (hal.home / ".hal" / "config").exists()        # nothing was written


def test_rejects_missing_required_flag(hal) -> None:
    r = hal("config provider docker-registry account add images")
    assert r.code != 0 and "--address" in r.err


def test_rejects_unknown_command(hal) -> None:
    r = hal("config bogus")
    assert r.code != 0 and "Expected a command, got bogus" in r.err


def test_rejects_kinds_with_omit_kinds(hal) -> None:
    r = hal(f"{K8S} add platform --kinds deployment --omit-kinds pod")
    assert r.code != 0 and "--omit-kinds" in r.err


def test_rejects_omit_namespaces_added_to_an_account_with_namespaces(hal) -> None:
    assert hal(f"{K8S} add platform --namespaces prod").code == 0
    r = hal(f"{K8S} edit platform --add-omit-namespace kube-system")
    assert r.code != 0 and "omitNamespaces" in r.err


def test_valid_but_unsupported_fails_loudly(hal) -> None:
    r = hal("deploy diff")
    assert r.code != 0 and "not supported by the sandbox stand-in" in r.err


# -- kubernetes accounts ------------------------------------------------------------------------------------------
def test_kubernetes_account_round_trip(hal, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "platform.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    r = hal(f"{K8S} add platform --context platform --kubeconfig-file {kubeconfig} --namespaces prod,dev "
            "--cache-interval-seconds 600")
    assert r.code == 0, r.err
    assert "+ Get current deployment\n  Success" in r.out
    k8s = deployment(hal.home)["providers"]["kubernetes"]
    (acct,) = k8s["accounts"]
    assert acct["name"] == "platform" and acct["context"] == "platform"
    assert acct["kubeconfigFile"] == str(kubeconfig)
    assert acct["namespaces"] == ["prod", "dev"] and acct["omitNamespaces"] == []
    assert acct["cacheIntervalSeconds"] == 600 and acct["providerVersion"] == "V2" and acct["cacheThreads"] == 1
    assert k8s["primaryAccount"] == "platform"

    assert hal(f"{K8S} add platform --namespaces x").code != 0            # duplicate
    assert hal(f"{K8S} add lab --namespaces dev").code == 0

    r = hal(f"{K8S} list")
    assert r.code == 0 and "- platform" in r.out and "- lab" in r.out

    r = hal(f"{K8S} get platform")
    assert r.code == 0 and "kubeconfigFile: " + str(kubeconfig) in r.out

    assert hal(f"{K8S} edit platform --add-namespace qa --remove-namespace dev --context other").code == 0
    acct = deployment(hal.home)["providers"]["kubernetes"]["accounts"][0]
    assert acct["namespaces"] == ["prod", "qa"] and acct["context"] == "other"
    assert hal(f"{K8S} edit platform --namespaces=a b").code == 0
    assert deployment(hal.home)["providers"]["kubernetes"]["accounts"][0]["namespaces"] == ["a", "b"]

    assert hal(f"{K8S} delete platform").code == 0
    k8s = deployment(hal.home)["providers"]["kubernetes"]
    assert [a["name"] for a in k8s["accounts"]] == ["lab"] and k8s["primaryAccount"] == "lab"

    r = hal(f"{K8S} get platform")
    assert r.code != 0 and "not found" in r.err and "platform" in r.err
    assert hal(f"{K8S} edit platform --context x").code != 0
    assert hal(f"{K8S} delete platform").code != 0


def test_kubeconfig_file_is_read_at_deploy_apply_not_at_add(hal, tmp_path: Path) -> None:
    # Halyard's V2 KubernetesAccountValidator does not read the kubeconfig (halyard 12c76885); generating
    # clouddriver's profile at `hal deploy apply` does (KubernetesV2ClouddriverProfileFactory), --no-validate or not.
    missing = tmp_path / "nope.kubeconfig"
    assert hal(f"{K8S} add platform --kubeconfig-file {missing} --context platform").code == 0
    for line in ["config version edit --version 2026.2.3",
                 f"{K8S} add spinnaker --service-account true --namespaces spinnaker",
                 "config deploy edit --type distributed --account-name spinnaker --location spinnaker"]:
        assert hal(line).code == 0, line
    for flags in ("", " --no-validate"):
        r = hal("deploy apply" + flags)
        assert r.code == 1 and f"Failed to read kubeconfig file '{missing}'" in r.err, r.err
    missing.write_text("")
    r = hal("deploy apply")
    assert r.code == 1 and f"Empty kubeconfig file located at: {missing}" in r.err, r.err
    missing.write_text("apiVersion: v1\nkind: Config\ncontexts: []\n")
    assert hal(f"{K8S} edit platform --context ''").code == 0
    r = hal("deploy apply")
    assert r.code == 1 and "No context specified in kubernetes account platform" in r.err, r.err


def test_account_name_pattern(hal) -> None:
    r = hal(f"{K8S} add Platform_")
    assert r.code != 0 and "must match" in r.err


def test_docker_registry_reference_must_exist(hal) -> None:
    assert hal(f"{K8S} add platform --docker-registries images").code != 0
    assert hal("config provider docker-registry account add images --address us-docker.pkg.dev "
               "--repositories acme/tasks --cache-interval-seconds 600 --no-validate").code == 0
    assert hal(f"{K8S} add platform --docker-registries images").code == 0
    dep = deployment(hal.home)
    assert dep["providers"]["kubernetes"]["accounts"][0]["dockerRegistries"] == [{"accountName": "images"}]
    reg = dep["providers"]["dockerRegistry"]["accounts"][0]
    assert reg["address"] == "us-docker.pkg.dev" and reg["repositories"] == ["acme/tasks"]
    assert reg["cacheIntervalSeconds"] == 600


# -- pubsub subscriptions -----------------------------------------------------------------------------------------
def test_pubsub_subscription_round_trip(hal) -> None:
    assert hal("config pubsub google enable").code == 0
    r = hal(f"{SUB} add spinnaker-gcr --project acme --subscription-name spinnaker-gcr --message-format gcr "
            "--ack-deadline-seconds 60")
    assert r.code == 0, r.err
    google = deployment(hal.home)["pubsub"]["google"]
    assert google["enabled"] is True
    assert google["subscriptions"] == [{"name": "spinnaker-gcr", "project": "acme",
                                        "subscriptionName": "spinnaker-gcr", "messageFormat": "GCR",
                                        "ackDeadlineSeconds": 60}]
    assert "jsonPath" not in google["subscriptions"][0]          # Workload Identity: no key file
    assert "- spinnaker-gcr" in hal(f"{SUB} list").out
    assert "subscriptionName: spinnaker-gcr" in hal(f"{SUB} get spinnaker-gcr").out
    assert hal(f"{SUB} edit spinnaker-gcr --ack-deadline-seconds 30").code == 0
    assert deployment(hal.home)["pubsub"]["google"]["subscriptions"][0]["ackDeadlineSeconds"] == 30
    assert hal(f"{SUB} delete spinnaker-gcr").code == 0
    assert deployment(hal.home)["pubsub"]["google"]["subscriptions"] == []
    r = hal(f"{SUB} get spinnaker-gcr")
    assert r.code != 0 and "not found" in r.err


# -- generic edits ------------------------------------------------------------------------------------------------
def test_generic_edits_land_where_halyard_keeps_them(hal) -> None:
    for line in [
        "config version edit --version 2026.2.3",
        "config deploy edit --type distributed --account-name spinnaker --location spinnaker",
        "config storage edit --type gcs",
        "config storage gcs edit --project acme --bucket acme-spinnaker --bucket-location us",
        "config security ui edit --override-base-url https://spinnaker.acme.dev",
        "config security api edit --override-base-url https://spinnaker.acme.dev/gate",
        "config deploy component-sizing clouddriver edit --container-requests-memory 8Gi "
        "--container-limits-memory 12Gi --replicas 1",
        "config features edit --artifacts true",
        "config artifact gcs enable",
        "config artifact gcs account add gcs",
        "config provider kubernetes enable",
    ]:
        r = hal(line)
        assert r.code == 0, (line, r.err)
    dep = deployment(hal.home)
    assert dep["version"] == "2026.2.3"
    env = dep["deploymentEnvironment"]
    assert (env["type"], env["accountName"], env["location"]) == ("Distributed", "spinnaker", "spinnaker")
    assert env["customSizing"]["clouddriver"] == {"requests": {"memory": "8Gi"}, "limits": {"memory": "12Gi"}}
    assert env["customSizing"]["spin-clouddriver"] == {"replicas": 1}
    assert dep["persistentStorage"]["persistentStoreType"] == "gcs"
    assert dep["persistentStorage"]["gcs"] == {"rootFolder": "front50", "project": "acme",
                                               "bucket": "acme-spinnaker", "bucketLocation": "us"}
    assert dep["security"]["uiSecurity"]["overrideBaseUrl"] == "https://spinnaker.acme.dev"
    assert dep["security"]["apiSecurity"]["overrideBaseUrl"] == "https://spinnaker.acme.dev/gate"
    assert dep["features"]["artifacts"] is True
    assert dep["artifacts"]["gcs"] == {"enabled": True, "accounts": [{"name": "gcs"}]}
    assert dep["providers"]["kubernetes"]["enabled"] is True


def test_sensitive_flag_without_value_reads_stdin(hal) -> None:
    assert hal("config artifact github account add gh --token", stdin="s3cret\n").code == 0
    assert deployment(hal.home)["artifacts"]["github"]["accounts"][0]["token"] == "s3cret"


def test_edit_without_changes(hal) -> None:
    assert hal("config version edit --version 2026.2.3").code == 0
    r = hal("config version edit --version 2026.2.3")
    assert r.code == 0 and "No changes supplied" in r.out


# -- backup -------------------------------------------------------------------------------------------------------
def test_backup_create_restore_round_trip(hal, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "k" / "platform.kubeconfig"
    kubeconfig.parent.mkdir()
    kubeconfig.write_text("kubeconfig-bytes")
    assert hal(f"{K8S} add platform --kubeconfig-file {kubeconfig} --namespaces prod").code == 0
    profiles = hal.home / ".hal" / "default" / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "gate-local.yml").write_text("server:\n  forward-headers-strategy: native\n")
    before = deployment(hal.home)

    r = hal("backup create")
    assert r.code == 0, r.err
    tar = Path(r.out.strip().splitlines()[-1])
    assert tar.parent == hal.home and tar.name.startswith("halyard-") and tar.suffix == ".tar" and tar.is_file()
    assert hal("backup create").code == 0                      # a second backup does not contain the first
    import tarfile
    with tarfile.open(tar) as t:
        names = t.getnames()
    assert "config" in names and "default/profiles/gate-local.yml" in names
    assert not any(n.endswith(".tar") for n in names)
    assert any(n.startswith(".backup/required-files/") for n in names)   # the kubeconfig travels along

    # Disaster: the Halyard volume and the kubeconfig are gone.
    import shutil
    shutil.rmtree(hal.home / ".hal")
    kubeconfig.unlink()
    r = hal(f"backup restore --backup-path {tar}")
    assert r.code == 0, r.err
    after = deployment(hal.home)
    assert (profiles / "gate-local.yml").read_text() == "server:\n  forward-headers-strategy: native\n"
    acct = after["providers"]["kubernetes"]["accounts"][0]
    assert acct["namespaces"] == ["prod"]
    restored_kc = hal.home / ".hal" / acct["kubeconfigFile"]
    assert restored_kc.read_text() == "kubeconfig-bytes"
    before["providers"]["kubernetes"]["accounts"][0]["kubeconfigFile"] = acct["kubeconfigFile"]
    assert after == before
    # the restored config is usable: an edit validates the (relative) kubeconfig path
    assert hal(f"{K8S} edit platform --add-namespace dev").code == 0


def test_restore_missing_file_fails(hal, tmp_path: Path) -> None:
    r = hal(f"backup restore --backup-path {tmp_path / 'nope.tar'}")
    assert r.code != 0 and "nope.tar" in r.err


# -- deploy apply -------------------------------------------------------------------------------------------------
def _configure(hal, version: str = "2026.2.3") -> None:
    for line in [
        f"config version edit --version {version}",
        f"{K8S} add spinnaker --no-validate --kubeconfig-file /nonexistent",
        "config deploy edit --type distributed --account-name spinnaker --location spinnaker",
        "config deploy component-sizing clouddriver edit --container-requests-memory 8Gi "
        "--container-limits-memory 12Gi",
    ]:
        assert hal(line).code == 0, line
    profiles = hal.home / ".hal" / "default" / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    (profiles / "gate-local.yml").write_text("server:\n  forward-headers-strategy: native\n")


def test_manifests(hal) -> None:
    _configure(hal)
    from spinboot.render.halgrammar import load_grammar
    objs = deploy.manifests(deployment(hal.home), {"gate-local.yml": "x: 1\n"},
                            deploy.select_services(load_grammar().parse(["hal", "deploy", "apply"])))
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    assert by[("ConfigMap", "spinnaker-profiles")]["data"] == {"gate-local.yml": "x: 1\n"}
    for svc, port in deploy.PORTS.items():
        d, s = by[("Deployment", f"spin-{svc}")], by[("Service", f"spin-{svc}")]
        assert d["metadata"]["namespace"] == s["metadata"]["namespace"] == "spinnaker"
        assert d["spec"]["selector"]["matchLabels"] == s["spec"]["selector"] == {"app": "spin",
                                                                                  "cluster": f"spin-{svc}"}
        assert d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == port
        assert s["spec"]["ports"][0]["port"] == port
    cd = by[("Deployment", "spin-clouddriver")]["spec"]["template"]["spec"]["containers"][0]
    assert cd["image"] == "ghcr.io/spinnaker/clouddriver:2026.2.3"
    assert cd["resources"] == {"requests": {"memory": "8Gi"}, "limits": {"memory": "12Gi"}}
    assert deploy.image("gate", "2025.0.1") == "us-docker.pkg.dev/spinnaker-community/docker/gate:2025.0.1"
    assert deploy.image("gate", "1.38.0") == "us-docker.pkg.dev/spinnaker-community/docker/gate:1.38.0"
    assert deploy.image("gate", "2026.1.0") == "ghcr.io/spinnaker/gate:2026.1.0"


def test_service_selection(hal) -> None:
    from spinboot.render.halgrammar import load_grammar
    g = load_grammar()
    assert deploy.select_services(g.parse(shlex.split("hal deploy apply --service-names gate spin-deck"))) == [
        "gate", "deck"]
    sel = deploy.select_services(g.parse(shlex.split("hal deploy apply --exclude-service-names=echo,igor")))
    assert "echo" not in sel and "igor" not in sel and "clouddriver" in sel


def test_deploy_apply_needs_version_and_account(hal) -> None:
    # Halyard's own checks run before it connects anywhere. deploy apply against a real API server is tested in
    # tests/sandbox/test_hal_deploy.py.
    r = hal("deploy apply")
    assert r.code != 0 and "version" in r.err
    assert hal("config version edit --version 2026.2.3").code == 0
    assert hal("config deploy edit --type distributed --account-name ghost").code == 0
    r = hal("deploy apply")
    assert r.code != 0 and "ghost" in r.err


# -- launcher -----------------------------------------------------------------------------------------------------
def test_launcher_script(tmp_path: Path) -> None:
    env = {**os.environ, **launcher_env(), "HOME": str(tmp_path)}
    env["PATH"] = f"{launcher_dir()}{os.pathsep}{env.get('PATH', '')}"
    ok = subprocess.run(["hal", "config", "version", "edit", "--version", "2026.2.3"], env=env,
                        capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert yaml.safe_load((tmp_path / ".hal" / "config").read_text())[
        "deploymentConfigurations"][0]["version"] == "2026.2.3"
    bad = subprocess.run(["hal", "config", "version", "edit"], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    assert bad.returncode == 1 and "--version" in bad.stderr
    assert launcher_env()["SPINBOOT_HAL_PYTHON"] == sys.executable


# -- Halyard's docker-registry validation (DockerRegistryAccountValidator) ------------------------------------------
# Local fakes of the GKE metadata server and the Artifact Registry Docker v2 API (spinboot/sandbox/hal/testing.py),
# speaking the protocols of docs/dev/spinnaker-side-interfaces.md; tests/sandbox/test_startup_play.py uses the real
# stand-ins.
from spinboot.sandbox.hal.testing import FakeMetadata, FakeRegistry, fake_google

DOCKER = "config provider docker-registry account"
OLD_PASSWORD_COMMAND = "gcloud auth print-access-token"
NEW_PASSWORD_COMMAND = (
    "curl -sSf -H 'Metadata-Flavor: Google' "
    "\"http://${GCE_METADATA_HOST:-metadata.google.internal}/computeMetadata/v1/instance/service-accounts/default/token\""
    " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'")


@pytest.fixture
def google(monkeypatch, tmp_path: Path):
    """The Halyard pod's view of the sandbox: GCE_METADATA_HOST and SPINBOOT_SANDBOX_ENDPOINTS (fakes)."""
    with fake_google(tmp_path) as env:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        yield env


def _docker_add(hal, command: str, extra: str = "", action: str = "add", stdin: str = ""):
    return hal(f"{DOCKER} {action} images --address us-docker.pkg.dev --repositories acme/docker/tasks "
               f"--username oauth2accesstoken --password-command {shlex.quote(command)} {extra}".strip(), stdin=stdin)


def _docker_accounts(home: Path) -> list:
    f = home / ".hal" / "config"
    return deployment(home)["providers"]["dockerRegistry"]["accounts"] if f.exists() else []


def test_password_command_with_gcloud_fails_validation_in_halyards_image(hal, google) -> None:
    r = _docker_add(hal, OLD_PASSWORD_COMMAND)
    assert r.code == 1
    # Halyard warns about the command, then fails on the registry read it could not authenticate
    assert "Validation in default.provider.dockerRegistry.images:" in r.err
    assert "- WARNING Password command returned non 0 return code" in r.err and "gcloud: command not found" in r.err
    assert "! ERROR Unable to fetch tags from the docker repository: acme/docker/tasks" in r.err
    assert "DENIED" in r.err and "Failed to add account images for provider dockerRegistry." in r.err
    assert _docker_accounts(hal.home) == []                        # reverted: nothing saved
    assert set(FakeRegistry.seen_hosts) == {"us-docker.pkg.dev"}   # the real host travelled in Host


@pytest.mark.parametrize("command", ["curl", "rendered"])
def test_metadata_server_password_command_passes_validation(hal, google, command) -> None:
    if command == "rendered":         # what spinboot renders into configure.sh today
        command = getattr(__import__("spinboot.render.halscript", fromlist=["x"]), "METADATA_TOKEN_COMMAND", None)
        if command is None:
            pytest.skip("spinboot.render.halscript has no METADATA_TOKEN_COMMAND")
    else:
        command = NEW_PASSWORD_COMMAND
    r = _docker_add(hal, command)
    assert r.code == 0, r.err
    (acct,) = _docker_accounts(hal.home)
    assert acct["passwordCommand"] == command and acct["username"] == "oauth2accesstoken"
    assert hal(f"{DOCKER} get images").code == 0


def test_refused_workload_identity_fails(hal, google) -> None:
    FakeMetadata.refuse = "Kubernetes service account halyard/halyard is not annotated iam.gke.io/gcp-service-account"
    try:
        r = _docker_add(hal, NEW_PASSWORD_COMMAND)
    finally:
        FakeMetadata.refuse = ""
    assert r.code == 1 and "Password command returned non 0 return code" in r.err and "Unable to fetch tags" in r.err


def test_password_command_without_metadata_server_fails(hal, google, monkeypatch) -> None:
    for var in ("GCE_METADATA_HOST", "GCE_METADATA_ROOT", "GCE_METADATA_IP"):
        monkeypatch.delenv(var)                   # curl then tries metadata.google.internal, which does not resolve
    r = _docker_add(hal, NEW_PASSWORD_COMMAND)
    assert r.code == 1 and "Unable to fetch tags" in r.err and _docker_accounts(hal.home) == []


def test_empty_password_and_refused_identity_fail(hal, google) -> None:
    r = _docker_add(hal, "true")                   # exits 0, prints nothing
    assert r.code == 1
    assert "Resolved Password was empty" in r.err and "Unable to fetch tags" in r.err
    FakeMetadata.token = "sbx1.not-granted"
    try:
        r = _docker_add(hal, NEW_PASSWORD_COMMAND)
    finally:
        FakeMetadata.token = FakeRegistry.token
    assert r.code == 1 and "artifactregistry.repositories.downloadArtifacts" in r.err
    assert _docker_accounts(hal.home) == []


def test_no_validate_skips_and_get_edit_deploy_validate(hal, google) -> None:
    assert _docker_add(hal, OLD_PASSWORD_COMMAND, "--no-validate").code == 0
    # `account get` validates before answering (AccountController.account)
    r = hal(f"{DOCKER} get images")
    assert r.code == 1 and "Unable to fetch tags" in r.err
    assert hal(f"{DOCKER} get images --no-validate").code == 0
    # hal deploy apply validates the whole deployment before connecting anywhere
    for line in ["config version edit --version 2026.2.3",
                 f"{K8S} add spinnaker --service-account true --namespaces spinnaker",
                 "config deploy edit --type distributed --account-name spinnaker --location spinnaker"]:
        assert hal(line).code == 0, line
    r = hal("deploy apply")
    assert r.code == 1 and "Unable to fetch tags" in r.err and "Failed to deploy Spinnaker." in r.err
    # an edit to a working command passes; back to gcloud is refused and the good command stays
    assert _docker_add(hal, NEW_PASSWORD_COMMAND, action="edit").code == 0
    r = _docker_add(hal, OLD_PASSWORD_COMMAND, action="edit")
    assert r.code == 1 and "Failed to edit account images" in r.err
    assert _docker_accounts(hal.home)[0]["passwordCommand"] == NEW_PASSWORD_COMMAND


def test_at_most_one_password_source(hal, google) -> None:
    r = _docker_add(hal, NEW_PASSWORD_COMMAND, "--password", stdin="s3cret\n")    # hal prompts for it
    assert r.code == 1 and "You can specify at most one." in r.err and _docker_accounts(hal.home) == []


def test_unreachable_registry_host_fails(hal, google) -> None:
    r = hal(f"{DOCKER} add hub --address index.docker.io --repositories library/nginx")
    assert r.code == 1 and "index.docker.io: no such host" in r.err


# -- the images' tools ------------------------------------------------------------------------------------------------
def test_images_toolsets() -> None:
    from spinboot.sandbox.spinnaker import toolset

    hal_tools, cd_tools = set(toolset.image("halyard").tools), set(toolset.image("clouddriver").tools)
    assert {"bash", "curl", "python3", "openssl", "java", "sh", "cat"} <= hal_tools and "gcloud" not in hal_tools
    assert {"bash", "curl", "python3", "gcloud", "kubectl"} <= cd_tools
    assert toolset.run_in_image("halyard", "command -v gcloud").returncode != 0
    assert toolset.run_in_image("halyard", "/usr/bin/gcloud version").returncode == 127   # absolute paths too
    ok = toolset.run_in_image("halyard", "command -v curl python3 bash && echo $FOO", env={"FOO": "bar"})
    assert ok.returncode == 0 and ok.stdout.strip().endswith("bar")
    leak = toolset.run_in_image("halyard", "env")
    assert "SPINBOOT" not in leak.stdout and "VIRTUAL_ENV" not in leak.stdout
    if toolset.host_tool("gcloud"):
        assert toolset.run_in_image("clouddriver", "command -v gcloud").returncode == 0


# -- what hal deploy apply hands the services (the startup play's input) ----------------------------------------------
def test_services_configuration_from_the_halconfig(hal, tmp_path: Path) -> None:
    from spinboot.sandbox.hal.halconfig import Halconfig
    from spinboot.sandbox.hal.profiles import spinnaker_config

    kc = tmp_path / "platform.kubeconfig"
    kc.write_text("apiVersion: v1\nkind: Config\ncurrent-context: platform\ncontexts: [{name: platform, context: {}}]\n")
    for line in [
        "config storage gcs edit --project acme --bucket acme-spinnaker --bucket-location us",
        "config storage edit --type gcs",
        f"{K8S} add spinnaker --service-account true --namespaces spinnaker",
        f"{K8S} add platform --kubeconfig-file {kc} --context platform --namespaces prod,dev --omit-kinds event",
        "config pubsub google enable",
        f"{SUB} add gcr --project acme --subscription-name spinnaker-gcr --message-format GCR",
        "config deploy edit --type distributed --account-name spinnaker --location spin",
    ]:
        assert hal(line).code == 0, line
    settings = hal.home / ".hal" / "default" / "service-settings"
    settings.mkdir(parents=True)
    for svc in ("front50", "echo", "clouddriver"):
        (settings / f"{svc}.yml").write_text("kubernetes:\n  serviceAccountName: spinnaker\n")
    profiles = hal.home / ".hal" / "default" / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "echo-local.yml").write_text("redis.enabled: false\n")
    cfg = Halconfig(hal.home)
    dep = cfg.deployment()
    spin = spinnaker_config(cfg, dep, ["front50", "echo", "clouddriver", "gate"])
    assert spin.namespace == "spin"
    front50, echo, cd = spin.services["front50"], spin.services["echo"], spin.services["clouddriver"]
    assert front50.get("spinnaker.gcs") == {"rootFolder": "front50", "project": "acme", "bucket": "acme-spinnaker",
                                            "bucketLocation": "us", "enabled": True}
    assert front50.get("spinnaker.s3.enabled") is False
    assert echo.get("pubsub.google.subscriptions")[0]["subscriptionName"] == "spinnaker-gcr"
    assert echo.get("redis.enabled") is False                        # echo-local.yml wins, dotted keys expanded
    assert echo.get("services.redis.baseUrl") == "redis://spin-redis.spin:6379"
    platform = cd.get("kubernetes.accounts")[1]
    assert platform["kubeconfigFile"] == str(kc) and platform["namespaces"] == ["prod", "dev"]
    assert (front50.service_account, spin.services["gate"].service_account) == ("spinnaker", "default")
    objs = deploy.manifests(dep, {}, ["front50", "gate"], {"front50": "spinnaker"})
    pods = {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objs if o["kind"] == "Deployment"}
    assert pods["spin-front50"]["serviceAccountName"] == "spinnaker"
    assert "serviceAccountName" not in pods["spin-gate"]


def test_clouddriver_calls_come_from_the_contract() -> None:
    import kubernetes_validate

    from spinboot.sandbox.spinnaker import play

    notes: list[str] = []
    calls = play.account_calls({"name": "platform", "namespaces": ["prod", "dev"]}, ["prod", "dev"], False, notes)
    assert notes == []                      # every entry of halconfig/contract.yaml is played
    labels = [c[0] for c in calls]
    assert "account platform: create serviceaccounts in namespace dev (deploy, server-side dry run)" in labels
    assert "account platform: list controllerrevisions.apps in namespace prod (undo-rollout)" in labels
    assert any(lb.startswith("account platform: patch deployments/scale.apps in namespace prod") for lb in labels)
    assert any(lb.startswith("account platform: get pods/log in namespace prod") for lb in labels)
    assert not any("namespaces in" in lb or " roles" in lb for lb in labels)    # a namespace list: no namespace reads
    assert len(labels) == len(set(labels))
    every = {k.resource for k in play.cached_kinds({})}
    assert {"deployments", "pods", "services", "ingresses"} <= every
    omitted = {k.resource for k in play.cached_kinds({"omitKinds": ["pod", "deployment.apps"]})}
    assert omitted == every - {"pods", "deployments"}
    cached_only = play.account_calls({"name": "p", "omitKinds": ["deployment"]}, ["prod"], False)
    assert not any(c[0].startswith("account p: list deployments.apps") for c in cached_only)   # caching only:
    assert any(c[0].startswith("account p: create deployments.apps") for c in cached_only)     # still deployable
    version = kubernetes_validate.latest_version()
    for k in play.CLOUDDRIVER_KINDS:
        if k.deployable:
            kubernetes_validate.validate(play.probe_manifest(k, "prod"), version, strict=True)
    assert play.Refusal("front50", "storage.buckets.get on gs://b", "denied for x").message() == \
        "spin-front50 would crash-loop: storage.buckets.get on gs://b: denied for x"
