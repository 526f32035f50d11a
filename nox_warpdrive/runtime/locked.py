"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py: a
locked plan, installing exactly what a lock file allows.

The host read the lock (uv.lock, pylock.toml, poetry.lock, Pipfile.lock or requirement
files with --hash) and sends, per package, the files the lock allows for this platform
with their sha256s (or only the sha256s, when the lock names no files). Nothing is
resolved: each pin becomes the best wheel for this interpreter among those, downloaded
and checked against the lock's hash, or its sdist (checked) built here. A wheel already
in the volume is used only when its recorded sha256 is the one the lock allows for that
file, or when it was built from the locked sdist. Any other file is a "hash" failure
naming the package and both hashes, and is never published.
"""

import os
import tempfile

if __package__:
    from . import builds, common, failures, fetch, pinned, project, publish, resolve, uv_bootstrap
else:  # run as a script in the builder container: its modules are shipped beside it
    import builds
    import common
    import failures
    import fetch
    import pinned
    import project
    import publish
    import resolve
    import uv_bootstrap


def builder_tag_ranks():
    """{tag: rank} for this interpreter, from pip's vendored packaging (as for uv's
    wheel); None when pip's code is not to be had (the host's order is used then)."""
    if not uv_bootstrap.pip_importable():
        return None
    try:
        from pip._vendor.packaging.tags import sys_tags
    except ImportError:
        return None
    return dict((str(t), i) for i, t in enumerate(sys_tags()))


def wheel_rank(filename, ranks):
    """The best rank of a wheel file name's (compressed) tags; None when none fits."""
    parts = filename[:-4].split("-")
    if not filename.endswith(".whl") or len(parts) < 5:
        return None
    best = None
    for py in parts[-3].split("."):
        for abi in parts[-2].split("."):
            for plat in parts[-1].split("."):
                rank = ranks.get("%s-%s-%s" % (py, abi, plat))
                if rank is not None and (best is None or rank < best):
                    best = rank
    return best


def order_wheels(wheels, ranks):
    """The lock's wheels this interpreter takes, best first (the host's order when
    pip's tags are not to be had, or among equals)."""
    if ranks is None:
        return list(wheels)
    ranked = [(wheel_rank(w["file"], ranks), i, w) for i, w in enumerate(wheels)]
    return [w for rank, _, w in sorted(r for r in ranked if r[0] is not None)]


def published_for(pin, wheels_dir, ranks):
    """Published wheels of this pin's name and version that fit, best first."""
    out = []
    for fn in os.listdir(wheels_dir):
        if not fn.endswith(".whl") or fn.startswith("."):
            continue
        name, version = common.wheel_name_version(fn)
        if common.normalize(name) == pin["name"] and version == pin["version"]:
            rank = wheel_rank(fn, ranks) if ranks is not None else 0
            if rank is not None:
                out.append((rank, fn))
    return [fn for _, fn in sorted(out)]


def decide(pin, ctx, manifest, ranks):
    """What one pin needs: ("have", file) when the volume has an allowed file, else
    ("wheel", entry), ("sdist", entry) or ("lookup", None) (find it on the index)."""
    known = manifest.get("wheels") or {}
    built = manifest.get("built_from") or {}
    wheels = order_wheels(pin.get("wheels") or [], ranks)
    if wheels:
        best = wheels[0]
        if known.get(best["file"]) == best["sha256"]:
            return "have", best["file"]
        path = os.path.join(ctx.wheels, best["file"])
        # published by a run that failed before recording it: hashed here, once
        unrecorded = best["file"] not in known and os.path.exists(path)
        if unrecorded and common.sha256(path) == best["sha256"]:
            return "have", best["file"]
        if os.path.exists(path):
            ctx.replace.add(best["file"])
        return "wheel", best
    sdist = pin.get("sdist")
    allowed = set(pin.get("hashes") or ()) | set([sdist["sha256"]] if sdist else [])
    for fn in published_for(pin, ctx.wheels, ranks):
        if known.get(fn) in allowed or (fn in known and built.get(fn) in allowed):
            return "have", fn
    if sdist:
        return "sdist", sdist
    if pin.get("hashes"):
        return "lookup", None
    return "none", None


