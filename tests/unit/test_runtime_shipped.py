"""The files that run in containers are shipped with everything they import: the builder
(runtime/build_wheels.py and its modules) and the assembler (assemble.py and protocol.py)
import their siblings as plain top-level modules there, so a module left out of the
shipped set fails only in a real container. Read from the modules' own imports (ast)."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from test_plans import step_files, wheelhouse_plan, wsgi_project
from transfer_support import KEY

from nox_warpdrive import runtime
from nox_warpdrive.build.app_layer import helpers_tar
from nox_warpdrive.runtime.start import App
from nox_warpdrive.wheelhouse.transfer import Wheelhouse, import_step

RUNTIME = Path(runtime.__file__).parent
MODULES = {p.stem for p in RUNTIME.glob("*.py") if p.stem != "__init__"}


def imports(name: str, top_level_only: bool = False) -> set[str]:
    """The runtime modules ``name`` imports (``from . import x`` in the package, ``import
    x`` or ``from x import y`` run as a script); with ``top_level_only``, not those
    imported inside a function (they are loaded only when it runs)."""
    tree = ast.parse((RUNTIME / f"{name}.py").read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # the `if __package__:` blocks at the top
        nodes = [n for node in nodes for n in ast.walk(node) if not _in_function(node)]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module is None:
                found.update(a.name for a in node.names)
            elif node.module is not None:
                found.add(node.module.split(".")[0])
    return found & MODULES


def _in_function(node: ast.AST) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))


def closure(start: str, top_level_only: bool = False) -> set[str]:
    """``start`` and every runtime module it imports, directly or not."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imports(name, top_level_only))
    return seen


def shipped(names: tuple[str, ...]) -> set[str]:
    return {n.removesuffix(".py") for n in names}


def test_the_builder_ships_every_module_it_imports_and_no_other() -> None:
    assert closure("build_wheels") == shipped(runtime.BUILDER)


def test_the_assembler_ships_what_it_imports_at_the_top() -> None:
    assert closure("assemble", top_level_only=True) == shipped(runtime.ASSEMBLER)
    # the launcher's code is read only by the app step, which ships start.py and its
    # init as well (helpers_tar)
    assert closure("assemble") == shipped(runtime.ASSEMBLER) | {"start", "warpdrive_init"}


def test_the_launcher_has_what_it_imports_in_the_image() -> None:
    """bin/warpdrive-start imports its init from lib/, which holds runtime.LAUNCHER_LIB."""
    assert closure("start") - {"start"} <= shipped(runtime.LAUNCHER_LIB)


def test_the_imports_seen_are_real() -> None:
    """The reading above finds both forms of a sibling import (a test that finds
    nothing would pass for any shipped set)."""
    assert {"common", "locked", "volume", "wheel_import"} <= imports("build_wheels")
    assert imports("publish") >= {"wheel_cache", "protocol", "volume"}
    assert imports("assemble", top_level_only=True) == {"elfcheck", "layerdiff", "protocol"}
    assert "start" in imports("assemble")


@pytest.mark.parametrize("name", sorted(shipped(runtime.BUILDER + runtime.ASSEMBLER)))
def test_the_build_scripts_import_the_standard_library_only(name: str) -> None:
    """pip's own code is used when the image has it (its vendored packaging, tomli). (The
    launcher, start.py, runs in the app image and imports the app's own server.)"""
    tree = ast.parse((RUNTIME / f"{name}.py").read_text())
    outside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            outside.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            outside.add(node.module.split(".")[0])
    allowed = set(sys.stdlib_module_names) | MODULES | {"pip", "__future__"}
    assert outside <= allowed, outside - allowed


@pytest.mark.parametrize("name", sorted(MODULES))
def test_runtime_modules_are_at_most_800_lines(name: str) -> None:
    lines = (RUNTIME / f"{name}.py").read_text().count("\n")
    assert lines <= 800 or name == "start", lines  # start.py was over before the split


def test_the_wheelhouse_step_ships_the_builder(tmp_path: Path) -> None:
    step = wheelhouse_plan(wsgi_project(tmp_path / "site")).step()
    files = step_files(step, "/tmp")
    for name in runtime.BUILDER:
        assert files[f"warpdrive-build/{name}"] == runtime.read(name)


def test_the_import_step_ships_the_builder() -> None:
    step = import_step(Wheelhouse("vol", KEY, "sha256:builder"), "a cache")
    archives = [data for dest, data in step.files if dest == "/tmp"]
    names = set()
    for data in archives:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names.update(tar.getnames())
    assert {f"warpdrive-build/{n}" for n in runtime.BUILDER} <= names


def test_the_app_step_ships_the_assembler_and_the_launcher(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    data = helpers_tar(cfg, App("wsgi", "app.wsgi:app", "a test"), False, False)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = set(tar.getnames())
    expected = {f"warpdrive-build/{n}" for n in (*runtime.ASSEMBLER, "start.py")}
    assert expected <= names


def test_shipped_alone_the_scripts_import(tmp_path: Path) -> None:
    """As in a container: the shipped files in one directory, run as top-level
    modules (no package)."""
    for name, data in runtime.files(runtime.BUILDER + runtime.ASSEMBLER).items():
        (tmp_path / name).write_bytes(data)
    code = "import build_wheels, assemble, protocol; print(build_wheels.__package__ or '-')"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "-"
