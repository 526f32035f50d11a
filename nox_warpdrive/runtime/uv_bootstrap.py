"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py: the
installers. uv is fetched once per platform key into the volume (straight from the
index, with pip's own choice of wheel, else with `pip download`); pip is the image's
own, else the pip wheel its venv support ships."""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

if __package__:
    from . import common, fetch
else:  # run as a script in the builder container: its modules are shipped beside it
    import common
    import fetch


def find_pip(python):
    """A pip to run: the image's own; else the pip wheel that ships with the image's venv
    support (run straight from the wheel, no install); else a throwaway venv. Each is
    checked by importing its package alone (pip/__init__.py imports nothing of pip's):
    `pip --version` loads all of pip, 10 to 20 s in a builder of another CPU under
    emulation (measured here), and the `pip` command loads it again anyway."""
    probe = subprocess.run([python, "-c", "import pip"], capture_output=True)
    if probe.returncode == 0:
        return [python, "-m", "pip"]
    code = "import ensurepip, os; print(os.path.dirname(ensurepip.__file__))"
    found = subprocess.run([python, "-c", code], capture_output=True, text=True)
    candidates = sorted(glob.glob("/usr/share/python-wheels/pip-*.whl"))
    if found.returncode == 0:
        candidates += sorted(glob.glob(os.path.join(found.stdout.strip(), "_bundled", "pip-*.whl")))
    check = "import sys; sys.path.insert(0, sys.argv[1]); import pip"
    for whl in reversed(candidates):
        if subprocess.run([python, "-c", check, whl], capture_output=True).returncode == 0:
            return [python, os.path.join(whl, "pip")]
    venv = "/tmp/warpdrive-pip"
    common.log("no pip in the image; creating a private venv for it")
    subprocess.run([python, "-m", "venv", venv], check=True)
    return [venv + "/bin/python", "-m", "pip"]


UV_REQUIREMENT = "uv<1"


def uv_env(env):
    """uv reads its own variables: translate pip's index settings."""
    out = {}
    if env.get("PIP_INDEX_URL"):
        out["UV_INDEX_URL"] = env["PIP_INDEX_URL"]
    if env.get("PIP_EXTRA_INDEX_URL"):
        out["UV_EXTRA_INDEX_URL"] = env["PIP_EXTRA_INDEX_URL"]
    if env.get("PIP_TRUSTED_HOST"):
        out["UV_INSECURE_HOST"] = env["PIP_TRUSTED_HOST"]
    out["UV_NO_PROGRESS"] = "1"
    return out


def pip_module_path():
    """Where this interpreter finds pip's code: "" when it imports pip itself, else the
    pip wheel that ships with the image's venv support (importable from the zip), else
    None."""
    try:
        import pip  # noqa: F401

        return ""
    except ImportError:
        pass
    candidates = sorted(glob.glob("/usr/share/python-wheels/pip-*.whl"))
    try:
        import ensurepip

        bundled = os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")
        candidates += sorted(glob.glob(bundled))
    except ImportError:
        pass
    return candidates[-1] if candidates else None


def pick_uv_wheel(files, supported_tags, parse_wheel_filename, version_class):
    """The newest uv below 1.0 with a wheel for this interpreter (the best tag among
    equal versions); None when there is none."""
    ranks = {str(t): i for i, t in enumerate(supported_tags)}
    best = None
    limit = version_class("1")
    for filename, url, sha, yanked in files:
        if yanked or not filename.endswith(".whl"):
            continue
        try:
            name, version, _, tags = parse_wheel_filename(filename)
        except Exception:
            continue
        if name != "uv" or version >= limit or version.is_prerelease:
            continue
        rank = min((ranks[str(t)] for t in tags if str(t) in ranks), default=None)
        if rank is None:
            continue
        key = (version, -rank)
        if best is None or key > best[0]:
            best = (key, (filename, url, sha))
    return best[1] if best else None


def fetch_uv_direct(env, directory, tags=None):
    """uv's wheel straight from the index pip would use (PIP_INDEX_URL, pip's config
    files, or pip's default), picked with pip's own tag logic (``tags``: another
    interpreter's tag list instead of this one's); no pip process, which takes seconds to
    start from its wheel. The wheel's path, or None (pip then tries)."""
    if not pip_importable():
        return None
    try:
        from pip._vendor.packaging.tags import sys_tags
        from pip._vendor.packaging.utils import parse_wheel_filename
        from pip._vendor.packaging.version import Version
    except ImportError:
        return None
    index, headers = fetch.index_auth(fetch.pip_index(env))
    opener = fetch._opener(env)
    try:
        files = fetch.index_files(opener, index.rstrip("/") + "/uv/", headers)
        supported = list(sys_tags()) if tags is None else tags
        chosen = pick_uv_wheel(files, supported, parse_wheel_filename, Version)
    except Exception as exc:
        common.log("could not read the index for uv (%s); asking pip" % exc)
        return None
    if chosen is None:
        return None
    _, url, sha = chosen
    return fetch.fetch(
        opener, url, sha, directory, fetch.headers_for(url, index, headers), quiet=True
    )


def fetch_uv_with_pip(get_pip, env, directory):
    proc = subprocess.run(
        get_pip()
        + [
            "download",
            "--only-binary=:all:",
            "--no-deps",
            "--progress-bar",
            "off",
            "--disable-pip-version-check",
            "-q",
            "-d",
            directory,
            UV_REQUIREMENT,
        ],
        env=env,
    )
    wheels = glob.glob(os.path.join(directory, "uv-*.whl"))
    return wheels[0] if proc.returncode == 0 and wheels else None


def ensure_uv(root, get_pip, env, may_download, scratch=None):
    """The uv binary for this platform key, fetched once into the volume: straight from
    the index (pip's choice of wheel, without starting pip), else with `pip download`.
    None when it cannot be had. ``scratch``: where to download (this run's staging dir,
    swept if the run dies)."""

    def fetch(tmp):
        wheel = fetch_uv_direct(env, tmp)
        if wheel is None:
            common.log("fetching uv with pip")
            wheel = fetch_uv_with_pip(get_pip, env, tmp)
        return wheel

    for uv in reversed(fetched_uv(root, may_download, scratch, fetch)):
        if subprocess.run([uv, "--version"], capture_output=True).returncode == 0:
            return uv
    return None


def fetched_uv(root, may_download, scratch, fetch, whose=""):
    """The uv binaries in ``root``'s tools, lowest version first; when there are none and
    ``may_download``, the wheel ``fetch(tmp)`` gives (its path, or None) is downloaded
    into a temporary directory under ``scratch`` (else the tools) and its binary
    published. ``whose``: said in the line a failed fetch logs."""
    tools = os.path.join(root, "tools")
    found = sorted(glob.glob(os.path.join(tools, "uv-*", "uv")))
    if found or not may_download:
        return found
    os.makedirs(tools, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=scratch or tools, prefix=".download-")
    try:
        wheel = fetch(tmp)
        if wheel:
            install_uv(wheel, tmp, tools)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        common.log("could not fetch uv%s (%s)" % (whose, exc))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(glob.glob(os.path.join(tools, "uv-*", "uv")))


def install_uv(wheel, tmp, tools):
    """uv's binary out of its wheel into ``tools``/uv-VERSION, published by a rename."""
    version = os.path.basename(wheel).split("-")[1]
    common.log("fetched %s" % os.path.basename(wheel))
    staged = os.path.join(tmp, "uv-" + version)
    os.makedirs(staged)
    with zipfile.ZipFile(wheel) as zf:
        member = "uv-%s.data/scripts/uv" % version
        with zf.open(member) as src, open(os.path.join(staged, "uv"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    os.chmod(os.path.join(staged, "uv"), 0o755)
    try:
        os.rename(staged, os.path.join(tools, "uv-" + version))
    except OSError:
        pass  # a concurrent run published the same version


def target_uv(root, env, tags, may_download, scratch):
    """The uv of another CPU in its key's tools (what its deps layer installs with),
    fetched here when missing: the wheel for ``tags`` (that key's tag list), unpacked,
    never run (this CPU cannot). Its path, or None (the index has none for it)."""

    def fetch(tmp):
        return fetch_uv_direct(env, tmp, list(tags))  # tags as strings: pick_uv_wheel

    found = fetched_uv(root, may_download, scratch, fetch, " for the target")
    return found[-1] if found else None


def tools_entry(uv, root):
    if not uv:
        return {}
    return {
        "uv": {
            "path": os.path.relpath(uv, root),
            "version": os.path.basename(os.path.dirname(uv))[3:],
        }
    }


def pip_importable():
    """Whether pip's own modules can be imported here (its directory put on sys.path)."""
    where = pip_module_path()
    if where is None:
        return False
    if where and where not in sys.path:
        sys.path.insert(0, where)
    return True


def installed_uv(root, manifest):
    """The uv the manifest names, when it is there."""
    entry = (manifest.get("tools") or {}).get("uv") or {}
    path = os.path.join(root, entry["path"]) if entry.get("path") else None
    return path if path and os.path.exists(path) else None
