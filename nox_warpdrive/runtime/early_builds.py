"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py: the
sdists of the top requirements compiled, and their wheels downloaded, while uv
resolves, not after it.

On a first build the resolve is mostly waiting on the index (2 to 3 s for the Wagtail
example), and the compile of an sdist comes after it and the downloads, on the critical
path and beside the early deps install on a small machine. But a top requirement names
its project before any resolve (``psycopg2==2.9.13``, ``uwsgi>=2.0,<2.1``), and a
resolve takes the highest release that fits it: when the index has no wheel of that
release for this interpreter but has its sdist, that sdist is downloaded and its `uv
build` started at once. When it has such a wheel, the best one for this interpreter
is downloaded (one package added to a built set: its download no longer follows the
resolve).

A started build is used only for the pin the resolve then gives, with the very same
sdist (its sha256), and a downloaded wheel only for the pin that names that very file
and sha256: the resolve decides, as without this. Any other (a release another
requirement holds back, a wheel chosen) is stopped, its files and log removed. Nothing
here fails the run: a page or download that cannot be had, or a pip whose packaging
cannot be imported, only means the build starts after the resolve, as before."""

import concurrent.futures
import os
import re
import shutil
import signal
import threading

if __package__:
    from . import builds, common, fetch, resolve, uv_bootstrap
else:  # run as a script in the builder container: its modules are shipped beside it
    import builds
    import common
    import fetch
    import resolve
    import uv_bootstrap

#: how long the end of a run waits for the lookups still under way (seconds): a page
#: being read is read to its end (the index's own timeout bounds it)
STOP_WAIT = 30

#: where the wheels downloaded before the resolve wait for their pins (under staging)
EARLY_DOWNLOADS = "early-downloads"

#: a requirement line with no marker and no URL: a name, extras, version clauses
PLAIN_REQUIREMENT = re.compile(
    r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[\w\s,.-]*\])?\s*"
    r"((?:[<>=!~]=?|===)\s*[\w.*+!-]+(?:\s*,\s*(?:[<>=!~]=?|===)\s*[\w.*+!-]+)*)?\s*$"
)

#: a line that includes another requirement file (``-c`` files pin, they do not require)
INCLUDE_LINE = re.compile(r"^\s*(?:-r|--requirement)(?:\s+|=)(\S+)\s*$")
#: a comment: at the start of a line or after a space (``#`` in a URL fragment is not one)
COMMENT = re.compile(r"(^|\s)#.*$")


def requirement_lines(plan):
    """The requirement lines of the top requirement files, of those they include with
    ``-r``, and the extra requirements: comments, options and continued lines (hashes)
    left out."""
    lines = list(plan.get("extra", []))
    todo = [os.path.join(plan["req_dir"], name) for name in plan.get("top", [])]
    seen = set()
    while todo:
        path = os.path.normpath(todo.pop(0))
        if path in seen:
            continue
        seen.add(path)
        try:
            with open(path) as fh:
                read = fh.read().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        lines += read
        for line in read:
            m = INCLUDE_LINE.match(line)
            if m:
                todo.append(os.path.join(os.path.dirname(path), m.group(1)))
    found = []
    for line in lines:
        text = COMMENT.sub("", line).strip()
        if text and not text.startswith("-") and not text.endswith("\\"):
            found.append(text)
    return found


def wanted(lines, published, utils):
    """{normalised name: its specifier set} of the lines' named requirements (one given by
    URL, or whose marker is false here, left out; a name given twice: both specifiers),
    but not those the wheelhouse has a fitting release of (the resolve keeps it).
    ``published``: the wheelhouse's (name, version) pairs."""
    found = {}
    for line in lines:
        try:
            named = _named(line, utils)
        except Exception:
            continue
        if named is None:
            continue
        name, spec = named
        found[name] = found[name] & spec if name in found else spec
    have = {}
    for name, version in published:
        have.setdefault(name, []).append(version)
    return {
        name: spec
        for name, spec in sorted(found.items())
        if not any(spec.contains(v, prereleases=True) for v in have.get(name, ()))
    }


