"""``hal`` for the sandbox: validates with Halyard's grammar, keeps the halconfig in ``$HOME/.hal``.

Output imitates hal's (``+ <step>`` / ``  Success``, ``! ERROR`` for problems; parse errors on stderr, as
halyard-cli's ``Main`` prints them) and so does the exit code (1 on any failure). Commands it cannot honour say so
and fail rather than pretend to succeed.

Behaviour mimicked from Halyard (command reference: https://spinnaker.io/docs/reference/halyard/commands/):
* every ``hal config ... edit|enable|disable`` writes its flags at the node its command path names;
* ``... account|subscription|master|... add|edit|delete|get|list NAME`` manage named lists; adding an existing
  name or editing/getting/deleting a missing one fails; the first account added becomes ``primaryAccount``;
* an edit that changes nothing prints "No changes supplied." and succeeds (Halyard's edit commands compare the
  node's hash before and after);
* a ``password = true`` flag given without a value is read from stdin (hal prompts for it);
* ``--kubeconfig-file`` is stored as an absolute path (halyard-cli's ``LocalFileConverter``); it is read when
  ``hal deploy apply`` generates clouddriver's profile (spinboot/sandbox/hal/profiles.py), not at add/edit;
* accounts are validated as Halyard's validators do (spinboot/sandbox/hal/validate.py) on add, edit, get and
  delete, unless ``--no-validate``: a problem worse than a warning fails the command and the change is not saved
  (Halyard's DaemonResponse reverts it); warnings are printed and the command succeeds.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from spinboot.render.halgrammar import Grammar, Invocation, Param, load_grammar
from spinboot.sandbox.hal import backup, validate
from spinboot.sandbox.hal.halconfig import (
    ACCOUNT_NAME, COLLECTIONS, FLAG_KEYS, META_FLAGS, HalFailure, Halconfig, node, segment_key)

ACTIONS = {"edit", "enable", "disable", "add", "delete", "get", "list"}


class Out:
    """hal-like progress lines on stdout; ``quiet`` (``-q``) keeps only results."""

    def __init__(self, stdout: TextIO, stderr: TextIO, quiet: bool = False):
        self.stdout, self.stderr, self.quiet = stdout, stderr, quiet

    def step(self, text: str, ok: bool = True) -> None:
        if not self.quiet:
            self.stdout.write(f"{'+' if ok else '-'} {text}\n  {'Success' if ok else 'Failure'}\n")

    def result(self, text: str) -> None:
        self.stdout.write(f"+ {text}\n" if not self.quiet else f"{text}\n")

    def raw(self, text: str) -> None:
        self.stdout.write(text if text.endswith("\n") else text + "\n")

    def error(self, text: str) -> None:
        self.stderr.write(f"! ERROR {text}\n")


def main(argv: list[str] | None = None, *, home: Path | str | None = None, stdin: TextIO | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None, api_client: Any = None,
         grammar: Grammar | None = None) -> int:
    """Run one hal command line (without the leading ``hal``). Returns the exit code.

    ``home`` defaults to ``$HOME``; ``api_client`` (a ``kubernetes.client.ApiClient``) overrides the deployment
    account's credentials for ``hal deploy apply``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    g = grammar or load_grammar()
    inv = g.parse(["hal", *argv])
    if inv.errors:
        # hal prints JCommander's message and exits 1 (halyard-cli Main.main); we add the command path.
        for e in inv.errors:
            stderr.write(f"{e}\n")
        return 1
    out = Out(stdout, stderr, quiet=bool(inv.options.get("--quiet")))
    if inv.help:
        out.raw(f"{inv.path.upper()}\n  (help text: see Halyard's commands.md)")
        return 0
    try:
        return _dispatch(g, inv, out, home, stdin, api_client)
    except validate.ValidationFailed as e:
        # halyard-cli prints the problem set, then the failed task (ResponseUnwrapper, AnsiUi)
        out.stderr.write(e.problems.format() + "\n\n")
        out.stderr.write(f"- {e.summary}\n")
        return 1
    except HalFailure as e:
        out.error(str(e))
        return 1


