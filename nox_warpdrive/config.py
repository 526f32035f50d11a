"""``[tool.warpdrive]`` of a project's pyproject.toml, read into frozen dataclasses.

Every key is optional. A key we do not know, or a value of the wrong type, is an error
that names the key and suggests the closest valid one: a typo must never be silently
ignored and leave the user wondering why their setting has no effect.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, WarpdriveError
from .platform import Platform, parse_platform, parse_platforms
from .refs import check_image_ref, docker_name
from .workspace import find_workspace, member_dir, unused_locks

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_BASE_IMAGE = "python:3.12-slim"

#: key -> (expected python type(s), human description)
_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "image": ((str,), 'a string, the image reference to tag, e.g. "mysite:latest"'),
    "base-image": ((str,), "a string, the image the app runs on"),
    "builder-image": ((str,), "a string, the image wheels are compiled in"),
    "requirements": ((list, str), "a list of requirement file paths"),
    "lock": (
        (str,),
        'a string, the lock file to install from ("uv.lock", "pylock.toml", "poetry.lock", '
        '"Pipfile.lock")',
    ),
    "package": (
        (str,),
        'a string, at a uv workspace\'s root: the member to build (its [project].name), e.g. "app"',
    ),
    "groups": ((list,), 'a list of dependency group names, e.g. ["prod"]'),
    "extras": ((list,), 'a list of the project\'s extras, e.g. ["postgres"]'),
    "install-project": (
        (bool,),
        "true or false: install the project itself when its lock file says it is a package",
    ),
    "volume": ((str,), "a string, the Docker volume name for the wheelhouse"),
    "no-index": ((bool,), "true or false"),
    "network": ((str,), 'a string, the Docker network for build containers (e.g. "host")'),
    "python": ((str,), 'a string, the Python command inside the images (default "python3")'),
    "collectstatic": ((bool,), "true or false"),
    "server": (
        (str,),
        "a string: the web server the image starts (gunicorn, uvicorn, waitress, mod_wsgi, "
        "uwsgi); default gunicorn for WSGI apps, uvicorn for ASGI apps",
    ),
    "start": ((str,), "a string, the shell command that starts the app"),
    "app-module": ((str,), 'a string, the app\'s WSGI/ASGI callable as "package.module:name"'),
    "installer": ((str,), '"auto" (uv when it is available for the platform), "uv" or "pip"'),
    "cache-max-size": (
        (int, str),
        'a size: a number of bytes or a string with a unit, e.g. "10GB", "500MB", "2GiB"',
    ),
    "platforms": (
        (list,),
        'a list of image platforms to build, e.g. ["linux/amd64", "linux/arm64"] (default: '
        "the engine's own)",
    ),
    "engines": (
        (dict,),
        "a table of platform = engine, the Docker engine that builds that platform, e.g. "
        '{ "linux/arm64" = "ssh://user@arm-builder" } (default: DOCKER_HOST\'s, emulating)',
    ),
    "build-hook-per-platform": (
        (bool,),
        "true or false: run .warpdrive/action_hooks/build in every platform's image (under "
        "emulation for another CPU) instead of once, its files shared (default false)",
    ),
    "wheelhouse-image": (
        (str,),
        "a string, the registry image the wheelhouse is seeded from (and pushed to with "
        '`nox -s wheelhouse -- --push`), e.g. "ghcr.io/org/app-wheelhouse"',
    ),
}

SUPPORTED_SERVERS = ("gunicorn", "uvicorn", "waitress", "mod_wsgi", "uwsgi")


@dataclass(frozen=True)
class Config:
    """Resolved settings for one project. Paths are absolute."""

    project_dir: Path
    name: str
    image: str
    base_image: str
    builder_image: str
    requirement_files: tuple[Path, ...]
    dependencies: tuple[str, ...] = ()
    volume: str = ""
    no_index: bool = False
    network: str | None = None
    python: str = "python3"
    collectstatic: bool = True
    server: str | None = None
    installer: str = "auto"
    start: str | None = None
    app_module: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: the lock file the app is installed from (None: requirement files or
    #: [project].dependencies), and its format: pylock, uv, poetry or pipenv
    lock_file: Path | None = None
    lock_format: str | None = None
    groups: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    #: None: as the lock says (the project is installed when it is a package)
    install_project: bool | None = None
    #: how the inputs were chosen, said in the build's output
    inputs_reason: str = ""
    #: a registry image to seed the wheelhouse from (tagged per platform key)
    wheelhouse_image: str | None = None
    #: where ``name`` comes from: "[project].name", "image" or "folder"
    name_source: str = "[project].name"
    #: the lock files up to the repository root not installed from, each with why
    unused_locks: tuple[str, ...] = ()
    #: `entrypoint` in [tool.fastapi] (what `fastapi run` reads), for the launcher
    fastapi_entrypoint: str | None = None
    #: the bound on the wheelhouse volume (and this app's deps images), in bytes; None:
    #: a share of the engine's disk (runtime/wheel_cache.py default_limit)
    cache_max_size: int | None = None
    #: the platforms to build (`platforms`, --platform); empty: the engine's own, as
    #: without the setting (multiarch/)
    platforms: tuple[Platform, ...] = ()
    #: the engine (a DOCKER_HOST URL) that builds a platform (`engines`); a platform not
    #: named is built on DOCKER_HOST's engine, emulated when of another CPU
    engines: tuple[tuple[Platform, str], ...] = ()
    #: run the build hook in every platform's image (`build-hook-per-platform`), instead
    #: of once, the others taking the layer it made (its output depends on the CPU)
    hook_per_platform: bool = False
    #: show the output of sdist builds as they run (`--verbose`; not a pyproject key):
    #: by default it goes to a log in the volume, shown when a build fails
    verbose: bool = False
    #: resolve afresh from the package index (`--upgrade`; not a pyproject key): the
    #: requirements' set is resolved again though the wheelhouse has it, and the versions
    #: the wheelhouse has are not kept (runtime/resolve.py)
    upgrade: bool = False
    #: for a platform not the engine's own: the engine's own builder image, which
    #: resolves and downloads that platform's wheels without emulation (wheelhouse/
    #: cross.py); "": everything for it runs in its own builder (not a pyproject key)
    cross_builder: str = ""

    def engine_for(self, platform: Platform) -> str:
        """The DOCKER_HOST URL `engines` names for ``platform`` ("": DOCKER_HOST's)."""
        return next((host for p, host in self.engines if p.matches(platform)), "")


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, list(_KEYS), n=1, cutoff=0.5)
    if close:
        return f"did you mean `{close[0]}`?"
    return "valid keys: " + ", ".join(sorted(_KEYS))


