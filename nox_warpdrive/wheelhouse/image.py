"""The wheelhouse as an image in a registry, for CI on fresh runners: a pipeline pushes
its wheelhouse, the next one (on an engine that never saw the app) seeds its volume from
it, so only what the image lacks is fetched or built. An added package that needs a
compiler is compiled once, by the pipeline that added it.

The image (never runnable: no Python, no command; made from nothing, by a load):

    /wheelhouse/wheels/*.whl     the wheels of one platform key
    /wheelhouse/manifest.json    their sha256s, requirement sets, what each was built from

tagged ``REPO:<tag>-<platform key>`` (``REPO:<platform key>`` when REF has no tag), so one
REF holds the wheelhouses of several platforms, and labelled ``io.warpdrive.kind=
wheelhouse``, ``io.warpdrive.platform-key`` and ``io.warpdrive.wheelhouse.wheels`` (file
-> sha256, what a pull decides from without reading a layer). A push adds one layer on
top of the previous image: the wheels it lacks (or holds another file of) and the
merged manifest, so a push and a pull move only what is new. Past MAX_LAYERS layers the
push squashes: one layer with this volume's wheelhouse, nothing else.

A missing cache is never a failure: no image yet is one line and a cold build; an
unreachable registry, a tag that is not a wheelhouse image, or the wheelhouse of another
platform key is a warning naming the ref and the fix, then a cold build. A push that
cannot be made is an error; the volume is never touched by a push.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .. import assembly
from ..engine import Engine, ImageInfo, Output, registry_check
from ..engine.base import ArchivePut, ArchiveRead, ArchiveStream
from ..errors import ConfigError, EngineError, RegistryError, host_writes
from ..labels import KIND_LABEL, PLATFORM_KEY_LABEL, WheelhouseLabels
from ..plan import CommitSpec
from ..platform import PlatformKey
from ..refs import split_ref
from ..tars import Content, stream_tar
from .transfer import (
    INCOMING,
    PER_FILE_MAX,
    Imported,
    Wheelhouse,
    import_summary,
    manifest_bytes,
    merge_shipped,
    run_import,
    shipped_manifest,
    stream_wheels,
    wheels_of,
)

#: the directory a wheelhouse image holds
IMAGE_DIR = "/wheelhouse"
#: a push that would make more layers than this squashes the image into one
MAX_LAYERS = 10

#: a fixed mtime for every entry of a wheelhouse layer (as jib does)
_MTIME = 1


def image_tag(ref: str, key: PlatformKey) -> str:
    """The tag of the wheelhouse image for ``key`` at ``ref``: ``REPO:TAG-<key>``, or
    ``REPO:<key>`` when ``ref`` has no tag (a Docker tag is at most 128 characters: a
    longer one keeps its start and a hash of the whole)."""
    if "@" in ref:
        raise ConfigError(
            f"the wheelhouse image {ref!r} names a digest; a push needs a tag",
            fix='name a repository, e.g. "registry.example.com/team/app-wheelhouse"',
        )
    repo, tag = split_ref(ref)
    explicit = ":" in ref.rsplit("/", 1)[-1]
    name = f"{tag}-{key.slug}" if explicit else key.slug
    if len(name) > 128:
        name = name[:115] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{repo}:{name}"


def unusable(info: ImageInfo, key: PlatformKey) -> str:
    """Why a pulled image cannot seed this platform's wheelhouse ("" when it can)."""
    labels = WheelhouseLabels.from_labels(info.labels)
    if labels is None:
        kind = info.labels.get(KIND_LABEL)
        what = f"an image nox-warpdrive built as {kind!r}" if kind else "not nox-warpdrive's"
        return f"is not a wheelhouse image ({what})"
    if labels.platform_key != key.slug:
        return (
            f"holds the wheelhouse of platform {info.labels.get(PLATFORM_KEY_LABEL)!r}, not "
            f"of this builder's {key.slug}"
        )
    return ""


def _labelled_wheels(info: ImageInfo) -> Mapping[str, str]:
    """The wheels (file -> sha256) a wheelhouse image's labels say it holds."""
    labels = WheelhouseLabels.from_labels(info.labels)
    return labels.wheels if labels is not None else {}


def _warn(out: Output, message: str, fix: str) -> None:
    out(f"warpdrive: warning: {message}; building without it")
    out(f"  fix: {fix}")


_FIX_PULL = (
    "point `wheelhouse-image` (or `--pull REF`) at a REF that `nox -s wheelhouse -- --push "
    "REF` wrote for this platform"
)


