"""uv.lock (version 1): walked from the project's own entry for the target image, and
checked against pyproject.toml as ``uv lock --check`` does. No library reads uv.lock."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from ...config import Config, load_pyproject, normalize
from ...errors import ConfigError
from ..model import (
    Lines,
    Locked,
    LockedFile,
    Pin,
    ProjectBuild,
    Target,
    check_environments,
    check_python,
    load_toml,
    make_pin,
    member_build,
    parse_marker,
    project_build,
    sha256_hex,
    url_filename,
)


def read_uv_lock(cfg: Config, path: Path, target: Target) -> Locked:
    """uv.lock walked from the project's entry: its dependencies, the chosen extras
    (``optional-dependencies``) and groups (``dev-dependencies``), each edge kept when
    its marker holds for the target. uv.lock is read here, not exported with ``uv
    export`` in the builder: the selection decides the set's key, which must be known
    before (and without) any container, and uv may not be there yet (or at all)."""
    text, data = load_toml(path)
    lines = Lines.of(path, text)
    if data.get("version") != 1:
        raise ConfigError(
            f"{lines.at(lines.find(r'^version'))}: uv.lock version {data.get('version')!r} "
            "is not supported (nox-warpdrive reads version 1)",
            fix="lock with a uv release that writes version 1 (uv 0.3 to 0.x)",
        )
    check_python(data.get("requires-python"), target, lines, r"^requires-python")
    check_environments(data.get("supported-environments"), target, lines)
    packages = [p for p in data.get("package", []) if isinstance(p, dict)]
    starts = lines.blocks("package")
    where = {
        id(p): lines.at(starts[i] + 1 if i < len(starts) else 1) for i, p in enumerate(packages)
    }
    root = _uv_root(cfg, path, data, packages, lines)
    python = _workspace_python(path.parent, data, packages)
    _check_uv_fresh(cfg, data, root, lines, where[id(root)], python)
    chosen = _uv_walk(cfg, packages, root, target, where)
    pins = tuple(_uv_pin(p, target, where[id(p)]) for p in chosen if _local(p) is None)
    members = tuple(
        _member(path.parent, p, root, where[id(p)])
        for p in chosen
        if _local(p) is not None and "virtual" not in p.get("source", {})
    )
    source = root.get("source", {})
    project = None
    if "editable" in source or "directory" in source:
        project = project_build(cfg, root["name"], "editable" in source, where[id(root)])
    elif cfg.install_project:
        raise ConfigError(
            f"{where[id(root)]}: `install-project = true`, but uv.lock says the project "
            f"{root['name']} is virtual (not a package)",
            fix="add a [build-system] to pyproject.toml and run `uv lock`, or remove "
            "`install-project`",
        )
    return Locked(pins, project, path.name, members=members)


def _local(pkg: Mapping[str, Any]) -> str | None:
    """A package's directory when it is a local project (a workspace member)."""
    src = pkg.get("source", {})
    local = src.get("editable") or src.get("virtual") or src.get("directory")
    return str(local) if local is not None else None


def _uv_root(
    cfg: Config, path: Path, data: Mapping[str, Any], packages: list[dict[str, Any]], lines: Lines
) -> dict[str, Any]:
    """The app's own entry: the package whose local source is the app's directory, as
    written relative to the lock's (``"."`` for the project itself, ``"backend"`` for
    the workspace member in ``backend/``)."""
    project = load_pyproject(cfg.project_dir).get("project")
    members = [str(m) for m in data.get("manifest", {}).get("members", [])]
    if not isinstance(project, dict) or not isinstance(project.get("name"), str):
        raise ConfigError(
            f"{cfg.project_dir / 'pyproject.toml'} has no [project].name, so nothing says "
            f"which of {lines.name}'s projects is the app"
            + (f" (the workspace's members: {', '.join(members)})" if members else ""),
            fix='at a workspace\'s root, name the member: `package = "NAME"` in '
            "[tool.warpdrive]; or build from the member's own directory",
        )
    name = project["name"]
    rel = Path(os.path.relpath(cfg.project_dir, path.parent)).as_posix()
    for p in packages:
        if _local(p) == rel and normalize(p.get("name", "")) == normalize(name):
            return p
    same_name = [_local(p) for p in packages if normalize(p.get("name", "")) == normalize(name)]
    found = f" (its entry's source is {same_name[0]!r}, not {rel!r})" if same_name else ""
    raise ConfigError(
        f"{lines.name}: no entry for the project {name} in {rel!r}{found}: uv.lock is out "
        "of date with pyproject.toml (the project was added or renamed since), or belongs "
        "to another project",
        fix=f"run `uv lock` in {path.parent} and commit uv.lock",
    )


