"""The app image: a deps layer (virtualenv from the wheelhouse) reused while its key
holds, and an app layer (source, collectstatic) on top, the only one a code change
rebuilds. Both are made by run + commit from plans; tags move only at the very end."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import runtime, static_cache
from .config import Config, RequirementSet, read_requirements, split_ref, start_config
from .context import (
    Entry,
    IgnoreRules,
    build_tar,
    collect,
    context_digest,
    large_files,
    load_ignore_rules,
    secret_files_left_out,
    source_date_epoch,
)
from .engine import Engine, ImageInfo, Output, RunResult
from .errors import BuildError, ConfigError, EngineError, LayerRefused, WarpdriveError
from .plan import HELPERS_DIR, VOLUME_DIR, CommitSpec, Step, VolumeMount
from .platform import PlatformKey
from .runtime.assemble import DAMAGED_LINE
from .runtime.start import App
from .tars import dir_tar, merge_tars, normalize_tar, reprefix_tar, tar_body, tar_files
from .wheelhouse import (
    build_wheelhouse,
    detect_app,
    probe_image,
    read_manifest,
    requirements_for,
    resolved_set,
)

APP_ROOT = "/opt/app-root"
APP_SRC = f"{APP_ROOT}/src"
VENV = f"{APP_ROOT}/venv"
APP_UID = 1001
PORT = 8080
LABEL_PREFIX = "io.warpdrive"
#: where a deps step unpacks wheels (a tmpfs: never in the image)
DEPS_SCRATCH = "/tmp/warpdrive-scratch"
#: bump when the layout of the deps layer changes, so old deps images are not reused
DEPS_FORMAT = "2"


def _sha(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class DepsPlan:
    key: str
    ref: str
    step: Step
    parent: str | None = None  # an earlier deps image this one is built on
    files: tuple[str, ...] = ()  # the wheels this step installs


@dataclass(frozen=True)
class Installer:
    name: str  # "uv" | "pip" | "none" (nothing to install)
    path: str = ""  # uv's path inside the build container
    version: str = ""


def choose_installer(cfg: Config, manifest: Mapping[str, Any], pkey: PlatformKey) -> Installer:
    uv = manifest.get("tools", {}).get("uv") if isinstance(manifest.get("tools"), dict) else None
    if cfg.installer != "pip" and isinstance(uv, dict) and uv.get("path"):
        return Installer("uv", f"{VOLUME_DIR}/{pkey.slug}/{uv['path']}", str(uv.get("version")))
    if cfg.installer == "uv":
        raise ConfigError(
            f'installer = "uv" but the wheelhouse in {cfg.volume!r} has no uv for {pkey.slug}',
            fix="run `nox -s wheelhouse` with access to an index (it fetches uv), or set "
            '`installer = "auto"`',
        )
    return Installer("pip")


def wheel_ids(resolved: list[dict[str, Any]]) -> list[str]:
    return sorted(f"{w['file']}@{w['sha256'][:16]}" for w in resolved)


#: an incremental deps image may sit on at most this many earlier ones
MAX_DEPS_DEPTH = 4


def find_parent(
    engine: Engine, cfg: Config, base: ImageInfo, installer: Installer, wanted: list[str]
) -> tuple[ImageInfo, list[str], int] | None:
    """The earlier deps image of this app whose wheels are a strict subset of the wanted
    ones, with the most wheels: adding a package then installs only that package, in a
    small layer on top, instead of rebuilding the whole virtualenv."""
    best: tuple[ImageInfo, list[str], int] | None = None
    for info in engine.images_with_labels(
        {
            f"{LABEL_PREFIX}.kind": "deps",
            f"{LABEL_PREFIX}.deps-format": DEPS_FORMAT,
            f"{LABEL_PREFIX}.deps-project": cfg.name,
            f"{LABEL_PREFIX}.deps-base": base.id,
        }
    ):
        if info.labels.get(f"{LABEL_PREFIX}.deps-installer") != installer.name + installer.version:
            continue
        try:
            have = json.loads(info.labels.get(f"{LABEL_PREFIX}.deps-wheels", ""))
            depth = int(info.labels.get(f"{LABEL_PREFIX}.deps-depth", "0"))
        except ValueError:
            continue
        if not isinstance(have, list) or depth >= MAX_DEPS_DEPTH:
            continue
        if set(have) < set(wanted) and (best is None or len(have) > len(best[1])):
            best = (info, have, depth)
    return best


def plan_deps(
    cfg: Config,
    base: ImageInfo,
    pkey: PlatformKey,
    resolved: list[dict[str, Any]],
    installer: Installer | None = None,
    parent: tuple[ImageInfo, list[str], int] | None = None,
    export: bool = True,
) -> DepsPlan:
    """The deps layer: exactly the wheels the wheelhouse resolved, installed with
    ``--no-index --no-deps`` from the read-only volume, with no network at all. Keyed by
    base image, platform, installer and the wheels' hashes; on a ``parent`` (an earlier
    deps image with a subset of the wheels) only the added wheels are installed.

    A whole virtualenv is built in memory (tmpfs at APP_ROOT and for the unpacked wheels)
    and exported as the layer (``export``), which writes each file to disk once; an
    incremental one installs into the parent's virtualenv and is committed."""
    installer = installer or Installer("pip")
    assemble = runtime.read("assemble.py")
    ids = wheel_ids(resolved)
    files = sorted(w["file"] for w in resolved)
    key = _sha(
        "deps",
        DEPS_FORMAT,
        base.id,
        pkey.slug,
        cfg.python,
        installer.name,
        installer.version,
        *ids,
        assemble,
    )
    plan: dict[str, Any] = {
        "app_root": APP_ROOT,
        "venv": VENV,
        "uid": APP_UID,
        "python": cfg.python,
        "wheels_dir": f"{VOLUME_DIR}/{pkey.slug}/wheels",
        "installer": installer.name,
        "uv": installer.path,
    }
    image = base.id
    parent_id: str | None = None
    depth = 0
    if parent is not None:
        info, have, depth = parent
        have_files = {h.rsplit("@", 1)[0] for h in have}
        files = [f for f in files if f not in have_files]
        image = parent_id = info.id
        depth += 1
        plan["incremental"] = True
    plan["files"] = files
    plan["sha256"] = {w["file"]: w["sha256"] for w in resolved if w["file"] in set(files)}
    tmpfs: tuple[str, ...] = ()
    exported: tuple[str, ...] = ()
    if export and parent is None:
        plan["export"] = True
        plan["tmpdir"] = DEPS_SCRATCH
        tmpfs = (APP_ROOT, DEPS_SCRATCH)
        exported = (
            cfg.python,
            f"{HELPERS_DIR}/assemble.py",
            "export",
            APP_ROOT[1:],
            "etc/passwd",
        )
    labels = {
        f"{LABEL_PREFIX}.deps-key": key,
        # app images inherit these labels; `kind` tells a deps image from them
        f"{LABEL_PREFIX}.kind": "deps",
        f"{LABEL_PREFIX}.deps-format": DEPS_FORMAT,
        f"{LABEL_PREFIX}.deps-project": cfg.name,
        f"{LABEL_PREFIX}.deps-base": base.id,
        f"{LABEL_PREFIX}.deps-installer": installer.name + installer.version,
        f"{LABEL_PREFIX}.deps-wheels": json.dumps(ids, separators=(",", ":")),
        f"{LABEL_PREFIX}.deps-depth": str(depth),
    }
    members = {
        "warpdrive-build/plan.json": json.dumps(plan, sort_keys=True).encode(),
        "warpdrive-build/assemble.py": assemble,
    }
    step = Step(
        name="deps",
        image=image,
        command=(cfg.python, f"{HELPERS_DIR}/assemble.py", "deps"),
        files=(("/tmp", tar_files(members)),),
        mounts=(VolumeMount(cfg.volume, VOLUME_DIR, read_only=True),),
        network="none",
        user="0:0",
        commit=CommitSpec(labels=labels, message="nox-warpdrive deps layer"),
        tmpfs=tmpfs,
        export=exported,
    )
    return DepsPlan(
        key=key,
        ref=f"warpdrive-deps/{cfg.name}:{key[:20]}",
        step=step,
        parent=parent_id,
        files=tuple(files),
    )


