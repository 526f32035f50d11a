"""`nox -s run -- --watch --port P` on a real engine and the real local index: every
saved edit is served from a new image, a client polling every 50 ms through it all sees
no failed request after the first answer, an edit that breaks the import keeps the old
one serving and the fix is then served, an added requirement is importable in the served
app, and SIGINT leaves no container of the app. No timing is asserted."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from conftest import App, write_django
from pkgindex import Index
from test_run_engine import free_port

from nox_warpdrive.engine import Engine

APP = """\
import os

import wd_pure_demo
{extra_import}

MESSAGE = "{message}"


def application(environ, start_response):
    body = "%s %s %s" % (MESSAGE, wd_pure_demo.hello(), {extra_call})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"""


def write_app(app: App, message: str, extra: bool = False) -> None:
    text = APP.format(
        message=message,
        extra_import="import wd_extra_demo" if extra else "",
        extra_call="wd_extra_demo.hello()" if extra else '"no-extra"',
    )
    (app.root / "wsgi.py").write_text(text)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> str | None:
    try:
        with _OPENER.open(url, timeout=10) as resp:
            return bytes(resp.read()).decode()
    except (OSError, urllib.error.URLError):
        return None


class Poller:
    """GET every 50 ms from the first answer on; counts what failed (no answer, or not
    a 200)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with _OPENER.open(self.url, timeout=10) as resp:
                    resp.read()
                    self.ok += 1
            except Exception as exc:  # any failure counts
                self.failed.append(f"{time.strftime('%X')} {exc!r}")
            self._stop.wait(0.05)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=20)


def wait_for(what: Callable[[], bool], timeout: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.1)
    raise AssertionError(why())


@contextlib.contextmanager
def watching(app: App, port: int) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`nox -s run -- --watch --port PORT` in the app, its output collected line by line;
    SIGINT at the end (then killed if it does not end)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nox",
            "--no-color",
            "-s",
            "run",
            "--",
            "--watch",
            "--port",
            str(port),
        ],
        cwd=app.root,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))  # type: ignore[union-attr]
    reader.daemon = True
    reader.start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=10)


def app_containers(engine: Engine, app: App) -> list[str]:
    return [c.name for c in engine.client.containers.list(all=True) if c.name.startswith(app.name)]


def test_watch_serves_each_save_keeps_the_old_on_a_break_and_cleans_up(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["wd-pure-demo"])
    write_app(app, "v0")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    try:
        with watching(app, port) as (proc, lines):
            out = lambda: "".join(lines)  # noqa: E731
            wait_for(lambda: "watching" in out(), 600, lambda: "never watched:\n" + out())
            assert (get(url) or "").startswith("v0 "), out()
            with Poller(url) as poller:
                for n in (1, 2, 3):
                    write_app(app, f"v{n}")
                    wait_for(lambda n=n: (get(url) or "").startswith(f"v{n} "), 300, out)
                # an edit that breaks the import: the old one serves on, the error is said
                write_app(app, "broken")
                text = (app.root / "wsgi.py").read_text()
                (app.root / "wsgi.py").write_text("import no_such_module_here\n" + text)
                wait_for(lambda: "did not start" in out(), 300, out)
                assert "no_such_module_here" in out(), out()
                assert (get(url) or "").startswith("v3 "), out()
                write_app(app, "v4")  # the fix is served
                wait_for(lambda: (get(url) or "").startswith("v4 "), 300, out)
                # an added requirement: wheelhouse, deps layer, then the same switch
                (app.root / "requirements.txt").write_text("wd-pure-demo\nwd-extra-demo\n")
                write_app(app, "v5", extra=True)
                wait_for(lambda: "hello from wd-extra-demo" in (get(url) or ""), 300, out)
            assert poller.ok > 0
            assert not poller.failed, f"{poller.failed}\n{out()}"
            assert out().count("warpdrive: reload ") >= 5, out()
            assert "requirements" in out(), out()
            assert "Session run failed" not in out(), out()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=120) == 0, out()
        print(out())  # the reload lines, for `pytest -s`
        assert "every container removed" in out(), out()
        assert app_containers(engine, app) == [], out()
    finally:
        for name in app_containers(engine, app):
            with contextlib.suppress(Exception):
                engine.client.containers.get(name).remove(force=True)


OTHER_APP = """

def other(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"other-app"]
"""


def test_watch_serves_a_static_edit_applies_pyproject_and_sigterm_cleans_up(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    """A Django app: an edited static file is served new (only it re-collected); a
    pyproject.toml edit (`app-module`) is read again and the next image starts what it
    says; SIGTERM to the nox process removes every container it made."""
    app: App = make_app(["Django==5.2.19", "whitenoise==6.12.0"])
    os.unlink(app.root / "wsgi.py")
    write_django(app.root)
    with (app.root / "site1" / "wsgi.py").open("a") as fh:
        fh.write(OTHER_APP)
    port = free_port()
    url, css = f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/static/shop/site.css"
    try:
        with watching(app, port) as (proc, lines):
            out = lambda: "".join(lines)  # noqa: E731
            wait_for(lambda: "watching" in out(), 600, lambda: "never watched:\n" + out())
            assert (get(url) or "").startswith("shop-v1 "), out()
            assert get(css) == "body { color: red }\n", out()
            with Poller(url) as poller:
                (app.root / "shop" / "static" / "shop" / "site.css").write_text("p { x: 1 }\n")
                wait_for(lambda: get(css) == "p { x: 1 }\n", 300, out)
                assert "changed static files re-collected" in out(), out()
                pyproject = (app.root / "pyproject.toml").read_text()
                (app.root / "pyproject.toml").write_text(
                    pyproject.replace(
                        "[tool.warpdrive]\n", '[tool.warpdrive]\napp-module = "site1.wsgi:other"\n'
                    )
                )
                wait_for(lambda: get(url) == "other-app", 300, out)
            assert not poller.failed, f"{poller.failed}\n{out()}"
            assert app_containers(engine, app), out()  # the one serving
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        assert "every container removed" in out(), out()
        assert app_containers(engine, app) == [], out()
    finally:
        for name in app_containers(engine, app):
            with contextlib.suppress(Exception):
                engine.client.containers.get(name).remove(force=True)