def lock_indexes(plan, env, pin):
    """Where to look a pin's files up: the index its lock names, then the indexes pip
    would use (PIP_INDEX_URL or pip's config, else PyPI; the extra ones), each as
    (url without credentials, headers)."""
    urls = [pin.get("index")] if pin.get("index") else []
    urls.append(fetch.pip_index(env))
    urls += (env.get("PIP_EXTRA_INDEX_URL") or "").split()
    urls += plan.get("indexes") or []
    out = []
    for url in urls:
        clean, headers = fetch.index_auth(url)
        if clean.rstrip("/") not in [u.rstrip("/") for u, _ in out]:
            out.append((clean, headers))
    return out


def lookup(plan, env, opener, pin, filename=None):
    """The pin's files on its indexes: (wheels, sdist, headers) as lock entries, only
    those whose sha256 the lock allows (or ``filename``, for a lock that names files but
    has no URLs). Empty when no index has them."""
    allowed = set(pin.get("hashes") or ())
    for index, headers in lock_indexes(plan, env, pin):
        page = index.rstrip("/") + "/" + pin["name"] + "/"
        try:
            files = fetch.index_files(opener, page, headers)
        except Exception as exc:
            common.log("could not read %s (%s)" % (page, exc))
            continue
        wheels, sdist = [], None
        for fn, url, sha, _ in files:
            if filename is not None and fn != filename:
                continue
            if filename is None and sha is not None and sha not in allowed:
                continue
            entry = {"file": fn, "url": url, "sha256": sha}
            if fn.endswith(".whl"):
                name, version = common.wheel_name_version(fn)
                if common.normalize(name) == pin["name"] and version == pin["version"]:
                    wheels.append(entry)
            elif filename is not None or sdist_name_version(fn) == (pin["name"], pin["version"]):
                sdist = entry
        if wheels or sdist:
            return wheels, sdist, headers
    return [], None, {}


def sdist_name_version(filename):
    """(normalised name, version) of an sdist file name; (None, None) for another."""
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix):
            name, _, version = filename[: -len(suffix)].rpartition("-")
            return common.normalize(name), version
    return None, None


class LockFailure(Exception):
    """A pin that cannot be installed as locked: reported once, nothing recorded."""

    def __init__(self, stage, package, detail, **more):
        Exception.__init__(self, stage)
        self.stage, self.package, self.detail, self.more = stage, package, detail, more

    def report(self):
        return failures.report_failure(self.stage, 5, self.detail, self.package, **self.more)


def locate(plan, env, opener, pin, entry, ranks):
    """(kind, entry with its URL, headers) of the file to download for a pin whose lock
    has no URL for it (or hashes only): found on the pin's indexes."""
    wheels, sdist, headers = lookup(plan, env, opener, pin, entry and entry["file"])
    if ranks is None:  # the host did not filter what the index lists: pure wheels only
        wheels = [w for w in wheels if w["file"].endswith("-none-any.whl")]
    wheels = order_wheels(wheels, ranks)
    if not wheels and sdist is None:
        where = " (%s)" % pin["where"] if pin.get("where") else ""
        indexes = ", ".join(u for u, _ in lock_indexes(plan, env, pin))
        detail = "%s %s%s: no file the lock allows is on the index (%s)" % (
            pin["name"],
            pin["version"],
            where,
            indexes,
        )
        raise LockFailure("missing", pin["name"], [detail], where=pin.get("where"))
    found = wheels[0] if wheels else sdist
    if entry is None:  # a lock with hashes only: the index's file, checked against them
        entry = dict(found, sha256=None)
    return ("wheel" if wheels else "sdist"), dict(entry, url=found["url"]), headers


