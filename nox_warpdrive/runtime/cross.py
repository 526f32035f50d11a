"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py: the
wheelhouse of another CPU's platform key, made without emulating what needs no CPU.

The host runs the builder twice for such a key (wheelhouse/cross.py):

* natively: this script in the engine's own builder, writing the other key's part of
  the volume (``plan["key"]``), with the plan's ``cross`` entry naming the target
  (uv's --python-platform and --python-version, its tag list). uv (this CPU's, from the
  native key's tools) resolves for the target; the wheels the index has for its tags are
  downloaded, checked against their sha256 and published; the target's own uv is put in
  its key's tools for its deps layer (fetched, never run). When nothing is left to
  compile, the set is recorded here; else the summary lists every pin (``pending``) and
  nothing is recorded;
* under emulation, only when some pin has no wheel for the target: this script in that
  CPU's builder with those pins (``plan["pins"]``): nothing is resolved again; the sdists
  are compiled (and any download that failed is fetched again), then the set is
  recorded, as a run that did everything there records it.

When the native run cannot serve (uv cannot resolve for the target, no uv for this CPU
and pip cannot download every wheel as a binary), it records nothing and says so in its
summary (``unserved``): the host then runs the builder of that CPU for everything.
"""

import glob
import os
import subprocess
import time

if __package__:
    from . import common, failures, fetch, pinned, publish, resolve, uv_bootstrap
else:  # run as a script in the builder container: its modules are shipped beside it
    import common
    import failures
    import fetch
    import pinned
    import publish
    import resolve
    import uv_bootstrap


def run_native(ctx, get_pip, env):
    """The native run for the plan's target: 0 after its summary line (a result, the
    pins left to compile, or why it cannot serve), else the reported failure's code."""
    plan = ctx.plan
    target = plan["cross"]
    may_download = not plan.get("no_index")
    native_root = os.path.join(plan["volume_dir"], target["native_key"])
    os.makedirs(native_root, exist_ok=True)
    uv = their_uv = None
    installer = plan.get("installer", "auto")
    if installer in ("auto", "uv"):  # installer = "pip": pip resolves, as it would there
        uv = uv_bootstrap.ensure_uv(native_root, get_pip, env, may_download, ctx.staging)
        tags = target["tags"]
        their_uv = uv_bootstrap.target_uv(ctx.root, env, tags, may_download, ctx.staging)
    if installer == "uv" and not their_uv:
        detail = ['installer = "uv" but uv is not available for this platform']
        return failures.report_failure("tools", 3, detail)
    common.log(
        "resolving for %s (Python %s) on this CPU"
        % (target["python_platform"], target["python_version"])
    )
    pins = None
    if uv:
        pins = resolve.resolve_with_uv(
            uv, plan, ctx.root, ctx.wheels, ctx.staging, env, target=target
        )
    if pins is None:
        files = pip_download(ctx, get_pip, env, target)
        if files is None:
            return unserved("uv could not resolve for it and pip could not download it")
        return publish.finish(ctx, files, their_uv)
    return fetch_pins(ctx, pins, env, their_uv)


def fetch_pins(ctx, pins, env, their_uv):
    """Download and publish the pins' wheels for the target; record the set when no
    pin is left to compile, else hand them to the emulated run (the summary's
    ``pending``: every pin, those without a wheel for the target marked so)."""
    have = resolve.published(ctx.wheels)
    missing = [p for p in pins if (common.normalize(p.name), p.version) not in have]
    downloads = [p for p in missing if p.wheel_url]
    common.log(
        "%d pinned, %d already in the wheelhouse, %d to download, %d to compile on the target"
        % (len(pins), len(pins) - len(missing), len(downloads), len(missing) - len(downloads))
    )
    linked = link_known(ctx, downloads)
    downloads = [p for p in downloads if p not in linked]
    failed = fetch.download_wheels(downloads, ctx.staging, env)
    common.log("%d wheels downloaded" % (len(downloads) - len(failed)))
    early = pinned.publish_downloads(ctx, pins, have, failed)
    publish.announce_ready(ctx.wheels, early, ctx.manifest_path, their_uv, ctx.root)
    left = [p for p in missing if not p.wheel_url or common.spec_of(p) in failed]
    if left:
        common.log("left to the target's builder: " + ", ".join(common.spec_of(p) for p in left))
        publish.summary_line(
            {
                "pending": [list(p) for p in pins],
                "compile": [common.spec_of(p) for p in left],
                "new": ctx.new,
                "seconds": round(time.time() - ctx.started, 1),
            }
        )
        return 0
    files = [
        have.get((common.normalize(p.name), p.version)) or common.url_filename(p.wheel_url)
        for p in pins
    ]
    return publish.finish(ctx, files, their_uv)


