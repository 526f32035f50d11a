"""build_wheels.py (runs in the builder container): uv fetched straight from the package
index pip would use, with pip download as the fallback. A local HTTP server plays the index."""

from __future__ import annotations

import base64
import configparser
import glob
import hashlib
import http.server
import io
import json
import os
import ssl
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pip._vendor.packaging.tags import Tag
from pip._vendor.packaging.utils import parse_wheel_filename
from pip._vendor.packaging.version import Version

from nox_warpdrive.runtime import common, protocol, publish, uv_bootstrap
from nox_warpdrive.runtime import fetch as rt_fetch
from nox_warpdrive.runtime import locked as rt_locked
from nox_warpdrive.runtime import project as rt_project

UV_WHEEL = "uv-0.5.0-py3-none-any.whl"


def uv_wheel(version: str = "0.5.0") -> bytes:
    """A real (tiny) uv wheel: the script is a shell script that prints the version."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"uv-{version}.data/scripts/uv", f'#!/bin/sh\necho "uv {version}"\n')
        zf.writestr(
            f"uv-{version}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: uv\nVersion: {version}\n",
        )
        zf.writestr(
            f"uv-{version}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-any\n",
        )
    return buf.getvalue()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ----------------------------------------------------------------------------- index server


@dataclass
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    location: str | None = None


@dataclass
class Index:
    """What the local server serves (path -> page) and the requests it saw."""

    port: int
    routes: dict[str, Page] = field(default_factory=dict)
    # (path, headers with lower-case names)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def html(self, path: str, *anchors: str) -> None:
        body = "<!DOCTYPE html><html><body>\n" + "\n".join(anchors) + "\n</body></html>\n"
        self.routes[path] = Page(body.encode())

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib reads *_proxy from os.environ (and _opener copies env's into it): reach
    127.0.0.1 directly whatever the machine's proxy setup."""
    for key in list(os.environ):
        if key.lower().endswith("_proxy"):
            monkeypatch.delenv(key)


_SSL_CONTEXT: list[ssl.SSLContext] = []


@pytest.fixture(autouse=True)
def shared_ssl_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """_opener makes an SSL context (loading the CA bundle, ~50 ms) on every call; the
    tests speak plain HTTP only, so one shared default context will do."""
    real = ssl.create_default_context

    def create(purpose: Any = ssl.Purpose.SERVER_AUTH, **kwargs: Any) -> ssl.SSLContext:
        if any(kwargs.values()):
            return real(purpose, **kwargs)
        if not _SSL_CONTEXT:
            _SSL_CONTEXT.append(real(purpose))
        return _SSL_CONTEXT[0]

    monkeypatch.setattr(ssl, "create_default_context", create)


