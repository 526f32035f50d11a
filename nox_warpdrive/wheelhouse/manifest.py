"""The wheelhouse volume's manifest, as the host reads it: the wheels published for a
platform key and the requirement sets resolved from them. The host reads it with a
container of its own (engine.read_volume_file, about a tenth of a second); the builder
reads and writes it in the volume itself (runtime/volume.py).

The requirement sets it listed when this host last saw it are remembered in the host's
cache (``seen_sets``): a build whose requirements are not among them starts the builder
without reading the manifest first (build/wheels_first.py). The record is only a guess
of what the volume holds, never trusted for a result: the builder reads the manifest
itself and says when the set is there already."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engine import Engine
from ..errors import WarpdriveError
from ..platform import PlatformKey
from .cache_bounds import host_cache_root
from .wheels import Wheel, wheels_from_manifest


def manifest_path(key: PlatformKey) -> str:
    return f"{key.slug}/manifest.json"


def read_manifest(engine: Engine, volume: str, key: PlatformKey, image: str) -> dict[str, Any]:
    if not engine.volume_exists(volume):
        return {}
    raw = engine.read_volume_file(volume, manifest_path(key), image)
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    remember_sets(volume, key, data)
    return data


class VolumeLostFiles(WarpdriveError):
    """The wheelhouse volume was emptied between two containers (a tmpfs volume is,
    whenever no container mounts it): fetching or building again cannot help."""

    def __init__(self, volume: str) -> None:
        super().__init__(
            f"the volume {volume!r} did not keep its files: a tmpfs volume? The wheelhouse "
            "was written into it, and the next container found it without them (a volume "
            "made with `--opt type=tmpfs` is emptied whenever no container mounts it)",
            fix=f"use a volume that keeps its files: `docker volume rm {volume}` and let "
            "nox-warpdrive create a plain one, or set `volume` in [tool.warpdrive] to another",
        )


def check_kept(engine: Engine, volume: str, key: PlatformKey, image: str) -> None:
    """VolumeLostFiles when the manifest a builder just wrote is no longer in the
    volume (read by a new container: about a tenth of a second). Without this, a volume
    that forgets builds everything on every run, reports success, and an image build
    then finds every wheel missing and sends the user to `--verify`, which succeeds."""
    if engine.read_volume_file(volume, manifest_path(key), image) is None:
        raise VolumeLostFiles(volume)


def resolved_set(manifest: Mapping[str, Any], digest: str) -> list[Wheel] | None:
    """The wheels a previous run resolved for exactly these requirements, if all are still
    published in the volume (and the set's entries are well formed)."""
    sets = manifest.get("sets")
    entry = sets.get(digest) if isinstance(sets, dict) else None
    if not isinstance(entry, dict):
        return None
    published = manifest.get("wheels")
    if not isinstance(published, dict):
        return None
    resolved = wheels_from_manifest(entry.get("resolved"))
    if resolved is None or not all(w.filename in published for w in resolved):
        return None
    return resolved


# -- the requirement sets last seen in a volume (a guess, kept on the host) ---------------


def cache_dir() -> Path:
    return host_cache_root() / "sets"


def _seen_path(volume: str, key: PlatformKey) -> Path:
    """One small file per engine, volume and platform key."""
    where = f"{os.environ.get('DOCKER_HOST', '')}\0{volume}\0{key.slug}"
    return cache_dir() / f"{hashlib.sha256(where.encode()).hexdigest()[:20]}.json"


def remember_sets(volume: str, key: PlatformKey, manifest: Mapping[str, Any]) -> None:
    """Record the requirement sets ``manifest`` (as read from, or written to, the
    volume) lists complete. A cache that cannot be written only costs time."""
    sets = manifest.get("sets")
    if not isinstance(sets, dict):
        return
    digests = sorted(d for d in sets if resolved_set(manifest, d) is not None)
    path = _seen_path(volume, key)
    text = json.dumps(digests)
    try:
        if path.is_file() and path.read_text() == text:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(path)
    except OSError:
        pass


def seen_sets(volume: str, key: PlatformKey) -> frozenset[str] | None:
    """The requirement sets the volume listed when this host last saw its manifest;
    None when it never did (or the record cannot be read)."""
    try:
        data = json.loads(_seen_path(volume, key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
        return None
    return frozenset(data)
