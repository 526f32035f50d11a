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

import dataclasses
import functools
import hashlib
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags, generic_tags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

from .config import Config, RequirementSet, load_pyproject, normalize, read_requirements
from .errors import ConfigError
from .layout import APP_SRC
from .platform import PlatformKey

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
        """What the builder is told (runtime/build_wheels.py build_locked)."""
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
    from .context import collect, context_digest, load_ignore_rules

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
    from .context import collect, context_digest, load_ignore_rules

    digest = context_digest(root, collect(root, load_ignore_rules(root)))
    key = hashlib.sha256(b"member-v1\0" + digest.encode()).hexdigest()
    slug = normalize(name)
    return ProjectBuild(
        slug, root, False, key, where, f"member-{slug}.tar", f"/tmp/warpdrive-members/{slug}"
    )


# ---------------------------------------------------------------------------------------
# requirement files with --hash (pip's hash-checking mode)

_OPTION = re.compile(r"\s(?=--?[A-Za-z])")
_HASH = re.compile(r"--hash[=\s]+(\w+):([0-9A-Fa-f]+)")
#: options a hashed file may carry that change nothing for pinned, hashed requirements
_HARMLESS = ("--require-hashes", "--prefer-binary", "--only-binary", "--pre", "--trusted-host")


def _logical_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each logical line: continuations joined, comments
    dropped, as pip reads a requirements file."""
    start, parts = 0, list[str]()
    for n, raw in enumerate(read_text(path).splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not parts:
            start = n
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        text = " ".join(p.strip() for p in parts).strip()
        parts = []
        if text:
            yield start, text


@dataclass(frozen=True)
class _Hashed:
    """What hashed requirement files hold: requirement lines and the indexes they name."""

    lines: tuple[tuple[str, str, tuple[str, ...]], ...]  # (where, requirement, sha256s)
    unhashed: tuple[str, ...]  # where each requirement without --hash is
    options: tuple[tuple[str, str], ...]  # (where, line) of other options
    index: str | None
    extra_indexes: tuple[str, ...]


def _scan_hashed(files: Sequence[Path]) -> _Hashed:
    reqs: list[tuple[str, str, tuple[str, ...]]] = []
    unhashed: list[str] = []
    index: str | None = None
    extra: list[str] = []
    options: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def visit(path: Path) -> None:
        nonlocal index
        if path in seen:
            return
        seen.add(path)
        for n, text in _logical_lines(path):
            where = f"{path.name} line {n}"
            m = re.match(r"^(-r|--requirement|-c|--constraint|-i|--index-url|--extra-index-url)"
                         r"(?:\s+|=)(\S+)", text)  # fmt: skip
            if m and m.group(1) in ("-r", "--requirement"):
                visit((path.parent / m.group(2)).resolve())
            elif m and m.group(1) in ("-i", "--index-url"):
                index = m.group(2)
            elif m and m.group(1) == "--extra-index-url":
                extra.append(m.group(2))
            elif m or text.startswith(_HARMLESS):
                continue  # constraints only pin: every hashed requirement is pinned
            elif text.startswith("-"):
                options.append((where, text))  # refused below if hashes are on
            else:
                req = _OPTION.split(text, 1)[0]
                hashes = tuple(h.lower() for a, h in _HASH.findall(text) if a == "sha256")
                if "--hash" in text and not hashes:
                    hashes = ("",)  # only other algorithms: refused below
                if hashes:
                    reqs.append((where, req, hashes))
                else:
                    unhashed.append(where)

    for f in files:
        visit(f)
    return _Hashed(tuple(reqs), tuple(unhashed), tuple(options), index, tuple(extra))


def read_hashed_requirements(cfg: Config, target: Target) -> Locked | None:
    """Requirement files where a requirement has ``--hash``, read as pip's hash-checking
    mode reads them: every requirement pinned with ``==`` and hashed, markers evaluated
    for the target. None when no requirement has a hash (pip resolves them)."""
    scan = _scan_hashed(cfg.requirement_files)
    if not scan.lines:
        return None
    if scan.options:
        where, text = scan.options[0]
        raise ConfigError(
            f"{where}: option {text.split()[0]} is not supported in a file with --hash",
            fix="remove it (nox-warpdrive reads -r, -c, --index-url, --extra-index-url and "
            "harmless options there)",
        )
    if scan.unhashed:
        raise ConfigError(
            f"{scan.unhashed[0]}: a requirement has no --hash, and others do (pip's "
            "hash-checking mode needs one on every requirement)",
            fix="generate the file with hashes for all (`uv pip compile --generate-hashes`, "
            "`pip-compile --generate-hashes`)",
        )
    pins: dict[str, Pin] = {}
    for where, text, hashes in scan.lines:
        pin = _hashed_pin(where, text, hashes, target, scan.index)
        if pin is None:
            continue
        if pin.name in pins and pins[pin.name].version != pin.version:
            raise ConfigError(
                f"{where}: {pin.name} is required twice, at {pin.version} and "
                f"{pins[pin.name].version}",
                fix="keep one pin",
            )
        old = pins.get(pin.name)
        pins[pin.name] = (
            dataclasses.replace(pin, hashes=tuple(dict.fromkeys(old.hashes + pin.hashes)))
            if old
            else pin
        )
    names = ", ".join(p.name for p in cfg.requirement_files)
    return Locked(tuple(pins.values()), None, f"{names} (--hash)", scan.extra_indexes)


def _hashed_pin(
    where: str, text: str, hashes: tuple[str, ...], target: Target, index: str | None
) -> Pin | None:
    if "" in hashes:
        raise ConfigError(
            f"{where}: only sha256 hashes are checked, and this line has none",
            fix="generate the file with sha256 hashes",
        )
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise ConfigError(f"{where}: invalid requirement {text!r}: {exc}", fix="fix it") from exc
    if req.marker is not None and not target.matches(req.marker):
        return None
    specs = list(req.specifier)
    if (
        req.url
        or len(specs) != 1
        or specs[0].operator not in ("==", "===")
        or "*" in specs[0].version
    ):
        raise ConfigError(
            f"{where}: {text!r} is not pinned with == (pip's hash-checking mode needs "
            "every requirement pinned)",
            fix="pin it, e.g. `name==1.2.3 --hash=sha256:...`",
        )
    return Pin(normalize(req.name), specs[0].version, hashes=hashes, index=index, where=where)


# ---------------------------------------------------------------------------------------
# the app's requirement set


def read_lock(cfg: Config, target: Target) -> Locked:
    """The lock file's selection for the target, by its format's reader (locks/)."""
    from .locks import pipenv, poetry, pylock, uv

    readers = {
        "pylock": pylock.read_pylock,
        "uv": uv.read_uv_lock,
        "poetry": poetry.read_poetry_lock,
        "pipenv": pipenv.read_pipfile_lock,
    }
    assert cfg.lock_file is not None and cfg.lock_format is not None
    return readers[cfg.lock_format](cfg, cfg.lock_file, target)


def describe(cfg: Config, locked: Locked, target: Target) -> str:
    """One line for the build's output: what the app is installed from, and what that
    selects for the target."""
    parts = [f"{len(locked.pins)} pinned packages for {target.label}"]
    if cfg.groups:
        parts.append("groups: " + ", ".join(cfg.groups))
    if cfg.extras:
        parts.append("extras: " + ", ".join(cfg.extras))
    if locked.project is not None:
        how = "editable" if locked.project.editable else "a wheel"
        parts.append(f"the project {locked.project.name} ({how}, built from the source)")
    if locked.members:
        names = ", ".join(m.name for m in locked.members)
        parts.append(f"the workspace members {names} (wheels built from their directories)")
    reason = cfg.inputs_reason if cfg.lock_file is not None else locked.source
    return f"{reason}: " + "; ".join(parts)


def inputs_line(cfg: Config, reqs: RequirementSet) -> str:
    """The one line every build says (and ``--plan`` shows): what the installed set
    comes from, locked or not, the server added on top, and each lock file up to the
    repository root that was not used, with why. An unlocked build must never look like
    a locked one."""
    line = f"warpdrive: installing from {reqs.source or cfg.inputs_reason}"
    if not reqs.locked_from:
        line += ", not locked" if cfg.dependencies else ", resolved at build (not locked)"
    if reqs.extra and reqs.locked_from:
        line += (
            f"; plus {', '.join(reqs.extra)} for the image's server, which the lock lacks: "
            "resolved against its pins, not locked (add it to the lock to pin it)"
        )
    elif reqs.extra:
        line += f"; plus {', '.join(reqs.extra)} for the image's server"
    if cfg.unused_locks:
        line += "; not used: " + "; ".join(cfg.unused_locks)
    return line


def read_inputs(cfg: Config, target: Target) -> RequirementSet:
    """The app's requirement set for the target, without the server (wheelhouse adds
    it): the lock's pins, or hashed requirement files' pins, or requirement files and
    [project].dependencies to resolve."""
    locked = None
    if cfg.lock_file is not None:
        locked = read_lock(cfg, target)
    elif cfg.requirement_files:
        locked = read_hashed_requirements(cfg, target)
    if locked is not None:
        return RequirementSet(
            files=(),
            top=(),
            extra=(),
            locked_from=cfg.lock_file.name if cfg.lock_file else locked.source,
            locked=tuple(sorted(locked.pins, key=lambda p: p.name)),
            project=locked.project,
            members=locked.members,
            indexes=locked.indexes,
            source=describe(cfg, locked, target),
        )
    base = read_requirements(cfg)
    return dataclasses.replace(base, source=cfg.inputs_reason)