@pytest.fixture
def index() -> Iterator[Index]:
    state: list[Index] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            idx = state[0]
            idx.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            page = idx.routes.get(self.path)
            if page is None:
                self.send_error(404)
                return
            self.send_response(page.status)
            if page.location:
                self.send_header("Location", page.location)
            self.send_header("Content-Type", page.content_type)
            self.send_header("Content-Length", str(len(page.body)))
            self.end_headers()
            self.wfile.write(page.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.append(Index(port=server.server_address[1]))
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield state[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def files_of(index: Index, page: str) -> list[tuple[str, str, str | None, bool]]:
    opener = rt_fetch._opener({})
    result: list[tuple[str, str, str | None, bool]] = rt_fetch.index_files(
        opener, index.url + page, {}
    )
    return result


# ----------------------------------------------------------------------------- pick_uv_wheel

SUPPORTED = [
    Tag("cp311", "cp311", "manylinux_2_17_x86_64"),
    Tag("py3", "none", "manylinux_2_17_x86_64"),
    Tag("py3", "none", "any"),
]


def entry(filename: str, yanked: bool = False) -> tuple[str, str, str, bool]:
    return (filename, "https://files.example/" + filename, "sha-" + filename, yanked)


def pick(*files: tuple[str, str, str, bool]) -> str | None:
    chosen = uv_bootstrap.pick_uv_wheel(list(files), SUPPORTED, parse_wheel_filename, Version)
    if chosen is None:
        return None
    filename, url, sha = chosen
    assert url == "https://files.example/" + filename
    assert sha == "sha-" + filename
    return str(filename)


def test_pick_newest_below_1() -> None:
    files = [
        entry("uv-0.4.30-py3-none-any.whl"),
        entry("uv-0.5.1-py3-none-any.whl"),
        entry("uv-0.5.0-py3-none-any.whl"),
    ]
    assert pick(*files) == "uv-0.5.1-py3-none-any.whl"
    assert pick(*reversed(files)) == "uv-0.5.1-py3-none-any.whl"


def test_pick_post_release_counts_as_newer() -> None:
    files = [entry("uv-0.5.0.post1-py3-none-any.whl"), entry("uv-0.5.0-py3-none-any.whl")]
    assert pick(*files) == "uv-0.5.0.post1-py3-none-any.whl"


@pytest.mark.parametrize(
    "newer",
    [
        pytest.param(entry("uv-0.9.0-py3-none-any.whl", yanked=True), id="yanked"),
        pytest.param(entry("uv-0.9.0rc1-py3-none-any.whl"), id="rc"),
        pytest.param(entry("uv-0.9.0.dev3-py3-none-any.whl"), id="dev"),
        pytest.param(entry("uv-1.0.0rc1-py3-none-any.whl"), id="1.0-rc"),
        pytest.param(entry("uv-1.0.0-py3-none-any.whl"), id="1.0"),
        pytest.param(entry("uv-2.3.0-py3-none-any.whl"), id="2.x"),
        pytest.param(entry("uv-0.9.0.tar.gz"), id="sdist"),
        pytest.param(entry("uv-0.9.0.zip"), id="zip-sdist"),
        pytest.param(entry("uv_build-0.9.0-py3-none-any.whl"), id="other-project"),
        pytest.param(entry("uvx-0.9.0-py3-none-any.whl"), id="other-project-prefix"),
        pytest.param(entry("uv-0.9.0-cp27-cp27mu-manylinux1_x86_64.whl"), id="unsupported-tag"),
        pytest.param(entry("uv-0.9.0-py3-none-win_amd64.whl"), id="other-platform"),
        pytest.param(entry("uv-latest.whl"), id="invalid-wheel-name"),
    ],
)
def test_pick_skips(newer: tuple[str, str, str, bool]) -> None:
    old = entry("uv-0.4.0-py3-none-any.whl")
    assert pick(newer, old) == "uv-0.4.0-py3-none-any.whl"
    assert pick(old, newer) == "uv-0.4.0-py3-none-any.whl"
    assert pick(newer) is None


@pytest.mark.parametrize("reverse", [False, True], ids=["best-first", "best-last"])
def test_pick_best_tag_among_equal_versions(reverse: bool) -> None:
    files = [
        entry("uv-0.5.0-cp311-cp311-manylinux_2_17_x86_64.whl"),  # rank 0
        entry("uv-0.5.0-py3-none-manylinux_2_17_x86_64.whl"),  # rank 1
        entry("uv-0.5.0-py3-none-any.whl"),  # rank 2
    ]
    if reverse:
        files.reverse()
    assert pick(*files) == "uv-0.5.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    without_best = [f for f in files if "cp311" not in f[0]]
    assert pick(*without_best) == "uv-0.5.0-py3-none-manylinux_2_17_x86_64.whl"


def test_pick_compressed_tag_set_uses_its_best_tag() -> None:
    files = [
        entry("uv-0.5.0-py3-none-manylinux_2_17_x86_64.whl"),  # rank 1
        entry("uv-0.5.0-cp311.py3-cp311.none-manylinux_2_17_x86_64.whl"),  # contains rank 0
    ]
    assert pick(*files) == "uv-0.5.0-cp311.py3-cp311.none-manylinux_2_17_x86_64.whl"


def test_pick_newer_version_beats_better_tag() -> None:
    files = [
        entry("uv-0.5.0-cp311-cp311-manylinux_2_17_x86_64.whl"),
        entry("uv-0.5.1-py3-none-any.whl"),
    ]
    assert pick(*files) == "uv-0.5.1-py3-none-any.whl"


def test_pick_nothing_fits() -> None:
    assert pick() is None
    assert (
        pick(
            entry("uv-1.0.0-py3-none-any.whl"),
            entry("uv-0.5.0-py3-none-any.whl", yanked=True),
            entry("uv-0.5.0.tar.gz"),
            entry("uv-0.5.0-py3-none-win_amd64.whl"),
        )
        is None
    )


# ----------------------------------------------------------------------------- index_files


def test_index_files_pep503_html(index: Index) -> None:
    index.html(
        "/simple/uv/",
        '<a href="../../files/uv-0.5.0-py3-none-any.whl#sha256=abc">uv-0.5.0-py3-none-any.whl</a>',
        '<a href="../../files/uv-0.4.0-py3-none-any.whl#sha256=def" data-yanked="">x</a>',
        '<a href="../../files/uv-0.3.0-py3-none-any.whl" data-yanked>x</a>',
        '<a href="../../files/uv-0.2.0-py3-none-any.whl?a=1&amp;b=2#md5=0f">x</a>',
        '<a href="../../files/uv&#45;0.1.0%2Blocal-py3-none-any.whl#sha256=123">x</a>',
        '<a href="https://mirror.example/f/uv-0.0.9.tar.gz#sha256=987">x</a>',
        '<a name="no-href">anchor without a link</a>',
    )
    base = index.url + "/files/"
    assert files_of(index, "/simple/uv/") == [
        ("uv-0.5.0-py3-none-any.whl", base + "uv-0.5.0-py3-none-any.whl", "abc", False),
        ("uv-0.4.0-py3-none-any.whl", base + "uv-0.4.0-py3-none-any.whl", "def", True),
        ("uv-0.3.0-py3-none-any.whl", base + "uv-0.3.0-py3-none-any.whl", None, True),
        ("uv-0.2.0-py3-none-any.whl", base + "uv-0.2.0-py3-none-any.whl?a=1&b=2", None, False),
        (
            "uv-0.1.0+local-py3-none-any.whl",
            base + "uv-0.1.0%2Blocal-py3-none-any.whl",
            "123",
            False,
        ),
        ("uv-0.0.9.tar.gz", "https://mirror.example/f/uv-0.0.9.tar.gz", "987", False),
    ]
    [(path, headers)] = index.requests
    assert path == "/simple/uv/"
    assert headers["accept"].startswith("application/vnd.pypi.simple.v1+json")


def test_index_files_pep691_json(index: Index) -> None:
    doc = {
        "meta": {"api-version": "1.1"},
        "name": "uv",
        "files": [
            {
                "filename": "uv-0.5.0-py3-none-any.whl",
                "url": "../../files/uv-0.5.0-py3-none-any.whl",
                "hashes": {"sha256": "abc", "md5": "0f"},
            },
            {
                "filename": "uv-0.4.0-py3-none-any.whl",
                "url": "https://files.example/uv-0.4.0-py3-none-any.whl",
                "hashes": {"sha256": "def"},
                "yanked": "broken build",
            },
            {
                "filename": "uv-0.3.0-py3-none-any.whl",
                "url": "uv-0.3.0-py3-none-any.whl",
                "hashes": {},
                "yanked": True,
            },
            {
                "filename": "uv-0.2.0-py3-none-any.whl",
                "url": "/files/uv-0.2.0-py3-none-any.whl",
                "hashes": {"md5": "0f"},
                "yanked": False,
            },
        ],
    }
    index.routes["/simple/uv/"] = Page(
        json.dumps(doc).encode(), content_type="application/vnd.pypi.simple.v1+json"
    )
    assert files_of(index, "/simple/uv/") == [
        ("uv-0.5.0-py3-none-any.whl", index.url + "/files/uv-0.5.0-py3-none-any.whl", "abc", False),
        (
            "uv-0.4.0-py3-none-any.whl",
            "https://files.example/uv-0.4.0-py3-none-any.whl",
            "def",
            True,
        ),
        (
            "uv-0.3.0-py3-none-any.whl",
            index.url + "/simple/uv/uv-0.3.0-py3-none-any.whl",
            None,
            True,
        ),
        ("uv-0.2.0-py3-none-any.whl", index.url + "/files/uv-0.2.0-py3-none-any.whl", None, False),
    ]


def test_index_files_resolves_links_against_the_redirected_url(index: Index) -> None:
    index.routes["/simple/uv"] = Page(b"", status=301, location="/simple/uv/")
    index.html("/simple/uv/", '<a href="uv-0.5.0-py3-none-any.whl">x</a>')
    assert files_of(index, "/simple/uv") == [
        (
            "uv-0.5.0-py3-none-any.whl",
            index.url + "/simple/uv/uv-0.5.0-py3-none-any.whl",
            None,
            False,
        )
    ]
    assert index.paths() == ["/simple/uv", "/simple/uv/"]


def test_links_parser_unescapes_and_flags_yanked() -> None:
    text = (
        '<a href="a.whl?x=1&amp;y=2">a</a><a>no href</a><a href="">empty</a>'
        '<a href="b.whl" data-yanked="reason &lt;1&gt;">b</a>'
    )
    assert rt_fetch._Links(text).links == [("a.whl?x=1&y=2", False), ("b.whl", True)]


# ----------------------------------------------------------------------------- pip config


@dataclass
class PipConf:
    """pip's config files, all under tmp_path: /etc/... reads are redirected there."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    wanted: list[str] = field(default_factory=list)  # the paths the code asked for

    def path(self, where: str) -> Path:
        return {
            "etc": self.tmp / "root/etc/pip.conf",
            "etc-xdg": self.tmp / "root/etc/xdg/pip/pip.conf",
            "xdg": self.tmp / "xdg/pip/pip.conf",
            "home-config": self.tmp / "home/.config/pip/pip.conf",
            "legacy": self.tmp / "home/.pip/pip.conf",
            "env": self.tmp / "env/pip.conf",
            "site": self.tmp / "prefix/pip.conf",
        }[where]

    def write(self, where: str, text: str) -> Path:
        path = self.path(where)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if where == "env":
            self.monkeypatch.setenv("PIP_CONFIG_FILE", str(path))
        return path


def conf(url: str, section: str = "global", key: str = "index-url") -> str:
    return f"[{section}]\n{key} = {url}\n"


@pytest.fixture
def pipconf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PipConf:
    pc = PipConf(tmp_path, monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PIP_CONFIG_FILE", raising=False)
    monkeypatch.delenv("XDG_CONFIG_DIRS", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    real_read = configparser.RawConfigParser.read

    def read(self: configparser.RawConfigParser, filenames: Any, encoding: Any = None) -> Any:
        pc.wanted.append(str(filenames))
        if isinstance(filenames, str) and filenames.startswith("/etc/"):
            filenames = str(tmp_path / "root") + filenames
        assert str(filenames).startswith(str(tmp_path)) or filenames == os.devnull, filenames
        return real_read(self, filenames, encoding)

    monkeypatch.setattr(configparser.RawConfigParser, "read", read)
    return pc


def test_pip_config_index_none(pipconf: PipConf) -> None:
    assert rt_fetch.pip_config_index() is None
    # hermetic: the machine's /etc files were asked for, and redirected
    assert "/etc/pip.conf" in pipconf.wanted
    assert "/etc/xdg/pip/pip.conf" in pipconf.wanted


@pytest.mark.parametrize(
    "where", ["etc", "etc-xdg", "xdg", "legacy", "env"], ids=lambda w: f"only-{w}"
)
def test_pip_config_index_each_file(pipconf: PipConf, where: str) -> None:
    pipconf.write(where, conf("  https://idx.example/simple/  "))
    assert rt_fetch.pip_config_index() == "https://idx.example/simple/"


def test_pip_config_index_default_user_dir(
    pipconf: PipConf, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    pipconf.write("home-config", conf("https://home.example/simple/"))
    assert rt_fetch.pip_config_index() == "https://home.example/simple/"


def test_pip_config_index_sections_and_keys(pipconf: PipConf) -> None:
    path = pipconf.write("env", conf("https://g.example/") + conf("https://d.example/", "download"))
    assert rt_fetch.pip_config_index() == "https://d.example/"
    path.write_text(conf("https://g.example/", key="index_url"))
    assert rt_fetch.pip_config_index() == "https://g.example/"
    path.write_text(conf("https://other.example/", "install") + "[global]\ntimeout = 5\n")
    assert rt_fetch.pip_config_index() is None
    # RawConfigParser: no %-interpolation in percent-encoded credentials
    path.write_text(conf("https://u:p%40ss@idx.example/simple/"))
    assert rt_fetch.pip_config_index() == "https://u:p%40ss@idx.example/simple/"


def test_pip_config_index_later_file_wins(pipconf: PipConf) -> None:
    pipconf.write("etc", conf("https://etc.example/"))
    pipconf.write("xdg", conf("https://xdg.example/"))
    assert rt_fetch.pip_config_index() == "https://xdg.example/"
    pipconf.write("env", conf("https://env.example/"))
    assert rt_fetch.pip_config_index() == "https://env.example/"


def test_pip_config_index_skips_broken_files(pipconf: PipConf) -> None:
    pipconf.write("etc", conf("https://etc.example/"))
    pipconf.write("xdg", "this is not an ini file\n[global\n")
    assert rt_fetch.pip_config_index() == "https://etc.example/"


def test_pip_config_index_devnull_is_not_read(pipconf: PipConf) -> None:
    pipconf.monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    assert rt_fetch.pip_config_index() is None
    assert os.devnull not in pipconf.wanted


# What pip itself (23.2, pip/_internal/configuration.py, cli/parser.py) would use.
PIP_ORDER_CASES = [
    pytest.param(
        {"etc-xdg": conf("https://a.example/"), "etc": conf("https://b.example/")},
        "https://b.example/",
        id="global-files:/etc/pip.conf-read-after-/etc/xdg",
    ),
    pytest.param(
        {"legacy": conf("https://a.example/"), "xdg": conf("https://b.example/")},
        "https://b.example/",
        id="user-files:xdg-overrides-legacy-~/.pip",
    ),
    pytest.param(
        {"etc": conf("https://a.example/", "download"), "xdg": conf("https://b.example/")},
        "https://a.example/",
        id="[download]-in-any-file-beats-[global]",
    ),
    pytest.param(
        {"xdg": conf("https://a.example/"), "env": "[global]\ntimeout = 5\n"},
        None,
        id="existing-PIP_CONFIG_FILE-disables-user-files",
    ),
    pytest.param(
        {"etc": conf("https://a.example/"), "devnull": ""},
        None,
        id="PIP_CONFIG_FILE=devnull-disables-all-files",
    ),
    pytest.param(
        {"site": conf("https://a.example/")},
        "https://a.example/",
        id="site-file-sys.prefix/pip.conf",
    ),
]


@pytest.mark.parametrize(("files", "expected"), PIP_ORDER_CASES)
def test_pip_config_index_follows_pip(
    pipconf: PipConf, files: dict[str, str], expected: str | None
) -> None:
    for where, text in files.items():
        if where == "devnull":
            pipconf.monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
        else:
            pipconf.write(where, text)
    assert rt_fetch.pip_config_index() == expected


# ----------------------------------------------------------------------------- pip_module_path


def test_pip_module_path_own_pip() -> None:
    assert uv_bootstrap.pip_module_path() == ""  # the dev venv imports pip


def test_pip_module_path_bundled_wheels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pip", None)  # `import pip` raises ImportError
    found = {
        "/usr/share/python-wheels/pip-*.whl": [
            "/usr/share/python-wheels/pip-24.0-py3-none-any.whl",
            "/usr/share/python-wheels/pip-23.0-py3-none-any.whl",
        ],
    }
    monkeypatch.setattr(glob, "glob", lambda pattern: found.get(pattern, []))
    assert uv_bootstrap.pip_module_path() == "/usr/share/python-wheels/pip-24.0-py3-none-any.whl"
    import ensurepip

    bundled = os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")
    found[bundled] = [bundled.replace("*", "23.2.1-py3-none-any")]
    assert uv_bootstrap.pip_module_path() == found[bundled][0]  # venv support's own wheel
    found.clear()
    assert uv_bootstrap.pip_module_path() is None
    monkeypatch.setitem(sys.modules, "ensurepip", None)
    assert uv_bootstrap.pip_module_path() is None


# ----------------------------------------------------------------------------- fetch_uv_direct


@pytest.fixture
def page_urls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, str]]]:
    """fetch_uv_direct's index reads, recorded (no network): the index has no uv."""
    seen: list[tuple[str, dict[str, str]]] = []

    def fake(opener: Any, page_url: str, headers: dict[str, str]) -> list[Any]:
        seen.append((page_url, dict(headers)))
        return []

    monkeypatch.setattr(rt_fetch, "index_files", fake)
    return seen


@pytest.mark.parametrize(
    ("env", "config", "page"),
    [
        ({}, None, "https://pypi.org/simple/uv/"),
        ({}, "https://cfg.example/simple", "https://cfg.example/simple/uv/"),
        (
            {"PIP_INDEX_URL": "https://env.example/pypi/simple/"},
            "https://cfg.example/simple",
            "https://env.example/pypi/simple/uv/",
        ),
    ],
    ids=["pypi-default", "pip-config", "PIP_INDEX_URL-wins"],
)
def test_fetch_uv_direct_index_choice(
    monkeypatch: pytest.MonkeyPatch,
    page_urls: list[tuple[str, dict[str, str]]],
    tmp_path: Path,
    env: dict[str, str],
    config: str | None,
    page: str,
) -> None:
    monkeypatch.setattr(rt_fetch, "pip_config_index", lambda: config)
    assert uv_bootstrap.fetch_uv_direct(env, str(tmp_path)) is None
    assert page_urls == [(page, {})]


def test_fetch_uv_direct_moves_credentials_to_a_header(
    page_urls: list[tuple[str, dict[str, str]]], tmp_path: Path
) -> None:
    env = {"PIP_INDEX_URL": "https://us%40er:p%3Ass@Idx.Example:8443/simple/"}
    assert uv_bootstrap.fetch_uv_direct(env, str(tmp_path)) is None
    assert page_urls == [
        ("https://idx.example:8443/simple/uv/", {"Authorization": basic("us@er", "p:ss")})
    ]


def test_fetch_uv_direct_credentials_ipv6_host(
    page_urls: list[tuple[str, dict[str, str]]], tmp_path: Path
) -> None:
    env = {"PIP_INDEX_URL": "http://user:pw@[::1]:8080/simple/"}
    uv_bootstrap.fetch_uv_direct(env, str(tmp_path))
    assert page_urls == [("http://[::1]:8080/simple/uv/", {"Authorization": basic("user", "pw")})]


def test_fetch_uv_direct_without_pip(
    monkeypatch: pytest.MonkeyPatch, page_urls: list[tuple[str, dict[str, str]]], tmp_path: Path
) -> None:
    monkeypatch.setattr(uv_bootstrap, "pip_module_path", lambda: None)
    assert uv_bootstrap.fetch_uv_direct({"PIP_INDEX_URL": "http://x/"}, str(tmp_path)) is None
    assert page_urls == []


def test_fetch_uv_direct_unreadable_index(
    index: Index, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"PIP_INDEX_URL": index.url + "/simple/"}  # nothing served: 404
    assert uv_bootstrap.fetch_uv_direct(env, str(tmp_path)) is None
    assert index.paths() == ["/simple/uv/"]
    assert "could not read the index for uv" in capsys.readouterr().out


# ----------------------------------------------------------------------------- fetch


def test_fetch_verifies_sha256(index: Index, tmp_path: Path) -> None:
    data = uv_wheel()
    index.routes["/files/" + UV_WHEEL] = Page(data, content_type="application/octet-stream")
    opener = rt_fetch._opener({})
    url = index.url + "/files/" + UV_WHEEL
    good = hashlib.sha256(data).hexdigest()

    assert rt_fetch.fetch(opener, url, "0" * 64, str(tmp_path), quiet=True) is None
    assert os.listdir(tmp_path) == []  # no .part left behind
    path = rt_fetch.fetch(opener, url + "#sha256=" + good, good, str(tmp_path), quiet=True)
    assert path == str(tmp_path / UV_WHEEL)
    assert (tmp_path / UV_WHEEL).read_bytes() == data
    assert rt_fetch.fetch(opener, index.url + "/missing.whl", None, str(tmp_path)) is None
    assert os.listdir(tmp_path) == [UV_WHEEL]


# ----------------------------------------------------------------------------- ensure_uv


def no_pip() -> list[str]:
    pytest.fail("get_pip must not be called")


@dataclass
class FakePip:
    """get_pip() for ensure_uv's fallback: a command that fails, or that 'downloads' a
    wheel by copying it into the -d directory."""

    wheel: Path | None = None
    calls: int = 0

    def __call__(self) -> list[str]:
        self.calls += 1
        if self.wheel is None:
            return [sys.executable, "-c", "raise SystemExit(1)"]
        code = (
            "import shutil, sys; a = sys.argv; "
            "assert a[1] == 'download' and a[-1] == 'uv<1', a; "
            f"shutil.copy({str(self.wheel)!r}, a[a.index('-d') + 1])"
        )
        return [sys.executable, "-c", code]


def serve_uv(index: Index, sha: str | None = None, href_prefix: str = "../../files/") -> None:
    data = uv_wheel()
    sha = sha or hashlib.sha256(data).hexdigest()
    index.routes["/files/" + UV_WHEEL] = Page(data, content_type="application/octet-stream")
    index.html(
        "/simple/uv/",
        f'<a href="{href_prefix}{UV_WHEEL}#sha256={sha}">{UV_WHEEL}</a>',
        # newer, but not for this interpreter / yanked / too new / not a wheel
        '<a href="../../files/uv-0.6.0-cp27-cp27m-win32.whl">x</a>',
        '<a href="../../files/uv-0.7.0-py3-none-any.whl" data-yanked="">x</a>',
        '<a href="../../files/uv-1.0.0-py3-none-any.whl">x</a>',
        '<a href="../../files/uv-0.8.0.tar.gz">x</a>',
    )


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "tools").iterdir() if p.name.startswith("."))


