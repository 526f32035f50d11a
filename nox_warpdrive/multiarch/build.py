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

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Config
from ..engine import Engine, Output
from ..errors import WarpdriveError
from ..image import ImageResult, build_image
from ..platform import Platform, platform_ref
from ..registry.index import push_index, put_index
from ..wheelhouse.build import WheelhouseResult
from ..wheelhouse.targets import Target, engine_platform, image_platform, restore, target_for


@dataclass(frozen=True)
class PlatformImage:
    """One platform's image as this build left it: the local ref naming it."""

    platform: Platform
    ref: str
    result: ImageResult
    #: the build's settings for that platform (its base and builder images)
    cfg: Config

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
            push_beside(
                engine, image.cfg, ref, "", out, local=local, cache=pushed.cache if pushed else ""
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


def _targets(cfg: Config, engine: Engine, out: Output) -> tuple[list[Target], Platform]:
    """Each platform's settings; the local tags the pulls moved are put back at once (the
    builds name them by the tags they keep)."""
    platforms, native = wanted(cfg, engine)
    targets: list[Target] = []
    try:
        for platform in platforms:
            targets.append(target_for(cfg, engine, platform, native, out))
    finally:
        for t in targets:
            restore(engine, t.resolved)
    return targets, native


def _announce(out: Output, target: Target, count: int) -> None:
    how = "" if target.native else " (its containers run under emulation)"
    if count > 1 or not target.native:
        out(f"warpdrive: == {target.platform}{how}")


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
    targets, _ = _targets(cfg, engine, out)
    single = len(targets) == 1
    images: list[PlatformImage] = []
    for target in targets:
        _announce(out, target, len(targets))
        ref = cfg.image if single or target.native else platform_ref(cfg.image, target.platform)
        cache = _cache(cache_from, single, target.platform)
        result = build_image(target.cfg, engine, out, no_index=no_index, tag=ref, cache_from=cache)
        out(f"warpdrive: {result.summary()}")
        images.append(PlatformImage(target.platform, ref, result, target.cfg))
    digest = None
    if push and single:
        from ..engine.registry_check import push as push_one

        push_one(engine, cfg.image, out)
    elif push:
        digest = push_index(engine, cfg.image, [(i.platform, i.ref) for i in images], out)
    return MultiResult(cfg.image, tuple(images), time.monotonic() - started, digest)


def _push_only(
    cfg: Config, engine: Engine, out: Output, no_index: bool | None, cache_from: str | None
) -> MultiResult:
    """`image -- --push-only` for the platforms asked for: nothing is pulled or built here
    that the registry already has (a fresh CI runner compiles nothing for either CPU)."""
    from ..engine.registry_check import push as push_one

    started = time.monotonic()
    targets, _ = _targets(cfg, engine, out)
    single = len(targets) == 1
    images: list[PlatformImage] = []
    for target in targets:
        _announce(out, target, len(targets))
        ref = cfg.image if single else platform_ref(cfg.image, target.platform)
        cache = _cache(cache_from, single, target.platform)
        result = build_image(
            target.cfg, engine, out, no_index=no_index, tag=ref, cache_from=cache, push_only=True
        )
        out(f"warpdrive: {result.summary()}")
        if result.pushed is None:  # built here: pushed as --push would
            push_one(engine, ref, out)
        images.append(PlatformImage(target.platform, ref, result, target.cfg))
    digest = None if single else put_index(engine, cfg.image, [i.platform for i in images], out)
    return MultiResult(cfg.image, tuple(images), time.monotonic() - started, digest)


def build_wheelhouses(
    cfg: Config, engine: Engine, out: Output, build: Callable[[Config], WheelhouseResult]
) -> list[WheelhouseResult]:
    """``build`` (a wheelhouse build with the session's options) for every platform."""
    targets, _ = _targets(cfg, engine, out)
    results = []
    for target in targets:
        _announce(out, target, len(targets))
        results.append(build(target.cfg))
    return results


def run_ref(cfg: Config, engine: Engine, platform: Platform) -> str:
    """The local image `run --platform` starts: the one tagged ``image`` when it is for
    that platform, else the one tagged for the platform by a build of several."""
    for ref in (cfg.image, platform_ref(cfg.image, platform)):
        info = engine.image(ref)
        found = image_platform(info) if info is not None else None
        if info is not None and (found is None or found.matches(platform)):
            return ref
    raise WarpdriveError(
        f"there is no local image of {cfg.image} for {platform}",
        fix=f"build it first: `nox -s image -- --platform {platform}`",
    )
