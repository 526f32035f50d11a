"""A host-side cache of platform probes, keyed by image id.

An image id is the digest of the image's config, so the probe of an id never changes:
caching it saves a container start (~0.4 s) on every build after the first. What the
probe reports grows over time (the image's marker values came later): an entry written
by an older format is not used, so a key never lacks what the current code needs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .platform import PlatformKey

#: bumped when the probe reports more; entries of another format are probed again
FORMAT = 2


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nox-warpdrive" / "probes"


def _path(image_id: str) -> Path:
    return cache_dir() / (image_id.replace(":", "_") + ".json")


def load(image_id: str) -> PlatformKey | None:
    try:
        data = json.loads(_path(image_id).read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        key = PlatformKey.from_dict(data["key"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return key if key.markers else None


def store(image_id: str, key: PlatformKey) -> None:
    path = _path(image_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"format": FORMAT, "key": json.loads(key.to_json())}))
        tmp.replace(path)
    except OSError:
        pass  # a cache that cannot be written only costs time
