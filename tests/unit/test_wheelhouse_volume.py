"""The builder's handling of the shared volume (runtime/build_wheels.py): unique staging
dirs, a lock whose holder can die, no-clobber publishing, leftovers swept, wheels verified
against the manifest, and failures classified by cause. Real files and real processes;
the engine is not needed."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from nox_warpdrive.runtime import builds, common, protocol
from nox_warpdrive.runtime import failures as rt_failures
from nox_warpdrive.runtime import publish as rt_publish
from nox_warpdrive.runtime import volume as rt_volume


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest(wheels: Path, files: dict[str, bytes]) -> dict[str, object]:
    known, stats = {}, {}
    for name, data in files.items():
        path = wheels / name
        path.write_bytes(data)
        known[name] = _sha(data)
        stats[name] = common.file_stat(str(path))
    return {"wheels": known, "stats": stats}


def test_staging_dirs_are_unique_even_with_the_same_pid(tmp_path: Path) -> None:
    a, owner_a = rt_volume.make_staging(str(tmp_path))
    b, owner_b = rt_volume.make_staging(str(tmp_path))
    try:
        assert a != b
        assert os.path.basename(a).startswith("staging-")
    finally:
        owner_a.close()
        owner_b.close()


def test_sweep_keeps_a_live_runs_staging_and_removes_a_dead_ones(tmp_path: Path) -> None:
    live, owner = rt_volume.make_staging(str(tmp_path))
    # a dead run: another process took the owner lock and exited
    code = (
        "from nox_warpdrive.runtime import volume as b; "
        f"print(b.make_staging({str(tmp_path)!r})[0])"
    )
    dead = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert os.path.isdir(dead)
    try:
        assert rt_volume.sweep_leftovers(str(tmp_path)) == 1
        assert not os.path.exists(dead)
        assert os.path.isdir(live)
    finally:
        owner.close()
    # once its owner is gone, the live one is a leftover too
    assert rt_volume.sweep_leftovers(str(tmp_path)) == 1
    assert not os.path.exists(live)


def test_sweep_gives_a_staging_dir_without_owner_file_a_grace_period(tmp_path: Path) -> None:
    young = tmp_path / "staging-young"
    young.mkdir()
    old = tmp_path / "staging-old"
    old.mkdir()
    past = time.time() - 3600
    os.utime(old, (past, past))
    assert rt_volume.sweep_leftovers(str(tmp_path)) == 1
    assert young.is_dir() and not old.exists()


def test_sweep_removes_old_temporary_files_of_earlier_versions(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    stale = tmp_path / "wheels" / ".a-1.0-py3-none-any.whl.tmp-1"
    fresh = tmp_path / "wheels" / ".b-1.0-py3-none-any.whl.tmp-1"
    manifest_tmp = tmp_path / "manifest.json.tmp-1"
    for p in (stale, fresh, manifest_tmp):
        p.write_bytes(b"x")
    past = time.time() - 7200
    os.utime(stale, (past, past))
    os.utime(manifest_tmp, (past, past))
    assert rt_volume.sweep_leftovers(str(tmp_path)) == 2
    assert fresh.exists() and not stale.exists() and not manifest_tmp.exists()


def test_lock_is_released_when_its_holder_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import fcntl, sys, time
                fh = open({str(tmp_path / ".lock")!r}, "a")
                fcntl.flock(fh, fcntl.LOCK_EX)
                print("held", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    with open(tmp_path / ".lock", "a") as fh, pytest.raises(BlockingIOError):
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    holder.kill()
    holder.wait()
    with rt_volume.Lock(str(tmp_path)):  # would block forever if the dead holder kept it
        pass


def test_lock_says_it_waits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fh = open(tmp_path / ".lock", "a")  # noqa: SIM115
    fcntl.flock(fh, fcntl.LOCK_EX)
    import threading

    threading.Timer(0.3, fh.close).start()
    with rt_volume.Lock(str(tmp_path)):
        pass
    assert "waiting for it" in capsys.readouterr().out


def test_publish_never_overwrites_another_runs_wheel(tmp_path: Path) -> None:
    wheels, staging = tmp_path / "wheels", tmp_path / "staging"
    wheels.mkdir()
    staging.mkdir()
    (wheels / "a-1.0-py3-none-any.whl").write_bytes(b"first")
    (staging / "a-1.0-py3-none-any.whl").write_bytes(b"second")
    assert rt_publish.publish(str(staging), str(wheels), "a-1.0-py3-none-any.whl") is False
    assert (wheels / "a-1.0-py3-none-any.whl").read_bytes() == b"first"
    (staging / "b-1.0-py3-none-any.whl").write_bytes(b"new")
    assert rt_publish.publish(str(staging), str(wheels), "b-1.0-py3-none-any.whl") is True
    assert (wheels / "b-1.0-py3-none-any.whl").read_bytes() == b"new"
    assert sorted(p.name for p in wheels.iterdir()) == [
        "a-1.0-py3-none-any.whl",
        "b-1.0-py3-none-any.whl",
    ]


def test_verify_trusts_unchanged_stats_and_rehashes_changed_files(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, {"a.whl": b"aaaa", "b.whl": b"bbbb", "c.whl": b"cccc"})
    (tmp_path / "a.whl").write_bytes(b"aa")  # truncated
    (tmp_path / "b.whl").unlink()  # deleted
    damaged, missing, changed = rt_volume.verify_wheels(str(tmp_path), manifest)
    assert (damaged, missing, changed) == (["a.whl"], ["b.whl"], True)
    assert not (tmp_path / "a.whl").exists()  # removed: fetched or built again
    assert list(manifest["wheels"]) == ["c.whl"]  # type: ignore[call-overload]


def test_verify_catches_a_same_size_replacement_when_its_mtime_moved(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, {"a.whl": b"good"})
    time.sleep(0.01)
    (tmp_path / "a.whl").write_bytes(b"evil")  # same size, other content
    assert rt_volume.verify_wheels(str(tmp_path), manifest)[0] == ["a.whl"]


def test_verify_everything_hashes_files_whose_stats_look_unchanged(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, {"a.whl": b"good"})
    st = os.stat(tmp_path / "a.whl")
    (tmp_path / "a.whl").write_bytes(b"evil")
    os.utime(tmp_path / "a.whl", ns=(st.st_atime_ns, st.st_mtime_ns))  # stats forged
    assert rt_volume.verify_wheels(str(tmp_path), manifest)[0] == []
    assert rt_volume.verify_wheels(str(tmp_path), manifest, full={"a.whl"})[0] == ["a.whl"]
    manifest = _manifest(tmp_path, {"b.whl": b"good"})
    (tmp_path / "b.whl").write_bytes(b"evil")
    os.utime(tmp_path / "b.whl", ns=(st.st_atime_ns, manifest["stats"]["b.whl"][1]))  # type: ignore[index]
    assert rt_volume.verify_wheels(str(tmp_path), manifest, everything=True)[0] == ["b.whl"]


def test_verify_records_stats_of_a_manifest_that_had_none(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, {"a.whl": b"good"})
    manifest["stats"] = {}
    damaged, missing, changed = rt_volume.verify_wheels(str(tmp_path), manifest)
    assert (damaged, missing, changed) == ([], [], True)
    assert manifest["stats"] == {"a.whl": common.file_stat(str(tmp_path / "a.whl"))}


def test_a_set_with_a_forgotten_wheel_is_not_complete() -> None:
    manifest = {
        "wheels": {"a.whl": "1"},
        "sets": {"h": {"resolved": [{"file": "a.whl"}, {"file": "b.whl"}]}},
    }
    assert rt_volume.set_is_complete(manifest, "h") is None
    manifest["wheels"]["b.whl"] = "2"  # type: ignore[index]
    assert rt_volume.set_is_complete(manifest, "h") == [{"file": "a.whl"}, {"file": "b.whl"}]
    assert rt_volume.set_is_complete(manifest, "other") is None


PIP_COMPILE_FAILURE = """\
  Building wheel for cext (pyproject.toml): started
  Building wheel for cext (pyproject.toml): finished with status 'error'
  error: subprocess-exited-with-error
  cext.c:1:10: fatal error: Python.h: No such file or directory
  compilation terminated.
  ERROR: Failed building wheel for cext
