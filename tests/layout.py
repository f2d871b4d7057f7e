"""Figures of the library's layout: lines per sub-package, the largest files and functions, the
import graph between library files and its circles, and function-level imports.

``python tests/layout.py`` prints them; ``tests/test_layout.py`` holds the library to its rules.
An import under ``if TYPE_CHECKING:`` is not an import at run time and is left out of the graph.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "gradiend"


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    imports: set[str] = field(default_factory=set)  # library modules imported at run time
    type_imports: set[str] = field(default_factory=set)  # under ``if TYPE_CHECKING:``
    local_imports: list[tuple[int, str]] = field(default_factory=list)  # (line, module)
    functions: list[tuple[str, int]] = field(default_factory=list)  # (qualified name, lines)
    strings: set[str] = field(default_factory=set)
    path_parts: set[str] = field(default_factory=set)  # strings joined to a path with ``/``


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(mod: Module, node: ast.ImportFrom | ast.Import, known: set[str]) -> list[str]:
    """Library modules a statement imports (``from pkg import sub`` names the sub-module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "gradiend"]
    base = node.module or ""
    if node.level:
        pkg = mod.name.split(".")
        if not mod.path.name == "__init__.py":
            pkg = pkg[:-1]
        pkg = pkg[: len(pkg) - node.level + 1]
        base = ".".join(pkg + ([base] if base else []))
    if base.split(".")[0] != "gradiend":
        return []
    out = []
    for a in node.names:
        sub = f"{base}.{a.name}"
        out.append(sub if sub in known else base)
    return out


def _walk(mod: Module, tree: ast.AST, known: set[str]) -> None:
    def visit(node: ast.AST, in_function: bool, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.body:
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        mod.type_imports.update(_resolve(mod, sub, known))
                for sub in child.orelse:
                    visit(sub, in_function, scope)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in _resolve(mod, child, known):
                    mod.imports.add(target)
                    if in_function:
                        mod.local_imports.append((child.lineno, target))
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{scope}{child.name}"
                mod.functions.append((name, child.end_lineno - child.lineno + 1))
                visit(child, True, f"{name}.")
                continue
            if isinstance(child, ast.ClassDef):
                visit(child, in_function, f"{scope}{child.name}.")
                continue
            if isinstance(child, ast.Constant) and isinstance(child.value, str):
                mod.strings.add(child.value)
            if isinstance(child, ast.BinOp) and isinstance(child.op, ast.Div):
                for side in (child.left, child.right):
                    if isinstance(side, ast.Constant) and isinstance(side.value, str):
                        mod.path_parts.add(side.value)
            visit(child, in_function, scope)

    visit(tree, False, "")


def modules() -> dict[str, Module]:
    paths = sorted(ROOT.rglob("*.py"))
    known = {_module_name(p) for p in paths}
    out = {}
    for path in paths:
        text = path.read_text()
        mod = Module(_module_name(path), path, len(text.splitlines()))
        _walk(mod, ast.parse(text), known)
        mod.imports.discard(mod.name)
        out[mod.name] = mod
    return out


def circles(mods: dict[str, Module], type_only: bool = False) -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan's algorithm); with
    ``type_only`` the imports under ``TYPE_CHECKING`` count too."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        edges = mods[v].imports | (mods[v].type_imports if type_only else set())
        for w in sorted(edges & mods.keys()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(mods):
        if v not in index:
            strong(v)
    return found


def figures(mods: dict[str, Module]) -> dict:
    per_pkg: dict[str, int] = defaultdict(int)
    for m in mods.values():
        parts = m.name.split(".")
        pkg = (
            parts[1]
            if len(parts) > 2 or (len(parts) == 2 and m.path.name == "__init__.py")
            else "(top)"
        )
        per_pkg[pkg] += m.lines
    funcs = sorted(
        ((n, f"{m.name}.{f}") for m in mods.values() for f, n in m.functions), reverse=True
    )
    n_imports = sum(len(m.imports) for m in mods.values())
    n_local = sum(len(m.local_imports) for m in mods.values())
    return {
        "files": len(mods),
        "lines": sum(m.lines for m in mods.values()),
        "lines_per_package": dict(sorted(per_pkg.items())),
        "largest_files": sorted(((m.lines, m.name) for m in mods.values()), reverse=True)[:8],
        "largest_functions": funcs[:8],
        "median_function": sorted(n for n, _ in funcs)[len(funcs) // 2] if funcs else 0,
        "circles": circles(mods),
        "circles_with_type_only_imports": circles(mods, type_only=True),
        "imports": n_imports,
        "function_level_imports": n_local,
    }


if __name__ == "__main__":
    fig = figures(modules())
    for key, value in fig.items():
        if isinstance(value, (list, dict)):
            print(f"{key}:")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")