def _member(
    lockdir: Path, pkg: Mapping[str, Any], root: Mapping[str, Any], where: str
) -> ProjectBuild:
    """Another workspace member (or local project) the app depends on, built as a wheel
    from its directory; a virtual one installs nothing (its dependencies are walked)."""
    local = str(_local(pkg))
    directory = (lockdir / local).resolve()
    if not (directory / "pyproject.toml").is_file() and not (directory / "setup.py").is_file():
        raise ConfigError(
            f"{where}: {root['name']} depends on {pkg['name']} in {local!r}, and "
            f"{directory} holds no project (no pyproject.toml, no setup.py)",
            fix="run `uv lock` to repair the lock file, or restore the member's directory",
        )
    return member_build(directory, str(pkg["name"]), where)


def _uv_walk(
    cfg: Config,
    packages: list[dict[str, Any]],
    root: dict[str, Any],
    target: Target,
    where: Mapping[int, str],
) -> list[dict[str, Any]]:
    """The packages the target installs, in lock order."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for p in packages:
        by_name.setdefault(normalize(p.get("name", "")), []).append(p)
    edges = list(root.get("dependencies", []))
    edges += _uv_named(root, "optional-dependencies", cfg.extras, "extras", where[id(root)])
    edges += _uv_named(root, "dev-dependencies", cfg.groups, "groups", where[id(root)])
    conflict = _uv_conflict_values(root["name"], cfg.extras, cfg.groups)
    seen: set[tuple[int, str]] = set()
    chosen: dict[int, dict[str, Any]] = {}
    queue = [(e, where[id(root)]) for e in edges]
    while queue:
        edge, at = queue.pop()
        if not target.matches(parse_marker(edge.get("marker"), at), conflict):
            continue
        pkg = _uv_resolve(edge, by_name, at)
        chosen[id(pkg)] = pkg
        for extra in ["", *edge.get("extra", [])]:
            if (id(pkg), extra) in seen:
                continue
            seen.add((id(pkg), extra))
            if extra:
                deps = pkg.get("optional-dependencies", {}).get(extra, [])
            else:
                deps = pkg.get("dependencies", [])
            queue += [(d, where[id(pkg)]) for d in deps]
    chosen.pop(id(root), None)
    return [p for p in packages if id(p) in chosen]


def _uv_conflict_values(project: str, extras: Sequence[str], groups: Sequence[str]) -> list[str]:
    """uv encodes conflicting extras and groups in markers as ``extra ==
    'extra-<len>-<project>-<name>'`` / ``'group-...'``: the values to evaluate with."""
    name = normalize(project)
    out = [f"extra-{len(name)}-{name}-{normalize(e)}" for e in extras]
    return out + [f"group-{len(name)}-{name}-{normalize(g)}" for g in groups]


def _uv_named(
    root: Mapping[str, Any], table: str, names: Sequence[str], key: str, where: str
) -> list[dict[str, Any]]:
    have = {normalize(k): v for k, v in root.get(table, {}).items()}
    out: list[dict[str, Any]] = []
    for name in names:
        if normalize(name) not in have:
            known = ", ".join(sorted(root.get(table, {}))) or "none"
            raise ConfigError(
                f"`{key}` names {name!r}, which uv.lock does not have for {root['name']} "
                f"({where}; it has: {known})",
                fix=f"name {key} the lock has, or add it to pyproject.toml and run `uv lock`",
            )
        out += have[normalize(name)]
    return out


def _uv_resolve(
    edge: Mapping[str, Any], by_name: Mapping[str, list[dict[str, Any]]], where: str
) -> dict[str, Any]:
    """The package an edge names; a forked lock names the version (and source) too."""
    found = by_name.get(normalize(edge.get("name", "")), [])
    if "version" in edge:
        found = [p for p in found if str(p.get("version")) == str(edge["version"])]
    if "source" in edge:
        found = [p for p in found if p.get("source") == edge["source"]] or found
    if len(found) != 1:
        what = "no entry" if not found else "several entries"
        raise ConfigError(
            f"{where}: uv.lock has {what} for the dependency {edge.get('name')!r}",
            fix="run `uv lock` to repair the lock file",
        )
    return found[0]


def _uv_pin(pkg: Mapping[str, Any], target: Target, where: str) -> Pin:
    source = pkg.get("source", {})
    name, version = str(pkg["name"]), str(pkg.get("version", ""))
    if "registry" not in source and "url" not in source:
        kind = next(iter(source), "unknown")
        raise ConfigError(
            f"{where}: {name} comes from a `{kind}` source ({source.get(kind)}), which "
            "nox-warpdrive cannot install into an image yet",
            fix="publish the package to an index (or a wheel URL) and lock that",
        )
    if "url" in source:
        _check_url_source(pkg, str(source["url"]), where)
    files: list[LockedFile] = []
    notes: list[str] = []
    wheels = [e for e in pkg.get("wheels", []) if isinstance(e, dict)]
    for entry in [*wheels, *([pkg["sdist"]] if "sdist" in pkg else [])]:
        url = entry.get("url") or source.get("url")
        sha = sha256_hex(entry.get("hash"))
        if not url or sha is None:
            raise ConfigError(
                f"{where}: a file of {name} {version} has no URL or no sha256 in uv.lock",
                fix="run `uv lock` to repair the lock file",
            )
        why = _refused_wheel(str(url)) if entry is not pkg.get("sdist") else None
        if why:
            notes.append(f"{where}: the wheel URL {url} of {name} {version} is refused ({why})")
            continue
        files.append(LockedFile(url_filename(url), sha, url))
    if notes and not files:
        raise ConfigError(
            f"{notes[0]}, and uv.lock has no other file of it",
            fix="lock against an index that serves the package over http(s) (`uv lock`)",
        )
    if notes:
        instead = "its sdist is built instead" if "sdist" in pkg else "its other files are used"
        notes = [f"warpdrive: {n}; {instead}" for n in notes]
    return make_pin(
        name, version, files, target, where=where, index=source.get("registry"), notes=tuple(notes)
    )


def _check_url_source(pkg: Mapping[str, Any], url: str, where: str) -> None:
    """A `url` source the builder can fetch: http(s), with the file uv locked for it."""
    name = pkg["name"]
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError(
            f"{where}: {name} comes from a `url` source pointing at {url}, which a build "
            "container cannot fetch (only http and https URLs are; a local file is not "
            "in the container)",
            fix="publish the package to an index or an https URL and lock that",
        )
    if not pkg.get("wheels") and "sdist" not in pkg:
        raise ConfigError(
            f"{where}: {name} comes from the `url` source {url}, but uv.lock lists no "
            "file for it (no `wheels` and no `sdist` with its sha256)",
            fix="run `uv lock` to repair the lock file",
        )
    filename = url_filename(url)
    if "sdist" in pkg and not pkg.get("wheels") and not _is_dist_name(filename):
        raise ConfigError(
            f"{where}: {name} comes from the `url` source {url}, which names no wheel or "
            "sdist file (.whl, .tar.gz, .zip)",
            fix="lock a URL of the package's wheel or sdist",
        )


def _is_dist_name(filename: str) -> bool:
    return filename.endswith((".whl", ".tar.gz", ".zip"))


def _refused_wheel(url: str) -> str | None:
    """Why a wheel URL of the lock is not fetched (None: it is): only an http(s) URL
    naming a plain wheel file is; a ``file:`` URL, or one whose name could leave the
    download directory, is not."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return "not an http or https URL"
    filename = url_filename(url)
    if (
        not filename.endswith(".whl")
        or filename.startswith(".")
        or "/" in filename
        or "\\" in filename
        or "\0" in filename
    ):
        return "it names no wheel file"
    return None