Failed to build cext"""


@pytest.mark.parametrize(
    ("code", "text", "package", "compiling", "expected"),
    [
        (1, PIP_COMPILE_FAILURE, None, False, ("compile", "cext")),
        (
            1,
            "ERROR: Could not find a version that satisfies the requirement nosuch==9 (from "
            "versions: none)\nERROR: No matching distribution found for nosuch==9",
            None,
            False,
            ("resolve", "nosuch==9"),
        ),
        (
            1,
            "  x No solution found when resolving dependencies:\n  Because nosuch was not "
            "found in the package registry and you require nosuch, we can conclude ...",
            None,
            False,
            ("resolve", "nosuch"),
        ),
        (
            1,
            "WARNING: Retrying ... Max retries exceeded with url: /simple/x/",
            None,
            False,
            ("download", None),
        ),
        (1, "OSError: [Errno 28] No space left on device", None, False, ("disk", None)),
        (-9, "", "x==1", True, ("killed", "x==1")),
        (137, "", None, False, ("killed", None)),
        (
            1,
            "gcc: error: foo.c\nerror: command 'gcc' failed",
            "cext==1.0",
            True,
            ("compile", "cext==1.0"),
        ),
        (2, "something else", None, False, ("unknown", None)),
    ],
)
def test_classify(
    code: int, text: str, package: str | None, compiling: bool, expected: tuple[str, str | None]
) -> None:
    assert rt_failures.classify(code, text.splitlines(), package, compiling) == expected


def test_report_failure_is_one_machine_line_with_the_last_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = [f"line {i}" for i in range(40)] + ["", "  "]
    assert rt_failures.report_failure("compile", 1, lines, "cext") == 1
    out = capsys.readouterr().out.strip()
    assert out.startswith(protocol.FAILURE_PREFIX)
    data = json.loads(out[len(protocol.FAILURE_PREFIX) :])
    assert data["stage"] == "compile" and data["package"] == "cext"
    assert data["detail"] == [f"line {i}" for i in range(25, 40)]
    assert (
        rt_failures.report_failure("killed", -9) == 1
    )  # a signal's negative code is not an exit code


def test_tee_shows_and_keeps_the_output(capfd: pytest.CaptureFixture[str]) -> None:
    tee = builds.Tee(
        [
            sys.executable,
            "-c",
            "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)",
        ]
    )
    assert tee.wait() == 3
    assert sorted(tee.tail) == ["err", "out"]
    assert "out" in capfd.readouterr().out


def test_a_sweep_before_the_owner_is_locked_leaves_the_staging_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run sweeping between the owner file's creation and its lock (four runs
    started at once on a cold volume hit it: test_reliability.py) finds no staging dir
    whose lock is free: it is locked before it takes its name."""
    real_flock = rt_volume.fcntl.flock
    swept: list[int] = []

    def flock(fh: Any, op: int) -> None:
        if op == rt_volume.fcntl.LOCK_EX and not swept:
            swept.append(rt_volume.sweep_leftovers(str(tmp_path)))
        real_flock(fh, op)

    monkeypatch.setattr(rt_volume.fcntl, "flock", flock)
    staging, owner = rt_volume.make_staging(str(tmp_path))
    try:
        assert swept == [0]
        assert os.path.isdir(staging) and os.path.basename(staging).startswith("staging-")
        assert sorted(os.listdir(tmp_path)) == [os.path.basename(staging)]
    finally:
        owner.close()


def test_an_unlocked_staging_dir_left_by_a_dead_run_goes_after_the_grace(tmp_path: Path) -> None:
    left = tmp_path / (rt_volume.UNLOCKED_PREFIX + "x")
    left.mkdir()
    (left / ".owner").write_text("")
    assert rt_volume.sweep_leftovers(str(tmp_path)) == 0  # it may be a run's, starting
    old = 1_000_000_000
    os.utime(left, (old, old))
    assert rt_volume.sweep_leftovers(str(tmp_path)) == 1
    assert not left.exists()
