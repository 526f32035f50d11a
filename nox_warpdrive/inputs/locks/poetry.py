"""poetry.lock (format 2.1, Poetry >= 2.0): every package lists its groups and its marker
per group, so selecting is a filter; its content-hash is checked as Poetry computes it."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ...config import Config, load_pyproject, normalize
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
    parse_marker,
    project_build,
    sha256_hex,
)


def read_poetry_lock(cfg: Config, path: Path, target: Target) -> Locked:
    """poetry.lock 2.1 (Poetry >= 2.0) lists for every package the groups it belongs to
    and its marker per group (extras appear as ``extra == "..."``), so selecting for the
    target needs no graph walk. It has file names and hashes, no URLs: the builder finds
    the files on the index."""
    text, data = load_toml(path)
    lines = Lines.of(path, text)
    meta = data.get("metadata", {})
    _check_poetry_version(meta, lines)
    _check_poetry_fresh(cfg, meta, text, lines)
    if not _poetry_python_ok(meta.get("python-versions"), target.python_full_version):
        raise ConfigError(
            f"{lines.at(lines.find(r'^python-versions'))}: the lock is for Python "
            f"{meta.get('python-versions')}, and the target image runs Python "
            f"{target.python_full_version}: the lock has no entry for it",
            fix="use a base image with a Python the lock supports",
        )
    packages = [p for p in data.get("package", []) if isinstance(p, dict)]
    _check_poetry_names(cfg, data, packages, lines)
    groups = {"main", *(normalize(g) for g in cfg.groups)}
    starts = lines.blocks("package")
    pins = []
    for i, pkg in enumerate(packages):
        where = lines.at(starts[i] + 1 if i < len(starts) else 1)
        if _poetry_selected(pkg, groups, cfg.extras, target, where):
            pins.append(_poetry_pin(pkg, target, where))
    return Locked(tuple(pins), _poetry_project(cfg, lines), path.name)


def _check_poetry_version(meta: Mapping[str, Any], lines: Lines) -> None:
    try:
        version = Version(str(meta.get("lock-version", "0")))
    except InvalidVersion:
        version = Version("0")
    if not Version("2.1") <= version < Version("3"):
        raise ConfigError(
            f"{lines.at(lines.find(r'^lock-version'))}: poetry.lock format "
            f"{meta.get('lock-version')} is not supported (nox-warpdrive reads 2.1, which "
            "lists each package's groups and markers)",
            fix="run `poetry lock` with Poetry >= 2.0",
        )


def poetry_content_hash(pyproject: Mapping[str, Any], with_groups: bool = True) -> str:
    """Poetry's content-hash of pyproject.toml (poetry/packages/locker.py)."""
    project = pyproject.get("project", {})
    groups = pyproject.get("dependency-groups", {}) if with_groups else {}
    poetry = pyproject.get("tool", {}).get("poetry", {})
    legacy = ("dependencies", "source", "extras", "dev-dependencies")
    relevant_project = {
        k: project[k]
        for k in ("requires-python", "dependencies", "optional-dependencies")
        if project.get(k) is not None
    }
    relevant_poetry = {}
    for key in (*legacy, "group"):
        value = poetry.get(key)
        if value is None and (key not in legacy or relevant_project or groups):
            continue
        relevant_poetry[key] = value
    content: dict[str, Any] = {}
    if relevant_project:
        content["project"] = relevant_project
    if groups:
        content["dependency-groups"] = groups
    if content:
        content["tool"] = {"poetry": relevant_poetry}
    else:
        content = relevant_poetry
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _check_poetry_fresh(cfg: Config, meta: Mapping[str, Any], text: str, lines: Lines) -> None:
    pyproject = load_pyproject(cfg.project_dir)
    want = meta.get("content-hash")
    ok = want == poetry_content_hash(pyproject)
    m = re.search(r"Poetry ([0-9][^ ]*)", text.split("\n", 1)[0])
    if not ok and m:
        try:
            older = Version(m.group(1)) < Version("2.3.0")
        except InvalidVersion:
            older = False
        # Poetry before 2.3 left [dependency-groups] out of the hash
        ok = older and want == poetry_content_hash(pyproject, with_groups=False)
    if not ok:
        raise ConfigError(
            f"{lines.at(lines.find(r'^content-hash'))}: poetry.lock is out of date with "
            "pyproject.toml (its content-hash does not match, as `poetry check --lock` "
            "would report)",
            fix="run `poetry lock` and commit poetry.lock",
        )


