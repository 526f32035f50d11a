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
"""

import collections
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
import threading
import time
import zipfile

PLAN = "/tmp/warpdrive-build/plan.json"
SECRETS = "/run/warpdrive-secrets"

# the lines the host reads from this script's output (wheelhouse.py, wheelhouse_transfer.py
# import these: they are defined here only); each is followed by one line of JSON
#: the run's result (new wheels, counts, the manifest just written)
SUMMARY_PREFIX = "warpdrive: SUMMARY "
#: resolved wheels already published while sdists still build (the early deps layer)
READY_PREFIX = "warpdrive: WHEELS-READY "
#: why the run failed (stage, package, last lines)
FAILURE_PREFIX = "warpdrive: FAILURE "
#: what an import published and refused
IMPORTED_PREFIX = "warpdrive: IMPORTED "


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


def write_json_atomic(path, data, scratch):
    """Write through a unique temporary file in ``scratch`` (this run's staging dir, on
    the same filesystem), then rename: readers see the old or the new file, whole."""
    fd, tmp = tempfile.mkstemp(dir=scratch, prefix=".manifest-")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def wheel_name_version(filename):
    parts = filename[:-4].split("-")
    return parts[0], parts[1] if len(parts) > 1 else ""


UV_REQUIREMENT = "uv<1"

#: how many requirement sets the manifest keeps (the most recent ones)
MAX_SETS = 20

#: one resolved requirement: a wheel to download (url, sha256), else an sdist to build
Pin = collections.namedtuple("Pin", "name version wheel_url wheel_sha sdist_url sdist_sha")


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


def index_auth(index):
    """(the index URL without credentials, the headers that carry them): urllib sends no
    credentials from a URL, and they must not reach another host."""
    import base64
    import urllib.parse

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
    return index, headers


def fetch_uv_direct(env, directory):
    """uv's wheel straight from the index pip would use (PIP_INDEX_URL, pip's config
    files, or pip's default), picked with pip's own tag logic; no pip process, which
    takes seconds to start from its wheel. The wheel's path, or None (pip then tries)."""
    import urllib.parse

    if not pip_importable():
        return None
    try:
        from pip._internal.models.index import PyPI
        from pip._vendor.packaging.tags import sys_tags
        from pip._vendor.packaging.utils import parse_wheel_filename
        from pip._vendor.packaging.version import Version
    except ImportError:
        return None
    index = env.get("PIP_INDEX_URL") or pip_config_index() or PyPI.simple_url
    index, headers = index_auth(index)
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


def ensure_uv(root, get_pip, env, may_download, scratch=None):
    """The uv binary for this platform key, fetched once into the volume: straight from
    the index (pip's choice of wheel, without starting pip), else with `pip download`.
    None when it cannot be had. ``scratch``: where to download (this run's staging dir,
    swept if the run dies)."""
    tools = os.path.join(root, "tools")
    found = sorted(glob.glob(os.path.join(tools, "uv-*", "uv")))
    if not found and may_download:
        os.makedirs(tools, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=scratch or tools, prefix=".download-")
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