def load_pyproject(project_dir: Path) -> dict[str, Any]:
    """pyproject.toml, parsed once per content: the config, the lock readers and the
    workspace members each ask for it during one build (a copy each: none sees another's
    changes)."""
    path = project_dir / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return copy.deepcopy(_parse_toml(path.read_bytes()))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}",
            fix="fix the syntax error at that line (the file must be UTF-8)",
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror}", fix="check its permissions"
        ) from exc


@functools.lru_cache(maxsize=16)
def _parse_toml(data: bytes) -> dict[str, Any]:
    return tomllib.loads(data.decode())


def load_config(project_dir: Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read and validate ``[tool.warpdrive]``; ``overrides`` win (command-line options)."""
    project_dir = project_dir.resolve()
    data = load_pyproject(project_dir)
    table = _warpdrive_table(project_dir, data, overrides)
    if "package" in table:
        return _member_config(project_dir, table)
    project = data.get("project", {}) if isinstance(data.get("project"), dict) else {}
    name, name_source = project_name(project, table, project_dir)
    image, base_image, builder_image, wheelhouse_image = _image_refs(table, name)
    chosen = choose_inputs(project_dir, table, project)
    install_project = _install_project(table, chosen)
    server, installer = _server(table), _installer(table)
    volume = _volume(table, name)
    return Config(
        project_dir=project_dir,
        name=name,
        name_source=name_source,
        image=image,
        base_image=base_image,
        builder_image=builder_image,
        requirement_files=chosen.files,
        dependencies=chosen.dependencies,
        volume=volume,
        no_index=table.get("no-index", False),
        network=table.get("network"),
        python=table.get("python", "python3"),
        collectstatic=table.get("collectstatic", True),
        server=server,
        installer=installer,
        start=table.get("start"),
        app_module=table.get("app-module"),
        lock_file=chosen.lock,
        lock_format=chosen.lock_format,
        groups=chosen.groups,
        extras=chosen.extras,
        install_project=install_project,
        inputs_reason=chosen.reason,
        wheelhouse_image=wheelhouse_image,
        unused_locks=unused_locks(project_dir, chosen.lock),
        fastapi_entrypoint=_fastapi_entrypoint(data),
        cache_max_size=_cache_max_size(table),
        platforms=_platforms(table),
        engines=_engines(table),
        hook_per_platform=table.get("build-hook-per-platform", False),
    )


def _platforms(table: Mapping[str, Any]) -> tuple[Platform, ...]:
    try:
        return parse_platforms(table.get("platforms", []))
    except WarpdriveError as exc:
        raise ConfigError(f"`platforms` in [tool.warpdrive]: {exc.message}", fix=exc.fix) from exc


def _engines(table: Mapping[str, Any]) -> tuple[tuple[Platform, str], ...]:
    found = []
    for name, host in table.get("engines", {}).items():
        fix = 'name each as "OS/ARCH" = "DOCKER_HOST URL", e.g. "linux/arm64" = "ssh://arm"'
        try:
            platform = parse_platform(name)
        except WarpdriveError as exc:
            raise ConfigError(f"`engines` in [tool.warpdrive]: {exc.message}", fix=fix) from exc
        if not isinstance(host, str) or "://" not in host:
            raise ConfigError(
                f"`engines` in [tool.warpdrive]: {name!r} = {host!r} is not a DOCKER_HOST "
                "URL (unix://, tcp://, ssh://)",
                fix=fix,
            )
        found.append((platform, host))
    return tuple(found)


def _fastapi_entrypoint(data: Mapping[str, Any]) -> str | None:
    """``[tool.fastapi] entrypoint = "app.main:app"``, as the FastAPI CLI reads it."""
    tool = data.get("tool")
    table = tool.get("fastapi") if isinstance(tool, dict) else None
    value = table.get("entrypoint") if isinstance(table, dict) else None
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[\w.]+(:[\w.]+)?", value):
        raise ConfigError(
            f"`entrypoint` in [tool.fastapi] is {value!r}, not a module path",
            fix='write it as FastAPI\'s CLI reads it: `entrypoint = "app.main:app"`',
        )
    return value


def _member_config(root: Path, table: Mapping[str, Any]) -> Config:
    """`package` at a uv workspace's root: the member's directory is the app (its source,
    its pyproject), built with the root's settings over the member's own; paths the
    root's settings name stay relative to the root."""
    member = member_dir(root, table["package"])
    settings = {k: v for k, v in table.items() if k != "package"}
    if isinstance(settings.get("lock"), str):
        settings["lock"] = str((root / settings["lock"]).resolve())
    reqs = settings.get("requirements")
    if reqs is not None:
        items = [reqs] if isinstance(reqs, str) else reqs
        settings["requirements"] = [str((root / r).resolve()) for r in items]
    return load_config(member, settings)


def _warpdrive_table(
    project_dir: Path, data: Mapping[str, Any], overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``[tool.warpdrive]`` with the overrides applied, every key known and of its type."""
    tool = data.get("tool", {})
    table = tool.get("warpdrive", {}) if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(
            "[tool.warpdrive] must be a table", fix="write it as a `[tool.warpdrive]` section"
        )
    table = {**table, **(overrides or {})}
    for key, value in table.items():
        if key not in _KEYS:
            raise ConfigError(
                f"unknown key `{key}` in [tool.warpdrive] of {project_dir / 'pyproject.toml'}",
                fix=_suggest(key),
            )
        types, desc = _KEYS[key]
        # bool is an int subclass in Python; the check below is exact on purpose
        if type(value) not in types:
            raise ConfigError(
                f"`{key}` in [tool.warpdrive] is {value!r} ({type(value).__name__}), "
                f"expected {desc}",
                fix=f"write `{key}` as {desc}",
            )
    return table


def project_name(
    project: Mapping[str, Any], table: Mapping[str, Any], project_dir: Path
) -> tuple[str, str]:
    """(the name the default image, the volume and the deps images are called by, where
    it comes from): [project].name; else the repository `image` names
    ("registry.example.com/team/bakery:1": bakery), which the user chose; else the
    folder, whose name a checkout may have made up ("repo", "main")."""
    raw = project.get("name")
    if isinstance(raw, str) and raw.strip():
        return docker_name(raw), "[project].name"
    image = table.get("image")
    if isinstance(image, str):
        repository = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
        if any(c.isalnum() for c in repository):
            return docker_name(repository), "image"
    return docker_name(project_dir.name), "folder"


def _image_refs(table: Mapping[str, Any], name: str) -> tuple[str, str, str, str | None]:
    """(image, base-image, builder-image, wheelhouse-image), each a valid reference."""
    image = check_image_ref(table.get("image", f"{name}:latest"), "image")
    base_image = check_image_ref(table.get("base-image", DEFAULT_BASE_IMAGE), "base-image")
    builder_image = check_image_ref(table.get("builder-image", base_image), "builder-image")
    wheelhouse_image = table.get("wheelhouse-image")
    if wheelhouse_image is not None:
        check_image_ref(wheelhouse_image, "wheelhouse-image")
    return image, base_image, builder_image, wheelhouse_image


def _install_project(table: Mapping[str, Any], chosen: ChosenInputs) -> bool | None:
    install_project: bool | None = table.get("install-project")
    if install_project is not None and chosen.lock is None:
        raise ConfigError(
            "`install-project` in [tool.warpdrive] only applies to a lock file, and the app "
            f"is installed from {chosen.reason}",
            fix="remove `install-project`, or install from a lock file (`lock = ...`)",
        )
    return install_project


def _server(table: Mapping[str, Any]) -> str | None:
    server: str | None = table.get("server")
    if server is not None and server not in SUPPORTED_SERVERS:
        raise ConfigError(
            f"`server` = {server!r} is not supported",
            fix="use one of: " + ", ".join(SUPPORTED_SERVERS),
        )
    return server


def _installer(table: Mapping[str, Any]) -> str:
    installer: str = table.get("installer", "auto")
    if installer not in ("auto", "uv", "pip"):
        raise ConfigError(
            f"`installer` = {installer!r} is not one of auto, uv, pip",
            fix='write `installer = "auto"` (or "uv" / "pip")',
        )
    return installer


#: the units `cache-max-size` takes (decimal as disks are sold, binary as `du` counts)
SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(value: int | str, key: str = "cache-max-size") -> int:
    """Bytes of a size as written in [tool.warpdrive]: an integer, or a number with a
    unit ("10GB", "500MB", "2GiB"). Anything else is an error naming the key."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        found = _SIZE_RE.match(str(value))
        unit = found.group(2).lower() if found else ""
        if not found or unit not in SIZE_UNITS:
            raise ConfigError(
                f"`{key}` in [tool.warpdrive] is {value!r}: not a size",
                fix=f"write `{key}` as a number of bytes or a number with one of the units "
                f"{', '.join(u.upper().replace('I', 'i') for u in SIZE_UNITS if u)}, "
                'e.g. "10GB", "500MB", "2GiB"',
            )
        size = int(float(found.group(1)) * SIZE_UNITS[unit])
    if size <= 0:
        raise ConfigError(
            f"`{key}` in [tool.warpdrive] is {value!r}: a size must be more than 0 bytes",
            fix=f'write e.g. `{key} = "10GB"` (or remove it: a share of the engine\'s disk)',
        )
    return size


def _cache_max_size(table: Mapping[str, Any]) -> int | None:
    value = table.get("cache-max-size")
    return None if value is None else parse_size(value)


def _volume(table: Mapping[str, Any], name: str) -> str:
    volume: str = table.get("volume", f"warpdrive-{name}")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$", volume):
        raise ConfigError(
            f"`volume` = {volume!r} is not a valid Docker volume name",
            fix="use letters, digits, `_`, `.` and `-` only",
        )
    return volume


# ---------------------------------------------------------------------------------------
# which inputs: lock files, requirement files, [project].dependencies

#: lock file names and their format, in the order they are chosen when no key says
#: which (``pylock.<name>.toml`` counts as ``pylock.toml``)
LOCK_FILES: tuple[tuple[str, str], ...] = (
    ("pylock.toml", "pylock"),
    ("uv.lock", "uv"),
    ("poetry.lock", "poetry"),
    ("Pipfile.lock", "pipenv"),
)
_NAMED_PYLOCK = re.compile(r"^pylock\.[^.]+\.toml$")


def lock_format(path: Path) -> str | None:
    """pylock, uv, poetry or pipenv, from the file name; None for any other name."""
    if _NAMED_PYLOCK.match(path.name):
        return "pylock"
    return dict(LOCK_FILES).get(path.name)


def find_lock_files(project_dir: Path) -> list[Path]:
    """The lock files in the project directory, in the order they are chosen."""
    found: list[Path] = []
    for name, fmt in LOCK_FILES:
        if (project_dir / name).is_file():
            found.append(project_dir / name)
        if fmt == "pylock":
            found += sorted(
                p for p in project_dir.glob("pylock.*.toml") if _NAMED_PYLOCK.match(p.name)
            )
    return found


@dataclass(frozen=True)
class ChosenInputs:
    """What the app is installed from, and why (said in the build's output)."""

    reason: str
    files: tuple[Path, ...] = ()
    dependencies: tuple[str, ...] = ()
    lock: Path | None = None
    lock_format: str | None = None
    groups: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()


def _names(table: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            f"`{key}` in [tool.warpdrive] must be a list of names, got {value!r}",
            fix=f'write e.g. `{key} = ["{"prod" if key == "groups" else "postgres"}"]`',
        )
    return tuple(dict.fromkeys(value))


def choose_inputs(
    project_dir: Path, table: Mapping[str, Any], project: Mapping[str, Any]
) -> ChosenInputs:
    """The app's inputs, in this order unless `lock` or `requirements` says otherwise: a
    lock file (pylock.toml, uv.lock, poetry.lock, Pipfile.lock), requirements.txt,
    [project].dependencies. Two lock files and no key is an error: guessing would build
    an image from something other than what the user meant to lock."""
    groups, extras = _names(table, "groups"), _names(table, "extras")
    if table.get("lock") is not None and table.get("requirements") is not None:
        raise ConfigError(
            "[tool.warpdrive] sets both `lock` and `requirements`",
            fix="keep the one the image should be installed from",
        )
    if table.get("lock") is not None:
        chosen = _chosen_lock(project_dir, table["lock"], "set by `lock` in [tool.warpdrive]")
    elif table.get("requirements") is not None:
        chosen = _requirement_files(project_dir, table["requirements"], "set by `requirements`")
    else:
        chosen = _found_inputs(project_dir, project, groups, extras)
    if (groups or extras) and chosen.lock is None and not chosen.dependencies:
        which = "groups" if groups else "extras"
        raise ConfigError(
            f"`{which}` in [tool.warpdrive] needs a lock file or [project].dependencies, "
            f"and the app is installed from {chosen.reason}",
            fix=f"remove `{which}`, or install from a lock file (`lock = ...`)",
        )
    return dataclasses.replace(chosen, groups=groups, extras=extras)


def _found_inputs(
    project_dir: Path, project: Mapping[str, Any], groups: tuple[str, ...], extras: tuple[str, ...]
) -> ChosenInputs:
    locks = find_lock_files(project_dir)
    if len(locks) > 1:
        names = ", ".join(p.name for p in locks)
        raise ConfigError(
            f"{project_dir} has several lock files ({names}) and [tool.warpdrive] does not "
            "say which one the image is installed from",
            fix=f'set `lock = "{locks[0].name}"` (or another of them) in [tool.warpdrive]',
        )
    if locks:
        return _chosen_lock(project_dir, locks[0].name, "found")
    membership = find_workspace(project_dir)
    if membership is not None and membership.member and membership.workspace.lock.is_file():
        return _workspace_lock(project_dir, membership.workspace.lock)
    if (project_dir / "requirements.txt").is_file():
        return _requirement_files(project_dir, ["requirements.txt"], "found")
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ConfigError(
            "[project].dependencies must be a list of strings",
            fix="fix [project].dependencies or add a requirements.txt",
        )
    deps = deps + _group_requirements(project_dir, groups) + _extra_requirements(project, extras)
    return ChosenInputs(reason="[project].dependencies", dependencies=tuple(deps))


def _chosen_lock(project_dir: Path, name: str, why: str) -> ChosenInputs:
    path = (project_dir / name).resolve()
    fmt = lock_format(path)
    if fmt is None:
        raise ConfigError(
            f"`lock` = {name!r}: not a lock file name nox-warpdrive reads",
            fix="name one of pylock.toml, pylock.<name>.toml, uv.lock, poetry.lock, Pipfile.lock",
        )
    if not path.is_file():
        raise ConfigError(
            f"lock file {name!r} not found in {project_dir}",
            fix="create it (`uv lock`, `poetry lock`, `pipenv lock`), or fix `lock`",
        )
    if path.parent != project_dir and fmt != "pylock":
        return _lock_elsewhere(project_dir, path, fmt)
    return ChosenInputs(reason=f"{path.name} ({why})", lock=path, lock_format=fmt)


def _workspace_lock(project_dir: Path, lock: Path) -> ChosenInputs:
    """The uv.lock at the root of the workspace the app is a member of."""
    rel = Path(os.path.relpath(lock, project_dir)).as_posix()
    name = load_pyproject(project_dir).get("project", {}).get("name", project_dir.name)
    return ChosenInputs(
        reason=f"uv.lock (workspace root {rel}, member {name})", lock=lock, lock_format="uv"
    )


def _lock_elsewhere(project_dir: Path, path: Path, fmt: str) -> ChosenInputs:
    """A uv.lock, poetry.lock or Pipfile.lock outside the app's directory: a uv
    workspace's lock when the app is one of its members; other lockers have no
    workspaces (their lock belongs to the project in its own directory)."""
    where = Path(os.path.relpath(path, project_dir)).as_posix()
    if fmt == "uv":
        membership = find_workspace(project_dir)
        if membership is not None and membership.workspace.lock == path:
            if membership.member:
                return _workspace_lock(project_dir, path)
            raise ConfigError(
                f"`lock` = {where!r} is the lock of the uv workspace at "
                f"{membership.workspace.root}, and the app is not one of its members: "
                f"{membership.why_not}",
                fix="add the app's directory to `members` in [tool.uv.workspace] and run "
                "`uv lock`, or lock the app on its own",
            )
        raise ConfigError(
            f"`lock` = {where!r} locks the project in {path.parent}, which is no uv workspace "
            "the app is a member of",
            fix="make the app a workspace member (`[tool.uv.workspace] members = [...]` there, "
            "then `uv lock`), or run `uv lock` in the app's directory",
        )
    tool = {"poetry": "Poetry", "pipenv": "pipenv"}[fmt]
    raise ConfigError(
        f"`lock` = {where!r} locks the project in {path.parent}, not this app: {tool} has no "
        "workspaces, so a lock above the app cannot say what the app installs",
        fix=f"lock the app in its own directory, or export the lock for it (e.g. "
        f"`{'poetry export' if fmt == 'poetry' else 'pipenv requirements --hash'} "
        "-o requirements.txt` with hashes) and set `requirements`",
    )


def _requirement_files(project_dir: Path, reqs: list[Any] | str, why: str) -> ChosenInputs:
    files: list[Path] = []
    for item in [reqs] if isinstance(reqs, str) else reqs:
        if not isinstance(item, str):
            raise ConfigError(
                f"`requirements` entries must be strings, got {item!r}",
                fix='write `requirements = ["requirements.txt"]`',
            )
        path = (project_dir / item).resolve()
        if not path.is_file():
            raise ConfigError(
                f"requirements file {item!r} not found in {project_dir}",
                fix="create it, or fix `requirements` in [tool.warpdrive]",
            )
        files.append(path)
    names = ", ".join(p.name for p in files) or "no files"
    return ChosenInputs(reason=f"{names} ({why})", files=tuple(files))


def _group_requirements(project_dir: Path, groups: tuple[str, ...]) -> list[str]:
    """PEP 735 groups of pyproject.toml, includes followed (``packaging`` does it)."""
    if not groups:
        return []
    from packaging.dependency_groups import resolve_dependency_groups

    table = load_pyproject(project_dir).get("dependency-groups", {})
    table = table if isinstance(table, dict) else {}
    where = f"[dependency-groups] of {project_dir / 'pyproject.toml'}"
    for group in groups:
        if normalize(group) not in {normalize(g) for g in table}:
            raise ConfigError(
                f"`groups` names {group!r}, which {where} does not define "
                f"(it has: {', '.join(sorted(table)) or 'none'})",
                fix="name groups that [dependency-groups] defines",
            )
    try:
        return [str(r) for r in resolve_dependency_groups(table, *groups)]
    except Exception as exc:  # packaging raises an ExceptionGroup for malformed data
        raise ConfigError(f"{where}: {exc}", fix="fix the group's entries") from exc


def _extra_requirements(project: Mapping[str, Any], extras: tuple[str, ...]) -> list[str]:
    table = project.get("optional-dependencies", {})
    table = table if isinstance(table, dict) else {}
    by_name = {normalize(k): v for k, v in table.items()}
    out: list[str] = []
    for extra in extras:
        deps = by_name.get(normalize(extra))
        if not isinstance(deps, list):
            raise ConfigError(
                f"`extras`: the project has no extra {extra!r} "
                f"([project.optional-dependencies] has: {', '.join(sorted(table)) or 'none'})",
                fix="name extras that [project.optional-dependencies] defines",
            )
        out += [d for d in deps if isinstance(d, str)]
    return out


def start_config(cfg: Config) -> dict[str, str]:
    """What the image's start launcher is told (written to .warpdrive/start.json). The
    Procfile's web: line is read here, on the host, like [tool.fastapi]: a Procfile that
    .dockerignore leaves out of the image (a Dockerfile build never needs it) must start
    the app the way the host decided, not leave the image to find something else."""
    from .runtime.start import procfile_web

    out = {
        "start": cfg.start,
        "app_module": cfg.app_module,
        "server": cfg.server,
        "fastapi_entrypoint": cfg.fastapi_entrypoint,
        "procfile_web": procfile_web(str(cfg.project_dir)),
    }
    return {k: v for k, v in out.items() if v}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