def fits_in_memory(resolved: list[dict[str, Any]], memory: int) -> bool:
    """Whether a virtualenv of these wheels can be built on tmpfs: the unpacked wheels and
    the installed files (with bytecode) take a few times the wheels' size each, and that
    must stay well below the engine's memory. Unknown sizes (a manifest written before
    sizes were recorded) or memory: no."""
    sizes = [w.get("size") for w in resolved]
    if memory <= 0 or not all(isinstance(s, int) and s >= 0 for s in sizes):
        return False
    return 8 * sum(s for s in sizes if isinstance(s, int)) <= memory // 4


def ensure_deps(
    engine: Engine,
    cfg: Config,
    base: ImageInfo,
    pkey: PlatformKey,
    resolved: list[dict[str, Any]],
    installer: Installer,
    out: Output,
) -> tuple[str, bool, float]:
    """The deps image for exactly these wheels: found by its key, else built (on the
    earlier deps image with the most of them, when there is one) and tagged. Returns
    (image id, whether it was found, seconds spent building)."""
    deps = plan_deps(cfg, base, pkey, resolved, installer)
    found = engine.image(deps.ref)
    if found is not None and found.labels.get(f"{LABEL_PREFIX}.deps-key") == deps.key:
        return found.id, True, 0.0
    parent = find_parent(engine, cfg, base, installer, wheel_ids(resolved))
    if parent is not None:
        deps = plan_deps(cfg, base, pkey, resolved, installer, parent)
        out(
            f"warpdrive: adding {len(deps.files)} wheels on top of the deps "
            f"layer {parent[0].id.split(':')[-1][:12]}"
        )
    elif not fits_in_memory(resolved, engine.memory_total()):
        deps = plan_deps(cfg, base, pkey, resolved, installer, export=False)
    try:
        result = run_deps(engine, deps.step, out)
    except LayerRefused as exc:
        out(f"warpdrive: {exc.message}; building the deps layer by commit instead")
        deps = plan_deps(cfg, base, pkey, resolved, installer, parent, export=False)
        result = run_deps(engine, deps.step, out)
    assert result.image_id is not None
    engine.tag(result.image_id, deps.ref)
    return result.image_id, False, result.seconds


