"""Archiving the walked tree: the build-context tar and its digest, byte for byte
reproducible (sorted, normalized owners and times)."""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import stat
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from nox_warpdrive.errors import ContextError
from nox_warpdrive.source import steady
from nox_warpdrive.source.context import (
    _CHUNK,
    _DEFAULT_EPOCH,
    _DIGEST_VERSION,
    Entry,
    Kind,
    _check_name,
    _check_symlink,
    _exclude_fix,
    _kind_of,
    _sort_key,
)

# --------------------------------------------------------------------------- archiving


def _check_relpath(relpath: str, what: str) -> None:
    """Tar names must be relative, clean and free of ``..``: no extractor surprises."""
    parts = relpath.split("/")
    if (
        not relpath
        or relpath.startswith("/")
        or "\0" in relpath
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ContextError(
            f"{what} {relpath!r} is not a clean relative path",
            fix=f"use a relative POSIX path without '.', '..' or empty parts for the {what}",
        )
    _check_name(relpath)


def _ordered(entries: Sequence[Entry]) -> list[Entry]:
    """Entries in tree order, after checking that they describe a well-formed tree."""
    ordered = sorted(entries, key=lambda entry: _sort_key(entry.relpath))
    kinds: dict[str, Kind] = {}
    for entry in ordered:
        _check_relpath(entry.relpath, "entry path")
        if entry.relpath in kinds:
            raise ContextError(
                f"entry {entry.relpath} is listed twice",
                fix="pass the entries returned by collect() unchanged",
            )
        parent = posixpath.dirname(entry.relpath)
        if parent and kinds.get(parent) != "dir":
            raise ContextError(
                f"entry {entry.relpath} has no directory entry for its parent {parent}",
                fix="pass the entries returned by collect() unchanged",
            )
        kinds[entry.relpath] = entry.kind
    return ordered


def _changed(entry: Entry) -> ContextError:
    return ContextError(
        f"{entry.relpath} changed while the app source was being archived",
        fix="re-run once nothing is writing to the project directory",
    )


def _lstat(root: Path, entry: Entry) -> os.stat_result:
    try:
        st = os.lstat(root / entry.relpath)
    except FileNotFoundError as exc:
        raise _changed(entry) from exc
    if _kind_of(st.st_mode) != entry.kind:
        raise _changed(entry)
    return st


def _open_file(root: Path, entry: Entry, grown: bool = False) -> BinaryIO:
    """Open a regular file without following a symlink swapped in since ``collect``
    (``grown``: it may be longer now; its first bytes are to be checked by digest)."""
    path = root / entry.relpath
    try:
        # O_NONBLOCK: a fifo swapped in must not hang the build; no effect on files.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise _changed(entry) from exc
    except OSError as exc:
        raise ContextError(
            f"cannot read {entry.relpath}: {exc.strerror or exc}",
            fix=f"make it readable, or {_exclude_fix(entry.relpath)}",
        ) from exc
    handle = os.fdopen(fd, "rb")
    st = os.fstat(handle.fileno())
    if not stat.S_ISREG(st.st_mode) or not (
        st.st_size == entry.size or (grown and st.st_size > entry.size)
    ):
        handle.close()
        raise _changed(entry)
    return handle


def open_file(root: Path, relpath: str, size: int) -> BinaryIO:
    """Open the regular file ``relpath`` that was read ``size`` bytes long, without
    following a symlink swapped in since (refused as changed otherwise); one that has
    grown since is opened (a log being written: its first ``size`` bytes, which the
    caller checks by their digest, are what was read)."""
    return _open_file(root, Entry(relpath, "file", 0, size), grown=True)


def check_link(root: Path, relpath: str, target: str) -> None:
    """Refuse the symlink ``relpath`` unless it is still the link to ``target`` that
    :func:`collect` found, and still inside the app root."""
    entry = Entry(relpath, "symlink", 0o777, 0, target)
    _lstat(root, entry)
    _check_symlink(root, relpath, _read_target(root, entry))


def _read_target(root: Path, entry: Entry) -> str:
    try:
        target = os.readlink(root / entry.relpath)
    except OSError as exc:
        raise _changed(entry) from exc
    if target != entry.target:
        raise _changed(entry)
    return target


def _tar_mode(kind: Kind, mode: int) -> int:
    """The archived mode, made from the kind and the owner's execute bit (0o100) alone.

    The other bits on disk record the umask of whoever cloned the project (git keeps
    only the executable bit), so keeping them would give two clones of one commit
    different archives and digests. Directories and executables get 0o775, other files
    0o664, symlinks 0o777 (what Linux reports for every symlink). The group has the
    owner's bits, S2I-style: whatever uid the container runs as, being in gid 0, can
    write the app dir. Others may read, never write; setuid, setgid and sticky bits go.
    """
    if kind == "dir":
        return 0o775
    if kind == "symlink":
        return 0o777
    return 0o775 if mode & 0o100 else 0o664


def tar_mode(kind: Kind, mode: int) -> int:
    """The archived mode of a path of ``kind`` whose mode on disk is ``mode``."""
    return _tar_mode(kind, mode)


def source_date_epoch() -> int:
    """The mtime of every archive member: ``$SOURCE_DATE_EPOCH`` when set, else 1.

    A fixed time, not each file's own: a fresh clone has checkout times, so real mtimes
    would give two clones of one commit different archives. The reproducible-builds
    variable lets the user pin a meaningful time (the last commit's); 1 is jib's
    default (1970-01-01T00:00:01Z), which no tool mistakes for "unset" as it might 0.
    Empty counts as unset, as in Python's ``py_compile``. Any other value that is not
    whole seconds (a negative or fractional number, a date) is refused rather than
    ignored: whoever set it expects it to take effect.
    """
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value.strip():
        return _DEFAULT_EPOCH
    if re.fullmatch(r"[0-9]+", value.strip()) is None:
        raise ContextError(
            f"SOURCE_DATE_EPOCH={value!r} is not a Unix time in whole seconds",
            fix="set SOURCE_DATE_EPOCH to a Unix time in seconds, e.g. "
            "`git log -1 --format=%ct`, or unset it",
        )
    return int(value)


def _add_member(tar: tarfile.TarFile, root: Path, entry: Entry, info: tarfile.TarInfo) -> None:
    """Add ``entry`` as ``info`` (name, owner, mtime already set), checking that it is
    still what :func:`collect` saw; a file as one consistent read (steady.py: a file
    that changed is read again, one deleted meanwhile left out)."""
    info.mode = _tar_mode(entry.kind, entry.mode)
    if entry.kind == "file":
        read = steady.Reads(root).hash_file(entry.relpath, entry.size, keep=True)
        if read is not None and read.held is not None:
            info.size = read.size
            tar.addfile(info, io.BytesIO(read.held))
        return
    _lstat(root, entry)
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = _read_target(root, entry)
        _check_symlink(root, entry.relpath, info.linkname)
        tar.addfile(info)


def build_tar(
    root: Path,
    entries: Sequence[Entry],
    *,
    prefix: str = "",
    uid: int = 1001,
    gid: int = 0,
    mtime: int | None = None,
) -> bytes:
    """An uncompressed PAX tar of ``entries``; identical trees give identical bytes.

    Identical on any clone, too: modes come from :func:`_tar_mode` (kind and executable
    bit, not the umask) and ``mtime`` defaults to :func:`source_date_epoch`, not the
    files' own. Members are in tree order; names are ``prefix/relpath`` (the prefix
    directories themselves are not archived: they already exist where the archive is
    put). Owner is ``uid:gid`` with empty user and group names so the container's passwd
    does not matter. The only PAX records are those tarfile needs for long or non-ASCII
    names and out-of-range numbers, all derived from the member itself: no atime, ctime
    or fractional mtime.
    """
    if prefix:
        prefix = prefix.rstrip("/")
        _check_relpath(prefix, "prefix")
    if uid < 0 or gid < 0:
        raise ContextError(
            f"uid {uid} / gid {gid} cannot own archive members",
            fix="pass a non-negative uid and gid",
        )
    ordered = _ordered(entries)
    stamp = source_date_epoch() if mtime is None else mtime
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for entry in ordered:
            info = tarfile.TarInfo(f"{prefix}/{entry.relpath}" if prefix else entry.relpath)
            info.uid, info.gid = uid, gid
            info.uname, info.gname = "", ""
            info.mtime = stamp
            _add_member(tar, root, entry, info)
    return buffer.getvalue()


def _file_sha256(root: Path, entry: Entry) -> str:
    digest = hashlib.sha256()
    with _open_file(root, entry) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(root: Path, relpath: str, size: int) -> str:
    """sha256 of the regular file ``relpath`` that :func:`collect` found ``size`` bytes
    long (refused as changed when it no longer is a file of that size)."""
    return _file_sha256(root, Entry(relpath, "file", 0, size))


def context_digest(
    root: Path, entries: Sequence[Entry], digests: Mapping[str, str] | None = None
) -> str:
    """Hex sha256 of the archived tree: the cache key for the app layer.

    Covers each entry's path, kind, archived mode (:func:`_tar_mode`: the executable
    bit, not the umask, so another clone gets the same key), symlink target and file
    contents, with NUL framing so no two trees hash alike. Not covered: mtimes and the
    ``build_tar`` arguments (uid, gid, prefix, mtime, hence ``SOURCE_DATE_EPOCH``); a
    caller that varies those must add them to its key.

    ``digests`` (relpath -> sha256 hex of every file, e.g. from the host index) stands in
    for reading the files: entries are then checked against nothing on disk, the caller
    having just found them there.
    """
    digest = hashlib.sha256(_DIGEST_VERSION)
    if digests is not None:
        digest.update(_records(entries, digests).encode("utf-8"))
        return digest.hexdigest()
    for entry in _ordered(entries):
        if entry.kind == "file":
            read = steady.Reads(root).hash_file(entry.relpath, entry.size)
            if read is None:
                continue  # deleted since collect(): left out, as build_tar leaves it
            detail = read.digest
        else:
            _lstat(root, entry)
            detail = _read_target(root, entry) if entry.kind == "symlink" else ""
        mode = _tar_mode(entry.kind, entry.mode)
        record = f"{entry.kind}\0{entry.relpath}\0{mode:o}\0{detail}\0"
        digest.update(record.encode("utf-8"))
    return digest.hexdigest()


def _records(entries: Sequence[Entry], digests: Mapping[str, str]) -> str:
    """What :func:`context_digest` hashes, from known file digests, in one string (one
    hash update instead of one a file)."""
    parts = []
    for relpath, kind, mode, _, target in entries:
        if kind == "file":
            parts.append(f"file\0{relpath}\0{775 if mode & 0o100 else 664}\0{digests[relpath]}\0")
        elif kind == "dir":
            parts.append(f"dir\0{relpath}\x00775\0\0")
        else:
            parts.append(f"symlink\0{relpath}\x00777\0{target or ''}\0")
    return "".join(parts)