def _check_poetry_names(
    cfg: Config, data: Mapping[str, Any], packages: list[dict[str, Any]], lines: Lines
) -> None:
    pyproject = load_pyproject(cfg.project_dir)
    known = {normalize(g) for p in packages for g in p.get("groups", [])}
    known |= {normalize(g) for g in pyproject.get("dependency-groups", {})}
    known |= {normalize(g) for g in pyproject.get("tool", {}).get("poetry", {}).get("group", {})}
    for g in cfg.groups:
        if normalize(g) not in known:
            raise ConfigError(
                f"`groups` names {g!r}, which {lines.name} does not have "
                f"(it has: {', '.join(sorted(known)) or 'none'})",
                fix="name groups the lock has, or add the group and run `poetry lock`",
            )
    extras = {normalize(e) for e in data.get("extras", {})}
    for e in cfg.extras:
        if normalize(e) not in extras:
            raise ConfigError(
                f"`extras` names {e!r}, which {lines.name} does not have "
                f"(it has: {', '.join(sorted(extras)) or 'none'})",
                fix="name extras the lock has, or add the extra and run `poetry lock`",
            )


def _poetry_selected(
    pkg: Mapping[str, Any], groups: set[str], extras: Sequence[str], target: Target, where: str
) -> bool:
    markers = pkg.get("markers")
    for group in pkg.get("groups", []):
        if normalize(group) not in groups:
            continue
        marker = markers.get(group) if isinstance(markers, dict) else markers
        if target.matches(parse_marker(marker, where), [normalize(e) for e in extras]):
            return True
    return False


def _poetry_pin(pkg: Mapping[str, Any], target: Target, where: str) -> Pin:
    name, version = str(pkg.get("name")), str(pkg.get("version"))
    source = pkg.get("source") or {}
    if source and source.get("type") not in ("legacy", "url"):
        raise ConfigError(
            f"{where}: {name} comes from a {source.get('type')} source "
            f"({source.get('url')}), which nox-warpdrive cannot install into an image yet",
            fix="publish the package to an index and lock it from there",
        )
    files = []
    for f in pkg.get("files", []):
        sha = sha256_hex(f.get("hash"))
        if sha is None:
            raise ConfigError(
                f"{where}: {f.get('file')} of {name} has no sha256 hash", fix="run `poetry lock`"
            )
        url = source.get("url") if source.get("type") == "url" else None
        files.append(LockedFile(str(f.get("file")), sha, url))
    index = source.get("url") if source.get("type") == "legacy" else None
    return make_pin(name, version, files, target, where=where, index=index)


def _poetry_project(cfg: Config, lines: Lines) -> ProjectBuild | None:
    """Poetry installs the project itself unless package-mode is off; poetry.lock never
    lists it."""
    pyproject = load_pyproject(cfg.project_dir)
    poetry = pyproject.get("tool", {}).get("poetry", {})
    name = pyproject.get("project", {}).get("name") or poetry.get("name") or cfg.name
    if poetry.get("package-mode") is False:
        if cfg.install_project:
            raise ConfigError(
                "`install-project = true`, but [tool.poetry] sets package-mode = false",
                fix="remove one of them",
            )
        return None
    where = f"pyproject.toml (the project {name}, which poetry installs with the lock)"
    return project_build(cfg, name, True, where)


def _poetry_python_ok(constraint: object, version: str) -> bool:
    """Whether a Poetry constraint (``^3.11``, ``~3.11``, ``>=3.8,<4``, ``3.11.*``,
    alternatives with ``||``) allows ``version``; True when it cannot be read."""
    if not isinstance(constraint, str) or not version or constraint.strip() in ("", "*"):
        return True
    try:
        return any(
            SpecifierSet(_poetry_specifier(part)).contains(version, prereleases=True)
            for part in constraint.split("||")
        )
    except (InvalidSpecifier, InvalidVersion, ValueError):
        return True


def _poetry_specifier(part: str) -> str:
    """One Poetry constraint (no ``||``) as a PEP 440 specifier set."""
    out = []
    joined = re.sub(r"(>=|<=|==|!=|~=|>|<|\^|~)\s+", r"\1", part.strip())
    for item in re.split(r"[,\s]+", joined):
        if not item or item == "*":
            continue
        if item[0] in "^~" and not item.startswith("~="):
            v = Version(item[1:])
            parts = [*v.release, 0, 0][:3]
            if item[0] == "^":
                i = next((n for n, x in enumerate(parts) if x), len(parts) - 1)
                upper = [*parts[:i], parts[i] + 1]
            else:
                upper = [parts[0], parts[1] + 1] if len(v.release) > 1 else [parts[0] + 1]
            out += [f">={v}", "<" + ".".join(map(str, upper))]
        elif item[0].isdigit():
            out.append("==" + item)
        else:
            out.append(item)
    return ",".join(out)
