"""The import graph of agent/: no cycle, and no part importing a part it must not know about.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` in a
module, at module level or inside a function (a deferred import still loads the module the first
time it runs), relative ones resolved. Imports under ``if TYPE_CHECKING:`` are left out: they
never run, and a type annotation naming a module above is not a dependency on it.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "agent"

Graph = dict[str, set[str]]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` (their ``else`` runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """The agent modules that ``name`` (the module in ``path``) imports when it runs."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # a package's own name is its base; a module's is its package
                base = name.split(".")
                keep = len(base) - node.level + (1 if is_package else 0)
                base = base[:keep]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                assert node.module is not None
                target = node.module
            for alias in node.names:
                # ``from agent.store import admin`` imports the module agent.store.admin
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


@functools.cache
def _read_graph() -> tuple[tuple[str, frozenset[str]], ...]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return tuple((name, frozenset(imports_of(path, name, modules))) for name, path in paths.items())


def import_graph() -> Graph:
    """The import graph of agent/ (parsed once per test run; a fresh copy each call)."""
    return {name: set(targets) for name, targets in _read_graph()}


def find_cycle(graph: Graph) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None when the graph has none."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt in done:
                continue
            path.append(nxt)
            on_path.add(nxt)
            stack.append(iter(sorted(graph[nxt])))
    return None


def within(*packages: str) -> Callable[[str], bool]:
    """True for a module that is one of ``packages`` or inside one of them."""
    return lambda m: any(m == p or m.startswith(p + ".") for p in packages)


NEUTRAL = (
    "agent.errors",
    "agent.records",
    "agent.printable",
    "agent.hashspace",
    "agent.sqlitedb",
    "agent.checkpoints",
)


@dataclass(frozen=True)
class Rule:
    """Modules for which ``applies`` holds import no module for which ``forbidden`` holds."""

    name: str
    applies: Callable[[str], bool]
    forbidden: Callable[[str], bool]


# The layering, one row per rule. "agent" itself (the version) is importable by everyone.
RULES = (
    Rule(
        "neutral modules import nothing from agent but each other",
        within(*NEUTRAL),
        lambda m: m != "agent" and not within(*NEUTRAL)(m),
    ),
    Rule(
        "the store knows no config, CLI, sink, flow, service, observability or endpoint",
        within("agent.store"),
        within(
            "agent.config",
            "agent.cli",
            "agent.sinks",
            "agent.pipeline",
            "agent.service",
            "agent.observability",
            "agent.endpoint",
        ),
    ),
    Rule(
        "only the CLI (and python -m agent) imports the CLI",
        lambda m: not within("agent.cli", "agent.__main__")(m),
        within("agent.cli"),
    ),
    Rule(
        "config imports none of the parts it configures",
        within("agent.config"),
        within(
            "agent.endpoint",
            "agent.observability",
            "agent.service",
            "agent.pipeline",
            "agent.sinks",
            "agent.store",
            "agent.cli",
        ),
    ),
    Rule(
        "processors depend on the error tree only (they run in the worker process too)",
        within("agent.processors"),
        lambda m: m != "agent" and not within("agent.processors", "agent.errors")(m),
    ),
    Rule(
        "tailing reads files: it knows no pipeline, sink, store, endpoint, service or CLI",
        within("agent.tailing"),
        within(
            "agent.pipeline",
            "agent.sinks",
            "agent.store",
            "agent.endpoint",
            "agent.service",
            "agent.cli",
        ),
    ),
    Rule(
        "the pipeline sees sinks through their contract only, and knows no service or CLI",
        within("agent.pipeline"),
        lambda m: (
            m.startswith("agent.sinks.")
            or within("agent.store", "agent.endpoint", "agent.service", "agent.cli")(m)
        ),
    ),
    Rule(
        "sinks know no pipeline, tailing, endpoint, service or CLI",
        within("agent.sinks"),
        within("agent.pipeline", "agent.tailing", "agent.endpoint", "agent.service", "agent.cli"),
    ),
    Rule(
        "the endpoint serves the store: it knows no sink, pipeline, tailing, service or CLI",
        within("agent.endpoint"),
        within("agent.sinks", "agent.pipeline", "agent.tailing", "agent.service", "agent.cli"),
    ),
    Rule(
        "observability watches: it knows no pipeline, tailing, service or CLI",
        within("agent.observability"),
        within("agent.pipeline", "agent.tailing", "agent.service", "agent.cli"),
    ),
)