def flat_index(wheels, manifest_path, staging):
    """A flat index page of the published wheels (PEP 503 anchors with the manifest's
    sha256s), for uv's --find-links: given a bare directory, uv unpacks every wheel into
    its cache to hash it for the lock (a fresh volume seeded with 41 wheels: 3 to 8 s
    and 178 MB), given their hashes it only reads their metadata (0.4 s). A wheel the
    manifest does not list yet (a failed run's download) is listed without a hash."""
    import html
    import urllib.parse

    known = load_manifest(manifest_path).get("wheels") or {}
    lines = ["<!DOCTYPE html><html><body>"]
    for fn in sorted(os.listdir(wheels)):
        if not fn.endswith(".whl") or fn.startswith("."):
            continue
        url = "file://" + urllib.parse.quote(os.path.join(wheels, fn))
        if isinstance(known.get(fn), str):
            url += "#sha256=" + known[fn]
        lines.append('<a href="%s">%s</a>' % (html.escape(url), html.escape(fn)))
    lines.append("</body></html>")
    path = os.path.join(staging, "find-links.html")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def resolve_with_uv(uv, plan, root, wheels, staging, env, constraints=None):
    """Pins for the requirements as [Pin], or None when uv cannot resolve them (pip then
    does everything). The lock is PEP 751 pylock.toml,
    whose wheel lists uv has already narrowed to the interpreter's compatible ones."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11 in the builder: pip resolves
        return None
    extra = os.path.join(staging, "_extra.txt")
    with open(extra, "w") as fh:
        fh.write("\n".join(plan.get("extra", [])) + "\n")
    out = os.path.join(staging, "pylock.toml")
    cmd = uv_compile_command(uv, plan, root, wheels, staging, out, constraints) + [extra]
    log("resolving with uv")
    proc = subprocess.run(cmd, env=dict(env, **uv_env(env)), cwd=plan["req_dir"])
    try:
        if proc.returncode != 0:
            log("uv could not resolve the requirements; falling back to pip")
            return None
        with open(out, "rb") as fh:
            lock = tomllib.load(fh)
        return pins_of_pylock(lock)
    except (OSError, ValueError, KeyError) as exc:
        log("could not read uv's lock (%s); falling back to pip" % exc)
        return None
    finally:
        for path in (extra, out):
            if os.path.exists(path):
                os.unlink(path)


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
        pins.append(Pin(pkg["name"], str(pkg["version"]), url, sha, sdist_url, sdist_sha))
    return pins


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
    fn = url_filename(url)
    path, digest = download_checked(opener, url, directory, headers)
    if path is not None and sha and digest != sha:
        with_suppressed(os.unlink, path)
        path, digest = None, "sha256 mismatch"
    if path is None:
        log("download of %s failed (%s); pip will fetch it" % (fn, digest))
        return None
    if not quiet:
        print("Downloaded %s" % fn, flush=True)
    return path


def download_wheels(items, staging, env):
    """Fetch wheels in parallel threads, verifying sha256; returns the specs that failed
    (pip then fetches those, with whatever auth or proxy setup it knows)."""
    import concurrent.futures

    opener = _opener(env)

    def one(pin):
        ok = fetch(opener, pin.wheel_url, pin.wheel_sha, staging)
        return None if ok else spec_of(pin)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return [r for r in pool.map(one, items) if r]


def spec_of(pin):
    return "%s==%s" % (pin.name, pin.version)


def start_uv_builds(ctx, uv, pins, env):
    """Download sdists and start `uv build --wheel` for each (uv's build isolation is much
    faster than pip's). Returns [(spec, Tee or None)]; a spec whose download failed gets
    None (pip builds it). A failed uv build is reported as it is: each sdist is compiled
    once. Their output goes to a log each (build_log)."""
    plan, root, staging = ctx["plan"], ctx["root"], ctx["staging"]
    sdists = os.path.join(staging, "sdists")
    os.makedirs(sdists, exist_ok=True)
    opener = _opener(env)
    out = []
    for pin in pins:
        path = fetch(opener, pin.sdist_url, pin.sdist_sha, sdists)
        if path is None:
            out.append((spec_of(pin), None))
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
        log("building " + spec_of(pin))
        log_path, echo = build_log(ctx, spec_of(pin))
        tee = Tee(cmd, env=dict(env, **uv_env(env)), log=log_path, echo=echo)
        out.append((spec_of(pin), tee))
    return out


def pip_wheel_groups(pip, base_args, specs, env, cwd, groups):
    """`pip wheel --no-deps` for the given specs, in parallel groups (downloads and
    builds are mostly waiting; two or more processes keep both network and CPU busy).
    ``pip`` finds pip: called only when there is something to do (finding it runs a
    ``pip --version``, a second on a small machine). (exit code, the failed group's
    last lines)."""
    if not specs:
        return 0, []
    groups = max(1, min(groups, len(specs)))
    buckets = [specs[i::groups] for i in range(groups)]
    command = pip()
    tees = [
        Tee(command + ["wheel"] + base_args + ["--no-deps"] + b, env=env, cwd=cwd) for b in buckets
    ]
    return worst(tees)


def worst(tees):
    """(the worst exit code, that process's last lines); a signal's death counts as
    its 128 + N, as a shell reports it."""
    results = [(t.wait(), t.tail) for t in tees]
    results.sort(key=lambda r: r[0] if r[0] >= 0 else 128 - r[0])
    return results[-1] if results else (0, [])


class Tee:
    """A child process whose output is shown live and whose last lines are kept, to
    say why it failed. ``log``: a file its output goes to instead, shown only when
    ``echo`` (an sdist's compiler output: hundreds of lines nobody reads unless it
    fails)."""

    _print_lock = threading.Lock()

    def __init__(self, cmd, env=None, cwd=None, keep=60, log=None, echo=True):
        self.tail = collections.deque(maxlen=keep)
        self.log, self.echo, self.lines = log, echo or not log, 0
        self.started = time.time()
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        sink = LogSink(self.log) if self.log else None
        try:
            for raw in iter(self.proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.tail.append(line)
                self.lines += 1
                if sink is not None:
                    sink.write(line)
                if self.echo:
                    with Tee._print_lock:
                        sys.stdout.write(line + "\n")
                        sys.stdout.flush()
        finally:
            if sink is not None:
                sink.close()

    def wait(self):
        code = self.proc.wait()
        self.thread.join()
        return code


class LogSink:
    """A build's log in the volume, credentials redacted as the host redacts what it
    shows. A log that cannot be written (a full disk) is given up, never the build: the
    child's output is still read, so it cannot block on a full pipe."""

    def __init__(self, path):
        self.secrets = secret_parts()
        try:
            self.fh = open(path, "w", encoding="utf-8")
        except OSError:
            self.fh = None

    def write(self, line):
        if self.fh is None:
            return
        try:
            self.fh.write(redact_line(line, self.secrets) + "\n")
        except OSError:
            self.close()

    def close(self):
        if self.fh is not None:
            try:
                self.fh.close()
            except OSError:
                pass
            self.fh = None


def secret_parts():
    """The index settings' words that carry credentials (user:token@host URLs)."""
    parts = []
    for value in secret_env().values():
        for part in str(value).split():
            if "@" in part and len(part) > 8:
                parts.append(part)
    return parts


_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@")


def redact_line(line, secrets):
    """``line`` without the index settings' credentials, nor any user:password@ in a URL."""
    for part in secrets:
        line = line.replace(part, "<redacted>")
    return _URL_CREDENTIALS.sub("<redacted>@", line)


def build_log(ctx, spec):
    """(the log the output of building ``spec`` goes to: ``logs/<spec>.log`` in this
    platform's part of the volume, the last build of each kept; whether it is also shown
    as it comes: `--verbose`)."""
    logs = os.path.join(ctx["root"], "logs")
    os.makedirs(logs, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9._=-]+", "_", spec)[:100] or "build"
    return os.path.join(logs, name + ".log"), bool(ctx["plan"].get("verbose"))


def built_line(spec, tee):
    """The one line a successful sdist build leaves (its output is in the log)."""
    where = " (its output: %s)" % log_name(tee.log) if tee.log and not tee.echo else ""
    log("built %s in %.1f s%s" % (spec, time.time() - tee.started, where))


def log_name(path):
    """A log's path as the host names it: relative to the volume's root."""
    return os.path.relpath(path, os.path.dirname(os.path.dirname(os.path.dirname(path))))


def build_failed(tee, spec, code):
    """Report a failed sdist build: its last lines (all the user sees when its output
    went to the log) and the log's place."""
    stage, package = classify(code, tee.tail, spec, compiling=True)
    if stage == "compile":
        package = spec  # uv names the sdist's path in the staging directory
    more = {"log": log_name(tee.log)} if tee.log else {}
    return report_failure(stage, code, tee.tail, package, **more)


def url_filename(url):
    import urllib.parse

    return urllib.parse.unquote(url.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0])


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
    print(READY_PREFIX + json.dumps(data, separators=(",", ":")), flush=True)


# -- locked plans: install exactly what a lock file allows --------------------------------
#
# The host read the lock (uv.lock, pylock.toml, poetry.lock, Pipfile.lock or requirement
# files with --hash) and sends, per package, the files the lock allows for this platform
# with their sha256s (or only the sha256s, when the lock names no files). Nothing is
# resolved: each pin becomes the best wheel for this interpreter among those, downloaded
# and checked against the lock's hash, or its sdist (checked) built here. A wheel already
# in the volume is used only when its recorded sha256 is the one the lock allows for that
# file, or when it was built from the locked sdist. Any other file is a "hash" failure
# naming the package and both hashes, and is never published.


def pip_importable():
    """Whether pip's own modules can be imported here (its directory put on sys.path)."""
    where = pip_module_path()
    if where is None:
        return False
    if where and where not in sys.path:
        sys.path.insert(0, where)
    return True


def builder_tag_ranks():
    """{tag: rank} for this interpreter, from pip's vendored packaging (as for uv's
    wheel); None when pip's code is not to be had (the host's order is used then)."""
    if not pip_importable():
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
        name, version = wheel_name_version(fn)
        if normalize(name) == pin["name"] and version == pin["version"]:
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
        path = os.path.join(ctx["wheels"], best["file"])
        # published by a run that failed before recording it: hashed here, once
        unrecorded = best["file"] not in known and os.path.exists(path)
        if unrecorded and sha256(path) == best["sha256"]:
            return "have", best["file"]
        if os.path.exists(path):
            ctx["replace"].add(best["file"])
        return "wheel", best
    sdist = pin.get("sdist")
    allowed = set(pin.get("hashes") or ()) | set([sdist["sha256"]] if sdist else [])
    for fn in published_for(pin, ctx["wheels"], ranks):
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
    urls.append(env.get("PIP_INDEX_URL") or pip_config_index() or "https://pypi.org/simple/")
    urls += (env.get("PIP_EXTRA_INDEX_URL") or "").split()
    urls += plan.get("indexes") or []
    out = []
    for url in urls:
        clean, headers = index_auth(url)
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
            files = index_files(opener, page, headers)
        except Exception as exc:
            log("could not read %s (%s)" % (page, exc))
            continue
        wheels, sdist = [], None
        for fn, url, sha, _ in files:
            if filename is not None and fn != filename:
                continue
            if filename is None and sha is not None and sha not in allowed:
                continue
            entry = {"file": fn, "url": url, "sha256": sha}
            if fn.endswith(".whl"):
                name, version = wheel_name_version(fn)
                if normalize(name) == pin["name"] and version == pin["version"]:
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
            return normalize(name), version
    return None, None


def download_checked(opener, url, directory, headers):
    """(path, sha256) of one downloaded file, or (None, the error): the caller checks
    the hash against the lock."""
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
        dest = os.path.join(directory, fn)
        os.replace(tmp, dest)
        return dest, h.hexdigest()
    except Exception as exc:
        with_suppressed(os.unlink, tmp)
        return None, str(exc)


class LockFailure(Exception):
    """A pin that cannot be installed as locked: reported once, nothing recorded."""

    def __init__(self, stage, package, detail, **more):
        Exception.__init__(self, stage)
        self.stage, self.package, self.detail, self.more = stage, package, detail, more

    def report(self):
        return report_failure(self.stage, 5, self.detail, self.package, **self.more)


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
    path, got = download_checked(opener, entry["url"], directory, headers)
    if path is None and kind in ("wheel", "sdist") and entry.get("sha256"):
        log("%s: %s; looking for %s on the index" % (entry["url"], got, entry["file"]))
        try:
            kind, found, headers = locate(plan, env, opener, pin, entry, ranks)
            path, got = download_checked(opener, found["url"], directory, headers)
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

    opener = _opener(env)

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
    plan, staging = ctx["plan"], ctx["staging"]
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
    log("adding %s (not in the lock), resolved against its pins" % ", ".join(extra))
    env_args = build_env(plan, staging)[1]
    pins = None
    if uv:
        pins = resolve_with_uv(
            uv, dict(plan, top=[]), ctx["root"], ctx["wheels"], staging, env, constraints
        )
    if pins is not None:
        pins = [p for p in pins if normalize(p.name) not in locked]
        code, files = build_pinned(ctx, uv, pins, pip, env_args, env, announce=False)
        return code, files or []
    out = tempfile.mkdtemp(dir=staging, prefix="extra-")
    args = [out if a == staging else a for a in env_args]
    tee = Tee(pip() + ["wheel"] + args + ["-c", constraints] + extra, env=env)
    code = tee.wait()
    if code != 0:
        stage, package = classify(code, tee.tail)
        return report_failure(stage, code, tee.tail, package), None
    files = []
    for fn in os.listdir(out):
        if fn.endswith(".whl") and normalize(wheel_name_version(fn)[0]) not in locked:
            os.replace(os.path.join(out, fn), os.path.join(staging, fn))
            files.append(fn)
    return 0, files


def build_locked(ctx, uv, pip, env):
    """A locked plan: each pin from the volume or downloaded and checked, sdists and the
    project built here; nothing resolved (but the server the lock lacks). Returns (exit
    code, the resolved files); a failure is reported."""
    plan, wheels, staging = ctx["plan"], ctx["wheels"], ctx["staging"]
    manifest = load_manifest(ctx["manifest_path"])
    ranks = builder_tag_ranks()
    decisions = [(pin,) + decide(pin, ctx, manifest, ranks) for pin in plan["locked"]]
    for pin, kind, _ in decisions:
        if kind == "none":
            detail = [
                "%s %s (%s): no file the lock allows fits this interpreter"
                % (pin["name"], pin["version"], pin.get("where"))
            ]
            return report_failure("platform", 5, detail, pin["name"]), None
    todo = [d for d in decisions if d[1] != "have"]
    log(
        "%d locked, %d already in the wheelhouse, %d to fetch"
        % (len(decisions), len(decisions) - len(todo), len(todo))
    )
    if todo and plan.get("no_index"):
        detail = [
            "%s is not in the wheelhouse, and --no-index forbids fetching it" % todo[0][0]["name"]
        ]
        return report_failure("resolve", 5, detail, todo[0][0]["name"]), None
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
        if fn not in ctx["replace"] and publish(staging, wheels, fn):
            ctx["new"].append(fn)
    ready = [f for f in files + extra_files if f not in ctx["replace"]]
    announce_ready(
        wheels,
        [f for f in ready if os.path.exists(os.path.join(wheels, f))],
        ctx["manifest_path"],
        uv,
        ctx["root"],
    )
    code, built = build_sources(ctx, uv, pip, env, sources)
    if code:
        return code, None
    return 0, files + extra_files + built


def wheel_builder(ctx, uv, pip, env, path, out):
    """A running build of one wheel from an sdist or a source tree into ``out``: `uv
    build` (its build isolation is much faster than pip's), else `pip wheel`."""
    if uv:
        cmd = [uv, "build", "--wheel", "--out-dir", out, "--python", ctx["plan"]["python"]]
        cmd += ["--cache-dir", os.path.join(ctx["root"], "uv-cache"), "--no-config", path]
        log_path, echo = build_log(ctx, os.path.basename(path))
        return Tee(cmd, env=dict(env, **uv_env(env)), log=log_path, echo=echo)
    return Tee(pip() + ["wheel", "--no-deps", "--wheel-dir", out, path], env=env)


def build_sources(ctx, uv, pip, env, sources):
    """Build the locked sdists (checked already) in parallel, and the project itself
    meanwhile. (exit code, the built files)."""
    plan, staging = ctx["plan"], ctx["staging"]
    running = []
    for pin, path, sha in sources:
        out = tempfile.mkdtemp(dir=staging, prefix="built-")
        log("building %s==%s from its locked sdist" % (pin["name"], pin["version"]))
        running.append((pin, sha, out, wheel_builder(ctx, uv, pip, env, path, out)))
    built = []
    # the project, then the workspace members it depends on (plain wheels)
    for project in ([plan["project"]] if plan.get("project") else []) + plan.get("members", []):
        code, fn = build_project(ctx, uv, pip, env, project)
        if code:
            for _, _, _, tee in running:
                tee.wait()
            return code, None
        built.append(fn)
    for pin, sha, out, tee in running:
        code = tee.wait()
        found = [f for f in os.listdir(out) if f.endswith(".whl")]
        if code != 0 or len(found) != 1:
            return build_failed(tee, pin["name"], code or 4), None
        built_line("%s==%s" % (pin["name"], pin["version"]), tee)
        os.replace(os.path.join(out, found[0]), os.path.join(staging, found[0]))
        ctx["built_from"][found[0]] = sha
        built.append(found[0])
    return 0, built


# -- the project itself: its wheel (editable: pointing at the app source in the image) ----

#: runs one PEP 517/660 hook of the project's build backend in its build environment
HOOK_RUNNER = r"""
import importlib, json, sys
backend_path, backend, hook, out_dir, result_file = json.loads(sys.argv[1])
sys.path[:0] = backend_path
mod, _, attr = backend.partition(":")
obj = importlib.import_module(mod)
for part in attr.split(".") if attr else []:
    obj = getattr(obj, part)
fn = getattr(obj, hook, None)
if fn is None:
    result = None
elif hook.startswith("get_requires_for_"):
    result = fn({})
else:
    result = fn(out_dir, {})
with open(result_file, "w") as fh:
    json.dump(result, fh)
"""


def load_toml(path):
    """A TOML file, with tomllib (Python >= 3.11) or the tomli pip vendors."""
    try:
        import tomllib as toml
    except ImportError:
        where = pip_module_path()
        if where and where not in sys.path:
            sys.path.insert(0, where)
        from pip._vendor import tomli as toml
    with open(path, "rb") as fh:
        return toml.load(fh)


def build_system(src):
    """(requires, backend, backend-path) of a project, with PEP 517's defaults."""
    path = os.path.join(src, "pyproject.toml")
    table = (load_toml(path) if os.path.exists(path) else {}).get("build-system") or {}
    requires = table.get("requires", ["setuptools>=40.8.0"])
    backend = table.get("build-backend") or "setuptools.build_meta:__legacy__"
    return requires, backend, [os.path.join(src, p) for p in table.get("backend-path", [])]


def extract_project(archive, dest):
    """The app source where the image has it (an editable install points there)."""
    import tarfile

    if os.path.lexists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)


