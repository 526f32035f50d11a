"""``nox -s doctor``: what is set up, one check per line, with the fix where something is
wrong. Each check is a function returning data (:class:`Check`); the session prints
them (or one JSON document) and fails when one says a build would fail.

Doctor changes nothing a build relies on: it inspects the engine, reads the volume's
manifest (a container created with the volume mounted read-only, never started, then
removed), probes an image never probed before (as a build would, cached as a build
would), asks a registry for a missing image's manifest, and names where a login comes
from without printing it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import Config, load_config
from .engine import Engine, ImageInfo
from .engine.about import DiskUsage
from .errors import WarpdriveError
from .labels import DEPS_PROJECT_LABEL, KIND_LABEL
from .platform import PlatformKey, check_compatible
from .refs import named_registry
from .wheelhouse import probe_cache
from .wheelhouse.build import probe_image, read_manifest

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"

#: below this much free disk on the engine, a build may fail part way
LOW_DISK = 2 * 1024**3


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, how it stands, what was found, and the
    fix when it is not ok. ``fail`` means a build would fail."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"[{self.status:>4}] {self.name}: {self.detail}" + (
            f"\n       fix: {self.fix}" if self.fix else ""
        )


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == FAIL)

    def to_json(self) -> str:
        data = {"ok": not self.failed, "checks": [dataclasses.asdict(c) for c in self.checks]}
        return json.dumps(data, indent=2)


def mb(size: int | None) -> str:
    """A size as people read it: kB below a megabyte, MB below a gigabyte."""
    if size is None:
        return "unknown size"
    if size < 1e6:
        return f"{size / 1e3:.1f} kB"
    return f"{size / 1e6:.1f} MB" if size < 1e9 else gb(size)


def gb(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


def _error(name: str, exc: WarpdriveError, status: str = FAIL) -> Check:
    return Check(name, status, exc.message, exc.fix or "")


# ------------------------------------------------------------------------- the checks


def versions() -> list[Check]:
    """This tool's, nox's and Python's versions (nox read from its metadata: only
    sessions.py imports nox)."""
    found = []
    for dist in ("nox-warpdrive", "nox"):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            found.append(f"{dist} (not installed as a distribution)")
    found.append(f"Python {platform.python_version()}")
    return [Check("versions", OK, ", ".join(found))]


def engine_check(engine: Engine) -> Check:
    """Address, versions, storage driver, platform, free disk (where it can be told)."""
    about = engine.about()
    where = f"{about.address}: {about.kind} {about.version} (API {about.api_version}), "
    where += f"{about.storage_driver}, {about.os}/{about.arch}"
    if about.free_disk is None:
        return Check("engine", OK, where + ", free disk not known here (a remote engine)")
    free = f", {gb(about.free_disk)} free in {about.root_dir}"
    if about.free_disk < LOW_DISK:
        fix = "free space on the engine (`docker system df`, `docker image prune`)"
        return Check("engine", WARN, where + free, fix)
    return Check("engine", OK, where + free)


def image_check(
    engine: Engine, cfg: Config, ref: str, role: str, pull_check: Callable[[str], str]
) -> tuple[Check, tuple[ImageInfo, PlatformKey] | None]:
    """An image on the engine, with its platform key (the probe cache's, else probed as
    a build would); when missing, whether it can be pulled: a build never pulls it, so
    a missing one fails the build either way."""
    if engine.image(ref) is None:
        pullable = pull_check(ref)
        fix = f"`docker pull {ref}`" if pullable.startswith("pullable") else ""
        fix = fix or f"build or load {ref}, or set `{role}` in [tool.warpdrive]"
        return Check(role, FAIL, f"{ref} is not on the engine; {pullable}", fix), None
    probed = probe_cache.load(engine.require_image(ref, role).id, cfg.python) is not None
    try:
        info, key = probe_image(engine, ref, role, cfg)
    except WarpdriveError as exc:
        return _error(role, exc), None
    how = "probe cache" if probed else "probed now"
    detail = f"{ref} ({info.id.split(':')[-1][:12]}, {mb(info.size)}): {key.slug} ({how})"
    return Check(role, OK, detail), (info, key)


def fit_check(cfg: Config, builder: PlatformKey, base: PlatformKey) -> Check:
    """Whether the builder's wheels fit the base image (the build's own check)."""
    if cfg.builder_image == cfg.base_image:
        return Check("fit", OK, "the builder is the base image")
    try:
        check_compatible(cfg.builder_image, builder, cfg.base_image, base)
    except WarpdriveError as exc:
        return _error("fit", exc)
    return Check("fit", OK, "the builder's wheels fit the base image (same platform key)")


def uv_check(cfg: Config, manifest: Mapping[str, Any], slug: str) -> Check:
    """Whether the volume has uv for this platform key (deps layers install with it)."""
    tools = manifest.get("tools") if isinstance(manifest.get("tools"), dict) else {}
    uv = (tools or {}).get("uv")
    if cfg.installer == "pip":
        return Check("uv", INFO, 'not used (installer = "pip")')
    if not manifest:
        return Check("uv", INFO, f"no wheelhouse for {slug} yet (its first build fetches uv)")
    if isinstance(uv, dict) and uv.get("path"):
        return Check("uv", OK, f"uv {uv.get('version') or '?'} in the volume for {slug}")
    fix = "run `nox -s wheelhouse` with access to an index: it fetches uv"
    if cfg.installer == "uv":
        return Check("uv", FAIL, f'installer = "uv" and the volume has no uv for {slug}', fix)
    return Check("uv", WARN, f"no uv in the volume for {slug}: deps install with pip", fix)


def volume_check(
    engine: Engine, cfg: Config, manifest: Mapping[str, Any], slug: str, size: int | None
) -> Check:
    """The volume: whether it exists, its size, its wheels and requirement sets for the
    builder's platform key, and when a set was last built or used (if recorded)."""
    if not engine.volume_exists(cfg.volume):
        return Check("volume", INFO, f"{cfg.volume} does not exist yet (the first build makes it)")
    wheels = manifest.get("wheels") if isinstance(manifest.get("wheels"), dict) else {}
    sets = manifest.get("sets") if isinstance(manifest.get("sets"), dict) else {}
    last = ", last use not recorded"
    for field, said in (("built_at", "last built"), ("last_used", "last used")):
        when = [
            str(s[field]) for s in (sets or {}).values() if isinstance(s, dict) and s.get(field)
        ]
        last = f", {said} {max(when)}" if when else last
    detail = f"{cfg.volume} ({mb(size)}): {len(wheels or {})} wheels, "
    detail += f"{len(sets or {})} requirement sets for {slug}{last}"
    return Check("volume", OK, detail)


