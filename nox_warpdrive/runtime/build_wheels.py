"""Runs INSIDE the builder container (stdlib only): build the wheelhouse for one platform
key in the mounted volume.

Layout of the volume (mounted at /warpdrive):

    /warpdrive/<platform-key>/wheels/*.whl     published wheels (only complete files)
    /warpdrive/<platform-key>/cache/           pip's cache (HTTP + locally built wheels)
    /warpdrive/<platform-key>/manifest.json    requirement sets -> resolved wheels, sha256s,
                                               each set's built_at and last_used; the
                                               volume's size when last measured
    /warpdrive/<platform-key>/staging-*/       pip's output for one run, removed after
    /warpdrive/<platform-key>/tools/uv-<ver>/  uv, fetched inside the builder (so it fits it)
    /warpdrive/<platform-key>/uv-cache/        uv's cache (metadata for fast resolution)
    /warpdrive/<platform-key>/helpers-pyc/     these modules' bytecode, hash-checked
                                               (bytecode.py)

With uv available, resolution is `uv pip compile` (parallel metadata fetches, cached), and
pip only builds or downloads the pinned wheels the wheelhouse lacks, in parallel groups;
without it (or if it fails) a single `pip wheel` does everything, as before.

pip and uv write into a private staging directory; each new wheel is then copied next to
the published ones under a temporary name and renamed into place, so a reader never sees a
half-written wheel. Downloaded wheels are published as soon as they are verified (a line
WHEELS-READY tells the host, which can install them while sdists still build); a
requirement set is recorded in the manifest only at the end, after everything was built,
so a failed or interrupted run records nothing (its verified downloads stay for the next
run).

After each run the volume is kept under its bound (wheel_cache.py, shipped next to this
script): the use of the current set is recorded, then caches, unused wheels and the least
recently used sets go while it is over.

This file is the entry point: the run's stages, each in a module shipped beside it (the
host ships them all: runtime.BUILDER): uv_bootstrap (the installers), resolve, fetch
(the index, downloads), builds (compiling, with the build logs), early_builds (top
requirements' sdists compiled while uv resolves), pinned and locked (an
unlocked and a locked set), project (the project's own wheel), publish (publishing,
the manifest, the upkeep), volume (locks, staging, verification), disk and failures
(what went wrong), wheel_import (importing a wheelhouse), protocol (the lines the host
reads), common (what they share, and the run's state).
"""

import json
import os
import shutil
import sys

if __package__:
    from . import (
        builds,
        bytecode,
        common,
        cross,
        disk,
        early_builds,
        failures,
        fetch,
        locked,
        pinned,
        publish,
        resolve,
        uv_bootstrap,
        volume,
        wheel_import,
    )
else:  # run as a script in the builder container: its modules are shipped beside it
    import bytecode

    # its modules from the bytecode kept in the volume (runtime/bytecode.py)
    bytecode.use_kept(os.path.dirname(os.path.abspath(__file__)))
    import builds
    import common
    import cross
    import disk
    import early_builds
    import failures
    import fetch
    import locked
    import pinned
    import publish
    import resolve
    import uv_bootstrap
    import volume
    import wheel_import


def pip_finder(python):
    """A function giving pip, found on first use: an up-to-date resolution with uv needs
    none (finding it runs a ``pip --version``)."""
    found_pip = []

    def pip():
        if not found_pip:
            found_pip.append(uv_bootstrap.find_pip(python))
        return found_pip[0]

    return pip


def installer_for(ctx, pip, env):
    """(uv or None, 0), or (None, the exit code of the reported failure) when uv is
    required and not to be had."""
    plan = ctx.plan
    installer = plan.get("installer", "auto")
    uv = None
    if installer in ("auto", "uv"):
        # given pins: the native run fetched what uv this CPU's key can have
        fetch_uv = not plan.get("no_index") and plan.get("pins") is None
        uv = uv_bootstrap.ensure_uv(ctx.root, pip, env, fetch_uv, ctx.staging)
        if uv is None and installer == "uv":
            detail = ['installer = "uv" but uv is not available for this platform']
            return None, failures.report_failure("tools", 3, detail)
    if uv:
        common.log("uv ready")
    return uv, 0