class DamagedWheels(WarpdriveError):
    """Wheels in the volume that do not match the manifest's sha256 (found by the deps
    step, which checks every wheel before installing it)."""

    def __init__(self, files: list[str]) -> None:
        self.files = tuple(files)
        super().__init__(
            f"{len(files)} wheels in the wheelhouse do not match their sha256: "
            + ", ".join(files[:5]),
            fix="run `nox -s wheelhouse -- --verify` (it fetches or builds them again)",
        )


def run_deps(engine: Engine, step: Step, out: Output) -> RunResult:
    """Run a deps step; DamagedWheels when it refused a wheel whose hash is wrong."""
    damaged: list[str] = []

    def shown(line: str) -> None:
        if not line.startswith(DAMAGED_LINE):
            out(line)
            return
        with contextlib.suppress(ValueError):
            files = json.loads(line[len(DAMAGED_LINE) :])
            damaged.extend(str(f) for f in files if isinstance(files, list))

    try:
        return engine.run_checked(step, shown)
    except BuildError:
        if damaged:
            raise DamagedWheels(damaged) from None
        raise


#: the deps step's last line (runtime/assemble.py)
INSTALLED_IN = re.compile(r"virtualenv ready in (\d+(?:\.\d+)?) s")


class EarlyDeps:
    """A deps image for the wheels the wheelhouse has published while its builder still
    compiles sdists, built in a thread: installing and committing most packages then
    overlaps the compile, and the full deps layer afterwards adds only the built wheels
    on top (find_parent finds this image). A failure here only costs the head start: the
    regular path after the wheelhouse builds whatever is missing, and reports errors."""

    def __init__(self, engine: Engine, cfg: Config, base: ImageInfo, pkey: PlatformKey):
        self.engine, self.cfg, self.base, self.pkey = engine, cfg, base, pkey
        self.thread: threading.Thread | None = None
        self.lines: list[str] = []
        self.count = 0
        self.seconds = 0.0
        self.built = False
        self.error: WarpdriveError | None = None

    def start(self, resolved: list[dict[str, Any]], tools: dict[str, Any]) -> None:
        if self.thread is not None or not resolved:
            return
        try:
            installer = choose_installer(self.cfg, {"tools": tools}, self.pkey)
        except WarpdriveError:
            return  # the regular path reports it
        self.count = len(resolved)
        self.thread = threading.Thread(
            target=self._run, args=(resolved, installer), name="warpdrive-early-deps"
        )
        self.thread.start()

    def _run(self, resolved: list[dict[str, Any]], installer: Installer) -> None:
        started = time.monotonic()
        try:
            _, reused, _ = ensure_deps(
                self.engine, self.cfg, self.base, self.pkey, resolved, installer, self.lines.append
            )
            self.built = not reused
        except WarpdriveError as exc:
            self.error = exc
        self.seconds = time.monotonic() - started

    def cancel(self) -> None:
        """The build is being interrupted: end the thread's container now, so that
        ``join`` does not wait for its install."""
        if self.thread is not None:
            self.engine.abort()

    def join(self, out: Output) -> float | None:
        """Wait for the thread; the seconds it took, None when it did not build."""
        if self.thread is None:
            return None
        self.thread.join()
        if self.error is not None:
            out(
                f"warpdrive: installing the first {self.count} wheels early failed "
                f"({self.error.message.splitlines()[0]}); trying again after the wheelhouse"
            )
            return None
        if not self.built:
            return None
        installed = next(
            (m.group(1) for m in map(INSTALLED_IN.search, reversed(self.lines)) if m), None
        )
        detail = f"installed in {installed} s, " if installed else ""
        for line in self.lines:
            if line.startswith("warpdrive: adding "):
                out(line)  # it was built on an earlier deps layer
        out(
            f"warpdrive: deps layer for the first {self.count} wheels built while the "
            f"wheelhouse finished ({detail}{self.seconds:.1f} s in all)"
        )
        return self.seconds


def git_labels(project_dir: Path) -> dict[str, str]:
    """OCI source/revision labels when the app is in git. Credentials in a remote URL are
    stripped: labels are public."""
    labels: dict[str, str] = {}

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "-C", str(project_dir), *args], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None

    rev = git("rev-parse", "HEAD")
    if rev:
        labels["org.opencontainers.image.revision"] = rev
    remote = git("remote", "get-url", "origin")
    if remote:
        labels["org.opencontainers.image.source"] = re.sub(r"//[^/@]*@", "//", remote)
    return labels


def created_timestamp() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (
        _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc)
        if epoch and epoch.isdigit()
        else _dt.datetime.now(_dt.timezone.utc)
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class AppPlan:
    """The app layer: ``layer`` (source under APP_SRC and the launcher, as one tar whose
    names are relative to /) goes on the deps image either by appending it without a
    container, or, when the build must run something (collectstatic), by a step."""

    build_key: str
    app: App
    files: int
    layer: bytes
    commit: CommitSpec
    collectstatic: bool
    static_key: str
    helpers: bytes
    network: str | None
    server: str | None = None
    build_hook: bool = False
    #: lines to show the user about the source (files left out, very large files)
    notices: tuple[str, ...] = ()

    @property
    def runs_something(self) -> bool:
        """Whether the app layer needs a container (a build step), or can be appended."""
        return self.collectstatic or self.build_hook

    def step(self, deps_image: str, layer: bytes | None = None) -> Step:
        files: list[tuple[str, bytes]] = [("/", self.layer if layer is None else layer)]
        command: tuple[str, ...] | None = None
        if self.runs_something:
            files.append(("/tmp", self.helpers))
            command = (f"{VENV}/bin/python", f"{HELPERS_DIR}/assemble.py", "app")
        return Step(
            name="app",
            image=deps_image,
            command=command,
            files=tuple(files),
            user="0:0",
            network=self.network,
            commit=self.commit,
        )


