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
from ..engine import Engine, Output
from ..errors import WarpdriveError
from ..image import ImageResult, build_image
from ..platform import Platform, platform_ref
from ..registry.index import push_index
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
    helper: list[Resolved] = []
    try:
        for platform in platforms:
            targets.append(target_for(cfg, engine, platform, native, out))
        targets = _with_cross_builder(cfg, engine, targets, native, helper, out)
    finally:
        for t in targets:
            restore(engine, t.resolved)
        restore(engine, tuple(helper))
    return targets, native


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


def _announce(out: Output, target: Target, count: int) -> None:
    how = "" if target.native else " (what must run on its CPU runs under emulation)"
    if count > 1 or not target.native:
        out(f"warpdrive: == {target.platform}{how}")


def build_images(
    cfg: Config,
    engine: Engine,
    out: Output,
    *,
    no_index: bool | None = None,
    push: bool = False,
    cache_from: str | None = None,
) -> MultiResult:
    """Build the image for every platform asked for; with ``push``, push them as one
    image index (one platform alone: pushed as an image, as without platforms).
    ``cache_from``: an earlier push of this app; each platform reuses the layers of its
    own image there (``REF-linux-arm64``, as a push of several platforms leaves them;
    one platform alone: REF itself)."""
    started = time.monotonic()
    targets, _ = _targets(cfg, engine, out)
    single = len(targets) == 1
    images: list[PlatformImage] = []
    for target in targets:
        _announce(out, target, len(targets))
        ref = cfg.image if single or target.native else platform_ref(cfg.image, target.platform)
        cache = (
            cache_from if single or not cache_from else platform_ref(cache_from, target.platform)
        )
        result = build_image(target.cfg, engine, out, no_index=no_index, tag=ref, cache_from=cache)
        out(f"warpdrive: {result.summary()}")
        images.append(PlatformImage(target.platform, ref, result))
    digest = None
    if push and single:
        from ..engine.registry_check import push as push_one

        push_one(engine, cfg.image, out)
    elif push:
        digest = push_index(engine, cfg.image, [(i.platform, i.ref) for i in images], out)
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
