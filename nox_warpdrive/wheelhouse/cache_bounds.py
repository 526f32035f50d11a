"""The bounded cache, host side: what the builder's upkeep of the wheelhouse volume
said (runtime/wheel_cache.py does the work in the volume), when to ask for one although
nothing is built, and the bounds on this app's deps images and on the host caches.

Everything here removes only what can be had again: pip's and uv's caches, wheels and
requirement sets no current build uses, deps images no tagged image depends on, host
cache files (the source index, layer listings, collected static files, probes), each
least recently used first. Each prune says what it freed in one line.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import Config
from ..engine import Engine, ImageInfo
from ..labels import DEPS_BASE_LABEL, DEPS_KEY_LABEL, DEPS_PROJECT_LABEL, KIND_LABEL
from ..runtime.wheel_cache import FALLBACK, RECENT, default_limit, last_use


def human(size: int | float) -> str:
    """Bytes as a person reads them (decimal units, as disks and `docker system df`)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover


def pruned_line(data: Mapping[str, Any], volume: str) -> str | None:
    """The one line the user reads of the builder's upkeep report; None when the bound
    removed nothing and the volume is under its limit (nothing to say)."""
    mode = data.get("mode")
    freed, usage = int(data.get("freed") or 0), int(data.get("usage") or 0)
    what = f"{data.get('wheels', 0)} wheels, {data.get('sets', 0)} requirement sets"
    if mode == "skipped":
        return f"warpdrive: volume {volume} not pruned: {data.get('why')}; run again later"
    if mode == "unused":
        keys = data.get("keys") or []
        other = f", the wheelhouses of {len(keys)} other platform keys" if keys else ""
        return (
            f"warpdrive: --prune freed {human(freed)} in volume {volume} ({what}{other}, "
            f"pip's cache; uv's cache pruned): it holds {human(usage)}"
        )
    limit = int(data.get("limit") or 0)
    if mode != "bound" or (not freed and not data.get("over")):
        return None
    caches = [_CACHE_NAMES.get(c, c) for c in data["caches"]]
    n_keys = int(data.get("keys") or 0)
    more = [f"in {n_keys} other platform keys too"] if n_keys else []
    line = (
        f"warpdrive: cache bound: freed {human(freed)} in volume {volume} "
        f"({', '.join([*caches, what, *more])}): it holds {human(usage)} of {human(limit)}"
    )
    if data.get("over"):
        line += (
            "; still over: what the current build (and builds of the last hour) use is "
            "larger; raise `cache-max-size` in [tool.warpdrive]"
        )
    return line


#: how a bound's line names the caches it emptied (runtime/wheel_cache.py: CACHES)
_CACHE_NAMES = {
    "cache": "pip's cache",
    "uv-cache": "uv's cache",
    "helpers-pyc": "the builder's bytecode",
}


def needs_upkeep(
    manifest: Mapping[str, Any], digest: str, limit: int | None, now: float | None = None
) -> bool:
    """Whether a build that found its requirement set complete (no builder run) should
    still run the builder's upkeep: the set's recorded last use is older than half of
    RECENT (a parallel bound must see it used), or the volume was over its limit when
    last measured."""
    now = time.time() if now is None else now
    sets = manifest.get("sets")
    entry = sets.get(digest) if isinstance(sets, dict) else None
    if now - last_use(entry) >= RECENT / 2:
        return True
    volume = manifest.get("volume")
    if not isinstance(volume, dict):
        return False
    bound = limit or volume.get("limit")
    size = volume.get("bytes")
    return isinstance(bound, int) and isinstance(size, int) and size > bound


# -- host caches -------------------------------------------------------------------------