def _dispatch(g: Grammar, inv: Invocation, out: Out, home: Any, stdin: TextIO, api_client: Any) -> int:
    words = inv.path.split()
    if inv.path == "hal":
        if inv.options.get("--version"):
            src = g.source.get("halyard", {})
            out.raw(src.get("ref", "halyard-2026.2") + " (sandbox stand-in)")
            return 0
        if inv.options.get("--ready"):
            return 0
        if not any(k for k in inv.options if k not in g.global_params):
            out.raw("HAL\n  (sandbox stand-in; see Halyard's commands.md for the command reference)")
            return 0
        return _unsupported(inv, out)
    cfg = Halconfig(home)
    if inv.path == "hal backup create":
        path = backup.create(cfg)
        out.step("Create backup")
        out.result(f"Successfully created a backup at location: \n{path}")
        return 0
    if inv.path == "hal backup restore":
        backup.restore(cfg, inv.options["--backup-path"])
        out.step("Restore backup")
        out.result("Successfully restored your backup.")
        return 0
    if inv.path == "hal deploy apply":
        from spinboot.sandbox.hal import deploy   # the kubernetes client is only needed here
        return deploy.apply(cfg, inv, out, api_client=api_client)
    if words[:2] == ["hal", "config"]:
        return _config(g, cfg, inv, out, stdin)
    if inv.path == "hal version list":
        out.step("Get current deployment")
        out.result("You are on version \"" + str(cfg.deployment().get("version") or "") + "\", and the following "
                   "are available:\n - 2026.2.3 (sandbox)")
        return 0
    return _unsupported(inv, out)


def _unsupported(inv: Invocation, out: Out) -> int:
    out.error(f"'{inv.path}' is valid hal but not supported by the sandbox stand-in.")
    return 1


# -- hal config ... ------------------------------------------------------------------------------------------------
def _config(g: Grammar, cfg: Halconfig, inv: Invocation, out: Out, stdin: TextIO) -> int:
    words = inv.path.split()[2:]                      # after "hal config"
    out.step("Get current deployment")
    dep = cfg.deployment(inv.options.get("--deployment"))
    action = words[-1] if words and words[-1] in ACTIONS else None
    if not words:
        out.raw(yaml.safe_dump(dep, sort_keys=False))
        return 0
    if words == ["list"]:
        out.result("Deployments:")
        out.raw("\n".join(f"  - {d['name']}" for d in cfg.data["deploymentConfigurations"]))
        return 0
    if words[0] in ("generate",):
        return _unsupported(inv, out)
    segs = words[:-1] if action else words
    if segs[:2] == ["deploy", "component-sizing"] and len(segs) == 3 and action in ("edit", "delete"):
        return _component_sizing(cfg, dep, segs[2], action, inv, out)
    keys, collection = _keys(segs)
    target = node(dep, keys)
    label = " ".join(s for s in segs if s not in COLLECTIONS) or "config"

    if collection is None:
        if action is None:                             # e.g. "hal config provider kubernetes": show the node
            out.raw(yaml.safe_dump(target, sort_keys=False))
            return 0
        if action in ("enable", "disable"):
            target["enabled"] = action == "enable"
            if keys[:1] == ["pubsub"] and action == "enable":
                dep["pubsub"]["enabled"] = True
            cfg.save()
            out.step(f"Edit the {label} settings")
            out.result(f"Successfully {action}d {label}.")
            return 0
        if action == "edit":
            changed = _apply_flags(g, inv, target, stdin, cfg)
            if not changed:
                out.raw("- No changes supplied.")
                return 0
            cfg.save()
            out.step(f"Edit the {label} settings")
            out.result(f"Successfully edited {label}.")
            return 0
        return _unsupported(inv, out)

    items: list[dict[str, Any]] = target.setdefault(collection, [])
    kind = segs[-1] if segs else collection
    owner = " ".join(s for s in segs[:-1]) or "config"
    if action in (None, "list"):
        out.step(f"Get the {owner} {kind}s")
        out.result(f"{kind[:1].upper() + kind[1:]}s for {owner}:")
        out.raw("\n".join(f"  - {i.get('name')}" for i in items) if items else "  (none)")
        return 0
    name = inv.args[0]
    existing = next((i for i in items if i.get("name") == name), None)
    if action == "get":
        if existing is None:
            out.step(f"Get the {name} {kind}", ok=False)
            raise HalFailure(f'Problems in {dep["name"]}.{".".join(keys)}: {kind[:1].upper() + kind[1:]} "{name}" '
                           f"was not found.")
        # AccountController.account: a GET validates the account first (GenericGetRequest)
        _validate_account(inv, cfg, dep, keys, existing, out, f"Get {name} account")
        out.step(f"Get the {name} {kind}")
        out.raw(yaml.safe_dump(existing, sort_keys=False))
        return 0
    if action == "delete":
        if existing is None:
            out.step(f"Delete the {name} {kind}", ok=False)
            raise HalFailure(f'{kind[:1].upper() + kind[1:]} "{name}" was not found.')
        items.remove(existing)
        if target.get("primaryAccount") == name:
            target["primaryAccount"] = items[0]["name"] if items else None
        if collection == "accounts" and _provider(keys) and not inv.options.get("--no-validate"):
            # AccountController.deleteAccount validates the provider's remaining accounts (validateAllAccounts)
            problems = validate.provider_accounts(dep, _provider(keys), cfg)
            _report(problems, out, f"Failed to delete account {name} for provider {_provider(keys)}.")
        cfg.save()
        out.step(f"Delete the {name} {kind}")
        out.result(f"Successfully deleted {kind} {name} from {owner}.")
        return 0
    if action == "add":
        if existing is not None:
            out.step(f"Add the {name} {kind}", ok=False)
            raise HalFailure(f'{kind[:1].upper() + kind[1:]} "{name}" already exists.')
        item: dict[str, Any] = {"name": name}
        _defaults(g, inv, item)
        _apply_flags(g, inv, item, stdin, cfg)
        _validate_item(inv, cfg, dep, kind, item)
        _validate_account(inv, cfg, dep, keys, item, out, f"Failed to add account {name} for provider "
                          f"{_provider(keys)}.")
        items.append(item)
        if "primaryAccount" in target and not target.get("primaryAccount") and collection == "accounts":
            target["primaryAccount"] = name          # Halyard makes the first account the primary one
        cfg.save()
        out.step(f"Add the {name} {kind}")
        out.result(f"Successfully added {kind} {name} for {owner}.")
        return 0
    if action == "edit":
        if existing is None:
            out.step(f"Edit the {name} {kind}", ok=False)
            raise HalFailure(f'{kind[:1].upper() + kind[1:]} "{name}" was not found.')
        edited = yaml.safe_load(yaml.safe_dump(existing))
        if not _apply_flags(g, inv, edited, stdin, cfg):
            out.raw("- No changes supplied.")
            return 0
        _validate_item(inv, cfg, dep, kind, edited)
        _validate_account(inv, cfg, dep, keys, edited, out, f"Failed to edit account {name} for provider "
                          f"{_provider(keys)}.")
        items[items.index(existing)] = edited
        cfg.save()
        out.step(f"Edit the {name} {kind}")
        out.result(f"Successfully edited {kind} {name} for {owner}.")
        return 0
    return _unsupported(inv, out)


