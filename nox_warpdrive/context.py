"""The app-source archive: what ends up in the container at ``/opt/app-root/src``.

The archive is handed to docker's ``put_archive``, so it must be a plain (uncompressed)
tar whose bytes depend only on the tree: the app layer is cached by
:func:`context_digest`, and a tar that changed on every run would defeat that cache.
"The tree" means what a clone carries: names, contents, symlink targets and the
executable bit. Mtimes (a fresh clone has checkout times) and the other mode bits (the
umask of whoever cloned) do not reach the archive or the digest, so two clones of one
commit give byte-identical archives: every member gets :func:`source_date_epoch` as its
mtime and a mode made from its kind and executable bit alone (:func:`_tar_mode`).

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
* Files that look like secrets (``.env``, ``.env.*``) are left out unless a ``!`` rule
  re-includes them (:data:`SECRET_EXCLUDES`); :func:`secret_files_left_out` names them
  so the user learns why a setting is missing in the container.
* A path whose owner cannot read it is refused rather than archived: the normalised
  modes would make it readable in the image (see :func:`collect`).
"""

from __future__ import annotations

import contextlib
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
    "LARGE_FILE_BYTES",
    "SECRET_EXCLUDES",
    "Entry",
    "IgnoreRules",
    "build_tar",
    "collect",
    "context_digest",
    "is_excluded",
    "large_files",
    "load_ignore_rules",
    "parse_dockerignore",
    "secret_files_left_out",
    "source_date_epoch",
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

#: Files that usually hold secrets (dotenv files), excluded after :data:`DEFAULT_EXCLUDES`
#: and before the project's ``.dockerignore``, so ``!.env`` there re-includes one.
#:
#: An image is easily pushed or shared; a ``.env`` with a database password or an API key
#: copied into it by accident leaks with it, while a ``.env`` left out costs one visible
#: notice (:func:`secret_files_left_out`) and one line to bring it back.
SECRET_EXCLUDES: tuple[str, ...] = ("**/.env", "**/.env.*")

#: Included regular files above this size are worth a warning (:func:`large_files`): they
#: are usually data or build output committed by mistake, and they make every app layer,
#: push and pull that much bigger.
LARGE_FILE_BYTES = 100 * 1024 * 1024

_CHUNK = 1024 * 1024
_DIGEST_VERSION = b"nox-warpdrive context digest v2\0"
_DOCKERIGNORE = ".dockerignore"
_BOM = "\ufeff"
#: jib's choice (1970-01-01T00:00:01Z): a fixed time that no tool mistakes for "unset" (0)
_DEFAULT_EPOCH = 1

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
    """Rules in the order they apply: defaults (:data:`DEFAULT_EXCLUDES`, then
    :data:`SECRET_EXCLUDES`), then ``root/.dockerignore``, then ``extra``.

    Later rules win, so the project's file can re-include a default (``!.venv``,
    ``!.env``) and ``extra`` (from ``[tool.warpdrive]``) has the last word. ``extra``
    items are ``.dockerignore`` lines.
    """
    defaults = DEFAULT_EXCLUDES + SECRET_EXCLUDES
    rules: list[tuple[bool, str]] = [(False, pattern) for pattern in defaults]
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
    """One archived path. ``mode`` is the permission bits as found on disk (the archive
    and the digest use only its executable bit, see :func:`_tar_mode`); ``size`` is 0
    for directories and symlinks; ``target`` is set only for symlinks."""

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
        mode = stat.S_IMODE(st.st_mode)
        if kind == "dir":
            if excluded and not _may_reinclude_below(rules, child):
                continue
            if not excluded:  # before the walk, which would fail on a non-root host
                _check_readable(child, kind, mode)
            below = list(_walk(root, rules, Path(dirent.path), child))
            if excluded:
                if not below:
                    continue
                _check_readable(child, kind, mode)
            _check_name(child)
            yield Entry(child, "dir", mode, 0)
            yield from below
        elif not excluded:
            _check_name(child)
            if kind == "file":
                _check_readable(child, kind, mode)
                yield Entry(child, "file", mode, st.st_size)
            else:
                target = os.readlink(dirent.path)
                _check_symlink(root, child, target)
                yield Entry(child, "symlink", mode, 0, target)


def collect(root: Path, rules: IgnoreRules) -> list[Entry]:
    """Every archived path under ``root``, in tree order; symlinks are not followed.

    Directories are entries of their own so that empty ones survive. An excluded
    directory is walked only if a ``!`` rule could re-include something inside it.
    A file its owner cannot read, or a directory its owner cannot enter, is refused
    here, by name, unless excluded: archived with normalised modes it would become
    readable in the image.
    """
    if not root.is_dir():
        raise ContextError(
            f"app source {root} is not a directory",
            fix="point the app source at the project directory",
        )
    return sorted(_walk(root, rules, root, ""), key=lambda entry: _sort_key(entry.relpath))


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


def secret_files_left_out(root: Path, rules: IgnoreRules, entries: Sequence[Entry]) -> list[str]:
    """Relpaths, in tree order, of dotenv files left out only by :data:`SECRET_EXCLUDES`.

    The caller tells the user, because a setting that silently goes missing in the
    container is hard to trace back to an ignore rule they never wrote. A file the
    project's own rules exclude gets no notice: they chose that. Only the root and the
    directories in ``entries`` (what :func:`collect` returned) are listed, once each and
    without stat calls; anything else is inside an excluded directory, left out anyway.
    """
    without = _without_secret_excludes(rules)
    found: list[str] = []
    for directory in ["", *(entry.relpath for entry in entries if entry.kind == "dir")]:
        for name in _dotenv_names(root / directory):
            relpath = f"{directory}/{name}" if directory else name
            if is_excluded(rules, relpath) and not is_excluded(without, relpath):
                found.append(relpath)
    return sorted(found, key=_sort_key)


def large_files(entries: Sequence[Entry], limit: int = LARGE_FILE_BYTES) -> list[Entry]:
    """The regular files among ``entries`` bigger than ``limit`` bytes, in the order given.

    For a warning, not a refusal: a big file is usually data or build output committed by
    mistake, but may be a model the app needs, and only the user can tell.
    """
    return [entry for entry in entries if entry.kind == "file" and entry.size > limit]


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
    still what :func:`collect` saw."""
    _lstat(root, entry)
    info.mode = _tar_mode(entry.kind, entry.mode)
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


def context_digest(root: Path, entries: Sequence[Entry]) -> str:
    """Hex sha256 of the archived tree: the cache key for the app layer.

    Covers each entry's path, kind, archived mode (:func:`_tar_mode`: the executable
    bit, not the umask, so another clone gets the same key), symlink target and file
    contents, with NUL framing so no two trees hash alike. Not covered: mtimes and the
    ``build_tar`` arguments (uid, gid, prefix, mtime, hence ``SOURCE_DATE_EPOCH``); a
    caller that varies those must add them to its key.
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
        mode = _tar_mode(entry.kind, entry.mode)
        record = f"{entry.kind}\0{entry.relpath}\0{mode:o}\0{detail}\0"
        digest.update(record.encode("utf-8"))
    return digest.hexdigest()
