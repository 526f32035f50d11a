"""What the app installs: its lock file (or hashed requirement files) read into one pinned
set, for the target image.

A lock is read on the host, before any container starts: which packages it selects
decides the requirement set's key, and an unchanged key must cost no container at all.
Markers are evaluated for the *target image* (the marker values the platform probe
computed inside it), never for the host; wheels are filtered with the target's tags. The
key then covers only what gets installed, so a lock that changes elsewhere (another
platform's wheels, a dev group) keeps the same key and the same deps layer.

This module holds what every format shares (the pinned set, the target, reading files
and naming lines, the project itself) and reads requirement files with ``--hash``; one
module per lock format in ``locks/`` reads the rest. Formats are read with the libraries
made for them where they exist: ``packaging`` for requirements, markers, tags, versions
and ``pylock.toml`` (``packaging.pylock``), ``tomllib``/``json`` for the files.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags, generic_tags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

from ..config import Config, load_pyproject, normalize
from ..errors import ConfigError
from ..layout import APP_SRC
from ..platform import PlatformKey

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# ---------------------------------------------------------------------------------------
# the pinned set


@dataclass(frozen=True)
class LockedFile:
    """One distribution file a lock allows: its name, sha256 and (when the lock has it)
    URL. Without a URL the builder finds the file by name on the index."""

    filename: str
    sha256: str
    url: str | None = None

    def plan(self) -> dict[str, Any]:
        return {"file": self.filename, "sha256": self.sha256, "url": self.url}


@dataclass(frozen=True)
class Pin:
    """One locked package for the target: the wheels the lock allows that fit the target
    (best first), its sdist, or, when the lock names no files (Pipfile.lock, ``--hash``
    requirements), the sha256s a file must have. ``where`` ("uv.lock line 12") is for
    messages only."""

    name: str
    version: str
    wheels: tuple[LockedFile, ...] = ()
    sdist: LockedFile | None = None
    hashes: tuple[str, ...] = ()
    index: str | None = None
    where: str = ""
    #: lines to show when the wheelhouse is built (a wheel of the lock left out, and why)
    notes: tuple[str, ...] = ()

    def identity(self) -> dict[str, Any]:
        """What the requirement set's key covers: what can be installed, not where from."""
        return {
            "name": self.name,
            "version": self.version,
            "wheels": sorted([w.filename, w.sha256] for w in self.wheels),
            "sdist": [self.sdist.filename, self.sdist.sha256] if self.sdist else None,
            "hashes": sorted(self.hashes),
        }

    def plan(self) -> dict[str, Any]:
        """What the builder is told (runtime/locked.py build_locked)."""
        return {
            "name": self.name,
            "version": self.version,
            "wheels": [w.plan() for w in self.wheels],
            "sdist": self.sdist.plan() if self.sdist else None,
            "hashes": list(self.hashes),
            "index": self.index,
            "where": self.where,
        }


@dataclass(frozen=True)
class ProjectBuild:
    """The project itself, built in the builder from the app source because its lock
    says it is a package. An editable build points at the source in the image (as the
    lock says it is installed), so only what shapes the build (packaging files and the
    tree's layout) is in its ``key``; a non-editable one is keyed by every file."""

    name: str
    root: Path
    editable: bool
    key: str
    where: str = ""
    #: the archive it is shipped as, and where the builder unpacks it: the project is
    #: built where the image has the app source (an editable install points there);
    #: another workspace member, as a plain wheel, in a directory of its own
    archive: str = "project.tar"
    dest: str = APP_SRC

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "editable": self.editable, "key": self.key}

    def plan(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "editable": self.editable,
            "key": self.key,
            "dest": self.dest,
            "archive": self.archive,
            "where": self.where,
        }


@dataclass(frozen=True)
class Locked:
    """What one lock file selects for the target."""

    pins: tuple[Pin, ...]
    project: ProjectBuild | None
    source: str
    indexes: tuple[str, ...] = ()
    #: the other workspace members the project depends on, built as wheels
    members: tuple[ProjectBuild, ...] = ()


# ---------------------------------------------------------------------------------------
# the target: marker values and wheel tags of the image the app runs in


