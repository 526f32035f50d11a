"""A host-side copy of each app image's collected static files, keyed by image id.

A code change that leaves the static inputs alone reuses the current image's collected
files; reading them out of the image takes a container and two archive reads (~0.35 s
here). An image id is the digest of the image's config, so what was read for an id never
changes: the copy is taken once, right after the build that collected the files, and a
later build only reads a file (or links it under a new id). At most KEEP sets of files
are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..tars import tar_files

KEEP = 16
NAMES = 64


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
        prune(path.parent, path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def prune(directory: Path, newest: Path | None = None) -> None:
    """Keep the KEEP most recently used sets of files, each under at most NAMES more image
    ids: every code change names the same files under its new image id (a symbolic link,
    which costs no space), so sets are counted, not names. ``newest``: the name just
    written (file times can be coarser than two builds)."""
    sets: list[tuple[float, Path]] = []
    links: list[tuple[float, Path]] = []
    for p in directory.glob("*.tar"):
        try:
            st = p.lstat()
        except OSError:
            continue
        recency = float("inf") if p == newest else st.st_mtime
        (links if stat.S_ISLNK(st.st_mode) else sets).append((recency, p))
    sets.sort(reverse=True)
    for _, old in sets[KEEP:]:
        old.unlink(missing_ok=True)
    names: dict[Path, int] = {}
    for _, link in sorted(links, reverse=True):
        try:
            real = link.resolve(strict=True)
        except (OSError, RuntimeError):  # its set is gone (or a loop: Python < 3.13)
            link.unlink(missing_ok=True)
            continue
        names[real] = names.get(real, 0) + 1
        if names[real] > NAMES:
            link.unlink(missing_ok=True)


def copy(from_id: str, to_id: str) -> None:
    """An image built with the static files reused from another has the same ones: its
    id becomes one more name of that set of files."""
    source, target = _path(from_id), _path(to_id)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    try:
        real = source.resolve(strict=True)
        if real == target or from_id == to_id:  # the same image again (an earlier one)
            os.utime(real)
            return
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(real.name)
        tmp.replace(target)
        os.utime(real)  # just used: the newest set, for prune
        prune(target.parent, target)
    except (OSError, RuntimeError):  # RuntimeError: a symbolic link loop (Python < 3.13)
        with contextlib.suppress(OSError):
            tmp.unlink()


#: how many sets of static inputs are kept (each a few lines per static file)
KEEP_INPUTS = 64


def _inputs_path(static_key: str) -> Path:
    return cache_dir() / "inputs" / (static_key.replace(":", "_") + ".json")


def store_inputs(static_key: str, data: str) -> None:
    """What a static key was made of (static.remember_inputs): the next build compares
    its own with the current image's to re-collect only the files that changed. A key
    is a digest of what it was made of, so a stored set never goes stale."""
    path = _inputs_path(static_key)
    try:
        if path.exists():
            os.utime(path)
            return
        _write_kept(path, data)
    except OSError:
        pass  # a cache that cannot be written only costs time


def _write_kept(path: Path, text: str) -> None:
    """Write ``path`` atomically, then keep only the KEEP_INPUTS most recently written
    JSON files of its directory (``path`` among them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    kept = sorted(path.parent.glob("*.json"), key=_mtime, reverse=True)
    for old in kept[KEEP_INPUTS:]:
        if old != path:
            old.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def load_inputs(static_key: str) -> str | None:
    try:
        return _inputs_path(static_key).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None


# -- which image's files came from which static inputs ---------------------------------
#
# A build whose packages are fewer than the current image's (a package added, then taken
# out again) cannot reuse the current image's collected files (static.same_packages_or_more),
# and the image that had them lost its tag to the add. Its files are still here under its
# id: an index by static key names the sets of packages each was collected with, so the
# build finds them without running collectstatic (3-7 s for the Wagtail example).

#: how many images are named per static key (the newest first)
KEEP_PER_KEY = 8


def _keys_path(app: str, static_key: str) -> Path:
    """One index per app (its name) and static key: another app's files are never
    taken, even when made of the same inputs."""
    name = hashlib.sha256(f"{app}\0{static_key}".encode()).hexdigest()[:40]
    return cache_dir() / "keys" / (name + ".json")


def _entries(app: str, static_key: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(_keys_path(app, static_key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [
        e
        for e in data
        if isinstance(e, dict)
        and isinstance(e.get("image"), str)
        and isinstance(e.get("wheels"), list)
    ]


def remember_key(app: str, static_key: str, wheels: Sequence[str], image_id: str) -> None:
    """Record that ``image_id``'s collected files (kept here), an image of ``app``, were
    made from ``static_key`` with ``wheels`` installed (their ids, as the deps labels
    hold them)."""
    if not static_key or not _path(image_id).exists():
        return
    entry = {"image": image_id, "wheels": sorted(wheels)}
    entries = _entries(app, static_key)
    if entries[:1] == [entry]:
        return  # the newest already (an unchanged build): nothing to write
    # one entry per set of packages: code changes on one set are the same files under
    # new image ids, and must not push an older set (the one before an add) out
    kept = [e for e in entries if e["image"] != image_id and e["wheels"] != entry["wheels"]]
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
        _write_kept(_keys_path(app, static_key), json.dumps([entry, *kept][:KEEP_PER_KEY]))


def earlier(app: str, static_key: str, wheels: Sequence[str]) -> str | None:
    """The id of the newest image of ``app`` whose collected files were made from ``static_key``
    with only packages of ``wheels`` installed (all of them unchanged), and whose files
    are kept here; else None."""
    if not static_key:
        return None
    have = set(wheels)
    for entry in _entries(app, static_key):
        if set(entry["wheels"]) <= have and _path(entry["image"]).exists():
            return str(entry["image"])
    return None
