"""Requirement files -> a RequirementSet: every file and what it includes, read on the
host and shipped into the builder as data."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .model import Pin, ProjectBuild
from ..config import Config, normalize

# ---------------------------------------------------------------------------------------
# requirements


@dataclass(frozen=True)
class RequirementSet:
    """What the wheelhouse builds for the app. Either requirement files to ship into the
    builder (``files`` maps a POSIX name relative to the shipped directory to its bytes;
    ``top`` are the names passed to ``pip -r``), resolved there; or, from a lock file
    (``locked_from``), the pins the lock selects for the target image, installed exactly
    as locked. ``extra`` (the server the image needs) is resolved in both cases (against
    the pins, for a lock that lacks it)."""

    files: tuple[tuple[str, bytes], ...]
    top: tuple[str, ...]
    extra: tuple[str, ...]
    #: files only reached through `-c`: they pin, they do not require
    constraint_only: tuple[str, ...] = ()
    #: the lock file (or hashed requirement files) the pins come from; "" when resolved
    locked_from: str = ""
    locked: tuple[Pin, ...] = ()
    #: the project itself, built from the app source (the lock says it is a package)
    project: ProjectBuild | None = None
    #: more indexes to look files up in (``--extra-index-url`` of hashed requirements)
    indexes: tuple[str, ...] = ()
    #: other uv workspace members the project depends on, built as wheels
    members: tuple[ProjectBuild, ...] = ()
    #: what the app is installed from, for the build's output
    source: str = ""

    @property
    def digest(self) -> str:
        """The requirement set's key in the manifest (and the deps layer's). For a lock it
        covers only what gets installed: the selected pins and the files they allow for
        this platform (not URLs, not line numbers, not other platforms or dev groups)."""
        h = hashlib.sha256()
        if self.locked_from:
            what = {
                "pins": sorted((p.identity() for p in self.locked), key=lambda d: d["name"]),
                "project": self.project.identity() if self.project else None,
                "extra": sorted(self.extra),
            }
            if self.members:  # absent otherwise: the keys of existing sets stay
                what["members"] = [m.identity() for m in self.members]
            h.update(b"locked-v1\0" + json.dumps(what, sort_keys=True).encode())
            return h.hexdigest()
        for name, data in self.files:
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        h.update(b"\0top\0" + "\0".join(self.top).encode())
        h.update(b"\0extra\0" + "\0".join(sorted(self.extra)).encode())
        return h.hexdigest()

    @property
    def empty(self) -> bool:
        """Whether nothing is required at all (files hold only comments or options)."""
        return not self.extra and not self.names()

    def names(self) -> set[str]:
        """Normalised project names this set asks for (best effort, for server checks)."""
        out: set[str] = set()
        for e in self.extra:
            n = _req_name(e)
            if n:
                out.add(normalize(n))
        out.update(p.name for p in self.locked)
        if self.project is not None:
            out.add(self.project.name)
        out.update(m.name for m in self.members)
        for name, data in self.files:
            if name in self.constraint_only:
                continue
            for line in data.decode("utf-8", "replace").splitlines():
                n = _req_name(line)
                if n:
                    out.add(normalize(n))
        return out


def _req_name(line: str) -> str | None:
    line = line.split(" #", 1)[0].strip()
    if not line or line.startswith(("#", "-")):
        return None
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return m.group(1) if m else None


_INCLUDE_RE = re.compile(r"^\s*(-r|--requirement|-c|--constraint)(?:\s+|=)(\S+)")


def read_requirements(cfg: Config, extra: tuple[str, ...] = ()) -> RequirementSet:
    """Collect the requirement files and everything they include with ``-r``/``-c``.

    Everything is read on the host and shipped into the container as data: no host path is
    ever mounted, so a remote engine works the same.
    """
    walk = _IncludeWalk(cfg.project_dir)
    top = [walk.visit(f) for f in cfg.requirement_files]
    if cfg.dependencies:
        name = "_project-dependencies.txt"
        walk.shipped[name] = ("\n".join(cfg.dependencies) + "\n").encode()
        top.append(name)
        walk.required.add(name)
    # no files and no dependencies: an app that needs no packages (warpdrive and S2I build
    # those too); the server, when one is needed, comes in ``extra``
    return RequirementSet(
        files=tuple(sorted(walk.shipped.items())),
        top=tuple(top),
        extra=extra,
        constraint_only=tuple(sorted(set(walk.shipped) - walk.required)),
    )


@dataclass
class _IncludeWalk:
    """The requirement files read so far and the ones they include, as they are shipped:
    name (relative to the project; a file outside it under ``_external/``) -> bytes, with
    each include rewritten for that layout."""

    root: Path
    shipped: dict[str, bytes] = field(default_factory=dict)
    #: the names reached through -r (or given at the top), not only through -c
    required: set[str] = field(default_factory=set)

    def name(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
            return f"_external/{digest}-{path.name}"

    def visit(self, path: Path, requires: bool = True) -> str:
        """Ship ``path`` (once) and what it includes; its shipped name."""
        name = self.name(path)
        if requires:
            self.required.add(name)
        if name in self.shipped:
            return name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read requirements file {path}: {exc.strerror}",
                fix="create it or fix the `-r`/`-c` line that names it",
            ) from exc
        self.shipped[name] = b""  # guard against include cycles
        text = data.decode("utf-8", "replace")
        lines = [
            self._line(path, name, lineno, line, requires)
            for lineno, line in enumerate(text.splitlines(), 1)
        ]
        self.shipped[name] = ("\n".join(lines) + "\n").encode()
        return name

    def _line(self, path: Path, name: str, lineno: int, line: str, requires: bool) -> str:
        """One line as shipped: an include visited and rewritten; an editable or local
        path requirement is an error."""
        stripped = line.strip()
        if stripped.startswith(("-e ", "--editable")):
            raise ConfigError(
                f"{path.name}:{lineno}: editable requirement {stripped!r} cannot go into a "
                "wheelhouse",
                fix="list the package by name (or a path to its sdist) instead of `-e`",
            )
        m = _INCLUDE_RE.match(line)
        if m:
            target = (path.parent / m.group(2)).resolve()
            inc = self.visit(target, requires and m.group(1) in ("-r", "--requirement"))
            return f"{m.group(1)} {_relative_include(name, inc)}"
        if stripped.startswith((".", "/")) or stripped.startswith("file:"):
            raise ConfigError(
                f"{path.name}:{lineno}: local path requirement {stripped!r} is not supported",
                fix="publish the package to your index, or list it by name",
            )
        return line


def _relative_include(name: str, included: str) -> str:
    """The include of shipped file ``included`` written in shipped file ``name``."""
    here = Path(name).parent
    try:
        return Path(included).relative_to(here).as_posix()
    except ValueError:
        return ("../" * len(here.parts)) + Path(included).as_posix()
