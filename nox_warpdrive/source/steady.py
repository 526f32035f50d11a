"""Reading app source files that change while they are read.

A build reads the files of the project directory, and the project directory is where
its own output often goes: `nox -s image > build.log 2>&1`, `nohup` writing
``nohup.out``. Such a file grows while the build walks, hashes and archives the tree. A
build that stopped at it could never succeed (the writer is the build itself), so a
file is never a reason to fail:

* A file whose bytes are not what the walk saw (another size), or that changed during
  the read (its size, mtime, ctime or inode differ before and after), is read again, a
  few times, a moment apart; each read keeps its bytes. The last read made while the
  file stood still (a consistent read) is what the layer holds: the bytes are kept in
  memory, so the layer is made of them, not of whatever the file holds by then. When no
  two reads in a row agree (a log being written), a warning names the file and how to
  leave it out (``.dockerignore``).
* A file deleted, or replaced by something that is not a regular file, since the walk
  is left out, with a warning.
* The source index (source/index.py) records the size and digest of what went into the
  layer, and no digest to trust later: the next build reads such a file again.

The layers written later read a file again only when it was steady here; one that has
grown since (a log that was quiet while it was hashed) gives the layer the bytes that
were hashed, its first ones (source/image_layers.py), with a warning too.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import ContextError

#: how many times a file that changed is read again
TRIES = 4
#: the pause before each of those reads, in seconds (the n-th read waits n times this)
PAUSE = 0.05

_CHUNK = 1024 * 1024
_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


@dataclass(frozen=True)
class Hashed:
    """What a read of one file gave: the sha256 and size of the bytes the layer holds;
    ``steady`` when they are what the walk saw (else the index keeps no digest of them);
    ``held``: the bytes themselves, when the file changed (the layer is made of them)."""

    digest: str
    size: int
    steady: bool = True
    held: bytes | None = None


class _Read(NamedTuple):
    digest: str
    size: int
    data: bytes | None
    #: the file stood still while it was read: the same stat before and after, and as
    #: many bytes as it says
    consistent: bool


def _still(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def read_once(root: Path, relpath: str, keep: bool) -> _Read | None:
    """One read of the regular file ``relpath`` of ``root`` (``keep``: with its bytes);
    None when it is gone or no longer a regular file (a link, a fifo swapped in: not
    followed, not waited on)."""
    path = root / relpath
    try:
        fd = os.open(path, _FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            return None
        raise ContextError(
            f"cannot read {relpath}: {exc.strerror or exc}",
            fix=f"make it readable, or add '{relpath}' to .dockerignore",
        ) from exc
    with os.fdopen(fd, "rb") as fh:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            return None
        digest = hashlib.sha256()
        parts: list[bytes] = []
        size = 0
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if keep:
                parts.append(chunk)
        after = os.fstat(fd)
    consistent = _still(before) == _still(after) and size == after.st_size
    return _Read(digest.hexdigest(), size, b"".join(parts) if keep else None, consistent)


@dataclass(frozen=True)
class Reads:
    """The reads of one build's source files (``root``: the project), and what they
    found beyond digests: the files held in memory (relpath -> bytes) and the lines to
    tell the user."""

    root: Path
    held: dict[str, bytes] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    #: waits between reads (the tests' clock)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def hash_file(self, relpath: str, size: int, keep: bool = False) -> Hashed | None:
        """The file ``relpath`` that the walk found ``size`` bytes long, read: its digest
        (streamed, nothing held, unless ``keep``) when it is still that file; else the
        bytes of a consistent read, read again a few times (:data:`TRIES`); None when it
        is gone."""
        first = read_once(self.root, relpath, keep=keep)
        if first is not None and first.consistent and first.size == size:
            return Hashed(first.digest, first.size, held=first.data)
        last: _Read | None = None  # the last consistent read
        read = first
        for attempt in range(1, TRIES + 1):
            if read is None:
                return self._gone(relpath)
            self.sleep(PAUSE * attempt)
            read = read_once(self.root, relpath, keep=True)
            if read is None or not read.consistent:
                continue
            if last is not None and (last.digest, last.size) == (read.digest, read.size):
                return self._hold(relpath, read)  # two reads alike: it has settled
            last = read
        if read is None:
            return self._gone(relpath)
        kept = last if last is not None else read
        self.notices.append(
            f"warpdrive: warning: {relpath} kept changing while the app source was read "
            f"(a log being written?); the image holds it as it was at one moment "
            f"({kept.size} bytes{'' if kept.consistent else ', read while it was written'}). "
            f"fix: add '{relpath}' to .dockerignore to leave it out"
        )
        return self._hold(relpath, kept)

    def _hold(self, relpath: str, read: _Read) -> Hashed:
        assert read.data is not None
        self.held[relpath] = read.data
        return Hashed(read.digest, read.size, steady=False, held=read.data)

    def _gone(self, relpath: str) -> Hashed | None:
        """None (the file is left out), and a line saying so."""
        self.notices.append(
            f"warpdrive: warning: {relpath} was deleted (or replaced by something that is "
            "not a file) while the app source was read; it is left out of the image"
        )
        return None


def own_output(root: Path) -> list[str]:
    """The files below ``root`` that this process's output goes to (stdout, stderr: the
    ``> build.log 2>&1`` of the command that runs the build), as relpaths; found through
    /proc (Linux; elsewhere none)."""
    found: list[str] = []
    real_root = os.path.realpath(root)
    for fd in (1, 2):
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            path = os.path.realpath(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        relpath = os.path.relpath(path, real_root)
        if not relpath.startswith("..") and relpath not in found and os.path.isfile(path):
            found.append(relpath)
    return found
