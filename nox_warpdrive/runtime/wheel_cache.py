"""Runs INSIDE the builder container (stdlib only), shipped next to build_wheels.py: the
bound on the wheelhouse volume, and ``--prune``.

The volume only grew: every wheel of every requirement set ever built, pip's and uv's
caches. After each run the builder (holding the wheelhouse lock) measures the volume and,
when it is over its limit (``cache-max-size``, by default a share of the disk the volume
is on, as BuildKit's keepStorage), removes what is cheapest to get back first: pip's
cache, then uv's (both re-derivable), then wheels no requirement set lists, then the
least recently used requirement sets with the wheels only they use. It never removes the
set the current build uses, nor one used within :data:`RECENT` seconds (a parallel build
may be installing it), and does nothing while another run of the builder is live in
the same platform key (its staging directory's flock is held).

Each set's last use is recorded in the manifest (``last_used``, RFC 3339 like
``built_at``) whenever a run uses it. What was done is one machine-read line
(protocol.PRUNED_PREFIX) the host turns into one line for the user.

:func:`choose` and :func:`choose_unused` are pure: they decide, the rest measures and
removes.
"""

import calendar
import fcntl
import glob
import json
import os
import shutil
import subprocess
import time

if __package__:
    from . import protocol
else:  # run as a script in the builder container: its modules are shipped beside it
    import protocol

#: a requirement set used this recently is never removed by the size bound: a build
#: that found it complete may be installing its wheels right now (the host records a
#: use again when the last one is older than half of this)
RECENT = 3600

#: the default limit, as BuildKit's keepStorage: this share of the disk the volume is on
#: (the engine's data root), FALLBACK when the disk's size cannot be read
DEFAULT_SHARE = 0.10
FALLBACK = 2 * 1000**3

#: the caches the bound empties first, in this order (directories of a platform key;
#: helpers-pyc: the builder's own bytecode, bytecode.py)
CACHES = ("cache", "uv-cache", "helpers-pyc")


def now_iso(now=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))


