"""A host write that finds the disk full (a layer, an export) is an error naming the
directory and the room left, not a traceback; what was half written is removed."""

from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest

from nox_warpdrive.errors import WarpdriveError, host_disk_full, host_writes
from nox_warpdrive.wheelhouse import directory as wheelhouse_dir


def test_a_full_device_is_named_by_its_directory() -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    with (
        pytest.raises(WarpdriveError) as found,
        host_writes("/dev"),
        open("/dev/full", "wb") as fh,
    ):
        fh.write(b"x" * 65536)
        fh.flush()
    assert "the host disk is full: writing in /dev failed" in found.value.message
    assert "MB free there" in found.value.message
    assert found.value.fix is not None and "TMPDIR" in found.value.fix
    assert isinstance(found.value.__cause__, OSError)


def test_other_os_errors_pass_through(tmp_path: Path) -> None:
    with pytest.raises(PermissionError), host_writes(tmp_path):
        raise PermissionError(errno.EACCES, "denied")
    assert host_disk_full(OSError(errno.EACCES, "denied")) is None


def test_without_a_directory_the_failed_files_is_named(tmp_path: Path) -> None:
    exc = OSError(errno.EDQUOT, "Disk quota exceeded", str(tmp_path / "x.tar"))
    error = host_disk_full(exc)
    assert error is not None and f"writing in {tmp_path} failed" in error.message


class _Filling(io.RawIOBase):
    """A stream whose reader's disk fills after the first piece."""

    def __init__(self) -> None:
        self.calls = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return b"x" * 10


def test_an_export_to_a_full_directory_leaves_no_temporary_file(tmp_path: Path) -> None:
    with pytest.raises(WarpdriveError) as found:
        wheelhouse_dir._write_whole(tmp_path / "a.whl", _Filling())  # type: ignore[arg-type]
    assert f"writing in {tmp_path} failed" in found.value.message
    assert list(tmp_path.iterdir()) == []