def skeleton_tar() -> bytes:
    """The directories above the app files, with the owner and mode the deps layer gave
    them. A layer tar must carry its parents: a directory the engine has to invent while
    applying a layer gets root:root 0755 in that layer and would hide the app user's
    write access to APP_SRC."""
    return dir_tar(
        [
            ("opt", 0, 0o755),
            (APP_ROOT[1:], 0, 0o755),
            (APP_ROOT[1:] + "/.warpdrive", 0, 0o755),
            (APP_ROOT[1:] + "/bin", 0, 0o755),
            (APP_ROOT[1:] + "/lib", 0, 0o755),
            (APP_SRC[1:], APP_UID, 0o2775),
        ]
    )


#: warpdrive's build hook: run in the app layer at image build, as the app user
BUILD_HOOK = ".warpdrive/action_hooks/build"

#: where the app step records Django's STATIC_ROOT inside the image
STATIC_ROOT_RECORD = f"{APP_ROOT}/.warpdrive/static-root"


def static_inputs(
    entries: list[Entry], app: App, skip: frozenset[str] = frozenset()
) -> list[Entry]:
    """What collectstatic's output can depend on: every file that is not Python, the
    settings (module or package) and apps.py files. A change to any other .py file (views,
    models, urls) cannot change the collected files, so their output can be reused.
    ``skip``: files known not to matter (requirement files, pyproject.toml: packages are
    compared separately, by their wheels)."""
    settings_file = settings_dir = None
    if app.settings:
        rel = app.settings.replace(".", "/")
        settings_file, settings_dir = rel + ".py", rel + "/"

    def matters(e: Entry) -> bool:
        if e.relpath in skip:
            return False
        if e.kind != "file" or not e.relpath.endswith(".py"):
            return True
        if e.relpath == settings_file or (settings_dir and e.relpath.startswith(settings_dir)):
            return True
        return e.relpath.rsplit("/", 1)[-1] in ("apps.py", "manage.py")

    return [e for e in entries if matters(e)]


def not_static_inputs(cfg: Config) -> frozenset[str]:
    """pyproject.toml and every requirement file, included ones too (the shipped names
    are the files' paths relative to the project)."""
    names = {"pyproject.toml"}
    for path in cfg.requirement_files:
        with contextlib.suppress(ValueError):
            names.add(path.relative_to(cfg.project_dir).as_posix())
    with contextlib.suppress(WarpdriveError):
        names.update(name for name, _ in read_requirements(cfg).files)
    return frozenset(names)


def image_env(base: ImageInfo) -> tuple[tuple[str, str], ...]:
    base_env = dict(e.split("=", 1) for e in base.env if "=" in e)
    path = base_env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return (
        ("PATH", f"{VENV}/bin:{APP_ROOT}/bin:{path}"),
        ("VIRTUAL_ENV", VENV),
        ("APP_ROOT", APP_ROOT),
        ("HOME", APP_SRC),
        ("PYTHONUNBUFFERED", "1"),
        ("PORT", str(PORT)),
    )


