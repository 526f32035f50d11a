"""The wheelhouse: every wheel the app needs, built inside the builder image and kept in
a named volume, per platform key. See runtime/build_wheels.py for the volume layout."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion

from .. import runtime
from ..config import Config, normalize, start_config
from ..engine import Engine, ImageInfo, Output
from ..errors import BuildError, CommandMissing, ConfigError, WarpdriveError, disk_message
from ..inputs.model import ProjectBuild, host_target, target_for
from ..inputs.read import inputs_line, read_inputs
from ..inputs.requirements import RequirementSet, read_requirements
from ..plan import HELPERS_DIR, VOLUME_DIR, Step, VolumeMount, tar_files
from ..platform import PROBE_SCRIPT, PlatformKey, check_compatible, parse_probe_output
from ..runtime import protocol
from ..runtime.start import (
    App,
    NotDetected,
    choose_server,
    detect,
    read_environment,
    required_packages,
)
from ..source.archive import build_tar
from ..source.context import collect, load_ignore_rules
from . import buildenv, cross, probe_cache
from .cache_bounds import needs_upkeep, pruned_line
from .manifest import VolumeLostFiles as VolumeLostFiles
from .manifest import check_kept as check_kept
from .manifest import manifest_path as manifest_path
from .manifest import read_manifest as read_manifest
from .manifest import remember_sets
from .manifest import resolved_set as resolved_set
from .wheels import Wheel, wheels_from_manifest


def detect_app(cfg: Config) -> tuple[App, str | None]:
    """How the image will start the app, decided on the host at build time with the
    launcher's own code: an app the image could not start fails the build."""
    config = start_config(cfg)
    # the image applies .warpdrive/environment before detecting; the host's own
    # environment is not the image's and is left out
    env = read_environment(str(cfg.project_dir))
    try:
        app = detect(str(cfg.project_dir), env=env, config=config)
        server = choose_server(app, config, env) if app.interface else None
    except NotDetected as exc:
        raise ConfigError(
            str(exc),
            fix=exc.fix
            or "add a wsgi.py or asgi.py with `application`, or set `app-module = "
            '"package.module:app"` or `start = "..."` in [tool.warpdrive]',
        ) from exc
    return app, server


def server_extras(cfg: Config, names: set[str]) -> tuple[str, ...]:
    """The server (and WhiteNoise for Django) the image needs, when the app's requirements
    lack them."""
    app, server = detect_app(cfg)
    return _extras(app, server, names)


def _extras(app: App, server: str | None, names: set[str]) -> tuple[str, ...]:
    return tuple(p for p in required_packages(app, server) if normalize(p) not in names)


@dataclass(frozen=True)
class BuildInputs:
    """What one image build reads from the app's directory, read once at its start and
    handed down to the wheelhouse, the deps layer and the app layer (static), so that
    they agree and nothing is read (or the app detected) again mid-build: the
    requirement set for the base image's platform (the server included), how the image
    starts the app, and the requirement files' shipped names (never static inputs)."""

    reqs: RequirementSet
    app: App
    server: str | None
    requirement_names: frozenset[str]


def build_inputs(cfg: Config, target: PlatformKey | None = None) -> BuildInputs:
    """The build's inputs, read once (``target`` as for requirements_for)."""
    base = _read_inputs_for(cfg, target)
    app, server = detect_app(cfg)
    files = base.files
    if base.locked_from:  # pins from a lock: the requirement files were not read
        try:
            files = read_requirements(cfg).files
        except WarpdriveError:  # unused, and maybe broken: none is then named
            files = ()
    reqs = dataclasses.replace(base, extra=_extras(app, server, base.names()))
    return BuildInputs(reqs, app, server, frozenset(name for name, _ in files))


#: image reference -> the platform key last probed for it in this process: what a
#: requirement set is selected for when the caller does not pass the target
_PROBED: dict[str, PlatformKey] = {}


def requirements_for(cfg: Config, target: PlatformKey | None = None) -> RequirementSet:
    """The app's requirement set for the image it runs in (``target``: the base image's
    key; by default the one last probed for ``cfg.base_image``, else this host): a lock's
    markers and wheels are chosen for it. The server the image needs is added when the
    requirements lack it."""
    base = _read_inputs_for(cfg, target)
    return dataclasses.replace(base, extra=server_extras(cfg, base.names()))