@dataclass(frozen=True)
class Target:
    """The environment markers are evaluated in and the wheel tags it accepts (best
    first), for the image the app runs in."""

    markers: tuple[tuple[str, str], ...]
    tags: tuple[str, ...]
    label: str

    def environment(self, extra: str = "") -> dict[str, str]:
        return {**dict(self.markers), "extra": extra}

    @property
    def python_full_version(self) -> str:
        return dict(self.markers).get("python_full_version", "")

    @functools.cached_property
    def _ranks(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tags)}

    def rank(self, filename: str) -> int | None:
        """The best rank of a wheel's tags for this target (0 is best); None when the
        wheel does not fit it or its name is not a wheel's."""
        try:
            tags = parse_wheel_filename(filename)[3]
        except InvalidWheelFilename:
            return None
        ranks = [self._ranks[str(t)] for t in tags if str(t) in self._ranks]
        return min(ranks) if ranks else None

    def matches(self, marker: str | Marker | None, extras: Iterable[str] = ()) -> bool:
        """Whether a marker holds here, with any of ``extras`` (or none) as ``extra``."""
        if marker is None or marker == "":
            return True
        parsed = marker if isinstance(marker, Marker) else Marker(marker)
        return any(parsed.evaluate(self.environment(e)) for e in ("", *extras))


def _platforms(key: PlatformKey) -> list[str]:
    """The platform tags a Linux image accepts, best first, as ``packaging.tags`` lists
    them for the running system: the plain platform (a wheel built there), then
    manylinux for its glibc down to the oldest, with the legacy aliases, or musllinux."""
    plat = key.platform
    if not plat.startswith("linux_"):
        return [plat]
    arch = plat[len("linux_") :]
    out: list[str] = []
    m = re.match(r"^(\d+)\.(\d+)", key.libc_version)
    if key.libc == "glibc" and m:
        major, minor = int(m.group(1)), int(m.group(2))
        oldest = 5 if arch in ("x86_64", "i686") else 17
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        for v in range(minor, oldest - 1, -1):
            out.append(f"manylinux_{major}_{v}_{arch}")
            if major == 2 and v in legacy:
                out.append(f"{legacy[v]}_{arch}")
    elif key.libc == "musl" and m:
        major, minor = int(m.group(1)), int(m.group(2))
        out += [f"musllinux_{major}_{v}_{arch}" for v in range(minor, -1, -1)]
    return [plat, *out]


def target_tags(key: PlatformKey) -> tuple[str, ...]:
    """The image's supported wheel tags, best first, from its platform key."""
    platforms = _platforms(key)
    m = re.match(r"^(cp|pp)(\d)(\d+)$", key.interpreter)
    if not m:
        found: Iterable[Tag] = generic_tags(key.interpreter, [key.abi], platforms)
        return tuple(str(t) for t in found)
    version = (int(m.group(2)), int(m.group(3)))
    if m.group(1) == "cp":
        first: Iterable[Tag] = cpython_tags(version, [key.abi], platforms)
    else:
        first = generic_tags(key.interpreter, [key.abi], platforms)
    rest = compatible_tags(version, key.interpreter, platforms)
    return tuple(dict.fromkeys(str(t) for t in (*first, *rest)))


def _fallback_markers(key: PlatformKey) -> dict[str, str]:
    """Marker values derived from the key alone (a key from an older probe)."""
    full = key.python_version or ".".join([key.interpreter[2:3], key.interpreter[3:], "0"])
    impl = {"cp": "cpython", "pp": "pypy"}.get(key.interpreter[:2], key.interpreter)
    linux = key.platform.startswith("linux")
    return {
        "implementation_name": impl,
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": key.platform.split("_", 1)[-1] if linux else "",
        "platform_python_implementation": {"cpython": "CPython", "pypy": "PyPy"}.get(impl, impl),
        "platform_release": "",
        "platform_system": "Linux" if linux else "",
        "platform_version": "",
        "python_full_version": full,
        "python_version": ".".join(full.split(".")[:2]),
        "sys_platform": "linux" if linux else key.platform,
    }


def target_for(key: PlatformKey) -> Target:
    markers = key.marker_environment() or _fallback_markers(key)
    label = f"{key.interpreter}-{key.abi} {key.platform} (Python {markers['python_full_version']})"
    return Target(tuple(sorted(markers.items())), target_tags(key), label)


def host_target() -> Target:
    """This machine (``nox -s serve`` runs the app here)."""
    from packaging.markers import default_environment
    from packaging.tags import sys_tags

    env = {k: str(v) for k, v in default_environment().items()}
    return Target(tuple(sorted(env.items())), tuple(str(t) for t in sys_tags()), "this host")


# ---------------------------------------------------------------------------------------
# reading files, and naming lines in errors


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start})", fix=regenerate_fix(path)
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror}", fix="check its permissions"
        ) from exc


def load_toml(path: Path) -> tuple[str, dict[str, Any]]:
    text = read_text(path)
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", fix=regenerate_fix(path)) from exc


def regenerate_fix(path: Path) -> str:
    tool = {
        "uv.lock": "uv lock",
        "poetry.lock": "poetry lock",
        "Pipfile.lock": "pipenv lock",
    }.get(path.name, "uv export --format pylock.toml (or your locker)")
    return f"regenerate it with `{tool}`, or fix the file at that line"


@dataclass(frozen=True)
class Lines:
    """A file's lines, to name the line of an entry in an error."""

    name: str
    lines: tuple[str, ...]

    @classmethod
    def of(cls, path: Path, text: str) -> Lines:
        return cls(path.name, tuple(text.splitlines()))

    def find(self, pattern: str, start: int = 1) -> int:
        """The 1-based number of the first line at or after ``start`` that matches the
        regular expression; ``start`` when none does."""
        rx = re.compile(pattern)
        for i in range(max(start, 1) - 1, len(self.lines)):
            if rx.search(self.lines[i]):
                return i + 1
        return start

    def blocks(self, header: str) -> list[int]:
        """Line numbers of each ``[[header]]`` table, in order (tomllib keeps order)."""
        rx = re.compile(r"^\s*\[\[\s*" + re.escape(header) + r"\s*\]\]")
        return [i + 1 for i, line in enumerate(self.lines) if rx.match(line)]

    def at(self, line: int) -> str:
        return f"{self.name} line {line}"


def sha256_hex(value: object) -> str | None:
    """The hex digest of a ``sha256:...`` string (other algorithms give None)."""
    if isinstance(value, str) and value.startswith("sha256:"):
        digest = value[len("sha256:") :].lower()
        if re.fullmatch(r"[0-9a-f]{64}", digest):
            return digest
    return None