def check_uv(path: str | None, root: Path) -> None:
    assert path == str(root / "tools" / "uv-0.5.0" / "uv")
    assert os.access(path, os.X_OK)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "uv 0.5.0"


def test_ensure_uv_fetches_straight_from_the_index(index: Index, tmp_path: Path) -> None:
    serve_uv(index)
    env = {"PIP_INDEX_URL": index.url + "/simple/"}
    uv = uv_bootstrap.ensure_uv(str(tmp_path), no_pip, env, may_download=True)
    check_uv(uv, tmp_path)
    assert index.paths() == ["/simple/uv/", "/files/" + UV_WHEEL]
    assert leftovers(tmp_path) == []
    assert all("authorization" not in h for _, h in index.requests)

    # already in the volume: no network, no pip
    again = uv_bootstrap.ensure_uv(str(tmp_path), no_pip, env, may_download=True)
    assert again == uv
    assert len(index.requests) == 2


def test_ensure_uv_sha_mismatch_falls_back_to_pip(index: Index, tmp_path: Path) -> None:
    serve_uv(index, sha="0" * 64)
    env = {"PIP_INDEX_URL": index.url + "/simple/"}
    with_pip = FakePip()
    assert uv_bootstrap.fetch_uv_direct(env, str(tmp_path)) is None
    assert os.listdir(tmp_path) == []
    assert uv_bootstrap.ensure_uv(str(tmp_path), with_pip, env, may_download=True) is None
    assert with_pip.calls == 1
    assert sorted(os.listdir(tmp_path / "tools")) == []  # no .download-*, no uv-*


