"""``image -- --plan`` for the platforms asked for: one plan per platform, changing
nothing and running nothing of another CPU.

For each platform: the engine that would build it (the one `engines` names, connected
but not swept, else DOCKER_HOST's) and whether that is its own CPU or emulated; the base
and builder images it would use (a local one of that platform, the ``REF-linux-arm64``
an earlier build kept, or a pull it would make: whether a registry has it is known only
by pulling, which a plan does not do); how its wheels would be made (resolved and
downloaded on the engine's CPU by its own builder, sdists compiled on the target's, as
wheelhouse/cross.py decides; or all of it on the target's); and, when its base image is
here and its platform key known without running anything of another CPU (the engine's
own platform, or a probe cached by an earlier build), the whole single-platform plan
(image_plan.py) of that platform. What cannot be known without running is said so.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ..config import Config
from ..engine import Engine, ImageInfo
from ..engine import connect as connect_engine
from ..engine.base import host_shown
from ..errors import WarpdriveError
from ..image_plan import ImagePlan, plan_image
from ..platform import Platform, platform_ref
from ..wheelhouse import probe_cache
from ..wheelhouse.build import build_inputs
from ..wheelhouse.cross import route_for
from ..wheelhouse.targets import engine_platform, image_platform


@dataclass(frozen=True)
class ImageChoice:
    """Where one platform's base or builder image would come from."""

    role: str
    ref: str
    #: the local name that has it for the platform; "" when it would be pulled
    local: str
    how: str


@dataclass(frozen=True)
class PlatformPlan:
    platform: str
    #: the engine that would build it, as shown (no credentials)
    engine: str
    #: None: the engine could not be asked
    native: bool | None
    tag: str
    images: tuple[ImageChoice, ...] = ()
    wheels: str = ""
    #: the platform's own plan, when it can be made without running anything of its CPU
    plan: ImagePlan | None = None
    unknown: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        how = {None: "not reachable", True: "natively", False: "under emulation"}[self.native]
        out = [f"{self.platform}: as {self.tag}, on {self.engine}, {how}"]
        out += [f"  {c.role} {c.ref}: {c.how}" for c in self.images]
        if self.wheels:
            out.append(f"  wheels: {self.wheels}")
        if self.plan is not None:
            out += ["  " + line for line in self.plan.lines()]
        out += [f"  not known without running: {u}" for u in self.unknown]
        return out


@dataclass(frozen=True)
class MultiPlan:
    ref: str
    platforms: tuple[PlatformPlan, ...]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def lines(self) -> list[str]:
        names = ", ".join(p.platform for p in self.platforms)
        out = [
            f"plan for {self.ref} for {len(self.platforms)} platforms ({names}); nothing changed"
        ]
        for p in self.platforms:
            out += p.lines()
        return out


def plan_for(cfg: Config, engine: Engine, *, no_index: bool | None = None) -> ImagePlan | MultiPlan:
    """`image -- --plan`: the single-platform plan as before without `platforms` (or
    --platform), else one plan per platform asked for."""
    if not cfg.platforms:
        return plan_image(cfg, engine, no_index=no_index)
    return plan_images(cfg, engine, no_index=no_index)


def plan_images(cfg: Config, engine: Engine, *, no_index: bool | None = None) -> MultiPlan:
    """What ``build_images`` would do for each platform asked for, doing nothing."""
    session_native = engine_platform(engine)
    platforms = cfg.platforms or (session_native,)
    engines: dict[str, tuple[Engine, Platform] | str] = {"": (engine, session_native)}
    plans = []
    for platform in platforms:
        host = cfg.engine_for(platform)
        shown = f"the engine at {host_shown(host)}" if host else "DOCKER_HOST's engine"
        single = len(platforms) == 1
        if host not in engines:
            engines[host] = _connect(host)
        found = engines[host]
        if isinstance(found, str):
            tag = cfg.image if single else platform_ref(cfg.image, platform)
            plans.append(PlatformPlan(str(platform), shown, None, tag, unknown=(found,)))
            continue
        on, native = found
        is_native = platform.matches(native)
        tag = cfg.image if single or is_native else platform_ref(cfg.image, platform)
        plans.append(_plan_one(cfg, on, native, platform, shown, tag, no_index))
    return MultiPlan(cfg.image, tuple(plans))


