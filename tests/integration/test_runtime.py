"""The image starts any kind of app by itself: one small app per detection path and per
server, each built into an image whose container answers HTTP with the app's own
response, as uid 1001 and as an arbitrary uid, and stops gracefully."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import App, serve_image, write_django
from pkgindex import Index
from test_build import http_get, image, wheelhouse

from nox_warpdrive.engine import Engine

STDLIB_SERVER = """\
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s uid=%d" % (os.environ.get("WHO", "{who}"), os.getuid())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""

WSGI = """\
import os


def {name}(environ, start_response):
    body = ("{who} uid=%d" % os.getuid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""

ASGI = """\
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = ("{who} uid=%d" % os.getuid()).encode()
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": body}})
"""


def clear(root: Path) -> None:
    (root / "wsgi.py").unlink()


def app_sh(root: Path) -> str:
    clear(root)
    (root / "server.py").write_text(STDLIB_SERVER.format(who="from app.sh"))
    (root / "app.sh").write_text("#!/bin/sh\nexec python server.py\n")
    (root / "app.sh").chmod(0o755)
    return "from app.sh"


def app_py(root: Path) -> str:
    clear(root)
    (root / "app.py").write_text(STDLIB_SERVER.format(who="from app.py"))
    return "from app.py"


def app_module(root: Path) -> str:
    clear(root)
    (root / "web").mkdir()
    (root / "web" / "__init__.py").write_text("")
    (root / "web" / "site.py").write_text(WSGI.format(name="app", who="from app-module"))
    return "from app-module"


def asgi_uvicorn(root: Path) -> str:
    clear(root)
    (root / "asgi.py").write_text(ASGI.format(who="from asgi"))
    return "from asgi"


def wsgi_waitress(root: Path) -> str:
    (root / "wsgi.py").write_text(WSGI.format(name="application", who="from waitress"))
    return "from waitress"


def start_command(root: Path) -> str:
    clear(root)
    (root / "serve.py").write_text(STDLIB_SERVER.format(who="from start"))
    return "from start"


def procfile(root: Path) -> str:
    """Heroku's Procfile: its web: line is run as a shell command ($PORT is set); an
    app.py that would come later in the order is not used."""
    (root / "serve.py").write_text(STDLIB_SERVER.format(who="from Procfile"))
    (root / "app.py").write_text(STDLIB_SERVER.format(who="from app.py"))
    (root / "Procfile").write_text("release: true\nweb: exec python serve.py\n")
    return "from Procfile"


CASES: dict[str, tuple[Callable[[Path], str], dict[str, str], bool]] = {
    # name: (writer, [tool.warpdrive] additions, graceful stop expected from our server)
    "app.sh": (app_sh, {}, True),
    "app.py": (app_py, {}, True),
    "app-module": (app_module, {"app-module": "web.site:app"}, True),
    "asgi.py+uvicorn": (asgi_uvicorn, {}, True),
    "wsgi.py+waitress": (wsgi_waitress, {"server": "waitress"}, True),
    "start": (start_command, {"start": "exec python serve.py"}, True),
    "Procfile": (procfile, {}, True),
}


def serve_and_check(engine: Engine, ref: str, expect: str, user: str | None = None) -> Any:
    with serve_image(engine, ref, user=user) as (container, url):
        status, body = http_get(f"{url}/")
        logs = container.logs().decode(errors="replace")
        assert status == 200, (body, logs)
        assert body.startswith(expect), (body, logs)
        started = time.monotonic()
        container.stop(timeout=10)
        took = time.monotonic() - started
        container.reload()
        return body, container.attrs["State"]["ExitCode"], took


@pytest.mark.parametrize("case", list(CASES))
def test_each_detection_path_and_server(
    case: str, make_app: Any, engine: Engine, index_env: Index
) -> None:
    writer, extra, _ = CASES[case]
    app: App = make_app(["wd-pure-demo"])
    app.extra_config.update(extra)
    app.write()
    expect = writer(app.root)
    wheelhouse(app, engine)
    image(app, engine, no_index=True)

    body, code, took = serve_and_check(engine, app.image, expect)
    assert body == f"{expect} uid=1001"
    assert code == 0 and took < 10, f"docker stop: exit {code} after {took:.1f} s"

    body, code, _ = serve_and_check(engine, app.image, expect, user="12345:0")
    assert body == f"{expect} uid=12345"
    assert code == 0


def test_hooks_and_environment_file(make_app: Any, engine: Engine, index_env: Index) -> None:
    app: App = make_app(["wd-pure-demo"])
    hooks = app.root / ".warpdrive" / "action_hooks"
    hooks.mkdir(parents=True)
    (app.root / ".warpdrive" / "environment").write_text(
        "# comment\nGREETING='hello from the environment file'\n"
    )
    (hooks / "build").write_text(
        '#!/bin/sh\nset -e\necho "built as $(id -u) $GREETING" > built.txt\n'
    )
    (hooks / "deploy").write_text('#!/bin/sh\nset -e\necho "deployed as $(id -u)" > deployed.txt\n')
    for hook in hooks.iterdir():
        hook.chmod(0o755)
    (app.root / "wsgi.py").write_text(
        "import os\n\n\ndef application(environ, start_response):\n"
        "    body = '|'.join([open('built.txt').read().strip(), open('deployed.txt').read()"
        ".strip(), os.environ['GREETING']])\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [body.encode()]\n"
    )
    wheelhouse(app, engine)
    lines: list[str] = []
    image(app, engine, lines, no_index=True)
    assert any("action_hooks/build" in line for line in lines), "the build hook did not run"
    body, _, _ = serve_and_check(engine, app.image, "built as 1001")
    assert body == (
        "built as 1001 hello from the environment file|deployed as 1001|"
        "hello from the environment file"
    )
    body, _, _ = serve_and_check(engine, app.image, "built as 1001", user="23456:0")
    assert "deployed as 23456" in body


def test_django_static_files_are_served(make_app: Any, engine: Engine, index_env: Index) -> None:
    app: App = make_app(["Django==5.2.19"])
    os.unlink(app.root / "wsgi.py")
    write_django(app.root)
    # settings without STATIC_ROOT: the fallback collects them anyway
    settings = app.root / "site1" / "settings.py"
    settings.write_text(settings.read_text().replace('STATIC_ROOT = BASE_DIR / "collected"\n', ""))
    wheelhouse(app, engine)
    image(app, engine, no_index=True)
    with serve_image(engine, app.image) as (container, url):
        status, body = http_get(f"{url}/static/shop/site.css")
        assert status == 200 and "color: red" in body, (status, body, container.logs())
        status, body = http_get(f"{url}/")
        assert status == 200 and body == "shop-v1 uid=1001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_the_app_on_the_host(make_app: Any, index_env: Index) -> None:
    app: App = make_app(["wd-pure-demo"])
    (app.root / "wsgi.py").write_text(WSGI.format(name="application", who="served here"))
    port = free_port()
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nox", "--no-color", "-s", "serve", "--", "--port", str(port)],
        cwd=app.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/", timeout=180)
        assert status == 200 and body == f"served here uid={os.getuid()}"
    finally:
        os.killpg(proc.pid, 15)
        out, _ = proc.communicate(timeout=30)
    assert "gunicorn" in out, out