def _read_inputs_for(cfg: Config, target: PlatformKey | None) -> RequirementSet:
    key = target or _PROBED.get(cfg.base_image)
    return read_inputs(cfg, target_for(key) if key is not None else host_target())


def probe_image(
    engine: Engine, ref: str, role: str, cfg: Config, store: bool = True
) -> tuple[ImageInfo, PlatformKey]:
    """The image and its platform key, probed with the configured ``python`` (Python run
    in a throwaway container, no network) and, with ``store``, cached by image id and
    that command. A ``python`` the image lacks is a ConfigError naming the key and the
    image, cached probe or not."""
    info = engine.require_image(ref, role)
    key = probe_cache.load(info.id, cfg.python)
    if key is None:
        try:
            output = engine.run_probe(info.id, [cfg.python, "-c", PROBE_SCRIPT], network="none")
        except CommandMissing as exc:
            raise ConfigError(
                f"`python = {cfg.python!r}` in [tool.warpdrive]: {role} {ref} has no such "
                f"command (the engine said: {exc.said})",
                fix=f"set `python` to a Python command {ref} has (the default is "
                f"\"python3\"; `docker run --rm --entrypoint sh {ref} -c 'command -v python3'` "
                "shows where it is), or use an image that has it",
            ) from exc
        key = parse_probe_output(output, ref)
        if store:
            probe_cache.store(info.id, cfg.python, key)
    _PROBED[ref] = key
    return info, key


@dataclass(frozen=True)
class WheelhousePlan:
    """Pure data: one ``pip wheel`` run in the builder image for one platform key."""

    volume: str
    builder_image: str
    key: PlatformKey
    requirements: RequirementSet
    no_index: bool
    network: str | None
    python: str
    installer: str = "auto"
    #: hash every published wheel, not only those whose size or mtime changed
    verify: bool = False
    #: hash these wheels (found damaged by an install)
    check_files: tuple[str, ...] = ()
    #: the volume's bound in bytes (None: a share of the engine's disk)
    cache_max_size: int | None = None
    #: "unused": --prune (only what the current set uses stays); "": the bound
    prune: str = ""
    #: with --prune: the other platform keys' wheelhouses go too
    all_keys: bool = False
    #: "upkeep": only record the set's use and keep the bound (nothing is built)
    mode: str = ""
    #: show sdist builds' output as it comes (it always goes to a log in the volume)
    verbose: bool = False
    #: resolve again from the package index, keeping no version the wheelhouse has
    upgrade: bool = False
    #: another CPU's key made by the engine's own builder (cross.py: cross_plan)
    cross: Mapping[str, Any] | None = None
    #: the pins a native run resolved, left to this key's builder (cross.py)
    pins: tuple[tuple[str | None, ...], ...] | None = None

    def plan_json(self) -> bytes:
        reqs = self.requirements
        locked = (
            {
                "locked": [p.plan() for p in reqs.locked],
                "project": reqs.project.plan() if reqs.project else None,
                "members": [m.plan() for m in reqs.members],
                "indexes": list(reqs.indexes),
            }
            if reqs.locked_from
            else {}
        )
        return json.dumps(
            {
                **locked,
                "key": self.key.slug,
                "volume_dir": VOLUME_DIR,
                "req_dir": f"{HELPERS_DIR}/req",
                "top": list(self.requirements.top),
                "extra": list(self.requirements.extra),
                "requirements_hash": self.requirements.digest,
                "no_index": self.no_index,
                "upgrade": self.upgrade,
                "python": self.python,
                "installer": self.installer,
                "verify": self.verify,
                "check_files": list(self.check_files),
                "cache_max_size": self.cache_max_size,
                "prune": self.prune,
                "all_keys": self.all_keys,
                "mode": self.mode,
                "verbose": self.verbose,
                "platform_key": json.loads(self.key.to_json()),
                **({"cross": self.cross} if self.cross else {}),
                **({"pins": [list(p) for p in self.pins]} if self.pins is not None else {}),
            },
            sort_keys=True,
        ).encode()

    def step(self) -> Step:
        members = {
            "plan.json": self.plan_json(),
            **runtime.files(runtime.BUILDER),
        }
        for name, data in self.requirements.files:
            members[f"req/{name}"] = data
        if self.requirements.project is not None:
            members["project.tar"] = project_archive(self.requirements.project)
        for member in self.requirements.members:
            members[member.archive] = project_archive(member)
        return Step(
            name="wheelhouse",
            image=self.builder_image,
            # -B: its modules' bytecode comes from the volume, hash-checked, and Python
            # writes none itself (runtime/bytecode.py)
            command=(self.python, "-B", f"{HELPERS_DIR}/build_wheels.py"),
            files=(("/tmp", tar_files({f"warpdrive-build/{k}": v for k, v in members.items()})),),
            mounts=(VolumeMount(self.volume, VOLUME_DIR),),
            network=self.network,
            uses_secrets=True,
        )