def release_to_fetch(files, name, spec, supported, utils):
    """What a resolve would fetch of ``name``, read from an index page's ``files``: the
    highest release that fits ``spec`` (yanked files left out). ("wheel", version,
    filename, url, sha256) for its best wheel for the ``supported`` tags (a list, best
    first: pip's order), else ("sdist", version, url, sha256) for its sdist; None when
    nothing fits or the file has no sha256. ``utils``: pip's vendored packaging."""
    rank = {tag: i for i, tag in enumerate(supported)}
    releases = {}  # version -> [(rank, filename, url, sha) of its best wheel, sdist]
    for filename, url, sha, yanked in files:
        try:
            if filename.endswith(".whl"):
                got, version, _, tags = utils.parse_wheel_filename(filename)
            else:
                got, version = utils.parse_sdist_filename(filename)
        except Exception:
            continue
        if got != name or yanked:
            continue
        entry = releases.setdefault(version, [None, None])
        if not filename.endswith(".whl"):
            entry[1] = (url, sha) if sha else entry[1]
            continue
        best = min((rank[str(t)] for t in tags if str(t) in rank), default=None)
        if best is not None and (entry[0] is None or best < entry[0][0]):
            entry[0] = (best, filename, url, sha)
    chosen = max(spec.filter(releases), default=None)
    if chosen is None:
        return None
    wheel, sdist = releases[chosen]
    if wheel is not None:
        return ("wheel", str(chosen), *wheel[1:]) if wheel[3] else None
    return ("sdist", str(chosen), *sdist) if sdist is not None else None


def _named(line, utils):
    """(normalised name, specifier set) of a requirement line, None for one given by URL
    or whose marker is false here. A plain line (a name, extras, version clauses) is read
    without pip's requirement parser: in the pip Debian ships, importing it imports
    pyparsing, 0.08 s of a one-package add."""
    plain = PLAIN_REQUIREMENT.match(line)
    if plain is not None:
        return common.normalize(plain.group(1)), utils.SpecifierSet(plain.group(2) or "")
    req = utils.requirement(line)
    if req.url or (req.marker is not None and not req.marker.evaluate()):
        return None
    return common.normalize(req.name), req.specifier


class _Packaging:
    """The parts of pip's vendored packaging the page reading needs."""

    def __init__(self):
        from pip._vendor.packaging.specifiers import SpecifierSet
        from pip._vendor.packaging.tags import sys_tags
        from pip._vendor.packaging.utils import parse_sdist_filename, parse_wheel_filename

        self.sys_tags, self.SpecifierSet = sys_tags, SpecifierSet
        self.parse_sdist_filename = parse_sdist_filename
        self.parse_wheel_filename = parse_wheel_filename

    @staticmethod
    def requirement(line):
        """pip's parse of a requirement line with a marker or a URL."""
        from pip._vendor.packaging.requirements import Requirement

        return Requirement(line)


class _Lookup:
    """One project's lookup: its page read and a file chosen, then ``fetching`` it (its
    download, or its sdist's download and build); ``skip``: its pin came before it was
    fetching (it fetches nothing then); ``done`` once it ended."""

    def __init__(self):
        self.fetching = False
        self.skip = False
        self.done = threading.Event()


class _Build:
    """One started build: its pin, the sdist's sha256, the process, its output dir."""

    def __init__(self, name, version, sha, tee, out):
        self.name, self.version, self.sha, self.tee, self.out = name, version, sha, tee, out

    def wait(self):
        """The build's exit code; on success its wheel is moved into staging (the
        directory above ``out``), where the run's own builds put theirs."""
        code = self.tee.wait()
        if code == 0:
            for fn in os.listdir(self.out):
                os.replace(os.path.join(self.out, fn), os.path.join(self.out, "..", fn))
        return code

    def __getattr__(self, attr):  # started, log, echo, tail: the Tee's
        return getattr(self.tee, attr)

    def stop(self):
        """End the build and every compiler it started (its process group)."""
        try:
            os.killpg(self.tee.proc.pid, signal.SIGKILL)
        except OSError:  # it ended, and its group with it; or it has none
            if self.tee.proc.poll() is None:
                self.tee.proc.kill()
        self.tee.wait()
        shutil.rmtree(self.out, ignore_errors=True)
        if self.tee.log:
            common.with_suppressed(os.unlink, self.tee.log)


