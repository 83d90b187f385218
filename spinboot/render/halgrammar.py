"""Halyard's command grammar as a validator.

The grammar (``halconfig/hal-grammar.json``, Halyard 2026.2's command reference as data; see
../shared/reference/halyard/README.md) lists every ``hal`` command path with its positional ``args`` and ``params``.
:meth:`Grammar.check` rejects what real ``hal`` rejects; :meth:`Grammar.parse` also returns the parsed values, which
is what the sandbox's ``hal`` stand-in runs on.

``hal`` parses its command line with JCommander 1.78 (the version Spinnaker's kork platform pins), and every Halyard
command inherits ``@Parameters(separators = "=")`` from ``NestableCommand``. The emulated JCommander rules:

* A token is an *option* only if it starts with a flag name known at that command level (``--flag`` or
  ``--flag=value``; a known-name prefix followed by anything else is an ``Unknown option``) or is a subcommand name.
  Any other token, ``--bogus`` included, is a main parameter: "Was passed main parameter '--bogus' but no main
  parameter was defined in your arg class" where the command takes no positional argument.
* A flag of arity 1 takes the next token whatever it is (``--context --namespaces`` sets context to
  ``--namespaces``); only the end of the line is a "missing value".
* A list flag declared ``variableArity`` (grammar arity ``1..n``) takes every following token up to the next option,
  and each token is also split on commas (JCommander's ``CommaParameterSplitter``). So ``--namespaces a,b``,
  ``--namespaces a b`` and ``--namespaces=a,b`` are equivalent, and ``--namespaces a ACCOUNT`` swallows the account
  name; repeating the flag appends. spinboot's own scripts should use the single comma-separated form after the
  positional argument, which every Halyard version accepts.
* ``0..1`` flags (``password = true``) take one following non-option token, or prompt on stdin when none follows;
  two or more is "Password parameter must have at most 1 argument."
* A non-list flag given twice is "Can only specify option --x once."
* Halyard's commands take at most one positional argument (a ``String`` main parameter): a second is "Only one main
  parameter allowed but found several"; none where one is needed is Halyard's "No account name supplied" style error.

Beyond JCommander, the daemon's validator rejects ``kinds`` with ``omitKinds`` (and ``namespaces`` with
``omitNamespaces``) on a Kubernetes account (``KubernetesAccountValidator``); that check is skipped with
``--no-validate``, as in Halyard.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spinboot.resources import data_path

GRAMMAR_FILE = ("halconfig", "hal-grammar.json")

# Commands whose positional argument may be omitted (Halyard documents "with or without a parameter").
OPTIONAL_ARGS = frozenset({"hal version bom"})

# Java int and long ranges: IntegerConverter / LongConverter use Integer.parseInt / Long.parseLong.
_INT_RANGES = {"int": 2**31, "Integer": 2**31, "long": 2**63, "Long": 2**63}
_JAVA_INT = re.compile(r"[+-]?[0-9]+\Z")
# java.net.URL only knows these protocols out of the box.
_URL_PROTOCOLS = ("http", "https", "ftp", "file", "jar")

_K8S_ACCOUNT_CMDS = frozenset({
    "hal config provider kubernetes account add",
    "hal config provider kubernetes account edit",
})


@dataclass(frozen=True)
class HalError:
    """One rejection. ``str()`` gives ``<command path>: <message>`` (the message is hal's own where it has one)."""

    command: str
    message: str
    flag: str | None = None

    def __str__(self) -> str:
        return f"{self.command}: {self.message}"


@dataclass(frozen=True)
class Param:
    """One flag of a command; ``name`` is its longest alias (JCommander's ``getLongestName``)."""

    name: str
    aliases: tuple[str, ...]
    arity: int | str            # 0, 1, 2, "1..n" (variableArity) or "0..1" (password)
    value_type: str             # string, boolean, integer, list, enum, url, map, key=value
    java_type: str
    required: bool = False
    choices: tuple[str, ...] = ()
    case_insensitive: bool = False
    help: bool = False
    default: Any = None

    @property
    def is_list(self) -> bool:
        return self.value_type == "list"

    @property
    def key(self) -> str:
        """halconfig key by Halyard's convention: camelCase of the flag name (``--kubeconfig-file``)."""
        return camel(self.name)


@dataclass(frozen=True)
class Command:
    path: str
    args: tuple[str, ...]
    params: dict[str, Param]              # by every alias
    subcommands: tuple[str, ...]

    @property
    def words(self) -> list[str]:
        return self.path.split()


@dataclass
class Invocation:
    """What :meth:`Grammar.parse` made of one argv.

    ``options`` maps a flag's longest name to its value: ``True`` for a switch, ``str`` for arity 1 (``None`` for a
    ``0..1`` flag given without a value: hal would prompt), ``list[str]`` for list flags (comma-split)."""

    argv: list[str]
    path: str = "hal"
    args: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    errors: list[HalError] = field(default_factory=list)
    help: bool = False
    swallowed_by: str | None = None   # a variable-arity flag that took every remaining token

    @property
    def ok(self) -> bool:
        return not self.errors


def camel(flag: str) -> str:
    parts = flag.lstrip("-").split("-")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def _param(name: str, spec: dict) -> Param:
    aliases = tuple(spec.get("aliases") or [name])
    return Param(
        name=max(aliases, key=len),
        aliases=aliases,
        arity=spec.get("arity", 1),
        value_type=spec.get("value_type", "string"),
        java_type=spec.get("java_type", "String"),
        required=bool(spec.get("required")),
        choices=tuple(spec.get("choices") or ()),
        case_insensitive=bool(spec.get("case_insensitive")),
        help=bool(spec.get("help")),
        default=spec.get("default"),
    )


class Grammar:
    """Halyard's command tree. Build with :func:`load_grammar` (or ``Grammar(dict)`` for tests)."""

    def __init__(self, raw: dict[str, dict]):
        self.commands: dict[str, Command] = {}
        for path, spec in raw.items():
            self.commands[path] = Command(
                path=path,
                args=tuple(spec.get("args") or ()),
                params={alias: _param(alias, p) for alias, p in (spec.get("params") or {}).items()},
                subcommands=tuple(spec.get("subcommands") or ()),
            )
        root = raw.get("hal", {})
        self.source: dict = root.get("source") or {}
        self.global_params: dict[str, Param] = {
            alias: _param(alias, p) for alias, p in (root.get("global_params") or {}).items()}

    # -- lookup -------------------------------------------------------------------------------------------------
    def command(self, path: str) -> Command:
        return self.commands[path]

    def params_at(self, path: str) -> dict[str, Param]:
        """Flags accepted at a command level: its own plus hal's global ones."""
        merged = dict(self.global_params)
        merged.update(self.commands[path].params)
        return merged

    def resolve(self, words: list[str]) -> str:
        """Longest known command path that ``words`` (``["hal", ...]``) starts with."""
        path = "hal"
        for w in words[1:]:
            if w in self.commands[path].subcommands and f"{path} {w}" in self.commands:
                path = f"{path} {w}"
            else:
                break
        return path

    # -- checking -----------------------------------------------------------------------------------------------
    def check(self, argv: list[str]) -> list[HalError]:
        """Everything real ``hal`` would reject in ``argv`` (which starts with ``"hal"``); empty when accepted."""
        return self.parse(argv).errors

    def parse(self, argv: list[str]) -> Invocation:
        inv = Invocation(argv=list(argv))
        if not argv or Path(argv[0]).name != "hal":
            inv.errors.append(HalError("hal", f"not a hal command line: {argv[:1]!r}"))
            return inv
        path = "hal"
        tokens = [_jtrim(t) for t in argv[1:]]
        while True:
            rest = self._parse_level(path, tokens, inv)
            if rest is None:
                break
            sub, tokens = rest
            path = f"{path} {sub}"
        inv.path = path
        if not inv.help:
            self._check_required(path, inv)
            self._check_args(path, inv)
            self._check_semantics(path, inv)
        return inv

    def _is_option(self, tok: str, params: dict[str, Param], cmd: Command) -> bool:
        # JCommander.isOption with separator "=": a prefix match on any known flag name, or a command name.
        if tok in cmd.subcommands:
            return True
        return any(tok.startswith(alias) for alias in params)

    def _parse_level(self, path: str, tokens: list[str], inv: Invocation) -> tuple[str, list[str]] | None:
        """Parse ``tokens`` at one command level. Returns (subcommand, remaining tokens) when descending."""
        cmd = self.commands[path]
        params = self.params_at(path)
        # JCommander's expandArgs: an option token "--flag=value" becomes "--flag", "value".
        expanded: list[str] = []
        for tok in tokens:
            if "=" in tok and tok not in cmd.subcommands and self._is_option(tok, params, cmd):
                expanded.extend(tok.split("=", 1))
            else:
                expanded.append(tok)
        tokens = expanded
        seen: set[str] = set()
        i = 0
        dashdash = False
        while i < len(tokens):
            tok = tokens[i]
            if not dashdash and tok != "--" and tok not in cmd.subcommands and self._is_option(tok, params, cmd):
                p = params.get(tok)
                if p is None:
                    inv.errors.append(HalError(path, f"Unknown option: {tok}", flag=tok))
                    i += 1
                    continue
                i += 1 + self._take_value(path, p, tok, tokens[i + 1:], params, cmd, inv, seen)
                continue
            if tok == "--" and not dashdash:
                dashdash = True
                i += 1
                continue
            if cmd.subcommands:
                if tok in cmd.subcommands and f"{path} {tok}" in self.commands:
                    return tok, tokens[i + 1:]
                inv.errors.append(HalError(path, f"Expected a command, got {tok}",
                                           flag=tok if tok.startswith("-") else None))
                return None
            self._main_parameter(path, tok, tokens[i - 1] if i else "", inv)
            i += 1
        return None

    def _take_value(self, path: str, p: Param, typed: str, following: list[str], params: dict[str, Param],
                    cmd: Command, inv: Invocation, seen: set[str]) -> int:
        """Consume the values of flag ``p`` from ``following``; return how many tokens were used."""
        if p.name in seen and not p.is_list:
            inv.errors.append(HalError(path, f"Can only specify option {typed} once.", flag=p.name))
        seen.add(p.name)
        if p.help and p.name in ("--help",):
            inv.help = True

        def run_length() -> int:  # JCommander's DefaultVariableArity: tokens up to the next option
            n = 0
            while n < len(following) and not self._is_option(following[n], params, cmd):
                n += 1
            return n

        if p.arity == 0:
            inv.options[p.name] = True
            return 0
        if p.arity == "0..1":
            n = run_length()
            if n == 0:
                inv.options[p.name] = None          # hal prompts for it on stdin
                return 0
            if n > 1:
                inv.errors.append(HalError(
                    path, f"Password parameter must have at most 1 argument. ({typed} was given "
                          f"{following[0]!r} and {following[1]!r})", flag=p.name))
            inv.options[p.name] = following[0]
            return 1
        if p.arity == "1..n":
            n = run_length()
            if n == 0:
                inv.errors.append(HalError(path, f"Expected a value after parameter {typed}", flag=p.name))
                return 0
            values = [v for tok in following[:n] for v in tok.split(",")]
            if n == len(following):
                inv.swallowed_by = typed     # took the rest of the line, positional argument included
            inv.options.setdefault(p.name, [])
            inv.options[p.name].extend(values)
            return n
        arity = int(p.arity)
        if len(following) < arity:
            msg = (f"Expected a value after parameter {typed}" if arity == 1 and not following
                   else f"Expected {arity} values after {typed}")
            inv.errors.append(HalError(path, msg, flag=p.name))
            return len(following)
        offset = 1 if following[0] == "--" and len(following) > arity else 0
        values = following[offset:offset + arity]
        for v in values:
            err = _convert_error(p, typed, v)
            if err:
                inv.errors.append(HalError(path, err, flag=p.name))
        if p.is_list:
            inv.options.setdefault(p.name, [])
            for v in values:
                inv.options[p.name].extend(v.split(",") if arity == 1 else [v])
        else:
            value = values[0]
            if p.value_type == "boolean":
                inv.options[p.name] = value.lower() == "true"
            elif p.value_type == "integer" and _JAVA_INT.match(value):
                inv.options[p.name] = int(value)
            elif p.value_type == "enum" and p.choices:
                inv.options[p.name] = _choice(p, value) or value
            else:
                inv.options[p.name] = value
        return arity + offset

    def _main_parameter(self, path: str, tok: str, prev: str, inv: Invocation) -> None:
        cmd = self.commands[path]
        params = self.params_at(path)
        switch = params.get(prev)
        flag: str | None = None
        hint = ""
        if switch is not None and switch.arity == 0:
            flag, hint = switch.name, f" ({prev} is a switch and takes no value)"
        elif tok.startswith("-"):
            # Not a known flag, so JCommander took it for a positional argument.
            flag, hint = tok, f" ({tok} is not a flag of {path})"
        if not cmd.args:
            inv.errors.append(HalError(
                path, f"Was passed main parameter '{tok}' but no main parameter was defined in your arg class{hint}",
                flag=flag))
            return
        if inv.args:
            inv.errors.append(HalError(
                path, f'Only one main parameter allowed but found several: "{inv.args[0]}" and "{tok}"'
                      + (hint or f" (expected one {cmd.args[0]})"), flag=flag))
            return
        if tok.startswith("--"):
            # Real hal would take it as the name and the daemon's name validation would then refuse it.
            inv.errors.append(HalError(path, f"Unknown option: {tok} (taken as the {cmd.args[0]} argument)",
                                       flag=tok))
        inv.args.append(tok)

    def _check_required(self, path: str, inv: Invocation) -> None:
        params = self.params_at(path)
        for name in sorted({p.name for p in params.values() if p.required and p.name not in inv.options}):
            inv.errors.append(HalError(
                path, f"The following option is required: [{' | '.join(params[name].aliases)}]", flag=name))

    def _check_args(self, path: str, inv: Invocation) -> None:
        cmd = self.commands[path]
        if cmd.args and not inv.args and path not in OPTIONAL_ARGS:
            note = (f"; {inv.swallowed_by} takes every value up to the next flag, so put {cmd.args[0]} before it"
                    if inv.swallowed_by else "")
            inv.errors.append(HalError(path, f"No {cmd.args[0].lower().replace('-', ' ')} name supplied "
                                             f"(expected {cmd.words[-1]} {cmd.args[0]}{note})",
                                       flag=inv.swallowed_by))

    def _check_semantics(self, path: str, inv: Invocation) -> None:
        if path not in _K8S_ACCOUNT_CMDS or inv.options.get("--no-validate"):
            return
        for a, b, ka, kb in (("--kinds", "--omit-kinds", "kinds", "omitKinds"),
                             ("--namespaces", "--omit-namespaces", "namespaces", "omitNamespaces")):
            if inv.options.get(a) and inv.options.get(b):
                inv.errors.append(HalError(path, f'At most one of "{ka}" and "{kb}" may be specified '
                                                 f"({a} with {b}).", flag=b))


def _jtrim(tok: str) -> str:
    # JCommander trims every argument and strips one pair of surrounding double quotes.
    t = tok.strip()
    if len(t) > 1 and t.startswith('"') and t.endswith('"'):
        t = t[1:-1]
    return t


def _choice(p: Param, value: str) -> str | None:
    for c in p.choices:
        if value == c or value.upper() == c or (p.case_insensitive and value.lower() == c.lower()):
            return c
    return None


def _convert_error(p: Param, typed: str, value: str) -> str | None:
    """JCommander's converter error for ``value``, or None when it converts."""
    vt = p.value_type
    if vt == "boolean":
        if value.lower() not in ("true", "false"):
            return f'"{typed}": couldn\'t convert "{value}" to a boolean'
    elif vt == "integer":
        bound = _INT_RANGES.get(p.java_type, 2**31)
        if not _JAVA_INT.match(value) or not -bound <= int(value) < bound:
            kind = "a long" if p.java_type in ("long", "Long") else "an integer"
            return f'"{typed}": couldn\'t convert "{value}" to {kind}'
    elif vt == "enum" and p.choices:
        if _choice(p, value) is None:
            return f"Invalid value for {typed} parameter. Allowed values:[{', '.join(p.choices)}]"
    elif vt == "url" and p.java_type == "URL":
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        if scheme not in _URL_PROTOCOLS:
            return f'"{typed}": couldn\'t convert "{value}" to a URL'
    return None


@functools.lru_cache(maxsize=None)
def load_grammar(path: str | None = None) -> Grammar:
    """The shipped grammar (cached). ``path`` overrides the packaged ``halconfig/hal-grammar.json``."""
    file = Path(path) if path else data_path(*GRAMMAR_FILE)
    return Grammar(json.loads(file.read_text(encoding="utf-8")))


# -- scripts ----------------------------------------------------------------------------------------------------
_CONTROL = {";", "&&", "||", "|", "&", "|&", ";;", "(", ")", "\n", "((", "))", ";&", ";;&"}
_KEYWORDS = {"if", "then", "elif", "else", "while", "until", "do", "!", "{", "}", "time", "fi", "done", "esac",
             "command", "exec"}
_ASSIGN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
_HEREDOC = re.compile(r"(?<!<)<<(?!<)(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
# Characters that belong to words in shell but that shlex would otherwise split out.
_WORDCHARS = "$%@+:,^~-./*?=[]{}#"


def _tokens(text: str) -> list[str]:
    lex = shlex.shlex(text, posix=True, punctuation_chars="();<>|&")
    lex.wordchars += _WORDCHARS
    lex.commenters = ""          # comments are stripped per line by _strip_comment (bash: only at a word start)
    lex.whitespace_split = False
    return list(lex)


def _strip_comment(line: str) -> str:
    """Drop a trailing ``# comment`` (a ``#`` at the start of a word, outside quotes), as bash does."""
    quote = None
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
            continue
        if ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t;&|()"):
            return line[:i]
    return line


def _simple_commands(tokens: list[str]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for t in tokens:
        if t in _CONTROL:
            out.append([])
        else:
            out[-1].append(t)
    return [c for c in out if c]


def _strip_redirections(words: list[str]) -> list[str]:
    """Remove ``>f``, ``2>&1``, ``<f``, ``&>f`` (with their targets). A run of digits right before a redirection is
    taken as the file descriptor (hal lines never end with a bare number positional)."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w and set(w) <= set("<>&") and ("<" in w or ">" in w):
            if out and out[-1].isdigit():
                out.pop()
            i += 2           # the operator and its target
            continue
        out.append(w)
        i += 1
    return out


def parse_script(text: str) -> list[tuple[int, list[str]]]:
    """Every ``hal ...`` invocation in a bash script, as ``(line number, argv)`` (1-based, first physical line).

    Handles ``\\`` continuations, ``if hal ...; then``, ``&&``/``||``/``;``/pipes, redirections and ``FOO=x hal``;
    skips comments and here-document bodies. Variable references stay as written (``"$HOME"/.hal/x`` becomes the
    opaque string ``$HOME/.hal/x``)."""
    lines = text.splitlines()
    found: list[tuple[int, list[str]]] = []
    i = 0
    while i < len(lines):
        start = i
        logical = _strip_comment(lines[i])
        # Backslash-newline continuation (an odd number of trailing backslashes).
        while (len(logical) - len(logical.rstrip("\\"))) % 2 == 1 and i + 1 < len(lines):
            i += 1
            logical = logical[:-1] + " " + _strip_comment(lines[i])
        tokens: list[str] | None = None
        while tokens is None:
            try:
                tokens = _tokens(logical)
            except ValueError:       # a quoted string spanning lines
                if i + 1 >= len(lines):
                    tokens = []
                    break
                i += 1
                logical += "\n" + lines[i]
        heredocs = _HEREDOC.findall(logical)
        for words in _simple_commands(tokens):
            while words and (words[0] in _KEYWORDS or _ASSIGN.match(words[0])):
                words = words[1:]
            words = _strip_redirections(words)
            if words and Path(words[0]).name == "hal":
                found.append((start + 1, ["hal", *words[1:]]))
        i += 1
        for dash, _q, delim in heredocs:   # skip here-document bodies
            while i < len(lines) and (lines[i].lstrip("\t") if dash else lines[i]) != delim:
                i += 1
            i += 1
    return found


def check_script(text: str, grammar: Grammar | None = None) -> list[tuple[int, HalError]]:
    """Every rejection in a script, with its line number."""
    g = grammar or load_grammar()
    return [(lineno, err) for lineno, argv in parse_script(text) for err in g.check(argv)]