def url_filename(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def make_pin(
    name: str,
    version: str,
    files: Sequence[LockedFile],
    target: Target,
    *,
    where: str,
    index: str | None = None,
    notes: tuple[str, ...] = (),
) -> Pin:
    """A pin with the wheels that fit the target (best first) and the sdist. A package
    the target cannot install (no wheel for it, no sdist) is an error naming the entry:
    the lock has no entry for this platform."""
    wheels: list[tuple[int, LockedFile]] = []
    sdist = None
    for f in files:
        if f.filename.endswith(".whl"):
            rank = target.rank(f.filename)
            if rank is not None:
                wheels.append((rank, f))
        elif _is_sdist(f.filename):
            sdist = f
    if not wheels and sdist is None:
        raise ConfigError(
            f"{where}: {name} {version} has no wheel for the target image ({target.label}) "
            "and no sdist: the lock has no entry for this platform",
            fix="lock for this platform (e.g. uv's `environments`/`required-environments`, "
            "or a base image the lock supports), or pin a version with a wheel for it",
        )
    wheels.sort(key=lambda rf: (rf[0], rf[1].filename))
    return Pin(
        normalize(name),
        version,
        tuple(f for _, f in wheels),
        sdist,
        index=index,
        where=where,
        notes=notes,
    )


def _is_sdist(filename: str) -> bool:
    try:
        parse_sdist_filename(filename)
    except InvalidSdistFilename:
        return False
    return True


def parse_marker(text: object, where: str) -> Marker | None:
    if text is None or text == "":
        return None
    try:
        return Marker(str(text))
    except InvalidMarker as exc:
        raise ConfigError(f"{where}: invalid marker {text!r}: {exc}", fix="fix the lock") from exc


# -- checks every lock format shares


def check_python(spec: object, target: Target, lines: Lines, pattern: str) -> None:
    """A lock made for other Pythons has no entry for the target's."""
    if not spec:
        return
    try:
        ok = SpecifierSet(str(spec)).contains(target.python_full_version, prereleases=True)
    except InvalidSpecifier:
        return
    if not ok:
        raise ConfigError(
            f"{lines.at(lines.find(pattern))}: the lock is for Python {spec}, and the target "
            f"image runs Python {target.python_full_version} ({target.label}): the lock "
            "has no entry for it",
            fix="use a base image with a Python the lock supports, or widen requires-python "
            "in pyproject.toml and lock again",
        )


def check_environments(markers: object, target: Target, lines: Lines) -> None:
    """uv's ``supported-environments``: a lock limited to other platforms."""
    if not isinstance(markers, list) or not markers:
        return
    at = lines.at(lines.find(r"^supported-environments"))
    if not any(target.matches(parse_marker(m, at)) for m in markers):
        raise ConfigError(
            f"{at}: the lock supports only {' or '.join(map(str, markers))}, and the target "
            f"image ({target.label}) is none of them: the lock has no entry for it",
            fix="add the image's platform to `environments` in [tool.uv] and run `uv lock`",
        )


# ---------------------------------------------------------------------------------------
# the project itself

#: what shapes an editable build besides the tree's layout
_PACKAGING_FILES = ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in")


def project_build(cfg: Config, name: str, editable: bool, where: str) -> ProjectBuild | None:
    """The project, when it is to be installed: the lock says it is a package and
    `install-project` does not turn that off. It must have a build system."""
    if cfg.install_project is False:
        return None
    root = cfg.project_dir
    data = load_pyproject(root)
    if "build-system" not in data and not (root / "setup.py").is_file():
        raise ConfigError(
            f"{where}: the lock installs the project {name} itself, but "
            f"{root / 'pyproject.toml'} has no [build-system] (and there is no setup.py)",
            fix="add a [build-system], or set `install-project = false` in [tool.warpdrive]",
        )
    from ..source.archive import context_digest
    from ..source.context import collect, load_ignore_rules

    entries = collect(root, load_ignore_rules(root))
    h = hashlib.sha256(b"editable-v1\0" if editable else b"wheel-v1\0")
    if editable:
        for fn in _PACKAGING_FILES:
            path = root / fn
            h.update(fn.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"-") + b"\0")
        # new packages or top-level modules change what an editable install maps
        for e in entries:
            if e.kind == "dir" or "/" not in e.relpath:
                h.update(e.relpath.encode() + b"\0")
    else:
        h.update(context_digest(root, entries).encode())
    return ProjectBuild(normalize(name), root, editable, h.hexdigest(), where)


def member_build(root: Path, name: str, where: str) -> ProjectBuild:
    """Another uv workspace member the app depends on: built as a plain wheel from its
    directory (shipped like the app source, its ignore rules applied), keyed by every
    file. Not editable, unlike `uv sync`: its source is not in the image."""
    data = load_pyproject(root)
    if "build-system" not in data and not (root / "setup.py").is_file():
        raise ConfigError(
            f"{where}: the app depends on the workspace member {name}, and "
            f"{root / 'pyproject.toml'} has no [build-system] (and there is no setup.py)",
            fix=f"add a [build-system] to {name}'s pyproject.toml and run `uv lock`",
        )
    from ..source.archive import context_digest
    from ..source.context import collect, load_ignore_rules

    digest = context_digest(root, collect(root, load_ignore_rules(root)))
    key = hashlib.sha256(b"member-v1\0" + digest.encode()).hexdigest()
    slug = normalize(name)
    return ProjectBuild(
        slug, root, False, key, where, f"member-{slug}.tar", f"/tmp/warpdrive-members/{slug}"
    )
