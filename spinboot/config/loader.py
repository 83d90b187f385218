"""Load spinboot.yaml into a validated SpinbootConfig, or into a list of precise problems.

Every problem names the file, line and column, the field path (``targets[0].namespaces[1]``), what is wrong and
what is allowed. All problems are collected before reporting, in one run: the shape of the file (types, unknown
keys, single-field rules) and the rules across fields, which run on every part of the file whose shape is right
(config.rules.Sections), so a typo in one target does not hide a system namespace in another.

YAML 1.1 (what PyYAML, and Kubernetes' own YAML reader, implement) reads some plain values in ways nobody writing
spinboot.yaml means: ``010`` is the octal 8, ``10:00`` is 600 (base 60), ``no``/``on`` are booleans, ``1.30`` is
1.3. Where that would change a value's meaning silently, the problem says how YAML read it and how to write it.

A value that looks like a credential (problems.secret_kind) is an error wherever it appears, and is never echoed.

Bounds, so that a pathological file is refused in well under a second: at most MAX_FILE_BYTES, MAX_NODES values
after alias expansion, MAX_DEPTH levels, and at most MAX_PROBLEMS problems reported (then a count of the rest).
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from yaml.composer import Composer

from .model import SpinbootConfig
from .problems import ConfigError, Path_, Positions, Problem, format_path, secret_kind, show
from .rules import Sections, check_rules

__all__ = ["ConfigError", "Loaded", "Problem", "format_path", "load_config", "load_config_bytes", "parse_yaml",
           "show"]

# A spinboot.yaml is a few KB (the full example is under 2 KB; a hundred targets with twenty namespaces each stay
# under 60 KB). 256 KiB leaves room for any real file and bounds the work a hostile one can ask for.
MAX_FILE_BYTES = 256 * 1024
# Values in the document, counted as it is read and again as aliases expand ("billion laughs"). A hundred targets
# with fifty namespaces each are about 6 000; the bound keeps a hostile file's cost a small fraction of a second.
MAX_NODES = 10_000
MAX_DEPTH = 64  # the schema nests 6 deep; deeper input would exhaust Python's recursion limit (a traceback)
MAX_PROBLEMS = 100  # a file with 40 000 unknown keys gets the first 100 and a count, not 40 000 lines

_MAP, _SEQ, _MERGE = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge"
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_TOO_DEEP = "tag:spinboot,2026:too-deep"  # stands in for a subtree the composer skipped (see _Loader)

# Kept for code that imported it from here.
_Positions = Positions


@dataclass
class Loaded:
    config: SpinbootConfig
    path: Path
    positions: dict[Path_, tuple[int, int]]
    warnings: list[Problem] = field(default_factory=list)
    raw: bytes = b""
    acknowledged: list[Problem] = field(default_factory=list)  # warnings the file's `acknowledge:` silences


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _TooMany(Exception):
    def __init__(self, mark):
        self.mark = mark


class _DepthBound:
    """A composer that stops descending at MAX_DEPTH, and stops reading after MAX_NODES values.

    PyYAML composes nodes recursively, so ``[[[[...]]]]`` a few hundred levels deep raises RecursionError. A subtree
    below the limit is consumed (its events are read iteratively) and replaced by a marker node that ``_construct``
    reports with the field path where it starts."""

    _depth = 0
    _nodes = 0

    def compose_node(self, parent, index):
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _TooMany(self.peek_event().start_mark)
        if self._depth >= MAX_DEPTH and self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            start = self.peek_event().start_mark
            level = 0
            while True:
                event = self.get_event()
                if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                    level += 1
                elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                    level -= 1
                if level == 0:
                    return yaml.ScalarNode(_TOO_DEEP, "", start, event.end_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _PyLoader(_DepthBound, yaml.SafeLoader):
    """Pure-Python SafeLoader with the depth bound."""


if yaml.__with_libyaml__:
    class _CLoader(_DepthBound, Composer, yaml.CSafeLoader):
        """libyaml's scanner and parser (about six times faster than PyYAML's) under PyYAML's own composer, so the
        depth bound, the alias handling and the node marks are the same as with _PyLoader."""

        def __init__(self, stream):
            yaml.CSafeLoader.__init__(self, stream)
            Composer.__init__(self)

    _Loader: type = _CLoader
else:  # pragma: no cover - PyYAML without libyaml
    _Loader = _PyLoader


def _tag_name(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


# YAML 1.1 integers that do not mean what they look like (https://yaml.org/type/int.html): a leading 0 is octal
# (010 is 8), and colons make base 60 (10:00 is 600). Floats in base 60 likewise (https://yaml.org/type/float.html).
_OCTAL = re.compile(r"[-+]?0[0-7_]+")
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")


def _surprise(node: yaml.ScalarNode, value: Any) -> str | None:
    """How YAML 1.1 read a plain scalar, when that is not what it looks like; None when it is."""
    if node.style:  # quoted: text is text
        return None
    text = node.value
    if node.tag == _INT and _OCTAL.fullmatch(text) and isinstance(value, int):
        return (f"{text} is read by YAML 1.1 as the octal number {value} (allowed: {text.lstrip('0') or '0'} or "
                f"{value} without the leading zero; or quote it, \"{text}\", if it is text)")
    if node.tag in (_INT, _FLOAT) and ":" in text and _SEXAGESIMAL.fullmatch(text):
        return (f"{text} is read by YAML 1.1 as the base-60 number {show(value)} (allowed: {show(value)}; or quote "
                f"it, \"{text}\", if it is text)")
    return None


def _construct(loader, root: yaml.Node, pos: Positions) -> tuple[Any, list[Problem]]:
    """Build plain Python data from the node tree, recording positions, refusing duplicate keys, and noting values
    YAML 1.1 reads surprisingly and values that look like credentials (each becomes None or a placeholder, and a
    problem).

    Merge keys (``<<: *anchor``) are resolved here rather than by PyYAML's flatten_mapping, so that what they expand
    to is counted against MAX_NODES, a merge that refers to its own mapping is an error (not endless recursion), and
    an explicit key overrides a merged one (the YAML merge-key rule) instead of being reported as a duplicate."""
    count = 0
    problems: list[Problem] = []
    too_deep = (f"nested more than {MAX_DEPTH} levels deep (allowed: the shape in docs/configuration.md, "
                "at most 6 levels)")

    def add(node: yaml.Node, path: Path_, message: str) -> None:
        line, col = _mark(node)
        problems.append(Problem(pos.file, line, col, format_path(path), message))

    def secret(node: yaml.Node, path: Path_, kind: str) -> None:
        add(node, path, f"this looks like {kind}, which is not shown here: spinboot.yaml holds no credentials "
                        "(allowed: keep it in a Kubernetes Secret and name the Secret, e.g. tokenSecret: {name, key}; "
                        "if this file was committed or shared, revoke the credential)")

    def build(node: yaml.Node, path: Path_, depth: int = 0, ancestors: frozenset[int] = frozenset()) -> Any:
        nonlocal count
        count += 1
        if count > MAX_NODES:
            raise ConfigError([pos.problem(path, f"the document expands to more than {MAX_NODES} values "
                                                 "(allowed: a normal-sized file; YAML aliases are expanded)")])
        if id(node) in ancestors:
            add(node, path, "an alias refers to the mapping or list that contains it (allowed: aliases to values "
                            "defined elsewhere)")
            return None
        if depth > MAX_DEPTH or node.tag == _TOO_DEEP:
            add(node, path, too_deep)
            return None
        inner = ancestors | {id(node)}
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in (_MAP, _SEQ):
            add(node, path, f"YAML tag {_tag_name(node.tag)} is not allowed (allowed: plain mappings, lists and "
                            "values, without tags)")
            return None
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            merged: dict[str, Any] = {}
            pairs = [p for p in node.value if p[0].tag == _MERGE] + [p for p in node.value if p[0].tag != _MERGE]
            for key_node, value_node in pairs:
                if key_node.tag == _MERGE:
                    sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                    for source in sources:  # the first source listed wins (YAML merge-key rule)
                        if not isinstance(source, yaml.MappingNode):
                            add(source, path, "<< merges a mapping or a list of mappings (allowed: <<: *anchor "
                                              "or <<: [*a, *b])")
                            continue
                        sub = build(source, path, depth + 1, inner)
                        for k, v in (sub or {}).items():
                            merged.setdefault(k, v)
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    add(key_node, path, "a key must be a plain string (allowed: name: value)")
                    continue
                key = key_node.value
                kind = secret_kind(key)
                if kind:
                    key = f"[redacted key {len(out)}]"
                    secret(key_node, path + (key,), kind)
                child = path + (key,)
                if key in out:
                    first = pos.map.get(child, (0, 0))[0]
                    add(key_node, child, f"duplicate key {show(key)}, first given on line {first} "
                                         "(allowed: each key once)")
                    continue
                pos.map[child] = _mark(key_node)
                out[key] = build(value_node, child, depth + 1, inner)
            for k, v in merged.items():
                out.setdefault(k, v)  # an explicit key overrides a merged one
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                pos.map[path + (i,)] = _mark(item)
                items.append(build(item, path + (i,), depth + 1, inner))
            return items
        pos.text[path] = node.value
        if node.style:
            pos.quoted.add(path)
        kind = secret_kind(node.value)
        if kind:
            secret(node, path, kind)
            return "[redacted]"
        try:
            value = loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            add(node, path, f"not valid YAML: {exc.problem} (allowed: plain values, without tags)")
            return None
        except ValueError as exc:  # int() past 4300 digits, a date such as 2026-13-45
            reason = str(exc).split(";")[0].split(":")[0]
            add(node, path, f"{show(node.value)} cannot be read as {_tag_name(node.tag)} ({reason}; allowed: a value "
                            "of the field's type, or quote it to make it text)")
            return None
        surprise = _surprise(node, value)
        if surprise:
            add(node, path, surprise)
            return None
        return value

    data = build(root, ())
    return data, problems


def _path_at(text: str, index: int) -> Path_:
    """The field path being written at character ``index``, from the YAML events before it.

    Syntax errors stop PyYAML before any node exists; replaying the event stream (iteratively, so depth is no
    problem) up to the error still says which field it is in, e.g. ``spinnaker.version`` for a tab there."""
    frames: list[list[Any]] = []  # [is_mapping, current key or index, expecting a key]

    def value_seen() -> None:
        if frames and frames[-1][0]:
            frames[-1][2] = True
        elif frames:
            frames[-1][1] += 1

    try:
        for event in yaml.parse(text, Loader=yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):
            ending = isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent, yaml.DocumentEndEvent))
            if event.start_mark.index > index or (event.start_mark.index == index and not ending):
                break
            if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
                if frames and frames[-1][0] and frames[-1][2]:
                    frames[-1][1], frames[-1][2] = getattr(event, "value", None), False
                else:
                    value_seen()
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if frames and frames[-1][0] and frames[-1][2]:
                    frames[-1][2] = False  # a mapping used as a key: the key is not a plain string
                    frames[-1][1] = None
                elif frames and not frames[-1][0]:
                    frames[-1][1] += 1
                frames.append([True, None, True] if isinstance(event, yaml.MappingStartEvent) else [False, -1, False])
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frames.pop()
                if frames and frames[-1][0]:
                    frames[-1][2] = True
    except yaml.YAMLError:
        pass
    path: list[str | int] = []
    for is_mapping, at, _expecting_key in frames:
        if at is None:
            break
        path.append(at if is_mapping else max(at, 0))
    return tuple(path)


def parse_yaml(raw: bytes, file: str) -> tuple[Any, Positions, list[Problem]]:
    """The document as plain data, where each value is written, and the problems found while reading it that do
    not stop reading (values YAML reads surprisingly, credentials, duplicate keys, tags). Problems that stop reading
    (syntax, size, encoding) raise ConfigError."""
    pos = Positions(file)
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError([Problem(file, 1, 1, "", f"the file is larger than {MAX_FILE_BYTES} bytes (allowed: at "
                                                    f"most {MAX_FILE_BYTES}; a spinboot.yaml is a few KB)")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        where = format_path(_path_at(raw.decode("utf-8", "replace"), len(before.decode("utf-8", "replace"))))
        raise ConfigError([Problem(file, line, col, where, f"byte 0x{raw[exc.start]:02x} is not UTF-8 "
                                                        "(allowed: a UTF-8 text file)")]) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    loader = None
    try:
        loader = _Loader(text)  # the reader checks every character here and while reading on
        root = loader.get_single_node()
        if root is None:
            raise ConfigError([Problem(file, 1, 1, "", "the file is empty (allowed: a mapping with project, "
                                                        "cluster, spinnaker; run 'spinboot init' for a starter)")])
        data, problems = _construct(loader, root, pos)
    except _TooMany as exc:
        raise ConfigError([Problem(file, exc.mark.line + 1, exc.mark.column + 1,
                                   format_path(_path_at(text, exc.mark.index)),
                                   f"the document has more than {MAX_NODES} values (allowed: a normal-sized file)")]
                          ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        where = format_path(_path_at(text, mark.index)) if mark else ""
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        raise ConfigError([Problem(file, line, col, where, f"not valid YAML: {what}")]) from None
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        where = format_path(_path_at(yaml.reader.Reader.NON_PRINTABLE.sub(" ", text), exc.position))
        raise ConfigError([Problem(file, line, col, where, f"character U+{exc.character:04X} is not allowed in YAML "
                                                        "(allowed: printable text; write control characters as "
                                                        "escapes in double quotes, e.g. \"\\t\")")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, 1, 1, "", f"not valid YAML: {exc}")]) from None
    except RecursionError:  # a last resort: _Loader and _construct bound the depth before this can happen
        raise ConfigError([Problem(file, 1, 1, "", f"nested too deeply (allowed: at most {MAX_DEPTH} levels)")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        problems.append(Problem(file, 1, 1, "", f"the top level is a {type(data).__name__} "
                                                "(allowed: a mapping with project, cluster, spinnaker, ...)"))
        raise ConfigError(problems)
    return data, pos, problems


# --- pydantic errors to problems --------------------------------------------------------------------------------

def _unwrap(annotation: Any) -> Any:
    """Strip Annotated and Optional so we can walk into the model a location points at."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _field_at(path: Path_) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model containing the last element of ``path``, and that field's info (by alias)."""
    current: Any = SpinbootConfig
    model: type[BaseModel] | None = None
    info: FieldInfo | None = None
    for part in path:
        current = _unwrap(current)
        if isinstance(part, int):
            if typing.get_origin(current) is list:
                current = typing.get_args(current)[0]
                continue
            return None, None
        if isinstance(current, type) and issubclass(current, BaseModel):
            model = current
            info = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
            if info is None:
                return model, None
            current = info.annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
            model, info = None, None
        else:
            return None, None
    return model, info


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _bounds(info: FieldInfo | None) -> str | None:
    if info is None:
        return None
    lo = hi = None
    for m in info.metadata:
        lo = getattr(m, "ge", None) if getattr(m, "ge", None) is not None else lo
        hi = getattr(m, "le", None) if getattr(m, "le", None) is not None else hi
    if lo is not None and hi is not None:
        return f"{lo} to {hi}"
    if lo is not None:
        return f"{lo} or more"
    if hi is not None:
        return f"at most {hi}"
    return None