def build_venv(ctx, env):
    """An isolated build environment, a virtualenv as pip, uv and `build` make one (a
    backend may ship a program it looks for in the environment's scripts directory).
    (exit code, its python, last lines)."""
    venv = tempfile.mkdtemp(dir=ctx["staging"], prefix="build-env-")
    tee = Tee([ctx["plan"]["python"], "-m", "venv", "--without-pip", venv], env=env)
    return tee.wait(), os.path.join(venv, "bin", "python"), list(tee.tail)


def install_build_requires(ctx, uv, pip, env, requires, python):
    """The backend's requirements into the build environment of ``python``."""
    plan = ctx["plan"]
    if not requires:
        return 0, []
    if uv:
        cmd = [uv, "pip", "install", "--quiet", "--python", python, "--no-config"]
        cmd += ["--cache-dir", os.path.join(ctx["root"], "uv-cache")]
        run_env = dict(env, **uv_env(env))
    else:
        cmd = pip() + ["--python", python, "install", "--quiet", "--disable-pip-version-check"]
        cmd += ["--progress-bar", "off"]
        run_env = env
    if plan.get("no_index"):
        cmd += ["--no-index", "--find-links", ctx["wheels"]]
    tee = Tee(cmd + list(requires), env=run_env)
    return tee.wait(), list(tee.tail)


