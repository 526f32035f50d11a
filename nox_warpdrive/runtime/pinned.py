"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py: an
unlocked requirement set: the pins uv resolved fetched and built (downloads published
at once, sdists compiled meanwhile), or one `pip wheel` that does everything."""

import os

if __package__:
    from . import builds, common, failures, fetch, publish, resolve
else:  # run as a script in the builder container: its modules are shipped beside it
    import builds
    import common
    import failures
    import fetch
    import publish
    import resolve


def build_pinned(ctx, uv, pins, pip, base_args, env, announce=True, early=None):
    """Fetch and build what the wheelhouse lacks of ``pins``; publish downloads at once and
    announce them (unless ``announce`` is off: a locked plan announces everything at
    once). Returns (exit code, the resolved files); a failure is reported. ``early``:
    the builds started (and wheels downloaded) before the resolve (early_builds.py),
    taken by their pins."""
    plan, root, wheels, staging = ctx.plan, ctx.root, ctx.wheels, ctx.staging
    have = resolve.published(wheels)
    missing = [p for p in pins if (common.normalize(p.name), p.version) not in have]
    to_download = [p for p in missing if p.wheel_url]
    with_sdist = [p for p in missing if not p.wheel_url and p.sdist_url]
    to_build = [common.spec_of(p) for p in missing if not p.wheel_url and not p.sdist_url]
    common.log(
        "%d pinned, %d already in the wheelhouse, %d to download, %d to build"
        % (len(pins), len(pins) - len(missing), len(to_download), len(to_build) + len(with_sdist))
    )
    # sdists build (CPU) while wheels download (network)
    uv_builds = builds.start_uv_builds(ctx, uv, with_sdist, env, early)
    builders = []
    if to_build:
        cmd = pip() + ["wheel"] + base_args + ["--no-deps"] + to_build
        builders.append(builds.Tee(cmd, env=env, cwd=plan["req_dir"]))
    wheel_count = len(to_download)
    if early is not None:  # the wheels downloaded while uv resolved
        to_download = early.take_downloads(to_download)
    failed = fetch.download_wheels(to_download, staging, env)
    common.log("%d wheels downloaded" % (wheel_count - len(failed)))
    # Publish the downloads now and say which resolved wheels are ready: the host can
    # install them (in the base image) while the sdists still build here.
    early = publish_downloads(ctx, pins, have, failed)
    if announce:
        publish.announce_ready(wheels, early, ctx.manifest_path, uv, root)
    code = finish_builds(plan, pip, base_args, env, builders, uv_builds, failed)
    if code != 0:
        return code, None
    common.log("wheels fetched and built")
    return pinned_files(ctx, pins, have)


def publish_downloads(ctx, pins, have, failed):
    """Publish the downloaded wheels of ``pins`` (those not in ``failed``); the files of
    every pin whose wheel is now published (already there, or just downloaded)."""
    early = []
    for p in pins:
        key = (common.normalize(p.name), p.version)
        if key in have:
            early.append(have[key])
        elif p.wheel_url and common.spec_of(p) not in failed:
            fn = common.url_filename(p.wheel_url)
            if publish.publish(ctx.staging, ctx.wheels, fn):
                ctx.new.append(fn)
            early.append(fn)
    return early


def finish_builds(plan, pip, base_args, env, builders, uv_builds, failed):
    """Wait for the sdist builds (pip's, then uv's), then let pip fetch or build what
    could not be downloaded (``failed``, and the sdists uv could not start); 0, or the
    exit code of the reported failure."""
    code, tail = builds.worst(builders)
    if code != 0:
        stage, package = failures.classify(code, tail)
        return failures.report_failure(stage, code, tail, package)
    for spec, tee in uv_builds:
        if tee is None:
            failed.append(spec)
            continue
        built = tee.wait()
        if built != 0:
            return builds.build_failed(tee, spec, built)
        builds.built_line(spec, tee)
    code, tail = builds.pip_wheel_groups(pip, base_args, failed, env, plan["req_dir"], 2)
    if code != 0:
        stage, package = failures.classify(code, tail)
        return failures.report_failure(stage, code, tail, package)
    return 0


def pinned_files(ctx, pins, have):
    """(0, the wheel of each pin: published before or built in staging now), or a
    reported "compile" failure when a pin has none; records what each was built from."""
    built_files = {}
    for fn in os.listdir(ctx.staging):
        if fn.endswith(".whl") and not fn.startswith("."):
            name, version = common.wheel_name_version(fn)
            built_files[(common.normalize(name), version)] = fn
    resolved_files = []
    for p in pins:
        key = (common.normalize(p.name), p.version)
        fn = have.get(key) or built_files.get(key)
        if fn is not None and key not in have and not p.wheel_url and p.sdist_sha:
            ctx.built_from[fn] = p.sdist_sha  # a locked plan may reuse it
        if fn is None:
            detail = ["no wheel for %s after building" % common.spec_of(p)]
            return failures.report_failure("compile", 4, detail, common.spec_of(p)), None
        resolved_files.append(fn)
    return 0, resolved_files


def build_all_with_pip(ctx, pip, base_args, env):
    """Without uv: one `pip wheel` resolves, downloads and builds everything."""
    plan = ctx.plan
    cmd = pip() + ["wheel"] + base_args
    for name in plan["top"]:
        cmd += ["-r", os.path.join(plan["req_dir"], name)]
    cmd += plan.get("extra", [])
    common.log("pip wheel for " + plan["key"])
    tee = builds.Tee(cmd, env=env, cwd=plan["req_dir"])
    code = tee.wait()
    if code != 0:
        stage, package = failures.classify(code, tee.tail)
        return failures.report_failure(stage, code, tee.tail, package), None
    staging = ctx.staging
    return 0, sorted(fn for fn in os.listdir(staging) if fn.endswith(".whl"))