def _component_sizing(cfg: Halconfig, dep: dict[str, Any], service: str, action: str, inv: Invocation,
                      out: Out) -> int:
    """``customSizing.<service>`` holds the container's sizing and ``customSizing.spin-<service>`` the pod's
    (``replicas`` included), as Halyard's ComponentSizingEditCommand writes them."""
    custom = node(dep, ["deploymentEnvironment", "customSizing"])
    if action == "delete":
        custom.pop(service, None)
        custom.pop(f"spin-{service}", None)
    else:
        before = yaml.safe_dump(custom, sort_keys=True)
        for flag, value in inv.options.items():
            m = re.fullmatch(r"--(container|pod)-(requests|limits)-(cpu|memory)", flag)
            if m:
                key = service if m.group(1) == "container" else f"spin-{service}"
                node(custom, [key, m.group(2)])[m.group(3)] = value
            elif flag == "--replicas":
                node(custom, [f"spin-{service}"])["replicas"] = value
        if yaml.safe_dump(custom, sort_keys=True) == before:
            out.raw("- No changes supplied.")
            return 0
    cfg.save()
    out.step(f"Edit the component sizing for {service}")
    out.result(f"Successfully managed to {action} the custom component sizings for service {service}.")
    return 0


def _keys(segs: list[str]) -> tuple[list[str], str | None]:
    """halconfig key path for the command words after ``hal config`` (and the collection, for named items)."""
    if segs[:1] == ["version"]:
        return [], None                                # hal config version edit --version: a top-level key
    collection = COLLECTIONS.get(segs[-1]) if segs else None
    body = segs[:-1] if collection else segs
    return [segment_key(s) for s in body], collection


def _defaults(g: Grammar, inv: Invocation, item: dict[str, Any]) -> None:
    """Fields a new item gets from the flags' declared defaults (e.g. ``cacheThreads: 1``, ``namespaces: []``)."""
    for p in {p.name: p for p in g.params_at(inv.path).values()}.values():
        if p.name in META_FLAGS or p.name in g.global_params or p.default in (None, "(empty)"):
            continue
        if p.name.startswith(("--add-", "--remove-", "--all-")):
            continue
        k = _flag_keys(inv.path, p)
        d = p.default
        if p.is_list:
            value: Any = [] if d == "[]" else [x.strip() for x in d.strip("[]").split(",") if x.strip()]
        elif p.value_type == "boolean":
            value = str(d).lower() == "true"
        elif p.value_type == "integer":
            value = int(d)
        elif p.value_type == "enum":
            value = _enum_value(p, d)
        else:
            value = d
        _set(item, k, value, p)