def project_archive(project: ProjectBuild) -> bytes:
    """The app source the project is built from, as the app layer has it (.dockerignore
    and the default exclusions apply): shipped as data, never mounted."""
    rules = load_ignore_rules(project.root)
    return build_tar(project.root, collect(project.root, rules))


@dataclass(frozen=True)
class WheelhouseResult:
    key: PlatformKey
    up_to_date: bool
    new: tuple[str, ...]
    resolved: int
    seconds: float
    #: the manifest as this run left it (empty when the builder did not report it)
    manifest: Mapping[str, Any] = field(default_factory=dict)
    #: the requirements are empty: no builder ran
    nothing: bool = False
    #: the builder image's id (what reads and writes the volume for a push or export)
    builder_id: str = ""

    def summary(self) -> str:
        if self.nothing:
            return "wheelhouse: nothing to build, the app needs no packages"
        if self.up_to_date:
            return (
                f"wheelhouse up to date for {self.key.slug}: {self.resolved} wheels, nothing "
                f"downloaded or built ({self.seconds:.1f} s)"
            )
        names = [n.split("-")[0] for n in self.new]
        new = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        return (
            f"wheelhouse {self.key.slug}: {self.resolved} wheels, {len(self.new)} new "
            f"({new or 'none'}), {self.resolved - len(self.new)} reused ({self.seconds:.1f} s)"
        )


#: called with the resolved wheels the builder has already published and the
#: manifest-style tools entry, while sdists still build
ReadyCallback = Callable[[list[Wheel], dict[str, Any]], None]


@dataclass(frozen=True)
class Seed:
    """Where wheels may come from before anything is fetched or built: a wheelhouse
    image in a registry (``kind="image"``, ``where`` its REF; wheelhouse/image.py) or a
    CI cache directory (``kind="dir"``; wheelhouse/directory.py)."""

    kind: str
    where: str


def seeds_for(cfg: Config) -> tuple[Seed, ...]:
    """The seeds every wheelhouse build of the app uses: `wheelhouse-image`, if set."""
    return (Seed("image", cfg.wheelhouse_image),) if cfg.wheelhouse_image else ()


def seed_wheelhouse(
    engine: Engine,
    cfg: Config,
    key: PlatformKey,
    builder_id: str,
    seeds: tuple[Seed, ...],
    manifest: Mapping[str, Any],
    digest: str,
    out: Output,
) -> Mapping[str, Any]:
    """Seed the volume from each source in turn while it lacks the requirement set
    ``digest``; the manifest as the last import left it. A source that has nothing (or
    cannot be reached) says so in a line; the build goes on without it. One that is not
    needed (the volume has the set) is not even asked, and a line says so."""
    # imported here: a build whose wheelhouse is complete never needs them
    from .directory import import_dir
    from .image import pull_seed
    from .transfer import Wheelhouse

    wh = Wheelhouse(cfg.volume, key, builder_id, cfg.python)
    for i, seed in enumerate(seeds):
        if resolved_set(manifest, digest) is not None and not cfg.upgrade:
            where = ", ".join(s.where for s in seeds[i:])
            out(
                "warpdrive: the volume has every wheel these requirements need; "
                f"not seeded from {where}"
            )
            break
        engine.ensure_volume(cfg.volume)
        if seed.kind == "dir":
            imported = import_dir(engine, wh, Path(seed.where), manifest, out)
        else:
            imported = pull_seed(engine, wh, seed.where, manifest, out)
        if imported is not None and imported.manifest:
            manifest = imported.manifest
    return manifest