def test_ensure_uv_pip_fallback_succeeds(index: Index, tmp_path: Path) -> None:
    wheel = tmp_path / "from-pip" / UV_WHEEL
    wheel.parent.mkdir()
    wheel.write_bytes(uv_wheel())
    root = tmp_path / "key"
    env = {"PIP_INDEX_URL": index.url + "/simple/"}  # the index has no uv page: 404
    with_pip = FakePip(wheel)
    uv = uv_bootstrap.ensure_uv(str(root), with_pip, env, may_download=True)
    check_uv(uv, root)
    assert with_pip.calls == 1
    assert leftovers(root) == []


def test_ensure_uv_wheel_without_the_script(index: Index, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("uv-0.5.0.dist-info/METADATA", "Name: uv\nVersion: 0.5.0\n")
    data = buf.getvalue()
    index.routes["/files/" + UV_WHEEL] = Page(data)
    sha = hashlib.sha256(data).hexdigest()
    index.html("/simple/uv/", f'<a href="../../files/{UV_WHEEL}#sha256={sha}">x</a>')
    env = {"PIP_INDEX_URL": index.url + "/simple/"}
    assert uv_bootstrap.ensure_uv(str(tmp_path), no_pip, env, may_download=True) is None
    assert os.listdir(tmp_path / "tools") == []


def test_ensure_uv_basic_auth_same_host_only(index: Index, tmp_path: Path) -> None:
    serve_uv(index)
    env = {"PIP_INDEX_URL": f"http://user:p%40ss@127.0.0.1:{index.port}/simple/"}
    check_uv(uv_bootstrap.ensure_uv(str(tmp_path), no_pip, env, may_download=True), tmp_path)
    assert index.paths() == ["/simple/uv/", "/files/" + UV_WHEEL]
    for _, headers in index.requests:
        assert headers.get("authorization") == basic("user", "p@ss")


def test_ensure_uv_basic_auth_not_sent_to_another_host(index: Index, tmp_path: Path) -> None:
    # same server, but "localhost" is another netloc than "127.0.0.1"
    serve_uv(index, href_prefix=f"http://localhost:{index.port}/files/")
    env = {"PIP_INDEX_URL": f"http://user:pw@127.0.0.1:{index.port}/simple/"}
    check_uv(uv_bootstrap.ensure_uv(str(tmp_path), no_pip, env, may_download=True), tmp_path)
    (_, page), (_, file) = index.requests
    assert page.get("authorization") == basic("user", "pw")
    assert "authorization" not in file


def test_ensure_uv_no_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_network(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("no network expected")

    monkeypatch.setattr(uv_bootstrap, "fetch_uv_direct", no_network)
    monkeypatch.setattr(rt_fetch, "_opener", no_network)
    env = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple/"}
    assert uv_bootstrap.ensure_uv(str(tmp_path), no_pip, env, may_download=False) is None
    assert not (tmp_path / "tools").exists()


def test_ensure_uv_no_download_uses_a_published_uv(tmp_path: Path) -> None:
    script = tmp_path / "tools" / "uv-0.5.0" / "uv"
    script.parent.mkdir(parents=True)
    script.write_text('#!/bin/sh\necho "uv 0.5.0"\n')
    script.chmod(0o755)
    check_uv(uv_bootstrap.ensure_uv(str(tmp_path), no_pip, {}, may_download=False), tmp_path)


# ----------------------------------------------------------------------------- locked plans

PURE = "demo-1.0-py3-none-any.whl"
NATIVE = "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
RANKS = {
    "cp311-cp311-linux_x86_64": 0,
    "cp311-cp311-manylinux_2_17_x86_64": 5,
    "cp311-cp311-manylinux2014_x86_64": 6,
    "py3-none-any": 50,
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_wheel_rank_and_order() -> None:
    assert rt_locked.wheel_rank(NATIVE, RANKS) == 5  # the best of its compressed tags
    assert rt_locked.wheel_rank(PURE, RANKS) == 50
    assert rt_locked.wheel_rank("demo-1.0-cp311-cp311-win_amd64.whl", RANKS) is None
    assert rt_locked.wheel_rank("demo-1.0.tar.gz", RANKS) is None
    wheels = [{"file": PURE}, {"file": "demo-1.0-cp311-cp311-win_amd64.whl"}, {"file": NATIVE}]
    assert [w["file"] for w in rt_locked.order_wheels(wheels, RANKS)] == [NATIVE, PURE]
    assert rt_locked.order_wheels(wheels, None) == wheels  # the host's order


def test_with_build_tag() -> None:
    key = "0123456789abcdef"
    assert rt_project.with_build_tag("app-1.0-py3-none-any.whl", key) == (
        "app-1.0-00123456789ab-py3-none-any.whl"
    )
    assert rt_project.with_build_tag("app-1.0-0.editable-py3-none-any.whl", key) == (
        "app-1.0-00123456789ab-py3-none-any.whl"
    )
    assert common.wheel_name_version("app-1.0-00123456789ab-py3-none-any.whl") == (
        "app",
        "1.0",
    )


@pytest.fixture
def volume(tmp_path: Path) -> Any:
    """A builder run's context on a scratch volume."""
    root = tmp_path / "key"
    (root / "wheels").mkdir(parents=True)
    staging = root / "staging-x"
    staging.mkdir()
    plan = {
        "python": sys.executable,
        "locked": [],
        "requirements_hash": "h",
        "key": "k",
        "platform_key": {},
    }
    return common.RunState(plan, str(root), str(staging))


def publish_old(ctx: Any, fn: str, data: bytes, **manifest: Any) -> None:
    Path(ctx.wheels, fn).write_bytes(data)
    content = {"wheels": {fn: sha(data)}, **manifest}
    Path(ctx.manifest_path).write_text(json.dumps(content))


def pin(**kw: Any) -> dict[str, Any]:
    base = {"name": "demo", "version": "1.0", "wheels": [], "sdist": None, "hashes": []}
    base.update(index=None, where="uv.lock line 7", **kw)
    return base


def test_decide(volume: Any) -> None:
    data = b"published wheel"
    publish_old(volume, PURE, data, built_from={NATIVE: "s" * 64})
    manifest = json.loads(Path(volume.manifest_path).read_text())

    def decide(p: dict[str, Any]) -> tuple[str, Any]:
        result: tuple[str, Any] = rt_locked.decide(p, volume, manifest, RANKS)
        return result

    allowed = pin(wheels=[{"file": PURE, "sha256": sha(data), "url": "u"}])
    assert decide(allowed) == ("have", PURE)
    other = pin(wheels=[{"file": PURE, "sha256": "0" * 64, "url": "u"}])
    assert decide(other) == ("wheel", other["wheels"][0])
    assert volume.replace == {PURE}  # if the lock's file comes, it takes the name
    for_others = pin(wheels=[{"file": "demo-1.0-cp311-cp311-win_amd64.whl", "sha256": "1"}])
    assert decide(for_others) == ("none", None)
    sdist = {"file": "demo-1.0.tar.gz", "sha256": "s" * 64, "url": "u"}
    assert decide(pin(sdist=sdist)) == ("sdist", sdist)  # the published wheel is not from it
    Path(volume.wheels, NATIVE).write_bytes(b"built")
    manifest["wheels"][NATIVE] = sha(b"built")
    assert decide(pin(sdist=sdist)) == ("have", NATIVE)  # built from the locked sdist
    assert decide(pin(hashes=[sha(data)])) == ("have", PURE)  # Pipfile.lock, --hash
    assert decide(pin(hashes=["9" * 64])) == ("lookup", None)


def serve_demo(index: Index, files: dict[str, bytes], page_sha: bool = True) -> None:
    anchors = []
    for fn, data in files.items():
        index.routes["/files/" + fn] = Page(data, content_type="application/octet-stream")
        frag = f"#sha256={sha(data)}" if page_sha else ""
        anchors.append(f'<a href="../../files/{fn}{frag}">{fn}</a>')
    index.html("/simple/demo/", *anchors)


def fetch_pin(index: Index, tmp_path: Path, p: dict[str, Any], kind: str, entry: Any) -> Any:
    env = {"PIP_INDEX_URL": index.url + "/simple/"}
    opener = rt_fetch._opener(env)
    plan = {"indexes": []}
    tmp_path.mkdir(parents=True, exist_ok=True)
    return rt_locked.fetch_pin(plan, env, opener, p, kind, entry, str(tmp_path), RANKS)


def test_fetch_pin_checks_the_lock_hash(index: Index, tmp_path: Path) -> None:
    serve_demo(index, {PURE: b"the real wheel"})
    url = index.url + "/files/" + PURE
    good = pin(wheels=[{"file": PURE, "sha256": sha(b"the real wheel"), "url": url}])
    kind, path, got = fetch_pin(index, tmp_path, good, "wheel", good["wheels"][0])
    assert (kind, Path(path).read_bytes(), got) == (
        "wheel",
        b"the real wheel",
        sha(b"the real wheel"),
    )
    forged = pin(wheels=[{"file": PURE, "sha256": "0" * 64, "url": url}])
    with pytest.raises(rt_locked.LockFailure) as failed:
        fetch_pin(index, tmp_path / "x", forged, "wheel", forged["wheels"][0])
    f = failed.value
    assert (f.stage, f.package) == ("hash", "demo")
    assert f.more == {
        "expected": ["0" * 64],
        "got": sha(b"the real wheel"),
        "file": PURE,
        "where": "uv.lock line 7",
    }
    assert not (tmp_path / "x" / PURE).exists()  # never kept


def test_fetch_pin_finds_files_the_lock_names_without_urls(index: Index, tmp_path: Path) -> None:
    """poetry.lock names files, Pipfile.lock and --hash only hashes: the index has them."""
    serve_demo(
        index, {PURE: b"pure", "demo-1.0.tar.gz": b"sdist", "demo-2.0-py3-none-any.whl": b"2"}
    )
    poetry = pin(wheels=[{"file": PURE, "sha256": sha(b"pure"), "url": None}])
    kind, path, _ = fetch_pin(index, tmp_path, poetry, "wheel", poetry["wheels"][0])
    assert kind == "wheel" and Path(path).name == PURE
    pipenv = pin(hashes=[sha(b"sdist")])  # only the sdist is allowed
    kind, path, _ = fetch_pin(index, tmp_path / "p", pipenv, "lookup", None)
    assert kind == "sdist" and Path(path).read_bytes() == b"sdist"
    missing = pin(hashes=["7" * 64])
    with pytest.raises(rt_locked.LockFailure) as failed:
        fetch_pin(index, tmp_path / "m", missing, "lookup", None)
    assert failed.value.stage == "missing" and "no file the lock allows" in failed.value.detail[0]


def test_fetch_pin_a_hash_only_lock_checks_what_the_page_does_not_hash(
    index: Index, tmp_path: Path
) -> None:
    serve_demo(index, {PURE: b"not what was locked"}, page_sha=False)
    with pytest.raises(rt_locked.LockFailure) as failed:
        fetch_pin(index, tmp_path, pin(hashes=["7" * 64]), "lookup", None)
    assert failed.value.stage == "hash" and failed.value.more["got"] == sha(b"not what was locked")


def test_fetch_pin_an_unreachable_lock_url_is_found_on_the_index(
    index: Index, tmp_path: Path
) -> None:
    serve_demo(index, {PURE: b"mirrored"})
    gone = pin(
        wheels=[{"file": PURE, "sha256": sha(b"mirrored"), "url": index.url + "/gone/" + PURE}]
    )
    _kind, path, _ = fetch_pin(index, tmp_path, gone, "wheel", gone["wheels"][0])
    assert Path(path).read_bytes() == b"mirrored"


def test_build_locked_uses_the_volume_and_downloads_the_rest(
    index: Index, volume: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    publish_old(volume, PURE, b"pure")
    other = "other-2.0-py3-none-any.whl"
    index.routes["/files/" + other] = Page(b"other", content_type="application/octet-stream")
    volume.plan["locked"] = [
        pin(wheels=[{"file": PURE, "sha256": sha(b"pure"), "url": index.url + "/nowhere"}]),
        pin(
            name="other",
            version="2.0",
            wheels=[{"file": other, "sha256": sha(b"other"), "url": index.url + "/files/" + other}],
        ),
    ]
    env = {"PIP_INDEX_URL": index.url + "/simple/"}
    code, files = rt_locked.build_locked(volume, None, no_pip, env)
    assert code == 0 and sorted(files) == sorted([PURE, other])
    assert index.paths() == ["/files/" + other]  # the published wheel was not fetched again
    assert volume.new == [other] and Path(volume.wheels, other).read_bytes() == b"other"
    out = capsys.readouterr().out
    ready = json.loads(out.split("WHEELS-READY ", 1)[1].splitlines()[0])
    assert sorted(w["file"] for w in ready["resolved"]) == sorted([PURE, other])
    manifest = publish.record(volume, files, None)
    assert manifest["sets"]["h"]["resolved"][0]["sha256"] in (sha(b"pure"), sha(b"other"))


def test_build_locked_replaces_a_published_file_the_lock_does_not_allow(
    index: Index, volume: Any
) -> None:
    """Same name, other bytes (another index's build): the lock's file takes its place,
    and the sets that listed the old file are forgotten."""
    old_set = {"resolved": [{"file": PURE, "sha256": sha(b"old")}], "built_at": "x"}
    publish_old(volume, PURE, b"old", sets={"old": old_set})
    index.routes["/files/" + PURE] = Page(b"locked", content_type="application/octet-stream")
    url = index.url + "/files/" + PURE
    volume.plan["locked"] = [pin(wheels=[{"file": PURE, "sha256": sha(b"locked"), "url": url}])]
    code, files = rt_locked.build_locked(volume, None, no_pip, {"PIP_INDEX_URL": index.url})
    assert code == 0 and files == [PURE]
    assert Path(volume.wheels, PURE).read_bytes() == b"old"  # until recorded, under the lock
    manifest = publish.record(volume, files, None)
    assert Path(volume.wheels, PURE).read_bytes() == b"locked"
    assert manifest["wheels"][PURE] == sha(b"locked") and set(manifest["sets"]) == {"h"}


def test_build_locked_reports_a_hash_mismatch(
    index: Index, volume: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    index.routes["/files/" + PURE] = Page(b"served", content_type="application/octet-stream")
    url = index.url + "/files/" + PURE
    volume.plan["locked"] = [pin(wheels=[{"file": PURE, "sha256": "0" * 64, "url": url}])]
    code, files = rt_locked.build_locked(volume, None, no_pip, {"PIP_INDEX_URL": index.url})
    assert code == 5 and files is None
    line = next(
        x for x in capsys.readouterr().out.splitlines() if x.startswith(protocol.FAILURE_PREFIX)
    )
    failure = json.loads(line[len(protocol.FAILURE_PREFIX) :])
    assert failure["stage"] == "hash" and failure["package"] == "demo"
    assert failure["expected"] == ["0" * 64] and failure["got"] == sha(b"served")
    assert os.listdir(volume.wheels) == []


def test_build_locked_with_no_index_only_takes_the_volume(
    volume: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    volume.plan["no_index"] = True
    volume.plan["locked"] = [pin(wheels=[{"file": PURE, "sha256": "0" * 64, "url": "u"}])]
    code, _ = rt_locked.build_locked(volume, None, no_pip, {})
    assert code == 5 and "--no-index forbids fetching it" in capsys.readouterr().out


def test_decide_uses_a_wheel_a_failed_run_published_when_it_is_the_locked_one(
    volume: Any,
) -> None:
    """A failed run keeps what it fetched; the manifest does not list it yet."""
    Path(volume.wheels, PURE).write_bytes(b"kept")
    good = pin(wheels=[{"file": PURE, "sha256": sha(b"kept"), "url": "u"}])
    assert rt_locked.decide(good, volume, {}, RANKS) == ("have", PURE)
    bad = pin(wheels=[{"file": PURE, "sha256": "0" * 64, "url": "u"}])
    assert rt_locked.decide(bad, volume, {}, RANKS)[0] == "wheel"
    assert volume.replace == {PURE}


def test_build_sources_builds_the_project_and_its_members(
    volume: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The project, then each workspace member, built by the project module (a loop
    variable once hid that module here)."""
    built: list[str] = []

    def build_project(ctx: Any, uv: Any, pip: Any, env: Any, one: dict[str, Any]) -> Any:
        built.append(one["name"])
        return 0, one["name"] + "-1.0-py3-none-any.whl"

    monkeypatch.setattr(rt_project, "build_project", build_project)
    volume.plan.update(project={"name": "app"}, members=[{"name": "lib"}])
    code, files = rt_locked.build_sources(volume, None, None, {}, [])
    assert (code, built) == (0, ["app", "lib"])
    assert files == ["app-1.0-py3-none-any.whl", "lib-1.0-py3-none-any.whl"]


def test_an_opener_is_made_once_per_settings_and_not_for_nothing_to_download(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loading the CA bundle costs 20 ms: once per run for the same settings (the early
    lookups, uv's fetch and the downloads share it, and a later call sets no variable
    while a thread reads the environment); none at all when every wheel was taken from
    the early downloads."""
    monkeypatch.setattr(rt_fetch, "_OPENERS", {})
    # recorded as unset before _opener sets it: the teardown removes it again (a delenv
    # after the call would put the fake proxy back for every later test)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    env = {"HTTPS_PROXY": "http://proxy.invalid:3128"}
    first = rt_fetch._opener(env)
    del os.environ["HTTPS_PROXY"]
    assert rt_fetch._opener(dict(env)) is first
    assert "HTTPS_PROXY" not in os.environ  # the second call set nothing
    assert rt_fetch._opener({}) is not first

    def no_opener(env: Any) -> Any:
        raise AssertionError("an opener for nothing to download")

    monkeypatch.setattr(rt_fetch, "_opener", no_opener)
    assert rt_fetch.download_wheels([], "/nonexistent", env) == []