def deps_check(engine: Engine, cfg: Config, usage: DiskUsage) -> Check:
    """The deps images of the app and of all apps: the largest's size over the base
    image, and what they hold that no other image shares (``usage``: the engine's disk
    usage), which is what removing them would free (app images share their layers)."""
    ours = engine.images_with_labels({KIND_LABEL: "deps", DEPS_PROJECT_LABEL: cfg.name})
    every = engine.images_with_labels({KIND_LABEL: "deps"})

    def own(images: list[ImageInfo]) -> str:
        sizes = [usage.images.get(i.id) for i in images]
        known = [size - shared for size, shared in (s for s in sizes if s is not None)]
        return mb(sum(known)) if len(known) == len(sizes) else "unknown size"

    base = engine.image(cfg.base_image)
    over = max((i.size - base.size for i in ours), default=0) if base is not None else 0
    detail = f"{len(ours)} of {cfg.name}"
    if ours:
        detail += f" (largest {mb(over)} over the base image"
        detail += f"; {own(ours)} held by no other image)"
    return Check("deps images", OK, detail + f"; {len(every)} of all apps ({own(every)})")


def host_caches(root: Path | None = None) -> Check:
    """The size of this tool's caches on the host (probes, source index, layer
    listings, collected static files), by directory."""
    root = root or probe_cache.cache_dir().parent
    sizes: dict[str, int] = {}
    for path, _, files in os.walk(root):
        part = Path(path).relative_to(root).parts
        top = part[0] if part else "."
        for name in files:
            try:
                sizes[top] = sizes.get(top, 0) + (Path(path) / name).lstat().st_size
            except OSError:
                continue
    parts = ", ".join(f"{k} {mb(v)}" for k, v in sorted(sizes.items()))
    total = sum(sizes.values())
    return Check("host caches", OK, f"{root}: {mb(total)}" + (f" ({parts})" if parts else ""))