def host_cache_root() -> Path:
    """~/.cache/nox-warpdrive (under XDG_CACHE_HOME): the source index, layer listings,
    collected static files, platform probes."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nox-warpdrive"


@dataclass(frozen=True)
class CacheFile:
    path: Path
    size: int
    #: the last use: the later of its access and modification times
    used: float


def choose_files(files: list[CacheFile], limit: int, now: float, recent: float) -> list[CacheFile]:
    """The least recently used files to remove so that the rest fit in ``limit`` bytes;
    a file used within ``recent`` seconds stays (a build may be reading it)."""
    total = sum(f.size for f in files)
    out = []
    for f in sorted(files, key=lambda f: f.used):
        if total <= limit:
            break
        if now - f.used < recent:
            continue
        out.append(f)
        total -= f.size
    return out


def host_files(root: Path) -> list[CacheFile]:
    out = []
    for top, _, names in os.walk(root):
        for name in names:
            path = Path(top) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            out.append(CacheFile(path, st.st_blocks * 512, max(st.st_atime, st.st_mtime)))
    return out


def disk_of(path: Path) -> int | None:
    """The size of the disk ``path`` (or its nearest existing parent) is on."""
    for p in (path, *path.parents):
        try:
            st = os.statvfs(p)
        except OSError:
            continue
        return st.f_blocks * st.f_frsize
    return None


def bound_host_caches(limit: int | None, now: float | None = None) -> str | None:
    """Keep the host caches under ``limit`` (default: the share of this disk the volume
    gets of the engine's), least recently used first; the line to say, None when nothing
    was removed."""
    root = host_cache_root()
    if not root.is_dir():
        return None
    limit = limit or default_limit(disk_of(root))
    files = host_files(root)
    gone = choose_files(files, limit, time.time() if now is None else now, 600)
    freed = 0
    for f in gone:
        try:
            f.path.unlink()
            freed += f.size
        except OSError:
            continue
    if not gone:
        return None
    left = sum(f.size for f in files) - freed
    return (
        f"warpdrive: host caches ({root}): freed {human(freed)}, {len(gone)} least recently "
        f"used files; they hold {human(left)} of {human(limit)}"
    )


# -- deps images -------------------------------------------------------------------------

#: a deps image no tagged image depends on, unused for this long, goes whatever the bound
#: (BuildKit's default policy removes what was not used for 60 days)
DEPS_MAX_AGE = 60 * 86400


def stamp(text: str) -> float:
    """Seconds since the epoch of an engine's RFC 3339 time (nanoseconds, a zone); 0.0
    when it is missing, zero ("0001-01-01...") or unreadable."""
    found = _STAMP.match(text.strip())
    if not found or text.strip().startswith("0001-"):
        return 0.0
    zone = found.group(3) or "Z"
    when = datetime.fromisoformat(found.group(1) + ("+00:00" if zone == "Z" else zone))
    return when.timestamp() + float("0." + (found.group(2) or "0")[:6])


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


@dataclass(frozen=True)
class DepsImage:
    """What the bound knows of one deps image of the app."""

    id: str
    #: the bytes only it holds (its size less its parent's: the base or a deps image)
    own: int
    #: its last use: when it was built or last tagged (a build reuses it)
    used: float
    #: a tagged image (or the current build) depends on it
    protected: bool


def choose_deps(images: list[DepsImage], limit: int, now: float) -> list[DepsImage]:
    """The deps images to remove: every unprotected one unused for DEPS_MAX_AGE, and the
    least recently used unprotected ones past ``limit`` bytes of their own (the most
    recent are kept first); one used within RECENT stays (a build may be using it)."""
    out, total = [], 0
    for img in sorted(images, key=lambda i: i.used, reverse=True):
        if img.protected or now - img.used < RECENT:
            total += 0 if img.protected else img.own
            continue
        if now - img.used >= DEPS_MAX_AGE or total + img.own > limit:
            out.append(img)
            continue
        total += img.own
    return out


def deps_images(engine: Engine, cfg: Config, current: str) -> list[DepsImage]:
    """This app's deps images, each with its own bytes, last use and whether a tagged
    image (an app image, or a deps image built on it) or the image ``current`` (id)
    depends on it."""
    found = engine.images_with_labels({DEPS_PROJECT_LABEL: cfg.name})
    deps = [i for i in found if i.labels.get(KIND_LABEL) == "deps"]
    users = [i for i in found if i.labels.get(KIND_LABEL) != "deps" and (i.tags or i.id == current)]
    keys = {i.labels.get(DEPS_KEY_LABEL) for i in users}
    held = [i for i in deps if i.labels.get(DEPS_KEY_LABEL) in keys]
    bases = {b: engine.image(b) for b in {i.labels.get(DEPS_BASE_LABEL, "") for i in deps} if b}
    parents = deps + [b for b in bases.values() if b is not None]
    out = []
    for img in deps:
        below = [p.size for p in parents if _on(img, p)]
        protected = any(_on(h, img) or h.id == img.id for h in held)
        used = max(stamp(img.created), stamp(img.last_tagged))
        out.append(DepsImage(img.id, max(0, img.size - max(below, default=0)), used, protected))
    return out


def _on(child: ImageInfo, parent: ImageInfo) -> bool:
    """Whether ``child`` is built on ``parent`` (its layers start with all of parent's)."""
    n = len(parent.diff_ids)
    return (
        child.id != parent.id
        and 0 < n < len(child.diff_ids)
        and (child.diff_ids[:n] == parent.diff_ids)
    )


def prune_deps_images(
    engine: Engine, cfg: Config, current: str, now: float | None = None
) -> str | None:
    """Remove this app's deps images that no tag and no recent build uses, past the bound
    (``cache-max-size``, else FALLBACK) or DEPS_MAX_AGE; the line to say, None when none
    was removed. The engine refuses to remove an image another depends on: that one stays."""
    now = time.time() if now is None else now
    limit = cfg.cache_max_size or FALLBACK
    removed, freed = 0, 0
    for img in choose_deps(deps_images(engine, cfg, current), limit, now):
        engine.remove_image(img.id)
        if engine.image(img.id) is None:
            removed, freed = removed + 1, freed + img.own
    if not removed:
        return None
    return (
        f"warpdrive: deps images: removed {removed} of {cfg.name} that no tagged image and "
        f"no build of the last hour uses, freeing about {human(freed)}"
    )
