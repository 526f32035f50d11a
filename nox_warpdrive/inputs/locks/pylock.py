"""pylock.toml (PEP 751): ``packaging.pylock`` validates the file and selects the packages
for the target image; this module turns its selection into pins."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

from ...config import Config, normalize
from ...errors import ConfigError
from ..model import (
    Lines,
    Locked,
    LockedFile,
    Pin,
    ProjectBuild,
    Target,
    load_toml,
    make_pin,
    project_build,
    regenerate_fix,
    url_filename,
)


def read_pylock(cfg: Config, path: Path, target: Target) -> Locked:
    """``packaging.pylock`` validates the file and selects the packages for the target
    (markers with its marker values, extras and groups, requires-python, environments).
    PEP 751 ties a pylock file to no pyproject.toml, so it cannot be found out of date."""
    from packaging.pylock import Pylock, PylockSelectError, PylockValidationError

    text, data = load_toml(path)
    lines = Lines.of(path, text)
    try:
        lock = Pylock.from_dict(data)
    except PylockValidationError as exc:
        raise ConfigError(
            f"{_pylock_where(lines, str(exc))}: not a valid pylock file: {exc}",
            fix=regenerate_fix(path),
        ) from exc
    _check_pylock_names(lock.extras, cfg.extras, "extras", lines)
    _check_pylock_names(
        [*(lock.dependency_groups or ()), *(lock.default_groups or ())], cfg.groups, "groups", lines
    )
    groups = {*(lock.default_groups or ()), *cfg.groups}
    env = target.environment()
    env.pop("extra")
    try:
        selected = list(
            lock.select(
                environment=env,  # type: ignore[arg-type]
                tags=[Tag(*t.split("-", 2)) for t in target.tags],
                extras=set(cfg.extras),
                dependency_groups=groups,
            )
        )
    except PylockSelectError as exc:
        raise ConfigError(
            f"{_pylock_where(lines, str(exc))}: the lock has no entry for the target image "
            f"({target.label}): {exc}",
            fix="lock for this platform and Python, or use a base image the lock supports",
        ) from exc
    starts = lines.blocks("packages")
    index = {id(p): i for i, p in enumerate(lock.packages)}
    pins: list[Pin] = []
    project = None
    for package, _ in selected:
        i = index[id(package)]
        where = lines.at(starts[i] + 1 if i < len(starts) else 1)
        if package.directory is not None:
            project = _pylock_directory(cfg, package.name, package.directory, where)
        else:
            pins.append(_pylock_pin(package, target, where))
    return Locked(tuple(pins), project, path.name)


def _pylock_where(lines: Lines, message: str) -> str:
    m = re.search(r"packages\[(\d+)\]", message)
    starts = lines.blocks("packages")
    if m and int(m.group(1)) < len(starts):
        return lines.at(starts[int(m.group(1))] + 1)
    return lines.name


def _check_pylock_names(
    declared: Sequence[str] | None, wanted: Sequence[str], key: str, lines: Lines
) -> None:
    have = {normalize(x) for x in declared or ()}
    for name in wanted:
        if normalize(name) not in have:
            raise ConfigError(
                f"`{key}` names {name!r}, which {lines.name} does not declare "
                f"(it has: {', '.join(sorted(have)) or 'none'})",
                fix=f"name {key} the lock declares, or export the lock with them",
            )


def _pylock_directory(cfg: Config, name: str, directory: Any, where: str) -> ProjectBuild | None:
    base = (cfg.lock_file or cfg.project_dir / "pylock.toml").parent
    if (base / directory.path).resolve() != cfg.project_dir:
        raise ConfigError(
            f"{where}: {name} is a local directory ({directory.path}), which nox-warpdrive "
            "cannot install into an image",
            fix="publish the package to an index and lock it from there",
        )
    return project_build(cfg, name, bool(directory.editable), where)


def _pylock_pin(package: Any, target: Target, where: str) -> Pin:
    if package.vcs is not None or (package.archive is not None and not package.archive.url):
        raise ConfigError(
            f"{where}: {package.name} comes from a VCS or a local archive, which "
            "nox-warpdrive cannot install into an image yet",
            fix="publish the package to an index (or a URL) and lock that",
        )
    dists = [*(package.wheels or ()), *([package.sdist] if package.sdist else [])]
    if package.archive is not None:
        dists = [package.archive]
    files = []
    for dist in dists:
        sha = dist.hashes.get("sha256")
        if not sha:
            raise ConfigError(
                f"{where}: a file of {package.name} has no sha256 hash",
                fix="lock with sha256 hashes (every PEP 751 locker writes them)",
            )
        if dist.url is None and dist.path is not None:
            raise ConfigError(
                f"{where}: {package.name} is a local file ({dist.path})",
                fix="publish it to an index and lock it from there",
            )
        filename = dist.filename if hasattr(dist, "filename") else url_filename(dist.url)
        files.append(LockedFile(filename, sha.lower(), dist.url))
    version = str(package.version) if package.version else _version_of(files)
    return make_pin(package.name, version, files, target, where=where, index=package.index)


def _version_of(files: Sequence[LockedFile]) -> str:
    for f in files:
        try:
            if f.filename.endswith(".whl"):
                return str(parse_wheel_filename(f.filename)[1])
            return str(parse_sdist_filename(f.filename)[1])
        except (InvalidWheelFilename, InvalidSdistFilename):
            continue
    return ""
