"""Pipfile.lock: JSON categories of packages pinned with ``==``, their hashes and
markers; the Pipfile's hash is checked as pipenv computes it."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...config import Config, normalize
from ...errors import ConfigError
from ..model import (
    Lines,
    Locked,
    Pin,
    ProjectBuild,
    Target,
    load_toml,
    parse_marker,
    project_build,
    read_text,
    regenerate_fix,
    sha256_hex,
)


def pipfile_hash(pipfile: Mapping[str, Any]) -> str:
    """pipenv's hash of a Pipfile (plette's ``Pipfile.get_hash``)."""
    default_source = [{"name": "pypi", "url": "https://pypi.org/simple", "verify_ssl": True}]
    data: dict[str, Any] = {
        "_meta": {
            "sources": pipfile.get("source", default_source),
            "requires": pipfile.get("requires", {}),
        },
        "default": pipfile.get("packages", {}),
        "develop": pipfile.get("dev-packages", {}),
    }
    skip = {"source", "packages", "dev-packages", "requires", "scripts", "pipfile", "pipenv"}
    for category, values in pipfile.items():
        if category not in skip and category not in ("default", "develop"):
            data[category] = values
    content = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()


def read_pipfile_lock(cfg: Config, path: Path, target: Target) -> Locked:
    """Pipfile.lock: the ``default`` category plus the chosen groups (pipenv's
    categories; ``dev`` is ``develop``), every package pinned with ``==``, its hashes and
    markers. It names no files: the builder finds them on the index by hash."""
    text = read_text(path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}", fix=regenerate_fix(path)) from exc
    lines = Lines.of(path, text)
    meta = data.get("_meta", {}) if isinstance(data, dict) else {}
    _check_pipfile_fresh(cfg, meta, lines)
    _check_pipfile_python(meta, target, lines)
    if cfg.extras:
        raise ConfigError(
            "`extras` does not apply to Pipfile.lock (pipenv has categories, not extras)",
            fix="remove `extras`; choose Pipfile categories with `groups`",
        )
    indexes = {s.get("name"): s.get("url") for s in meta.get("sources", []) if isinstance(s, dict)}
    first = next(iter(indexes.values()), None)
    pins: dict[str, Pin] = {}
    project = None
    for category in _pipfile_categories(cfg, data, lines):
        start = lines.find(rf'^\s*"{re.escape(category)}"\s*:')
        for name, entry in data[category].items():
            where = lines.at(lines.find(rf'^\s*"{re.escape(name)}"\s*:', start))
            if not target.matches(parse_marker(entry.get("markers"), where)):
                continue
            if entry.get("path") == "." or entry.get("editable"):
                project = _pipfile_project(cfg, name, entry, where)
                continue
            pin = _pipfile_pin(name, entry, indexes.get(entry.get("index"), first), where)
            if pins.get(pin.name, pin).version != pin.version:
                raise ConfigError(
                    f"{where}: {name} is locked at {pin.version} here and at "
                    f"{pins[pin.name].version} in another category",
                    fix="run `pipenv lock`",
                )
            pins[pin.name] = pin
    return Locked(tuple(pins.values()), project, path.name)


def _check_pipfile_fresh(cfg: Config, meta: Mapping[str, Any], lines: Lines) -> None:
    pipfile = cfg.project_dir / "Pipfile"
    if not pipfile.is_file():
        return  # a lock shipped alone (pipenv's --deploy needs the Pipfile to check)
    _, data = load_toml(pipfile)
    if meta.get("hash", {}).get("sha256") != pipfile_hash(data):
        line = lines.find(r'"sha256"')
        raise ConfigError(
            f"{lines.at(line)}: Pipfile.lock is out of date with the "
            "Pipfile (its hash does not match, as `pipenv install --deploy` would report)",
            fix="run `pipenv lock` and commit Pipfile.lock",
        )


def _check_pipfile_python(meta: Mapping[str, Any], target: Target, lines: Lines) -> None:
    requires = meta.get("requires", {})
    full = target.python_full_version
    for key, have in (
        ("python_full_version", full),
        ("python_version", ".".join(full.split(".")[:2])),
    ):
        want = requires.get(key)
        if want and str(want) != have:
            raise ConfigError(
                f"{lines.at(lines.find(key))}: the lock is for Python {want}, and the target "
                f"image runs Python {full}: the lock has no entry for it",
                fix="use a base image with that Python, or change [requires] and run `pipenv lock`",
            )


def _pipfile_categories(cfg: Config, data: Mapping[str, Any], lines: Lines) -> list[str]:
    have = [k for k, v in data.items() if k != "_meta" and isinstance(v, dict)]
    out = ["default"] if "default" in have else []
    for g in cfg.groups:
        name = "develop" if g in ("dev", "develop", "dev-packages") else g
        if name not in have:
            raise ConfigError(
                f"`groups` names {g!r}, which {lines.name} does not have "
                f"(its categories: {', '.join(have) or 'none'})",
                fix="name a Pipfile category the lock has (dev is `develop`)",
            )
        out.append(name)
    return list(dict.fromkeys(out))


def _pipfile_pin(name: str, entry: Mapping[str, Any], index: str | None, where: str) -> Pin:
    if any(k in entry for k in ("git", "hg", "svn", "bzr", "file", "path")):
        raise ConfigError(
            f"{where}: {name} comes from a VCS, a URL or a local path, which nox-warpdrive "
            "cannot install into an image yet",
            fix="publish the package to an index and lock it from there",
        )
    version = str(entry.get("version", ""))
    hashes = tuple(h for h in (sha256_hex(x) for x in entry.get("hashes", [])) if h)
    if not version.startswith("==") or not hashes:
        raise ConfigError(
            f"{where}: {name} is not pinned with hashes (version {version!r}, "
            f"{len(hashes)} sha256 hashes)",
            fix="run `pipenv lock` (a package it could not lock needs a marker that "
            "excludes this platform, or a version with files for it)",
        )
    return Pin(normalize(name), version[2:], hashes=hashes, index=index, where=where)


def _pipfile_project(
    cfg: Config, name: str, entry: Mapping[str, Any], where: str
) -> ProjectBuild | None:
    if (cfg.project_dir / str(entry.get("path", ""))).resolve() != cfg.project_dir:
        raise ConfigError(
            f"{where}: {name} is a local directory ({entry.get('path')}), which "
            "nox-warpdrive cannot install into an image",
            fix="publish the package to an index and lock it from there",
        )
    return project_build(cfg, name, bool(entry.get("editable")), where)
