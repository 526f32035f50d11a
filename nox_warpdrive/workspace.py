"""Monorepos: the uv workspace an app's directory belongs to, and the lock files above it.

uv keeps one ``uv.lock`` at a workspace's root for all of its members: an app built from
its member directory (where its pyproject, its code and its Dockerfile are) must be
installed from that lock, never silently from its pyproject's ranges. The rules are
uv's: the nearest parent ``pyproject.toml`` with ``[tool.uv.workspace]`` is the root
when its ``members`` globs match the directory (each match a directory with a
``pyproject.toml``) and its ``exclude`` globs do not.

Other lockers have no workspaces: a ``poetry.lock``, ``Pipfile.lock`` or ``pdm.lock``
above the app locks another project, and is said to be unused, with why (as is every
lock found up to the repository root that the build does not install from).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: lock files looked for above an app (to say why they are not used), in this order
LOCKS_ABOVE = ("uv.lock", "pylock.toml", "poetry.lock", "Pipfile.lock", "pdm.lock")


@dataclass(frozen=True)
class Workspace:
    """A uv workspace: its root and its members' directories (the root too when it is a
    project itself), with the globs that chose them (for messages)."""

    root: Path
    members: tuple[Path, ...]
    globs: tuple[str, ...]
    exclude: tuple[str, ...]

    @property
    def lock(self) -> Path:
        return self.root / "uv.lock"

    def relpath(self, member: Path) -> str:
        """The member's path as uv.lock writes it (``source = { editable = "backend" }``)."""
        return Path(os.path.relpath(member, self.root)).as_posix()

    def member_names(self) -> dict[str, Path]:
        """[project].name (normalized) -> directory, for every member that has one."""
        out: dict[str, Path] = {}
        for member in self.members:
            name = _read(member / "pyproject.toml").get("project", {}).get("name")
            if isinstance(name, str):
                out[canonicalize_name(name)] = member
        return out


def _read(path: Path) -> dict[str, Any]:
    """A pyproject.toml, or {} when it is missing or unreadable (discovery only looks:
    the app's own pyproject is checked, with a clear error, where it is loaded)."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def repository_root(start: Path) -> Path:
    """The directory holding ``.git`` at or above ``start``, else the filesystem root:
    how far up lock files are looked for."""
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return Path(start.anchor)


def _above(app_dir: Path) -> list[Path]:
    """The directories above ``app_dir`` up to its repository root, nearest first."""
    stop = repository_root(app_dir)
    out: list[Path] = []
    for directory in app_dir.parents if app_dir != stop else ():
        out.append(directory)
        if directory == stop:
            break
    return out


def _uv_workspace_table(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    tool = data.get("tool")
    uv = tool.get("uv") if isinstance(tool, dict) else None
    table = uv.get("workspace") if isinstance(uv, dict) else None
    return table if isinstance(table, dict) else None


def workspace_at(root: Path) -> Workspace | None:
    """The uv workspace rooted at ``root`` (its pyproject has ``[tool.uv.workspace]``)."""
    data = _read(root / "pyproject.toml")
    table = _uv_workspace_table(data)
    if table is None:
        return None
    globs = tuple(g for g in table.get("members", []) if isinstance(g, str))
    exclude = tuple(g for g in table.get("exclude", []) if isinstance(g, str))
    excluded = {p.resolve() for g in exclude for p in root.glob(g)}
    found: list[Path] = [root.resolve()] if isinstance(data.get("project"), dict) else []
    for pattern in globs:
        for path in sorted(root.glob(pattern)):
            real = path.resolve()
            if (
                real.is_dir()
                and (real / "pyproject.toml").is_file()
                and real not in excluded
                and real not in found
            ):
                found.append(real)
    return Workspace(root.resolve(), tuple(found), globs, exclude)


@dataclass(frozen=True)
class Membership:
    """The nearest uv workspace above an app's directory, and whether the app is one of
    its members (``why_not`` says why it is not)."""

    workspace: Workspace
    member: bool
    why_not: str = ""


def find_workspace(app_dir: Path) -> Membership | None:
    """The nearest parent ``[tool.uv.workspace]`` above ``app_dir`` (up to the
    repository root), as uv finds it; None when there is none."""
    app_dir = app_dir.resolve()
    for directory in _above(app_dir):
        ws = workspace_at(directory)
        if ws is not None:
            return _membership(ws, app_dir)
    return None


def _membership(ws: Workspace, app_dir: Path) -> Membership:
    if app_dir in ws.members:
        return Membership(ws, True)
    excluded = any(app_dir == p.resolve() for g in ws.exclude for p in ws.root.glob(g))
    where = ws.relpath(app_dir)
    if excluded:
        why = f"the workspace's `exclude` ({', '.join(ws.exclude)}) leaves out {where}"
    else:
        why = f"the workspace's `members` ({', '.join(ws.globs) or 'none'}) do not match {where}"
    return Membership(ws, False, why)


def member_dir(root: Path, package: str) -> Path:
    """The directory of the workspace member named ``package`` (`package` set at a
    workspace's root): an error lists the members when there is none by that name."""
    ws = workspace_at(root)
    if ws is None:
        raise ConfigError(
            f"`package` = {package!r} in [tool.warpdrive] names a uv workspace member, and "
            f"{root / 'pyproject.toml'} has no [tool.uv.workspace]",
            fix="remove `package` and build from the app's own directory, or add the "
            "workspace (`[tool.uv.workspace] members = [...]`)",
        )
    names = ws.member_names()
    found = names.get(canonicalize_name(package))
    if found is None:
        raise ConfigError(
            f"`package` = {package!r}: the uv workspace at {root} has no member by that "
            f"name (members: {', '.join(sorted(names)) or 'none'})",
            fix="name one of the members ([project].name in its pyproject.toml)",
        )
    return found


def unused_locks(app_dir: Path, used: Path | None) -> tuple[str, ...]:
    """Each lock file up to the repository root that the build does not install from,
    with why: the build's output says it, so an unlocked build never looks locked."""
    app_dir = app_dir.resolve()
    out: list[str] = []
    for name in LOCKS_ABOVE:
        own = app_dir / name
        if own.is_file() and own != used:
            if name == "pdm.lock":
                why = _PDM
            elif used is not None:
                why = f"`lock` in [tool.warpdrive] names {_rel(used, app_dir)}"
            else:
                why = "`requirements` in [tool.warpdrive] is set"
            out.append(f"{name} ({why})")
    for directory in _above(app_dir):
        for name in LOCKS_ABOVE:
            path = directory / name
            if path.is_file() and path != used:
                out.append(f"{_rel(path, app_dir)} ({_why_unused(path, app_dir, used)})")
    return tuple(out)


_PDM = (
    "nox-warpdrive does not read pdm.lock: `pdm export -o requirements.txt` writes it with hashes"
)


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _why_unused(path: Path, app_dir: Path, used: Path | None) -> str:
    where = _rel(path.parent, app_dir)
    if path.name == "pdm.lock":
        return _PDM
    if path.name == "uv.lock":
        ws = workspace_at(path.parent)
        if ws is None:
            return f"it locks the project in {where}, which is no uv workspace"
        membership = _membership(ws, app_dir)
        if membership.member:
            return f"the app's own {used.name} is used" if used else "the app has inputs of its own"
        return membership.why_not
    if path.name == "pylock.toml":
        return (
            "a pylock.toml above the app is used only when `lock` names it "
            f'(`lock = "{where}/pylock.toml"`)'
        )
    tool = "Poetry" if path.name == "poetry.lock" else "pipenv"
    return f"{tool} has no workspaces: it locks the project in {where} only"
