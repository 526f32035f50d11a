"""The builder's modules are imported from bytecode kept in the volume (0.1 s of every
builder start was their compile): only hash-checked bytecode is kept there, and only
when Python writes none of its own (``-B``), so a changed module is never run stale
(runtime/build_wheels.py: bytecode_from_volume, keep_bytecode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nox_warpdrive import runtime
from nox_warpdrive.runtime import build_wheels


def shipped(tmp_path: Path) -> tuple[Path, Path]:
    """The builder's files as the host ships them (a plan naming the volume's key), and
    the volume."""
    here, volume = tmp_path / "warpdrive-build", tmp_path / "volume"
    here.mkdir()
    volume.mkdir()
    for name, data in runtime.files(runtime.BUILDER).items():
        (here / name).write_bytes(data)
    plan = {"volume_dir": str(volume), "key": "k"}
    (here / "plan.json").write_text(json.dumps(plan))
    return here, volume


def load(here: Path, *flags: str) -> None:
    """The builder script's top (its imports), as `python [flags] build_wheels.py` runs
    it, without its main()."""
    code = f"import runpy; runpy.run_path({str(here / 'build_wheels.py')!r}, run_name='x')"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, *flags, "-c", code], check=True, cwd=here, env=env)


def test_with_dash_b_the_modules_bytecode_is_the_volumes(tmp_path: Path) -> None:
    here, volume = shipped(tmp_path)
    load(here, "-B")
    cache = here / "__pycache__"
    assert cache.is_symlink()
    assert Path(os.readlink(cache)) == volume / "k" / "helpers-pyc"
    assert not (volume / "k").exists()  # Python wrote nothing there itself


def test_without_dash_b_python_keeps_its_own_bytecode_beside_them(tmp_path: Path) -> None:
    """Python would write timestamp bytecode; the modules arrive with fixed mtimes, so
    that bytecode must never reach the volume."""
    here, volume = shipped(tmp_path)
    load(here)
    assert not (here / "__pycache__").is_symlink()
    assert not (volume / "k").exists()


def test_only_hash_checked_bytecode_is_kept_and_only_once(tmp_path: Path) -> None:
    here, volume = shipped(tmp_path)
    build_wheels.keep_bytecode(str(volume / "k"), str(here))
    kept = sorted((volume / "k" / "helpers-pyc").iterdir())
    assert [p.name.split(".")[0] for p in kept] == sorted(Path(n).stem for n in runtime.BUILDER)
    assert all(p.read_bytes()[4:8] == b"\x03\x00\x00\x00" for p in kept)  # checked hash
    stamps = [p.stat().st_mtime_ns for p in kept]
    build_wheels.keep_bytecode(str(volume / "k"), str(here))
    assert [p.stat().st_mtime_ns for p in kept] == stamps  # none written again


def test_a_module_changed_under_kept_bytecode_runs_as_changed(tmp_path: Path) -> None:
    """Same size, same (fixed) mtime, other code: the kept bytecode is checked against
    the source's hash, so the new source runs, and is kept anew after."""
    here, volume = tmp_path / "h", tmp_path / "v"
    here.mkdir()
    (here / "mod.py").write_text("X = 1\n")
    os.utime(here / "mod.py", (0, 0))
    build_wheels.keep_bytecode(str(volume), str(here))
    (here / "__pycache__").symlink_to(volume / "helpers-pyc")
    (here / "mod.py").write_text("X = 2\n")
    os.utime(here / "mod.py", (0, 0))
    code = f"import sys; sys.path.insert(0, {str(here)!r}); import mod; print(mod.X)"
    run = subprocess.run([sys.executable, "-B", "-c", code], capture_output=True, text=True)
    assert run.stdout.strip() == "2", run.stderr
    before = (volume / "helpers-pyc").iterdir().__next__().read_bytes()
    build_wheels.keep_bytecode(str(volume), str(here))
    after = (volume / "helpers-pyc").iterdir().__next__().read_bytes()
    assert before != after