# -- uv lock --check, for the project's own entry ------------------------------------------

#: environments to compare two markers in: uv rewrites markers (it drops what
#: requires-python already implies), so equal meaning, not equal text, is what counts
_GRID_PLATFORMS = (
    ("linux", "Linux", "posix", "x86_64"),
    ("linux", "Linux", "posix", "aarch64"),
    ("darwin", "Darwin", "posix", "arm64"),
    ("win32", "Windows", "nt", "AMD64"),
)


def _same_marker(
    a: Marker | None, b: Marker | None, pythons: Sequence[str], extras: Sequence[str]
) -> bool:
    if str(a) == str(b):
        return True
    for (sysp, system, osn, machine), py, impl, extra in (
        (p, v, i, e)
        for p in _GRID_PLATFORMS
        for v in pythons
        for i in ("cpython", "pypy")
        for e in ("", *extras)
    ):
        env = {
            "sys_platform": sysp, "platform_system": system, "os_name": osn,
            "platform_machine": machine, "python_version": py, "python_full_version": py + ".0",
            "implementation_name": impl, "implementation_version": py + ".0",
            "platform_python_implementation": "CPython" if impl == "cpython" else "PyPy",
            "platform_release": "", "platform_version": "", "extra": extra,
        }  # fmt: skip
        if (a is None or a.evaluate(env)) != (b is None or b.evaluate(env)):
            return False
    return True