def _targets(cfg: Config, engine: Engine) -> tuple[ImageInfo, PlatformKey, PlatformKey]:
    """The builder image, its platform key and the base image's (checked to fit)."""
    builder_info, builder_key = probe_image(engine, cfg.builder_image, "builder-image", cfg)
    base_key = builder_key
    if cfg.base_image != cfg.builder_image:
        _, base_key = probe_image(engine, cfg.base_image, "base-image", cfg)
        check_compatible(cfg.builder_image, builder_key, cfg.base_image, base_key)
    return builder_info, builder_key, base_key


def _say_notes(reqs: RequirementSet, out: Output) -> None:
    """What the lock reader left out, and why (a wheel URL refused: its sdist is built
    instead), said after the line naming the lock."""
    for note in (n for pin in reqs.locked for n in pin.notes):
        out(note)


def build_wheelhouse(
    cfg: Config,
    engine: Engine,
    out: Output,
    *,
    no_index: bool = False,
    on_ready: ReadyCallback | None = None,
    manifest: Mapping[str, Any] | None = None,
    check: bool = False,
    verify: bool = False,
    check_files: tuple[str, ...] = (),
    seeds: tuple[Seed, ...] | None = None,
    announce: bool = True,
    prune: str = "",
    all_keys: bool = False,
    reqs: RequirementSet | None = None,
) -> WheelhouseResult:
    """Build what the wheelhouse lacks for the requirements (``reqs``: as the image build read them,
    else read here). ``on_ready`` hears, once, which resolved wheels are published before the
    builder finishes (the image build starts its deps layer with them). ``manifest``: the volume's
    manifest for the base image's platform, when the caller has just read it. ``seeds``: where
    wheels may come from first when the volume lacks the requirement set (default:
    `wheelhouse-image`). ``announce``: say what the app is installed from (an image build says it
    once itself, whether or not the wheelhouse is built).

    A listed set is taken as it is, unless ``check`` (the builder compares sizes and mtimes
    with the manifest, hashing what changed; a volume that lost what it wrote is said),
    ``verify`` (all hashed) or ``check_files`` (these hashed): a damaged or missing wheel
    is fetched or built again.

    Then the set's use is recorded and the volume bounded (keep_up); ``prune="unused"``
    and ``all_keys``: --prune and --all-keys (runtime/wheel_cache.py)."""
    started = time.monotonic()
    builder_info, builder_key, base_key = _targets(cfg, engine)
    reqs = requirements_for(cfg, base_key) if reqs is None else reqs
    if announce:
        out(inputs_line(cfg, reqs))
    if reqs.empty:
        return WheelhouseResult(builder_key, True, (), 0, time.monotonic() - started, nothing=True)
    _say_notes(reqs, out)
    if manifest is None or base_key.slug != builder_key.slug:
        manifest = read_manifest(engine, cfg.volume, builder_key, builder_info.id)
    seeds = seeds_for(cfg) if seeds is None else seeds
    if seeds:
        manifest = seed_wheelhouse(
            engine, cfg, builder_key, builder_info.id, seeds, manifest, reqs.digest, out
        )
    done = resolved_set(manifest, reqs.digest)
    plan = builder_plan(
        cfg,
        (builder_info, builder_key),
        reqs,
        no_index,
        verify=verify,
        check_files=check_files,
        prune=prune,
        all_keys=all_keys,
    )
    if done is not None and not (check or verify or check_files or prune or cfg.upgrade):
        manifest = keep_up(engine, plan, manifest, out)
        seconds = time.monotonic() - started
        return WheelhouseResult(
            builder_key, True, (), len(done), seconds, manifest, builder_id=builder_info.id
        )
    summary = cross.run(
        plan,
        cfg.cross_builder,
        lambda ref: probe_image(engine, ref, "builder-image", cfg),
        lambda p, ready: _run_builder(engine, p, ready, out, kept=check),
        on_ready,
        out,
    )
    return _result(builder_key, builder_info.id, summary, time.monotonic() - started)


def _result(
    key: PlatformKey, builder_id: str, summary: Mapping[str, Any], seconds: float
) -> WheelhouseResult:
    """What a builder run reported (its summary line), as the result."""
    written = summary.get("manifest")
    return WheelhouseResult(
        key,
        bool(summary.get("up_to_date")),
        tuple(summary.get("new", ())),
        int(summary.get("resolved", 0)),
        seconds,
        written if isinstance(written, dict) else {},
        builder_id=builder_id,
    )


