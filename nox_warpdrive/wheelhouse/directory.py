"""The wheelhouse in a directory on the host, for CI runners whose cache is a path
(GitHub's actions/cache, GitLab's ``cache:``): ``--export DIR`` after a build, ``--import
DIR`` before the next one.

    DIR/<platform key>/wheels/*.whl     the wheels of one platform key
    DIR/<platform key>/manifest.json    their sha256s and requirement sets (shipped_manifest)

Both ways are incremental. An export writes only the wheels the directory lacks (or
holds another file of), each checked against the volume's sha256 as it streams out and
renamed into place whole; it removes wheels the volume no longer lists, and writes the
manifest last. An import sends the engine only the wheels the volume lacks; the
builder's import step checks each against the manifest's sha256 and refuses a damaged
one (it is fetched or built again). Nothing goes through a bind mount: the files move as
archives, so a remote engine works the same.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from ..engine import Engine, Output
from ..errors import BuildError, host_writes
from ..tars import Content, stream_tar
from .transfer import (
    INCOMING,
    Imported,
    Wheelhouse,
    describe_platform,
    import_summary,
    manifest_bytes,
    run_import,
    same_platform,
    shipped_manifest,
    stream_wheels,
    wheels_of,
)


def read_dir_manifest(where: Path) -> dict[str, Any] | None:
    """The manifest of ``where`` (DIR/<key>), None when it has none readable."""
    try:
        data = json.loads((where / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _regular(path: Path) -> os.stat_result | None:
    """The file's stat when it is a regular file (not a link), else None."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def export_dir(
    engine: Engine, wh: Wheelhouse, manifest: Mapping[str, Any], directory: Path, out: Output
) -> None:
    """Write the volume's wheelhouse of ``wh.key`` to ``directory/<key>`` (see above)."""
    dest = directory / wh.key.slug
    wheels = dest / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    shipped = shipped_manifest(manifest)
    wanted = _stale(shipped, read_dir_manifest(dest) or {}, wheels, manifest)
    with engine.archive_reader(wh.image, wh.volume) as read:
        where = f"volume {wh.volume!r}"
        for name, _, fh in stream_wheels(read, wh.wheels_dir, wanted, where):
            _write_whole(wheels / name, fh)
    removed = _prune(wheels, set(shipped["wheels"]))
    _write_whole(dest / "manifest.json", manifest_bytes(shipped))
    kept = len(shipped["wheels"]) - len(wanted)
    out(
        f"warpdrive: exported the wheelhouse of {wh.key.slug} to {dest}: {len(wanted)} "
        f"wheels written, {kept} already there, {removed} removed"
    )


def _stale(
    shipped: Mapping[str, Any], old: Mapping[str, Any], wheels: Path, volume: Mapping[str, Any]
) -> dict[str, str]:
    """The wheels an export must write (file -> sha256): those the directory's manifest
    does not list with the same sha256, or whose file is gone or of another size."""
    listed = wheels_of(old)
    raw = volume.get("stats")
    stats: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    wanted = {}
    for name, sha in wheels_of(shipped).items():
        st = _regular(wheels / name)
        size = (stats.get(name) or [None])[0]
        if listed.get(name) != sha or st is None or (size is not None and st.st_size != size):
            wanted[name] = sha
    return wanted


def _write_whole(path: Path, data: bytes | BinaryIO) -> None:
    """Write a file through a temporary name next to it, then rename: a reader (the next
    job's cache) never sees half a file. A stream is copied a piece at a time."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with host_writes(path.parent), os.fdopen(fd, "wb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                while chunk := data.read(1 << 20):
                    fh.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _prune(wheels: Path, keep: set[str]) -> int:
    """Remove wheels (and interrupted exports' temporary files) the manifest does not
    list: a cache directory must not grow for ever."""
    removed = 0
    for path in wheels.iterdir():
        if path.name not in keep and (path.name.endswith(".whl") or path.name.startswith(".tmp-")):
            path.unlink(missing_ok=True)
            removed += path.name.endswith(".whl")
    return removed


def import_dir(
    engine: Engine, wh: Wheelhouse, directory: Path, local: Mapping[str, Any], out: Output
) -> Imported | None:
    """Seed the volume from ``directory/<key>``: the wheels it has and the volume lacks,
    checked by the import step against the manifest's sha256s. None (and the line saying
    why) when there is nothing to seed from."""
    src = directory / wh.key.slug
    theirs = read_dir_manifest(src)
    if theirs is None:
        out(f"warpdrive: no wheelhouse for {wh.key.slug} in {directory} yet; building without it")
        return None
    if not same_platform(theirs, wh.key):
        out(
            f"warpdrive: warning: {src} holds the wheelhouse of {describe_platform(theirs)}, "
            f"not of {wh.key.slug}; building without it"
        )
        out(f"  fix: remove {src}; the next `--export {directory}` writes it again")
        return None
    started = time.monotonic()
    known = wheels_of(local)
    sent = sorted(n for n in wheels_of(theirs) if n not in known and _sendable(src, n))
    with tempfile.TemporaryFile(prefix="warpdrive-import-") as fh:
        stream_tar(fh, _import_members(src, theirs, sent))
        fh.seek(0)
        imported = run_import(engine, wh, [(INCOMING, lambda: fh)], str(src), out)
    if imported.error:
        why = f"{src} could not be imported ({imported.error})"
        out(f"warpdrive: warning: {why}; building without it")
        out(f"  fix: remove {src}; the next `--export {directory}` writes it again")
        return None
    seconds = time.monotonic() - started
    out(import_summary(f"imported {src}", imported, len(sent), len(known), seconds))
    return imported


def _sendable(src: Path, name: str) -> bool:
    return "/" not in name and name.endswith(".whl") and _regular(src / "wheels" / name) is not None


def _import_members(
    src: Path, manifest: Mapping[str, Any], names: list[str]
) -> Iterator[tuple[tarfile.TarInfo, Content, str]]:
    """The archive the import step gets: the manifest and the wheels to send."""
    data = json.dumps(manifest).encode()
    info = tarfile.TarInfo("manifest.json")
    info.size, info.mode = len(data), 0o644
    yield info, data, ""
    for name in names:
        path = src / "wheels" / name
        st = _regular(path)
        if st is None:
            raise BuildError(f"{path} went away during the import", fix="run again")
        info = tarfile.TarInfo(f"wheels/{name}")
        info.size, info.mode = st.st_size, 0o644
        yield info, _opener(path), ""


def _opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: path.open("rb")
