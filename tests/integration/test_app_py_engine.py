"""Flask's quickstart as a new user writes it, on a real engine: an app.py that defines
`app` and does not run itself (no `__main__` block) is served by gunicorn as `app:app`,
and answers through `nox -s run` as uid 1001; an app.py that neither runs itself nor
defines an app fails the build with the fix, before anything is built."""

from __future__ import annotations

import contextlib
import http.client
from typing import Any

import docker
import pytest
from conftest import App
from pkgindex import Index
from test_run_engine import free_port, nox_run

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.errors import ConfigError
from nox_warpdrive.image import build_image

#: https://flask.palletsprojects.com/en/stable/quickstart/, with the uid in the answer
FLASK_QUICKSTART = """\
import os

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello_world():
    return "Hello, World! uid=%d" % os.getuid()
"""


def test_flask_quickstart_app_py_is_served_by_gunicorn_through_nox_run(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["flask", "gunicorn"])
    (app.root / "app.py").write_text(FLASK_QUICKSTART)
    build_image(load_config(app.root), engine, lambda line: None)
    port = free_port()
    name = f"{app.name}-run"
    try:
        args = ["--detach", "--port", str(port)]
        r = nox_run(app.root, *args)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"answers at http://127.0.0.1:{port}/ (HTTP 200)" in r.stdout, r.stdout
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read().decode()
        finally:
            conn.close()
        assert (resp.status, body) == (200, "Hello, World! uid=1001"), body
        logs = engine.client.containers.get(name).logs().decode()
        line = next((x for x in logs.splitlines() if "does not run itself" in x), logs)
        assert "warpdrive-start: app.py defines `app` and does not run itself -> gunicorn " in line
        assert line.endswith(" app:app"), line
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            engine.client.containers.get(name).remove(force=True)


def test_an_app_py_that_neither_runs_nor_defines_an_app_fails_the_build(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["flask"])
    (app.root / "app.py").write_text("from flask import Flask\n\nweb = Flask(__name__)\n")
    # the fixture's wsgi.py would be chosen instead (an app.py that does neither gives
    # way to the later rules): the build fails only when no rule matches
    (app.root / "wsgi.py").unlink()
    with pytest.raises(ConfigError) as caught:
        build_image(load_config(app.root), engine, lambda line: None)
    assert "app.py does not run itself" in caught.value.message
    assert caught.value.fix is not None and "__main__" in caught.value.fix
    assert not engine.client.images.list(name=app.name)  # no image was made
