"""Images through a registry, for CI on fresh runners (every job starts with an empty
engine): ``--cache-from REF`` pulls an earlier app image and makes its deps layers this
engine's deps image again, so unchanged requirements build only the app layer and an
added package only a small layer on top; ``--push`` sends the built image.

A missing cache is never a failure: the first run of a pipeline has none (one line, then
a cold build), an unreachable registry or an image of another app is a warning naming
the ref, and nothing local is lost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .. import assembly
from ..build.deps import deps_ref, find_deps_image
from ..config import Config
from ..engine import Engine, ImageInfo, Output, registry_check
from ..errors import EngineError, LayerRefused, RegistryError
from ..labels import (
    DEPS_KEY_LABEL,
    KIND_LABEL,
    OCI_TITLE,
    STATIC_LAYER_LABEL,
    AppLabels,
    inherited_deps_labels,
)
from ..plan import CommitSpec
from ..source.image_layers import app_layer_count


def cache_from(
    engine: Engine, cfg: Config, ref: str, base: ImageInfo, out: Output
) -> ImageInfo | None:
    """The app image at ``ref``, pulled, with its deps layers made a local deps image;
    None (and one line saying why) when there is nothing to reuse."""
    try:
        pulled = registry_check.pull(engine, ref, out)
    except (EngineError, RegistryError) as exc:
        out(f"warpdrive: warning: cannot pull the cache {ref} ({exc.message}); building without it")
        if exc.fix:
            out(f"  fix: {exc.fix}")
        return None
    if pulled is None:
        out(f"warpdrive: no cache at {ref} yet (a first run); building without it")
        return None
    why = unusable(pulled, cfg, base)
    if why:
        out(f"warpdrive: warning: the cache {ref} {why}; building without it")
        return None
    try:
        seed_deps_image(engine, cfg, pulled, base, ref)
    except LayerRefused as exc:  # an engine that loads no layers named by diff ID (Podman)
        out(f"warpdrive: warning: {exc.message}; its deps layers are built here instead")
    out(f"warpdrive: using the cache {ref} ({pulled.id.split(':')[-1][:12]})")
    return pulled


def unusable(pulled: ImageInfo, cfg: Config, base: ImageInfo) -> str:
    """Why an image cannot serve as this app's cache ("" when it can)."""
    labels = pulled.labels
    app = AppLabels.from_labels(labels)
    if app is None or labels.get(KIND_LABEL) != "app":
        return "is not an image nox-warpdrive built"
    if app.title != cfg.name:
        return f"was built for another app ({labels.get(OCI_TITLE)!r})"
    if deps_layers(pulled, base) is None:
        return "was built on another base image"
    return ""


def deps_layers(pulled: ImageInfo, base: ImageInfo) -> tuple[str, ...] | None:
    """The diff IDs of an app image's deps layers: what lies between the base image's
    layers and its (static and) app layers; None when it does not sit on ``base``."""
    n = len(base.diff_ids)
    layers = pulled.diff_ids
    if layers[:n] != base.diff_ids:
        return None
    # a big tree has several app layers (source/image_layers.py's label lists them all)
    top = app_layer_count(pulled)
    if top is None:  # an image from before that label: one app layer, maybe a static one
        top = 1
        static = pulled.labels.get(STATIC_LAYER_LABEL, "")
        if static and len(layers) >= n + 2 and layers[-2] == static:
            top = 2
    deps = layers[n : len(layers) - top]
    return deps or None


def seed_deps_image(
    engine: Engine, cfg: Config, pulled: ImageInfo, base: ImageInfo, ref: str
) -> None:
    """Make the pulled image's deps layers a local deps image (tagged as the build that
    made them tagged it), unless one with that key is here already."""
    key = pulled.labels.get(DEPS_KEY_LABEL, "")
    layers = deps_layers(pulled, base)
    if not key or layers is None:
        return
    if find_deps_image(engine, cfg, key) is not None:
        return
    # as the app image inherited them (an earlier version's labels are kept as they are)
    labels = inherited_deps_labels(pulled.labels)
    image_id, members = deps_bundle(
        engine.inspect_raw(base.id), engine.history(base.id), layers, labels, ref
    )
    engine.load_bundle(members, "deps layers of the cache")
    engine.tag(image_id, deps_ref(cfg, key))


def deps_bundle(
    base: Mapping[str, Any],
    base_history: Sequence[Mapping[str, Any]],
    layers: Sequence[str],
    labels: Mapping[str, str],
    ref: str,
) -> tuple[str, dict[str, bytes]]:
    """A `docker load` bundle (image id, members) for an image of the base image's
    layers plus ``layers``, all named by diff ID (the engine has them: nothing carried),
    with the base image's config and ``labels``."""
    diff_ids = list((base.get("RootFS") or {}).get("Layers") or [])
    added = [f"nox-warpdrive deps layer (from {ref})"] * len(layers)
    created = str(base.get("Created") or "")[:19] + "Z" if base.get("Created") else ""
    config = {
        "architecture": base.get("Architecture") or "amd64",
        "os": base.get("Os") or "linux",
        "created": created or assembly.FIXED_CREATED,
        "config": assembly.merge_config(base.get("Config") or {}, CommitSpec(labels=labels)),
        "rootfs": {"type": "layers", "diff_ids": [*diff_ids, *layers]},
        "history": assembly.history(base_history, len(diff_ids), added, created),
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    image_id = "sha256:" + assembly.sha256_of(config_bytes)
    manifest = [
        {
            "Config": image_id[7:] + ".json",
            "RepoTags": None,
            "Layers": [f"{d[7:]}/layer.tar" for d in [*diff_ids, *layers]],
        }
    ]
    members = {"manifest.json": json.dumps(manifest).encode(), image_id[7:] + ".json": config_bytes}
    return image_id, members