def auth_for(plan, env, pin, url):
    """The credentials of the configured index on the URL's host, if any (a lock's URLs
    may point at a private index the builder reaches with PIP_INDEX_URL's user)."""
    import urllib.parse

    host = urllib.parse.urlsplit(url).netloc
    for index, headers in lock_indexes(plan, env, pin):
        if headers and urllib.parse.urlsplit(index).netloc == host:
            return headers
    return {}


def fetch_pin(plan, env, opener, pin, kind, entry, directory, ranks):
    """Download what a pin needs into ``directory``, checked against the lock: (kind,
    path, sha256) with kind "wheel" or "sdist". A lock URL that cannot be reached is
    looked up by file name on the configured indexes (a mirror). Raises LockFailure."""
    if kind == "lookup" or not entry.get("url"):
        kind, entry, headers = locate(plan, env, opener, pin, entry, ranks)
    else:
        headers = auth_for(plan, env, pin, entry["url"])
    path, got = fetch.download_checked(opener, entry["url"], directory, headers)
    if path is None and kind in ("wheel", "sdist") and entry.get("sha256"):
        common.log("%s: %s; looking for %s on the index" % (entry["url"], got, entry["file"]))
        try:
            kind, found, headers = locate(plan, env, opener, pin, entry, ranks)
            path, got = fetch.download_checked(opener, found["url"], directory, headers)
        except LockFailure:
            path = None
    if path is None:
        raise LockFailure("download", pin["name"], ["%s: %s" % (entry["url"], got)])
    allowed = [entry["sha256"]] if entry.get("sha256") else list(pin.get("hashes") or ())
    if got not in allowed:
        os.unlink(path)
        fn = os.path.basename(path)
        detail = "%s: sha256 %s, the lock allows %s" % (fn, got, ", ".join(allowed))
        raise LockFailure(
            "hash",
            pin["name"],
            [detail],
            expected=allowed,
            got=got,
            file=fn,
            where=pin.get("where"),
        )
    return kind, path, got


def fetch_all(plan, env, todo, directory, ranks):
    """Download every pin in ``todo`` ([(pin, kind, entry)]) in parallel threads:
    [(pin, kind, path, sha256)]. Raises the first LockFailure."""
    import concurrent.futures

    opener = fetch._opener(env)

    def one(item):
        pin, kind, entry = item
        kind, path, sha = fetch_pin(plan, env, opener, pin, kind, entry, directory, ranks)
        return pin, kind, path, sha

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, todo))


def build_extra(ctx, uv, pip, env):
    """The packages the image needs that the lock lacks (its server): resolved against
    the lock's pins as constraints, fetched and built as an unlocked set is. (exit code,
    files)."""
    plan, staging = ctx.plan, ctx.staging
    extra = plan.get("extra") or []
    if not extra:
        return 0, []
    locked = set(p["name"] for p in plan["locked"])
    if plan.get("project"):
        locked.add(plan["project"]["name"])
    locked.update(m["name"] for m in plan.get("members", []))
    constraints = os.path.join(staging, "_locked.txt")
    with open(constraints, "w") as fh:
        fh.write("".join("%s==%s\n" % (p["name"], p["version"]) for p in plan["locked"]))
    common.log("adding %s (not in the lock), resolved against its pins" % ", ".join(extra))
    env_args = builds.build_env(plan, staging)[1]
    pins = None
    if uv:
        pins = resolve.resolve_with_uv(
            uv, dict(plan, top=[]), ctx.root, ctx.wheels, staging, env, constraints
        )
    if pins is not None:
        pins = [p for p in pins if common.normalize(p.name) not in locked]
        code, files = pinned.build_pinned(ctx, uv, pins, pip, env_args, env, announce=False)
        return code, files or []
    out = tempfile.mkdtemp(dir=staging, prefix="extra-")
    args = [out if a == staging else a for a in env_args]
    tee = builds.Tee(pip() + ["wheel"] + args + ["-c", constraints] + extra, env=env)
    code = tee.wait()
    if code != 0:
        stage, package = failures.classify(code, tee.tail)
        return failures.report_failure(stage, code, tee.tail, package), None
    files = []
    for fn in os.listdir(out):
        if fn.endswith(".whl") and common.normalize(common.wheel_name_version(fn)[0]) not in locked:
            os.replace(os.path.join(out, fn), os.path.join(staging, fn))
            files.append(fn)
    return 0, files


