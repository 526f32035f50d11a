"""The builder's modules are imported from bytecode kept in the volume (0.1 s of every
builder start was their compile): only hash-checked bytecode is kept there, only when
Python writes none of its own (``-B``), and only when every kept file is whole, so a
changed module is never run stale and a file a full disk cut short is never run
(runtime/bytecode.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nox_warpdrive import runtime
from nox_warpdrive.runtime import bytecode, wheel_cache


def shipped(tmp_path: Path) -> tuple[Path, Path]:
    """The builder's files as the host ships them (a plan naming the volume's key), and
    the key's directory in the volume."""
    here, volume = tmp_path / "warpdrive-build", tmp_path / "volume"
    here.mkdir()
    volume.mkdir()
    for name, data in runtime.files(runtime.BUILDER).items():
        (here / name).write_bytes(data)
    plan = {"volume_dir": str(volume), "key": "k"}
    (here / "plan.json").write_text(json.dumps(plan))
    return here, volume / "k"


def load(here: Path, *flags: str) -> None:
    """The builder script's top (all its imports), as `python [flags] build_wheels.py`
    runs it, without its main()."""
    code = f"import runpy; runpy.run_path({str(here / 'build_wheels.py')!r}, run_name='x')"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, *flags, "-c", code], check=True, cwd=here, env=env)


def test_with_dash_b_the_modules_bytecode_is_the_volumes_once_kept(tmp_path: Path) -> None:
    here, root = shipped(tmp_path)
    load(here, "-B")  # nothing kept yet: from source, and Python writes nothing there
    assert not (here / "__pycache__").exists()
    assert not root.exists()
    bytecode.keep(str(root), str(here))
    load(here, "-B")
    cache = here / "__pycache__"
    assert cache.is_symlink() and Path(os.readlink(cache)) == root / "helpers-pyc"


def test_without_dash_b_python_keeps_its_own_bytecode_beside_them(tmp_path: Path) -> None:
    """Python would write timestamp bytecode; the modules arrive with fixed mtimes, so
    that bytecode must never reach the volume."""
    here, root = shipped(tmp_path)
    bytecode.keep(str(root), str(here))
    load(here)
    assert not (here / "__pycache__").is_symlink()


def test_only_hash_checked_bytecode_is_kept_and_only_once(tmp_path: Path) -> None:
    here, root = shipped(tmp_path)
    bytecode.keep(str(root), str(here))
    kept = sorted((root / "helpers-pyc").glob("*.pyc"))
    assert [p.name.split(".")[0] for p in kept] == sorted(Path(n).stem for n in runtime.BUILDER)
    assert all(p.read_bytes()[4:8] == b"\x03\x00\x00\x00" for p in kept)  # checked hash
    index = json.loads((root / "helpers-pyc" / bytecode.INDEX).read_text())
    assert sorted(index) == [p.name for p in kept]
    stamps = [p.stat().st_mtime_ns for p in [*kept, root / "helpers-pyc" / bytecode.INDEX]]
    bytecode.keep(str(root), str(here))
    after = [p.stat().st_mtime_ns for p in [*kept, root / "helpers-pyc" / bytecode.INDEX]]
    assert after == stamps  # none written again


def test_a_file_cut_short_is_not_used_and_is_written_again(tmp_path: Path) -> None:
    """A full volume can leave a file with a right header and a cut body (Python would
    fail with "marshal data too short"): the build imports from source, then keeps it
    whole again."""
    here, root = shipped(tmp_path)
    bytecode.keep(str(root), str(here))
    damaged = next((root / "helpers-pyc").glob("fetch.*.pyc"))
    damaged.write_bytes(damaged.read_bytes()[:40])
    load(here, "-B")
    assert not (here / "__pycache__").exists()
    bytecode.keep(str(root), str(here))
    load(here, "-B")
    assert (here / "__pycache__").is_symlink()


def test_a_module_changed_under_kept_bytecode_runs_as_changed(tmp_path: Path) -> None:
    """Same size, same (fixed) mtime, other code: the kept bytecode is checked against
    the source's hash, so the new source runs, and is kept anew after."""
    here, root = tmp_path / "h", tmp_path / "v"
    here.mkdir()
    (here / "mod.py").write_text("X = 1\n")
    os.utime(here / "mod.py", (0, 0))
    bytecode.keep(str(root), str(here))
    (here / "__pycache__").symlink_to(root / "helpers-pyc")
    (here / "mod.py").write_text("X = 2\n")
    os.utime(here / "mod.py", (0, 0))
    code = f"import sys; sys.path.insert(0, {str(here)!r}); import mod; print(mod.X)"
    run = subprocess.run([sys.executable, "-B", "-c", code], capture_output=True, text=True)
    assert run.stdout.strip() == "2", run.stderr
    pyc = next((root / "helpers-pyc").glob("mod.*.pyc"))
    before = pyc.read_bytes()
    bytecode.keep(str(root), str(here))
    assert pyc.read_bytes() != before


def test_nothing_is_kept_past_the_volumes_bound(tmp_path: Path) -> None:
    """The bound (wheel_cache.py) empties the kept bytecode like pip's and uv's caches;
    a run whose manifest measured the volume near its bound does not write it back."""
    here, root = shipped(tmp_path)
    root.mkdir()
    near = {"volume": {"bytes": 10_000_000, "limit": 10_000_000 + bytecode.ROOM - 1}}
    (root / "manifest.json").write_text(json.dumps(near))
    bytecode.keep(str(root), str(here))
    assert not (root / "helpers-pyc").exists()
    room = {"volume": {"bytes": 10_000_000, "limit": 10_000_000 + bytecode.ROOM + 1}}
    (root / "manifest.json").write_text(json.dumps(room))
    bytecode.keep(str(root), str(here))
    assert (root / "helpers-pyc" / bytecode.INDEX).is_file()
    assert "helpers-pyc" in wheel_cache.CACHES
