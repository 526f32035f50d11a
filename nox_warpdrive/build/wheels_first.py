"""The wheels an image build installs: the wheelhouse's resolved set for the build's
requirements, built into the volume first when it lacks them, with a deps layer started
early on the first wheels it publishes (build/deps.py: EarlyDeps)."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any

from ..config import Config
from ..engine import Engine, ImageInfo, Output
from ..errors import WarpdriveError
from ..inputs.requirements import RequirementSet
from ..platform import PlatformKey
from ..wheelhouse.build import (
    WheelhouseResult,
    build_wheelhouse,
    read_manifest,
    resolved_set,
    seeds_for,
    upkeep_for,
)
from ..wheelhouse.manifest import seen_sets
from ..wheelhouse.wheels import Wheel
from .deps import EarlyDeps
from .early_static import EarlyStatic


def offline_error(cfg: Config, manifest: Mapping[str, Any], pkey: PlatformKey) -> WarpdriveError:
    """Why a --no-index build stops when the wheelhouse lacks its requirement set (and
    no wheelhouse image seeds the volume first: a registry is no package index)."""
    what = "was never built" if not manifest else "was built for other requirements"
    return WarpdriveError(
        f"the wheelhouse in volume {cfg.volume!r} {what} (platform {pkey.slug}), and "
        "--no-index forbids fetching anything",
        fix="run `nox -s wheelhouse` first, then `nox -s image -- --no-index`",
    )


def wheels_for(
    cfg: Config,
    engine: Engine,
    out: Output,
    target: tuple[ImageInfo, PlatformKey],
    reqs: RequirementSet,
    no_index: bool,
    timings: list[tuple[str, float]],
    check_files: tuple[str, ...] = (),
    built: list[WheelhouseResult] | None = None,
    early_deps: bool = True,
    current: ImageInfo | None = None,
    static: EarlyStatic | None = None,
) -> tuple[list[Wheel], Mapping[str, Any], float | None]:
    """The wheels the wheelhouse resolved for ``reqs`` (built first when it lacks them, or
    when ``check_files`` were found damaged), the manifest, and the seconds an early deps
    layer took (None when none was built). ``built``: where the wheelhouse build, if one
    runs, is reported; ``early_deps``: whether a deps layer may start on the first wheels
    (not while a cache whose deps layers are the parent is still being pulled);
    ``current``: the image the tag names, whose deps layer a grow likely adds to;
    ``static``: collectstatic beside the early deps layer's load (early_static.py)."""
    base, pkey = target
    if reqs.empty:
        out("warpdrive: the app needs no packages")
        return [], {}, None
    manifest: Mapping[str, Any] | None = None
    if _builder_first(cfg, pkey, reqs, no_index, check_files):
        out("warpdrive: requirements the wheelhouse had not resolved; building them first")
    else:
        manifest = read_manifest(engine, cfg.volume, pkey, base.id)
        resolved = resolved_set(manifest, reqs.digest)
        if resolved is not None and not check_files and not cfg.upgrade:
            return resolved, upkeep_for(cfg, engine, reqs, manifest, out), None
        if resolved is None and no_index and not seeds_for(cfg):
            raise offline_error(cfg, manifest, pkey)
        if cfg.upgrade and not check_files:
            out("warpdrive: --upgrade: resolving the requirements again from the package index")
        elif resolved is None:
            out("warpdrive: the wheelhouse lacks these requirements; building them first")
    early = (early_deps, current, static)
    result_wh, early_seconds = _build_wheels(
        cfg, engine, out, target, reqs, manifest, no_index, timings, check_files, early
    )
    if built is not None:
        built.append(result_wh)
    # as the builder wrote it (the same platform: check_compatible), else read
    written = result_wh.manifest if result_wh.key.slug == pkey.slug else {}
    done = dict(written) or read_manifest(engine, cfg.volume, pkey, base.id)
    resolved = resolved_set(done, reqs.digest)
    if resolved is None:
        raise WarpdriveError(
            "the wheelhouse was built but does not list these requirements",
            fix="run `nox -s wheelhouse` and read its output",
        )
    return resolved, done, early_seconds


def _builder_first(
    cfg: Config,
    pkey: PlatformKey,
    reqs: RequirementSet,
    no_index: bool,
    check_files: tuple[str, ...],
) -> bool:
    """Whether the builder starts before the host reads the manifest: when the volume,
    when this host last saw its manifest, listed no set for these requirements (an added
    package; a first build). The builder reads the manifest itself and says when the set
    is there already; the host's read (a container of its own: 0.1 s of an added
    package) then runs beside the builder's start, for the early deps step only. Not
    for --no-index (a lacking set is an error then), a repair, --upgrade, or a volume
    seeded from an image first."""
    if no_index or check_files or cfg.upgrade or seeds_for(cfg):
        return False
    seen = seen_sets(cfg.volume, pkey)
    return seen is None or reqs.digest not in seen


def _build_wheels(
    cfg: Config,
    engine: Engine,
    out: Output,
    target: tuple[ImageInfo, PlatformKey],
    reqs: RequirementSet,
    manifest: Mapping[str, Any] | None,
    no_index: bool,
    timings: list[tuple[str, float]],
    check_files: tuple[str, ...],
    early_deps: tuple[bool, ImageInfo | None, EarlyStatic | None] = (True, None, None),
) -> tuple[WheelhouseResult, float | None]:
    """Build what the wheelhouse lacks, with a deps layer started early on the wheels it
    publishes first (not when repairing ``check_files``): what the build did, and the
    seconds the early deps layer took (None when none was built). ``manifest``: None
    when the builder starts first (_builder_first): it is read beside it. ``early_deps``:
    whether it may, the current image (a grow on its deps layer is started now), and
    what may collect static files in a whole virtualenv's container."""
    base, pkey = target
    wheels_started = time.monotonic()
    early = EarlyDeps(engine, cfg, base, pkey, frozenset(reqs.names()))
    if early_deps[0] and not check_files and manifest is not None:
        early.prestart(early_deps[1], manifest, early_deps[2])
    elif early_deps[0] and not check_files:
        read = functools.partial(read_manifest, engine, cfg.volume, pkey, base.id)
        early.prestart_after(read, early_deps[1], early_deps[2])
    try:
        result_wh = build_wheelhouse(
            cfg,
            engine,
            out,
            on_ready=early.start if early_deps[0] and not check_files else None,
            manifest={} if manifest is None else manifest,  # {}: the builder reads it
            check_files=check_files,
            no_index=no_index,
            announce=False,  # _start said it
            reqs=reqs,  # read once, by _start
        )
        if result_wh.key.slug == pkey.slug:  # the early layer still installs: the rest now
            full = resolved_set(result_wh.manifest, reqs.digest) or []
            early.offer_static(full)
            early.add_late(full, out)
    except BaseException:
        early.cancel()
        raise
    finally:
        early_seconds = early.join(out)
    out(f"warpdrive: {result_wh.summary()}")
    timings.append(("wheelhouse", time.monotonic() - wheels_started))
    if early_seconds is not None:
        timings.append(("early deps", early_seconds))
    return result_wh, early_seconds