def run_hook(ctx, env, src, backend, hook, python, out_dir):
    """(exit code, the hook's result, the last lines) of one backend hook."""
    _, name, path = backend
    result_file = os.path.join(ctx["staging"], "hook-result.json")
    arg = json.dumps([path, name, hook, out_dir, result_file])
    # the environment's programs first on PATH, as pip and uv run hooks (a backend may
    # look its own program up there)
    bin_dir = os.path.dirname(python)
    run_env = dict(env, PATH=bin_dir + os.pathsep + env.get("PATH", os.defpath))
    run_env["VIRTUAL_ENV"] = os.path.dirname(bin_dir)
    tee = Tee([python, "-c", HOOK_RUNNER, arg], env=run_env, cwd=src)
    code = tee.wait()
    result = None
    if code == 0:
        with open(result_file) as fh:
            result = json.load(fh)
    return code, result, list(tee.tail)


def build_editable(ctx, uv, pip, env, src, out):
    """PEP 660: the backend's editable wheel, built in an isolated environment with its
    requirements (the steps pip and uv take). (exit code, file, last lines)."""
    backend = build_system(src)
    code, python, tail = build_venv(ctx, env)
    if code == 0:
        code, tail = install_build_requires(ctx, uv, pip, env, backend[0], python)
    if code == 0:
        hook = "get_requires_for_build_editable"
        code, more, tail = run_hook(ctx, env, src, backend, hook, python, out)
        if code == 0 and more:
            code, tail = install_build_requires(ctx, uv, pip, env, more, python)
    if code != 0:
        return code, None, tail
    code, fn, tail = run_hook(ctx, env, src, backend, "build_editable", python, out)
    if code == 0 and fn is None:
        tail = ["the build backend %s has no build_editable hook (PEP 660)" % backend[1]]
        return 4, None, tail
    return code, fn, tail


def build_project(ctx, uv, pip, env, project):
    """The project's wheel from the shipped source, named with a build tag from the
    host's key so that every distinct build has a distinct file. (exit code, file)."""
    src = project["dest"]
    extract_project(os.path.join(os.path.dirname(PLAN), project["archive"]), src)
    out = tempfile.mkdtemp(dir=ctx["staging"], prefix="project-")
    log(
        "building the project %s (%s)"
        % (project["name"], "editable" if project["editable"] else "wheel")
    )
    more = {}
    if project["editable"]:
        code, fn, tail = build_editable(ctx, uv, pip, env, src, out)
    else:
        tee = wheel_builder(ctx, uv, pip, env, src, out)
        code, tail = tee.wait(), list(tee.tail)
        found = [f for f in os.listdir(out) if f.endswith(".whl")]
        fn = found[0] if found else None
        more = {"log": log_name(tee.log)} if tee.log else {}
    if code != 0 or not fn:
        detail = list(tail) + [
            "(%s: the project %s itself)" % (project.get("where"), project["name"])
        ]
        return report_failure("project", code or 4, detail, project["name"], **more), None
    tagged = with_build_tag(fn, project["key"])
    os.replace(os.path.join(out, fn), os.path.join(ctx["staging"], tagged))
    ctx["built_from"][tagged] = "project:" + project["key"]
    return 0, tagged


def with_build_tag(filename, key):
    """``name-version-<build>-py-abi-plat.whl`` with a build tag from ``key``: a changed
    project gets a new file name, never another file under an old one's."""
    parts = filename[:-4].split("-")
    if len(parts) == 6:
        del parts[2]
    parts.insert(2, "0" + key[:12])
    return "-".join(parts) + ".whl"


# -- failures: what went wrong, said once, machine-read by the host ---------------------

_NETWORK = re.compile(
    r"Max retries exceeded|Temporary failure in name resolution|Name or service not known"
    r"|Connection (?:refused|reset|timed out)|Read timed out|CERTIFICATE_VERIFY_FAILED"
    r"|SSLError|ProxyError|Failed to fetch|error sending request|dns error",
    re.I,
)


