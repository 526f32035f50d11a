"""The base and builder images for one target platform.

Docker 20.10 keeps one image per local tag, so ``python:3.12-slim`` here is the image of
one CPU. For another platform the ref is pulled for it (``docker pull --platform``: an
image index in a registry has one image per platform) and its own config is checked; the
pulled image is kept as ``ref-linux-arm64``, the build names it so, and the tag ``ref`` is
put back (a build without platforms never builds on another CPU's image by surprise).
Everything a build runs in those images runs under emulation when their CPU is not the
engine's (binfmt_misc and QEMU, as ``docker run --platform`` uses them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import Config
from ..engine import Engine, ImageInfo, Output
from ..errors import EngineError, ImagePlatformError, causes
from ..platform import Platform, parse_platform, platform_of, platform_ref


def engine_platform(engine: Engine) -> Platform:
    """What the engine runs natively (``docker version``'s Os/Arch)."""
    about = engine.about()
    return platform_of(about.os, about.arch)


def image_platform(info: ImageInfo) -> Platform | None:
    """What an image's config says it runs on (None: it says nothing)."""
    return parse_platform(info.platform) if info.platform else None


@dataclass(frozen=True)
class Resolved:
    """An image found for a platform, the local name that names it for the whole build
    (the ref, or its ``ref-linux-arm64`` tag: what labels and messages show), and the
    local tag its pull moved or made, put back by ``restore``: (ref, the id it named
    before, "" for none) or None."""

    info: ImageInfo
    name: str
    moved: tuple[str, str] | None = None


def _is_for(info: ImageInfo, platform: Platform) -> bool:
    found = image_platform(info)
    return found is None or found.matches(platform)


def image_for(
    engine: Engine,
    ref: str,
    role: str,
    platform: Platform,
    out: Output | None = None,
    native: Platform | None = None,
) -> Resolved:
    """``ref``'s image for ``platform``: the local one when its config says so (or the
    one an earlier build kept as ``ref-linux-arm64``), else pulled for that platform and
    kept under that name, the tag ``ref`` put back (by ``restore``) unless it named
    nothing and the platform is the engine's own (``native``). A local image of another
    CPU that no registry has for the platform, or a pulled one that is not for it, is an
    ImagePlatformError naming both."""
    local = engine.image(ref)
    if local is not None and _is_for(local, platform):
        return Resolved(local, ref)
    kept_ref = platform_ref(ref, platform)
    kept = engine.image(kept_ref)
    if kept is not None and _is_for(kept, platform):
        return Resolved(kept, kept_ref)
    pulled = _pull(engine, ref, role, platform, local, out)
    moved: tuple[str, str] | None = None
    name = ref
    if local is not None or native is None or not platform.matches(native):
        engine.tag(pulled.id, kept_ref)
        moved, name = (ref, local.id if local is not None else ""), kept_ref
    if not _is_for(pulled, platform):
        restore(engine, (Resolved(pulled, name, moved),))
        raise ImagePlatformError(
            f"{role} {ref} pulled for {platform} is an image for {pulled.platform}: the "
            f"registry's {ref} is not an image index holding {platform}",
            fix=f"push an image index (manifest list) with a {platform} image to {ref} "
            f"(`docker buildx imagetools create`, or `nox -s image -- --push` with "
            f'`platforms = ["{platform}", ...]`), or name an image made for {platform}',
        )
    return Resolved(pulled, name, moved)


def _pull(
    engine: Engine,
    ref: str,
    role: str,
    platform: Platform,
    local: ImageInfo | None,
    out: Output | None,
) -> ImageInfo:
    """``docker pull --platform``; what it fails with, told for the platform."""
    found = image_platform(local) if local is not None else None
    try:
        pulled = engine.pull(ref, out, platform=str(platform))
    except EngineError as exc:
        said = " ".join([exc.message, *(str(c) for c in causes(exc))]).lower()
        if "no matching manifest" in said:
            raise ImagePlatformError(
                f"{role} {ref} is an image index without an image for {platform}",
                fix=f"push a {platform} image into that index (`docker buildx imagetools "
                f"create`, or nox-warpdrive's `--push` with both platforms), name another "
                f"{role}, or leave {platform} out of `platforms`/--platform",
            ) from exc
        if local is None:
            raise
        raise _other_cpu(ref, role, found, platform, f"pulling it failed: {exc.message}") from exc
    if pulled is None:
        if local is None:
            engine.require_image(ref, role)  # the usual "no such image" with its fix
        raise _other_cpu(ref, role, found, platform, "no registry has it for that platform")
    return pulled


def _other_cpu(
    ref: str, role: str, found: Platform | None, platform: Platform, why: str
) -> ImagePlatformError:
    return ImagePlatformError(
        f"{role} {ref} is an image for {found}, not {platform} ({why})",
        fix=f"name a {role} that is an image index in a registry with a {platform} image "
        f"(as python:3.12-slim is), or a local image made for {platform}, or tag one as "
        f"{platform_ref(ref, platform)} (where a build keeps what it pulls for {platform}); "
        f"or leave {platform} out of `platforms`/--platform",
    )


def restore(engine: Engine, resolved: tuple[Resolved, ...]) -> None:
    """Put back the local tags pulls for other platforms moved or made (latest pull
    first): the pulled image stays, under its ``ref-linux-arm64`` tag."""
    for r in reversed(resolved):
        if r.moved is None:
            continue
        ref, before = r.moved
        if before:
            engine.tag(before, ref)
        else:
            engine.remove_image(ref)  # only the tag: the image has its platform's


@dataclass(frozen=True)
class Target:
    """One platform's build settings: ``cfg`` names its base and builder images by the
    names that name that platform's images during the build."""

    platform: Platform
    cfg: Config
    native: bool
    resolved: tuple[Resolved, ...] = ()


def target_for(
    cfg: Config, engine: Engine, platform: Platform, native: Platform, out: Output | None = None
) -> Target:
    """The settings that build ``platform``: ``cfg`` with its base and builder images
    resolved for it. The engine's own platform keeps the refs, exactly as a
    build without platforms, unless its local image is of another CPU."""
    base = image_for(engine, cfg.base_image, "base-image", platform, out, native)
    builder = base
    if cfg.builder_image != cfg.base_image:
        builder = image_for(engine, cfg.builder_image, "builder-image", platform, out, native)
    resolved = (base, builder) if builder is not base else (base,)
    is_native = platform.matches(native)
    # the refs themselves, not the ``REF-linux-amd64`` tags of an earlier pull for it
    same = (base.name, builder.name) == (cfg.base_image, cfg.builder_image)
    if is_native and same and not any(r.moved for r in resolved):
        return Target(platform, cfg, True)
    names = dataclasses.replace(cfg, base_image=base.name, builder_image=builder.name)
    return Target(platform, names, is_native, resolved)
