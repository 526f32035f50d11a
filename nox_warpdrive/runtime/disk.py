"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py: a
full disk: which one (the volume or the engine's own storage: pruning images cannot
help a full volume), and nothing cut off left in pip's cache for the next run."""

import glob
import os
import re
import tempfile
import time
import zipfile

if __package__:
    from . import common
else:  # run as a script in the builder container: its modules are shipped beside it
    import common


#: where the volume is mounted (plan.VOLUME_DIR on the host)
VOLUME_DIR = "/warpdrive"

_QUOTED_PATH = re.compile(r"""[`'"](/[^`'"]+)[`'"]""")


def space_of(path):
    """(free bytes, size in bytes) of the filesystem holding ``path``; None if unknown."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def full_filesystem(lines, volume_dir=VOLUME_DIR):
    """Which filesystem ran out of space, for the host's message: the volume or the
    engine's storage (this container's own filesystem, where pip unpacks and compiles
    in /tmp), with its free space and size. The path the failed write names decides
    (the last one on the line: a copy names its source first); without one, the
    filesystem with the smaller share free. Pruning images cannot help a full volume,
    so the two must never be confused."""
    where = None
    for line in lines:
        if "No space left" in line or "Disk quota exceeded" in line or "os error 28" in line:
            paths = _QUOTED_PATH.findall(line)
            if paths:
                inside = paths[-1] == volume_dir or paths[-1].startswith(volume_dir + "/")
                where = "volume" if inside else "engine"
    spaces = {"volume": space_of(volume_dir), "engine": space_of(tempfile.gettempdir())}
    if where is None:
        shares = {k: v[0] / v[1] for k, v in spaces.items() if v and v[1]}
        where = min(shares, key=lambda k: shares[k]) if shares else "engine"
    found = spaces[where]
    return {
        "full": where,
        "free": found[0] if found else None,
        "size": found[1] if found else None,
        "shared": same_disk(spaces["volume"], spaces["engine"]),
    }


def same_disk(volume, engine):
    """Whether the volume lives on the engine's own disk (a plain local volume does:
    /var/lib/docker/volumes): the same size, and nearly the same room. Then freeing
    the engine's space is what gives the volume room."""
    if not volume or not engine or volume[1] != engine[1]:
        return False
    return abs(volume[0] - engine[0]) <= max(64 << 20, volume[1] // 50)


def cut_off(path):
    """Whether a cached wheel is not a whole zip (its end record is read: cheap)."""
    try:
        with zipfile.ZipFile(path):
            return False
    except (zipfile.BadZipFile, OSError, EOFError):
        return True


def drop_cut_off_cache(root, settle=1.0):
    """Remove what a full disk or a killed run cut off in pip's cache in the volume: a
    wheel pip moved into its cache with a plain copy (from /tmp, another filesystem)
    that stopped half-way, which every later pip run takes from the cache and fails on
    ("Wheel ... is invalid") for ever; and the temporary files of its HTTP cache that a
    failed write leaves. uv's cache writes through temporary names and renames. A
    file still being written by a run in another container changes within ``settle``
    seconds and is left alone. Returns how many were removed."""
    cache = os.path.join(root, "cache")
    found = [
        p
        for p in glob.glob(os.path.join(cache, "wheels", "**", "*.whl"), recursive=True)
        if cut_off(p)
    ]
    found += glob.glob(os.path.join(cache, "http*", "**", "*.tmp"), recursive=True)
    if not found:
        return 0
    before = {p: stat_or_none(p) for p in found}
    time.sleep(settle)
    removed = 0
    for path, st in before.items():
        if st is not None and stat_or_none(path) == st:
            common.with_suppressed(os.unlink, path)
            removed += 1
    if removed:
        common.log(
            "removed %d cut-off files from pip's cache (a full disk or a killed run)" % removed
        )
    return removed


def stat_or_none(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns
