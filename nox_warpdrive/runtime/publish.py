"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py:
publishing wheels into the volume (atomically, never over another run's copy) and
recording requirement sets in the manifest, under the wheelhouse lock; the upkeep
that keeps the volume under its bound (wheel_cache.py) and the run's summary line."""

import os
import shutil
import tempfile
import time

if __package__:
    from . import common, protocol, uv_bootstrap, volume, wheel_cache
else:  # run as a script in the builder container: its modules are shipped beside it
    import common
    import protocol
    import uv_bootstrap
    import volume
    import wheel_cache


#: how many requirement sets the manifest keeps (the most recent ones)
MAX_SETS = 20


def publish(staging, wheels, fn):
    """Put one complete wheel from staging next to the published ones, atomically and
    never over another run's copy: a hard link fails when the name exists (a reader never
    sees half a wheel, and two runs publishing the same wheel cannot mix their bytes).
    False when it was there already."""
    src = os.path.join(staging, fn)
    dest = os.path.join(wheels, fn)
    with open(src, "rb") as fh:
        os.fsync(fh.fileno())
    try:
        os.link(src, dest)
        return True
    except FileExistsError:
        return False
    except OSError:
        pass  # a filesystem without hard links: copy within staging, then rename
    if os.path.exists(dest):
        return False
    fd, tmp = tempfile.mkstemp(dir=staging, prefix=".publish-")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return True


def replace_published(staging, wheels, fn):
    """Put a wheel in place of a published one of the same name (a locked plan found
    the published one is not the file its lock allows): a rename, so a reader sees the
    old file or the new one, whole. Called under the wheelhouse lock."""
    src = os.path.join(staging, fn)
    with open(src, "rb") as fh:
        os.fsync(fh.fileno())
    fd, tmp = tempfile.mkstemp(dir=wheels, prefix=".replace-")
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, os.path.join(wheels, fn))


def forget_replaced(manifest, replaced):
    """Forget what the manifest knew of replaced wheels, and the requirement sets that
    list them: those sets resolved to the old file, and are built again when asked for."""
    if not replaced:
        return
    for table in ("wheels", "stats", "built_from"):
        for fn in replaced:
            (manifest.get(table) or {}).pop(fn, None)
    sets = manifest.get("sets") or {}
    for digest in list(sets):
        files = set(w.get("file") for w in sets[digest].get("resolved") or ())
        if files & set(replaced):
            del sets[digest]


def announce_ready(wheels, files, manifest_path, uv, root):
    """One machine-read line: the resolved wheels already published (with their
    sha256s, as the manifest will list them) and the installer tools. Requirement sets
    are recorded only in the manifest, at the end, after everything was built."""
    known = common.load_manifest(manifest_path).get("wheels", {})
    ready = []
    for fn in sorted(set(files)):
        name, version = common.wheel_name_version(fn)
        digest = known.get(fn) or common.sha256(os.path.join(wheels, fn))
        size = os.path.getsize(os.path.join(wheels, fn))
        ready.append({"file": fn, "name": name, "version": version, "sha256": digest, "size": size})
    data = {"resolved": ready, "tools": uv_bootstrap.tools_entry(uv, root)}
    protocol.emit(protocol.READY_PREFIX, data)


