"""The builds of `image`, `wheelhouse` and `run` for the platforms asked for.

Each platform is built as a build without platforms is, with its base and builder
images resolved for it (wheelhouse/targets.py): the probe, the wheelhouse (one platform
key each in the volume, as always), the deps layer and the build step run in containers
of that CPU, under QEMU where it is not the engine's. The app layers are made on the
host from the same source, so they are the same blobs for every platform. Locally the
engine's own platform keeps the plain tag; the others are tagged ``REF-linux-arm64``, and
a single platform asked for alone gets the plain tag. ``--push`` puts one image index
under the tag once every platform's image is pushed (registry/index.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Config
from ..engine import Engine, ImageInfo, Output
from ..engine import connect as connect_engine
from ..engine.base import host_shown
from ..engine.registry_check import push as push_one
from ..errors import WarpdriveError
from ..image import ImageResult, build_image
from ..platform import Platform, platform_ref
from ..registry.index import push_index, put_index
from ..run import engine_host
from ..wheelhouse.build import WheelhouseResult
from ..wheelhouse.targets import (
    Resolved,
    Target,
    engine_platform,
    image_for,
    image_platform,
    restore,
    target_for,
)


@dataclass(frozen=True)
class PlatformImage:
    """One platform's image as this build left it: the local ref naming it."""

    platform: Platform
    ref: str
    result: ImageResult
    #: the build's settings for that platform (its base and builder images)
    cfg: Config
    #: the engine it was built on, when `engines` names one for its platform (None: the
    #: session's engine)
    engine: Engine | None = None

    def pushed_as(self, image: str, several: bool) -> str:
        """The tag it is pushed under: its own platform's with several, else ``image``."""
        return platform_ref(image, self.platform) if several else image


@dataclass(frozen=True)
class MultiResult:
    ref: str
    images: tuple[PlatformImage, ...]
    seconds: float
    #: the index pushed under ``ref`` (None: not pushed, or one platform pushed alone)
    index_digest: str | None = None

    def summary(self) -> str:
        parts = ", ".join(
            f"{i.platform} {'up to date' if i.result.up_to_date else 'built'}"
            f" ({i.result.seconds:.1f} s)"
            for i in self.images
        )
        n = len(self.images)
        total = f" ({self.seconds:.1f} s in all)" if n > 1 else ""  # one: its own time says it
        return f"image {self.ref} for {n} platform{'s' * (n > 1)}: {parts}{total}"

    def push_supply(self, engine: Engine, out: Output) -> None:
        """After a push: each platform's image gets its own SBOM and provenance, beside
        it in the registry (under its own manifest digest, which the index names)."""
        from ..supply.attach import push_beside

        several = len(self.images) > 1
        for image in self.images:
            pushed = image.result.pushed
            local = None if pushed else image.result.image_id
            ref = image.pushed_as(self.ref, several)
            on = image.engine or engine
            push_beside(
                on, image.cfg, ref, "", out, local=local, cache=pushed.cache if pushed else ""
            )

    def table(self) -> str:
        rows = [("platform", "image", "id", "size", "layers")]
        for i in self.images:
            r = i.result
            size = f"{r.size / 1e6:.1f} MB"
            rows.append((str(i.platform), i.ref, r.image_id[-64:][:12], size, str(r.layers)))
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
        )


def wanted(cfg: Config, engine: Engine) -> tuple[tuple[Platform, ...], Platform]:
    """(the platforms to build, the engine's own)."""
    native = engine_platform(engine)
    return cfg.platforms or (native,), native


@dataclass(frozen=True)
class Builder:
    """One platform's build: its settings, and the engine that runs it (the session's,
    or the one `engines` names for the platform)."""

    target: Target
    engine: Engine
    #: what that engine runs natively (asked once per engine and build)
    native: Platform
    #: the engine's DOCKER_HOST URL when `engines` named it; "" for the session's
    host: str = ""

    @property
    def named(self) -> Engine | None:
        return self.engine if self.host else None


def _engine_for(
    cfg: Config, platform: Platform, engines: dict[str, Engine], out: Output
) -> tuple[str, Engine]:
    """(host, engine) that builds ``platform``: the one `engines` names for it,
    connected once per build, its leftovers of killed runs removed; else the session's
    (under ``""`` in ``engines``)."""
    host = cfg.engine_for(platform)
    if host not in engines:
        engine = connect_engine(host=host)
        removed = engine.sweep()
        if removed:
            out(f"warpdrive: removed {removed} leftovers of interrupted runs on {host_shown(host)}")
        engines[host] = engine
    return host, engines[host]