def _flag_keys(path: str, p: Param) -> tuple[str, ...]:
    if (path, p.name) in FLAG_KEYS:
        return FLAG_KEYS[(path, p.name)]
    if path.endswith(" account add") or path.endswith(" account edit"):
        if p.name == "--read-permissions":
            return ("permissions", "READ")
        if p.name == "--write-permissions":
            return ("permissions", "WRITE")
    return (p.key,)


def _enum_value(p: Param, value: str) -> str:
    for c in p.choices:
        if c.lower() == str(value).lower():
            # Halyard serialises enum constants: ProviderVersion.V2 is "V2", MessageFormat.GCR is "GCR".
            return c.upper() if p.name == "--provider-version" else c
    return str(value)


def _set(item: dict[str, Any], keys: tuple[str, ...], value: Any, p: Param) -> None:
    target = node(item, keys[:-1])
    if p.name in ("--docker-registries",):
        value = [{"accountName": v} for v in value]
    target[keys[-1]] = value


def _apply_flags(g: Grammar, inv: Invocation, item: dict[str, Any], stdin: TextIO, cfg: Halconfig) -> bool:
    """Store every configuration flag of ``inv`` into ``item``; return whether anything changed."""
    before = yaml.safe_dump(item, sort_keys=True)
    params = g.params_at(inv.path)
    for flag, value in inv.options.items():
        p = params[flag]
        if flag in META_FLAGS or flag in g.global_params:
            continue
        if value is None and p.arity == "0..1":        # sensitive flag without a value: hal prompts for it
            value = stdin.readline().rstrip("\n")
        m = re.match(r"--(add|remove|all)-(.+)", flag)
        if m and p.arity != "1..n":
            op, rest = m.groups()
            list_flag = next((f for f in (f"--{rest}s", f"--{rest}es", f"--{rest[:-1]}ies", f"--{rest}")
                              if f in params and params[f].is_list), None)
            keys = _flag_keys(inv.path, params[list_flag]) if list_flag else (segment_key(rest) + "s",)
            parent = node(item, keys[:-1])
            cur = list(parent.get(keys[-1]) or [])
            wrap = (lambda v: {"accountName": v}) if rest == "docker-registry" else (lambda v: v)
            if op == "all":
                cur = []
            elif op == "add" and wrap(value) not in cur:
                cur.append(wrap(value))
            elif op == "remove":
                cur = [x for x in cur if x != wrap(value)]
            parent[keys[-1]] = cur
            continue
        if p.value_type == "enum":
            value = _enum_value(p, value)
        if isinstance(value, str) and (flag.endswith("-file") or flag in ("--json-path",)) and value:
            value = str(Path(value).absolute())        # Halyard's LocalFileConverter stores absolute paths
        _set(item, _flag_keys(inv.path, p), value, p)
    return yaml.safe_dump(item, sort_keys=True) != before


def _validate_item(inv: Invocation, cfg: Halconfig, dep: dict[str, Any], kind: str, item: dict[str, Any]) -> None:
    """The add/edit-time checks of Halyard's validators that matter to spinboot (skipped with --no-validate)."""
    if inv.options.get("--no-validate"):
        return
    if kind == "account" and not re.match(ACCOUNT_NAME, item["name"]):
        raise HalFailure(f'Account name "{item["name"]}" must match the pattern {ACCOUNT_NAME}')
    if inv.path.startswith("hal config provider kubernetes account"):
        for a, b in (("kinds", "omitKinds"), ("namespaces", "omitNamespaces")):
            if item.get(a) and item.get(b):
                raise HalFailure(f'At most one of "{a}" and "{b}" may be specified.')
        registries = {a.get("name") for a in dep.get("providers", {}).get("dockerRegistry", {}).get("accounts", [])}
        for ref in item.get("dockerRegistries") or []:
            if ref.get("accountName") not in registries:
                raise HalFailure(f'The chosen docker registry "{ref.get("accountName")}" is not configured '
                               "(add it with hal config provider docker-registry account add).")


def _provider(keys: list[str]) -> str | None:
    """The provider of a ``hal config provider P account ...`` command (halconfig key, e.g. dockerRegistry)."""
    return keys[1] if len(keys) == 2 and keys[0] == "providers" else None


def _report(problems: "validate.Problems", out: Out, failure: str) -> None:
    if problems.failing:
        raise validate.ValidationFailed(problems, failure)
    if problems.items:
        out.stderr.write(problems.format() + "\n")


def _validate_account(inv: Invocation, cfg: Halconfig, dep: dict[str, Any], keys: list[str], item: dict[str, Any],
                      out: Out, failure: str) -> None:
    """Halyard's account validators (spinboot/sandbox/hal/validate.py), unless --no-validate."""
    provider = _provider(keys)
    if provider is None or inv.options.get("--no-validate"):
        return
    _report(validate.account(dep, provider, item, cfg), out, failure)