def _requirement_key(name: str, spec: str, extras: Iterable[str]) -> tuple[str, str, str]:
    try:
        specs = ",".join(sorted(str(s) for s in SpecifierSet(spec)))
    except InvalidSpecifier:
        specs = spec
    return normalize(name), specs, ",".join(sorted(normalize(e) for e in extras))


def _from_pyproject(
    reqs: Iterable[str], extra: str | None, where: str
) -> list[tuple[tuple[str, str, str], Marker | None, str]]:
    out = []
    for text in reqs:
        try:
            r = Requirement(text)
        except InvalidRequirement as exc:
            raise ConfigError(
                f"{where}: invalid requirement {text!r}: {exc}", fix="fix it"
            ) from exc
        marker = r.marker
        if extra is not None:
            clause = f'extra == "{extra}"'
            marker = Marker(f"({marker}) and {clause}" if marker else clause)
        out.append((_requirement_key(r.name, str(r.specifier), r.extras), marker, text))
    return out


def _from_uv(
    entries: Iterable[Mapping[str, Any]], where: str
) -> list[tuple[tuple[str, str, str], Marker | None, str]]:
    out = []
    for e in entries:
        key = _requirement_key(
            str(e.get("name", "")), str(e.get("specifier", "")), e.get("extras", [])
        )
        extras = ",".join(e.get("extras", []))
        marker = f"; {e['marker']}" if e.get("marker") else ""
        text = (
            f"{e.get('name', '')}{f'[{extras}]' if extras else ''}{e.get('specifier', '')}{marker}"
        )
        out.append((key, parse_marker(e.get("marker"), where), text))
    return out


def _unmatched(
    want: list[tuple[tuple[str, str, str], Marker | None, str]],
    have: list[tuple[tuple[str, str, str], Marker | None, str]],
    pythons: Sequence[str],
    extras: Sequence[str],
) -> tuple[list[str], list[str]]:
    """The requirements only pyproject.toml has, and those only the lock has."""
    left = list(have)
    only_here: list[str] = []
    for key, marker, text in want:
        for i, (k, m, _) in enumerate(left):
            if k == key and _same_marker(marker, m, pythons, extras):
                del left[i]
                break
        else:
            only_here.append(text)
    return only_here, [text for _, _, text in left]


def _differences(what: str, only_here: list[str], only_lock: list[str]) -> list[str]:
    """Each requirement added, removed or changed since the lock, by name."""

    def name(text: str) -> str:
        try:
            return normalize(Requirement(text).name)
        except InvalidRequirement:
            return text

    locked = {name(t): t for t in only_lock}
    out = []
    for text in only_here:
        old = locked.pop(name(text), None)
        if old is not None:
            out.append(f"{what}: `{old}` changed to `{text}` in pyproject.toml")
        else:
            out.append(f"{what}: `{text}` added to pyproject.toml, uv.lock does not record it")
    out += [
        f"{what}: `{t}` is in uv.lock, pyproject.toml no longer asks for it"
        for t in locked.values()
    ]
    return out


def _same_python(a: str, b: str) -> bool:
    """Two requires-python ranges that allow the same Pythons (uv writes the members'
    ranges of a workspace simplified: ``>=3.10,>=3.11`` as ``>=3.11``)."""
    try:
        sa, sb = SpecifierSet(a), SpecifierSet(b)
    except InvalidSpecifier:
        return a == b
    versions = [f"3.{m}.{p}" for m in range(0, 20) for p in (0, 1, 5, 99)]
    return all(
        sa.contains(v, prereleases=True) == sb.contains(v, prereleases=True) for v in versions
    )


def _workspace_python(
    lockdir: Path, data: Mapping[str, Any], packages: Sequence[Mapping[str, Any]]
) -> str | None:
    """What uv writes as a workspace lock's requires-python: the members' ranges taken
    together (None for a lock of one project, whose own range is compared)."""
    members = {normalize(str(m)) for m in data.get("manifest", {}).get("members", [])}
    if len(members) < 2:
        return None
    combined = SpecifierSet()
    for p in packages:
        local = _local(p)
        if local is None or normalize(p.get("name", "")) not in members:
            continue
        spec = load_pyproject(lockdir / local).get("project", {}).get("requires-python")
        try:
            combined &= SpecifierSet(str(spec or ""))
        except InvalidSpecifier:
            continue
    return str(combined)


