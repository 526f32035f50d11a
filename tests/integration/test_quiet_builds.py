"""The builder on a real engine: sdist compiler output goes to a log in the volume (shown
with --verbose, and when a compile fails); a package whose every release needs a newer
Python than the base image's is refused with the fix that fits (a newer base image)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from conftest import BUILDER_IMAGE, App
from pkgindex import Index

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.errors import BuildError
from nox_warpdrive.wheelhouse.build import build_wheelhouse


def compiler_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "gcc" in line or "running build_ext" in line]


def test_a_cold_build_shows_no_compiler_output_and_keeps_it_in_a_log(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    lines: list[str] = []
    result = build_wheelhouse(load_config(app.root), engine, lines.append)
    assert any(w.startswith("wd_cext_demo-") for w in result.new)
    assert compiler_lines(lines) == [], compiler_lines(lines)
    built = [line for line in lines if "built wd-cext-demo==0.1.0 in" in line]
    assert len(built) == 1, lines
    log = f"{result.key.slug}/logs/wd-cext-demo==0.1.0.log"
    assert log in built[0], built
    raw = engine.read_volume_file(app.volume, log, BUILDER_IMAGE)
    assert raw is not None and b"gcc" in raw, "the compiler output is not in the log"


def test_verbose_shows_the_compiler_output(make_app: Any, index_env: Index) -> None:
    app: App = make_app(["wd-cext-demo"])
    r = subprocess.run(
        [sys.executable, "-m", "nox", "--no-color", "-s", "wheelhouse", "--", "--verbose"],
        cwd=app.root,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert compiler_lines(r.stdout.splitlines()), r.stdout


def test_a_failing_compile_shows_its_errors_and_the_log(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["wd-broken-demo"])
    lines: list[str] = []
    with pytest.raises(BuildError) as exc:
        build_wheelhouse(load_config(app.root), engine, lines.append)
    text = str(exc.value)
    assert "compiling wd-broken-demo==0.1.0 failed" in text, text
    assert "wd_undeclared_identifier" in text and "error" in text, text
    builder = (engine.image(BUILDER_IMAGE) or pytest.fail("no builder")).id.split(":")[1][:12]
    assert f"docker run --rm -v {app.volume}:/w:ro {builder} cat /w/" in text, text
    assert "logs/wd-broken-demo==0.1.0.log" in text, text
    assert compiler_lines(lines) == [], "the output was shown as it came without --verbose"


def test_a_package_for_a_newer_python_points_at_the_base_image(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-newpy-demo"])
    with pytest.raises(BuildError) as exc:
        build_wheelhouse(load_config(app.root), engine, lambda line: None)
    message = exc.value.message
    assert "every release of wd-newpy-demo needs Python >=3.99" in message, message
    assert "the base image has Python 3.11" in message, message
    fix = exc.value.fix or ""
    assert "base image" in fix and "satisfies >=3.99" in fix, fix
    assert "private package" not in fix