def keep_up(
    engine: Engine, plan: WheelhousePlan, manifest: Mapping[str, Any], out: Output
) -> Mapping[str, Any]:
    """For a requirement set found complete (nothing to build): the builder's upkeep
    (its use recorded, the volume kept under its bound) when the recorded use is getting
    old or the volume was over its limit; the manifest as it then is."""
    if not needs_upkeep(manifest, plan.requirements.digest, plan.cache_max_size):
        return manifest
    kept = _run_builder(engine, dataclasses.replace(plan, mode="upkeep"), None, out)
    written = kept.get("manifest")
    return written if isinstance(written, dict) and written else manifest


def upkeep_for(
    cfg: Config, engine: Engine, reqs: RequirementSet, manifest: Mapping[str, Any], out: Output
) -> Mapping[str, Any]:
    """keep_up for an image build that found its requirement set complete in
    ``manifest`` (read for the base image's platform key, which the builder's equals)."""
    if not needs_upkeep(manifest, reqs.digest, cfg.cache_max_size):
        return manifest  # the common case: no probe, no container
    builder_info, builder_key, _ = _targets(cfg, engine)
    plan = builder_plan(cfg, (builder_info, builder_key), reqs, True)
    return keep_up(engine, plan, manifest, out)


def builder_plan(
    cfg: Config,
    builder: tuple[ImageInfo, PlatformKey],
    reqs: RequirementSet,
    no_index: bool,
    **more: Any,
) -> WheelhousePlan:
    """The builder's plan for ``reqs`` with the app's settings (``more``: this run's)."""
    info, key = builder
    plan = WheelhousePlan(cfg.volume, info.id, key, reqs, no_index, cfg.network, cfg.python)
    return dataclasses.replace(
        plan,
        installer=cfg.installer,
        cache_max_size=cfg.cache_max_size,
        verbose=cfg.verbose,
        upgrade=cfg.upgrade,
        **more,
    )


def _run_builder(
    engine: Engine,
    plan: WheelhousePlan,
    on_ready: ReadyCallback | None,
    out: Output,
    kept: bool = False,
) -> dict[str, Any]:
    """Run the builder with the build secrets; its summary. Its output is shown redacted
    (the machine-read lines are not); a failure is the BuildError naming its cause.
    ``kept``: check that the volume kept the manifest the builder wrote (a tmpfs volume
    does not), when it wrote one."""
    engine.ensure_volume(plan.volume)
    secrets = buildenv.build_secrets()
    lines: list[str] = []

    def tee(line: str) -> None:
        lines.append(line)
        kind = (protocol.parse(line) or ("", None))[0]
        if kind == "ready":
            ready = _ready(line)
            if ready is not None and on_ready is not None:
                on_ready(*ready)
            return
        if kind == "pruned":
            said = _pruned(line, plan.volume)
            if said:
                out(said)
            return
        if kind not in ("summary", "failure"):
            out(buildenv.redact(line, secrets))

    with engine.secrets_volume(secrets, plan.builder_image) as secrets_volume:
        result = engine.run(plan.step(), tee, secrets_volume)
    if result.exit_code != 0:
        where = (plan.volume, plan.builder_image)
        raise builder_failure(result.exit_code, _failure(lines), secrets, where)
    summary = _summary(lines)
    written = summary.get("manifest")
    if isinstance(written, dict):
        remember_sets(plan.volume, plan.key, written)
    if kept and isinstance(written, dict) and not summary.get("up_to_date"):
        check_kept(engine, plan.volume, plan.key, plan.builder_image)
    return summary


#: the volume and the builder image of a run (where its logs are read), when known
Where = tuple[str, str] | None

_KEPT = (
    "the manifest is unchanged (earlier images and --no-index builds are not affected); "
    "wheels fetched so far are kept for the next run"
)