def link_known(ctx, pins):
    """The pins whose wheel another platform key of the volume has published already
    (a pure wheel most often: the same file serves every CPU), hard-linked into staging
    instead of downloaded again, once its sha256 is the one the index gave."""
    linked = []
    for pin in pins:
        fn = common.url_filename(pin.wheel_url)
        if not pin.wheel_sha:
            continue
        for other in glob.glob(os.path.join(ctx.plan["volume_dir"], "*", "wheels", fn)):
            if os.path.dirname(other) == ctx.wheels:
                continue
            dest = os.path.join(ctx.staging, fn)
            try:
                os.link(other, dest)
            except OSError:
                continue
            if common.sha256(dest) == pin.wheel_sha:
                linked.append(pin)
                break
            os.unlink(dest)
    if linked:
        common.log("%d wheels taken from other platform keys of the volume" % len(linked))
    return linked


def unserved(why):
    """Nothing recorded: the host builds this key in its own builder (under emulation)."""
    common.log("cannot make this set here (%s); nothing was recorded" % why)
    publish.summary_line({"unserved": why})
    return 0


def pip_download(ctx, get_pip, env, target):
    """Without uv: `pip download` of the whole set as wheels for the target (pip's
    --platform, --python-version, --implementation, --abi), each checked against the
    target's tags. The wheels' names in staging, or None (an sdist is needed, or pip
    failed: the emulated run does it all)."""
    plan = ctx.plan
    try:
        pip = get_pip()
    except (OSError, subprocess.CalledProcessError) as exc:
        common.log("no pip here (%s)" % exc)
        return None
    version = ".".join(target["python_version"].split(".")[:2])
    cmd = pip + ["download", "--only-binary=:all:", "--dest", ctx.staging]
    cmd += ["--find-links", ctx.wheels, "--cache-dir", os.path.join(ctx.root, "cache")]
    cmd += ["--python-version", version, "--implementation", target["implementation"]]
    cmd += ["--abi", target["abi"], "--progress-bar", "off", "--disable-pip-version-check"]
    for platform in target["pip_platforms"]:
        cmd += ["--platform", platform]
    if plan.get("no_index"):
        cmd.append("--no-index")
    for name in plan["top"]:
        cmd += ["-r", os.path.join(plan["req_dir"], name)]
    cmd += plan.get("extra", [])
    common.log("pip download for the target")
    if subprocess.run(cmd, env=env, cwd=plan["req_dir"]).returncode != 0:
        return None
    files = sorted(fn for fn in os.listdir(ctx.staging) if fn.endswith(".whl"))
    tags = set(target["tags"])
    if not files or any(not (resolve.wheel_tags(fn) & tags) for fn in files):
        return None
    return files


def build_given(ctx, uv, get_pip, env, base_args):
    """The emulated run: the pins the native run resolved, of which only what is not
    published yet is fetched or compiled (uv builds an sdist when this key has uv, else
    `pip wheel` builds the pin). (exit code, the resolved files)."""
    pins = [common.Pin(*p) for p in ctx.plan["pins"]]
    if not uv:
        pins = [p if p.wheel_url else p._replace(sdist_url=None) for p in pins]
    return pinned.build_pinned(ctx, uv, pins, get_pip, base_args, env, announce=False)