def plan_app(
    cfg: Config,
    base: ImageInfo,
    pkey: PlatformKey,
    deps_key: str,
    source_label: str,
    requirements_digest: str = "",
) -> AppPlan:
    app, server = detect_app(cfg)
    rules = load_ignore_rules(cfg.project_dir)
    entries = collect(cfg.project_dir, rules)
    notices = source_notices(cfg.project_dir, rules, entries)
    digest = context_digest(cfg.project_dir, entries)
    source_tar = build_tar(cfg.project_dir, entries, uid=APP_UID, gid=0, prefix=APP_SRC[1:])
    launcher = runtime.read("start.py")
    static_lib = runtime.read("warpdrive_static.py")
    assemble = runtime.read("assemble.py")
    start_json = json.dumps(start_config(cfg), sort_keys=True).encode()
    collectstatic = cfg.collectstatic and app.kind == "django"
    build_hook = any(
        e.relpath == BUILD_HOOK and e.kind == "file" and e.mode & 0o100 for e in entries
    )
    static_key = (
        _sha(
            "static",
            base.id,
            assemble,
            context_digest(cfg.project_dir, static_inputs(entries, app, not_static_inputs(cfg))),
        )
        if collectstatic
        else ""
    )
    source_labels = git_labels(cfg.project_dir)
    build_key = _sha(
        "app",
        deps_key,
        digest,
        str(source_date_epoch()),  # the files' mtime in the layer
        launcher,
        static_lib,
        start_json,
        assemble,
        str(collectstatic),
        cfg.image,
        json.dumps(image_env(base)),
        json.dumps(source_labels, sort_keys=True),
    )
    labels = {
        "org.opencontainers.image.created": created_timestamp(),
        "org.opencontainers.image.title": cfg.name,
        "org.opencontainers.image.base.name": cfg.base_image,
        **source_labels,
        f"{LABEL_PREFIX}.platform-key": pkey.slug,
        f"{LABEL_PREFIX}.base-image": cfg.base_image,
        f"{LABEL_PREFIX}.base-image-id": base.id,
        f"{LABEL_PREFIX}.deps-key": deps_key,
        f"{LABEL_PREFIX}.build-key": build_key,
        f"{LABEL_PREFIX}.static-key": static_key,
        f"{LABEL_PREFIX}.requirements": requirements_digest,
        f"{LABEL_PREFIX}.installer-setting": cfg.installer,
        f"{LABEL_PREFIX}.kind": "app",
        f"{LABEL_PREFIX}.app": f"{app.kind} {app.module}" + (f" ({server})" if server else ""),
    }
    layer = merge_tars(
        skeleton_tar(),
        source_tar,
        tar_files({APP_ROOT[1:] + "/bin/warpdrive-start": launcher}, mode=0o755),
        tar_files(
            {
                APP_ROOT[1:] + "/lib/warpdrive_static.py": static_lib,
                APP_ROOT[1:] + "/.warpdrive/start.json": start_json,
            }
        ),
    )
    plan = {
        "app_root": APP_ROOT,
        "venv": VENV,
        "uid": APP_UID,
        "collectstatic": collectstatic,
        "build_hook": build_hook,
        "settings": app.settings or "",
        "fallback_static_root": f"{APP_SRC}/staticfiles",
    }
    helpers = tar_files(
        {
            "warpdrive-build/plan.json": json.dumps(plan).encode(),
            "warpdrive-build/assemble.py": assemble,
            "warpdrive-build/start.py": launcher,  # assemble reads the environment with it
        }
    )
    commit = CommitSpec(
        env=image_env(base),
        cmd=("warpdrive-start",),
        user=str(APP_UID),
        workdir=APP_SRC,
        exposed_ports=(f"{PORT}/tcp",),
        labels=labels,
        message=f"nox-warpdrive app layer ({source_label})",
    )
    return AppPlan(
        build_key=build_key,
        app=app,
        files=len(entries),
        layer=layer,
        commit=commit,
        collectstatic=collectstatic,
        static_key=static_key,
        helpers=helpers,
        network=cfg.network,
        server=server,
        build_hook=build_hook,
        notices=notices,
    )


def source_notices(root: Path, rules: IgnoreRules, entries: list[Entry]) -> tuple[str, ...]:
    """Lines to show about the source: secrets-looking files left out, very large files
    put in."""
    lines = [
        f"warpdrive: left out {p} (a secrets-looking file; `!{p}` in .dockerignore puts it "
        "in the image)"
        for p in secret_files_left_out(root, rules, entries)
    ]
    lines += [
        f"warpdrive: warning: {e.relpath} is {e.size / 1e6:.0f} MB and goes into the image "
        f"(add '{e.relpath}' to .dockerignore if it should not)"
        for e in large_files(entries)
    ]
    return tuple(lines)


def same_packages_or_more(current: ImageInfo, deps_key: str, wheels: list[str] | None) -> bool:
    """Whether the current image's packages are all still installed, unchanged. Packages
    only added cannot change collectstatic's output: a new Django app must be named in
    INSTALLED_APPS first, and the settings are part of the static key."""
    if current.labels.get(f"{LABEL_PREFIX}.deps-key") == deps_key:
        return True
    if wheels is None:
        return False
    try:
        before = json.loads(current.labels.get(f"{LABEL_PREFIX}.deps-wheels", ""))
    except ValueError:
        return False
    return isinstance(before, list) and set(before) <= set(wheels)


def static_root(record: bytes) -> str | None:
    """The STATIC_ROOT an app image recorded (a tar of the record file), when it is a
    directory the app owns, below APP_SRC: never "/", "/etc" or a climb out."""
    with tarfile.open(fileobj=io.BytesIO(record)) as tar:
        member = next((m for m in tar if m.isfile()), None)
        fh = tar.extractfile(member) if member else None
        root = fh.read().decode().strip() if fh else ""
    root = root.rstrip("/")
    parts = root.split("/")
    if not root.startswith(APP_SRC + "/") or ".." in parts or "." in parts or "" in parts[1:]:
        return None
    return root


def read_static(engine: Engine, image_id: str) -> tuple[bytes, bytes] | None:
    """(the record's tar, a tar of the collected files and the record at their paths in
    the image) of an app image: the host's copy, else read through one created container
    (and copied for next time, already in the form a layer takes)."""
    cached = static_cache.load(image_id)
    if cached is not None and static_root(cached[0]) is not None:
        return cached
    with engine.image_reader(image_id) as read:
        record = read(STATIC_ROOT_RECORD)
        root = static_root(record) if record is not None else None
        if record is None or root is None:
            return None
        static = read(root)
    if static is None:
        return None
    # get_archive names the members after the root's last part: put them back under its
    # parent, the record under its directory
    files = merge_tars(
        reprefix_tar(static, root.rsplit("/", 1)[0]),
        reprefix_tar(record, STATIC_ROOT_RECORD.rsplit("/", 1)[0]),
    )
    static_cache.store(image_id, record, files)
    return record, files