def builder_failure(
    code: int, failure: Mapping[str, Any], secrets: Mapping[str, bytes], where: Where = None
) -> BuildError:
    """The error for a failed builder, naming its cause and the fix for that cause.
    ``where``: the volume and builder image (a build's whole output is read there; a
    full volume is named)."""
    stage = str(failure.get("stage") or ("killed" if code in (137, 143) else "unknown"))
    package = failure.get("package")
    what = f" {package}" if isinstance(package, str) and package else ""
    last = _last_lines(failure, secrets) + _log_note(failure, where)
    messages = {
        "resolve": (
            f"no version of{what or ' a requirement'} could be found or resolved{last}",
            "check the name and version in the requirements; a private package needs "
            "its index (PIP_INDEX_URL / PIP_EXTRA_INDEX_URL on the host reach the builder)",
        ),
        "network": (
            f"the build container cannot reach the package index{last}",
            "give build containers a way out (an engine whose bridge has no route out: "
            '`network = "host"` in [tool.warpdrive]), check the proxy and PIP_INDEX_URL, '
            "or build offline from wheels you have: `--no-index` with `wheelhouse-image` "
            "or after `nox -s wheelhouse -- --import DIR`",
        ),
        "download": (
            f"downloading{what or ' packages'} failed{last}",
            "check the network, the proxy and PIP_INDEX_URL (the host's CA bundle is "
            "passed in), then run again: what was fetched is kept",
        ),
        "compile": (
            f"compiling{what or ' an sdist'} failed{last}",
            "the builder image needs a compiler and the package's -dev headers: set "
            "`builder-image` to an image with them (e.g. build-essential, python3-dev, "
            "libpq-dev for psycopg2), or pin a version that has a wheel for this platform",
        ),
        "killed": (
            f"the builder was killed (exit code {code}: out of memory, or stopped by "
            "`docker kill`/`docker rm -f`)",
            "give the engine more memory (or build fewer sdists at once), then run again",
        ),
        "disk": disk_message(failure, where[0] if where else "", last),
        "tools": (f"the builder could not get its tools{last}", 'set installer = "pip"'),
        "internal": (
            f"the wheelhouse builder failed{last}",
            "this is a bug in nox-warpdrive: report it with the lines above; "
            "`nox -s wheelhouse -- --verify` checks the volume",
        ),
        **_lock_messages(failure, what, last),
        **_python_messages(failure, what, last),
    }
    message, fix = messages.get(
        stage,
        (
            f"building the wheelhouse failed (exit code {code}){last}",
            "read the builder's output above; run again with the same command to retry",
        ),
    )
    return BuildError(f"{message}\n{_KEPT}", fix=fix)


def _lock_messages(failure: Mapping[str, Any], what: str, last: str) -> dict[str, tuple[str, str]]:
    """Messages and fixes of the stages only a locked plan has."""
    return {
        "hash": (
            f"{_where(failure)}the lock does not allow the file of{what} the builder got: "
            f"{failure.get('file')} has sha256 {failure.get('got')}, the lock allows "
            f"{' or '.join(map(str, failure.get('expected') or ())) or 'other hashes'}; "
            "it was not installed",
            "if the lock is right, the index serves another file than was locked (check "
            "PIP_INDEX_URL and mirrors); if the file is right, lock again (`uv lock`, "
            "`poetry lock`, `pipenv lock`, or regenerate the hashes)",
        ),
        "missing": (
            f"{_where(failure)}{(what or ' a locked package').strip()} is missing from the "
            f"index: no file the lock allows is there{last}",
            "check PIP_INDEX_URL / PIP_EXTRA_INDEX_URL (the lock's own index must be "
            "reachable from the builder), or lock again against the index you use",
        ),
        "platform": (
            f"no file the lock allows for{what} fits the builder's Python{last}",
            "lock for this platform, or use a base image the lock has wheels for",
        ),
        "project": (
            f"building the project{what} itself failed{last}",
            "fix its packaging (pyproject.toml [build-system], its package layout), or if "
            "the app is not meant to be installed as a package: `package-mode = false` "
            "([tool.poetry]), `package = false` ([tool.uv]), or `install-project = false` "
            "in [tool.warpdrive]",
        ),
    }


def _last_lines(failure: Mapping[str, Any], secrets: Mapping[str, bytes]) -> str:
    """The builder's last lines, redacted, as the message shows them ('' for none)."""
    detail = [_clip(buildenv.redact(str(x), secrets)) for x in failure.get("detail") or ()]
    return ("; its last lines:\n" + "\n".join("  | " + x for x in detail)) if detail else ""