def parse_iso(text):
    """Seconds since the epoch of an RFC 3339 UTC stamp as the builder writes them; 0.0
    for anything else (an old manifest's set without one counts as least recent)."""
    try:
        return float(calendar.timegm(time.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ")))
    except (ValueError, TypeError):
        return 0.0


def last_use(entry):
    """When a set was last used: its ``last_used``, else when it was built."""
    if not isinstance(entry, dict):
        return 0.0
    return max(parse_iso(entry.get("last_used")), parse_iso(entry.get("built_at")))


def default_limit(disk_bytes):
    """The limit when none is configured, from the size of the volume's disk (None or 0:
    unknown)."""
    return int(disk_bytes * DEFAULT_SHARE) if disk_bytes else FALLBACK


def disk_size(path):
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize


def set_files(entry):
    resolved = entry.get("resolved") if isinstance(entry, dict) else None
    if not isinstance(resolved, list):
        return []
    return [w.get("file") for w in resolved if isinstance(w, dict) and w.get("file")]


def choose(sets, wheels, caches, fixed, current, limit, now, recent=RECENT):
    """What to remove to bring the volume under ``limit`` bytes, cheapest to get back
    first. ``sets``: digest -> (last use, [files]); ``wheels``: file -> (bytes, mtime) of
    every published wheel; ``caches``: [(name, bytes)] in the order to empty them;
    ``fixed``: the bytes nothing here removes (tools, manifest, other platform keys);
    ``current``: the digests never removed. Returns a dict: caches, sets, wheels (to
    remove), freed, usage (after), over (still over the limit)."""
    usage = fixed + sum(b for _, b in caches) + sum(b for b, _ in wheels.values())
    out = {"caches": [], "sets": [], "wheels": [], "freed": 0}
    if usage > limit:
        for name, size in caches:
            if usage <= limit:
                break
            out["caches"].append(name)
            usage -= size
        kept = dict(sets)
        used = set(f for _, files in kept.values() for f in files)
        orphans = sorted((wheels[f][1], f) for f in wheels if f not in used)
        for _, fn in orphans:
            if usage <= limit:
                break
            out["wheels"].append(fn)
            usage -= wheels[fn][0]
        old = sorted((t, d) for d, (t, _) in sets.items() if d not in current and now - t >= recent)
        for _, digest in old:
            if usage <= limit:
                break
            del kept[digest]
            out["sets"].append(digest)
            still = set(f for _, files in kept.values() for f in files)
            for fn in sorted(set(sets[digest][1]) - still):
                if fn in wheels and fn not in out["wheels"]:
                    out["wheels"].append(fn)
                    usage -= wheels[fn][0]
    total = fixed + sum(b for _, b in caches) + sum(b for b, _ in wheels.values())
    out.update(freed=total - usage, usage=usage, over=usage > limit)
    return out


def choose_unused(sets, wheels, current):
    """``--prune``: every set but the current ones goes, with every wheel they do not
    use. Returns a dict: sets, wheels (to remove), freed."""
    keep = set(f for d in current if d in sets for f in sets[d][1])
    gone = sorted(fn for fn in wheels if fn not in keep)
    return {
        "sets": sorted(d for d in sets if d not in current),
        "wheels": gone,
        "freed": sum(wheels[fn][0] for fn in gone),
    }


# -- measuring and removing ------------------------------------------------------------


def du(path, seen=None):
    """Bytes on disk under ``path`` (blocks, each inode once: as `du -s -B1`)."""
    seen = set() if seen is None else seen
    total = 0
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def wheel_table(wheels_dir):
    """file -> (bytes on disk, mtime) of the published wheels."""
    out = {}
    for fn in os.listdir(wheels_dir):
        if fn.endswith(".whl") and not fn.startswith("."):
            try:
                st = os.stat(os.path.join(wheels_dir, fn))
            except OSError:
                continue
            out[fn] = (st.st_blocks * 512, st.st_mtime)
    return out


def others_live(root, own):
    """Whether another run of the builder is live in this platform key: a staging dir
    (not ``own``) whose owner flock is held."""
    for path in glob.glob(os.path.join(root, "staging-*")):
        if os.path.realpath(path) != os.path.realpath(own or "") and staging_live(path):
            return True
    return False


def staging_live(staging):
    """Whether the run that owns a staging directory is alive (it holds its flock)."""
    try:
        with open(os.path.join(staging, ".owner"), "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:
        pass
    return False


def empty_dir(path):
    """Remove what a cache directory holds (the directory stays)."""
    for name in os.listdir(path) if os.path.isdir(path) else ():
        remove_path(os.path.join(path, name))


def remove_path(target):
    """Remove a file, a link or a whole directory, whatever is there (gone: nothing)."""
    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target, ignore_errors=True)
    else:
        try:
            os.unlink(target)
        except OSError:
            pass


def forget(manifest, sets, wheels):
    """Drop sets and wheels from the manifest's tables."""
    for digest in sets:
        (manifest.get("sets") or {}).pop(digest, None)
    for table in ("wheels", "stats", "built_from"):
        for fn in wheels:
            (manifest.get(table) or {}).pop(fn, None)


def remove_wheels(wheels_dir, files):
    for fn in files:
        try:
            os.unlink(os.path.join(wheels_dir, fn))
        except OSError:
            pass


def touch(manifest, digest, now):
    """Record a use of the set ``digest`` (when the manifest has it)."""
    entry = (manifest.get("sets") or {}).get(digest)
    if isinstance(entry, dict):
        entry["last_used"] = now_iso(now)


def set_table(manifest):
    sets = manifest.get("sets") if isinstance(manifest.get("sets"), dict) else {}
    return dict((d, (last_use(e), set_files(e))) for d, e in sets.items())


def bound(root, volume_dir, manifest, current, limit, now, others=None):
    """The size bound (under this platform key's lock): removes what :func:`choose` picks
    here, updates ``manifest``; when that is not enough and ``others`` is given (a lock
    for a key's directory, and how to write a manifest), the other platform keys'
    wheelhouses are bounded the same way, each under its own lock (none of their sets is
    the current build's, but one used in the last hour stays). The report for the host."""
    if limit is None:
        limit = default_limit(disk_size(volume_dir))
    total = du(volume_dir, set())
    done = [bound_key(root, manifest, current, limit, total, now)]
    left = total - done[0]["freed"]
    for other in other_keys(volume_dir, root) if others and left > limit else ():
        lock_for, write = others
        with lock_for(other):
            if left <= limit or others_live(other, None):
                continue
            path = os.path.join(other, "manifest.json")
            theirs = load_json(path)
            done.append(bound_key(other, theirs, [], limit, left, now))
            if done[-1]["sets"] or done[-1]["wheels"]:
                write(path, theirs)
            left -= done[-1]["freed"]
    usage = du(volume_dir, set()) if any(p["freed"] for p in done) else total
    manifest["volume"] = {"bytes": usage, "limit": limit, "measured_at": now_iso(now)}
    return {
        "mode": "bound",
        "limit": limit,
        "before": total,
        "usage": usage,
        "freed": max(0, total - usage),
        "sets": sum(len(p["sets"]) for p in done),
        "wheels": sum(len(p["wheels"]) for p in done),
        "caches": sorted(set(c for p in done for c in p["caches"]), key=CACHES.index),
        "keys": len([p for p in done[1:] if p["freed"]]),
        "over": usage > limit,
    }


def bound_key(root, manifest, current, limit, total, now):
    """Bound one platform key's wheelhouse, the volume holding ``total`` bytes: what
    :func:`choose` picked (and removed, and forgot in ``manifest``)."""
    wheels_dir = os.path.join(root, "wheels")
    seen = set()
    caches = [  # a cache that is not there is not emptied (nor said to be)
        (name, du(os.path.join(root, name), seen))
        for name in CACHES
        if os.path.isdir(os.path.join(root, name))
    ]
    wheels = wheel_table(wheels_dir) if os.path.isdir(wheels_dir) else {}
    fixed = max(0, total - sum(b for _, b in caches) - sum(b for b, _ in wheels.values()))
    plan = choose(set_table(manifest), wheels, caches, fixed, current, limit, now)
    for name in plan["caches"]:
        empty_dir(os.path.join(root, name))
    remove_wheels(wheels_dir, plan["wheels"])
    forget(manifest, plan["sets"], plan["wheels"])
    return plan


def load_json(path):
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def prune_unused(root, volume_dir, manifest, current, uv, all_keys, lock_for):
    """``--prune``: only what the current requirement sets use stays in this platform
    key (and, with ``all_keys``, nothing of the other keys' wheelhouses); pip's cache
    is emptied and `uv cache prune` removes what uv no longer uses. The report."""
    before = du(volume_dir, set())
    wheels_dir = os.path.join(root, "wheels")
    plan = choose_unused(set_table(manifest), wheel_table(wheels_dir), current)
    remove_wheels(wheels_dir, plan["wheels"])
    forget(manifest, plan["sets"], plan["wheels"])
    empty_dir(os.path.join(root, "cache"))
    if uv:
        cmd = [uv, "cache", "prune", "--cache-dir", os.path.join(root, "uv-cache")]
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    old_tools(root, uv)
    keys = other_keys(volume_dir, root) if all_keys else []
    for other in keys:
        with lock_for(other):
            clear_key(other)
    usage = du(volume_dir, set())
    manifest["volume"] = {"bytes": usage, "measured_at": now_iso()}
    return {
        "mode": "unused",
        "before": before,
        "usage": usage,
        "freed": max(0, before - usage),
        "sets": len(plan["sets"]),
        "wheels": len(plan["wheels"]),
        "keys": [os.path.basename(k) for k in keys],
    }


def old_tools(root, uv):
    """Remove the uv versions the wheelhouse no longer uses (all but ``uv``'s)."""
    keep = os.path.dirname(uv) if uv else None
    for path in glob.glob(os.path.join(root, "tools", "uv-*")):
        if keep and os.path.realpath(path) != os.path.realpath(keep):
            shutil.rmtree(path, ignore_errors=True)


def other_keys(volume_dir, root):
    """The other platform keys' directories in the volume."""
    out = []
    for name in sorted(os.listdir(volume_dir)):
        path = os.path.join(volume_dir, name)
        if os.path.realpath(path) == os.path.realpath(root) or not os.path.isdir(path):
            continue
        if os.path.exists(os.path.join(path, "manifest.json")) or os.path.isdir(
            os.path.join(path, "wheels")
        ):
            out.append(path)
    return out


def clear_key(path):
    """Empty another platform key's wheelhouse (under its lock; a live run's staging
    directory is left alone: it holds its flock, or it is a run's about to take it,
    under volume.UNLOCKED_PREFIX for microseconds: its own key's sweep removes one left
    by a run that died)."""
    for name in os.listdir(path):
        target = os.path.join(path, name)
        if name == ".lock" or (name.startswith("staging-") and staging_live(target)):
            continue
        if name.startswith(".staging-new-"):
            continue
        remove_path(target)


def report(data):
    protocol.emit(protocol.PRUNED_PREFIX, data)
