"""The package's shape, checked on the source (issue 21): at most 16 modules at the top level
of nox_warpdrive/, no module over 800 lines, no function over 60 lines, and no import cycle
among its modules (deferred imports inside functions count; TYPE_CHECKING-only ones do not).

    .venv/bin/python scripts/check_structure.py      # prints what is over, exits 1 if any

tests/unit/test_structure.py runs the same checks.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "nox_warpdrive"
MAX_TOP_LEVEL = 16
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 60
#: relative path -> (its most lines, its longest function): over the rule, but no worse
LET_OFF: dict[str, tuple[int, int]] = {}


def modules() -> Iterator[Path]:
    yield from sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def top_level_modules() -> list[str]:
    """The modules side by side at the top of the package (its own __init__ not counted)."""
    return sorted(p.name for p in PKG.glob("*.py") if p.name != "__init__.py")


def function_lengths(path: Path) -> Iterator[tuple[str, int]]:
    """(qualified name, lines of its body) of every function: from its first statement
    (the docstring, when it has one) to its last line; the signature is not counted."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            name = getattr(child, "name", "")
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                assert child.end_lineno is not None
                yield f"{prefix}{name}", child.end_lineno - child.body[0].lineno + 1
                yield from walk(child, f"{prefix}{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(ast.parse(path.read_text()), "")


def size_offences() -> list[str]:
    out = []
    for path in modules():
        rel = path.relative_to(PKG).as_posix()
        max_lines, max_function = LET_OFF.get(rel, (MAX_MODULE_LINES, MAX_FUNCTION_LINES))
        lines = len(path.read_text().splitlines())
        if lines > max_lines:
            out.append(f"{rel}: {lines} lines (at most {max_lines})")
        for name, length in function_lengths(path):
            if length > max_function:
                out.append(f"{rel}: {name}() is {length} lines (at most {max_function})")
    top = top_level_modules()
    if len(top) > MAX_TOP_LEVEL:
        out.append(f"{len(top)} modules at the top level (at most {MAX_TOP_LEVEL}): {top}")
    return out


def import_cycles() -> list[list[str]]:
    """The package's import cycles (strongly connected modules), deferred imports
    included: grimp reads every import statement, at any depth."""
    import grimp  # the dev extra's (import-linter's) graph builder

    graph = grimp.build_graph(
        "nox_warpdrive", cache_dir=None, exclude_type_checking_imports=True
    )
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:  # Tarjan's strongly connected components
        index[m] = low[m] = len(index)
        stack.append(m)
        for n in edges.get(m, ()):
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            group = []
            while True:
                n = stack.pop()
                group.append(n)
                if n == m:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for m in sorted(edges):
        if m not in index:
            visit(m)
    return cycles


def main() -> int:
    problems = size_offences() + [" <-> ".join(c) for c in import_cycles()]
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
