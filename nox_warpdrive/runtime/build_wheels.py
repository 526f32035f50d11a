"""Runs INSIDE the builder container (stdlib only): build the wheelhouse for one platform
key in the mounted volume.

Layout of the volume (mounted at /warpdrive):

    /warpdrive/<platform-key>/wheels/*.whl     published wheels (only complete files)
    /warpdrive/<platform-key>/cache/           pip's cache (HTTP + locally built wheels)
    /warpdrive/<platform-key>/manifest.json    requirement sets -> resolved wheels, sha256s
    /warpdrive/<platform-key>/staging-*/       pip's output for one run, removed after
    /warpdrive/<platform-key>/tools/uv-<ver>/  uv, fetched inside the builder (so it fits it)
    /warpdrive/<platform-key>/uv-cache/        uv's cache (metadata for fast resolution)

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
"""

import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

PLAN = "/tmp/warpdrive-build/plan.json"
SECRETS = "/run/warpdrive-secrets"


T0 = time.time()


def log(msg):
    print("warpdrive: [%5.1fs] %s" % (time.time() - T0, msg), flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def secret_env():
    """Index settings and the CA bundle, from the temporary secrets volume only."""
    env = {}
    ca = os.path.join(SECRETS, "ca.pem")
    if os.path.isfile(ca):
        env.update(PIP_CERT=ca, SSL_CERT_FILE=ca, REQUESTS_CA_BUNDLE=ca)
    try:
        with open(os.path.join(SECRETS, "pip-env.json")) as fh:
            env.update(json.load(fh))
    except FileNotFoundError:
        pass
    return env


def find_pip(python):
    """A pip to run: the image's own; else the pip wheel that ships with the image's venv
    support (run straight from the wheel, no install); else a throwaway venv."""
    probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [python, "-m", "pip"]
    code = "import ensurepip, os; print(os.path.dirname(ensurepip.__file__))"
    found = subprocess.run([python, "-c", code], capture_output=True, text=True)
    candidates = sorted(glob.glob("/usr/share/python-wheels/pip-*.whl"))
    if found.returncode == 0:
        candidates += sorted(glob.glob(os.path.join(found.stdout.strip(), "_bundled", "pip-*.whl")))
    for whl in reversed(candidates):
        cmd = [python, os.path.join(whl, "pip")]
        if subprocess.run(cmd + ["--version"], capture_output=True).returncode == 0:
            return cmd
    venv = "/tmp/warpdrive-pip"
    log("no pip in the image; creating a private venv for it")
    subprocess.run([python, "-m", "venv", venv], check=True)
    return [venv + "/bin/python", "-m", "pip"]


def load_manifest(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (FileNotFoundError, ValueError):
        return {}


def write_json_atomic(path, data):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def wheel_name_version(filename):
    parts = filename[:-4].split("-")
    return parts[0], parts[1] if len(parts) > 1 else ""


UV_REQUIREMENT = "uv<1"


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


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


def pip_config_index():
    """index-url as pip reads it from its configuration files: PIP_CONFIG_FILE=/dev/null
    turns them all off; then the site-wide files (XDG config dirs, /etc/pip.conf), the
    user's (~/.pip, then XDG config home; skipped when PIP_CONFIG_FILE names an existing
    file), the environment's (sys.prefix), PIP_CONFIG_FILE; later files win, and a
    [download] value in any file beats a [global] one."""
    import configparser

    env_file = os.environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return None
    home = os.path.expanduser("~")
    dirs = (os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(os.pathsep)
    files = [os.path.join(d, "pip", "pip.conf") for d in dirs if d] + ["/etc/pip.conf"]
    if not (env_file and os.path.exists(env_file)):
        config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        files.append(os.path.join(home, ".pip", "pip.conf"))
        files.append(os.path.join(config_home, "pip", "pip.conf"))
    files.append(os.path.join(sys.prefix, "pip.conf"))
    if env_file:
        files.append(env_file)
    found = {}
    for path in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (OSError, configparser.Error):
            continue
        for section in ("global", "download"):
            for key in ("index-url", "index_url"):
                if parser.has_option(section, key):
                    found[section] = parser.get(section, key).strip()
    return found.get("download", found.get("global")) or None


class _Links:
    """PEP 503 HTML: the anchors' href, text and data-yanked."""

    def __init__(self, text):
        import html.parser

        self.links = []
        outer = self

        class P(html.parser.HTMLParser):
            def handle_starttag(self, tag, attrs):
                if tag == "a":
                    a = dict(attrs)
                    if a.get("href"):
                        outer.links.append((a["href"], "data-yanked" in a))

        P().feed(text)


def index_files(opener, page_url, headers):
    """[(filename, absolute url, sha256 or None, yanked)] of one project page of a simple
    index, PEP 691 JSON or PEP 503 HTML."""
    import urllib.parse
    import urllib.request

    req = urllib.request.Request(
        page_url,
        headers=dict(headers, Accept="application/vnd.pypi.simple.v1+json, text/html;q=0.1"),
    )
    with opener.open(req, timeout=60) as resp:
        ctype = resp.headers.get("Content-Type", "")
        body = resp.read().decode("utf-8", "replace")
        page_url = resp.geturl()
    out = []
    if "json" in ctype:
        for f in json.loads(body).get("files", []):
            url = urllib.parse.urljoin(page_url, f["url"])
            sha = (f.get("hashes") or {}).get("sha256")
            out.append((f["filename"], url, sha, bool(f.get("yanked"))))
        return out
    for href, yanked in _Links(body).links:
        url = urllib.parse.urljoin(page_url, href)
        base, _, frag = url.partition("#")
        sha = frag[len("sha256=") :] if frag.startswith("sha256=") else None
        filename = urllib.parse.unquote(base.rsplit("/", 1)[-1].split("?", 1)[0])
        out.append((filename, base, sha, yanked))
    return out


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


def fetch_uv_direct(env, directory):
    """uv's wheel straight from the index pip would use (PIP_INDEX_URL, pip's config
    files, or pip's default), picked with pip's own tag logic; no pip process, which
    takes seconds to start from its wheel. The wheel's path, or None (pip then tries)."""
    import base64
    import urllib.parse

    where = pip_module_path()
    if where is None:
        return None
    if where and where not in sys.path:
        sys.path.insert(0, where)
    try:
        from pip._internal.models.index import PyPI
        from pip._vendor.packaging.tags import sys_tags
        from pip._vendor.packaging.utils import parse_wheel_filename
        from pip._vendor.packaging.version import Version
    except ImportError:
        return None
    index = env.get("PIP_INDEX_URL") or pip_config_index() or PyPI.simple_url
    parts = urllib.parse.urlsplit(index)
    headers = {}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        headers["Authorization"] = "Basic " + token
        host = "[%s]" % parts.hostname if ":" in parts.hostname else parts.hostname
        netloc = host + (":%d" % parts.port if parts.port else "")
        index = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    opener = _opener(env)
    try:
        files = index_files(opener, index.rstrip("/") + "/uv/", headers)
        chosen = pick_uv_wheel(files, list(sys_tags()), parse_wheel_filename, Version)
    except Exception as exc:
        log("could not read the index for uv (%s); asking pip" % exc)
        return None
    if chosen is None:
        return None
    _, url, sha = chosen
    same_host = urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(index).netloc
    return fetch(opener, url, sha, directory, headers if same_host else {}, quiet=True)


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


def ensure_uv(root, get_pip, env, may_download):
    """The uv binary for this platform key, fetched once into the volume: straight from
    the index (pip's choice of wheel, without starting pip), else with `pip download`.
    None when it cannot be had."""
    tools = os.path.join(root, "tools")
    found = sorted(glob.glob(os.path.join(tools, "uv-*", "uv")))
    if not found and may_download:
        os.makedirs(tools, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=tools, prefix=".download-")
        try:
            wheel = fetch_uv_direct(env, tmp)
            if wheel is None:
                log("fetching uv with pip")
                wheel = fetch_uv_with_pip(get_pip, env, tmp)
            if wheel:
                version = os.path.basename(wheel).split("-")[1]
                log("fetched %s" % os.path.basename(wheel))
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
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            log("could not fetch uv (%s)" % exc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        found = sorted(glob.glob(os.path.join(tools, "uv-*", "uv")))
    for uv in reversed(found):
        if subprocess.run([uv, "--version"], capture_output=True).returncode == 0:
            return uv
    return None


def published(wheels):
    """(normalised name, version) -> wheel file name, for the published wheels."""
    out = {}
    for fn in os.listdir(wheels):
        if fn.endswith(".whl") and not fn.startswith("."):
            name, version = wheel_name_version(fn)
            out[(normalize(name), version)] = fn
    return out


def resolve_with_uv(uv, plan, root, wheels, staging, env):
    """Pins for the requirements as [(name, version, wheel_url, sha256)], or None when uv
    cannot resolve them (pip then does everything). The lock is PEP 751 pylock.toml,
    whose wheel lists uv has already narrowed to the interpreter's compatible ones."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11 in the builder: pip resolves
        return None
    extra = os.path.join(staging, "_extra.txt")
    with open(extra, "w") as fh:
        fh.write("\n".join(plan.get("extra", [])) + "\n")
    out = os.path.join(staging, "pylock.toml")
    cmd = [
        uv,
        "pip",
        "compile",
        "--python",
        plan["python"],
        "--find-links",
        wheels,
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
    cmd += [os.path.join(plan["req_dir"], n) for n in plan["top"]] + [extra]
    log("resolving with uv")
    proc = subprocess.run(cmd, env=dict(env, **uv_env(env)), cwd=plan["req_dir"])
    try:
        if proc.returncode != 0:
            log("uv could not resolve the requirements; falling back to pip")
            return None
        with open(out, "rb") as fh:
            lock = tomllib.load(fh)
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
            pins.append((pkg["name"], str(pkg["version"]), url, sha, sdist_url, sdist_sha))
        return pins
    except (OSError, ValueError, KeyError) as exc:
        log("could not read uv's lock (%s); falling back to pip" % exc)
        return None
    finally:
        for path in (extra, out):
            if os.path.exists(path):
                os.unlink(path)


def cache_dns():
    """Resolve each host once per run. Parallel downloads otherwise make concurrent DNS
    lookups, and with Docker's embedded/bridged DNS some of them are lost and retried
    after resolv.conf's 5 s timeout: measured here, 40 wheels took 5.4 s with 2 to 8
    threads and 0.3 s with this cache (1.2 s with one thread)."""
    import socket
    import threading

    if getattr(socket.getaddrinfo, "warpdrive_cached", False):
        return
    original = socket.getaddrinfo
    lock = threading.Lock()
    answers = {}

    def getaddrinfo(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        with lock:  # one lookup at a time; later calls for the same host are free
            if key not in answers:
                answers[key] = original(*args, **kwargs)
            return answers[key]

    getaddrinfo.warpdrive_cached = True
    socket.getaddrinfo = getaddrinfo


def _opener(env):
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=env.get("SSL_CERT_FILE") or None)
    os.environ.update({k: v for k, v in env.items() if k.lower().endswith("_proxy")})
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))


def fetch(opener, url, sha, directory, headers=None, quiet=False):
    """Download one file, verifying its sha256; its path, or None (pip then tries)."""
    import urllib.request

    fn = url_filename(url)
    tmp = os.path.join(directory, "." + fn + ".part")
    try:
        h = hashlib.sha256()
        req = urllib.request.Request(url, headers=headers or {})
        with opener.open(req, timeout=120) as resp, open(tmp, "wb") as dst:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                dst.write(chunk)
        if sha and h.hexdigest() != sha:
            raise ValueError("sha256 mismatch")
        dest = os.path.join(directory, fn)
        os.replace(tmp, dest)
        if not quiet:
            print("Downloaded %s" % fn, flush=True)
        return dest
    except Exception as exc:
        log("download of %s failed (%s); pip will fetch it" % (fn, exc))
        if os.path.exists(tmp):
            os.unlink(tmp)
        return None


def download_wheels(items, staging, env):
    """Fetch wheels in parallel threads, verifying sha256; returns the specs that failed
    (pip then fetches those, with whatever auth or proxy setup it knows)."""
    import concurrent.futures

    opener = _opener(env)

    def one(item):
        name, version, url, sha = item[:4]
        ok = fetch(opener, url, sha, staging)
        return None if ok else "%s==%s" % (name, version)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return [r for r in pool.map(one, items) if r]


def start_uv_builds(uv, plan, root, items, staging, env):
    """Download sdists and start `uv build --wheel` for each (uv's build isolation is much
    faster than pip's). Returns [(spec, process)]; a spec whose download failed gets
    process None (pip builds it)."""
    sdists = os.path.join(staging, "sdists")
    os.makedirs(sdists, exist_ok=True)
    opener = _opener(env)
    out = []
    for name, version, _, _, url, sha in items:
        spec = "%s==%s" % (name, version)
        path = fetch(opener, url, sha, sdists)
        if path is None:
            out.append((spec, None))
            continue
        cmd = [
            uv,
            "build",
            "--wheel",
            "--out-dir",
            staging,
            "--python",
            plan["python"],
            "--cache-dir",
            os.path.join(root, "uv-cache"),
            "--no-config",
            path,
        ]
        log("building " + spec)
        out.append((spec, subprocess.Popen(cmd, env=dict(env, **uv_env(env)))))
    return out


def pip_wheel_groups(pip, base_args, specs, env, cwd, groups):
    """`pip wheel --no-deps` for the given specs, in parallel groups (downloads and
    builds are mostly waiting; two or more processes keep both network and CPU busy)."""
    if not specs:
        return 0
    groups = max(1, min(groups, len(specs)))
    buckets = [specs[i::groups] for i in range(groups)]
    procs = [
        subprocess.Popen(pip + ["wheel"] + base_args + ["--no-deps"] + b, env=env, cwd=cwd)
        for b in buckets
    ]
    codes = [p.wait() for p in procs]
    return max(codes)


def url_filename(url):
    import urllib.parse

    return urllib.parse.unquote(url.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0])


def publish(staging, wheels, fn):
    """Copy one complete wheel from staging next to the published ones under a temporary
    name, then rename it into place: readers never see half a wheel. False when it was
    there already."""
    dest = os.path.join(wheels, fn)
    if os.path.exists(dest):
        return False
    tmp = os.path.join(wheels, ".%s.tmp-%d" % (fn, os.getpid()))
    shutil.copyfile(os.path.join(staging, fn), tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dest)
    return True


def tools_entry(uv, root):
    if not uv:
        return {}
    return {
        "uv": {
            "path": os.path.relpath(uv, root),
            "version": os.path.basename(os.path.dirname(uv))[3:],
        }
    }


def announce_ready(wheels, files, manifest_path, uv, root):
    """One machine-read line: the resolved wheels already published (with their
    sha256s, as the manifest will list them) and the installer tools. Requirement sets
    are recorded only in the manifest, at the end, after everything was built."""
    known = load_manifest(manifest_path).get("wheels", {})
    ready = []
    for fn in sorted(set(files)):
        name, version = wheel_name_version(fn)
        digest = known.get(fn) or sha256(os.path.join(wheels, fn))
        size = os.path.getsize(os.path.join(wheels, fn))
        ready.append({"file": fn, "name": name, "version": version, "sha256": digest, "size": size})
    data = {"resolved": ready, "tools": tools_entry(uv, root)}
    print("warpdrive: WHEELS-READY " + json.dumps(data, separators=(",", ":")), flush=True)


def main():
    with open(PLAN) as fh:
        plan = json.load(fh)
    cache_dns()
    root = os.path.join(plan["volume_dir"], plan["key"])
    wheels = os.path.join(root, "wheels")
    cache = os.path.join(root, "cache")
    os.makedirs(wheels, exist_ok=True)
    os.makedirs(cache, exist_ok=True)
    manifest_path = os.path.join(root, "manifest.json")
    staging = os.path.join(root, "staging-%d-%d" % (os.getpid(), int(time.time())))
    os.makedirs(staging)
    started = time.time()
    new = []  # wheels this run published
    try:
        found_pip = []

        def pip():
            """pip, found on first use: an up-to-date resolution with uv needs none."""
            if not found_pip:
                found_pip.append(find_pip(plan["python"]))
            return found_pip[0]

        env = dict(os.environ)
        env.update(secret_env())
        env["PIP_NO_INPUT"] = "1"
        base_args = [
            "--wheel-dir",
            staging,
            "--find-links",
            wheels,
            "--cache-dir",
            cache,
            "--progress-bar",
            "off",
            "--disable-pip-version-check",
        ]
        if plan.get("no_index"):
            base_args.append("--no-index")
        installer = plan.get("installer", "auto")
        uv = None
        if installer in ("auto", "uv"):
            uv = ensure_uv(root, pip, env, not plan.get("no_index"))
            if uv is None and installer == "uv":
                log('installer = "uv" but uv is not available for this platform')
                return 3
        if uv:
            log("uv ready")
        pins = resolve_with_uv(uv, plan, root, wheels, staging, env) if uv else None
        resolved_files = None
        if pins is not None:
            have = published(wheels)
            missing = [p for p in pins if (normalize(p[0]), p[1]) not in have]
            to_download = [p for p in missing if p[2]]
            with_sdist = [p for p in missing if not p[2] and p[4]]
            to_build = ["%s==%s" % (p[0], p[1]) for p in missing if not p[2] and not p[4]]
            log(
                "%d pinned, %d already in the wheelhouse, %d to download, %d to build"
                % (
                    len(pins),
                    len(pins) - len(missing),
                    len(to_download),
                    len(to_build) + len(with_sdist),
                )
            )
            # sdists build (CPU) while wheels download (network)
            uv_builds = start_uv_builds(uv, plan, root, with_sdist, staging, env)
            builders = []
            if to_build:
                builders.append(
                    subprocess.Popen(
                        pip() + ["wheel"] + base_args + ["--no-deps"] + to_build,
                        env=env,
                        cwd=plan["req_dir"],
                    )
                )
            failed = download_wheels(to_download, staging, env)
            log("%d wheels downloaded" % (len(to_download) - len(failed)))
            # Publish the downloaded wheels now, and say which wheels of the resolution
            # are ready: the host can install them (in the base image) while the sdists
            # still build here.
            early = []
            for p in pins:
                key = (normalize(p[0]), p[1])
                if key in have:
                    early.append(have[key])
                elif p[2] and "%s==%s" % (p[0], p[1]) not in failed:
                    fn = url_filename(p[2])
                    if publish(staging, wheels, fn):
                        new.append(fn)
                    early.append(fn)
            announce_ready(wheels, early, manifest_path, uv, root)
            code = max([b.wait() for b in builders] or [0])
            for spec, proc in uv_builds:
                if proc is None or proc.wait() != 0:
                    log("uv could not build %s; pip will" % spec)
                    failed.append(spec)
            if code == 0 and failed:
                code = pip_wheel_groups(pip(), base_args, failed, env, plan["req_dir"], 2)
            if code != 0:
                log("pip wheel failed (exit %d); nothing was recorded" % code)
                return code
            log("wheels fetched and built")
            built = {}
            for fn in os.listdir(staging):
                if fn.endswith(".whl") and not fn.startswith("."):
                    name, version = wheel_name_version(fn)
                    built[(normalize(name), version)] = fn
            resolved_files = []
            for n, v, *_ in pins:
                key = (normalize(n), v)
                fn = have.get(key) or built.get(key)
                if fn is None:
                    log("no wheel for %s==%s after building; nothing was recorded" % (n, v))
                    return 4
                resolved_files.append(fn)
        else:
            cmd = pip() + ["wheel"] + base_args
            for name in plan["top"]:
                cmd += ["-r", os.path.join(plan["req_dir"], name)]
            cmd += plan.get("extra", [])
            log("pip wheel for " + plan["key"])
            proc = subprocess.run(cmd, env=env, cwd=plan["req_dir"])
            if proc.returncode != 0:
                log("pip wheel failed (exit %d); nothing was recorded" % proc.returncode)
                return proc.returncode

        lock = open(os.path.join(root, ".lock"), "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        for fn in sorted(os.listdir(staging)):
            if fn.endswith(".whl") and publish(staging, wheels, fn):
                new.append(fn)
        if resolved_files is None:
            resolved_files = sorted(fn for fn in os.listdir(staging) if fn.endswith(".whl"))

        manifest = load_manifest(manifest_path)
        known = manifest.get("wheels", {})
        all_wheels = {}
        for fn in sorted(os.listdir(wheels)):
            if fn.endswith(".whl") and not fn.startswith("."):
                all_wheels[fn] = known.get(fn) or sha256(os.path.join(wheels, fn))
        resolved = []
        for fn in sorted(set(resolved_files)):
            name, version = wheel_name_version(fn)
            resolved.append(
                {
                    "file": fn,
                    "name": name,
                    "version": version,
                    "sha256": all_wheels[fn],
                    "size": os.path.getsize(os.path.join(wheels, fn)),
                }
            )
        sets = manifest.get("sets", {})
        sets[plan["requirements_hash"]] = {
            "resolved": resolved,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        # keep the 20 most recent requirement sets (switching branches back is free)
        if len(sets) > 20:
            for old in sorted(sets, key=lambda k: sets[k]["built_at"])[: len(sets) - 20]:
                del sets[old]
        tools = tools_entry(uv, root)
        manifest.update(
            format=1,
            platform_key=plan["platform_key"],
            requirements_hash=plan["requirements_hash"],
            resolved=resolved,
            wheels=all_wheels,
            sets=sets,
            tools=tools or manifest.get("tools", {}),
        )
        write_json_atomic(manifest_path, manifest)
        fcntl.flock(lock, fcntl.LOCK_UN)
        print(
            "warpdrive: SUMMARY %s"
            % json.dumps(
                {
                    "new": new,
                    "reused": len(resolved) - len(new),
                    "resolved": len(resolved),
                    "seconds": round(time.time() - started, 1),
                    # what was just written: the host need not read it back
                    "manifest": manifest,
                },
                separators=(",", ":"),
            ),
            flush=True,
        )
        return 0
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree("/tmp/warpdrive-build", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