def classify(code, lines, package=None, compiling=False):
    """(stage, package) of a failed pip or uv run, from its exit code and last lines:
    killed, disk, resolve, download, compile (``compiling``: the run built one sdist)."""
    text = "\n".join(lines)
    if code < 0 or code in (137, 143):
        return "killed", package
    if "No space left on device" in text or "Disk quota exceeded" in text:
        return "disk", package
    for pattern in (
        r"No matching distribution found for (\S+)",
        r"Could not find a version that satisfies the requirement (\S+)",
        r"Because (\S+) was not found in the package registry",
        r"(\S+) was not found in the package registry",
    ):
        m = re.search(pattern, text)
        if m:
            return "resolve", m.group(1)
    if "ResolutionImpossible" in text or "No solution found" in text:
        return "resolve", package
    m = re.search(r"Failed building wheel for (\S+)|Failed to build (\S+)", text)
    if m:
        return "compile", m.group(1) or m.group(2)
    if _NETWORK.search(text):
        return "download", package
    if compiling or "subprocess-exited-with-error" in text:
        m = re.search(r"Building wheel for (\S+)", text)
        return "compile", m.group(1) if m else package
    return "unknown", package


#: pip: the releases a Requires-Python excluded, said before "Could not find a version"
_PIP_IGNORED = re.compile(
    r"Ignored the following versions that require a different python version: (.*)$"
)
_PIP_NONE_LEFT = re.compile(r"Could not find a version that satisfies .*\(from versions: none\)")
#: uv: "Because the current Python version (3.11.2) does not satisfy Python>=3.12 and
#: all versions of django>=6 depend on Python>=3.12, ..." (or "pkg==1.0 depends on")
_UV_PYTHON = re.compile(
    r"current Python version \(([\d.]+)\) does not satisfy Python([^\s,]+) and "
    r"(all versions of )?(\S+?) depends? on Python"
)


def python_mismatch(lines):
    """What a resolution failure says of Requires-Python: {"python": this Python,
    "needs": the specifiers, "versions": the releases left out for it, "all": whether
    no other release was there}; {} when it says nothing of it (pip and uv)."""
    text = "\n".join(lines)
    m = _UV_PYTHON.search(text)
    if m:
        return {"python": m.group(1), "needs": [m.group(2)], "versions": [], "all": True}
    for line in lines:
        m = _PIP_IGNORED.search(line)
        if not m:
            continue
        versions, needs = [], []
        for item in m.group(1).split("; "):
            version, _, spec = item.partition(" Requires-Python ")
            if spec and needs_newer(spec):
                versions.append(version.strip())
                if spec.strip() not in needs:
                    needs.append(spec.strip())
        if not needs:
            return {}  # only releases for an older Python were left out: not the cause
        python = "%d.%d.%d" % sys.version_info[:3]
        every = bool(_PIP_NONE_LEFT.search(text))
        return {"python": python, "needs": needs, "versions": versions, "all": every}
    return {}


def needs_newer(spec, python=None):
    """Whether a Requires-Python asks for a newer Python than this one (its lower bound:
    >=3.12, >3.11, ~=3.12), not an older one (<3, ==2.7)."""
    here = tuple(python or sys.version_info[:2])
    for op, major, minor in re.findall(r"(>=|>|~=)\s*(\d+)\.(\d+)", spec):
        bound = (int(major), int(minor))
        if bound > here or (op == ">" and bound == here):
            return True
    return False


def report_failure(stage, code, lines=(), package=None, **more):
    """One machine-read line for the host, which turns it into the error and its fix."""
    # a build whose output went to a log: all the user will see of it, so more
    detail = [line for line in lines if line.strip()][-60 if more.get("log") else -15 :]
    data = {"stage": stage, "code": code, "package": package, "detail": detail}
    if stage == "disk":
        data.update(full_filesystem(lines))
    if stage == "resolve":
        data.update(python_mismatch(list(lines)))
    data.update(more)
    print(FAILURE_PREFIX + json.dumps(data, separators=(",", ":")), flush=True)
    return code if code > 0 else 1


# -- a full disk: which one, and nothing cut off left in the caches ----------------------

#: where the volume is mounted (plan.VOLUME_DIR on the host)
VOLUME_DIR = "/warpdrive"

_QUOTED_PATH = re.compile(r"""[`'"](/[^`'"]+)[`'"]""")