def record(ctx, resolved_files, uv):
    """Publish what was built and record the requirement set, under the lock: a set is in
    the manifest only once all of its wheels are published. Returns the manifest."""
    plan, root, wheels, staging = ctx.plan, ctx.root, ctx.wheels, ctx.staging
    with volume.Lock(root):
        for fn in sorted(os.listdir(staging)):
            if not fn.endswith(".whl") or fn.startswith("."):
                continue
            if fn in ctx.replace:
                replace_published(staging, wheels, fn)
                ctx.new.append(fn)
            elif publish(staging, wheels, fn):
                ctx.new.append(fn)
        manifest = common.load_manifest(ctx.manifest_path)
        forget_replaced(manifest, ctx.replace)
        known = manifest.get("wheels", {})
        stats = manifest.get("stats", {})
        all_wheels = {}
        for fn in sorted(os.listdir(wheels)):
            if fn.endswith(".whl") and not fn.startswith("."):
                path = os.path.join(wheels, fn)
                all_wheels[fn] = known.get(fn) or common.sha256(path)
                stats[fn] = common.file_stat(path)
        resolved = []
        for fn in sorted(set(resolved_files)):
            name, version = common.wheel_name_version(fn)
            size = os.path.getsize(os.path.join(wheels, fn))
            entry = {"file": fn, "name": name, "version": version, "sha256": all_wheels[fn]}
            entry["size"] = size
            resolved.append(entry)
        sets = manifest.get("sets", {})
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sets[plan["requirements_hash"]] = {"resolved": resolved, "built_at": stamp}
        sets[plan["requirements_hash"]]["last_used"] = stamp
        # keep the most recently used requirement sets (switching branches back is free)
        if len(sets) > MAX_SETS:
            last_use = wheel_cache.last_use
            for old in sorted(sets, key=lambda k: last_use(sets[k]))[: len(sets) - MAX_SETS]:
                del sets[old]
        manifest.update(
            format=1,
            platform_key=plan["platform_key"],
            requirements_hash=plan["requirements_hash"],
            resolved=resolved,
            wheels=all_wheels,
            stats={fn: stats[fn] for fn in all_wheels},
            sets=sets,
            built_from=dict(
                (fn, sha)
                for fn, sha in list((manifest.get("built_from") or {}).items())
                + list(ctx.built_from.items())
                if fn in all_wheels
            ),
            tools=uv_bootstrap.tools_entry(uv, root) or manifest.get("tools", {}),
        )
        common.write_json_atomic(ctx.manifest_path, manifest, staging)
    return manifest


def upkeep(ctx, uv=None):
    """After a run, under the lock: record the use of the current requirement set, then
    keep the volume under its limit (or, for --prune, only what the current set uses);
    one PRUNED line says what was freed. The manifest as written."""
    plan, root = ctx.plan, ctx.root
    with volume.Lock(root):
        manifest = common.load_manifest(ctx.manifest_path)
        if not manifest:
            return manifest
        now = time.time()
        current = [plan["requirements_hash"]]
        wheel_cache.touch(manifest, current[0], now)
        if wheel_cache.others_live(root, ctx.staging):
            data = {"mode": "skipped", "why": "another run is building in this wheelhouse"}
        elif plan.get("prune") == "unused":
            uv = uv or uv_bootstrap.installed_uv(root, manifest)
            args = (
                root,
                plan["volume_dir"],
                manifest,
                current,
                uv,
                plan.get("all_keys"),
                volume.Lock,
            )
            data = wheel_cache.prune_unused(*args)
        else:
            limit = plan.get("cache_max_size")
            others = (
                volume.Lock,
                lambda path, data: common.write_json_atomic(path, data, ctx.staging),
            )
            data = wheel_cache.bound(
                root, plan["volume_dir"], manifest, current, limit, now, others
            )
        common.write_json_atomic(ctx.manifest_path, manifest, ctx.staging)
    wheel_cache.report(data)
    return manifest


def finish(ctx, resolved_files, uv):
    """A successful run's end: publish and record the set, the upkeep, the summary line
    (with the manifest just written: the host need not read it back). Exit code 0."""
    record(ctx, resolved_files, uv)
    manifest = upkeep(ctx, uv)
    resolved = manifest["resolved"]
    summary_line(
        {
            "new": ctx.new,
            "reused": len(resolved) - len(ctx.new),
            "resolved": len(resolved),
            "seconds": round(time.time() - ctx.started, 1),
            "manifest": manifest,
        }
    )
    return 0


def summary_line(data):
    protocol.emit(protocol.SUMMARY_PREFIX, data)
