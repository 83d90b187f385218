"""Halyard's validators, for the accounts spinboot configures, run where Halyard runs them.

Where (halyard-web controllers): ``account add`` / ``edit`` validate the account after the change and revert it
when a problem is worse than WARNING (AccountController.addAccount/setAccount -> GenericUpdateRequest ->
DaemonResponse.UpdateRequestBuilder: ``validate``, ``throwifSeverityExceeds(WARNING)``, else ``revert``);
``account get`` validates the account before answering (GenericGetRequest), ``account delete`` validates the
provider's remaining accounts (validateAllAccounts); ``hal deploy apply`` validates the whole deployment first
(DeploymentController.deploy). ``--no-validate`` turns validation off in all of them (ValidationSettings).

What:
- every account: the name pattern (AccountValidator);
- docker-registry accounts (DockerRegistryAccountValidator): at most one of password / passwordCommand /
  passwordFile (ERROR); the password command run as ``bash -c`` in Halyard's own container, whose tools are
  halconfig/images.yaml's ``halyard`` list (a failing or empty command is a WARNING there, as in Halyard); then the
  tags of every listed repository, read from the registry with those credentials (any failure is an ERROR:
  "Unable to fetch tags from the docker repository: REPO, MESSAGE"), or the catalog when none is listed;
- Kubernetes V2 accounts (KubernetesAccountValidator.validateKindConfig / validateCacheThreads): ``kinds`` with
  ``omitKinds`` and a negative ``cacheThreads`` are ERRORs. Since halyard commit 12c76885 (2020, "Make kubectl
  deployer the only option") V2 accounts' kubeconfig files are not read at add/edit time; they are read when
  ``hal deploy apply`` generates clouddriver's profile (spinboot/sandbox/hal/profiles.py), and the context is
  used by clouddriver (the startup play).

Halyard cites: https://github.com/spinnaker/halyard/tree/23e66d693c0b5072059e2fb0792d93d723e85192
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from spinboot.sandbox.hal.halconfig import ACCOUNT_NAME, HalFailure, Halconfig
from spinboot.sandbox.spinnaker.docker import RegistryClient, RegistryError, resolve_password
from spinboot.sandbox.spinnaker.sandboxenv import (METADATA_HOST_ENV, METADATA_IP_ENV, METADATA_ROOT_ENV,
                                                    SandboxEnv)

SEVERITIES = ("NONE", "INFO", "WARNING", "ERROR", "FATAL")      # Problem.Severity, in order
DOCKER_ACCOUNT_NAME = r"^[a-z0-9]+([-a-z0-9]*[a-z0-9])?$"        # DockerRegistryAccountValidator.namePattern
HALYARD_IMAGE = "halyard"


@dataclass
class Problem:
    severity: str
    message: str
    location: str = "Global"
    remediation: str | None = None


@dataclass
class Problems:
    items: list[Problem] = field(default_factory=list)

    def add(self, severity: str, message: str, location: str, remediation: str | None = None) -> Problem:
        p = Problem(severity, message, location, remediation)
        self.items.append(p)
        return p

    def extend(self, other: "Problems") -> None:
        self.items.extend(other.items)

    @property
    def failing(self) -> bool:
        """ProblemSet.throwifSeverityExceeds(WARNING): anything worse than a warning fails the command."""
        return any(SEVERITIES.index(p.severity) > SEVERITIES.index("WARNING") for p in self.items)

    def format(self) -> str:
        """As halyard-cli prints a ProblemSet (ResponseUnwrapper.formatProblemSet, AnsiUi): grouped by location."""
        lines: list[str] = []
        groups: dict[str, list[Problem]] = {}
        for p in self.items:
            groups.setdefault(p.location, []).append(p)
        for loc, probs in groups.items():
            lines.append(f"Validation in {loc}:")
            for p in probs:
                lead = "! ERROR" if p.severity in ("ERROR", "FATAL") else f"- {p.severity}"
                lines.append(f"{lead} {p.message}")
                if p.remediation:
                    lines.append(f"? {p.remediation}")
        return "\n".join(lines)


class ValidationFailed(HalFailure):
    """A hal command refused by validation; the change it made (if any) is not saved."""

    def __init__(self, problems: Problems, summary: str):
        self.problems = problems
        self.summary = summary
        super().__init__(summary)


def location(dep: dict[str, Any], provider: str, name: str) -> str:
    """Node.getNameToRoot for an account: ``default.provider.dockerRegistry.images``."""
    return f"{dep.get('name', 'default')}.provider.{provider}.{name}"


# -- accounts -----------------------------------------------------------------------------------------------------
def account_name(dep: dict[str, Any], provider: str, account: dict[str, Any], problems: Problems) -> None:
    pattern = DOCKER_ACCOUNT_NAME if provider == "dockerRegistry" else ACCOUNT_NAME
    if not re.match(pattern, str(account.get("name", ""))):
        problems.add("ERROR", f"Account name must match pattern {pattern}", location(dep, provider,
                                                                                    account.get("name", "")),
                     "It must start and end with a lower-case character or number, and only contain lower-case "
                     "characters, numbers, or dashes")


def kubernetes_account(dep: dict[str, Any], account: dict[str, Any]) -> Problems:
    """KubernetesAccountValidator for a V2 account (validateKindConfig, validateCacheThreads)."""
    problems = Problems()
    loc = location(dep, "kubernetes", account.get("name", ""))
    account_name(dep, "kubernetes", account, problems)
    if account.get("kinds") and account.get("omitKinds"):
        problems.add("ERROR", 'At most one of "kinds" and "omitKinds" may be specified.', loc)
    threads = account.get("cacheThreads")
    if isinstance(threads, int) and threads < 0:
        problems.add("ERROR", '"cacheThreads" should be greater or equal to 0.', loc)
    return problems


def halyard_pod_env() -> dict[str, str]:
    """What the Halyard container's environment offers a password command: its metadata server's address."""
    host = os.environ.get(METADATA_HOST_ENV)
    if not host:
        return {}
    return {METADATA_HOST_ENV: host, METADATA_ROOT_ENV: os.environ.get(METADATA_ROOT_ENV) or host,
            METADATA_IP_ENV: os.environ.get(METADATA_IP_ENV) or host}


def docker_registry_account(dep: dict[str, Any], account: dict[str, Any], cfg: Halconfig,
                            env: SandboxEnv | None = None) -> Problems:
    """DockerRegistryAccountValidator.validate, with Halyard's image toolset and the sandbox's registry."""
    problems = Problems()
    name = str(account.get("name", ""))
    loc = location(dep, "dockerRegistry", name)
    account_name(dep, "dockerRegistry", account, problems)
    given = [k for k in ("password", "passwordCommand", "passwordFile") if account.get(k)]
    if len(given) > 1:
        problems.add("ERROR", "You have provided more than one of password, password command, or password file for "
                     "your docker registry. You can specify at most one.", loc)
        return problems
    pw = resolve_password(account, HALYARD_IMAGE, env=halyard_pod_env(), home=str(cfg.home), base_dir=cfg.dir)
    for severity, message in pw.problems:
        problems.add(severity, message, loc)
    if any(s == "FATAL" for s, _ in pw.problems):
        return problems
    username = account.get("username")
    if pw.value and not username:
        problems.add("WARNING", "You have supplied a password but no username.", loc)
    elif not pw.value and username:
        problems.add("WARNING", "You have a supplied a username but no password.", loc)
    if not account.get("address"):
        problems.add("ERROR", f'Failed to instantiate docker credentials for account "{name}".', loc)
        return problems
    env = env or SandboxEnv.from_environ()
    client = RegistryClient(env.registry_url, str(account["address"]), username, pw.value)
    repositories = list(account.get("repositories") or [])
    if not repositories:
        try:
            if not client.catalog():
                problems.add("WARNING", "Your docker registry has no repositories specified, and the registry's "
                             "catalog is empty. Spinnaker will not be able to deploy any images until some are pushed "
                             "to this registry.", loc, "Manually specify some repositories for this docker registry "
                             "to index.")
        except RegistryError as exc:
            problems.add("ERROR", f"Unable to connect the registries catalog endpoint: {exc}.", loc)
        return problems
    tag_count = 0
    for repo in repositories:
        try:
            tag_count += len(client.tags(str(repo)))
        except RegistryError as exc:
            problems.add("ERROR", f"Unable to fetch tags from the docker repository: {repo}, {exc}", loc,
                         "Can the provided user access this repository?")
    if tag_count == 0 and not problems.failing:
        problems.add("WARNING", "None of your supplied repositories contain any tags. Spinnaker will not be able to "
                     "deploy any docker images.", loc, "Push some images to your registry.")
    return problems


def account(dep: dict[str, Any], provider: str, item: dict[str, Any], cfg: Halconfig,
            env: SandboxEnv | None = None) -> Problems:
    """The validators Halyard runs for one account of ``provider`` (halconfig key: kubernetes, dockerRegistry...)."""
    if provider == "kubernetes":
        return kubernetes_account(dep, item)
    if provider == "dockerRegistry":
        return docker_registry_account(dep, item, cfg, env)
    problems = Problems()
    account_name(dep, provider, item, problems)
    return problems


def provider_accounts(dep: dict[str, Any], provider: str, cfg: Halconfig, env: SandboxEnv | None = None) -> Problems:
    """AccountService.validateAllAccounts."""
    problems = Problems()
    for item in (((dep.get("providers") or {}).get(provider) or {}).get("accounts") or []):
        problems.extend(account(dep, provider, item, cfg, env))
    return problems


def deployment(dep: dict[str, Any], cfg: Halconfig, env: SandboxEnv | None = None) -> Problems:
    """DeploymentService.validateDeployment, for the parts spinboot configures: every provider's accounts."""
    problems = Problems()
    for provider, node in (dep.get("providers") or {}).items():
        if isinstance(node, dict) and node.get("accounts"):
            problems.extend(provider_accounts(dep, provider, cfg, env))
    return problems