def _real_path(loc: tuple, data: Any) -> Path_:
    """pydantic locations include validator tags for unions; keep only parts that exist in the document."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and isinstance(part, str) and part in current:
            path.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
        elif isinstance(current, dict) and isinstance(part, str) and not path_is_tag(part):
            path.append(part)  # a missing field: name it
            current = None
    return tuple(path)


def path_is_tag(part: str) -> bool:
    return "[" in part or part.startswith(("function-", "union", "literal", "nullable"))


_TYPE_WORDS = {bool: "the boolean", int: "the integer", float: "the number", datetime.date: "the date",
               datetime.datetime: "the timestamp", bytes: "binary data"}


def _read_as(value: Any, path: Path_, pos: Positions, wanted: str, allowed: str) -> str:
    """Say how YAML read a plain value that the field wanted as something else, and how to write it."""
    written = pos.text.get(path, "")
    shown = written if len(written) <= 80 else f"{written[:60]}... ({len(written)} characters)"
    if value is None:
        what = "no value (YAML reads an empty value, ~ and null as nothing)"
        how = f"{allowed}, or leave the key out for its default" if wanted != "text" else \
            "text, or leave the key out for its default"
        return f"{shown or 'the value'} is read as {what}, not {wanted} (allowed: {how})"
    if isinstance(value, bool):
        reading = f"the boolean {str(value).lower()}"
    elif isinstance(value, bytes):
        reading = "binary data"
    else:
        word = next((w for t, w in _TYPE_WORDS.items() if type(value) is t), f"a {type(value).__name__}")
        reading = f"{word} {value.isoformat() if isinstance(value, datetime.date) else show(value)}"
    if wanted == "text":
        return f"{shown} is read by YAML as {reading}, not text (allowed: text; quote it: \"{shown}\")"
    return f"{shown} is read by YAML as {reading}, not {wanted} (allowed: {allowed})"


def _describe(err: dict[str, Any], path: Path_, pos: Positions) -> str:
    kind = err["type"]
    value = err.get("input")
    model, info = _field_at(path)
    description = (info.description or "").rstrip(".") if info else ""
    if kind == "extra_forbidden":
        key = str(path[-1])
        parent_model, _ = _field_at(path[:-1]) if path[:-1] else (SpinbootConfig, None)
        if path[:-1]:
            _, parent_info = _field_at(path[:-1])
            parent_model = _unwrap(parent_info.annotation) if parent_info else None
            if typing.get_origin(parent_model) is list:
                parent_model = _unwrap(typing.get_args(parent_model)[0])
        allowed = _allowed_keys(parent_model) if isinstance(parent_model, type) and issubclass(parent_model, BaseModel) else []
        guess = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {guess[0]!r}? " if guess else ""
        return f"unknown key {show(key)} ({hint}allowed: {', '.join(allowed)})"
    if kind == "missing":
        return f"required field is missing (allowed: {description or 'see docs/configuration.md'})"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{show(value)} is out of range (allowed: {_bounds(info) or err['msg'].lower()})"
    if kind in ("too_short", "too_long"):
        return f"{err['msg'].lower()} (allowed: {description or 'see docs/configuration.md'})"
    if kind == "literal_error":
        return f"{show(value)} is not allowed (allowed: {err['ctx']['expected']})"
    if kind == "string_type" and path in pos.text and not isinstance(value, str):
        return _read_as(value, path, pos, "text", "text")
    if kind in ("int_type", "int_parsing", "int_from_float"):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{show(value)} is not a finite number (allowed: {_bounds(info) or 'an integer'})"
        if isinstance(value, str):
            if path not in pos.quoted and re.fullmatch(r"[-+]?0[0-9_]+", value):
                # 08 and 09 are not octal, so YAML 1.1 reads them as text, not as numbers.
                return (f"{value} has a leading zero, so YAML 1.1 reads it as text, not a number (allowed: "
                        f"{value.lstrip('+-0') or '0'}; {_bounds(info) or 'an integer'})")
            return f"{show(value)} is text, not a whole number (allowed: {_bounds(info) or 'an integer'}; " \
                   f"write it without quotes)"
        if isinstance(value, bool) or value is None:
            return _read_as(value, path, pos, "a whole number", _bounds(info) or "an integer")
        return f"{show(value)} is not a whole number (allowed: {_bounds(info) or 'an integer'})"
    if kind in ("bool_type", "bool_parsing") and path in pos.text and value is None:
        return _read_as(value, path, pos, "true or false", "true or false")
    if kind in ("bool_type", "bool_parsing"):
        return f"{show(value)} is not a boolean (allowed: true or false)"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {type(value).__name__} {show(value)} (allowed: {description or 'a mapping'})"
    if kind == "list_type":
        return f"expected a list, got {type(value).__name__} {show(value)} (allowed: a YAML list, e.g. [a, b])"
    if kind == "string_pattern_mismatch":
        return f"{show(value)} does not match {err['ctx']['pattern']} (allowed: {description or 'see docs'})"
    if kind == "value_error":  # validators quote the value with repr(): shorten a very long one
        message = str(err["ctx"]["error"])
        return message.replace(repr(value), show(value)) if isinstance(value, str) else message
    return f"{err['msg']} (allowed: {description or 'see docs/configuration.md'})"


def _pydantic_problems(exc: ValidationError, data: Any, pos: Positions) -> tuple[list[Problem], int]:
    """The problems pydantic found, described, at most MAX_PROBLEMS of them; and how many more there are."""
    problems = []
    seen = set()
    errors = exc.errors(include_url=False)
    for n, err in enumerate(errors):
        if len(problems) >= MAX_PROBLEMS:
            return problems, len(errors) - n
        path = _real_path(err["loc"], data)
        message = _describe(err, path, pos)
        key = (path, message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(pos.problem(path, message))
    return problems, 0


def load_config(path: str | Path) -> Loaded:
    """Read and validate a spinboot file. Raises ConfigError with every problem found."""
    path = Path(path)
    name = str(path)
    try:
        with path.open("rb") as fh:  # bounded: -c /dev/zero or a huge file must not exhaust memory
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([Problem(name, 0, 0, "", "no such file (allowed: a path to spinboot.yaml; "
                                                    "'spinboot init' writes a starter)")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(name, 0, 0, "", "is a directory (allowed: a path to a YAML file)")]) from None
    except OSError as exc:
        raise ConfigError([Problem(name, 0, 0, "", f"cannot be read: {exc.strerror}")]) from None
    return load_config_bytes(raw, name, path)


def _within(path: str, prefixes: set[str]) -> bool:
    return any(path == p or path.startswith((p + ".", p + "[")) for p in prefixes)


def _report(found: list[Problem], file: str, more: int = 0) -> ConfigError:
    """Sorted by place; at most MAX_PROBLEMS, then how many more (``more``: those not even described)."""
    found = sorted(found, key=lambda p: (p.line, p.column))
    rest = max(len(found) - MAX_PROBLEMS, 0) + more
    if rest:
        found = found[:MAX_PROBLEMS]
        last = found[-1]
        found.append(Problem(file, last.line, last.column, "", f"... and {rest} more problem(s) not listed "
                                                               "(allowed: fix these first and run again)"))
    return ConfigError(found, rest)


def load_config_bytes(raw: bytes, name: str, path: Path | None = None) -> Loaded:
    data, pos, read_problems = parse_yaml(raw, name)
    read_paths = {p.path for p in read_problems}
    try:
        config = SpinbootConfig.model_validate(data)
    except ValidationError as exc:
        shape, more = _pydantic_problems(exc, data, pos)
        shape = [p for p in shape if not _within(p.path, read_paths)]
        # The rules across fields still run on every part whose shape is right.
        found = check_rules(Sections.from_data(data), pos)
        found = _acknowledge(found, data.get("acknowledge"))[0]
        raise _report(read_problems + shape + found, name, more) from None
    found, acknowledged = _acknowledge(check_rules(Sections.of(config), pos), config.acknowledge)
    if read_problems or any(p.severity == "error" for p in found):
        raise _report(read_problems + found, name)
    return Loaded(config=config, path=path or Path(name), positions=pos.map,
                  warnings=sorted(found, key=lambda p: (p.line, p.column)), raw=raw,
                  acknowledged=sorted(acknowledged, key=lambda p: (p.line, p.column)))


def _acknowledge(found: list[Problem], codes: Any) -> tuple[list[Problem], list[Problem]]:
    """(problems still to show, warnings the file acknowledged)."""
    codes = set(c for c in codes if isinstance(c, str)) if isinstance(codes, list) else set()
    shown: list[Problem] = []
    silenced: list[Problem] = []
    for p in found:
        (silenced if p.severity == "warning" and p.code in codes and not p.loud else shown).append(p)
    return shown, silenced
