"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py:
resolution with uv (`uv pip compile` into a PEP 751 pylock.toml), the published wheels
offered to it as a flat index."""

import os
import re
import subprocess

if __package__:
    from . import common, uv_bootstrap
else:  # run as a script in the builder container: its modules are shipped beside it
    import common
    import uv_bootstrap


def published(wheels):
    """(normalised name, version) -> wheel file name, for the published wheels."""
    out = {}
    for fn in os.listdir(wheels):
        if fn.endswith(".whl") and not fn.startswith("."):
            name, version = common.wheel_name_version(fn)
            out[(common.normalize(name), version)] = fn
    return out


def flat_index(wheels, manifest_path, staging):
    """A flat index page of the published wheels (PEP 503 anchors with the manifest's
    sha256s), for uv's --find-links: given a bare directory, uv unpacks every wheel into
    its cache to hash it for the lock (a fresh volume seeded with 41 wheels: 3 to 8 s
    and 178 MB), given their hashes it only reads their metadata (0.4 s). A wheel the
    manifest does not list yet (a failed run's download) is listed without a hash."""
    known = common.load_manifest(manifest_path).get("wheels") or {}
    names = [
        fn for fn in sorted(os.listdir(wheels)) if fn.endswith(".whl") and not fn.startswith(".")
    ]
    path = os.path.join(staging, "find-links.html")
    write_page(path, wheels, names, known)
    return path


def write_page(path, wheels, names, known):
    """A PEP 503 page of anchors to the wheels ``names`` in ``wheels`` (file:// URLs, with
    the sha256 ``known`` has for each)."""
    import html
    import urllib.parse

    lines = ["<!DOCTYPE html><html><body>"]
    for fn in names:
        url = "file://" + urllib.parse.quote(os.path.join(wheels, fn))
        if isinstance(known.get(fn), str):
            url += "#sha256=" + known[fn]
        lines.append('<a href="%s">%s</a>' % (html.escape(url), html.escape(fn)))
    lines.append("</body></html>")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


#: a PEP 440 pre-release or development part (a1, b2, rc1, .dev3), as wheel file names
#: spell versions (normalised), the local part (+...) left out
PRE_RELEASE = re.compile(r"\d[._-]?(a|b|c|rc|alpha|beta|pre|preview|dev)(\d|$|[._-])")


def is_pre_release(version):
    return PRE_RELEASE.search(version.split("+", 1)[0].lower()) is not None


def local_index(wheels, manifest_path, staging):
    """The file:// URL of a PEP 503 index of the published wheels (final releases only),
    one page per project, or None when there are none. Given to uv as its first index,
    a project it lists is taken from it alone (uv's default index strategy stops at the
    first index that has a project), so the versions the wheelhouse has are kept and
    the package index is asked only about projects it lacks: adding one package with
    no dependencies to the example's 41 took 0.2 s against 1.6-1.7 s, most of it the
    41 pages asked again (this network's proxy drops PyPI's Cache-Control)."""
    import urllib.parse

    known = common.load_manifest(manifest_path).get("wheels") or {}
    projects = {}
    for fn in sorted(os.listdir(wheels)):
        if fn.endswith(".whl") and not fn.startswith("."):
            name, version = common.wheel_name_version(fn)
            if not is_pre_release(version):
                projects.setdefault(common.normalize(name), []).append(fn)
    if not projects:
        return None
    root = os.path.join(staging, "wheelhouse-index")
    for name, names in projects.items():
        os.makedirs(os.path.join(root, name), exist_ok=True)
        write_page(os.path.join(root, name, "index.html"), wheels, names, known)
    return "file://" + urllib.parse.quote(root)


def resolve_with_uv(uv, plan, root, wheels, staging, env, constraints=None, target=None):
    """Pins for the requirements as [Pin], or None when uv cannot resolve them (pip then
    does everything). The lock is PEP 751 pylock.toml,
    whose wheel lists uv has already narrowed to the interpreter's compatible ones.
    ``target``: the plan's ``cross`` entry: resolved for another CPU's interpreter (uv's
    --python-platform and --python-version), each pin's wheel chosen by its tag list.
    The versions the wheelhouse has are tried first (``local_index``), unless the plan
    says ``upgrade``, or names constraints or another CPU; when they do not fit the
    requirements, every package is resolved from the index."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11 in the builder: pip resolves
        return None
    extra = os.path.join(staging, "_extra.txt")
    with open(extra, "w") as fh:
        fh.write("\n".join(plan.get("extra", [])) + "\n")
    out = os.path.join(staging, "pylock.toml")
    cmd = uv_compile_command(uv, plan, root, wheels, staging, out, constraints)
    if target:
        cmd[3:3] = ["--python-platform", target["python_platform"]]
        cmd[3:3] = ["--python-version", target["python_version"]]
    cmd.append(extra)
    env = dict(env, **uv_bootstrap.uv_env(env))
    try:
        if not _compile_kept(cmd, plan, root, wheels, staging, env, constraints or target):
            if os.path.exists(out):  # nothing of a failed try read as uv's preferences
                os.unlink(out)
            common.log("resolving with uv")
            proc = subprocess.run(cmd, env=env, cwd=plan["req_dir"])
            if proc.returncode != 0:
                common.log("uv could not resolve the requirements; falling back to pip")
                return None
        with open(out, "rb") as fh:
            lock = tomllib.load(fh)
        return pins_for_tags(lock, target["tags"]) if target else pins_of_pylock(lock)
    except (OSError, ValueError, KeyError) as exc:
        common.log("could not read uv's lock (%s); falling back to pip" % exc)
        return None
    finally:
        for path in (extra, out):
            if os.path.exists(path):
                os.unlink(path)


def _compile_kept(cmd, plan, root, wheels, staging, env, other):
    """Whether uv resolved ``cmd`` keeping the versions the wheelhouse has (its index
    first); False, its output not shown, when it could not or was not to try (``other``:
    constraints or another CPU's target)."""
    if other or plan.get("no_index") or plan.get("upgrade"):
        return False
    first = local_index(wheels, os.path.join(root, "manifest.json"), staging)
    if first is None:
        return False
    common.log("resolving with uv, keeping the versions the wheelhouse has")
    proc = subprocess.run(
        cmd[:3] + ["--index", first] + cmd[3:],
        env=env,
        cwd=plan["req_dir"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if proc.returncode == 0:
        return True
    common.log(
        "could not resolve keeping the wheelhouse's versions (they may not fit these "
        "requirements): resolving every package from the index"
    )
    return False


def uv_compile_command(uv, plan, root, wheels, staging, out, constraints):
    """`uv pip compile` of the top requirement files into the pylock.toml ``out``, with the
    published wheels as a flat index (the extra requirements' file goes last)."""
    cmd = [
        uv,
        "pip",
        "compile",
        "--python",
        plan["python"],
        "--find-links",
        flat_index(wheels, os.path.join(root, "manifest.json"), staging),
        "--cache-dir",
        os.path.join(root, "uv-cache"),
        "--no-header",
        "--no-annotate",
        "--quiet",
        "--no-config",
        "-o",
        out,
    ]
    if plan.get("no_index"):
        cmd.append("--no-index")
    if plan.get("upgrade"):  # the index's pages asked again, whatever uv's cache holds
        cmd.append("--refresh")
    if constraints:
        cmd += ["-c", constraints]
    return cmd + [os.path.join(plan["req_dir"], n) for n in plan["top"]]


def pins_of_pylock(lock):
    """[Pin] of a pylock.toml uv wrote: per package, its first wheel with an http(s) URL
    and its sdist (KeyError when a package lacks its name or version)."""
    pins = []
    for pkg in lock.get("packages", []):
        url = sha = None
        for wheel in pkg.get("wheels", []):
            if wheel.get("url", "").startswith(("https://", "http://")):
                url, sha = wheel["url"], wheel.get("hashes", {}).get("sha256")
                break
        sdist = pkg.get("sdist") or {}
        sdist_url = sdist.get("url") if str(sdist.get("url", "")).startswith("http") else None
        sdist_sha = sdist.get("hashes", {}).get("sha256")
        pins.append(common.Pin(pkg["name"], str(pkg["version"]), url, sha, sdist_url, sdist_sha))
    return pins


def wheel_tags(filename):
    """The ``py-abi-platform`` tags a wheel's file name carries (its compressed tag sets
    expanded: ``cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64``)."""
    parts = filename[:-4].split("-") if filename.endswith(".whl") else []
    if len(parts) < 5:
        return set()
    pys, abis, plats = parts[-3].split("."), parts[-2].split("."), parts[-1].split(".")
    return set("%s-%s-%s" % (p, a, t) for p in pys for a in abis for t in plats)


def best_wheel(wheels, ranks):
    """(url, sha256) of the wheel of a pylock.toml package that the target installs,
    the best of its tags (``ranks``: tag -> its place in the target's list) first;
    (None, None) when none fits: its sdist is compiled on the target."""
    best = None
    for wheel in wheels:
        url = wheel.get("url", "")
        if not url.startswith(("https://", "http://")):
            continue
        fits = [ranks[t] for t in wheel_tags(common.url_filename(url)) if t in ranks]
        if fits and (best is None or min(fits) < best[0]):
            best = (min(fits), url, wheel.get("hashes", {}).get("sha256"))
    return (best[1], best[2]) if best else (None, None)


def pins_for_tags(lock, tags):
    """[Pin] of a pylock.toml uv wrote for another interpreter (``tags``: its supported
    tags, best first): per package, its best wheel for those tags, and its sdist."""
    ranks = dict((t, i) for i, t in enumerate(tags))
    pins = []
    for pkg in lock.get("packages", []):
        url, sha = best_wheel(pkg.get("wheels", []), ranks)
        sdist = pkg.get("sdist") or {}
        sdist_url = sdist.get("url") if str(sdist.get("url", "")).startswith("http") else None
        sdist_sha = sdist.get("hashes", {}).get("sha256")
        pins.append(common.Pin(pkg["name"], str(pkg["version"]), url, sha, sdist_url, sdist_sha))
    return pins
