"""Ignore rules with Docker's ``.dockerignore`` semantics (moby ``patternmatcher`` and
``ignorefile``), so that a project's existing ``.dockerignore`` means the same thing here
as it does to ``docker build``. Where Docker's behaviour is an accident of its regexp
translation rather than a documented rule, this module follows the documented
``filepath.Match`` rules instead; each such place says so.

:func:`is_excluded` is the rule as Docker states it (last matching rule wins, a rule
matching a parent directory matches its contents); :class:`RuleSet` is the same rules
compiled once for a walk, where trying every rule on every path and each of its parents
cost ~120 us a file (see :class:`RuleSet`).
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nox_warpdrive.errors import ContextError

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

_DOCKERIGNORE = ".dockerignore"
_BOM = "\ufeff"

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
    return _matcher(detected, pattern, literal_end, parts)


def _matcher(
    detected: Literal["exact", "prefix", "suffix", "regex"],
    pattern: str,
    literal_end: int,
    parts: list[str],
) -> _Matcher:
    """The matcher :func:`_compile` found for ``pattern``: one of moby's fast paths, or
    the regexp made of ``parts``."""
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
                ) from exc


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
            ) from exc
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
    except UnicodeDecodeError as exc:
        raise ContextError(
            f"{path} is not valid UTF-8",
            fix=f"re-save {path} as UTF-8",
        ) from exc
    except OSError as exc:
        raise ContextError(
            f"cannot read {path}: {exc.strerror or exc}",
            fix=f"make {path} a readable file, or delete it",
        ) from exc


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


def may_reinclude_below(rules: IgnoreRules, dirpath: str) -> bool:
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


# --------------------------------------------------------------------------- compiled


@dataclass(frozen=True)
class RuleSet:
    """:class:`IgnoreRules` compiled once for a walk: the same answers as
    :func:`is_excluded`, at a few dict lookups a path.

    ``is_excluded`` tries every rule on the path and on each of its parents (~120 us a
    file with the defaults). A walk knows which rules matched a directory already, so a
    child only needs the rules that can match *it*; and most rules can only match one
    name (``**/.git``: a last component ``.git``), one path (``.venv``) or one depth
    (``a/*.txt``). Rules are bits of an int, in order: the highest bit set among the
    rules matching the path or a parent is the last matching rule, which decides.
    """

    #: bit of every ``!`` rule
    negated: int
    #: last component -> bits of the rules that match exactly that name (``**/.git``)
    by_name: dict[str, int]
    #: rules on the last component with wildcards (``**/*.pyc``), and all of them as one
    #: regexp that rejects most names at once
    name_globs: tuple[tuple[int, _Matcher], ...]
    name_any: re.Pattern[str] | None
    #: whole path -> bits of the rules that match exactly that path (``.venv``)
    by_path: dict[str, int]
    #: number of components -> rules that only match paths that deep (``a/*.txt``)
    by_depth: dict[int, tuple[tuple[int, _Matcher], ...]]
    #: rules that are tried on every path (``**`` in the middle, prefixes, classes)
    general: tuple[tuple[int, _Matcher], ...]
    #: the rules on the last component with one ``*`` and plain text around it
    #: (``**/*.pyc``, ``**/.env.*``), as (bit, start, end): ``str.startswith`` and
    #: ``str.endswith`` instead of a regexp; a name can only match one of them when it
    #: starts with one of ``name_starts`` or ends with one of ``name_ends``
    star_rules: tuple[tuple[int, str, str], ...] = ()
    name_starts: tuple[str, ...] = ()
    name_ends: tuple[str, ...] = ()

    @classmethod
    def compile(cls, rules: IgnoreRules) -> RuleSet:
        negated = 0
        by_name: dict[str, int] = {}
        by_path: dict[str, int] = {}
        globs: list[tuple[int, _Matcher]] = []
        by_depth: dict[int, list[tuple[int, _Matcher]]] = {}
        general: list[tuple[int, _Matcher]] = []
        stars: list[tuple[int, str, str]] = []
        for i, (neg, pattern) in enumerate(rules.patterns):
            bit = 1 << i
            if neg:
                negated |= bit
            matcher = _compile(pattern)
            where, key = _rule_scope(pattern, matcher)
            star = _one_star(key) if where == "glob" else None
            if where == "name":
                by_name[key] = by_name.get(key, 0) | bit
            elif where == "path":
                by_path[key] = by_path.get(key, 0) | bit
            elif star is not None:
                stars.append((bit, *star))
            elif where == "glob":
                globs.append((bit, _compile(key)))
            elif where == "depth":
                by_depth.setdefault(int(key), []).append((bit, matcher))
            else:
                general.append((bit, matcher))
        regexes = [m.regex.pattern for _, m in globs if m.regex is not None]
        name_any = re.compile("|".join(f"(?:{r})" for r in regexes), re.DOTALL) if regexes else None
        depths = {d: tuple(ms) for d, ms in by_depth.items()}
        starts = tuple(sorted({start for _, start, _ in stars if start}))
        ends = tuple(sorted({end for _, start, end in stars if not start}))
        return cls(
            negated,
            by_name,
            tuple(globs),
            name_any,
            by_path,
            depths,
            tuple(general),
            tuple(stars),
            starts,
            ends,
        )

    def direct(self, path: str, name: str, depth: int) -> int:
        """Bits of the rules that match ``path`` itself (not through a parent); ``name``
        is its last component, ``depth`` its number of components."""
        bits = self.by_name.get(name, 0) | self.by_path.get(path, 0)
        if name.startswith(self.name_starts) or name.endswith(self.name_ends):
            bits |= self.star_bits(name)
        if self.name_any is not None and self.name_any.fullmatch(name):
            bits |= self.glob_bits(name)
        return bits | self.slow_bits(path, depth)

    def glob_bits(self, name: str) -> int:
        """Bits of the rules on the last component with wildcards that match ``name``."""
        return sum(bit for bit, matcher in self.name_globs if matcher.matches(name))

    def star_bits(self, name: str) -> int:
        """Bits of the one-``*`` rules on the last component (``*.pyc``, ``.env.*``) that
        ``name`` matches."""
        return sum(
            bit
            for bit, start, end in self.star_rules
            if name.startswith(start) and name.endswith(end) and len(name) >= len(start) + len(end)
        )

    def has_slow(self, depth: int) -> bool:
        """Whether :meth:`slow_bits` can find anything at ``depth`` (a walk asks once a
        directory: most trees have no such rule, or only for the first level)."""
        return bool(self.general) or depth in self.by_depth

    def slow_bits(self, path: str, depth: int) -> int:
        """Bits of the fixed-depth and general rules that match ``path``."""
        bits = 0
        for bit, matcher in self.by_depth.get(depth, ()):
            if matcher.matches(path):
                bits |= bit
        for bit, matcher in self.general:
            if matcher.matches(path):
                bits |= bit
        return bits

    def decides(self, bits: int) -> bool:
        """Whether a path whose matching rules (its own and its parents') are ``bits`` is
        excluded: the last of them decides."""
        return bits != 0 and not (self.negated >> (bits.bit_length() - 1)) & 1

    def bits(self, relpath: str) -> int:
        """The rules matching ``relpath`` or a parent of it (a clean relative path)."""
        bits = 0
        parts = relpath.split("/")
        for depth in range(1, len(parts) + 1):
            bits |= self.direct("/".join(parts[:depth]), parts[depth - 1], depth)
        return bits

    def excluded(self, relpath: str) -> bool:
        """:func:`is_excluded`, compiled."""
        path = _go_clean(relpath.replace(os.sep, "/"))
        if path in (".", "/"):
            return False
        return self.decides(self.bits(path))


