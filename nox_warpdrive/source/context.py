"""The app-source archive: what ends up in the container at ``/opt/app-root/src``.

The archive is handed to docker's ``put_archive``, so it must be a plain (uncompressed)
tar whose bytes depend only on the tree: the app layer is cached by
:func:`context_digest`, and a tar that changed on every run would defeat that cache.
"The tree" means what a clone carries: names, contents, symlink targets and the
executable bit. Mtimes (a fresh clone has checkout times) and the other mode bits (the
umask of whoever cloned) do not reach the archive or the digest, so two clones of one
commit give byte-identical archives: every member gets :func:`source_date_epoch` as its
mtime and a mode made from its kind and executable bit alone (:func:`_tar_mode`).

Ignore rules follow Docker's ``.dockerignore`` semantics (:mod:`nox_warpdrive.source.ignore`),
compiled once per walk (:class:`~nox_warpdrive.source.ignore.RuleSet`).

Choices made where Docker leaves room:

* The root's own ``.dockerignore`` is archived unless a rule excludes it (Docker does
  the same; the file is small and harmless).
* A directory that is excluded but contains a re-included entry is still archived, as a
  bare directory entry, so that the re-included entry gets its parents with the right
  owner and mode instead of root-owned directories made up by the extractor.
* Setuid, setgid and sticky bits are dropped in the tar: they have no business on app
  source owned by an arbitrary uid.
* Files that look like secrets (``.env``, ``.env.*``) are left out unless a ``!`` rule
  re-includes them (:data:`SECRET_EXCLUDES`); :func:`secret_files_left_out` names them
  so the user learns why a setting is missing in the container.
* A path whose owner cannot read it is refused rather than archived: the normalised
  modes would make it readable in the image (see :func:`collect`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import itertools
import marshal
import operator
import os
import posixpath
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

from nox_warpdrive.errors import ContextError
from nox_warpdrive.source import forked
from nox_warpdrive.source.ignore import (
    DEFAULT_EXCLUDES,
    SECRET_EXCLUDES,
    IgnoreRules,
    RuleSet,
    is_excluded,
    load_ignore_rules,
    may_reinclude_below,
    parse_dockerignore,
)

__all__ = [
    "DEFAULT_EXCLUDES",
    "LARGE_FILE_BYTES",
    "SECRET_EXCLUDES",
    "Entry",
    "IgnoreRules",
    "Walked",
    "collect",
    "is_excluded",
    "large_files",
    "load_ignore_rules",
    "parse_dockerignore",
    "secret_files_left_out",
    "walk_tree",
]


#: Included regular files above this size are worth a warning (:func:`large_files`): they
#: are usually data or build output committed by mistake, and they make every app layer,
#: push and pull that much bigger.
LARGE_FILE_BYTES = 100 * 1024 * 1024

_CHUNK = 1024 * 1024
_DIGEST_VERSION = b"nox-warpdrive context digest v2\0"
#: jib's choice (1970-01-01T00:00:01Z): a fixed time that no tool mistakes for "unset" (0)
_DEFAULT_EPOCH = 1

Kind = Literal["file", "dir", "symlink"]


# --------------------------------------------------------------------------- walking


class Entry(NamedTuple):
    """One archived path. ``mode`` is the permission bits as found on disk (the archive
    and the digest use only its executable bit, see :func:`_tar_mode`); ``size`` is 0
    for directories and symlinks; ``target`` is set only for symlinks.

    A named tuple rather than a frozen dataclass: every build makes one per file of the
    tree, and a tuple is made in a third of the time (0.45 us against 1.3 us)."""

    relpath: str
    kind: Kind
    mode: int
    size: int
    target: str | None = None


@dataclass(frozen=True)
class Walked:
    """What one walk of the tree found: the entries (:func:`collect`); per directory
    (``""``: the root), in tree order of the directories, its signature and the entries
    right in it; and the dotenv files it saw in the directories it listed (for
    :func:`secret_files_left_out`, which would otherwise list them all again).

    A directory's signature (:func:`directory_key`) is its names and their lstat but
    the access time: everything about its entries that the app layers hold, but a
    file's bytes (a file's executable bit, size, mtime and ctime in whole seconds,
    inode and device; a link's target has its own inode). A directory whose signature
    is what it was at the last build holds the same files (source/index.py): what was
    made from them is not made again. A walk told those signatures (``known``) makes no
    entries for the files of such a directory: it has no ``children``, and only its
    subdirectories are in ``entries``."""

    entries: list[Entry]
    children: dict[str, list[Entry]]
    signatures: dict[str, bytes]
    dotenv: list[str]
    #: the newest ctime (whole seconds) of the files it made entries for: the
    #: filesystem's clock had reached it (source/index.py: racily clean files, even
    #: with a skewed clock)
    newest: list[int] = dataclasses.field(default_factory=lambda: [0])
    #: FIFOs, sockets and devices it saw and left out (no rule excluded them): a tar of
    #: one would hang on a FIFO or hold no app source, and the user is told which
    special: list[str] = dataclasses.field(default_factory=list)


def _sort_key(relpath: str) -> tuple[str, ...]:
    """Tree order by path component: parents first, independent of locale and of
    ``-`` sorting before ``/``."""
    return tuple(relpath.split("/"))


_IFMT = 0o170000
_KINDS: dict[int, Kind] = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink"}
_FMTS = frozenset(_KINDS)


def _kind_of(mode: int) -> Kind | None:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return None  # socket, fifo, device: not app source


def _exclude_fix(relpath: str) -> str:
    return f"add '{relpath}' to .dockerignore"


#: what an image layer's member name starts with when it deletes a path below it
_WHITEOUT = ".wh."


def _check_name(relpath: str) -> None:
    """Refuse names the tar cannot carry faithfully (PAX names are UTF-8), and names an
    engine would read as a deletion instead of a file (``.wh.*``, OCI's whiteouts)."""
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ContextError(
            f"path {relpath!r} is not valid UTF-8 and cannot be archived",
            fix=f"rename it to a UTF-8 name, or {_exclude_fix(relpath)}",
        ) from exc
    if relpath.rpartition("/")[2].startswith(_WHITEOUT):
        raise ContextError(
            f"{relpath} cannot go into an image: in a layer, a name starting with "
            f"{_WHITEOUT!r} deletes a path instead of being a file",
            fix=f"rename it, or {_exclude_fix(relpath)}",
        )


def _check_readable(relpath: str, kind: Kind, mode: int) -> None:
    """Refuse a file its owner cannot read, or a directory its owner cannot list and enter.

    The archive's modes are normalised (:func:`_tar_mode`) and the app user owns every
    member, so such a path would become readable in the image: a file locked away on
    purpose (a key) would be published, and an accident would go unnoticed. The mode bits
    are checked rather than :func:`os.access` because a host running as root reads
    anything: the answer must not depend on who runs the build.
    """
    needed = 0o500 if kind == "dir" else 0o400
    if mode & needed == needed:
        return
    bits = "rx" if kind == "dir" else "r"
    raise ContextError(
        f"{relpath} is not readable by its owner (mode 0o{mode:03o}); archived, it would "
        "become readable in the image",
        fix=f"`chmod u+{bits} {relpath}` (the image's app user owns it) or "
        f"add '{relpath}' to .dockerignore",
    )


def _check_symlink(root: Path, relpath: str, target: str) -> None:
    """Refuse a symlink that would point outside the app root inside the container.

    Absolute targets mean something else in the container; ``..`` past the root, after
    normalisation or after resolving chains of links on disk, leaves the app root.
    """
    fix = (
        f"replace {relpath} with a copy of what it points to, make it a relative link "
        f"inside the project, or {_exclude_fix(relpath)}"
    )
    _check_name(target)
    if target.startswith("/"):
        raise ContextError(f"symlink {relpath} -> {target} has an absolute target", fix=fix)
    lexical = posixpath.normpath(posixpath.join(posixpath.dirname(relpath), target))
    if lexical == ".." or lexical.startswith("../"):
        raise ContextError(f"symlink {relpath} -> {target} points outside the app root", fix=fix)
    real_root = os.path.realpath(root)
    resolved = os.path.realpath(root / relpath)
    if resolved != real_root and not resolved.startswith(real_root.rstrip("/") + "/"):
        raise ContextError(
            f"symlink {relpath} -> {target} resolves to {resolved}, outside the app root",
            fix=fix,
        )


#: makes an Entry from a tuple of its fields without the named tuple's Python-level
#: ``__new__`` (the walk makes one per file)
_entry = tuple.__new__

#: what a file's signature keeps of its lstat: all but the access time (mode, inode,
#: device, links, owner, group, size, mtime and ctime in whole seconds)
_SIGNATURE = operator.itemgetter(0, 1, 2, 3, 4, 5, 6, 8, 9)
_MODE = operator.itemgetter(0)

#: stat calls relative to an open directory (no path lookup a file), where the OS has them
_DIR_FD = os.stat in os.supports_dir_fd and os.listdir in os.supports_fd
_OPEN_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


def _listing(directory: Path, relpath: str) -> tuple[list[str], list[os.stat_result]]:
    """The names in a directory, in name order, and their lstat results (a name deleted
    since the listing is left out). The stat calls run in one ``map``: no Python frame
    a file."""
    try:
        if not _DIR_FD:
            names = sorted(os.listdir(directory))
            return _stat_all(names, os.lstat, [os.path.join(directory, n) for n in names])
        fd = os.open(directory, _OPEN_DIR)
        try:
            names = os.listdir(fd)
            names.sort()
            lstat = functools.partial(os.stat, dir_fd=fd, follow_symlinks=False)
            return _stat_all(names, lstat, names)
        finally:
            os.close(fd)
    except OSError as exc:
        shown = relpath or "."
        raise ContextError(
            f"cannot read directory {shown} of {directory}: {exc.strerror or exc}",
            fix=f"make it readable, or {_exclude_fix(shown)}",
        ) from exc


def _stat_all(
    names: list[str], lstat: Callable[[str], os.stat_result], args: list[str]
) -> tuple[list[str], list[os.stat_result]]:
    try:
        return names, list(map(lstat, args))
    except FileNotFoundError:  # one was deleted since the listing: one by one
        kept: list[tuple[str, os.stat_result]] = []
        for name, arg in zip(names, args, strict=True):
            with contextlib.suppress(FileNotFoundError):
                kept.append((name, lstat(arg)))
        return [n for n, _ in kept], [st for _, st in kept]


def directory_key(names: list[str], stats: list[os.stat_result]) -> bytes:
    """A directory's signature: its names and each one's lstat but the access time,
    marshalled (version 2: the same values give the same bytes, and back the same
    values)."""
    return marshal.dumps((names, list(map(_SIGNATURE, stats))), 2)


def file_signatures(key: bytes) -> dict[str, tuple[int, ...]]:
    """name -> its signature, from a :func:`directory_key` ({} when it is not one)."""
    try:
        names, sigs = marshal.loads(key)
        return {name: tuple(sig) for name, sig in zip(names, sigs, strict=True)}
    except (EOFError, ValueError, TypeError):
        return {}


@dataclass(frozen=True)
class _Walk:
    """One walk of a tree: its root, its rules, and the rules compiled for it.

    Entries are appended to one list rather than yielded through a generator per
    directory level, and the common rule lookups are inlined: a walk of tens of
    thousands of files is on every build's path, next to one stat a file. A directory
    whose signature is the one in ``known`` (the source index's, made with the same
    rules) has had its files looked at already: only its subdirectories are."""

    root: Path
    rules: IgnoreRules
    compiled: RuleSet
    found: Walked
    #: directories whose contents are left for later (a forked child may walk them),
    #: and those met, as (relpath, path, depth, rule bits)
    later: frozenset[str] = frozenset()
    deferred: list[tuple[str, str, int, int]] = dataclasses.field(default_factory=list)
    #: directory -> its signature when its files were last looked at (source/index.py)
    known: Mapping[str, bytes] = dataclasses.field(default_factory=dict)

    def walk(self, directory: Path, relpath: str, depth: int, bits: int) -> None:
        """Add the entries below ``directory`` (``relpath``, ``depth`` components from the
        root; ``bits``: the rules that match it or a parent) to what was found."""
        names, stats = _listing(directory, relpath)
        key = directory_key(names, stats)
        self.found.signatures[relpath] = key
        modes = list(map(_MODE, stats))
        if (
            self.known.get(relpath) == key
            and stat.S_IFLNK not in set(map(stat.S_IFMT, modes))
            and not (bits and self.compiled.decides(bits))
        ):
            # the same names and files as when the index was made: only the directories.
            # Not with links (where they lead depends on other links: checked on every
            # walk), nor in an excluded directory (kept only for what it re-includes)
            self._unchanged(directory, names, stats, modes, (relpath, depth, bits))
        else:
            self._entries(directory, names, stats, (relpath, depth, bits))

    def _unchanged(
        self,
        directory: Path,
        names: list[str],
        stats: list[os.stat_result],
        modes: list[int],
        where: tuple[str, int, int],
    ) -> None:
        """A directory known unchanged: its subdirectories walked, its dotenv files
        noted, nothing made a file."""
        relpath, depth, bits = where
        prefix = relpath + "/" if relpath else ""
        depth += 1
        direct, decides = self.compiled.direct, self.compiled.decides
        dirs = itertools.compress(zip(names, stats, strict=True), map(stat.S_ISDIR, modes))
        for name, st in dirs:
            child = prefix + name
            child_bits = bits | direct(child, name, depth)
            excluded = child_bits != 0 and decides(child_bits)
            path = os.path.join(directory, name)
            self._directory(path, child, (depth, child_bits), excluded, st[0] & 0o7777)
        if not _FMTS.issuperset(map(stat.S_IFMT, modes)):
            for name, mode in zip(names, modes, strict=True):
                if stat.S_IFMT(mode) not in _FMTS:
                    self._special(prefix + name, name, depth, bits)
        if "\0.env" in "\0" + "\0".join(names):
            dotenv = self.found.dotenv
            for name, mode in zip(names, modes, strict=True):
                if _is_dotenv_name(name) and not stat.S_ISDIR(mode):
                    dotenv.append(prefix + name)

    def _entries(
        self,
        directory: Path,
        names: list[str],
        stats: list[os.stat_result],
        where: tuple[str, int, int],
    ) -> None:
        """A directory's entries, one by one (the rules, the checks, an Entry each)."""
        relpath, depth, bits = where
        add_entry = self.found.entries.append
        add_mine = self.found.children.setdefault(relpath, []).append
        compiled = self.compiled
        by_name, by_path = compiled.by_name.get, compiled.by_path.get
        depth += 1
        starts, ends = compiled.name_starts, compiled.name_ends  # once a directory
        name_any = compiled.name_any.fullmatch if compiled.name_any is not None else None
        slow = compiled.slow_bits if compiled.has_slow(depth) else None
        prefix = relpath + "/" if relpath else ""
        newest: float = 0  # a stat result's index 9 is whole seconds (an int)
        for name, st in zip(names, stats, strict=True):
            child = prefix + name
            # a stat result read by index: (mode, ino, dev, ..., size, atime, mtime, ctime)
            st_mode = st[0]
            kind = _KINDS.get(st_mode & _IFMT)
            if kind is None:  # socket, fifo, device: not app source
                self._special(child, name, depth, bits)
                continue
            child_bits = bits | by_name(name, 0) | by_path(child, 0)
            if name.startswith(starts) or name.endswith(ends):
                child_bits |= compiled.star_bits(name)
            if name_any is not None and name_any(name):
                child_bits |= compiled.glob_bits(name)
            if slow is not None:
                child_bits |= slow(child, depth)
            excluded = child_bits != 0 and compiled.decides(child_bits)
            mode = st_mode & 0o7777
            if kind == "dir":
                path = os.path.join(directory, name)
                self._directory(path, child, (depth, child_bits), excluded, mode)
                continue
            if name.startswith(".env") and _is_dotenv_name(name):
                self.found.dotenv.append(child)
            if excluded:
                continue
            if name.startswith(_WHITEOUT) or not name.isascii():
                _check_name(child)
            if kind == "file":
                if mode & 0o400 != 0o400:
                    _check_readable(child, kind, mode)
                entry = _entry(Entry, (child, "file", mode, st[6], None))
                if st[9] > newest:
                    newest = st[9]
            else:
                entry = self._symlink(os.path.join(directory, name), child, mode)
            add_entry(entry)
            add_mine(entry)
        if newest > self.found.newest[0]:
            self.found.newest[0] = int(newest)

    def _special(self, child: str, name: str, depth: int, bits: int) -> None:
        """Note a FIFO, socket or device that no rule excludes: it is left out."""
        if not self.compiled.decides(bits | self.compiled.direct(child, name, depth)):
            self.found.special.append(child)

    def _symlink(self, path: str, child: str, mode: int) -> Entry:
        target = os.readlink(path)
        _check_symlink(self.root, child, target)
        return Entry(child, "symlink", mode, 0, target)

    def _directory(
        self,
        path: str,
        child: str,
        where: tuple[int, int],
        excluded: bool,
        mode: int,
    ) -> None:
        """A directory and what is archived below it (``where``: its depth and rule
        bits): an excluded one only when a ``!`` rule re-includes something inside, and
        then as a bare directory entry."""
        depth, bits = where
        if excluded and not may_reinclude_below(self.rules, child):
            return
        if not excluded:  # before the walk, which would fail on a non-root host
            _check_readable(child, "dir", mode)
        _check_name(child)
        found = self.found
        parent = child.rpartition("/")[0]
        entry = Entry(child, "dir", mode, 0)
        at = len(found.entries)
        found.entries.append(entry)
        mine = found.children.get(parent)  # none in a directory known unchanged
        if mine is not None:
            mine.append(entry)
        if child in self.later and not excluded:
            self.deferred.append((child, path, depth, bits))
            return
        self.walk(Path(path), child, depth, bits)
        if excluded:
            if len(found.entries) == at + 1:  # nothing re-included below it
                found.entries.pop()
                if mine is not None:
                    mine.pop()
                found.children.pop(child, None)
                del found.signatures[child]
            else:
                _check_readable(child, "dir", mode)


def collect(root: Path, rules: IgnoreRules) -> list[Entry]:
    """Every archived path under ``root``, in tree order; symlinks are not followed.

    Directories are entries of their own so that empty ones survive. An excluded
    directory is walked only if a ``!`` rule could re-include something inside it.
    A file its owner cannot read, or a directory its owner cannot enter, is refused
    here, by name, unless excluded: archived with normalised modes it would become
    readable in the image.
    """
    return walk_tree(root, rules).entries


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection in the block (then as before). A build makes a few
    objects per file of the tree, none of them in a cycle; with collections running, a
    walk of 100,000 files spends a third of its time in them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def walk_tree(root: Path, rules: IgnoreRules, known: Mapping[str, bytes] | None = None) -> Walked:
    """:func:`collect`, with what the walk saw on the way (:class:`Walked`): the one stat
    pass a build makes over the tree. A big tree's subtrees are shared with a forked
    child (forked.py); the result is the same as one walk's, in the same order.
    ``known``: directory -> its signature when the source index was made with these
    rules; the files of a directory that still has it get no entries."""
    if not root.is_dir():
        raise ContextError(
            f"app source {root} is not a directory",
            fix="point the app source at the project directory",
        )
    found = Walked([], {}, {}, [])
    compiled = RuleSet.compile(rules)
    later = _split_points(root, compiled) if forked.can_fork() else frozenset()
    walk = _Walk(root, rules, compiled, found, later, known=known or {})
    # each directory is listed in name order, parents before children: tree order
    with paused_gc():
        walk.walk(root, "", 0, 0)
        if walk.deferred:
            _walk_deferred(walk)
    return found


#: a tree is walked by two processes when it has this many directories at one depth
_SPLIT_DIRS = 32


def _split_points(root: Path, compiled: RuleSet, deepest: int = 4) -> frozenset[str]:
    """The directories a big tree's walk is split at: the first depth (down to
    ``deepest``) with :data:`_SPLIT_DIRS` directories that no rule excludes, found from
    the directories' names alone; none for a smaller tree (a fork would cost more than it
    saves)."""
    level: list[tuple[str, str, int]] = [("", str(root), 0)]
    for depth in range(1, deepest + 1):
        below: list[tuple[str, str, int]] = []
        for relpath, path, bits in level:
            try:
                with os.scandir(path) as it:
                    dirs = [d for d in it if d.is_dir(follow_symlinks=False)]
            except OSError:
                return frozenset()  # the walk says what is wrong
            for d in dirs:
                child = f"{relpath}/{d.name}" if relpath else d.name
                child_bits = bits | compiled.direct(child, d.name, depth)
                if not compiled.decides(child_bits):
                    below.append((child, d.path, child_bits))
        if len(below) >= _SPLIT_DIRS:
            return frozenset(child for child, _, _ in below)
        if not below:
            return frozenset()
        level = below
    return frozenset()


@dataclass(frozen=True)
class _Refused:
    """A subtree's walk that raised a ContextError (carried back from a forked child)."""

    message: str
    fix: str | None


def _walk_deferred(walk: _Walk) -> None:
    """Walk the deferred subtrees (every other one in a forked child) and put what was
    found in its place: entries in tree order, directories in tree order."""

    def run(job: tuple[str, str, int, int]) -> Walked | _Refused:
        relpath, path, depth, bits = job
        sub = Walked([], {}, {}, [])
        try:
            sub_walk = _Walk(walk.root, walk.rules, walk.compiled, sub, known=walk.known)
            sub_walk.walk(Path(path), relpath, depth, bits)
        except ContextError as exc:
            return _Refused(exc.message, exc.fix)
        return sub

    encode = functools.partial(_encode, known=walk.known)
    subs = forked.share(walk.deferred, run, encode, functools.partial(_decode, known=walk.known))
    found, by_dir = walk.found, {}
    for (relpath, _, _, _), sub in zip(walk.deferred, subs, strict=True):
        if isinstance(sub, _Refused):
            raise ContextError(sub.message, fix=sub.fix)
        by_dir[relpath] = sub
    entries: list[Entry] = []
    for entry in found.entries:
        entries.append(entry)
        walked = by_dir.get(entry.relpath) if entry.kind == "dir" else None
        if walked is not None:
            entries += walked.entries
            found.children.update(walked.children)
            found.signatures.update(walked.signatures)
            found.dotenv.extend(walked.dotenv)
            found.special.extend(walked.special)
            found.newest[0] = max(found.newest[0], walked.newest[0])
    found.entries[:] = entries
    for table in (found.children, found.signatures):
        ordered = sorted(table.items(), key=lambda item: _sort_key(item[0]))
        table.clear()
        table.update(ordered)  # type: ignore[arg-type]


def _encode(sub: Walked | _Refused, known: Mapping[str, bytes]) -> object:
    """A subtree's walk as marshal takes it (plain tuples, each entry once; None for
    a signature that is the ``known`` one)."""
    if isinstance(sub, _Refused):
        return ("refused", sub.message, sub.fix)
    plain = {id(e): tuple(e) for e in sub.entries}
    children = {d: [plain[id(e)] for e in es] for d, es in sub.children.items()}
    entries = [plain[id(e)] for e in sub.entries]
    sigs = {d: None if known.get(d) == sig else sig for d, sig in sub.signatures.items()}
    return ("walked", entries, children, sigs, sub.dotenv, sub.newest, sub.special)


def _decode(data: object, known: Mapping[str, bytes]) -> Walked | _Refused:
    parts = cast(tuple[Any, ...], data)
    if parts[0] == "refused":
        return _Refused(str(parts[1]), parts[2])
    _, entries, children, sigs, dotenv, newest, special = parts
    made = {id(t): _entry(Entry, t) for t in entries}
    back = {d: [made[id(t)] for t in ts] for d, ts in children.items()}
    signatures = {d: known[d] if sig is None else sig for d, sig in sigs.items()}
    walked = [made[id(t)] for t in entries]
    return Walked(walked, back, signatures, dotenv, newest, special)


def _is_dotenv_name(name: str) -> bool:
    """What :data:`SECRET_EXCLUDES` matches in one path component."""
    return name == ".env" or name.startswith(".env.")


def _dotenv_names(directory: Path) -> list[str]:
    """Names of the dotenv files (not directories: ``.env`` is also a virtualenv name)
    in ``directory``, from its listing alone (no stat on most filesystems)."""
    try:
        with os.scandir(directory) as it:
            return [
                d.name
                for d in it
                if _is_dotenv_name(d.name) and not d.is_dir(follow_symlinks=False)
            ]
    except OSError:  # gone since collect(): the notice is only a courtesy
        return []


def _without_secret_excludes(rules: IgnoreRules) -> IgnoreRules:
    """``rules`` minus the :data:`SECRET_EXCLUDES` :func:`load_ignore_rules` put first:
    what would be archived if dotenv files were not special."""
    patterns = list(rules.patterns)
    for pattern in SECRET_EXCLUDES:
        with contextlib.suppress(ValueError):
            patterns.remove((False, pattern))
    return IgnoreRules(tuple(patterns))


def secret_files_left_out(
    root: Path,
    rules: IgnoreRules,
    entries: Sequence[Entry],
    candidates: Sequence[str] | None = None,
) -> list[str]:
    """Relpaths, in tree order, of dotenv files left out only by :data:`SECRET_EXCLUDES`.

    The caller tells the user, because a setting that silently goes missing in the
    container is hard to trace back to an ignore rule they never wrote. A file the
    project's own rules exclude gets no notice: they chose that. Only the root and the
    directories in ``entries`` (what :func:`collect` returned) are listed, once each and
    without stat calls; anything else is inside an excluded directory, left out anyway.
    ``candidates``: the dotenv files a walk already saw there (:class:`Walked`), instead
    of listing the directories again.
    """
    without = _without_secret_excludes(rules)
    if candidates is None:
        candidates = [
            f"{directory}/{name}" if directory else name
            for directory in ["", *(entry.relpath for entry in entries if entry.kind == "dir")]
            for name in _dotenv_names(root / directory)
        ]
    found = [
        relpath
        for relpath in candidates
        if is_excluded(rules, relpath) and not is_excluded(without, relpath)
    ]
    return sorted(found, key=_sort_key)


def large_files(entries: Sequence[Entry], limit: int = LARGE_FILE_BYTES) -> list[Entry]:
    """The regular files among ``entries`` bigger than ``limit`` bytes, in the order given.

    For a warning, not a refusal: a big file is usually data or build output committed by
    mistake, but may be a model the app needs, and only the user can tell.
    """
    return [entry for entry in entries if entry.kind == "file" and entry.size > limit]
