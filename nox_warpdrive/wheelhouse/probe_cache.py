"""A host-side cache of platform probes, keyed by image id and the Python command.

An image id is the digest of the image's config, so the probe of an id never changes:
caching it saves a container start (~0.4 s) on every build after the first. The probe
runs the configured ``python`` command: a probe of ``python3`` says nothing about
``python3.12`` (which the image may not even have), so the command is part of the key. What the
probe reports grows over time (the image's marker values came later): an entry written
by an older format is not used, so a key never lacks what the current code needs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..platform import PlatformKey

#: bumped when the probe reports more; entries of another format are probed again
FORMAT = 2


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nox-warpdrive" / "probes"


def _path(image_id: str, python: str) -> Path:
    command = hashlib.sha256(python.encode()).hexdigest()[:12]
    return cache_dir() / f"{image_id.replace(':', '_')}.{command}.json"


def load(image_id: str, python: str) -> PlatformKey | None:
    try:
        data = json.loads(_path(image_id, python).read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        key = PlatformKey.from_dict(data["key"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return key if key.markers else None


def store(image_id: str, python: str, key: PlatformKey) -> None:
    path = _path(image_id, python)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"format": FORMAT, "key": json.loads(key.to_json())}))
        tmp.replace(path)
    except OSError:
        pass  # a cache that cannot be written only costs time