def _check_uv_fresh(
    cfg: Config,
    data: Mapping[str, Any],
    root: Mapping[str, Any],
    lines: Lines,
    where: str,
    workspace_python: str | None = None,
) -> None:
    """What ``uv lock --check`` reports for the project's own entry: its requirements,
    extras, dependency groups, requires-python and version as recorded in uv.lock,
    against pyproject.toml. In a workspace the lock's requires-python is all the
    members' together (``workspace_python``), not the app's alone."""
    pyproject = load_pyproject(cfg.project_dir)
    project = dict(pyproject.get("project", {}))
    if workspace_python is not None:
        project["requires-python"] = workspace_python
    what = "requires-python" if workspace_python is None else "the members' requires-python"
    problem = _uv_meta_problem(project, data, root, what)
    problem = problem or _uv_requirements_problem(cfg, pyproject, data, root, where)
    if problem:
        raise ConfigError(
            f"uv.lock is out of date with pyproject.toml ({where}, as `uv lock --check` would "
            f"report): {problem}",
            fix="run `uv lock` and commit uv.lock (or build from the commit it was locked at)",
        )


def _uv_meta_problem(
    project: Mapping[str, Any],
    data: Mapping[str, Any],
    root: Mapping[str, Any],
    what: str = "requires-python",
) -> str | None:
    req_python = project.get("requires-python")
    locked_python = data.get("requires-python", "")
    if req_python and not _same_python(str(req_python), str(locked_python)):
        return f"{what} is {req_python!r}, uv.lock has {locked_python!r}"
    version = project.get("version")
    static = version and "version" not in project.get("dynamic", [])
    if static and str(root.get("version")) != str(version):
        return f"the project's version is {version}, uv.lock has {root.get('version')}"
    return None


def _uv_requirements_problem(
    cfg: Config,
    pyproject: Mapping[str, Any],
    data: Mapping[str, Any],
    root: Mapping[str, Any],
    where: str,
) -> str | None:
    project = pyproject.get("project", {})
    meta = root.get("metadata", {})
    optional = project.get("optional-dependencies", {})
    want = _from_pyproject(project.get("dependencies", []), None, "pyproject.toml")
    for extra, reqs in optional.items():
        want += _from_pyproject(reqs, extra, "pyproject.toml")
    pairs = [(want, _from_uv(meta.get("requires-dist", []), where), "[project] dependencies")]
    groups = _pyproject_groups(cfg, pyproject)
    locked_groups = {normalize(k): v for k, v in meta.get("requires-dev", {}).items()}
    for g in sorted(set(groups) | set(locked_groups)):
        pyproject_side = _from_pyproject(groups.get(g, []), None, "pyproject.toml")
        lock_side = _from_uv(locked_groups.get(g, []), where)
        pairs.append((pyproject_side, lock_side, f"dependency group {g!r}"))
    pythons = _grid_pythons(data.get("requires-python"))
    found: list[str] = []
    for pyproject_side, lock_side, what in pairs:
        only_here, only_lock = _unmatched(pyproject_side, lock_side, pythons, list(optional))
        found += _differences(what, only_here, only_lock)
    return "; ".join(found) or None


def _pyproject_groups(cfg: Config, pyproject: Mapping[str, Any]) -> dict[str, list[str]]:
    """PEP 735 groups (includes followed, as uv records them), plus uv's legacy
    ``[tool.uv] dev-dependencies`` (its group ``dev``)."""
    from packaging.dependency_groups import resolve_dependency_groups

    table = pyproject.get("dependency-groups", {})
    out: dict[str, list[str]] = {}
    for name in table:
        try:
            out[normalize(name)] = [str(r) for r in resolve_dependency_groups(table, name)]
        except Exception as exc:  # packaging raises an ExceptionGroup for malformed data
            raise ConfigError(
                f"[dependency-groups] of {cfg.project_dir / 'pyproject.toml'}: {exc}",
                fix="fix the group's entries",
            ) from exc
    legacy = pyproject.get("tool", {}).get("uv", {}).get("dev-dependencies")
    if isinstance(legacy, list):
        out["dev"] = out.get("dev", []) + [str(x) for x in legacy]
    return out


def _grid_pythons(spec: object) -> list[str]:
    """The minor versions a lock covers, for comparing markers."""
    versions = [f"3.{m}" for m in range(6, 16)]
    try:
        allowed = SpecifierSet(str(spec or ""))
    except InvalidSpecifier:
        return versions
    return [v for v in versions if allowed.contains(v + ".0", prereleases=True)] or versions
