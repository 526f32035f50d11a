"""The launcher is the image's init: `docker stop` ends every start mode at once (apps
with no SIGTERM handler of their own too), and orphaned processes are reaped.

One image holds an app of each kind; each run picks one the way a user could (the
detection order: `start` config, APP_MODULE, app.sh, app.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import App, cleanup, make_app_for
from pkgindex import Index
from test_build import http_get, image, wheelhouse

from nox_warpdrive.engine import Engine

#: http.server with no signal handling at all: as PID 1 it would ignore SIGTERM. It
#: leaves an orphan (a double fork) that ends a moment later, for the init to reap.
APP_PY = """\
import os
import subprocess
from http.server import HTTPServer, SimpleHTTPRequestHandler

subprocess.run(["sh", "-c", "sleep 0.2 &"], check=True)
HTTPServer(("0.0.0.0", int(os.environ["PORT"])), SimpleHTTPRequestHandler).serve_forever()
"""

APP_SH = '#!/bin/sh\necho "app.sh starting"\nexec python3 -m http.server "$PORT"\n'

WSGI = """\
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"from gunicorn"]
"""

#: a shell command that is not one exec: the shell stays between the init and the app
START = "sleep 0.2 & echo starting; python3 -m http.server $PORT"

MODES: dict[str, dict[str, str]] = {
    "app.sh": {},
    "app.py": {"APP_SCRIPT": "no-such-script"},
    "start": {"WARPDRIVE_START_CONFIG": json.dumps({"start": START})},
    "gunicorn": {"APP_MODULE": "wsgi:application", "WEB_CONCURRENCY": "2"},
}


@pytest.fixture(scope="module")
def init_image(
    tmp_path_factory: pytest.TempPathFactory, engine: Engine, index: Index
) -> Iterator[str]:
    app: App = make_app_for(tmp_path_factory, ["gunicorn"])
    try:
        (app.root / "wsgi.py").write_text(WSGI)
        (app.root / "app.py").write_text(APP_PY)
        (app.root / "app.sh").write_text(APP_SH)
        (app.root / "app.sh").chmod(0o755)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PIP_INDEX_URL", index.url)
            wheelhouse(app, engine)
            image(app, engine, no_index=True)
        yield app.image
    finally:
        cleanup(engine, app)


def processes(container: Any) -> list[tuple[str, str, str]]:
    """(pid, name, state) of every process in the container, from /proc."""
    code, out = container.exec_run(["sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null"])
    assert code == 0, out
    found = []
    for line in out.decode(errors="replace").splitlines():
        head, _, tail = line.rpartition(")")
        pid, _, name = head.partition(" (")
        found.append((pid, name, tail.split()[0]))
    return found


@pytest.mark.parametrize("mode", list(MODES))
def test_docker_stop_is_quick_and_leaves_no_zombie(
    mode: str, init_image: str, engine: Engine
) -> None:
    container = engine.client.containers.run(
        init_image,
        detach=True,
        environment=MODES[mode],
        ports={"8080/tcp": ("127.0.0.1", None)},
    )
    try:
        container.reload()
        port = container.ports["8080/tcp"][0]["HostPort"]
        status, body = http_get(f"http://127.0.0.1:{port}/", timeout=60)
        logs = container.logs().decode(errors="replace")
        assert status == 200, (body, logs)
        if mode == "gunicorn":
            assert body == "from gunicorn", logs
        time.sleep(1.5)  # the orphans (sleep 0.2) have ended
        procs = processes(container)
        zombies = [p for p in procs if p[2] == "Z"]
        assert not zombies, (zombies, procs)
        _, status = container.exec_run(["grep", "VmRSS", "/proc/1/status"])
        started = time.monotonic()
        container.stop(timeout=10)
        took = time.monotonic() - started
        container.reload()
        code = container.attrs["State"]["ExitCode"]
        logs = container.logs().decode(errors="replace")
        assert code in (0, 143), (code, logs)
        assert took < 3, f"docker stop of {mode} took {took:.1f} s (exit {code}): {logs}"
        rss = status.decode().split()[1:2]
        print(f"\n{mode}: docker stop {took:.2f} s, exit {code}, PID 1 RSS {rss} kB")
    finally:
        container.remove(force=True)