def build_locked(ctx, uv, pip, env):
    """A locked plan: each pin from the volume or downloaded and checked, sdists and the
    project built here; nothing resolved (but the server the lock lacks). Returns (exit
    code, the resolved files); a failure is reported."""
    plan, wheels, staging = ctx.plan, ctx.wheels, ctx.staging
    manifest = common.load_manifest(ctx.manifest_path)
    ranks = builder_tag_ranks()
    decisions = [(pin,) + decide(pin, ctx, manifest, ranks) for pin in plan["locked"]]
    for pin, kind, _ in decisions:
        if kind == "none":
            detail = [
                "%s %s (%s): no file the lock allows fits this interpreter"
                % (pin["name"], pin["version"], pin.get("where"))
            ]
            return failures.report_failure("platform", 5, detail, pin["name"]), None
    todo = [d for d in decisions if d[1] != "have"]
    common.log(
        "%d locked, %d already in the wheelhouse, %d to fetch"
        % (len(decisions), len(decisions) - len(todo), len(todo))
    )
    if todo and plan.get("no_index"):
        detail = [
            "%s is not in the wheelhouse, and --no-index forbids fetching it" % todo[0][0]["name"]
        ]
        return failures.report_failure("resolve", 5, detail, todo[0][0]["name"]), None
    code, extra_files = build_extra(ctx, uv, pip, env)
    if code:
        return code, None
    try:
        fetched = fetch_all(plan, env, todo, staging, ranks)
    except LockFailure as failure:
        return failure.report(), None
    files = [what for _, kind, what in decisions if kind == "have"]
    sources = []
    for pin, kind, path, sha in fetched:
        fn = os.path.basename(path)
        if kind == "sdist":
            sources.append((pin, path, sha))
            continue
        print("Downloaded %s (sha256 as locked)" % fn, flush=True)
        files.append(fn)
        if fn not in ctx.replace and publish.publish(staging, wheels, fn):
            ctx.new.append(fn)
    ready = [f for f in files + extra_files if f not in ctx.replace]
    publish.announce_ready(
        wheels,
        [f for f in ready if os.path.exists(os.path.join(wheels, f))],
        ctx.manifest_path,
        uv,
        ctx.root,
    )
    code, built = build_sources(ctx, uv, pip, env, sources)
    if code:
        return code, None
    return 0, files + extra_files + built


def build_sources(ctx, uv, pip, env, sources):
    """Build the locked sdists (checked already) in parallel, and the project itself
    meanwhile. (exit code, the built files)."""
    plan, staging = ctx.plan, ctx.staging
    running = []
    for pin, path, sha in sources:
        out = tempfile.mkdtemp(dir=staging, prefix="built-")
        common.log("building %s==%s from its locked sdist" % (pin["name"], pin["version"]))
        running.append((pin, sha, out, builds.wheel_builder(ctx, uv, pip, env, path, out)))
    built = []
    # the project, then the workspace members it depends on (plain wheels)
    for one in ([plan["project"]] if plan.get("project") else []) + plan.get("members", []):
        code, fn = project.build_project(ctx, uv, pip, env, one)
        if code:
            for _, _, _, tee in running:
                tee.wait()
            return code, None
        built.append(fn)
    for pin, sha, out, tee in running:
        code = tee.wait()
        found = [f for f in os.listdir(out) if f.endswith(".whl")]
        if code != 0 or len(found) != 1:
            return builds.build_failed(tee, pin["name"], code or 4), None
        builds.built_line("%s==%s" % (pin["name"], pin["version"]), tee)
        os.replace(os.path.join(out, found[0]), os.path.join(staging, found[0]))
        ctx.built_from[found[0]] = sha
        built.append(found[0])
    return 0, built