def pull_seed(
    engine: Engine, wh: Wheelhouse, ref: str, local: Mapping[str, Any], out: Output
) -> Imported | None:
    """Seed the volume from the wheelhouse image at ``ref``: the wheels it has and the
    volume lacks, checked against its manifest's sha256s. None (and the line saying
    why) when there is nothing to seed from."""
    tag = image_tag(ref, wh.key)
    started = time.monotonic()
    try:
        pulled = registry_check.pull(engine, tag, out)
    except (EngineError, RegistryError) as exc:
        _warn(out, f"cannot pull the wheelhouse image {tag} ({exc.message})", exc.fix or "")
        return None
    if pulled is None:
        out(f"warpdrive: no wheelhouse image at {tag} yet (a first run); building without it")
        return None
    why = unusable(pulled, wh.key)
    if why:
        _warn(out, f"{tag} {why}", _FIX_PULL)
        return None
    known = wheels_of(local)
    wanted = sorted(set(_labelled_wheels(pulled)) - set(known))
    with engine.archive_reader(pulled.id) as read:
        imported = run_import(engine, wh, _pull_archives(read, wanted), tag, out)
    if imported.error:
        _warn(out, f"{tag} could not be imported ({imported.error})", _FIX_PULL)
        return None
    seconds = time.monotonic() - started
    out(import_summary(f"wheelhouse image {tag}", imported, len(wanted), len(known), seconds))
    return imported


def _pull_archives(read: ArchiveRead, wanted: list[str]) -> list[ArchivePut]:
    """What the import step gets from the image: its manifest, and the wanted wheels (one
    by one when they are few, else the whole directory: the step skips what it has)."""
    archives: list[ArchivePut] = [(INCOMING, _opener(read, f"{IMAGE_DIR}/manifest.json"))]
    if len(wanted) > PER_FILE_MAX:
        archives.append((INCOMING, _opener(read, f"{IMAGE_DIR}/wheels")))
    else:
        archives += [
            (f"{INCOMING}/wheels", _opener(read, f"{IMAGE_DIR}/wheels/{n}")) for n in wanted
        ]
    return archives


def _opener(read: ArchiveRead, path: str) -> Callable[[], ArchiveStream | None]:
    """Read ``path`` when the import step takes it (not before: one stream at a time)."""
    return lambda: read(path)


# -- pushing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PushPlan:
    """What a push makes: the wheels its new layer carries, the manifest the image will
    hold, and whether it is one layer on nothing (a first push, or a squash)."""

    new: tuple[str, ...]
    manifest: Mapping[str, Any]
    squash: bool


def plan_push(
    local: Mapping[str, Any], previous: Mapping[str, Any] | None, depth: int
) -> PushPlan | None:
    """The push of the shipped manifest ``local`` on top of the image holding
    ``previous`` (``depth`` layers; None: no image yet); None when that image already
    holds every wheel and requirement set of ``local``."""
    if previous is None or depth >= MAX_LAYERS:
        return PushPlan(tuple(sorted(wheels_of(local))), local, True)
    theirs = wheels_of(previous)
    new = tuple(sorted(f for f, sha in wheels_of(local).items() if theirs.get(f) != sha))
    merged = merge_shipped(previous, local)
    if not new and set(merged["sets"]) <= set(previous.get("sets") or {}):
        return None
    return PushPlan(new, merged, False)


def push_wheelhouse(
    engine: Engine, wh: Wheelhouse, ref: str, manifest: Mapping[str, Any], out: Output
) -> str:
    """Push the volume's wheelhouse of ``wh.key`` to its tag at ``ref`` (see the module
    doc): its digest ("" when nothing was pushed)."""
    tag = image_tag(ref, wh.key)
    local = shipped_manifest(manifest)
    if not local["wheels"]:
        out(f"warpdrive: the wheelhouse of {wh.key.slug} is empty; nothing pushed to {tag}")
        return ""
    previous = _previous(engine, tag, wh.key, out)
    prev_manifest = _image_manifest(engine, previous) if previous is not None else None
    plan = plan_push(local, prev_manifest, previous.layers if previous else 0)
    if plan is None:
        out(f"warpdrive: the wheelhouse image {tag} already holds this wheelhouse; nothing pushed")
        return ""
    parent = None if plan.squash else previous
    with tempfile.TemporaryDirectory(prefix="warpdrive-wheelhouse-") as tmp, host_writes(tmp):
        layer = Path(tmp) / "layer.tar"
        size = _write_layer(engine, wh, plan, layer)
        image_id = engine.load_image(_bundle(engine, wh, plan, parent, layer), "wheelhouse image")
    engine.tag(image_id, tag)
    digest = registry_check.push(engine, tag, out)
    if previous is not None and previous.id != image_id:
        engine.remove_image(previous.id)
    out(_pushed_line(tag, plan, previous, size))
    return digest


