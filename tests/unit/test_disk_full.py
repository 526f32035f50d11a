"""A full disk: the builder says which filesystem is full (the volume or the engine's
storage), the host's error names it and the fix that helps, and nothing a full disk cut
off stays in pip's cache in the volume to fail every later run."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from nox_warpdrive.runtime import disk as rt_disk
from nox_warpdrive.runtime import failures
from nox_warpdrive.wheelhouse.build import builder_failure

PIP_CUT_OFF = (
    "  Building wheel for psycopg2 failed: [Errno 28] No space left on device: "
    "'/tmp/pip-wheel-x/psycopg2-2.9.13-cp311-cp311-linux_x86_64.whl' -> "
    "'/warpdrive/k/cache/wheels/ab/cd/psycopg2-2.9.13-cp311-cp311-linux_x86_64.whl'"
)


def test_the_written_path_says_the_volume_is_full(tmp_path: Path) -> None:
    found = rt_disk.full_filesystem(["x", PIP_CUT_OFF], volume_dir="/warpdrive")
    assert found["full"] == "volume"


def test_a_write_in_tmp_is_the_engines_storage() -> None:
    line = "OSError: [Errno 28] No space left on device: '/tmp/pip-build-env-1/x.so'"
    assert rt_disk.full_filesystem([line], volume_dir="/warpdrive")["full"] == "engine"
    uv = "error: failed to write to file `/warpdrive/k/uv-cache/x`: No space left (os error 28)"
    assert rt_disk.full_filesystem([uv], volume_dir="/warpdrive")["full"] == "volume"


def test_without_a_path_the_fuller_filesystem_is_named(tmp_path: Path) -> None:
    found = rt_disk.full_filesystem(["No space left on device"], volume_dir=str(tmp_path))
    assert found["full"] in ("volume", "engine")
    assert isinstance(found["free"], int) and isinstance(found["size"], int)
    assert found["size"] > 0


def test_a_full_volume_is_named_with_its_space_and_fix() -> None:
    failure = {"stage": "disk", "full": "volume", "free": 4096, "size": 1048576, "detail": []}
    error = builder_failure(1, failure, {}, ("shop-wheels", "builder"))
    assert "the volume 'shop-wheels' is full" in error.message
    assert "4.1 kB free of 1.0 MB" in error.message
    assert error.fix is not None
    assert "docker volume inspect shop-wheels" in error.fix
    assert "docker system df" not in error.fix and "prune" not in error.fix


def test_a_full_engine_says_to_free_the_engine() -> None:
    failure = {"stage": "disk", "full": "engine", "free": 0, "size": 10**10, "detail": []}
    error = builder_failure(1, failure, {}, ("shop-wheels", "builder"))
    assert "engine's storage is full" in error.message and "0 bytes free" in error.message
    assert error.fix is not None and "docker system df" in error.fix


def test_report_failure_measures_the_disk(capsys: object) -> None:
    failures.report_failure("disk", 1, [PIP_CUT_OFF], "psycopg2")
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert '"full":"volume"' in out and '"free":' in out


def _wheel() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x/__init__.py", "x = 1\n" * 1000)
    return buf.getvalue()


def test_cut_off_cached_wheels_and_cache_temp_files_are_removed(tmp_path: Path) -> None:
    whole = _wheel()
    cached = tmp_path / "cache" / "wheels" / "84" / "e9"
    cached.mkdir(parents=True)
    (cached / "good-1.0-py3-none-any.whl").write_bytes(whole)
    (cached / "cut-1.0-cp311-cp311-linux_x86_64.whl").write_bytes(whole[: len(whole) // 2])
    (cached / "origin.json").write_text("{}")
    http = tmp_path / "cache" / "http" / "a" / "b"
    http.mkdir(parents=True)
    (http / "0123abcdxyz.tmp").write_bytes(b"half a response")
    (http / "0123abcd").write_bytes(b"a whole response")
    assert rt_disk.drop_cut_off_cache(str(tmp_path), settle=0) == 2
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == [
        "cache/http/a/b/0123abcd",
        "cache/wheels/84/e9/good-1.0-py3-none-any.whl",
        "cache/wheels/84/e9/origin.json",
    ]
    assert rt_disk.drop_cut_off_cache(str(tmp_path), settle=0) == 0


def test_a_file_still_being_written_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = tmp_path / "cache" / "wheels" / "aa"
    cached.mkdir(parents=True)
    growing = cached / "big-1.0-py3-none-any.whl"
    growing.write_bytes(b"PK\x03\x04 partial")

    def more(seconds: float) -> None:  # another container writes on meanwhile
        with growing.open("ab") as fh:
            fh.write(b"more bytes")

    monkeypatch.setattr(rt_disk.time, "sleep", more)
    assert rt_disk.drop_cut_off_cache(str(tmp_path), settle=0.01) == 0
    assert growing.exists()


def test_a_volume_on_the_engines_own_disk_says_to_free_the_engine() -> None:
    failure = {"stage": "disk", "full": "volume", "free": 0, "size": 10**11, "shared": True}
    error = builder_failure(1, failure, {}, ("shop-wheels", "builder"))
    assert "the engine's disk is full" in error.message
    assert "the volume 'shop-wheels' lives on it" in error.message
    assert error.fix is not None and "docker system df" in error.fix


def test_same_disk_is_the_same_size_and_nearly_the_same_room() -> None:
    gib = 1 << 30
    assert rt_disk.same_disk((10 * gib, 100 * gib), (10 * gib + 4096, 100 * gib))
    assert not rt_disk.same_disk((4096, 1 << 20), (10 * gib, 100 * gib))
    assert not rt_disk.same_disk(None, (10 * gib, 100 * gib))
