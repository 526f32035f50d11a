"""The house rules on imports, checked on the source: only the engine package reaches
Docker (docker-py, requests, urllib3, http.client), and nothing imports sessions.py."""

from __future__ import annotations

import ast
from pathlib import Path

import nox_warpdrive

PKG = Path(nox_warpdrive.__file__).parent
ENGINE_ONLY = ("docker", "requests", "urllib3", "http.client")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add("." + node.module)
    return names


def test_only_the_engine_package_imports_docker() -> None:
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if rel.startswith(("engine/", "runtime/")):  # runtime/ runs inside containers
            continue
        if rel == "registry_api.py":
            # a registry's own HTTP API (stdlib http.client), never the engine's
            assert not {n for n in imported(path) if n.split(".")[0] in ENGINE_ONLY[:3]}
            continue
        for name in imported(path):
            if any(name == m or name.startswith(m + ".") for m in ENGINE_ONLY):
                offenders.append(f"{rel}: {name}")
    assert offenders == []


def test_nothing_imports_sessions() -> None:
    offenders = [
        path.relative_to(PKG).as_posix()
        for path in PKG.rglob("*.py")
        if path.name not in ("sessions.py", "__init__.py")
        and ({".sessions", "nox_warpdrive.sessions"} & imported(path))
    ]
    assert offenders == []
