"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py: a
wheelhouse imported into the volume (from a wheelhouse image or a CI cache
directory).

The host put the other wheelhouse's manifest and the wheels this volume lacks into this
container's own filesystem (``plan["incoming"]``: never the volume, so an interrupted
import leaves nothing there). Each wheel is copied into this run's staging directory
while it is hashed; only a wheel whose sha256 is the one the other manifest records is
published (a hard link, as every publish) and recorded, under the lock. The volume's
own wheels and requirement sets always win: a wheel of the same name is never
replaced, and a set of the other manifest is added only when every wheel it resolved
is here with the sha256 it names.
"""

import hashlib
import os
import shutil

if __package__:
    from . import common, failures, protocol, publish, volume
else:  # run as a script in the builder container: its modules are shipped beside it
    import common
    import failures
    import protocol
    import publish
    import volume


#: the fields of a platform key that decide which wheels fit (the rest is informational)
KEY_FIELDS = ("interpreter", "abi", "platform", "libc", "libc_version", "distro", "distro_version")


def safe_wheel_name(fn):
    """A plain wheel file name: nothing that could leave the wheels directory."""
    return (
        isinstance(fn, str)
        and fn.endswith(".whl")
        and not fn.startswith(".")
        and os.path.basename(fn) == fn
        and "\\" not in fn
        and "\0" not in fn
    )


def copy_hashed(src, dest):
    """Copy ``src`` to ``dest`` (synced), returning the sha256 of the bytes written: the
    wheel is read once, and what is checked is what will be published."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            h.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


def same_platform(theirs, plan):
    """Whether the other manifest was built for this platform key."""
    key = theirs.get("platform_key")
    mine = plan["platform_key"]
    return isinstance(key, dict) and all(key.get(f) == mine.get(f) for f in KEY_FIELDS)


def stage_incoming(incoming, theirs, ours, wheels, staging, source):
    """Copy the incoming wheels this volume lacks into staging, hashing each on the way:
    (verified file names, refused [(file, sha256 got, sha256 expected)])."""
    known = ours.get("wheels") or {}
    verified, refused = [], []
    for fn, expected in sorted((theirs.get("wheels") or {}).items()):
        src = os.path.join(incoming, "wheels", fn)
        if not safe_wheel_name(fn) or not isinstance(expected, str):
            continue
        if fn in known and (known[fn] != expected or os.path.exists(os.path.join(wheels, fn))):
            continue  # this volume's own file of that name wins
        if os.path.islink(src) or not os.path.isfile(src):
            continue  # not sent: the volume had it
        got = copy_hashed(src, os.path.join(staging, fn))
        if got != expected:
            common.log(
                "warning: wheel %s from %s does not match its sha256 (%s..., its manifest "
                "says %s...); refused, it will be fetched or built again"
                % (fn, source, got[:12], expected[:12])
            )
            os.unlink(os.path.join(staging, fn))
            refused.append([fn, got, expected])
            continue
        verified.append(fn)
    return verified, refused


def set_fits(entry, wheels_map):
    """Whether every wheel a requirement set resolved is known with the sha256 it names."""
    resolved = entry.get("resolved") if isinstance(entry, dict) else None
    return isinstance(resolved, list) and all(
        isinstance(w, dict) and wheels_map.get(w.get("file")) == w.get("sha256") for w in resolved
    )


def merge_imported(ours, theirs, added, wheels, plan):
    """This volume's manifest plus the ``added`` wheels and the other manifest's
    requirement sets that now fit: the volume's own sets and wheels are kept as they are
    (the most recent of the other sets fill what room MAX_SETS leaves)."""
    merged = dict(ours)
    wheels_map = dict(ours.get("wheels") or {})
    stats = dict(ours.get("stats") or {})
    built_from = dict(ours.get("built_from") or {})
    their_built_from = theirs.get("built_from") or {}
    for fn in added:
        wheels_map[fn] = theirs["wheels"][fn]
        stats[fn] = common.file_stat(os.path.join(wheels, fn))
        if isinstance(their_built_from.get(fn), str):
            built_from.setdefault(fn, their_built_from[fn])
    sets = dict(ours.get("sets") or {})
    room = max(publish.MAX_SETS, len(sets)) - len(sets)
    theirs_sets = theirs.get("sets") if isinstance(theirs.get("sets"), dict) else {}
    newest = sorted(theirs_sets.items(), key=lambda kv: str(kv[1].get("built_at", "")))
    for digest, entry in reversed(newest):
        if room > 0 and digest not in sets and set_fits(entry, wheels_map):
            sets[digest] = {"resolved": entry["resolved"], "built_at": entry.get("built_at", "")}
            room -= 1
    merged.update(
        format=1,
        platform_key=ours.get("platform_key") or plan["platform_key"],
        wheels=wheels_map,
        stats=stats,
        built_from=built_from,
        sets=sets,
    )
    return merged


def publish_imported(ctx, theirs, verified):
    """Publish the verified wheels and merge the manifests, under the lock: (added, the
    manifest as written). A wheel another run published meanwhile under that name is
    kept, and counts as added only when it is the same file."""
    root, wheels, staging = ctx.root, ctx.wheels, ctx.staging
    with volume.Lock(root):
        ours = common.load_manifest(ctx.manifest_path)
        known = ours.get("wheels") or {}
        added = []
        for fn in verified:
            expected = theirs["wheels"][fn]
            if known.get(fn, expected) != expected:
                continue
            if (
                publish.publish(staging, wheels, fn)
                or common.sha256(os.path.join(wheels, fn)) == expected
            ):
                added.append(fn)
        merged = merge_imported(ours, theirs, added, wheels, ctx.plan)
        common.write_json_atomic(ctx.manifest_path, merged, staging)
    return added, merged


def imported_line(data):
    protocol.emit(protocol.IMPORTED_PREFIX, data)


def import_main(plan):
    """Import another wheelhouse of this platform key into the volume (see above)."""
    root = os.path.join(plan["volume_dir"], plan["key"])
    wheels = os.path.join(root, "wheels")
    os.makedirs(wheels, exist_ok=True)
    incoming, source = plan["incoming"], plan.get("source", "the import")
    theirs = common.load_manifest(os.path.join(incoming, "manifest.json"))
    if not isinstance(theirs, dict) or not isinstance(theirs.get("wheels"), dict):
        imported_line({"error": "no readable manifest.json"})
        return 0
    if not same_platform(theirs, plan):
        imported_line({"error": "platform", "theirs": theirs.get("platform_key")})
        return 0
    staging, owner = volume.make_staging(root)
    ctx = common.RunState(plan, root, staging)
    try:
        ours = common.load_manifest(ctx.manifest_path)
        verified, refused = stage_incoming(incoming, theirs, ours, wheels, staging, source)
        added, merged = publish_imported(ctx, theirs, verified)
        size = sum(os.path.getsize(os.path.join(wheels, fn)) for fn in added)
        imported_line({"added": added, "refused": refused, "bytes": size, "manifest": merged})
        return 0
    except OSError as exc:
        stage = "disk" if exc.errno in (28, 122) else "internal"  # ENOSPC, EDQUOT
        return failures.report_failure(stage, 1, ["%s: %s" % (type(exc).__name__, exc)])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        owner.close()
        shutil.rmtree(incoming, ignore_errors=True)
        shutil.rmtree("/tmp/warpdrive-build", ignore_errors=True)