def space_of(path):
    """(free bytes, size in bytes) of the filesystem holding ``path``; None if unknown."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def full_filesystem(lines, volume_dir=VOLUME_DIR):
    """Which filesystem ran out of space, for the host's message: the volume or the
    engine's storage (this container's own filesystem, where pip unpacks and compiles
    in /tmp), with its free space and size. The path the failed write names decides
    (the last one on the line: a copy names its source first); without one, the
    filesystem with the smaller share free. Pruning images cannot help a full volume,
    so the two must never be confused."""
    where = None
    for line in lines:
        if "No space left" in line or "Disk quota exceeded" in line or "os error 28" in line:
            paths = _QUOTED_PATH.findall(line)
            if paths:
                inside = paths[-1] == volume_dir or paths[-1].startswith(volume_dir + "/")
                where = "volume" if inside else "engine"
    spaces = {"volume": space_of(volume_dir), "engine": space_of(tempfile.gettempdir())}
    if where is None:
        shares = {k: v[0] / v[1] for k, v in spaces.items() if v and v[1]}
        where = min(shares, key=lambda k: shares[k]) if shares else "engine"
    found = spaces[where]
    return {
        "full": where,
        "free": found[0] if found else None,
        "size": found[1] if found else None,
        "shared": same_disk(spaces["volume"], spaces["engine"]),
    }


def same_disk(volume, engine):
    """Whether the volume lives on the engine's own disk (a plain local volume does:
    /var/lib/docker/volumes): the same size, and nearly the same room. Then freeing
    the engine's space is what gives the volume room."""
    if not volume or not engine or volume[1] != engine[1]:
        return False
    return abs(volume[0] - engine[0]) <= max(64 << 20, volume[1] // 50)


def cut_off(path):
    """Whether a cached wheel is not a whole zip (its end record is read: cheap)."""
    try:
        with zipfile.ZipFile(path):
            return False
    except (zipfile.BadZipFile, OSError, EOFError):
        return True


def drop_cut_off_cache(root, settle=1.0):
    """Remove what a full disk or a killed run cut off in pip's cache in the volume: a
    wheel pip moved into its cache with a plain copy (from /tmp, another filesystem)
    that stopped half-way, which every later pip run takes from the cache and fails on
    ("Wheel ... is invalid") for ever; and the temporary files of its HTTP cache that a
    failed write leaves. uv's cache writes through temporary names and renames. A
    file still being written by a run in another container changes within ``settle``
    seconds and is left alone. Returns how many were removed."""
    cache = os.path.join(root, "cache")
    found = [
        p
        for p in glob.glob(os.path.join(cache, "wheels", "**", "*.whl"), recursive=True)
        if cut_off(p)
    ]
    found += glob.glob(os.path.join(cache, "http*", "**", "*.tmp"), recursive=True)
    if not found:
        return 0
    before = {p: stat_or_none(p) for p in found}
    time.sleep(settle)
    removed = 0
    for path, st in before.items():
        if st is not None and stat_or_none(path) == st:
            with_suppressed(os.unlink, path)
            removed += 1
    if removed:
        log("removed %d cut-off files from pip's cache (a full disk or a killed run)" % removed)
    return removed


def stat_or_none(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


# -- the volume: locks, leftovers, verification ------------------------------------------


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
            log("another run holds the wheelhouse lock; waiting for it")
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
    long as the run lives; the next run removes staging dirs whose lock is free."""
    staging = tempfile.mkdtemp(dir=root, prefix="staging-")
    owner = open(os.path.join(staging, ".owner"), "w")
    fcntl.flock(owner, fcntl.LOCK_EX)
    return staging, owner


def sweep_leftovers(root, grace=120):
    """Remove what interrupted runs left: staging dirs whose owner is gone (their flock
    is free; one with no owner file yet is only removed after ``grace`` seconds), and
    temporary files of older versions of this script. Returns how many were removed."""
    removed = 0
    now = time.time()
    for path in glob.glob(os.path.join(root, "staging-*")):
        owner = os.path.join(path, ".owner")
        try:
            if not os.path.exists(owner):
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


def file_stat(path):
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


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
            st = file_stat(path)
        except OSError:
            missing.append(fn)
            continue
        if not everything and fn not in full and stats.get(fn) == st:
            continue
        digest = sha256(path)
        if digest == known[fn]:
            if stats.get(fn) != st:
                stats[fn], changed = st, True
            continue
        log(
            "warning: wheel %s is damaged (sha256 %s..., the manifest says %s...); "
            "it will be fetched or built again" % (fn, digest[:12], known[fn][:12])
        )
        with_suppressed(os.unlink, path)
        damaged.append(fn)
    for fn in damaged + missing:
        if fn in missing:
            log("warning: wheel %s is missing; it will be fetched or built again" % fn)
        known.pop(fn, None)
        stats.pop(fn, None)
        (manifest.get("built_from") or {}).pop(fn, None)
        changed = True
    manifest["wheels"], manifest["stats"] = known, stats
    return damaged, missing, changed


def with_suppressed(fn, *args):
    try:
        fn(*args)
    except OSError:
        pass


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


# -- the stages of one run ---------------------------------------------------------------


def check_volume(plan, root, wheels, staging, manifest_path):
    """Sweep leftovers, verify the wheels against the manifest (recording what changed)
    and say whether these requirements are already complete: the resolved set, or None."""
    removed = sweep_leftovers(root)
    if removed:
        log("removed %d leftovers of interrupted runs" % removed)
    with Lock(root):
        manifest = load_manifest(manifest_path)
        if not manifest:
            return None, manifest
        total = len(manifest.get("wheels") or {})
        damaged, missing, changed = verify_wheels(
            wheels, manifest, set(plan.get("check_files") or ()), bool(plan.get("verify"))
        )
        if plan.get("verify"):
            log("verified %d wheels: %d damaged, %d missing" % (total, len(damaged), len(missing)))
        if changed:
            write_json_atomic(manifest_path, manifest, staging)
    return set_is_complete(manifest, plan["requirements_hash"]), manifest


def build_pinned(ctx, uv, pins, pip, base_args, env, announce=True):
    """Fetch and build what the wheelhouse lacks of ``pins``; publish downloads at once and
    announce them (unless ``announce`` is off: a locked plan announces everything at
    once). Returns (exit code, the resolved files); a failure is reported."""
    plan, root, wheels, staging = ctx["plan"], ctx["root"], ctx["wheels"], ctx["staging"]
    have = published(wheels)
    missing = [p for p in pins if (normalize(p.name), p.version) not in have]
    to_download = [p for p in missing if p.wheel_url]
    with_sdist = [p for p in missing if not p.wheel_url and p.sdist_url]
    to_build = [spec_of(p) for p in missing if not p.wheel_url and not p.sdist_url]
    log(
        "%d pinned, %d already in the wheelhouse, %d to download, %d to build"
        % (len(pins), len(pins) - len(missing), len(to_download), len(to_build) + len(with_sdist))
    )
    # sdists build (CPU) while wheels download (network)
    uv_builds = start_uv_builds(ctx, uv, with_sdist, env)
    builders = []
    if to_build:
        cmd = pip() + ["wheel"] + base_args + ["--no-deps"] + to_build
        builders.append(Tee(cmd, env=env, cwd=plan["req_dir"]))
    failed = download_wheels(to_download, staging, env)
    log("%d wheels downloaded" % (len(to_download) - len(failed)))
    # Publish the downloads now and say which resolved wheels are ready: the host can
    # install them (in the base image) while the sdists still build here.
    early = publish_downloads(ctx, pins, have, failed)
    if announce:
        announce_ready(wheels, early, ctx["manifest_path"], uv, root)
    code = finish_builds(plan, pip, base_args, env, builders, uv_builds, failed)
    if code != 0:
        return code, None
    log("wheels fetched and built")
    return pinned_files(ctx, pins, have)


def publish_downloads(ctx, pins, have, failed):
    """Publish the downloaded wheels of ``pins`` (those not in ``failed``); the files of
    every pin whose wheel is now published (already there, or just downloaded)."""
    early = []
    for p in pins:
        key = (normalize(p.name), p.version)
        if key in have:
            early.append(have[key])
        elif p.wheel_url and spec_of(p) not in failed:
            fn = url_filename(p.wheel_url)
            if publish(ctx["staging"], ctx["wheels"], fn):
                ctx["new"].append(fn)
            early.append(fn)
    return early


def finish_builds(plan, pip, base_args, env, builders, uv_builds, failed):
    """Wait for the sdist builds (pip's, then uv's), then let pip fetch or build what
    could not be downloaded (``failed``, and the sdists uv could not start); 0, or the
    exit code of the reported failure."""
    code, tail = worst(builders)
    if code != 0:
        stage, package = classify(code, tail)
        return report_failure(stage, code, tail, package)
    for spec, tee in uv_builds:
        if tee is None:
            failed.append(spec)
            continue
        built = tee.wait()
        if built != 0:
            return build_failed(tee, spec, built)
        built_line(spec, tee)
    code, tail = pip_wheel_groups(pip, base_args, failed, env, plan["req_dir"], 2)
    if code != 0:
        stage, package = classify(code, tail)
        return report_failure(stage, code, tail, package)
    return 0


def pinned_files(ctx, pins, have):
    """(0, the wheel of each pin: published before or built in staging now), or a
    reported "compile" failure when a pin has none; records what each was built from."""
    built_files = {}
    for fn in os.listdir(ctx["staging"]):
        if fn.endswith(".whl") and not fn.startswith("."):
            name, version = wheel_name_version(fn)
            built_files[(normalize(name), version)] = fn
    resolved_files = []
    for p in pins:
        key = (normalize(p.name), p.version)
        fn = have.get(key) or built_files.get(key)
        if fn is not None and key not in have and not p.wheel_url and p.sdist_sha:
            ctx["built_from"][fn] = p.sdist_sha  # a locked plan may reuse it
        if fn is None:
            detail = ["no wheel for %s after building" % spec_of(p)]
            return report_failure("compile", 4, detail, spec_of(p)), None
        resolved_files.append(fn)
    return 0, resolved_files


def build_all_with_pip(ctx, pip, base_args, env):
    """Without uv: one `pip wheel` resolves, downloads and builds everything."""
    plan = ctx["plan"]
    cmd = pip() + ["wheel"] + base_args
    for name in plan["top"]:
        cmd += ["-r", os.path.join(plan["req_dir"], name)]
    cmd += plan.get("extra", [])
    log("pip wheel for " + plan["key"])
    tee = Tee(cmd, env=env, cwd=plan["req_dir"])
    code = tee.wait()
    if code != 0:
        stage, package = classify(code, tee.tail)
        return report_failure(stage, code, tee.tail, package), None
    staging = ctx["staging"]
    return 0, sorted(fn for fn in os.listdir(staging) if fn.endswith(".whl"))


def record(ctx, resolved_files, uv):
    """Publish what was built and record the requirement set, under the lock: a set is in
    the manifest only once all of its wheels are published. Returns the manifest."""
    plan, root, wheels, staging = ctx["plan"], ctx["root"], ctx["wheels"], ctx["staging"]
    with Lock(root):
        for fn in sorted(os.listdir(staging)):
            if not fn.endswith(".whl") or fn.startswith("."):
                continue
            if fn in ctx["replace"]:
                replace_published(staging, wheels, fn)
                ctx["new"].append(fn)
            elif publish(staging, wheels, fn):
                ctx["new"].append(fn)
        manifest = load_manifest(ctx["manifest_path"])
        forget_replaced(manifest, ctx["replace"])
        known = manifest.get("wheels", {})
        stats = manifest.get("stats", {})
        all_wheels = {}
        for fn in sorted(os.listdir(wheels)):
            if fn.endswith(".whl") and not fn.startswith("."):
                path = os.path.join(wheels, fn)
                all_wheels[fn] = known.get(fn) or sha256(path)
                stats[fn] = file_stat(path)
        resolved = []
        for fn in sorted(set(resolved_files)):
            name, version = wheel_name_version(fn)
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
            last_use = cache_module().last_use
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
                + list(ctx["built_from"].items())
                if fn in all_wheels
            ),
            tools=tools_entry(uv, root) or manifest.get("tools", {}),
        )
        write_json_atomic(ctx["manifest_path"], manifest, staging)
    return manifest


def cache_module():
    """wheel_cache.py, shipped next to this script: the volume's bound and --prune."""
    try:
        from . import wheel_cache
    except ImportError:  # run as a script in the builder
        import wheel_cache
    return wheel_cache


def upkeep(ctx, uv=None):
    """After a run, under the lock: record the use of the current requirement set, then
    keep the volume under its limit (or, for --prune, only what the current set uses);
    one PRUNED line says what was freed. The manifest as written."""
    wc = cache_module()
    plan, root = ctx["plan"], ctx["root"]
    with Lock(root):
        manifest = load_manifest(ctx["manifest_path"])
        if not manifest:
            return manifest
        now = time.time()
        current = [plan["requirements_hash"]]
        wc.touch(manifest, current[0], now)
        if wc.others_live(root, ctx["staging"]):
            data = {"mode": "skipped", "why": "another run is building in this wheelhouse"}
        elif plan.get("prune") == "unused":
            uv = uv or installed_uv(root, manifest)
            args = (root, plan["volume_dir"], manifest, current, uv, plan.get("all_keys"), Lock)
            data = wc.prune_unused(*args)
        else:
            limit = plan.get("cache_max_size")
            others = (Lock, lambda path, data: write_json_atomic(path, data, ctx["staging"]))
            data = wc.bound(root, plan["volume_dir"], manifest, current, limit, now, others)
        write_json_atomic(ctx["manifest_path"], manifest, ctx["staging"])
    wc.report(data)
    return manifest


def installed_uv(root, manifest):
    """The uv the manifest names, when it is there."""
    entry = (manifest.get("tools") or {}).get("uv") or {}
    path = os.path.join(root, entry["path"]) if entry.get("path") else None
    return path if path and os.path.exists(path) else None


def summary_line(data):
    print(SUMMARY_PREFIX + json.dumps(data, separators=(",", ":")), flush=True)


def build_env(plan, staging):
    env = dict(os.environ)
    env.update(secret_env())
    env["PIP_NO_INPUT"] = "1"
    base_args = [
        "--wheel-dir",
        staging,
        "--find-links",
        os.path.join(plan["volume_dir"], plan["key"], "wheels"),
        "--cache-dir",
        os.path.join(plan["volume_dir"], plan["key"], "cache"),
        "--progress-bar",
        "off",
        "--disable-pip-version-check",
    ]
    if plan.get("no_index"):
        base_args.append("--no-index")
    return env, base_args


#: how long the index (or its proxy) may take to accept a connection before a run that
#: needs it gives up: pip and uv would otherwise retry for minutes
REACH_TIMEOUT = 10


def unreachable(env, timeout=REACH_TIMEOUT):
    """Why this container cannot open a connection to the package index (or to the proxy
    the environment names for it), in one line; None when it can. Without this, a build
    container with no route out (an engine's bridge with no way out, a firewall) spends
    minutes in pip's and uv's retries before saying anything."""
    import socket
    import urllib.parse
    import urllib.request

    if env.get("PIP_NO_INDEX", "").lower() in ("1", "true", "yes", "on"):
        return None  # pip is told to use no index: find-links only
    index = env.get("PIP_INDEX_URL") or pip_config_index() or "https://pypi.org/simple/"
    parts = urllib.parse.urlsplit(index)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None  # a file:// index, or one this check cannot read: let pip say
    target = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    proxies = {k.lower()[:-6]: v for k, v in env.items() if k.lower().endswith("_proxy") and v}
    proxy = proxies.get(parts.scheme)
    via = ""
    if proxy and not urllib.request.proxy_bypass_environment(parts.hostname, proxies):
        found = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        if found.hostname:
            target, via = (found.hostname, found.port or 80), " (its proxy)"
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as exc:
        return "cannot connect to %s:%d%s from the build container: %s" % (
            target[0],
            target[1],
            via,
            exc.strerror or exc.__class__.__name__,
        )
    return None


def run(plan, ctx):
    """One run after the volume was checked: resolve, fetch and build, publish, record."""
    found_pip = []

    def pip():
        """pip, found on first use: an up-to-date resolution with uv needs none."""
        if not found_pip:
            found_pip.append(find_pip(plan["python"]))
        return found_pip[0]

    env, base_args = build_env(plan, ctx["staging"])
    why = None if plan.get("no_index") else unreachable(env)
    if why:
        log("nothing was recorded")
        return report_failure("network", 1, [why])
    drop_cut_off_cache(ctx["root"])  # else pip takes a cut-off wheel from its cache
    installer = plan.get("installer", "auto")
    uv = None
    if installer in ("auto", "uv"):
        uv = ensure_uv(ctx["root"], pip, env, not plan.get("no_index"), ctx["staging"])
        if uv is None and installer == "uv":
            detail = ['installer = "uv" but uv is not available for this platform']
            return report_failure("tools", 3, detail)
    if uv:
        log("uv ready")
    if plan.get("locked") is not None:
        code, resolved_files = build_locked(ctx, uv, pip, env)
    else:
        pins = (
            resolve_with_uv(uv, plan, ctx["root"], ctx["wheels"], ctx["staging"], env)
            if uv
            else None
        )
        if uv and pins is not None:
            code, resolved_files = build_pinned(ctx, uv, pins, pip, base_args, env)
        else:
            code, resolved_files = build_all_with_pip(ctx, pip, base_args, env)
    if code != 0:
        drop_cut_off_cache(ctx["root"])  # what this failure cut off never reaches a rerun
        log("nothing was recorded")
        return code
    record(ctx, resolved_files, uv)
    manifest = upkeep(ctx, uv)
    resolved = manifest["resolved"]
    summary_line(
        {
            "new": ctx["new"],
            "reused": len(resolved) - len(ctx["new"]),
            "resolved": len(resolved),
            "seconds": round(time.time() - ctx["started"], 1),
            # what was just written: the host need not read it back
            "manifest": manifest,
        }
    )
    return 0


# -- importing a wheelhouse (from a wheelhouse image or a CI cache directory) -------------
#
# The host put the other wheelhouse's manifest and the wheels this volume lacks into this
# container's own filesystem (``plan["incoming"]``: never the volume, so an interrupted
# import leaves nothing there). Each wheel is copied into this run's staging directory
# while it is hashed; only a wheel whose sha256 is the one the other manifest records is
# published (a hard link, as every publish) and recorded, under the lock. The volume's
# own wheels and requirement sets always win: a wheel of the same name is never
# replaced, and a set of the other manifest is added only when every wheel it resolved
# is here with the sha256 it names.

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
            log(
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
        stats[fn] = file_stat(os.path.join(wheels, fn))
        if isinstance(their_built_from.get(fn), str):
            built_from.setdefault(fn, their_built_from[fn])
    sets = dict(ours.get("sets") or {})
    room = max(MAX_SETS, len(sets)) - len(sets)
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
    root, wheels, staging = ctx["root"], ctx["wheels"], ctx["staging"]
    with Lock(root):
        ours = load_manifest(ctx["manifest_path"])
        known = ours.get("wheels") or {}
        added = []
        for fn in verified:
            expected = theirs["wheels"][fn]
            if known.get(fn, expected) != expected:
                continue
            if publish(staging, wheels, fn) or sha256(os.path.join(wheels, fn)) == expected:
                added.append(fn)
        merged = merge_imported(ours, theirs, added, wheels, ctx["plan"])
        write_json_atomic(ctx["manifest_path"], merged, staging)
    return added, merged


def imported_line(data):
    print(IMPORTED_PREFIX + json.dumps(data, separators=(",", ":")), flush=True)


def import_main(plan):
    """Import another wheelhouse of this platform key into the volume (see above)."""
    root = os.path.join(plan["volume_dir"], plan["key"])
    wheels = os.path.join(root, "wheels")
    os.makedirs(wheels, exist_ok=True)
    incoming, source = plan["incoming"], plan.get("source", "the import")
    theirs = load_manifest(os.path.join(incoming, "manifest.json"))
    if not isinstance(theirs, dict) or not isinstance(theirs.get("wheels"), dict):
        imported_line({"error": "no readable manifest.json"})
        return 0
    if not same_platform(theirs, plan):
        imported_line({"error": "platform", "theirs": theirs.get("platform_key")})
        return 0
    staging, owner = make_staging(root)
    ctx = {"plan": plan, "root": root, "wheels": wheels, "staging": staging}
    ctx["manifest_path"] = os.path.join(root, "manifest.json")
    try:
        ours = load_manifest(ctx["manifest_path"])
        verified, refused = stage_incoming(incoming, theirs, ours, wheels, staging, source)
        added, merged = publish_imported(ctx, theirs, verified)
        size = sum(os.path.getsize(os.path.join(wheels, fn)) for fn in added)
        imported_line({"added": added, "refused": refused, "bytes": size, "manifest": merged})
        return 0
    except OSError as exc:
        stage = "disk" if exc.errno in (28, 122) else "internal"  # ENOSPC, EDQUOT
        return report_failure(stage, 1, ["%s: %s" % (type(exc).__name__, exc)])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        owner.close()
        shutil.rmtree(incoming, ignore_errors=True)
        shutil.rmtree("/tmp/warpdrive-build", ignore_errors=True)


def main():
    with open(PLAN) as fh:
        plan = json.load(fh)
    if plan.get("mode") == "import":
        return import_main(plan)
    cache_dns()
    root = os.path.join(plan["volume_dir"], plan["key"])
    wheels = os.path.join(root, "wheels")
    os.makedirs(wheels, exist_ok=True)
    os.makedirs(os.path.join(root, "cache"), exist_ok=True)
    os.makedirs(plan["req_dir"], exist_ok=True)  # no requirement files: only the server
    staging, owner = make_staging(root)
    ctx = {
        "plan": plan,
        "root": root,
        "wheels": wheels,
        "staging": staging,
        "manifest_path": os.path.join(root, "manifest.json"),
        "started": time.time(),
        "new": [],  # wheels this run published
        # wheel -> sha256 of the sdist (or "project:<key>") it was built from
        "built_from": {},
        # published wheels a locked plan replaces (another file of the same name)
        "replace": set(),
    }
    try:
        done, manifest = check_volume(plan, root, wheels, staging, ctx["manifest_path"])
        if done is not None or plan.get("mode") == "upkeep":
            # complete (or the host asks only for the upkeep): nothing to build
            manifest = upkeep(ctx) or manifest
            summary = {"up_to_date": done is not None, "new": [], "manifest": manifest}
            summary_line(dict(summary, resolved=len(done or ())))
            return 0
        return run(plan, ctx)
    except OSError as exc:
        stage = "disk" if exc.errno in (28, 122) else "internal"  # ENOSPC, EDQUOT
        return report_failure(stage, 1, ["%s: %s" % (type(exc).__name__, exc)])
    except Exception:
        import traceback

        return report_failure("internal", 1, traceback.format_exc().splitlines())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        owner.close()
        shutil.rmtree("/tmp/warpdrive-build", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
