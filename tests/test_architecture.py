"""The package's import graph has no cycles (issue 11: no ``cli`` <-> ``cli.ops_*`` or ``config.loader`` <->
``config.rules`` loops).

Read with ``ast``, not by importing: every ``import``/``from ... import`` anywhere in a module counts, at module
level, inside functions and under ``if TYPE_CHECKING:`` alike, because a function-level import only postpones a
cycle to the first call (and hides the layering problem it points at). An import of a name from a package counts as
an import of that package's ``__init__``; ``from pkg import submodule`` counts as an import of the submodule. The
implicit import of a parent package when a submodule loads is not an edge (it would make every package a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "spinboot"


def modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``) for every .py file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _targets(name: str, is_pkg: bool, node: ast.Import | ast.ImportFrom, mods, top: str) -> set[str]:
    """The modules of this tree that one import statement loads."""
    if isinstance(node, ast.Import):
        found = {a.name for a in node.names}
    else:
        if node.level:
            base = name.split(".") if is_pkg else name.split(".")[:-1]
            base = base[:len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        # `from pkg import sub` loads pkg.sub when it is a module; `from pkg import name` loads pkg.
        found = {f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in mods else prefix for a in node.names}
    out = set()
    for dotted in found:
        if dotted != top and not dotted.startswith(top + "."):
            continue
        while dotted not in mods and "." in dotted:   # `import a.b.c` where c is a name: the nearest module
            dotted = dotted.rsplit(".", 1)[0]
        if dotted in mods:
            out.add(dotted)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    mods = modules(root)
    top = root.name
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps |= _targets(name, is_pkg, node, mods, top)
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def _path(graph: dict[str, set[str]], comp: list[str]) -> str:
    """One loop through the component, for the failure message."""
    members = set(comp)
    start = comp[0]
    seen = [start]
    while True:
        nxt = next(w for w in sorted(graph[seen[-1]]) if w in members)
        if nxt in seen:
            return " -> ".join(seen[seen.index(nxt):] + [nxt])
        seen.append(nxt)


def test_spinboot_has_no_import_cycles():
    graph = import_graph(ROOT)
    assert "spinboot.cli.main" in graph and "spinboot.config.rules" in graph   # the walk saw the tree
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(_path(graph, c) for c in found)


@pytest.mark.parametrize("a_imports, b_imports", [
    ("from . import b", "from .a import X"),                        # module level, relative
    ("def f():\n    from .b import Y", "import pkg.a"),              # function level, absolute
    ("from .b import Y", "def g():\n    from . import a"),           # `from . import module`
    ("from .. import pkg", "from . import a"),                        # through the package's __init__
])
def test_cycle_detector_finds_cycles(tmp_path: Path, a_imports: str, b_imports: str):
    """The detector itself: each form of import closes a loop it must report (else the test above proves nothing)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .b import Y\n" if "from .. import pkg" in a_imports else "")
    (pkg / "a.py").write_text(a_imports.replace("from .. import pkg", "from . import Y") + "\nX = 1\n")
    (pkg / "b.py").write_text(b_imports + "\nY = 2\n")
    (pkg / "c.py").write_text("from .a import X\n")   # depends on the loop, is not in it
    found = cycles(import_graph(pkg))
    assert len(found) == 1 and {"pkg.a", "pkg.b"} <= set(found[0]) and "pkg.c" not in found[0], found


def test_cycle_detector_accepts_layers(tmp_path: Path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import X\n")
    (pkg / "a.py").write_text("from .sub import inner\nX = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "inner.py").write_text("import os\nfrom ..b import Z\n")
    (pkg / "b.py").write_text("Z = 3\n")
    assert cycles(import_graph(pkg)) == []