def reusable_static_files(
    engine: Engine,
    current: ImageInfo | None,
    app: AppPlan,
    deps_key: str = "",
    wheels: list[str] | None = None,
) -> tuple[str, bytes] | None:
    """(STATIC_ROOT, a tar of the collected files and the record at their paths) of the
    current image, when its static inputs equal this build's (then collectstatic would
    produce the same files)."""
    if current is None or not app.static_key:
        return None
    if current.labels.get(f"{LABEL_PREFIX}.static-key") != app.static_key:
        return None
    if not same_packages_or_more(current, deps_key, wheels):
        return None
    found = read_static(engine, current.id)
    if found is None:
        return None
    record, files = found
    root = static_root(record)
    assert root is not None  # read_static checked it
    return root, files


def reusable_static(
    engine: Engine,
    current: ImageInfo | None,
    app: AppPlan,
    deps_key: str = "",
    wheels: list[str] | None = None,
) -> bytes | None:
    """The collected static files of the current image as members of the app layer (with
    the directories it lacks), when they can be reused (``reusable_static_files``)."""
    found = reusable_static_files(engine, current, app, deps_key, wheels)
    if found is None:
        return None
    root, files = found
    parent = root.rsplit("/", 1)[0]
    record_dir = STATIC_ROOT_RECORD.rsplit("/", 1)[0]
    return merge_tars(parent_dirs(app.layer, parent, record_dir), files)


#: labels of an app image whose collected static files are a layer of their own, under
#: the app layer: that layer's diff ID, and the STATIC_ROOT it holds
STATIC_LAYER_LABEL = f"{LABEL_PREFIX}.static-layer"
STATIC_ROOT_LABEL = f"{LABEL_PREFIX}.static-root"
STATIC_CREATED_BY = "nox-warpdrive static files (collectstatic)"


def static_layer(root: str, files: bytes) -> bytes:
    """The collected static files as a layer of their own, with every parent directory
    (the skeleton's, and below APP_SRC as collectstatic makes them)."""
    rel = root.rsplit("/", 1)[0][len(APP_SRC) :].strip("/")
    chain: list[tuple[str, int, int]] = []
    path = APP_SRC[1:]
    for part in rel.split("/") if rel else []:
        path = f"{path}/{part}"
        chain.append((path, APP_UID, 0o2775))
    return merge_tars(skeleton_tar(), dir_tar(chain), normalize_tar(files, source_date_epoch()))


def shadows_static(layer: bytes, root: str) -> bool:
    """Whether the app layer has files at or below STATIC_ROOT (a copy collected on the
    developer's machine): on top of a static layer they would hide the collected ones,
    where collectstatic overwrites them."""
    found = tar_body(layer)
    names = found[1] if found is not None else []
    inside = root.strip("/")
    return any(n == inside or n.startswith(inside + "/") for n in names)


def named_static_layer(current: ImageInfo | None, app: AppPlan, deps: ImageInfo) -> str | None:
    """The diff ID of the current image's static layer, when this build can name it
    instead of carrying the files: same static inputs, and the layer sits right on this
    build's deps layers (so the engine has it there)."""
    if current is None or not app.static_key:
        return None
    labels = current.labels
    diff = labels.get(STATIC_LAYER_LABEL, "")
    root = labels.get(STATIC_ROOT_LABEL, "")
    if labels.get(f"{LABEL_PREFIX}.static-key") != app.static_key or not diff or not root:
        return None
    layers = current.diff_ids
    if not deps.diff_ids or layers[:-2] != deps.diff_ids or layers[-2:-1] != (diff,):
        return None
    if shadows_static(app.layer, root):
        return None
    return diff


def parent_dirs(layer: bytes, static_parent: str, record_dir: str) -> bytes:
    """Directory entries a reused-static layer needs and the app layer lacks, with the
    metadata the container build gives them: below APP_SRC as collectstatic makes them
    (app user, group 0, 2775), the record's directory as root makes it (0755)."""
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        have = {m.name.rstrip("/") for m in tar}
    wanted: list[tuple[str, int, int]] = []
    rel = static_parent[len(APP_SRC) :].strip("/")
    path = APP_SRC[1:]
    for part in rel.split("/") if rel else []:
        path = f"{path}/{part}"
        wanted.append((path, APP_UID, 0o2775))
    wanted.append((record_dir[1:], 0, 0o755))
    return dir_tar([w for w in wanted if w[0] not in have])


def split_static(
    engine: Engine, deps_id: str, app: AppPlan, built: str, found: tuple[bytes, bytes]
) -> str:
    """The image a container just built (app files and collected static files in one
    committed layer), made again as deps + a static layer + the app layer, so that the
    next code change names the static layer instead of sending it; the committed image
    is removed. When that cannot be done, the committed image stays the result."""
    record, files = found
    root = static_root(record)
    if root is None or shadows_static(app.layer, root):
        return built
    static = static_layer(root, files)
    labels = {
        **app.commit.labels,
        STATIC_LAYER_LABEL: "sha256:" + hashlib.sha256(static).hexdigest(),
        STATIC_ROOT_LABEL: root,
    }
    try:
        image_id = engine.append_layer(
            deps_id,
            app.layer,
            dataclasses.replace(app.commit, labels=labels),
            under=[(STATIC_CREATED_BY, static)],
        )
    except EngineError:
        return built
    static_cache.copy(built, image_id)
    engine.remove_image(built)
    return image_id


