"""The app image built in the registry (``image -- --push-only``), as jib's ``build`` and
crane's ``append`` build one: nothing is pulled and nothing is left on the engine. The
cache image's manifest and config are read from the registry; when its deps layers fit
(the same requirements, base image and installer) and nothing has to run in a container
at build time, the app layers are made on the host exactly as ``source_layers.append_app``
plans them, only the ones the cache lacks (by diff ID: the layers are reproducible) are
gzipped and uploaded, and a new config and manifest name every other layer by the
digest the registry already has. The tag moves only with the last request, the manifest.

Anything else (requirements changed, static files to collect, a build hook, no usable
cache) is a fallback to the engine's path (pull, build, push), said in one line. The
planning (what is reused, what is uploaded, the config and the manifest) is pure and
unit-tested; the I/O is registry_api.py's.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from ..assembly import merge_config, timestamp
from ..build.app_layer import AppPlan
from ..build.deps import DepsPlan, built_for, run_deps
from ..build.static import safe_root, same_static_inputs, shadows_static
from ..config import Config
from ..engine import Engine, ImageInfo, Output
from ..engine import registry_api as api
from ..errors import RegistryError, host_writes
from ..inputs.requirements import RequirementSet
from ..labels import OCI_CREATED, STATIC_LAYER_LABEL, STATIC_ROOT_LABEL, inherited_deps_labels
from ..plan import CommitSpec
from ..platform import PlatformKey
from ..source.image_layers import LAYERS_LABEL, previous_layers, remember, write_layer
from ..source.layers import STATIC, LayerPlan, plan_layers
from .cache import deps_layers, unusable


@dataclass(frozen=True)
class Cache:
    """The cache image as the registry holds it: where, its manifest, its config, and
    its record (``info``: id = the config's digest, labels, diff IDs)."""

    ref: api.Ref
    manifest: api.Manifest
    config: Mapping[str, Any]
    info: ImageInfo

    @property
    def descriptors(self) -> dict[str, dict[str, Any]]:
        """diff ID -> the manifest's descriptor of that layer's blob."""
        layers = self.manifest.data.get("layers") or []
        return {d: dict(desc) for d, desc in zip(self.info.diff_ids, layers, strict=False)}


def cache_record(ref: api.Ref, manifest: api.Manifest, config: Mapping[str, Any]) -> Cache:
    """The Cache of a manifest and its config (pure)."""
    section = config.get("config") or {}
    diff_ids = tuple(str(d) for d in (config.get("rootfs") or {}).get("diff_ids") or ())
    layers = manifest.data.get("layers") or []
    info = ImageInfo(
        id=str((manifest.data.get("config") or {}).get("digest") or ""),
        env=tuple(section.get("Env") or ()),
        labels=dict(section.get("Labels") or {}),
        size=sum(int(d.get("size") or 0) for d in layers),
        layers=len(diff_ids),
        created=str(config.get("created") or ""),
        diff_ids=diff_ids if len(layers) == len(diff_ids) else (),
    )
    return Cache(ref, manifest, config, info)


# --------------------------------------------------------------------------- deciding


def why_not(
    cache: Cache, cfg: Config, base: ImageInfo, pkey: PlatformKey, reqs: RequirementSet
) -> str:
    """Why the cache's deps layers cannot carry this build ("" when they can)."""
    if not cache.info.diff_ids:
        return f"the cache {cache.ref} has a manifest that does not match its config"
    why = unusable(cache.info, cfg, base)
    if why:
        return f"the cache {cache.ref} {why}"
    if not built_for(cache.info.labels, cfg, base, pkey, reqs):
        return REQUIREMENTS_CHANGED
    return ""


#: why_not's answer when only the requirements (or the installer) differ
REQUIREMENTS_CHANGED = "the requirements (or the installer) changed since the cache was built"


def static_reuse(cache: Cache, app: AppPlan) -> tuple[str, str] | str:
    """(STATIC_ROOT, the diff ID of the cache's static layer) when this build's collected
    static files are the cache's, "" when nothing is collected; else why not (a str
    starting with "the")."""
    if app.build_hook:
        return "the app has a build hook, which runs in a container"
    if not app.collectstatic:
        return ("", "")
    labels = cache.info.labels
    diff, root = labels.get(STATIC_LAYER_LABEL, ""), safe_root(labels.get(STATIC_ROOT_LABEL, ""))
    if not app.static_key or not same_static_inputs(cache.info, app):
        return "the static inputs changed: collectstatic must run"
    if diff not in cache.info.diff_ids or root is None:
        return "the cache has no layer of collected static files"
    if shadows_static(app.tree.tree, root):
        return "the source has a copy of STATIC_ROOT, which collectstatic overwrites"
    return root, diff


# --------------------------------------------------------------------------- pure planning


@dataclass(frozen=True)
class Layer:
    """One app layer of the new image: what made it, its diff ID, and its blob's
    descriptor when the cache has it (else ``made``: the gzipped tar to upload)."""

    created_by: str
    diff_id: str
    descriptor: Mapping[str, Any] | None = None
    made: Path | None = None


def blob_plan(
    layers: Sequence[Layer], cache_blobs: Mapping[str, Mapping[str, Any]]
) -> tuple[list[Layer], list[Layer]]:
    """(every layer, with the cache's descriptor where it has that diff ID; the ones to
    upload)."""
    out: list[Layer] = []
    upload: list[Layer] = []
    for layer in layers:
        found = cache_blobs.get(layer.diff_id)
        if found is not None:
            layer = dataclasses.replace(layer, descriptor=found, made=None)
        elif layer.made is not None:
            upload.append(layer)
        out.append(layer)
    return out, upload


def history_rows(
    rows: Sequence[Mapping[str, Any]], below: int, added: Sequence[str], created: str, comment: str
) -> list[dict[str, Any]]:
    """The new image's history: the cache's rows up to its ``below``-th layer, then one
    row per added layer (the last with ``comment``). When the cache's rows do not match
    its layers, the rows of the layers below are left out rather than made up (and with
    them every row: a history must match the layers or be absent)."""
    kept: list[dict[str, Any]] = []
    layers = 0
    for row in rows:
        if layers == below:
            break
        kept.append(dict(row))
        if not row.get("empty_layer"):
            layers += 1
    if layers != below:
        return []
    for i, what in enumerate(added):
        entry: dict[str, Any] = {"created": created, "created_by": what}
        if i == len(added) - 1 and comment:
            entry["comment"] = comment
        kept.append(entry)
    return kept


def image_config(
    cache: Mapping[str, Any],
    parent_labels: Mapping[str, str],
    spec: CommitSpec,
    below: Sequence[str],
    added: Sequence[tuple[str, str]],
    created: str,
) -> bytes:
    """The new image's config: the cache's, its labels those of the deps image (the
    base image's and the deps labels), ``spec`` merged as a commit merges it
    (assembly.merge_config), the layers ``below`` and the ``added`` (created_by, diff
    ID) ones."""
    section = dict(cache.get("config") or {})
    section["Labels"] = dict(parent_labels)
    config: dict[str, Any] = {
        "architecture": cache.get("architecture") or "amd64",
        "os": cache.get("os") or "linux",
        "created": created,
        "config": merge_config(section, spec),
        "rootfs": {"type": "layers", "diff_ids": [*below, *(d for _, d in added)]},
    }
    history = history_rows(
        cache.get("history") or [], len(below), [c for c, _ in added], created, spec.message
    )
    if history:
        config["history"] = history
    if cache.get("variant"):
        config["variant"] = cache["variant"]
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def manifest_body(
    media_type: str, config: bytes, layers: Sequence[Mapping[str, Any]]
) -> tuple[bytes, str]:
    """(the manifest, its media type): Docker schema 2 unless the cache's was OCI."""
    oci = media_type == api.OCI_MANIFEST
    body = {
        "schemaVersion": 2,
        "mediaType": api.OCI_MANIFEST if oci else api.DOCKER_MANIFEST,
        "config": {
            "mediaType": api.OCI_CONFIG if oci else api.DOCKER_CONFIG,
            "size": len(config),
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
        },
        "layers": [dict(d) for d in layers],
    }
    return json.dumps(body, indent=3).encode(), str(body["mediaType"])


def new_descriptor(media_type: str, digest: str, size: int) -> dict[str, Any]:
    layer = api.OCI_LAYER if media_type == api.OCI_MANIFEST else api.DOCKER_LAYER
    return {"mediaType": layer, "size": size, "digest": digest}


# --------------------------------------------------------------------------- I/O


@dataclass(frozen=True)
class Pushed:
    """What a build in the registry did."""

    ref: str
    digest: str
    config_digest: str
    up_to_date: bool
    uploaded: int
    uploaded_bytes: int
    reused: int
    size: int
    layers: int
    #: the tag moved (a new manifest, or the cache's under another tag)
    moved: bool = True
    #: wheels added in a deps layer of their own, on the cache's (grow)
    wheels_added: int = 0
    #: the cache it was built on, by digest (registry/repository@sha256:...; its SBOM
    #: may serve this image's: supply/remote.py)
    cache: str = ""


def summary(pushed: Pushed, seconds: float) -> str:
    took = f"{seconds:.1f} s"
    if pushed.up_to_date and not pushed.moved:
        return f"image {pushed.ref} up to date in the registry: nothing pushed or pulled ({took})"
    if pushed.up_to_date:
        return f"image {pushed.ref} tagged in the registry (the cache is this very build; {took})"
    sent = "the config"
    if pushed.wheels_added:
        wheels = "wheel" if pushed.wheels_added == 1 else "wheels"
        sent += f" and a deps layer of {pushed.wheels_added} added {wheels}"
    return (
        f"image {pushed.ref} built in the registry: {_count(pushed.uploaded)} uploaded "
        f"({pushed.uploaded_bytes / 1e3:.1f} kB with {sent}), {pushed.reused} reused by "
        f"digest, nothing pulled, nothing left on the engine ({took})"
    )


def _count(layers: int) -> str:
    return f"{layers} layer" if layers == 1 else f"{layers} layers"


@dataclass(frozen=True)
class Found:
    """A cache whose deps layers carry this build, and the registry to build in."""

    client: api.Registry
    cache: Cache
    target: api.Ref
    deps_key: str


FALLBACK = "; building here and pushing instead"


@dataclass(frozen=True)
class Fallback:
    """Why the image is built here instead."""

    why: str


@dataclass(frozen=True)
class Grow:
    """The cache is this app's, built for other requirements: when the new ones only
    add packages, its deps layers and one layer of the added wheels carry this build
    (``grow``), still pulling nothing; the wheelhouse must say first what they are."""

    client: api.Registry
    cache: Cache
    target: api.Ref


def prepare(
    engine: Engine,
    cfg: Config,
    ref: str,
    cache_ref: str,
    target: tuple[ImageInfo, PlatformKey],
    reqs: RequirementSet,
    out: Output,
) -> Found | Grow | Fallback:
    """The cache at ``cache_ref`` (manifest and config, read from the registry), when
    its deps layers carry this build (Found), or may with a layer of added packages
    (Grow); else why not (said in one line)."""
    base, pkey = target
    to, at = api.parse_ref(ref), api.parse_ref(cache_ref)
    if to.registry != at.registry:
        return _fallback(out, f"the cache {cache_ref} is in another registry than {ref}")
    client = client_for(engine, to.registry)
    cache = read_cache(client, at, platform_of(engine, base))
    if cache is None:
        return _fallback(out, f"no cache at {cache_ref} yet (a first run)")
    why = why_not(cache, cfg, base, pkey, reqs)
    if why == REQUIREMENTS_CHANGED:
        out(f"warpdrive: {why}; the wheelhouse first")
        return Grow(client, cache, to)
    if why:
        return _fallback(out, why)
    short = cache.manifest.digest[7:19]
    out(f"warpdrive: building in the registry on the cache {cache_ref} ({short})")
    return Found(client, cache, to, built_for(cache.info.labels, cfg, base, pkey, reqs))


def push_only(found: Found, app: AppPlan, base: ImageInfo, out: Output) -> Pushed | None:
    """The image in the registry (None, and one line saying why, when something must
    run in a container at build time)."""
    if up_to_date(found.cache, app):
        return retag(found.client, found.cache, found.target)
    static = _static_here(found.cache, app, out)
    if static is None:
        return None
    created = app.commit.labels.get(OCI_CREATED) or timestamp(time.time())
    return build(found.client, found.cache, app, found.target, base, static, created, out)


def _static_here(cache: Cache, app: AppPlan, out: Output) -> tuple[str, str] | None:
    """static_reuse's answer, said: None (and why, in one line) when collectstatic or a
    build hook must run, so the image is built on the engine instead."""
    static = static_reuse(cache, app)
    if isinstance(static, str):
        out(f"warpdrive: {static}{FALLBACK}")  # the build here says the settings
        return None
    for line in app.static_notes:
        out(line)
    if static[1]:
        out("warpdrive: static inputs unchanged; reusing the collected static files")
    return static


def grow(
    found: Grow, deps: DepsPlan, app: AppPlan, base: ImageInfo, engine: Engine, out: Output
) -> Pushed | None:
    """The image in the registry on the cache's deps layers and one more, ``deps`` (a
    plan_grow step: the added wheels, installed on the engine into a virtualenv of its
    own and exported, never on an image); None, and one line saying why, when something
    must run in a container at build time."""
    static = _static_here(found.cache, app, out)  # only added: see same_packages_or_more
    if static is None:
        return None
    created = app.commit.labels.get(OCI_CREATED) or timestamp(time.time())
    media = found.cache.manifest.media_type
    with tempfile.TemporaryDirectory(prefix="warpdrive-deps-") as tmp, host_writes(tmp):
        raw = Path(tmp) / "deps.tar"
        run_deps(engine, deps.step, out, raw)
        assert deps.step.commit is not None
        layer = _gzipped(raw, Path(tmp) / "deps.tar.gz", "nox-warpdrive deps layer", media)
        under = _Under(layer, deps.step.commit.labels)
        client, cache, target = found.client, found.cache, found.target
        pushed = build(client, cache, app, target, base, static, created, out, under)
    return dataclasses.replace(pushed, wheels_added=len(deps.files))


@dataclass(frozen=True)
class _Under:
    """A layer of added packages between the cache's deps layers and the app layers,
    and the deps labels of all of them together."""

    layer: Layer
    labels: Mapping[str, str]


def _gzipped(raw: Path, path: Path, created_by: str, media: str) -> Layer:
    """A layer tar on disk, gzipped as registry_build's own layers are: its diff ID
    and the descriptor of the gzip written to ``path``."""
    tar_sha = hashlib.sha256()
    with raw.open("rb") as src, path.open("wb") as dest:
        counted = _Digesting(dest)
        with gzip.GzipFile(filename="", mode="wb", fileobj=counted, compresslevel=6, mtime=0) as gz:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                tar_sha.update(chunk)
                gz.write(chunk)
    descriptor = new_descriptor(media, "sha256:" + counted.sha.hexdigest(), counted.size)
    return Layer(created_by, "sha256:" + tar_sha.hexdigest(), descriptor, path)


def _fallback(out: Output, why: str) -> Fallback:
    out(f"warpdrive: {why}{FALLBACK}")
    return Fallback(why)


def client_for(engine: Engine, registry: str, timeout: float = 60) -> api.Registry:
    return api.Registry(registry, engine.registry_login(registry), timeout)


def platform_of(engine: Engine, base: ImageInfo) -> tuple[str, str, str]:
    raw = engine.inspect_raw(base.id)
    return (
        str(raw.get("Os") or "linux"),
        str(raw.get("Architecture") or "amd64"),
        str(raw.get("Variant") or ""),
    )


def read_cache(client: api.Registry, ref: api.Ref, platform: tuple[str, str, str]) -> Cache | None:
    """The cache image's manifest and config, read from the registry (no layer); None
    when there is no image at ``ref``."""
    manifest = client.manifest(ref.repository, ref.reference, platform)
    if manifest is None:
        return None
    digest = str((manifest.data.get("config") or {}).get("digest") or "")
    if not digest.startswith("sha256:"):
        raise RegistryError(
            f"{ref} has a manifest with no config", fix="use an image docker pushed"
        )
    try:
        config = json.loads(client.blob(ref.repository, digest))
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise RegistryError(f"the config of {ref} is not JSON", fix="use an image docker pushed")
    return cache_record(ref, manifest, config)


def up_to_date(cache: Cache, app: AppPlan) -> bool:
    return app.made(cache.info)


def retag(client: api.Registry, cache: Cache, target: api.Ref) -> Pushed:
    """The cache is this very build: its manifest under the target tag (its blobs
    mounted first into another repository), or nothing at all when it is the target."""
    same = (cache.ref.repository, cache.ref.reference) == (target.repository, target.reference)
    digest = cache.manifest.digest
    if not same:
        _ensure_blobs(client, cache, target, [*cache.descriptors.values(), _config_desc(cache)])
        client.put_manifest(
            target.repository, target.reference, cache.manifest.body, cache.manifest.media_type
        )
    info = cache.info
    sent = 0 if same else len(cache.manifest.body)
    return Pushed(
        str(target),
        digest,
        info.id,
        True,
        0,
        sent,
        info.layers,
        info.size,
        info.layers,
        not same,
        cache=cache_at(cache),
    )


def cache_at(cache: Cache) -> str:
    """The cache, by its manifest digest."""
    return str(api.Ref(cache.ref.registry, cache.ref.repository, cache.manifest.digest))


def _config_desc(cache: Cache) -> dict[str, Any]:
    return dict(cache.manifest.data.get("config") or {})


def _ensure_blobs(
    client: api.Registry, cache: Cache, target: api.Ref, descriptors: Sequence[Mapping[str, Any]]
) -> None:
    """Every blob in the target repository: mounted from the cache's when it lacks one."""
    if target.repository == cache.ref.repository:
        return
    for desc in descriptors:
        digest = str(desc.get("digest") or "")
        if client.has_blob(target.repository, digest):
            continue
        if not client.mount(target.repository, digest, cache.ref.repository):
            raise RegistryError(
                f"{target.registry} would not mount blob {digest[:19]} from "
                f"{cache.ref.repository} into {target.repository}; nothing was tagged",
                fix=f"use --cache-from {target.registry}/{target.repository}:TAG, or push "
                "without --push-only",
            )


def build(
    client: api.Registry,
    cache: Cache,
    app: AppPlan,
    target: api.Ref,
    base: ImageInfo,
    static: tuple[str, str],
    created: str,
    out: Output,
    under: _Under | None = None,
) -> Pushed:
    """The new image in the registry: the app layers planned as ``append_app`` plans
    them, the ones the cache lacks gzipped and uploaded, then the config and the
    manifest (the tag moves last). ``under``: a layer of added packages on the cache's
    deps layers (the app layers do not depend on what lies below them)."""
    deps = deps_layers(cache.info, base) or ()
    below = (*base.diff_ids, *deps)
    root, static_diff = static
    spec = app.commit
    if static_diff:
        spec = dataclasses.replace(spec, labels={**spec.labels, STATIC_ROOT_LABEL: root})
    previous = previous_layers(cache.info, below)
    plans = plan_layers(app.tree, previous, static_diff or None)
    blobs, media = cache.descriptors, cache.manifest.media_type
    extra = [under.layer] if under is not None else []
    with tempfile.TemporaryDirectory(prefix="warpdrive-registry-") as tmp, host_writes(tmp):
        made = [
            _layer(app, plan, Path(tmp) / f"{i}.tar.gz", blobs, media)
            for i, plan in enumerate(plans)
        ]
        layers, upload = blob_plan([*extra, *made], blobs)
        spec = _layer_labels(spec, plans, layers[len(extra) :], static_diff)
        below_desc = [blobs[d] for d in below]
        _ensure_blobs(
            client,
            cache,
            target,
            [*below_desc, *(x.descriptor for x in layers if x.descriptor and x.made is None)],
        )
        sent = _upload(client, target, upload, out)
        deps_labels = under.labels if under is not None else cache.info.labels
        parent_labels = {**base.labels, **inherited_deps_labels(deps_labels)}
        added = [(x.created_by, x.diff_id) for x in layers]
        config = image_config(cache.config, parent_labels, spec, below, added, created)
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        if not client.has_blob(target.repository, config_digest):
            client.upload_bytes(target.repository, config, config_digest)
            sent += len(config)
        all_desc = [*below_desc, *(x.descriptor for x in layers)]
        body, media_type = manifest_body(media, config, [d for d in all_desc if d is not None])
        digest = client.put_manifest(target.repository, target.reference, body, media_type)
    remember(plans, previous)
    size = sum(int(d.get("size") or 0) for d in all_desc if d is not None)
    reused = len(all_desc) - len(upload)
    return Pushed(
        str(target),
        digest,
        config_digest,
        False,
        len(upload),
        sent,
        reused,
        size,
        len(all_desc),
        cache=cache_at(cache),
    )


def _layer_labels(
    spec: CommitSpec, plans: Sequence[LayerPlan], layers: Sequence[Layer], static_diff: str
) -> CommitSpec:
    """``spec`` with the labels that name the app layers (source_layers' rows) and the
    static layer's diff ID."""
    rows = [
        [plan.role, layer.diff_id if plan.role == STATIC else plan.key, layer.diff_id]
        for plan, layer in zip(plans, layers, strict=True)
    ]
    labels = {**spec.labels, LAYERS_LABEL: json.dumps(rows, separators=(",", ":"))}
    if static_diff:
        labels[STATIC_LAYER_LABEL] = static_diff
    return dataclasses.replace(spec, labels=labels)


def _upload(client: api.Registry, target: api.Ref, upload: Sequence[Layer], out: Output) -> int:
    """Upload the layers made here that the target repository lacks; the bytes sent."""
    sent = 0
    for layer in upload:
        assert layer.made is not None and layer.descriptor is not None
        digest = str(layer.descriptor["digest"])
        if not client.has_blob(target.repository, digest):
            size = int(layer.descriptor["size"])
            what = layer.created_by.removeprefix("nox-warpdrive ")
            out(f"warpdrive: uploading the {what} ({size / 1e3:.1f} kB gzipped)")
            client.upload(target.repository, layer.made, digest)
            sent += size
    return sent


def _layer(
    app: AppPlan,
    plan: LayerPlan,
    path: Path,
    blobs: Mapping[str, Mapping[str, Any]],
    media: str,
) -> Layer:
    """An app layer: named (the cache has it), or written from the tree, gzipped as it
    is written (one pass: the diff ID of the tar, the digest of the gzip)."""
    if plan.named is not None or plan.role == STATIC:
        diff_id = plan.named or plan.key  # the static layer's key is its diff ID
        if diff_id not in blobs:
            raise RegistryError(
                f"the cache has no blob for its layer {diff_id[:19]}",
                fix="push the cache image again (or build without --push-only)",
            )
        return Layer(plan.created_by, diff_id, blobs[diff_id])
    with path.open("wb") as raw:
        counted = _Digesting(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=counted, compresslevel=6, mtime=0) as gz:
            diff_id = write_layer(app.tree, plan.tree, cast(BinaryIO, gz))
    descriptor = new_descriptor(media, "sha256:" + counted.sha.hexdigest(), counted.size)
    return Layer(plan.created_by, diff_id, descriptor, path)


class _Digesting(io.RawIOBase):
    """A file the gzip stream is written to, hashed and counted as it goes."""

    def __init__(self, fh: IO[bytes]) -> None:
        super().__init__()
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.size += len(view)
        self.fh.write(view)
        return len(view)