def login_check(engine: Engine, role: str, ref: str) -> Check:
    """Whether the Docker config has a login for the registry ``ref`` names, and where
    from ("helper X", the config file): never the login itself."""
    registry = named_registry(ref)
    name = f"login for {role}"
    if registry is None and role == "image":
        return Check(name, INFO, f"{ref}: a local name, no registry")
    registry = registry or "docker.io"
    try:
        helper = engine.login_helper(registry)
        found = engine.registry_login(registry)
    except WarpdriveError as exc:
        return _error(name, exc, WARN)
    if found is not None:
        where = f"helper {helper}" if helper else "the Docker config file"
        return Check(name, OK, f"{registry}: login found ({where})")
    if registry.startswith(("127.", "localhost", "[::1]")):
        return Check(name, INFO, f"{registry}: no login (a loopback registry often needs none)")
    return Check(name, WARN, f"{registry}: no login", f"`docker login {registry}`")


def pull_check(engine: Engine) -> Callable[[str], str]:
    """Whether a registry has an image (its manifest, read with the Docker login):
    "pullable from R", "R has no such image", or why that cannot be told."""

    def check(ref: str) -> str:
        from .engine.registry_api import Registry, parse_ref

        where = parse_ref(ref)
        try:
            client = Registry(where.registry, engine.registry_login(where.registry), 5)
            found = client.manifest(where.repository, where.reference)
        except WarpdriveError as exc:
            return f"whether it can be pulled is not known ({exc.message.splitlines()[0]})"
        if found is None:
            return f"{where.registry} has no such image"
        return f"pullable from {where.registry}"

    return check


# ------------------------------------------------------------------------- the report


def diagnose(
    project_dir: Path,
    connect: Callable[[], Engine],
    cache_from: str | None = None,
    pull: Callable[[Engine], Callable[[str], str]] = pull_check,
) -> Report:
    """Every check, in order; those that need what an earlier one found are left out
    when it failed (no engine: nothing on it is checked)."""
    checks = versions()
    try:
        cfg = load_config(project_dir)
    except WarpdriveError as exc:
        return Report((*checks, _error("config", exc)))
    checks.append(Check("config", OK, f"{cfg.name}: image {cfg.image}, volume {cfg.volume}"))
    try:
        engine = connect()
        checks.append(engine_check(engine))
    except WarpdriveError as exc:
        return Report((*checks, _error("engine", exc)))
    usage = engine.disk_usage()
    checks += _images_and_volume(engine, cfg, pull(engine), usage)
    checks.append(deps_check(engine, cfg, usage))
    checks.append(host_caches())
    refs = [("image", cfg.image), ("cache-from", cache_from)]
    refs.append(("wheelhouse-image", cfg.wheelhouse_image))
    checks += [login_check(engine, role, ref) for role, ref in refs if ref]
    return Report(tuple(checks))


def _images_and_volume(
    engine: Engine, cfg: Config, pull: Callable[[str], str], usage: DiskUsage
) -> list[Check]:
    base_check, base = image_check(engine, cfg, cfg.base_image, "base-image", pull)
    checks = [base_check]
    builder = base
    if cfg.builder_image != cfg.base_image:
        builder_check, builder = image_check(engine, cfg, cfg.builder_image, "builder-image", pull)
        checks.append(builder_check)
    if base is None or builder is None:
        return checks
    checks.append(fit_check(cfg, builder[1], base[1]))
    slug = builder[1].slug
    exists = engine.volume_exists(cfg.volume)
    manifest = read_manifest(engine, cfg.volume, builder[1], builder[0].id) if exists else {}
    size = usage.volumes.get(cfg.volume)
    checks.append(volume_check(engine, cfg, manifest, slug, size))
    checks.append(uv_check(cfg, manifest, slug))
    return checks
