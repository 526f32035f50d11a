"""A host-side copy of each app image's collected static files, keyed by image id.

A code change that leaves the static inputs alone reuses the current image's collected
files; reading them out of the image takes a container and two archive reads (~0.35 s
here). An image id is the digest of the image's config, so what was read for an id never
changes: the copy is taken once, right after the build that collected the files, and a
later build only reads a file. At most KEEP copies are kept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from pathlib import Path

from .plan import tar_files

KEEP = 16


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    # "static-2": the files as a layer holds them (the first format kept get_archive's tar)
    return Path(base) / "nox-warpdrive" / "static-2"


def _path(image_id: str) -> Path:
    return cache_dir() / (image_id.replace(":", "_") + ".tar")


def load(image_id: str) -> tuple[bytes, bytes] | None:
    """(the record's tar, the collected files' tar) as stored, or None."""
    try:
        with tarfile.open(_path(image_id)) as tar:
            parts = {}
            for name in ("record", "static"):
                fh = tar.extractfile(name)
                if fh is None:
                    return None
                parts[name] = fh.read()
    except (OSError, tarfile.TarError, KeyError):
        return None
    return parts["record"], parts["static"]


def store(image_id: str, record: bytes, static: bytes) -> None:
    path = _path(image_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(tar_files({"record": record, "static": static}))
        tmp.replace(path)
        copies = sorted(path.parent.glob("*.tar"), key=lambda p: p.stat().st_mtime)
        for old in copies[:-KEEP]:
            old.unlink(missing_ok=True)
    except OSError:
        pass  # a cache that cannot be written only costs time


def copy(from_id: str, to_id: str) -> None:
    """An image built with the static files reused from another has the same ones."""
    source, target = _path(from_id), _path(to_id)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    try:
        try:
            os.link(source, tmp)  # the same bytes: a second name is enough
        except OSError:
            shutil.copyfile(source, tmp)
        tmp.replace(target)
        os.utime(target)  # the newest copy, for KEEP
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
