"""collectstatic for another CPU run natively (build/native_static.py): the guard that
turns any load of a compiled module of that CPU into a failed run, and the line that
says why the build then emulates it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

from fake_engine import FakeEngine
from unit_support import BASE

from nox_warpdrive.build.native_static import (
    GUARD,
    GUARD_EXIT,
    GUARD_MARK,
    _reason,
    compiled_wheels,
    compiled_why,
)
from nox_warpdrive.engine import ImageInfo

IMPORT_HIDDEN = """
try:
    import fast  # an optional speed-up, of another CPU here
except ImportError:
    pass
print("done")
"""


def run(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "guard").mkdir(exist_ok=True)
    (tmp_path / "guard" / "sitecustomize.py").write_text(GUARD)
    env = {"PYTHONPATH": f"{tmp_path / 'guard'}:{tmp_path / 'pkgs'}", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_module_of_another_cpu_fails_the_run_even_when_its_import_error_is_caught(
    tmp_path: Path,
) -> None:
    (tmp_path / "pkgs").mkdir()
    ours = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    other = "aarch64-linux-gnu" if "x86_64" in ours else "x86_64-linux-gnu"
    tag = f"cpython-{sys.version_info[0]}{sys.version_info[1]}"
    (tmp_path / "pkgs" / f"fast.{tag}-{other}.so").write_bytes(b"\x7fELF not for this CPU")
    done = run(tmp_path, IMPORT_HIDDEN)
    assert "done" in done.stdout  # the code went on, as it would in collectstatic
    assert done.returncode == GUARD_EXIT, done.stderr
    assert f"{GUARD_MARK} fast (" in done.stderr


def test_pure_python_and_the_interpreters_own_modules_run_as_they_are(tmp_path: Path) -> None:
    (tmp_path / "pkgs").mkdir()
    (tmp_path / "pkgs" / "pure.py").write_text("VALUE = 42\n")
    done = run(tmp_path, "import json, decimal, ctypes, pure; print(pure.VALUE)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"


def test_the_reason_is_the_guards_line_else_the_error_else_the_last_line() -> None:
    guarded = (
        f"the app step exited with code 97; its last lines:\n  | {GUARD_MARK} fast (x.so: bad)\n"
    )
    assert _reason(guarded) == "it loads a compiled module: fast (x.so: bad)"
    failed = "its last lines:\n  | ImportError: cannot import name 'X'\n  | collectstatic failed\n"
    assert _reason(failed) == "ImportError: cannot import name 'X'"
    assert _reason("its last lines:\n  | something else\n") == "something else"


def test_only_a_virtualenv_of_pure_wheels_is_tried_natively() -> None:
    pure = ["Django-5.2-py3-none-any.whl@aa", "asgiref-3.8-py3-none-any.whl@bb"]
    compiled = [*pure, "pillow-11.0-cp311-cp311-manylinux_2_28_aarch64.whl@cc"]
    engine = FakeEngine(
        images={
            "sha256:pure": deps_image("sha256:pure", pure),
            "sha256:compiled": deps_image("sha256:compiled", compiled),
            "sha256:bare": dataclasses.replace(BASE, id="sha256:bare", labels={}),
        }
    )
    assert compiled_wheels(engine, "sha256:pure") == []  # type: ignore[arg-type]
    assert compiled_wheels(engine, "sha256:compiled") == ["pillow"]  # type: ignore[arg-type]
    assert compiled_wheels(engine, "sha256:bare") == ["?"]  # type: ignore[arg-type]
    assert "compiled packages (pillow)" in compiled_why(["pillow"])
    assert "and 1 more" in compiled_why(["a", "b", "c", "d"])


def deps_image(image_id: str, wheels: list[str]) -> ImageInfo:
    labels = {
        "io.warpdrive.kind": "deps",
        "io.warpdrive.deps-key": "key",
        "io.warpdrive.deps-wheels": json.dumps(wheels),
    }
    return dataclasses.replace(BASE, id=image_id, labels=labels)