def build_set(ctx, uv, pip, env, base_args, early=None):
    """Resolve, fetch and build the plan's set: a locked plan, the pins uv resolved, else
    one `pip wheel`. (exit code, the resolved files). ``early``: the top requirements'
    sdists compiling since before the resolve (early_builds.py)."""
    plan = ctx.plan
    if plan.get("locked") is not None:
        return locked.build_locked(ctx, uv, pip, env)
    if plan.get("pins") is not None:  # resolved by the native run: only the sdists here
        return cross.build_given(ctx, uv, pip, env, base_args)
    pins = None
    if uv:
        pins = resolve.resolve_with_uv(uv, plan, ctx.root, ctx.wheels, ctx.staging, env)
    if uv and pins is not None:
        return pinned.build_pinned(ctx, uv, pins, pip, base_args, env, early=early)
    if early is not None:
        early.stop_rest()  # pip resolves and builds everything itself
    return pinned.build_all_with_pip(ctx, pip, base_args, env)


def run(plan, ctx):
    """One run after the volume was checked: resolve, fetch and build, publish, record."""
    pip = pip_finder(plan["python"])
    env, base_args = builds.build_env(plan, ctx.staging)
    why = None if plan.get("no_index") else fetch.unreachable(env)
    if why:
        common.log("nothing was recorded")
        return failures.report_failure("network", 1, [why])
    disk.drop_cut_off_cache(ctx.root)  # else pip takes a cut-off wheel from its cache
    if plan.get("cross"):  # another CPU's set, from the engine's own builder
        return cross.run_native(ctx, pip, env)
    early = early_builds.EarlyBuilds.start(ctx, env)  # top requirements' sdists
    try:
        uv, code = installer_for(ctx, pip, env)
        if early is not None:
            early.use_uv(uv)
        if code:
            return code
        code, resolved_files = build_set(ctx, uv, pip, env, base_args, early)
    finally:
        if early is not None:
            early.stop_rest()
    if code != 0:
        disk.drop_cut_off_cache(ctx.root)  # what this failure cut off never reaches a rerun
        common.log("nothing was recorded")
        return code
    return publish.finish(ctx, resolved_files, uv)


def main():
    with open(common.PLAN) as fh:
        plan = json.load(fh)
    if plan.get("mode") == "import":
        return wheel_import.import_main(plan)
    fetch.cache_dns()
    root = os.path.join(plan["volume_dir"], plan["key"])
    wheels = os.path.join(root, "wheels")
    os.makedirs(wheels, exist_ok=True)
    os.makedirs(os.path.join(root, "cache"), exist_ok=True)
    os.makedirs(plan["req_dir"], exist_ok=True)  # no requirement files: only the server
    staging, owner = volume.make_staging(root)
    ctx = common.RunState(plan, root, staging)
    try:
        done, manifest = volume.check_volume(plan, root, wheels, staging, ctx.manifest_path)
        if (done is not None and not plan.get("upgrade")) or plan.get("mode") == "upkeep":
            # complete (or the host asks only for the upkeep): nothing to build
            manifest = publish.upkeep(ctx) or manifest
            summary = {"up_to_date": done is not None, "new": [], "manifest": manifest}
            publish.summary_line(dict(summary, resolved=len(done or ())))
            return 0
        return run(plan, ctx)
    except OSError as exc:
        stage = "disk" if exc.errno in (28, 122) else "internal"  # ENOSPC, EDQUOT
        return failures.report_failure(stage, 1, ["%s: %s" % (type(exc).__name__, exc)])
    except Exception:
        import traceback

        return failures.report_failure("internal", 1, traceback.format_exc().splitlines())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        owner.close()
        if sys.dont_write_bytecode:  # else Python wrote its own, beside the modules
            bytecode.keep(root, os.path.dirname(os.path.abspath(__file__)))
        shutil.rmtree("/tmp/warpdrive-build", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