def _targets(cfg: Config, engine: Engine, out: Output) -> list[Builder]:
    """Each platform's settings and engine; the local tags the pulls moved are put back at
    once (the builds name them by the tags they keep)."""
    platforms, session_native = wanted(cfg, engine)
    engines: dict[str, Engine] = {"": engine}
    natives = {"": session_native}
    builders: list[Builder] = []
    helper: list[tuple[Engine, Resolved]] = []
    try:
        for platform in platforms:
            host, on = _engine_for(cfg, platform, engines, out)
            if host not in natives:
                natives[host] = engine_platform(on)
            native = natives[host]
            if host and not platform.matches(native):
                out(
                    f"warpdrive: warning: the engine named for {platform} ({host_shown(host)}) "
                    f"runs {native}: {platform} is emulated there"
                )
            target = target_for(cfg, on, platform, native, out)
            builders.append(Builder(target, on, native, host))
        builders = _with_cross_builders(cfg, builders, helper, out)
    finally:
        for b in builders:
            restore(b.engine, b.target.resolved)
        for on, resolved in helper:
            restore(on, (resolved,))
    return builders


def _with_cross_builders(
    cfg: Config, builders: list[Builder], helper: list[tuple[Engine, Resolved]], out: Output
) -> list[Builder]:
    """Each engine's targets of other CPUs told that engine's own builder image
    (_with_cross_builder); the tags its pulls moved are added to ``helper``."""
    result = list(builders)
    for host in dict.fromkeys(b.host for b in builders):
        group = [i for i, b in enumerate(builders) if b.host == host]
        on = builders[group[0]].engine
        found: list[Resolved] = []
        targets = [builders[i].target for i in group]
        targets = _with_cross_builder(cfg, on, targets, builders[group[0]].native, found, out)
        helper.extend((on, r) for r in found)
        for i, target in zip(group, targets, strict=True):
            result[i] = dataclasses.replace(builders[i], target=target)
    return result


def _with_cross_builder(
    cfg: Config,
    engine: Engine,
    targets: list[Target],
    native: Platform,
    helper: list[Resolved],
    out: Output,
) -> list[Target]:
    """The targets of other CPUs told the engine's own builder image, which resolves
    and downloads their wheels without emulation (wheelhouse/cross.py): the native
    target's, else the builder ref resolved for the engine's platform (pulled when an
    index has it). None found: a line says so, and their builders do everything."""
    if all(t.native for t in targets):
        return targets
    mine = next((t for t in targets if t.native), None)
    name = mine.cfg.builder_image if mine is not None else ""
    if mine is None:
        try:
            found = image_for(engine, cfg.builder_image, "builder-image", native, out, native)
            helper.append(found)  # its moved tag, if any, is put back with the others'
            name = found.name
        except WarpdriveError as exc:
            out(
                f"warpdrive: no builder image for {native} ({exc.message}); the wheels of "
                "the other platforms are resolved and made under emulation"
            )
    return [
        t
        if t.native
        else dataclasses.replace(t, cfg=dataclasses.replace(t.cfg, cross_builder=name))
        for t in targets
    ]


def _announce(out: Output, builder: Builder, count: int) -> None:
    target = builder.target
    how = "" if target.native else " (what must run on its CPU runs under emulation)"
    where = f" on the engine at {host_shown(builder.host)}" if builder.host else ""
    if count > 1 or not target.native or where:
        out(f"warpdrive: == {target.platform}{where}{how}")


def _cache(cache_from: str | None, single: bool, platform: Platform) -> str | None:
    """The earlier push a platform's build reuses: ``cache_from`` for one platform alone,
    else its platform's own image there (``REF-linux-arm64``, as a push of several leaves)."""
    return cache_from if single or not cache_from else platform_ref(cache_from, platform)


