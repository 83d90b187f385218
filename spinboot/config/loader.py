"""Load spinboot.yaml into a validated SpinbootConfig, or into a list of precise problems.

Every problem names the file, line and column, the field path (``targets[0].namespaces[1]``), what is wrong and
what is allowed. All problems are collected before reporting: first the shape of the file (types, unknown keys,
single-field rules, all at once), then, if the shape is right, the rules across fields (also all at once).
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from .model import SpinbootConfig

MAX_FILE_BYTES = 1 << 20
MAX_NODES = 50_000  # bounds what YAML aliases can expand to ("billion laughs")
MAX_DEPTH = 64  # the schema nests 6 deep; deeper input would exhaust Python's recursion limit (a traceback)

_MAP, _SEQ, _MERGE = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge"
_TOO_DEEP = "tag:spinboot,2026:too-deep"  # stands in for a subtree the composer skipped (see _Loader)

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    column: int
    path: str
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {prefix}{self.path or '(file)'}: {self.message}"

    def as_event(self) -> dict[str, Any]:
        return {"event": "problem", "severity": self.severity, "file": self.file, "line": self.line,
                "column": self.column, "path": self.path, "message": self.message}


class ConfigError(Exception):
    """The file is invalid; ``problems`` says everything that is wrong with it."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class Loaded:
    config: SpinbootConfig
    path: Path
    positions: dict[Path_, tuple[int, int]]
    warnings: list[Problem] = field(default_factory=list)
    raw: bytes = b""


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = str(part)
            # A key with a newline or escape sequence must not break the one-line FILE:LINE:COL: path format.
            out += ("." if out else "") + (part if part.isprintable() else repr(part))
    return out


def show(value: Any, limit: int = 80) -> str:
    """repr() for messages: shortened when long, and safe for ints past Python's 4300-digit str() limit."""
    try:
        text = repr(value)
    except ValueError:
        if isinstance(value, int):
            return f"a {value.bit_length()}-bit number"
        return f"a {type(value).__name__} holding a number too long to print"
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text)} characters)"


class _Positions:
    """Maps each path in the document to the line and column (1-based) where it is written."""

    def __init__(self, file: str):
        self.file = file
        self.map: dict[Path_, tuple[int, int]] = {(): (1, 1)}
        self.text: dict[Path_, str] = {}  # scalars as written, e.g. "1.30" that YAML reads as 1.3

    def at(self, path: Path_) -> tuple[int, int]:
        for n in range(len(path), -1, -1):
            if path[:n] in self.map:
                return self.map[path[:n]]
        return (1, 1)

    def problem(self, path: Path_, message: str, severity: str = "error") -> Problem:
        line, col = self.at(path)
        return Problem(self.file, line, col, format_path(path), message, severity)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer stops descending at MAX_DEPTH.

    PyYAML composes nodes recursively, so ``[[[[...]]]]`` a few hundred levels deep raises RecursionError. A subtree
    below the limit is consumed (its events are read iteratively) and replaced by a marker node that ``_construct``
    reports with the field path where it starts."""

    _depth = 0

    def compose_node(self, parent, index):
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


def _tag_name(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _construct(loader: yaml.SafeLoader, root: yaml.Node, pos: _Positions) -> Any:
    """Build plain Python data from the node tree, recording positions and refusing duplicate keys.

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
        try:
            return loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            add(node, path, f"not valid YAML: {exc.problem} (allowed: plain values, without tags)")
        except ValueError as exc:  # int() past 4300 digits, a date such as 2026-13-45
            reason = str(exc).split(";")[0].split(":")[0]
            add(node, path, f"{show(node.value)} cannot be read as {_tag_name(node.tag)} ({reason}; allowed: a value "
                            "of the field's type, or quote it to make it text)")
        return None

    data = build(root, ())
    if problems:
        raise ConfigError(problems)
    return data


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
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
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


def parse_yaml(raw: bytes, file: str) -> tuple[Any, _Positions]:
    pos = _Positions(file)
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError([Problem(file, 1, 1, "", f"the file is larger than {MAX_FILE_BYTES} bytes (allowed: at most {MAX_FILE_BYTES})")])
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
        data = _construct(loader, root, pos)
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
        raise ConfigError([Problem(file, 1, 1, "", f"the top level is a {type(data).__name__} "
                                                    "(allowed: a mapping with project, cluster, spinnaker, ...)")])
    return data, pos


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


def _describe(err: dict[str, Any], path: Path_, pos: _Positions) -> str:
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
    if kind == "string_type" and isinstance(value, (int, float, bool)):
        written = pos.text.get(path) or show(value)
        written = written if len(written) <= 80 else f"{written[:60]}... ({len(written)} characters)"
        return f"{written} is read as a {type(value).__name__}, not a string (allowed: text; quote it: \"{written}\")"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{show(value)} is not a finite number (allowed: {_bounds(info) or 'an integer'})"
        if isinstance(value, str):
            return f"{show(value)} is text, not a whole number (allowed: {_bounds(info) or 'an integer'}; " \
                   f"write it without quotes)"
        return f"{show(value)} is not a whole number (allowed: {_bounds(info) or 'an integer'})"
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


def _pydantic_problems(exc: ValidationError, data: Any, pos: _Positions) -> list[Problem]:
    problems = []
    seen = set()
    for err in exc.errors(include_url=False):
        path = _real_path(err["loc"], data)
        message = _describe(err, path, pos)
        key = (path, message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(pos.problem(path, message))
    return problems


def load_config(path: str | Path) -> Loaded:
    """Read and validate a spinboot file. Raises ConfigError with every problem found."""
    from .rules import check_rules

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


def load_config_bytes(raw: bytes, name: str, path: Path | None = None) -> Loaded:
    from .rules import check_rules

    data, pos = parse_yaml(raw, name)
    try:
        config = SpinbootConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(sorted(_pydantic_problems(exc, data, pos), key=lambda p: (p.line, p.column))) from None
    found = check_rules(config, pos)
    errors = [p for p in found if p.severity == "error"]
    if errors:
        raise ConfigError(sorted(found, key=lambda p: (p.line, p.column)))
    return Loaded(config=config, path=path or Path(name), positions=pos.map,
                  warnings=sorted(found, key=lambda p: (p.line, p.column)), raw=raw)