#: a line of the builder's output longer than this is cut in a message (pip's "from
#: versions: ..." lists every release ever made: thousands of characters)
_LINE_MAX = 400


def _clip(line: str) -> str:
    return line if len(line) <= _LINE_MAX else f"{line[:_LINE_MAX]} ... ({len(line)} characters)"


def _log_note(failure: Mapping[str, Any], where: Where) -> str:
    """Where a failed build's whole output is (its log in the volume), and the command
    that shows it."""
    log = failure.get("log")
    if not isinstance(log, str) or not log or log.startswith(("/", "..")):
        return ""
    if where is None:
        return f"\n(the whole output: {log} in the wheelhouse volume)"
    volume, image = where
    image = image.split(":")[-1][:12] if image.startswith("sha256:") else image
    return f"\n(the whole output: `docker run --rm -v {volume}:/w:ro {image} cat /w/{log}`)"


def _python_messages(
    failure: Mapping[str, Any], what: str, last: str
) -> dict[str, tuple[str, str]]:
    """The resolve stage's message and fix when the releases were left out for their
    Requires-Python: the Python is the base image's, so the fix is a newer base image
    (or an older release), not the requirement's name or index."""
    needs = [str(n) for n in failure.get("needs") or () if n]
    if failure.get("stage") != "resolve" or not needs:
        return {}
    python = str(failure.get("python") or "")
    name = what.strip() or "a requirement"
    left = _left_out(name, [str(v) for v in failure.get("versions") or ()])
    which = (
        f"every release of {name} needs"
        if failure.get("all")
        else f"the releases of {name} that would fit need"
    )
    example = _python_image(needs[0])
    return {
        "resolve": (
            f"{which} Python {' or '.join(needs)}{left}, and the base image has Python "
            f"{python or 'of another version'}{last}",
            f"use a base image (and builder image) with a Python that satisfies "
            f"{needs[0]}{example}: set `base-image` and `builder-image` in "
            f"[tool.warpdrive]; or require a release of {name} that supports Python "
            f"{'.'.join(python.split('.')[:2]) or 'the base image has'}",
        )
    }


def _left_out(name: str, versions: list[str]) -> str:
    """The releases of the requirement ``name`` that its Requires-Python left out, the
    newest five and how many more (those the requirement's own specifier excludes are
    not the cause, and are not named)."""
    try:
        spec = Requirement(name).specifier
        kept = [v for v in versions if spec.contains(v, prereleases=True)] or versions
    except (InvalidRequirement, InvalidVersion):
        kept = versions
    if not kept:
        return ""
    more = f" and {len(kept) - 5} more" if len(kept) > 5 else ""
    return f" (left out: {', '.join(kept[-5:])}{more})"


def _python_image(spec: str) -> str:
    """', e.g. python:3.12-slim' for a Requires-Python such as '>=3.12' ('' when it says
    no lowest version)."""
    m = re.search(r">=?\s*(\d+)\.(\d+)", spec)
    if not m:
        return ""
    major, minor = int(m.group(1)), int(m.group(2)) + (0 if ">=" in spec else 1)
    return f", e.g. python:{major}.{minor}-slim" if major == 3 and minor < 99 else ""


def _where(failure: Mapping[str, Any]) -> str:
    """``uv.lock line 12: `` when the builder said which entry failed."""
    where = failure.get("where")
    return f"{where}: " if isinstance(where, str) and where else ""


def _failure(lines: list[str]) -> dict[str, Any]:
    data = protocol.last(lines, "failure")
    return data if isinstance(data, dict) else {}


def _pruned(line: str, volume: str) -> str | None:
    """The line to say of the builder's upkeep report (cache_bounds.pruned_line)."""
    data = protocol.last([line], "pruned")
    return pruned_line(data, volume) if isinstance(data, dict) else None


def _ready(line: str) -> tuple[list[Wheel], dict[str, Any]] | None:
    data = protocol.last([line], "ready")
    if not isinstance(data, dict):
        return None
    resolved, tools = wheels_from_manifest(data.get("resolved")), data.get("tools")
    if resolved is None:
        return None
    return resolved, tools if isinstance(tools, dict) else {}


def _summary(lines: list[str]) -> dict[str, Any]:
    data = protocol.last(lines, "summary")
    return data if isinstance(data, dict) else {}