def _connect(host: str) -> tuple[Engine, Platform] | str:
    """A named engine and its CPU, asked only (no sweep); what it failed with otherwise."""
    try:
        on = connect_engine(host=host)
        return on, engine_platform(on)
    except WarpdriveError as exc:
        return f"the engine at {host_shown(host)} did not answer ({exc.message})"


def _local(engine: Engine, ref: str, role: str, platform: Platform) -> ImageChoice:
    """As targets.image_for finds an image, without pulling."""
    for name in (ref, platform_ref(ref, platform)):
        info = engine.image(name)
        found = image_platform(info) if info is not None else None
        if info is not None and (found is None or found.matches(platform)):
            return ImageChoice(role, ref, name, f"the local {name}")
    other = engine.image(ref)
    of = f" (the local {ref} is for {other.platform})" if other is not None else ""
    how = (
        f"pulled for {platform} (`docker pull --platform {platform}`){of}; whether a "
        "registry has it for that platform is known only by pulling, which a plan does not do"
    )
    return ImageChoice(role, ref, "", how)


def _plan_one(
    cfg: Config,
    engine: Engine,
    native: Platform,
    platform: Platform,
    shown: str,
    tag: str,
    no_index: bool | None,
) -> PlatformPlan:
    is_native = platform.matches(native)
    base = _local(engine, cfg.base_image, "base-image", platform)
    images = [base]
    if cfg.builder_image != cfg.base_image:
        images.append(_local(engine, cfg.builder_image, "builder-image", platform))
    builder = images[-1]
    unknown: list[str] = []
    if not all(c.local for c in images):
        unknown.append(
            f"what the {platform} build does past its images (its platform key, wheelhouse, "
            "deps layer and app layers): known once its images are pulled"
        )
        wheels = _wheels(cfg, engine, native, platform, None, "")
        return PlatformPlan(
            str(platform), shown, is_native, tag, tuple(images), wheels, None, tuple(unknown)
        )
    info = engine.image(base.local)
    assert info is not None  # found just now
    key = probe_cache.load(info.id, cfg.python)
    if key is None and not is_native:
        unknown.append(
            f"its platform key, and so its wheelhouse, deps layer and app layers: base-image "
            f"{base.local} was never probed, and probing it runs a container of {platform} "
            "(emulated here), which a plan does not do"
        )
        wheels = _wheels(cfg, engine, native, platform, None, builder.local)
        return PlatformPlan(
            str(platform), shown, is_native, tag, tuple(images), wheels, None, tuple(unknown)
        )
    named = dataclasses.replace(cfg, base_image=base.local, builder_image=builder.local)
    plan = plan_image(named, engine, no_index=no_index, tag=tag)
    wheels = _wheels(cfg, engine, native, platform, info, builder.local)
    return PlatformPlan(
        str(platform), shown, is_native, tag, tuple(images), wheels, plan, tuple(unknown)
    )


def _wheels(
    cfg: Config,
    engine: Engine,
    native: Platform,
    platform: Platform,
    base: ImageInfo | None,
    builder: str,
) -> str:
    """How the platform's wheels would be made (as wheelhouse/cross.py routes them)."""
    if platform.matches(native):
        return f"resolved, downloaded and compiled in the builder image, natively ({native})"
    mine = _local(engine, cfg.builder_image, "builder-image", native)
    emulated = f"everything in the {platform} builder, under emulation"
    if not mine.local:
        return f"{emulated}, unless builder-image {cfg.builder_image} is pulled for {native}"
    key = probe_cache.load(base.id, cfg.python) if base is not None else None
    if key is not None:
        route = route_for(key, build_inputs(cfg, key).reqs, mine.local)
        if not route.native:
            return f"{emulated} ({route.why})"
    return (
        f"resolved and downloaded for {platform} on this engine's CPU ({native}) by "
        f"{mine.local}, without emulation; only pins with no wheel for {platform} (sdists) "
        f"are compiled in {builder or 'its builder'}, under emulation: which ones is "
        "known once resolved"
    )