def build_images(
    cfg: Config,
    engine: Engine,
    out: Output,
    *,
    no_index: bool | None = None,
    push: bool = False,
    cache_from: str | None = None,
    push_only: bool = False,
) -> MultiResult:
    """Build the image for every platform asked for; with ``push``, push them as one
    image index (one platform alone: pushed as an image, as without platforms).
    ``cache_from``: an earlier push of this app; each platform reuses the layers of its
    own image there (``REF-linux-arm64``, as a push of several platforms leaves them;
    one platform alone: REF itself). ``push_only``: each platform's image is built in
    the registry on its own earlier push (``REF-linux-arm64``, or ``cache_from``'s) when it
    can, else here and pushed; then the index is put under REF."""
    if push_only:
        return _push_only(cfg, engine, out, no_index, cache_from)
    started = time.monotonic()
    builders = _targets(cfg, engine, out)
    single = len(builders) == 1
    images: list[PlatformImage] = []
    # the engine's own platform first: what is shared (collected static files) is made
    # natively; then each engine's first image lends them to its other platforms
    first: dict[int, ImageInfo] = {}
    for b in sorted(builders, key=lambda b: not b.target.native):
        target = b.target
        _announce(out, b, len(builders))
        ref = cfg.image if single or target.native else platform_ref(cfg.image, target.platform)
        cache = _cache(cache_from, single, target.platform)
        result = build_image(
            target.cfg,
            b.engine,
            out,
            no_index=no_index,
            tag=ref,
            cache_from=cache,
            static_from=first.get(id(b.engine)),
        )
        out(f"warpdrive: {result.summary()}")
        images.append(PlatformImage(target.platform, ref, result, target.cfg, b.named))
        if id(b.engine) not in first:
            built = b.engine.image(result.image_id)
            if built is not None:
                first[id(b.engine)] = built
    order = [b.target.platform for b in builders]  # the index lists them as asked
    images.sort(key=lambda i: order.index(i.platform))
    digest = None
    if push and single:
        push_one(images[0].engine or engine, cfg.image, out)
    elif push:  # each from the engine that has it; the tag moves last
        named = {i.platform: i.engine for i in images if i.engine is not None}
        pairs = [(i.platform, i.ref) for i in images]
        digest = push_index(engine, cfg.image, pairs, out, on=named)
    return MultiResult(cfg.image, tuple(images), time.monotonic() - started, digest)


def _push_only(
    cfg: Config, engine: Engine, out: Output, no_index: bool | None, cache_from: str | None
) -> MultiResult:
    """`image -- --push-only` for the platforms asked for: nothing is pulled or built here
    that the registry already has (a fresh CI runner compiles nothing for either CPU)."""
    started = time.monotonic()
    builders = _targets(cfg, engine, out)
    single = len(builders) == 1
    images: list[PlatformImage] = []
    for b in builders:
        target = b.target
        _announce(out, b, len(builders))
        ref = cfg.image if single else platform_ref(cfg.image, target.platform)
        cache = _cache(cache_from, single, target.platform)
        result = build_image(
            target.cfg, b.engine, out, no_index=no_index, tag=ref, cache_from=cache, push_only=True
        )
        out(f"warpdrive: {result.summary()}")
        if result.pushed is None:  # built here: pushed as --push would
            push_one(b.engine, ref, out)
        images.append(PlatformImage(target.platform, ref, result, target.cfg, b.named))
    digest = None if single else put_index(engine, cfg.image, [i.platform for i in images], out)
    return MultiResult(cfg.image, tuple(images), time.monotonic() - started, digest)


def build_wheelhouses(
    cfg: Config,
    engine: Engine,
    out: Output,
    build: Callable[[Config, Engine], WheelhouseResult],
) -> list[tuple[WheelhouseResult, Engine]]:
    """``build`` (a wheelhouse build with the session's options) for every platform, on
    the engine that builds it: (its result, that engine) each."""
    builders = _targets(cfg, engine, out)
    results = []
    for b in builders:
        _announce(out, b, len(builders))
        results.append((build(b.target.cfg, b.engine), b.engine))
    return results


def run_ref(cfg: Config, engine: Engine, platform: Platform, where: str = "") -> str:
    """The local image `run --platform` starts: the one tagged ``image`` when it is for
    that platform, else the one tagged for the platform by a build of several.
    ``where``: the engine's DOCKER_HOST URL when `engines` named it (for the error)."""
    for ref in (cfg.image, platform_ref(cfg.image, platform)):
        info = engine.image(ref)
        found = image_platform(info) if info is not None else None
        if info is not None and (found is None or found.matches(platform)):
            return ref
    on = f" on the engine at {host_shown(where)} (`engines` names it for {platform})"
    raise WarpdriveError(
        f"there is no {'local ' * (not where)}image of {cfg.image} for {platform}"
        f"{on if where else ''}",
        fix=f"build it first: `nox -s image -- --platform {platform}`",
    )


def run_on(
    cfg: Config, engine: Engine, platform: Platform, out: Output
) -> tuple[Config, Engine, str]:
    """Where `run --platform` runs: (the config naming the image to start, the engine
    that has it, its DOCKER_HOST URL or ""). A platform that `engines` names an engine
    for was built there and stays there (build_images), so it runs there too, and its
    port is published on that engine's host, which the lines say."""
    host = cfg.engine_for(platform)
    on = connect_engine(host=host) if host else engine
    ref = run_ref(cfg, on, platform, host)
    if host:
        out(
            f"warpdrive: running {ref} ({platform}) on the engine at {host_shown(host)}, "
            f"which built it: its port is published on that engine's host, "
            f"{engine_host(host)}, not on DOCKER_HOST's"
        )
    return dataclasses.replace(cfg, image=ref), on, host