def _pushed_line(tag: str, plan: PushPlan, previous: ImageInfo | None, size: int) -> str:
    mb = f"{size / 1e6:.1f} MB"
    if not plan.squash:
        layers = previous.layers if previous is not None else 0
        return (
            f"warpdrive: wheelhouse image {tag}: a layer with {len(plan.new)} new wheels "
            f"({mb}) on {layers} earlier layers, {len(plan.manifest['wheels'])} wheels in all"
        )
    if previous is not None:
        return (
            f"warpdrive: wheelhouse image {tag}: {len(plan.new)} wheels squashed into one "
            f"layer ({mb}; the image had {previous.layers} layers, the most it may have)"
        )
    return f"warpdrive: wheelhouse image {tag}: {len(plan.new)} wheels in one layer ({mb})"


def _previous(engine: Engine, tag: str, key: PlatformKey, out: Output) -> ImageInfo | None:
    """The wheelhouse image now at ``tag`` (pulled: a push goes on top of it), None when
    there is none. Not a wheelhouse image: an error (a push would replace it)."""
    try:
        pulled = registry_check.pull(engine, tag, out)
    except (EngineError, RegistryError) as exc:
        raise type(exc)(
            f"cannot reach the wheelhouse image {tag} ({exc.message}); nothing was pushed, "
            "the wheelhouse in the volume is built and unchanged",
            fix=exc.fix,
        ) from exc
    if pulled is None:
        return None
    why = unusable(pulled, key)
    if why and WheelhouseLabels.from_labels(pulled.labels) is None:
        raise ConfigError(
            f"{tag} {why}: pushing the wheelhouse there would replace it; nothing was "
            "pushed, the wheelhouse in the volume is built and unchanged",
            fix="choose another REF for the wheelhouse image (`--push REF`, or "
            "`wheelhouse-image` in [tool.warpdrive]), or delete that tag in the registry",
        )
    if why:
        out(f"warpdrive: warning: {tag} {why}; replacing it with this platform's wheelhouse")
        return None
    return pulled


def _image_manifest(engine: Engine, info: ImageInfo) -> dict[str, Any] | None:
    """The shipped manifest a wheelhouse image holds; None when it has none readable
    (the push then squashes)."""
    with engine.image_reader(info.id) as read:
        data = read(f"{IMAGE_DIR}/manifest.json")
    if data is None:
        return None
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            fh = tar.extractfile(member) if member.isfile() else None
            if fh is not None:
                try:
                    raw = json.loads(fh.read())
                except ValueError:
                    return None
                return shipped_manifest(raw) if isinstance(raw, dict) else None
    return None


def _info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid = _MTIME, 0, 0
    if directory:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = size, 0o644
    return info


def _layer_members(
    read: ArchiveRead, wh: Wheelhouse, plan: PushPlan
) -> Iterator[tuple[tarfile.TarInfo, Content, str]]:
    """The new layer's entries: the manifest, then each new wheel as it streams out of
    the volume, checked against its sha256 as it is copied."""
    top = IMAGE_DIR.strip("/")
    data = manifest_bytes(plan.manifest)
    yield _info(top, directory=True), None, ""
    yield _info(f"{top}/manifest.json", len(data)), data, ""
    yield _info(f"{top}/wheels", directory=True), None, ""
    wanted = {f: plan.manifest["wheels"][f] for f in plan.new}
    where = f"volume {wh.volume!r}"
    for name, size, fh in stream_wheels(read, wh.wheels_dir, wanted, where):
        yield _info(f"{top}/wheels/{name}", size), _given(fh), ""


def _given(fh: BinaryIO) -> Callable[[], BinaryIO]:
    return lambda: fh


def _write_layer(engine: Engine, wh: Wheelhouse, plan: PushPlan, path: Path) -> int:
    """Write the push's layer to ``path`` (streamed out of the volume); its size."""
    with engine.archive_reader(wh.image, wh.volume) as read, path.open("wb") as fh:
        stream_tar(fh, _layer_members(read, wh, plan))
    return path.stat().st_size


def _bundle(
    engine: Engine, wh: Wheelhouse, plan: PushPlan, parent: ImageInfo | None, layer: Path
) -> assembly.Bundle:
    """The image: ``parent`` plus the layer, or the layer alone (no base image: nothing
    to run), with the wheelhouse labels."""
    if parent is not None:
        config, history = engine.inspect_raw(parent.id), engine.history(parent.id)
        depth = parent.layers
    else:
        builder = engine.inspect_raw(wh.image)
        config = {"Architecture": builder.get("Architecture"), "Os": builder.get("Os")}
        if builder.get("Variant"):
            config["Variant"] = builder["Variant"]
        history, depth = [], 0
    labels = WheelhouseLabels(wh.key.slug, plan.manifest["wheels"], depth + 1)
    return assembly.layer_bundle(
        config,
        history,
        layer,
        CommitSpec(labels=labels.to_labels()),
        created=assembly.timestamp(time.time()),
        created_by=f"nox-warpdrive wheelhouse layer ({len(plan.new)} wheels)",
    )