@dataclass(frozen=True)
class ImageResult:
    ref: str
    image_id: str
    up_to_date: bool
    deps_reused: bool
    size: int
    layers: int
    seconds: float
    timings: tuple[tuple[str, float], ...] = ()

    def summary(self) -> str:
        if self.up_to_date:
            return f"image {self.ref} up to date, nothing rebuilt ({self.seconds:.1f} s)"
        deps = "deps layer reused" if self.deps_reused else "deps layer built"
        steps = ", ".join(f"{n} {s:.1f} s" for n, s in self.timings)
        return f"image {self.ref} built: {deps}, app layer built ({steps}; {self.seconds:.1f} s)"

    def table(self) -> str:
        rows = [
            ("image", "id", "size", "layers"),
            (
                self.ref,
                self.image_id.split(":")[-1][:12],
                f"{self.size / 1e6:.1f} MB",
                str(self.layers),
            ),
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
        return "\n".join(lines)


def known_deps(
    engine: Engine,
    cfg: Config,
    current: ImageInfo | None,
    base: ImageInfo,
    pkey: PlatformKey,
    reqs: RequirementSet,
) -> ImageInfo | None:
    """The deps image of the current image, when it was built for exactly these
    requirements on this base: then the wheelhouse need not even be read (a code change
    rebuilds the app layer and nothing else)."""
    if current is None:
        return None
    labels = current.labels
    if (
        labels.get(f"{LABEL_PREFIX}.requirements") != reqs.digest
        or labels.get(f"{LABEL_PREFIX}.base-image-id") != base.id
        or labels.get(f"{LABEL_PREFIX}.platform-key") != pkey.slug
        or labels.get(f"{LABEL_PREFIX}.installer-setting") != cfg.installer
        or labels.get(f"{LABEL_PREFIX}.deps-format") != DEPS_FORMAT
    ):
        return None
    key = labels.get(f"{LABEL_PREFIX}.deps-key", "")
    deps = engine.image(f"warpdrive-deps/{cfg.name}:{key[:20]}") if key else None
    if deps is None or deps.labels.get(f"{LABEL_PREFIX}.deps-key") != key:
        return None
    return deps


def wheels_for(
    cfg: Config,
    engine: Engine,
    out: Output,
    target: tuple[ImageInfo, PlatformKey],
    reqs: RequirementSet,
    no_index: bool,
    timings: list[tuple[str, float]],
    check_files: tuple[str, ...] = (),
) -> tuple[list[dict[str, Any]], Mapping[str, Any], float | None]:
    """The wheels the wheelhouse resolved for ``reqs`` (built first when it lacks them, or
    when ``check_files`` were found damaged), the manifest, and the seconds an early deps
    layer took (None when none was built)."""
    base, pkey = target
    if reqs.empty:
        out("warpdrive: the app needs no packages")
        return [], {}, None
    manifest: Mapping[str, Any] = read_manifest(engine, cfg.volume, pkey, base.id)
    resolved = resolved_set(manifest, reqs.digest)
    if resolved is not None and not check_files:
        return resolved, manifest, None
    if resolved is None and no_index:
        what = "was never built" if not manifest else "was built for other requirements"
        raise WarpdriveError(
            f"the wheelhouse in volume {cfg.volume!r} {what} (platform {pkey.slug}), and "
            "--no-index forbids fetching anything",
            fix="run `nox -s wheelhouse` first, then `nox -s image -- --no-index`",
        )
    if resolved is None:
        out("warpdrive: the wheelhouse lacks these requirements; building them first")
    wheels_started = time.monotonic()
    early = EarlyDeps(engine, cfg, base, pkey)
    try:
        result_wh = build_wheelhouse(
            cfg,
            engine,
            out,
            on_ready=None if check_files else early.start,
            manifest=manifest,
            check_files=check_files,
            no_index=no_index,
        )
    except BaseException:
        early.cancel()
        raise
    finally:
        early_seconds = early.join(out)
    out(f"warpdrive: {result_wh.summary()}")
    timings.append(("wheelhouse", time.monotonic() - wheels_started))
    if early_seconds is not None:
        timings.append(("early deps", early_seconds))
    # as the builder wrote it (the same platform: check_compatible), else read
    written = result_wh.manifest if result_wh.key.slug == pkey.slug else {}
    manifest = dict(written) or read_manifest(engine, cfg.volume, pkey, base.id)
    resolved = resolved_set(manifest, reqs.digest)
    if resolved is None:
        raise WarpdriveError(
            "the wheelhouse was built but does not list these requirements",
            fix="run `nox -s wheelhouse` and read its output",
        )
    return resolved, manifest, early_seconds


def build_image(
    cfg: Config,
    engine: Engine,
    out: Output,
    *,
    no_index: bool | None = None,
    tag: str | None = None,
) -> ImageResult:
    """Build (or find up to date) the app image. Without --no-index, requirements the
    wheelhouse lacks are built into it first (cached, incremental); with it, they are an
    error and nothing is fetched."""
    started = time.monotonic()
    no_index = cfg.no_index if no_index is None else no_index
    ref = tag or cfg.image
    split_ref(ref)
    base, pkey = probe_image(engine, cfg.base_image, "base-image", cfg)
    reqs = requirements_for(cfg)
    current = engine.image(ref)
    timings: list[tuple[str, float]] = []

    resolved: list[dict[str, Any]] | None = None
    early_seconds: float | None = None  # an early deps layer was built in this run
    deps_image = known_deps(engine, cfg, current, base, pkey, reqs)
    if deps_image is not None:
        deps_key = deps_image.labels[f"{LABEL_PREFIX}.deps-key"]
    else:
        resolved, manifest, early_seconds = wheels_for(
            cfg, engine, out, (base, pkey), reqs, no_index, timings
        )
        installer = choose_installer(cfg, manifest, pkey) if resolved else Installer("none")
        deps_key = plan_deps(cfg, base, pkey, resolved, installer).key
    app = plan_app(
        cfg,
        base,
        pkey,
        deps_key,
        source_label=cfg.project_dir.name,
        requirements_digest=reqs.digest,
    )
    for line in app.notices:
        out(line)
    if current is not None and current.labels.get(f"{LABEL_PREFIX}.build-key") == app.build_key:
        return ImageResult(
            ref, current.id, True, True, current.size, current.layers, time.monotonic() - started
        )

    if deps_image is not None:
        deps_id, deps_reused = deps_image.id, True
    else:
        assert resolved is not None
        try:
            deps_id, deps_reused, seconds = ensure_deps(
                engine, cfg, base, pkey, resolved, installer, out
            )
        except DamagedWheels as exc:
            # fetched or built again; a rebuilt wheel has another hash, hence another key
            out(f"warpdrive: warning: {exc.message}; fetching or building them again")
            resolved, manifest, _ = wheels_for(
                cfg, engine, out, (base, pkey), reqs, no_index, timings, exc.files
            )
            installer = choose_installer(cfg, manifest, pkey)
            deps_key = plan_deps(cfg, base, pkey, resolved, installer).key
            app = plan_app(cfg, base, pkey, deps_key, cfg.project_dir.name, reqs.digest)
            deps_id, deps_reused, seconds = ensure_deps(
                engine, cfg, base, pkey, resolved, installer, out
            )
        if not deps_reused:
            timings.append(("deps", seconds))
        # found, but built moments ago from the wheels the wheelhouse published early
        deps_reused = deps_reused and early_seconds is None
    app_started = time.monotonic()
    layer = app.layer
    needs_container = app.runs_something
    spec = app.commit
    under: list[tuple[str, bytes | str]] = []  # the static layer, named or carried
    static_reused = False
    root = ""
    if app.collectstatic and not app.build_hook:
        deps_info = deps_image if deps_image is not None else engine.image(deps_id)
        named = named_static_layer(current, app, deps_info) if deps_info else None
        if named is not None and current is not None:
            root = current.labels[STATIC_ROOT_LABEL]
            under = [(STATIC_CREATED_BY, named)]
        else:
            wheels = wheel_ids(resolved) if resolved is not None else None
            found = reusable_static_files(engine, current, app, deps_key, wheels)
            if found is not None:
                root, files = found
                if shadows_static(layer, root):
                    parent = root.rsplit("/", 1)[0]
                    record_dir = STATIC_ROOT_RECORD.rsplit("/", 1)[0]
                    layer = merge_tars(layer, parent_dirs(layer, parent, record_dir), files)
                else:
                    static = static_layer(root, files)
                    named = "sha256:" + hashlib.sha256(static).hexdigest()
                    under = [(STATIC_CREATED_BY, static)]
        if named is not None:
            labels = {**spec.labels, STATIC_LAYER_LABEL: named, STATIC_ROOT_LABEL: root}
            spec = dataclasses.replace(spec, labels=labels)
        static_reused = named is not None or layer is not app.layer
        if static_reused:
            needs_container = False
            out("warpdrive: static inputs unchanged; reusing the collected static files")
    image_id: str | None = None
    if not needs_container:
        try:
            image_id = engine.append_layer(deps_id, layer, spec, under=under)
        except EngineError as exc:
            out(f"warpdrive: {exc.message}; building the app layer in a container instead")
            needs_container, layer, static_reused = app.runs_something, app.layer, False
    if image_id is None:
        step = app.step(deps_id, layer)
        if not needs_container:
            step = Step(**{**step.__dict__, "command": None, "files": (("/", layer),)})
        image_id = engine.run_checked(step, out).image_id
        assert image_id is not None
        if app.collectstatic and needs_container:
            # a host copy of what was collected: the next code change reads no image
            collected = None
            with contextlib.suppress(WarpdriveError):
                collected = read_static(engine, image_id)
            if collected is not None and not app.build_hook:
                image_id = split_static(engine, deps_id, app, image_id, collected)
    if static_reused and current is not None:
        static_cache.copy(current.id, image_id)  # the same files, under the new image
    timings.append(("app", time.monotonic() - app_started))
    engine.tag(image_id, ref)
    final = engine.image(ref)
    assert final is not None
    if current is not None and current.id != final.id:
        # the image this tag named before: removed unless another tag names it or a
        # container uses it (the engine refuses that); deps images stay, they are the cache
        old = engine.image(current.id)
        if old is not None and not old.tags:
            engine.remove_image(current.id)
    return ImageResult(
        ref,
        final.id,
        False,
        deps_reused,
        final.size,
        final.layers,
        time.monotonic() - started,
        tuple(timings),
    )
