"""The app-source archive: what ends up in the container at ``/opt/app-root/src``.

The archive is handed to docker's ``put_archive``, so it must be a plain (uncompressed)
tar whose bytes depend only on the tree: the app layer is cached by
:func:`context_digest`, and a tar that changed on every run would defeat that cache.

Ignore rules follow Docker's ``.dockerignore`` semantics (moby ``patternmatcher`` and
``ignorefile``) so that a project's existing ``.dockerignore`` means the same thing here
as it does to ``docker build``. Where Docker's behaviour is an accident of its regexp
translation rather than a documented rule, this module follows the documented
``filepath.Match`` rules instead; each such place says so.

Choices made where Docker leaves room:

* The root's own ``.dockerignore`` is archived unless a rule excludes it (Docker does
  the same; the file is small and harmless).
* A directory that is excluded but contains a re-included entry is still archived, as a
  bare directory entry, so that the re-included entry gets its parents with the right
  owner and mode instead of root-owned directories made up by the extractor.
* Setuid, setgid and sticky bits are dropped in the tar: they have no business on app
  source owned by an arbitrary uid.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import posixpath
import re
import stat
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from nox_warpdrive.errors import ContextError

__all__ = [
    "DEFAULT_EXCLUDES",
    "Entry",
    "IgnoreRules",
    "build_tar",
    "collect",
    "context_digest",
    "is_excluded",
    "load_ignore_rules",
    "parse_dockerignore",
]

#: Excluded even without a ``.dockerignore``; a ``!`` rule in the file re-includes.
#:
#: VCS metadata and tool caches get ``**/`` because they appear below the root too
#: (git submodules, old svn's per-directory ``.svn``, a ``frontend/node_modules``, caches
#: of tools run from a subdirectory). Virtualenvs and nox/tox dirs stay anchored at the
#: root: a nested directory called ``venv`` may well be app code.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    "**/.git",
    "**/.hg",
    "**/.svn",
    ".nox",
    ".tox",
    ".venv",
    "venv",
    "**/__pycache__",
    "**/*.pyc",
    "**/.mypy_cache",
    "**/.pytest_cache",
    "**/.ruff_cache",
    "**/node_modules",
)

_CHUNK = 1024 * 1024
_DIGEST_VERSION = b"nox-warpdrive context digest v1\0"
_DOCKERIGNORE = ".dockerignore"
_BOM = "\ufeff"

Kind = Literal["file", "dir", "symlink"]


# --------------------------------------------------------------------------- patterns


class _PatternError(ValueError):
    """A pattern is not valid ``filepath.Match`` syntax; the caller adds where it was."""


@dataclass(frozen=True)
class _Matcher:
    """One compiled pattern.

    ``kind`` mirrors moby's fast paths (exact, prefix, suffix) because they are not
    exactly equivalent to the regexp: ``**foo`` is a plain suffix test there, so it
    matches ``xfoo``. Keeping them makes a ``.dockerignore`` behave as in Docker.
    """

    kind: Literal["exact", "prefix", "suffix", "regex"]
    text: str
    regex: re.Pattern[str] | None = None

    def matches(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text)
        if self.kind == "suffix":
            if path.endswith(self.text):
                return True
            return self.text.startswith("/") and path == self.text[1:]
        assert self.regex is not None
        return self.regex.fullmatch(path) is not None


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    """Read one (possibly escaped) character of a ``[...]`` range, as filepath.Match does."""
    if i >= len(pattern):
        raise _PatternError("unterminated '[' character class")
    ch = pattern[i]
    if ch in "-]":
        raise _PatternError(f"unexpected {ch!r} in character class")
    if ch == "\\":
        i += 1
        if i >= len(pattern):
            raise _PatternError("unterminated '[' character class")
        ch = pattern[i]
    return ch, i + 1


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """Translate a ``[...]`` class starting after its ``[``; return regex and next index.

    Docker pastes the class into a Go regexp verbatim, where ``[^a]`` also matches
    ``/``; here a class never matches ``/``, like ``*`` and ``?`` (filepath.Match rules),
    so patterns stay per path component.
    """
    negated = i < len(pattern) and pattern[i] == "^"
    if negated:
        i += 1
    items: list[str] = []
    while True:
        if i < len(pattern) and pattern[i] == "]" and items:
            i += 1
            break
        lo, i = _class_char(pattern, i)
        hi = lo
        if i < len(pattern) and pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
            if hi < lo:
                raise _PatternError(f"character range {lo}-{hi} is reversed")
        items.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
    body = "".join(items)
    return (f"[^/{body}]" if negated else f"(?!/)[{body}]"), i


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str) -> _Matcher:
    """Compile a cleaned pattern the way moby's ``Pattern.compile`` does.

    ``*`` and ``?`` never cross ``/``; ``**`` (and ``**/``) matches any number of
    directories, including none; ``\\x`` is a literal ``x`` (Docker hands ``\\d`` to its
    regexp engine as a digit class, an accident not copied here).
    """
    parts: list[str] = []
    detected: Literal["exact", "prefix", "suffix", "regex"] = "exact"
    literal_end = 0  # end of the literal text before a trailing "**" (prefix match)
    i = 0
    token = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*" and i < n and pattern[i] == "*":
            literal_end = i - 1
            i += 1
            if i < n and pattern[i] == "/":
                i += 1
            if i >= n:
                if detected == "exact":
                    detected = "prefix"
                else:
                    parts.append(".*")
                    detected = "regex"
            else:
                parts.append("(?:.*/)?")
                detected = "regex"
            if token == 0:
                detected = "suffix"
        elif ch == "*":
            parts.append("[^/]*")
            detected = "regex"
        elif ch == "?":
            parts.append("[^/]")
            detected = "regex"
        elif ch == "\\":
            if i >= n:
                raise _PatternError("trailing '\\' escapes nothing")
            parts.append(re.escape(pattern[i]))
            i += 1
            detected = "regex"
        elif ch == "[":
            cls, i = _char_class(pattern, i)
            parts.append(cls)
            detected = "regex"
        elif ch == "]":
            parts.append(re.escape(ch))
            detected = "regex"
        else:
            parts.append(re.escape(ch))
        token += 1
    if detected == "exact":
        return _Matcher("exact", pattern)
    if detected == "prefix":
        return _Matcher("prefix", pattern[:literal_end])
    if detected == "suffix":
        return _Matcher("suffix", pattern[2:])
    return _Matcher("regex", pattern, re.compile("".join(parts), re.DOTALL))


def _go_clean(path: str) -> str:
    """``filepath.Clean`` for slash paths; unlike ``normpath`` it folds a leading ``//``."""
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def _parse_line(line: str) -> tuple[bool, str] | None:
    """Normalise one ``.dockerignore`` line like moby's ``ignorefile.ReadAll``.

    Only a ``#`` in column one starts a comment (Docker checks before trimming, so
    ``  #x`` is a pattern). ``!`` may be followed by spaces; patterns are cleaned and a
    leading ``/`` is dropped because the context root is the only root there is.
    """
    if line.startswith("#"):
        return None
    text = line.strip()
    if not text:
        return None
    negated = text.startswith("!")
    if negated:
        text = text[1:].strip()
        if not text:
            raise _PatternError("'!' must be followed by a pattern")
    text = _go_clean(text)
    if len(text) > 1 and text.startswith("/"):
        text = text[1:]
    _compile(text)
    return negated, text


@dataclass(frozen=True)
class IgnoreRules:
    """Ordered ``(negated, pattern)`` rules; the last rule matching a path decides.

    Construction validates every pattern, so a bad hand-built rule fails here with a
    :class:`ContextError` rather than in the middle of a walk.
    """

    patterns: tuple[tuple[bool, str], ...] = ()

    def __post_init__(self) -> None:
        for negated, pattern in self.patterns:
            try:
                _compile(pattern)
            except _PatternError as exc:
                shown = ("!" if negated else "") + pattern
                raise ContextError(
                    f"ignore pattern {shown!r} is invalid: {exc}",
                    fix="correct the pattern (Go filepath.Match syntax: *, ?, [a-z], **, "
                    "\\ escapes the next character)",
                ) from None


def _parse_lines(lines: Sequence[str], source: str) -> list[tuple[bool, str]]:
    rules: list[tuple[bool, str]] = []
    for number, line in enumerate(lines, start=1):
        try:
            parsed = _parse_line(line)
        except _PatternError as exc:
            raise ContextError(
                f"{source} line {number}: pattern {line.strip()!r} is invalid: {exc}",
                fix=f"correct or delete line {number} of {source} (Go filepath.Match "
                "syntax: *, ?, [a-z], **, \\ escapes the next character)",
            ) from None
        if parsed is not None:
            rules.append(parsed)
    return rules


def parse_dockerignore(text: str, *, source: str = _DOCKERIGNORE) -> IgnoreRules:
    """Parse ``.dockerignore`` text (``source`` names it in error messages)."""
    text = text.removeprefix(_BOM)
    # Split on "\n" only, like Go's line scanner; a trailing "\r" is trimmed as space.
    return IgnoreRules(tuple(_parse_lines(text.split("\n"), source)))


def _read_dockerignore(root: Path) -> str | None:
    path = root / _DOCKERIGNORE
    if not path.exists():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ContextError(
            f"{path} is not valid UTF-8",
            fix=f"re-save {path} as UTF-8",
        ) from None
    except OSError as exc:
        raise ContextError(
            f"cannot read {path}: {exc.strerror or exc}",
            fix=f"make {path} a readable file, or delete it",
        ) from None


def load_ignore_rules(root: Path, extra: Sequence[str] = ()) -> IgnoreRules:
    """Rules in the order they apply: defaults, then ``root/.dockerignore``, then ``extra``.

    Later rules win, so the project's file can re-include a default (``!.venv``) and
    ``extra`` (from ``[tool.warpdrive]``) has the last word. ``extra`` items are
    ``.dockerignore`` lines.
    """
    rules: list[tuple[bool, str]] = [(False, pattern) for pattern in DEFAULT_EXCLUDES]
    text = _read_dockerignore(root)
    if text is not None:
        rules.extend(parse_dockerignore(text, source=str(root / _DOCKERIGNORE)).patterns)
    rules.extend(_parse_lines(list(extra), "extra ignore pattern"))
    return IgnoreRules(tuple(rules))


def _ancestors(path: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b"]``: the parents a pattern may exclude ``path`` through."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def is_excluded(rules: IgnoreRules, relpath: str) -> bool:
    """Docker's ``MatchesOrParentMatches``: last matching rule wins, parents count.

    A rule matches a path if it matches the path itself or any of its parent
    directories, which is how excluding ``build`` excludes ``build/x/y``.
    """
    path = _go_clean(relpath.replace(os.sep, "/"))
    if path in (".", "/"):
        return False
    parents = _ancestors(path)
    matched = False
    for negated, pattern in rules.patterns:
        if negated != matched:
            continue  # an exclude cannot change an excluded path, nor a `!` an included one
        matcher = _compile(pattern)
        if matcher.matches(path) or any(matcher.matches(parent) for parent in parents):
            matched = not negated
    return matched


def _component_may_match(pattern_part: str, name: str) -> bool:
    try:
        return _compile(pattern_part).matches(name)
    except _PatternError:  # e.g. a class split by "/"; err on the side of descending
        return True


def _may_reinclude_below(rules: IgnoreRules, dirpath: str) -> bool:
    """Whether some ``!`` rule could match something inside excluded ``dirpath``.

    Decides only whether the walk descends; every path found is still judged by
    :func:`is_excluded`, so erring towards True costs time, never correctness. Docker's
    classic builder only descends for ``!`` patterns with a literal ``dirpath/`` prefix
    and so misses ``!**/keep``; BuildKit descends, and so does this.
    """
    dir_parts = dirpath.split("/")
    for negated, pattern in rules.patterns:
        if not negated:
            continue
        pattern_parts = pattern.split("/")
        for depth, name in enumerate(dir_parts):
            if depth >= len(pattern_parts) or "**" in pattern_parts[depth]:
                return True
            if not _component_may_match(pattern_parts[depth], name):
                break
        else:
            return True
    return False


# --------------------------------------------------------------------------- walking


@dataclass(frozen=True)
class Entry:
    """One archived path. ``mode`` is the permission bits as found on disk;
    ``size`` is 0 for directories and symlinks; ``target`` is set only for symlinks."""

    relpath: str
    kind: Kind
    mode: int
    size: int
    target: str | None = None


def _sort_key(relpath: str) -> tuple[str, ...]:
    """Tree order by path component: parents first, independent of locale and of
    ``-`` sorting before ``/``."""
    return tuple(relpath.split("/"))


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


def _check_name(relpath: str) -> None:
    """Refuse names the tar cannot carry faithfully (PAX names are UTF-8)."""
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        raise ContextError(
            f"path {relpath!r} is not valid UTF-8 and cannot be archived",
            fix=f"rename it to a UTF-8 name, or {_exclude_fix(relpath)}",
        ) from None


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


def _scan(directory: Path, relpath: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda entry: entry.name)
    except OSError as exc:
        shown = relpath or "."
        raise ContextError(
            f"cannot read directory {shown} of {directory}: {exc.strerror or exc}",
            fix=f"make it readable, or {_exclude_fix(shown)}",
        ) from None


def _walk(root: Path, rules: IgnoreRules, directory: Path, relpath: str) -> Iterator[Entry]:
    for dirent in _scan(directory, relpath):
        child = f"{relpath}/{dirent.name}" if relpath else dirent.name
        try:
            st = dirent.stat(follow_symlinks=False)
        except FileNotFoundError:  # deleted since the directory was listed
            continue
        kind = _kind_of(st.st_mode)
        if kind is None:
            continue
        excluded = is_excluded(rules, child)
        if kind == "dir":
            if excluded and not _may_reinclude_below(rules, child):
                continue
            below = list(_walk(root, rules, Path(dirent.path), child))
            if excluded and not below:
                continue
            _check_name(child)
            yield Entry(child, "dir", stat.S_IMODE(st.st_mode), 0)
            yield from below
        elif not excluded:
            _check_name(child)
            if kind == "file":
                yield Entry(child, "file", stat.S_IMODE(st.st_mode), st.st_size)
            else:
                target = os.readlink(dirent.path)
                _check_symlink(root, child, target)
                yield Entry(child, "symlink", stat.S_IMODE(st.st_mode), 0, target)


def collect(root: Path, rules: IgnoreRules) -> list[Entry]:
    """Every archived path under ``root``, in tree order; symlinks are not followed.

    Directories are entries of their own so that empty ones survive. An excluded
    directory is walked only if a ``!`` rule could re-include something inside it.
    """
    if not root.is_dir():
        raise ContextError(
            f"app source {root} is not a directory",
            fix="point the app source at the project directory",
        )
    return sorted(_walk(root, rules, root, ""), key=lambda entry: _sort_key(entry.relpath))


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
    except FileNotFoundError:
        raise _changed(entry) from None
    if _kind_of(st.st_mode) != entry.kind:
        raise _changed(entry)
    return st


def _open_file(root: Path, entry: Entry) -> BinaryIO:
    """Open a regular file without following a symlink swapped in since ``collect``."""
    path = root / entry.relpath
    try:
        # O_NONBLOCK: a fifo swapped in must not hang the build; no effect on files.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise _changed(entry) from None
    except OSError as exc:
        raise ContextError(
            f"cannot read {entry.relpath}: {exc.strerror or exc}",
            fix=f"make it readable, or {_exclude_fix(entry.relpath)}",
        ) from None
    handle = os.fdopen(fd, "rb")
    st = os.fstat(handle.fileno())
    if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
        handle.close()
        raise _changed(entry)
    return handle


def _read_target(root: Path, entry: Entry) -> str:
    try:
        target = os.readlink(root / entry.relpath)
    except OSError:
        raise _changed(entry) from None
    if target != entry.target:
        raise _changed(entry)
    return target


def _tar_mode(mode: int) -> int:
    """S2I-style: group gets the owner's bits (0o644 -> 0o664), so whatever uid the
    container runs as, being in gid 0, can write the app dir. Others stay; special bits
    go."""
    owner = mode & 0o700
    return owner | (owner >> 3) | (mode & 0o007)


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

    Names are ``prefix/relpath`` (the prefix directories themselves are not archived:
    they already exist where the archive is put). Owner is ``uid:gid`` with empty user
    and group names so the container's passwd does not matter. ``mtime`` defaults to
    each path's own, truncated to whole seconds so no PAX mtime record appears.
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
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for entry in ordered:
            st = _lstat(root, entry)
            info = tarfile.TarInfo(f"{prefix}/{entry.relpath}" if prefix else entry.relpath)
            info.mode = _tar_mode(entry.mode)
            info.uid, info.gid = uid, gid
            info.uname, info.gname = "", ""
            info.mtime = mtime if mtime is not None else int(st.st_mtime)
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = _read_target(root, entry)
                _check_symlink(root, entry.relpath, info.linkname)
                tar.addfile(info)
            else:
                info.size = entry.size
                with _open_file(root, entry) as handle:
                    try:
                        tar.addfile(info, handle)
                    except OSError:  # shrank after the size check
                        raise _changed(entry) from None
    return buffer.getvalue()


def _file_sha256(root: Path, entry: Entry) -> str:
    digest = hashlib.sha256()
    with _open_file(root, entry) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def context_digest(root: Path, entries: Sequence[Entry]) -> str:
    """Hex sha256 of the archived tree: the cache key for the app layer.

    Covers each entry's path, kind, mode, symlink target and file contents, with NUL
    framing so no two trees hash alike. Not covered: mtimes and the ``build_tar``
    arguments (uid, gid, prefix, mtime); a caller that varies those must add them to
    its key.
    """
    digest = hashlib.sha256(_DIGEST_VERSION)
    for entry in _ordered(entries):
        _lstat(root, entry)
        if entry.kind == "file":
            detail = _file_sha256(root, entry)
        elif entry.kind == "symlink":
            detail = _read_target(root, entry)
        else:
            detail = ""
        record = f"{entry.kind}\0{entry.relpath}\0{entry.mode:o}\0{detail}\0"
        digest.update(record.encode("utf-8"))
    return digest.hexdigest()
