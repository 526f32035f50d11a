"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py: the
volume shared by concurrent runs: the wheelhouse lock, each run's staging directory
and the sweep of what interrupted runs left, the wheels verified against the
manifest."""

import fcntl
import glob
import os
import shutil
import tempfile
import time

if __package__:
    from . import common
else:  # run as a script in the builder container: its modules are shipped beside it
    import common


class Lock:
    """The wheelhouse lock (flock on a file in the volume): publishing and the manifest's
    read-modify-write happen under it. The kernel releases it when its holder dies,
    however it dies, so a killed run never leaves it held."""

    def __init__(self, root):
        self.path = os.path.join(root, ".lock")
        self.fh = None

    def __enter__(self):
        self.fh = open(self.path, "a")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            common.log("another run holds the wheelhouse lock; waiting for it")
            fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        try:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
        finally:
            self.fh.close()
        return False


def make_staging(root):
    """This run's private directory in the volume (a unique name: every container is pid
    1, so a pid names nothing). It holds an exclusive flock on its ``.owner`` file for as
    long as the run lives; the next run removes staging dirs whose lock is free. It is
    made under another name and renamed once locked: a run sweeping between the owner
    file's creation and its lock saw a free lock and removed a live run's directory."""
    made = tempfile.mkdtemp(dir=root, prefix=UNLOCKED_PREFIX)
    owner = open(os.path.join(made, ".owner"), "w")
    fcntl.flock(owner, fcntl.LOCK_EX)
    staging = os.path.join(root, "staging-" + os.path.basename(made)[len(UNLOCKED_PREFIX) :])
    os.rename(made, staging)
    return staging, owner


#: a staging directory before its owner's lock is held (make_staging)
UNLOCKED_PREFIX = ".staging-new-"


def sweep_leftovers(root, grace=120):
    """Remove what interrupted runs left: staging dirs whose owner is gone (their flock
    is free; one with no owner file yet is only removed after ``grace`` seconds), and
    temporary files of older versions of this script. Returns how many were removed."""
    removed = 0
    now = time.time()
    unlocked = glob.glob(os.path.join(root, UNLOCKED_PREFIX + "*"))
    for path in glob.glob(os.path.join(root, "staging-*")) + unlocked:
        owner = os.path.join(path, ".owner")
        try:
            if path in unlocked or not os.path.exists(owner):
                if now - os.stat(path).st_mtime > grace:
                    shutil.rmtree(path, ignore_errors=True)
                    removed += 1
                continue
            with open(owner, "a") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its run is alive
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    legacy = glob.glob(os.path.join(root, "wheels", ".*.tmp-*"))
    legacy += glob.glob(os.path.join(root, "manifest.json.tmp-*"))
    legacy += glob.glob(os.path.join(root, "tools", ".download-*"))
    for path in legacy:
        try:
            if now - os.lstat(path).st_mtime > 3600:
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
                removed += 1
        except OSError:
            continue
    return removed


def verify_wheels(wheels, manifest, full=(), everything=False):
    """Check the published wheels against the manifest's sha256s, cheaply: a wheel whose
    size and mtime equal the recorded ones is trusted, any other is hashed again (as are
    those in ``full``, or all with ``everything``). A damaged wheel is removed (it will be
    fetched or built again), a missing one forgotten. Updates ``manifest`` in place;
    returns (damaged, missing, changed)."""
    known = manifest.get("wheels") or {}
    stats = manifest.get("stats") or {}
    damaged, missing, changed = [], [], False
    for fn in sorted(known):
        path = os.path.join(wheels, fn)
        try:
            st = common.file_stat(path)
        except OSError:
            missing.append(fn)
            continue
        if not everything and fn not in full and stats.get(fn) == st:
            continue
        digest = common.sha256(path)
        if digest == known[fn]:
            if stats.get(fn) != st:
                stats[fn], changed = st, True
            continue
        common.log(
            "warning: wheel %s is damaged (sha256 %s..., the manifest says %s...); "
            "it will be fetched or built again" % (fn, digest[:12], known[fn][:12])
        )
        common.with_suppressed(os.unlink, path)
        damaged.append(fn)
    for fn in damaged + missing:
        if fn in missing:
            common.log("warning: wheel %s is missing; it will be fetched or built again" % fn)
        known.pop(fn, None)
        stats.pop(fn, None)
        (manifest.get("built_from") or {}).pop(fn, None)
        changed = True
    manifest["wheels"], manifest["stats"] = known, stats
    return damaged, missing, changed


def set_is_complete(manifest, digest):
    """The resolved wheels recorded for these requirements, when every one is still a
    known (verified) wheel; else None."""
    entry = (manifest.get("sets") or {}).get(digest)
    known = manifest.get("wheels") or {}
    if not isinstance(entry, dict):
        return None
    resolved = entry.get("resolved") or []
    if all(isinstance(w, dict) and w.get("file") in known for w in resolved):
        return resolved
    return None


def check_volume(plan, root, wheels, staging, manifest_path):
    """Sweep leftovers, verify the wheels against the manifest (recording what changed)
    and say whether these requirements are already complete: the resolved set, or None."""
    removed = sweep_leftovers(root)
    if removed:
        common.log("removed %d leftovers of interrupted runs" % removed)
    with Lock(root):
        manifest = common.load_manifest(manifest_path)
        if not manifest:
            return None, manifest
        total = len(manifest.get("wheels") or {})
        damaged, missing, changed = verify_wheels(
            wheels, manifest, set(plan.get("check_files") or ()), bool(plan.get("verify"))
        )
        if plan.get("verify"):
            common.log(
                "verified %d wheels: %d damaged, %d missing" % (total, len(damaged), len(missing))
            )
        if changed:
            common.write_json_atomic(manifest_path, manifest, staging)
    return set_is_complete(manifest, plan["requirements_hash"]), manifest
