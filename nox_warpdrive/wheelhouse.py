"""The wheelhouse: every wheel the app needs, built inside the builder image and kept in
a named volume, per platform key. See runtime/build_wheels.py for the volume layout."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import buildenv, probe_cache, runtime
from .config import Config, RequirementSet, normalize, start_config
from .context import build_tar, collect, load_ignore_rules
from .engine import Engine, ImageInfo, Output
from .errors import BuildError, CommandMissing, ConfigError
from .inputs import ProjectBuild, host_target, read_inputs, target_for
from .plan import HELPERS_DIR, VOLUME_DIR, Step, VolumeMount, tar_files
from .platform import PROBE_SCRIPT, PlatformKey, check_compatible, parse_probe_output
from .runtime.start import (
    App,
    NotDetected,
    choose_server,
    detect,
    read_environment,
    required_packages,
)
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
            fix="add a wsgi.py or asgi.py with `application`, or set `app-module = "
            '"package.module:app"` or `start = "..."` in [tool.warpdrive]',
        ) from None
    return app, server


def server_extras(cfg: Config, names: set[str]) -> tuple[str, ...]:
    """The server (and WhiteNoise for Django) the image needs, when the app's requirements
    lack them."""
    app, server = detect_app(cfg)
    return tuple(p for p in required_packages(app, server) if normalize(p) not in names)


#: image reference -> the platform key last probed for it in this process: what a
#: requirement set is selected for when the caller does not pass the target
_PROBED: dict[str, PlatformKey] = {}


def requirements_for(cfg: Config, target: PlatformKey | None = None) -> RequirementSet:
    """The app's requirement set for the image it runs in (``target``: the base image's
    key; by default the one last probed for ``cfg.base_image``, else this host): a lock's
    markers and wheels are chosen for it. The server the image needs is added when the
    requirements lack it."""
    key = target or _PROBED.get(cfg.base_image)
    base = read_inputs(cfg, target_for(key) if key is not None else host_target())
    return dataclasses.replace(base, extra=server_extras(cfg, base.names()))


def _extra_note(reqs: RequirementSet) -> str:
    if not reqs.extra:
        return ""
    if reqs.locked_from:
        return (
            f"; plus {', '.join(reqs.extra)} for the image's server, which the lock lacks: "
            "resolved against its pins, not locked (add it to the lock to pin it)"
        )
    return f"; plus {', '.join(reqs.extra)} for the image's server"


def probe_image(engine: Engine, ref: str, role: str, cfg: Config) -> tuple[ImageInfo, PlatformKey]:
    """The image and its platform key, probed with the configured ``python`` (cached
    by image id and that command). A ``python`` the image lacks is a ConfigError naming
    the key and the image, cached probe or not."""
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
        probe_cache.store(info.id, cfg.python, key)
    _PROBED[ref] = key
    return info, key


def manifest_path(key: PlatformKey) -> str:
    return f"{key.slug}/manifest.json"


def read_manifest(engine: Engine, volume: str, key: PlatformKey, image: str) -> dict[str, Any]:
    if not engine.volume_exists(volume):
        return {}
    raw = engine.read_volume_file(volume, manifest_path(key), image)
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def resolved_set(manifest: Mapping[str, Any], digest: str) -> list[Wheel] | None:
    """The wheels a previous run resolved for exactly these requirements, if all are still
    published in the volume (and the set's entries are well formed)."""
    sets = manifest.get("sets")
    entry = sets.get(digest) if isinstance(sets, dict) else None
    if not isinstance(entry, dict):
        return None
    published = manifest.get("wheels")
    if not isinstance(published, dict):
        return None
    resolved = wheels_from_manifest(entry.get("resolved"))
    if resolved is None or not all(w.filename in published for w in resolved):
        return None
    return resolved


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

    def plan_json(self) -> bytes:
        reqs = self.requirements
        locked = (
            {
                "locked": [p.plan() for p in reqs.locked],
                "project": reqs.project.plan() if reqs.project else None,
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
                "python": self.python,
                "installer": self.installer,
                "verify": self.verify,
                "check_files": list(self.check_files),
                "platform_key": json.loads(self.key.to_json()),
            },
            sort_keys=True,
        ).encode()

    def step(self) -> Step:
        members = {
            "plan.json": self.plan_json(),
            "build_wheels.py": runtime.read("build_wheels.py"),
        }
        for name, data in self.requirements.files:
            members[f"req/{name}"] = data
        if self.requirements.project is not None:
            members["project.tar"] = project_archive(self.requirements.project)
        return Step(
            name="wheelhouse",
            image=self.builder_image,
            command=(self.python, f"{HELPERS_DIR}/build_wheels.py"),
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
    image in a registry (``kind="image"``, ``where`` its REF; wheelhouse_image.py) or a
    CI cache directory (``kind="dir"``; wheelhouse_dir.py)."""

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
    from .wheelhouse_dir import import_dir
    from .wheelhouse_image import pull_seed
    from .wheelhouse_transfer import Wheelhouse

    wh = Wheelhouse(cfg.volume, key, builder_id, cfg.python)
    for i, seed in enumerate(seeds):
        if resolved_set(manifest, digest) is not None:
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
) -> WheelhouseResult:
    """Build what the wheelhouse lacks for the requirements. ``on_ready`` hears, once,
    which resolved wheels are published before the builder finishes (the image build
    starts its deps layer with them). ``manifest``: the volume's manifest for the base
    image's platform, when the caller has just read it. ``seeds``: where wheels may come
    from first when the volume lacks the requirement set (default: `wheelhouse-image`).

    A set the manifest lists is taken as it is, unless ``check`` (the builder then
    compares each wheel's size and mtime with the manifest, hashing those that changed),
    ``verify`` (it hashes every wheel) or ``check_files`` (it hashes these): a damaged or
    missing wheel is fetched or built again."""
    started = time.monotonic()
    builder_info, builder_key, base_key = _targets(cfg, engine)
    reqs = requirements_for(cfg, base_key)
    if reqs.locked_from:
        out(f"warpdrive: installing from {reqs.source}{_extra_note(reqs)}")
    if reqs.empty:
        return WheelhouseResult(builder_key, True, (), 0, time.monotonic() - started, nothing=True)
    if manifest is None or base_key.slug != builder_key.slug:
        manifest = read_manifest(engine, cfg.volume, builder_key, builder_info.id)
    seeds = seeds_for(cfg) if seeds is None else seeds
    if seeds:
        manifest = seed_wheelhouse(
            engine, cfg, builder_key, builder_info.id, seeds, manifest, reqs.digest, out
        )
    done = resolved_set(manifest, reqs.digest)
    if done is not None and not (check or verify or check_files):
        seconds = time.monotonic() - started
        return WheelhouseResult(
            builder_key, True, (), len(done), seconds, manifest, builder_id=builder_info.id
        )
    plan = WheelhousePlan(
        cfg.volume, builder_info.id, builder_key, reqs, no_index, cfg.network, cfg.python
    )
    plan = dataclasses.replace(
        plan, installer=cfg.installer, verify=verify, check_files=check_files
    )
    summary = _run_builder(engine, plan, on_ready, out)
    written = summary.get("manifest")
    return WheelhouseResult(
        builder_key,
        bool(summary.get("up_to_date")),
        tuple(summary.get("new", ())),
        int(summary.get("resolved", 0)),
        time.monotonic() - started,
        written if isinstance(written, dict) else {},
        builder_id=builder_info.id,
    )


def _run_builder(
    engine: Engine, plan: WheelhousePlan, on_ready: ReadyCallback | None, out: Output
) -> dict[str, Any]:
    """Run the builder with the build secrets; its summary. Its output is shown redacted
    (the machine-read lines are not); a failure is the BuildError naming its cause."""
    # the builder's machine-read lines, defined on its side of the line; imported here
    # (not at the top): a build whose wheelhouse is complete never runs the builder
    from .runtime.build_wheels import FAILURE_PREFIX, READY_PREFIX, SUMMARY_PREFIX

    engine.ensure_volume(plan.volume)
    secrets = buildenv.build_secrets()
    lines: list[str] = []

    def tee(line: str) -> None:
        lines.append(line)
        if line.startswith(READY_PREFIX):
            ready = _ready(line)
            if ready is not None and on_ready is not None:
                on_ready(*ready)
            return
        if not line.startswith((SUMMARY_PREFIX, FAILURE_PREFIX)):
            out(buildenv.redact(line, secrets))

    with engine.secrets_volume(secrets, plan.builder_image) as secrets_volume:
        result = engine.run(plan.step(), tee, secrets_volume)
    if result.exit_code != 0:
        raise builder_failure(result.exit_code, _failure(lines), secrets)
    return _summary(lines)


_KEPT = (
    "the manifest is unchanged (earlier images and --no-index builds are not affected); "
    "wheels fetched so far are kept for the next run"
)


def builder_failure(
    code: int, failure: Mapping[str, Any], secrets: Mapping[str, bytes]
) -> BuildError:
    """The error for a failed builder, naming its cause and the fix for that cause."""
    stage = str(failure.get("stage") or ("killed" if code in (137, 143) else "unknown"))
    package = failure.get("package")
    what = f" {package}" if isinstance(package, str) and package else ""
    detail = [buildenv.redact(str(x), secrets) for x in failure.get("detail") or ()]
    last = ("; its last lines:\n" + "\n".join("  | " + x for x in detail)) if detail else ""
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
        "disk": (
            f"the engine ran out of disk space while building the wheelhouse{last}",
            "free space on the engine (`docker system df`, `docker image prune`), then run again",
        ),
        "tools": (f"the builder could not get its tools{last}", 'set installer = "pip"'),
        "internal": (
            f"the wheelhouse builder failed{last}",
            "this is a bug in nox-warpdrive: report it with the lines above; "
            "`nox -s wheelhouse -- --verify` checks the volume",
        ),
        **_lock_messages(failure, what, last),
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


def _where(failure: Mapping[str, Any]) -> str:
    """``uv.lock line 12: `` when the builder said which entry failed."""
    where = failure.get("where")
    return f"{where}: " if isinstance(where, str) and where else ""


def _failure(lines: list[str]) -> dict[str, Any]:
    from .runtime.build_wheels import FAILURE_PREFIX

    for line in reversed(lines):
        if line.startswith(FAILURE_PREFIX):
            try:
                data = json.loads(line[len(FAILURE_PREFIX) :])
            except ValueError:
                return {}
            return data if isinstance(data, dict) else {}
    return {}


def _ready(line: str) -> tuple[list[Wheel], dict[str, Any]] | None:
    from .runtime.build_wheels import READY_PREFIX

    try:
        data = json.loads(line[len(READY_PREFIX) :])
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    resolved, tools = wheels_from_manifest(data.get("resolved")), data.get("tools")
    if resolved is None:
        return None
    return resolved, tools if isinstance(tools, dict) else {}


def _summary(lines: list[str]) -> dict[str, Any]:
    from .runtime.build_wheels import SUMMARY_PREFIX

    for line in reversed(lines):
        if line.startswith(SUMMARY_PREFIX):
            try:
                data = json.loads(line[len(SUMMARY_PREFIX) :])
            except ValueError:
                break
            return data if isinstance(data, dict) else {}
    return {}
