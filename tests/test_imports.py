"""The module graph: no import cycle among hmodels modules, and ``import hmodels`` loads no backend."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hmodels

ROOT = Path(hmodels.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph() -> dict[str, set[str]]:
    """Edges module -> hmodels module it imports, top-level and deferred (inside functions) alike."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # `if TYPE_CHECKING:` imports exist for annotations only, never at run time
                continue
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in files]
                # `from . import x` imports the submodule x; `from .m import f` imports m
                targets = subs if subs and len(subs) == len(node.names) else [mod, *subs]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            edges[name] |= {t for t in targets if t in files and t != name}
    return edges


def _cycle(edges):
    state, stack = {}, []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(edges[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(edges):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_no_import_cycle():
    edges = import_graph()
    assert "hmodels.fit" in edges and "hmodels.engine.fit" in edges
    assert "hmodels.fit" in edges["hmodels.assemble"]  # the graph sees real edges
    cycle = _cycle(edges)
    assert cycle is None, " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_backends_do_not_know_the_fit():
    edges = import_graph()
    for backend in ("hmodels.engine.fit", "hmodels.pymc_backend", "hmodels.engine.layout", "hmodels.plan"):
        assert "hmodels.fit" not in edges[backend] and "hmodels.model" not in edges[backend], backend


def test_import_hmodels_loads_no_backend():
    code = ("import sys, hmodels; heavy = ('pymc', 'pytensor', 'nutpie', 'numpyro', 'jax', 'arviz', 'matplotlib');"
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