def part_graph(graph: Graph) -> Graph:
    """The graph of the parts: agent.store.admin counts as agent.store, agent.errors as itself."""

    def part(module: str) -> str:
        return ".".join(module.split(".")[:2])

    parts: Graph = {part(m): set() for m in graph}
    for source, targets in graph.items():
        parts[part(source)].update(part(t) for t in targets if part(t) != part(source))
    return parts


def violations(graph: Graph, rule: Rule) -> list[str]:
    return [
        f"{source} imports {target}"
        for source in sorted(graph)
        if rule.applies(source)
        for target in sorted(graph[source])
        if rule.forbidden(target)
    ]


class TestImportGraph:
    def test_the_walk_sees_module_and_function_level_imports(self) -> None:
        """The graph holds known edges of both kinds, so an empty result means something."""
        graph = import_graph()
        assert "agent.errors" in graph["agent.store.store"]
        assert "agent.cli.main" in graph["agent.__main__"]
        assert len(graph) > 50

    def test_no_module_imports_itself_through_others(self) -> None:
        """An import cycle makes start-up order matter and the parts impossible to take apart."""
        cycle = find_cycle(import_graph())
        assert cycle is None, "import cycle: " + " -> ".join(cycle or [])

    def test_no_part_imports_itself_through_others(self) -> None:
        """The parts (store, sinks, config, ...) form no cycle either, so each can be read alone."""
        cycle = find_cycle(part_graph(import_graph()))
        assert cycle is None, "import cycle between parts: " + " -> ".join(cycle or [])

    @pytest.mark.parametrize("rule", [pytest.param(rule, id=rule.name) for rule in RULES])
    def test_layering(self, rule: Rule) -> None:
        """A module imports only the parts below it (the table RULES)."""
        found = violations(import_graph(), rule)
        assert not found, f"{rule.name}:\n  " + "\n  ".join(found)


class TestFindCycle:
    def test_finds_the_cycle_and_its_path(self) -> None:
        """A cycle behind an acyclic start is found and reported from where it closes."""
        graph = {"a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"b"}}
        assert find_cycle(graph) == ["b", "c", "d", "b"]

    def test_a_diamond_is_no_cycle(self) -> None:
        """Two ways to the same module are not a cycle."""
        assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None


class TestImportsOf:
    def test_relative_function_level_and_type_checking_imports(self, tmp_path: Path) -> None:
        """Relative imports resolve from the module's package; deferred ones count, type-only ones not."""
        source = tmp_path / "mod.py"
        source.write_text(
            "from typing import TYPE_CHECKING\n"
            "from . import sibling\n"
            "from ..other import thing\n"
            "if TYPE_CHECKING:\n"
            "    from agent.cli import main\n"
            "else:\n"
            "    import agent.errors\n"
            "def later() -> None:\n"
            "    from .deep.inner import name\n"
        )
        modules = {
            "agent.pkg.sibling",
            "agent.other",
            "agent.pkg.deep.inner",
            "agent.cli",
            "agent.cli.main",
            "agent.errors",
        }
        assert imports_of(source, "agent.pkg.mod", modules) == {
            "agent.pkg.sibling",
            "agent.other",
            "agent.pkg.deep.inner",
            "agent.errors",
        }

    def test_a_packages_relative_import_starts_at_itself(self, tmp_path: Path) -> None:
        """In a package's __init__, ``from . import x`` is the package's own submodule x."""
        source = tmp_path / "__init__.py"
        source.write_text("from . import child\nfrom .. import sibling\n")
        modules = {"agent.pkg.child", "agent.sibling"}
        assert imports_of(source, "agent.pkg", modules) == modules
