"""A real, local PEP 503 package index for integration tests.

The index holds tiny fixture projects whose sources live in
``tests/fixtures/packages`` (FIXTURE_PACKAGES lists them all), among them:

* ``wd-cext-demo`` -- a C extension, shipped **only as an sdist**, so whoever
  installs it must compile it (gcc + Python headers) under pip's build isolation;
* ``wd-pure-demo`` -- a pure-Python wheel (``py3-none-any``);
* ``wd-extra-demo`` -- a pure-Python wheel, "the one added requirement";
* ``wd-held-demo`` -- a pure-Python wheel in two releases, 1.0.0 (sources in
  ``wd-held-demo-1``) and 2.0.0: a lock that holds the older one must install it;
* ``wd-needs-cext-demo`` -- a pure-Python wheel that depends on ``wd-cext-demo``: the
  sdist then comes in through the resolve, not through a requirement line;

plus the wheels of the build backend that pip's build isolation needs to build
the sdist (:data:`BACKEND_REQUIREMENTS`, i.e. setuptools).  Since setuptools 70.1
ships ``bdist_wheel`` itself, ``get_requires_for_build_wheel`` returns nothing
and no ``wheel`` distribution is needed.

Usage::

    simple = build_index(tmp_path / "index")          # -> tmp_path/index/simple
    with serve(simple.parent) as index:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--isolated", "--no-deps",
             "--index-url", index.url, "wd-pure-demo", "-d", str(tmp_path)],
            env=hermetic_pip_env(), check=True,
        )
        assert index.downloaded() == ["wd_pure_demo-0.1.0-py3-none-any.whl"]

Run pip against the index with ``env=hermetic_pip_env()``: ``pip --isolated`` alone
still reads the *global* config files (``/etc/pip.conf``, ``/etc/xdg/pip/pip.conf``),
and the child pip that installs build-isolation requirements runs without
``--isolated`` and so also picks up ``PIP_*`` variables and the user config --
a host ``find-links`` would then quietly supply setuptools.

Layout of the built tree (``dest``)::

    dest/files/<artefacts>                   sdists and wheels
    dest/simple/index.html                   project list
    dest/simple/<normalized-name>/index.html links "../../files/<file>#sha256=..."

Caching: backend wheels are downloaded once (with the host's pip configuration,
so mirrors and custom CAs keep working) into ``<cache>/downloads``; fixture
artefacts are built once per source content hash into ``<cache>/builds``.  The
cache defaults to ``$XDG_CACHE_HOME/nox-warpdrive-tests`` (``~/.cache/...``).
Building uses only those cached backend wheels (``--no-index``), so a warm cache
makes :func:`build_index` fully offline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.parser
import hashlib
import html
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.parse
import zipfile
from collections.abc import Iterator, Mapping
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = [
    "BACKEND_REQUIREMENTS",
    "FIXTURE_PACKAGES",
    "PACKAGES_DIR",
    "Index",
    "build_index",
    "default_cache_dir",
    "hermetic_pip_env",
    "normalize",
    "serve",
]

#: Where the fixture package sources live.
PACKAGES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "packages"

#: Fixture source directory (its name is the project's, or the project's with the
#: release's major version for an older release) -> what to ship.
FIXTURE_PACKAGES: Mapping[str, str] = {
    "wd-cext-demo": "sdist",
    "wd-pure-demo": "wheel",
    "wd-extra-demo": "wheel",
    "wd-held-demo": "wheel",
    "wd-held-demo-1": "wheel",
    # links libpython3.X.so, as uwsgi does: builds in the builder, cannot load in the base
    "wd-embed-demo": "sdist",
    # a C extension with a compile error
    "wd-broken-demo": "sdist",
    # every release needs a newer Python than any base image has
    "wd-newpy-demo": "wheel",
    # depends on wd-cext-demo: the sdist comes in through the resolve, not a top line
    "wd-needs-cext-demo": "wheel",
}

#: Wheels served so that pip's build isolation can build the sdist.  Pinned (exact
#: ``==`` versions only) so the cache can be checked without the network and builds
#: are reproducible.  setuptools 84 needs Python >= 3.10, like nox-warpdrive.
BACKEND_REQUIREMENTS: tuple[str, ...] = ("setuptools==84.2.1",)
#: wheels from PyPI the index also serves: the web server nox-warpdrive adds to an app
SERVED_REQUIREMENTS: tuple[str, ...] = (
    "gunicorn==27.0.1",
    "uv==0.13.9",
    # a real Django, for the Django detection and collectstatic tests
    "Django==5.2.19",
    "asgiref==3.13.0",
    "sqlparse==0.6.1",
    # the other servers, and WhiteNoise for Django's static files
    "uvicorn==0.54.0",
    "click==8.5.1",
    "h11==0.16.0",
    "waitress==3.0.2",
    "whitenoise==6.12.0",
    # a real Flask, for the builds against Podman (test_podman_engine.py)
    "flask==3.1.3",
    "werkzeug==3.1.9",
    "jinja2==3.1.6",
    "markupsafe==3.0.3",
    "itsdangerous==2.2.0",
    "blinker==1.9.0",
)

#: wheels from PyPI for another CPU than the host's (name==version, pip's --platform): a
#: real manylinux aarch64 wheel with a C extension, which an arm64 build downloads as it
#: is (nothing compiled), for CPython 3.11 (the test base images' Python)
FOREIGN_WHEELS: tuple[tuple[str, str], ...] = (
    ("markupsafe==3.0.3", "manylinux2014_aarch64"),
    # uv for arm64 builds, as PyPI has it: sdists compiled (emulated) with `uv build`
    ("uv==0.13.9", "manylinux2014_aarch64"),
)
FOREIGN_PYTHON = ("3.11", "cp", "cp311")
_FOREIGN_SUFFIXES = tuple(f"_{arch}.whl" for arch in {"aarch64"} - {platform.machine()})

# Bump to invalidate cached builds when the way they are produced changes.
_BUILD_RECIPE = "1"
_IGNORED_PARTS = {"__pycache__", "build", "dist", ".git"}


def normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nox-warpdrive-tests"


def hermetic_pip_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a pip subprocess that must see only the index it is given.

    Drops every ``PIP_*`` variable and sets ``PIP_CONFIG_FILE`` to ``os.devnull``,
    which makes pip skip *all* configuration files (global, user and site).
    """
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.upper().startswith("PIP_")
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


