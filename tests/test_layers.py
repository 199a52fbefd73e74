"""The import layers stay one-way: read every module's imports with ``ast`` and check the rules.

Imports inside functions count (a lazy import still ties the two modules together) and so does
importing ``a.b.c``, which runs the package ``a.b``'s ``__init__`` first. The rules name the
target layout (``store/local/``, a ``cli/`` package, ``views``); a rule whose subject does not
exist yet simply has no subject.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = "mcplens"

#: (subject layers, layers they must never import, why)
RULES: list[tuple[tuple[str, ...], tuple[str, ...], str]] = [
    (("capture", "privacy"), ("store", "analysis", "cli", "dashboard", "views", "exporters"),
     "the request path and the privacy stage know nothing of storage, reading or exporters"),
    (("pipeline",), ("cli", "analysis", "dashboard", "views", "exporters"),
     "the pipeline is wired to exporters from above (instrument(), mcplens proxy)"),
    (("store",), ("analysis", "cli", "dashboard", "views", "exporters"),
     "the store owns where events live; what they mean is the analysis's business"),
    (("exporters",), ("store", "analysis", "cli", "dashboard", "views"),
     "exporters read sanitized events, nothing else"),
    (("analysis",), ("cli", "dashboard", "views"), "the analysis answers questions; front ends shape them"),
    (("",), ("store", "analysis", "cli", "dashboard", "views"),
     "`import mcplens` (instrument) stays cheap: standard library and the capture side only"),
]
#: the top: only each other (and the command-line wiring) may import them
TOP = ("cli", "dashboard", "views")
TOP_IMPORTERS = (*TOP, "__main__")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def is_package(name: str, known: dict[str, Path]) -> bool:
    return name in known and known[name].name == "__init__.py"


def typing_only_nodes(tree: ast.AST) -> set[int]:
    """The nodes inside ``if TYPE_CHECKING:`` blocks: imports for annotations, never run."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                out.update(id(n) for n in ast.walk(child))
    return out


def imported(name: str, path: Path, known: dict[str, Path], *, with_typing: bool = True) -> set[str]:
    """The mcplens modules ``name`` imports, anywhere in the file, with the packages each runs;
    ``with_typing=False`` leaves out imports under ``if TYPE_CHECKING:`` (they never run, so they
    close no cycle; they still count for the layer rules)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if is_package(name, known) else name.rpartition(".")[0]
    found: set[str] = set()
    typing_only = typing_only_nodes(tree) if not with_typing else set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        targets: Iterable[str] = ()
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            # `from a import b`: b may be a module of its own
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        for t in targets:
            if t != ROOT and not t.startswith(ROOT + "."):
                continue
            while t and t not in known:  # `import a.b.attr` style, or a name inside a module
                t = t.rpartition(".")[0]
            # the module and every package above it, but those `name` is inside of (already
            # being imported when it runs) and the root (everything is below it)
            while t and t != ROOT:
                if not name.startswith(t + "."):
                    found.add(t)
                t = t.rpartition(".")[0]
    found.discard(name)
    return found


@functools.cache
def graph(*, with_typing: bool = True) -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known, with_typing=with_typing) for name, path in known.items()}


def layer(name: str) -> str:
    """``mcplens.store.local.writer`` -> ``store``; ``mcplens`` (the package itself) -> ``""``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(g, WHITE)
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = GREY
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if color.get(m, BLACK) == GREY:
                return [*stack[stack.index(m):], m]
            if color.get(m) == WHITE:
                cycle = visit(m)
                if cycle:
                    return cycle
        stack.pop()
        color[n] = BLACK
        return None

    for n in sorted(g):
        if color[n] == WHITE:
            cycle = visit(n)
            if cycle:
                return cycle
    return None


#: lazy imports (inside a function) that close a cycle, each allowed on purpose until it is broken;
#: :func:`test_every_allowance_is_still_needed` fails once one is gone, so the list only shrinks
ALLOWED_LAZY_EDGES: set[tuple[str, str]] = set()


def test_no_import_cycle() -> None:
    g = {name: deps - {d for n, d in ALLOWED_LAZY_EDGES if n == name}
         for name, deps in graph(with_typing=False).items()}
    cycle = find_cycle(g)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_every_allowance_is_still_needed() -> None:
    g = graph()
    gone = [edge for edge in ALLOWED_LAZY_EDGES if edge[0] in g and edge[1] not in g[edge[0]]]
    assert not gone, f"no longer imported: remove from ALLOWED_LAZY_EDGES: {gone}"


def violations(subjects: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    g = graph()
    out = []
    for name, deps in sorted(g.items()):
        if layer(name) not in subjects or (subjects == ("",) and name != ROOT):
            continue
        for dep in sorted(deps):
            if layer(dep) in forbidden:
                out.append(f"{name} imports {dep}")
    return out


@pytest.mark.parametrize(("subjects", "forbidden", "why"), RULES, ids=[",".join(r[0]) or "mcplens" for r in RULES])
def test_lower_layers_never_import_higher_ones(subjects: tuple[str, ...], forbidden: tuple[str, ...],
                                               why: str) -> None:
    found = violations(subjects, forbidden)
    assert not found, f"{why}:\n" + "\n".join(found)


def test_the_top_is_imported_only_by_the_top() -> None:
    found = [f"{name} imports {dep}" for name, deps in sorted(graph().items()) for dep in sorted(deps)
             if layer(dep) in TOP and layer(name) not in TOP_IMPORTERS]
    assert not found, "views, cli and dashboard sit at the top:\n" + "\n".join(found)


def test_the_reader_sees_every_import_form(tmp_path: Path) -> None:
    """The checker itself: relative, lazy, `from package import module` and parent packages."""
    known = {"mcplens.a": Path("a.py"), "mcplens.b": tmp_path / "b" / "__init__.py", "mcplens.b.c": Path("c.py"),
             "mcplens.d": Path("d.py")}
    src = tmp_path / "a.py"
    src.write_text("from .b import c\ndef f():\n    import mcplens.d\n    from mcplens import d as e\n")
    assert imported("mcplens.a", src, known) == {"mcplens.b", "mcplens.b.c", "mcplens.d"}
    typed = tmp_path / "t.py"
    typed.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mcplens import d\n")
    assert imported("mcplens.t", typed, known) == {"mcplens.d"}
    assert imported("mcplens.t", typed, known, with_typing=False) == set()
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == ["x", "y", "z", "x"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None