def _one_star(glob: str) -> tuple[str, str] | None:
    """(the text before, the text after) when a last-component glob is plain text around
    one ``*`` (``*.pyc``, ``.env.*``), not ``*`` alone: on a name (no ``/`` in it) moby's
    regexp (``[^/]*\\.pyc``) matches exactly the names with that start and that end."""
    start, star, end = glob.partition("*")
    if not star or not (start or end) or any(c in start + end for c in "*?[]\\"):
        return None
    return start, end


def _rule_scope(pattern: str, matcher: _Matcher) -> tuple[str, str]:
    """Which paths a rule can match: ("name", N) only paths whose last component is N;
    ("glob", P) only those whose last component matches pattern P; ("path", P) only P;
    ("depth", D) only paths of D components; ("any", "") anything. Conservative: a rule
    it cannot place is tried on every path, which costs time, never an answer."""
    if matcher.kind == "exact":
        return "path", matcher.text
    if matcher.kind == "suffix":
        # "**/x": a path ending in "/x", or "x" itself: a last component "x"
        text = matcher.text
        if text.startswith("/") and len(text) > 1 and "/" not in text[1:]:
            return "name", text[1:]
        return "any", ""
    if matcher.kind != "regex":
        return "any", ""
    rest = pattern[3:]
    if pattern.startswith("**/") and "/" not in rest and "**" not in rest:
        # "(?:.*/)?REST" where REST never matches "/": REST matches the last component
        return "glob", rest
    if "**" not in pattern and "[" not in pattern:
        # "*", "?" and escapes never match "/": as many components as the pattern has
        return "depth", str(pattern.count("/") + 1)
    return "any", ""
