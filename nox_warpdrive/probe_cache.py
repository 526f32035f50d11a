"""A host-side cache of platform probes, keyed by image id.

An image id is the digest of the image's config, so the probe of an id never changes:
caching it saves a container start (~0.4 s) on every build after the first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .platform import PlatformKey


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nox-warpdrive" / "probes"


def load(image_id: str) -> PlatformKey | None:
    path = cache_dir() / (image_id.replace(":", "_") + ".json")
    try:
        return PlatformKey.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def store(image_id: str, key: PlatformKey) -> None:
    path = cache_dir() / (image_id.replace(":", "_") + ".json")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(key.to_json())
        tmp.replace(path)
    except OSError:
        pass  # a cache that cannot be written only costs time