class EarlyBuilds:
    """The builds started before the resolve (``start``); the resolve's sdist pins then
    ``take`` theirs, and ``stop_rest`` ends the others."""

    def __init__(self, ctx, env):
        self.ctx, self.env = ctx, env
        self.builds = {}
        #: {name: (file name, sha256, path)} of the wheels downloaded before the resolve
        self.downloads = {}
        #: {name: _Lookup} of every project looked up, or queued for it
        self.lookups = {}
        self.lock = threading.Lock()
        #: the resolve gave its pins: no lookup is queued after that (_settle)
        self.pinned = False
        self.stopped = False
        self.thread = None
        #: the uv binary the builds run (use_uv), once the run has it (None: no uv)
        self.uv = None
        self.uv_known = threading.Event()

    @classmethod
    def start(cls, ctx, env):
        """Start what can be started: in a thread, the index's pages and the sdists'
        downloads (while uv itself is fetched), then the builds once ``use_uv`` gives uv.
        None when the plan leaves nothing to start early: pip as the installer, no index,
        a lock or another CPU's pins (nothing to resolve), no requirement line."""
        plan = ctx.plan
        if plan.get("installer") == "pip" or plan.get("no_index") or plan.get("upgrade"):
            return None
        if plan.get("locked") is not None or plan.get("pins") is not None:
            return None
        lines = requirement_lines(plan)
        if not lines:
            return None
        early = cls(ctx, env)
        # made here, before any thread: it sets the proxy variables (os.environ), and a
        # variable set while another thread reads the environment can crash the process
        opener = fetch._opener(env)
        # not a daemon: a thread still reading a page when the run ends would be frozen
        # in the interpreter's shutdown (stop_rest ends it first)
        early.thread = threading.Thread(target=early._run, args=(lines, opener))
        early.thread.start()
        return early

    def use_uv(self, uv):
        """The run has its uv (or none: nothing is built early)."""
        self.uv = uv
        self.uv_known.set()

    def _run(self, lines, opener):
        try:
            if not uv_bootstrap.pip_importable():
                return
            utils = _Packaging()
            todo = wanted(lines, resolve.published(self.ctx.wheels), utils)
            index, headers = fetch.index_auth(fetch.pip_index(self.env))
            where = (opener, index, headers, [str(t) for t in utils.sys_tags()], utils)
        except Exception as exc:  # never the run's failure: the builds start later
            common.log("could not start a build before the resolve (%s)" % exc)
            return
        with self.lock:
            if self.stopped or self.pinned:  # the resolve was quicker: nothing to look up
                return
            self.lookups = {name: _Lookup() for name in todo}
        # a fully pinned file names every project: their pages are read side by side
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            found = pool.map(lambda item: self._one(where, *item), sorted(todo.items()))
            failed = [f for f in found if f]
        if failed:
            common.log(
                "%d requirement(s) not fetched before the resolve (%s); they are fetched "
                "or built after it" % (len(failed), failed[0])
            )

    def _one(self, where, name, spec):
        """Look ``name`` up and fetch what a resolve would take: None, or why it could
        not be had (said with the others)."""
        opener, index, headers, supported, utils = where
        lookup = self.lookups[name]
        try:
            if self.stopped or lookup.skip:  # past the builds, or its pin came first
                return None
            files = fetch.index_files(opener, index.rstrip("/") + "/" + name + "/", headers)
            found = release_to_fetch(files, name, spec, supported, utils)
            with self.lock:
                if found is None or self.stopped or lookup.skip:
                    return None
                lookup.fetching = True
            auth = fetch.headers_for(found[-2], index, headers)
            if found[0] == "sdist":
                self._start_one(name, found[1:], opener, auth)
                return None
            return self._download_one(name, found[1:], opener, auth)
        except Exception as exc:  # a project another index has, a page that failed
            return "%s: %s" % (name, exc)
        finally:
            lookup.done.set()

    def _download_one(self, name, found, opener, headers):
        """Download the wheel a resolve would likely take (kept for ``take_downloads``):
        None, or why it could not be had (said with the failed lookups)."""
        _, filename, url, sha = found
        directory = os.path.join(self.ctx.staging, EARLY_DOWNLOADS)
        os.makedirs(directory, exist_ok=True)
        path, digest = fetch.download_checked(
            opener, url, directory, headers, stopped=lambda: self.stopped
        )
        if path is not None and digest != sha:
            common.with_suppressed(os.unlink, path)
            path, digest = None, "sha256 mismatch"
        if path is None:  # (ended by stop_rest: not news)
            return None if self.stopped else "%s: %s" % (name, digest)
        with self.lock:
            if self.stopped:  # past the downloads: stop_rest removes the directory
                return None
            self.downloads[name] = (filename, sha, path)
        return None

    def _start_one(self, name, found, opener, headers):
        version, url, sha = found
        sdists = os.path.join(self.ctx.staging, "sdists")
        os.makedirs(sdists, exist_ok=True)
        path = fetch.fetch(opener, url, sha, sdists, headers, quiet=True)
        if path is None:
            return
        spec = "%s==%s" % (name, version)
        out = os.path.join(self.ctx.staging, "early-" + name)
        os.makedirs(out, exist_ok=True)
        self.uv_known.wait(600)
        with self.lock:
            if self.stopped or not self.uv:
                return
            common.log("building %s while uv resolves" % spec)
            tee = builds.uv_build(self.ctx, self.uv, self.env, path, out, spec, group=True)
            self.builds[name] = _Build(name, version, sha, tee, out)

    def take(self, pin):
        """The started build for this resolved sdist pin (a Tee-like object whose wait
        puts the wheel in staging), or None; one for the same project that does not
        match (another version or sdist) is stopped here, before the pin's own build
        unpacks its sdist."""
        name = common.normalize(pin.name)
        self._settle(name)
        with self.lock:
            build = self.builds.pop(name, None)
        if build is None:
            return None
        if build.version == pin.version and build.sha == pin.sdist_sha:
            return build
        build.stop()
        return None

    def take_downloads(self, pins):
        """The ``pins`` still to download: a pin whose very wheel (its file name and
        sha256) was downloaded before the resolve is moved into staging (and said); any
        other early download is left for stop_rest to remove."""
        rest = []
        for pin in pins:
            name = common.normalize(pin.name)
            self._settle(name)
            with self.lock:
                got = self.downloads.pop(name, None)
            filename = common.url_filename(pin.wheel_url)
            if got is None or got[:2] != (filename, pin.wheel_sha):
                rest.append(pin)
                continue
            os.replace(got[2], os.path.join(self.ctx.staging, filename))
            print("Downloaded %s while uv resolved" % filename, flush=True)
        return rest

    def _settle(self, name):
        """The resolve's pins are known: no lookup is queued after this, and the lookup of
        ``name`` is waited for when it is fetching its file; one that is not fetching yet
        fetches nothing now (the usual download, side by side, is as quick)."""
        with self.lock:
            self.pinned = True
            lookup = self.lookups.get(name)
            if lookup is None:
                return
            if not lookup.fetching:
                lookup.skip = True
                return
        lookup.done.wait()

    def stop_rest(self):
        """End the builds no pin took (the run is past its builds, or failed)."""
        self.uv_known.set()  # a thread still waiting for uv starts nothing now
        with self.lock:
            self.stopped = True
        if self.thread is not None:
            self.thread.join(STOP_WAIT)  # no page read or build start after this
        with self.lock:
            rest, self.builds = list(self.builds.values()), {}
        for build in rest:
            build.stop()
        self.downloads = {}
        shutil.rmtree(os.path.join(self.ctx.staging, EARLY_DOWNLOADS), ignore_errors=True)