# --------------------------------------------------------------------------- building


def _run(cmd: list[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
    proc = subprocess.run(
        cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"command failed with exit code {proc.returncode}: {' '.join(cmd)}\n{proc.stdout}"
        )


def _source_files(src: Path) -> list[Path]:
    return sorted(
        p
        for p in src.rglob("*")
        if p.is_file()
        and not _IGNORED_PARTS.intersection(p.relative_to(src).parts)
        and not any(part.endswith(".egg-info") for part in p.relative_to(src).parts)
        and p.suffix not in {".pyc", ".pyo", ".so"}
    )


def _source_hash(src: Path, *extra: str) -> str:
    h = hashlib.sha256()
    for item in (_BUILD_RECIPE, *extra):
        h.update(item.encode() + b"\0")
    for path in _source_files(src):
        h.update(path.relative_to(src).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def _wheel_prefix(requirement: str) -> str:
    name, sep, version = requirement.partition("==")
    if not sep or not version or any(c in version for c in "*,;<>!~ "):
        raise ValueError(f"backend requirement must be an exact pin 'name==version': {requirement}")
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


def _pip_download(downloads: Path, requirement: str, extra: tuple[str, ...] = ()) -> None:
    """One wheel of ``requirement`` downloaded into ``downloads`` (through a private
    directory, so a cut-off download is never taken for a wheel), with the host's pip
    configuration on purpose: it may name a mirror or a CA bundle. ``extra``: more of
    pip's arguments (another CPU's --platform and Python)."""
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".dl-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
        command += ["--only-binary=:all:", "--no-deps", *extra]
        _run([*command, "-d", tmp, requirement])
        for whl in Path(tmp).glob("*.whl"):
            os.replace(whl, downloads / whl.name)


def _ensure_backend_wheels(
    downloads: Path, requirements: tuple[str, ...] = BACKEND_REQUIREMENTS
) -> list[Path]:
    """Return the cached backend wheels, downloading the missing ones."""
    downloads.mkdir(parents=True, exist_ok=True)
    wheels: list[Path] = []
    for requirement in requirements:
        prefix = _wheel_prefix(requirement)

        def cached(prefix: str = prefix) -> list[Path]:
            return sorted(
                p
                for p in downloads.glob("*.whl")
                if p.name.lower().startswith(prefix)
                and not p.name.endswith(_FOREIGN_SUFFIXES)  # another CPU's (FOREIGN_WHEELS)
            )

        found = cached()
        if not found:
            _pip_download(downloads, requirement)
            found = cached()
            if not found:
                raise RuntimeError(f"pip download produced no wheel for {requirement}")
        wheels.append(found[-1])
    return wheels


def _arch(platform_tag: str) -> str:
    """The CPU a platform tag names (``manylinux2014_aarch64`` -> ``aarch64``)."""
    m = re.search(r"(aarch64|x86_64|armv7l|ppc64le|s390x|i686)$", platform_tag)
    return m.group(1) if m else platform_tag


def _ensure_foreign_wheels(downloads: Path) -> list[Path]:
    """The cached FOREIGN_WHEELS, downloading the missing ones (the host's pip
    configuration, as for the served wheels, with pip's --platform and the Python of
    the test images)."""
    downloads.mkdir(parents=True, exist_ok=True)
    version, implementation, abi = FOREIGN_PYTHON
    wheels: list[Path] = []
    for requirement, platform_tag in FOREIGN_WHEELS:
        prefix = _wheel_prefix(requirement)
        arch = _arch(platform_tag)

        def cached(prefix: str = prefix, arch: str = arch) -> list[Path]:
            return sorted(
                p
                for p in downloads.glob("*.whl")
                if p.name.lower().startswith(prefix) and p.name.endswith(f"_{arch}.whl")
            )

        if not cached():
            platform_args = ("--platform", platform_tag, "--python-version", version)
            python_args = ("--implementation", implementation, "--abi", abi)
            _pip_download(downloads, requirement, platform_args + python_args)
        found = cached()
        if not found:
            raise RuntimeError(f"pip download produced no {platform_tag} wheel for {requirement}")
        wheels.append(found[-1])
    return wheels


def _build_fixture(src: Path, kind: str, out: Path, wheelhouse: Path) -> None:
    """Build ``src`` into ``out`` with ``python -m build`` under build isolation.

    The isolated build environment is fed only from ``wheelhouse`` (the cached
    backend wheels), never from the network or the host's pip configuration.
    """
    env = hermetic_pip_env()
    env["PIP_NO_INDEX"] = "1"
    env["PIP_FIND_LINKS"] = str(wheelhouse)
    env.setdefault("SOURCE_DATE_EPOCH", "315532800")  # 1980-01-01: steadier archive bytes
    with tempfile.TemporaryDirectory(prefix="wd-fixture-") as tmp:
        # Build from a copy: setuptools writes *.egg-info and build/ into the tree.
        work = Path(tmp) / src.name
        shutil.copytree(
            src,
            work,
            ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info", "build", "dist", "*.so", "*.pyc"
            ),
        )
        _run([sys.executable, "-m", "build", f"--{kind}", "--outdir", str(out), str(work)], env=env)


def _cached_build(name: str, kind: str, cache: Path, wheelhouse: Path, backend: str) -> list[Path]:
    src = PACKAGES_DIR / name
    if not src.is_dir():
        raise FileNotFoundError(f"fixture package sources not found: {src}")
    key = _source_hash(src, kind, backend)[:16]
    target = cache / "builds" / f"{name}-{kind}-{key}"
    if not (target / ".complete").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
        try:
            _build_fixture(src, kind, staging, wheelhouse)
            (staging / ".complete").write_text(key + "\n")
            if target.exists():  # an incomplete leftover from an interrupted run
                shutil.rmtree(target)
            try:
                os.replace(staging, target)
            except OSError:  # a concurrent run won the race; its result is as good
                if not (target / ".complete").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for old in target.parent.glob(f"{name}-{kind}-*"):  # builds of older sources
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    artefacts = sorted(p for p in target.iterdir() if not p.name.startswith("."))
    if not artefacts:
        raise RuntimeError(f"build of {name} produced no {kind}")
    return artefacts


# --------------------------------------------------------------------------- index pages


def _project_of(filename: str) -> str:
    if filename.endswith(".whl"):
        return normalize(filename.split("-", 1)[0])
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix):
            return normalize(filename[: -len(suffix)].rsplit("-", 1)[0])
    raise ValueError(f"not a distribution file name: {filename}")


def _requires_python(path: Path) -> str | None:
    """``Requires-Python`` from a wheel's METADATA or an sdist's PKG-INFO, if any."""
    raw: bytes | None = None
    if path.name.endswith(".whl"):
        with zipfile.ZipFile(path) as zf:
            name = next(
                (
                    n
                    for n in zf.namelist()
                    if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
                ),
                None,
            )
            raw = zf.read(name) if name else None
    elif path.name.endswith(".tar.gz"):
        with tarfile.open(path) as tf:
            member = next(
                (
                    m
                    for m in tf.getmembers()
                    if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")
                ),
                None,
            )
            fh = tf.extractfile(member) if member else None
            raw = fh.read() if fh else None
    if raw is None:
        return None
    value = email.parser.BytesHeaderParser().parsebytes(raw).get("Requires-Python")
    return str(value).strip() if value else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(partial(fh.read, 1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _page(title: str, links: list[str]) -> str:
    body = "\n".join(f"    {link}<br/>" for link in links)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.0">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"{body}\n  </body>\n</html>\n"
    )


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_simple_tree(simple: Path, files: list[Path]) -> None:
    projects: dict[str, list[Path]] = {}
    for f in files:
        projects.setdefault(_project_of(f.name), []).append(f)
    for stale in simple.iterdir() if simple.is_dir() else ():
        if stale.is_dir() and stale.name not in projects:
            shutil.rmtree(stale)
    root_links = [f'<a href="{p}/">{p}</a>' for p in sorted(projects)]
    _write_if_changed(simple / "index.html", _page("Simple index", root_links))
    for project, dists in sorted(projects.items()):
        links = []
        for dist in sorted(dists, key=lambda p: p.name):
            href = f"../../files/{urllib.parse.quote(dist.name)}#sha256={_sha256(dist)}"
            attrs = f'href="{html.escape(href)}"'
            rp = _requires_python(dist)
            if rp:
                attrs += f' data-requires-python="{html.escape(rp)}"'
            links.append(f"<a {attrs}>{html.escape(dist.name)}</a>")
        _write_if_changed(simple / project / "index.html", _page(f"Links for {project}", links))


def build_index(dest: Path, *, cache_dir: Path | None = None) -> Path:
    """Build (or refresh) the fixture index under ``dest`` and return ``dest / "simple"``.

    Idempotent: artefacts are rebuilt only when a fixture's sources change (content
    hash), files and pages are rewritten only when their content changes, and stale
    files are removed.  ``cache_dir`` defaults to :func:`default_cache_dir`.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dest = Path(dest)
    backend_wheels = _ensure_backend_wheels(cache / "downloads")
    backend_key = ",".join(w.name for w in backend_wheels)
    # A dedicated find-links dir holding exactly the pinned backend wheels, so that
    # stray downloads in the cache cannot change what the builds use.
    house = cache / "backend" / hashlib.sha256(backend_key.encode()).hexdigest()[:16]
    if not all((house / w.name).is_file() for w in backend_wheels):
        house.mkdir(parents=True, exist_ok=True)
        for w in backend_wheels:
            shutil.copy2(w, house / w.name)

    wanted: list[Path] = list(backend_wheels)
    wanted += _ensure_backend_wheels(cache / "downloads", SERVED_REQUIREMENTS)
    wanted += _ensure_foreign_wheels(cache / "foreign")
    for name, kind in FIXTURE_PACKAGES.items():
        wanted += _cached_build(name, kind, cache, house, backend_key)

    files_dir = dest / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in wanted}
    if len(names) != len(wanted):
        raise RuntimeError(f"duplicate artefact names: {sorted(p.name for p in wanted)}")
    for stale in files_dir.iterdir():
        if stale.name not in names:
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink()
    placed: list[Path] = []
    for src in wanted:
        target = files_dir / src.name
        if not (
            target.is_file()
            and target.stat().st_size == src.stat().st_size
            and _sha256(target) == _sha256(src)
        ):
            shutil.copy2(src, target)
        placed.append(target)

    simple = dest / "simple"
    _write_simple_tree(simple, placed)
    return simple


# --------------------------------------------------------------------------- serving


@dataclasses.dataclass
class Index:
    """A running index server, as yielded by :func:`serve`.

    ``url`` is the PEP 503 simple URL (``http://HOST:PORT/simple/``), ready for
    ``pip --index-url``.  ``requests`` lists the path (with query string) of every
    GET/HEAD request served so far, in order; it is appended to from the server
    threads, so copy it before iterating while requests may still arrive.
    """

    url: str
    root: Path
    host: str
    port: int
    requests: list[str] = dataclasses.field(default_factory=list)

    @property
    def base_url(self) -> str:
        """Server root URL, e.g. ``http://127.0.0.1:PORT/``."""
        return self.url.removesuffix("simple/")

    def url_for(self, host: str) -> str:
        """The simple URL as reached through another host name (e.g. from a container)."""
        return f"http://{_netloc(host, self.port)}/simple/"

    def downloaded(self) -> list[str]:
        """File names of the distributions fetched (``/files/...`` requests), in order."""
        return [
            urllib.parse.unquote(p.split("?", 1)[0].rsplit("/", 1)[-1])
            for p in list(self.requests)
            if p.split("?", 1)[0].startswith("/files/")
        ]


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(SimpleHTTPRequestHandler):
    record: list[str]

    def do_GET(self) -> None:
        self.record.append(self.path)
        super().do_GET()

    def do_HEAD(self) -> None:
        self.record.append(self.path)
        super().do_HEAD()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(root: Path, host: str = "127.0.0.1") -> Iterator[Index]:
    """Serve ``root`` (the directory holding ``simple/``) over HTTP on a free port.

    Runs a :class:`~http.server.ThreadingHTTPServer` in a daemon thread with request
    logging silenced, yields an :class:`Index`, and shuts the server down on exit.
    Bind ``host="0.0.0.0"`` to make it reachable from containers, then hand them
    ``index.url_for("<address they can reach>")``.
    """
    root = Path(root).resolve()
    if not (root / "simple" / "index.html").is_file():
        raise FileNotFoundError(f"no simple index under {root}; run build_index() first")
    record: list[str] = []
    handler = type("RecordingHandler", (_Handler,), {"record": record})
    server_cls = _IPv6Server if ":" in host else ThreadingHTTPServer
    server = server_cls((host, 0), partial(handler, directory=str(root)))
    server.daemon_threads = True
    port = int(server.server_address[1])
    url_host = "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)
    index = Index(
        url=f"http://{_netloc(url_host, port)}/simple/",
        root=root,
        host=host,
        port=port,
        requests=record,
    )
    thread = threading.Thread(
        target=partial(server.serve_forever, poll_interval=0.05),
        name=f"pkgindex:{port}",
        daemon=True,
    )
    thread.start()
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
