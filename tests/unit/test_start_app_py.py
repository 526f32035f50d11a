"""app.py: run with Python only when it runs itself (warpdrive's and S2I's rule for a
script); Flask's quickstart, an app.py that only defines `app`, is served like
`app-module = "app:app"`; an app.py that does neither fails detection (so the build) with
a fix, instead of an image whose app exits at once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from unit_support import clear_launcher_env, write

from nox_warpdrive.config import load_config
from nox_warpdrive.errors import ConfigError
from nox_warpdrive.runtime import start
from nox_warpdrive.runtime.start import NotDetected, choose_server, detect, server_command
from nox_warpdrive.wheelhouse.build import detect_app

FLASK_QUICKSTART = """\
from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello_world():
    return "<p>Hello, World!</p>"
"""

FASTAPI_APP = """\
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def root():
    return {"message": "Hello World"}
"""

HTTP_SERVER_SCRIPT = """\
import os
from http.server import HTTPServer, SimpleHTTPRequestHandler


def main():
    HTTPServer(("", int(os.environ["PORT"])), SimpleHTTPRequestHandler).serve_forever()


if __name__ == "__main__":
    main()
"""

FLASK_RUN_AT_TOP = """\
import os
from flask import Flask

app = Flask(__name__)
app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))
"""

NEITHER = """\
import json

def load(path):
    with open(path) as fh:
        return json.load(fh)

print("loaded")
"""


def runs_itself(source: str) -> bool:
    return start._runs_itself(ast.parse(source).body)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (FLASK_QUICKSTART, False),
        (FASTAPI_APP, False),
        (HTTP_SERVER_SCRIPT, True),
        (FLASK_RUN_AT_TOP, True),
        (NEITHER, False),
        ('if "__main__" == __name__:\n    pass\n', True),
        ("import uvicorn\nuvicorn.run('app:app')\n", True),
        ("from waitress import serve\nserve(app, port=8080)\n", True),
        ("from aiohttp import web\nweb.run_app(app)\n", True),
        ("import asyncio\nasyncio.run(main())\n", True),
        ("import sys\nsys.exit(main())\n", True),
        ("with make_server('', 8080, app) as httpd:\n    httpd.serve_forever()\n", True),
        ("try:\n    main()\nexcept KeyboardInterrupt:\n    pass\n", True),
        ("try:\n    pass\nexcept KeyboardInterrupt:\n    loop.run_forever()\n", True),
        # called only when the function is: not at import
        ("def start():\n    app.run()\n", False),
        ("class S:\n    def go(self):\n        serve_forever()\n", False),
        # a subprocess, a name that only mentions run, a reference without a call
        ("import subprocess\nsubprocess.run(['true'])\napp = 1\n", False),
        ("app.add_url_rule('/', view_func=run)\nrunner = make_runner()\n", False),
    ],
)
def test_what_counts_as_running_itself(source: str, expected: bool) -> None:
    assert runs_itself(source) is expected


def test_flask_quickstart_is_served_by_gunicorn(tmp_path: Path) -> None:
    write(tmp_path, "app.py", FLASK_QUICKSTART)
    app = detect(str(tmp_path), env={}, config={})
    assert (app.kind, app.module, app.interface) == ("wsgi", "app:app", "wsgi")
    assert app.how == "app.py defines `app` and does not run itself"
    assert choose_server(app, {}, {}) == "gunicorn"
    assert server_command(app, {"WEB_CONCURRENCY": "2"})[-1] == "app:app"
    assert start.required_packages(app, "gunicorn") == ["gunicorn"]


def test_fastapi_app_py_is_served_by_uvicorn(tmp_path: Path) -> None:
    write(tmp_path, "app.py", FASTAPI_APP)
    app = detect(str(tmp_path), env={}, config={})
    assert (app.kind, app.module, app.interface) == ("asgi", "app:app", "asgi")
    assert choose_server(app, {}, {}) == "uvicorn"


def test_the_server_chosen_decides_the_interface(tmp_path: Path) -> None:
    """As for app-module: `server` names what the app speaks."""
    write(tmp_path, "app.py", FLASK_QUICKSTART)
    app = detect(str(tmp_path), env={}, config={"server": "waitress"})
    assert (app.module, app.interface) == ("app:app", "wsgi")
    app = detect(str(tmp_path), env={"WARPDRIVE_SERVER_TYPE": "uvicorn"}, config={})
    assert (app.module, app.interface) == ("app:app", "asgi")


def test_application_is_preferred_and_a_def_counts(tmp_path: Path) -> None:
    write(
        tmp_path,
        "app.py",
        "app = object()\n\n@wrap\ndef application(environ, start_response):\n    pass\n",
    )
    assert detect(str(tmp_path), env={}, config={}).module == "app:application"


def test_app_file_names_the_module(tmp_path: Path) -> None:
    write(tmp_path, "web/server.py", FLASK_QUICKSTART)
    app = detect(str(tmp_path), env={"APP_FILE": "web/server.py"}, config={})
    assert (app.module, app.how) == (
        "web.server:app",
        "web/server.py defines `app` and does not run itself",
    )


@pytest.mark.parametrize("source", [HTTP_SERVER_SCRIPT, FLASK_RUN_AT_TOP])
def test_a_script_that_runs_itself_is_run_with_python(tmp_path: Path, source: str) -> None:
    write(tmp_path, "app.py", source)
    app = detect(str(tmp_path), env={}, config={})
    assert (app.kind, app.command, app.how) == (
        "python",
        ["python", "app.py"],
        "app.py, run with Python",
    )


def test_a_file_python_cannot_parse_here_is_still_run(tmp_path: Path) -> None:
    """Python says what is wrong with it when it runs; the host's Python may also be
    older than the image's."""
    write(tmp_path, "app.py", "def broken(:\n")
    assert detect(str(tmp_path), env={}, config={}).kind == "python"


def test_an_app_py_that_does_neither_gives_way_to_a_wsgi_py(tmp_path: Path) -> None:
    """Flask's factory layout: app.py holds create_app(), wsgi.py calls it."""
    write(tmp_path, "app.py", NEITHER)
    write(tmp_path, "wsgi.py", "from app import create_app\napplication = create_app()\n")
    found = detect(str(tmp_path), env={}, config={})
    assert (found.kind, found.module) == ("wsgi", "wsgi:application")


def test_an_app_py_that_does_neither_is_not_detected(tmp_path: Path) -> None:
    write(tmp_path, "app.py", NEITHER)
    with pytest.raises(NotDetected) as caught:
        detect(str(tmp_path), env={}, config={})
    assert "app.py does not run itself" in str(caught.value)
    assert "defines no `app` or `application`" in str(caught.value)
    assert caught.value.fix and "__main__" in caught.value.fix and "$PORT" in caught.value.fix
    assert '`app-module = "app:<the app\'s name>"`' in caught.value.fix
    assert "`start = " in caught.value.fix


def test_a_non_module_file_name_is_not_detected(tmp_path: Path) -> None:
    write(tmp_path, "my-app.py", FLASK_QUICKSTART)
    with pytest.raises(NotDetected, match=r"my-app\.py does not run itself.* is no module name"):
        detect(str(tmp_path), env={"APP_FILE": "my-app.py"}, config={})


@pytest.mark.parametrize(
    "table", ['start = "gunicorn app:app"\n', 'app-module = "app:app"\n', 'server = "uwsgi"\n']
)
def test_config_still_comes_first_or_applies(tmp_path: Path, table: str) -> None:
    write(tmp_path, "pyproject.toml", f'[project]\nname = "x"\n[tool.warpdrive]\n{table}')
    write(tmp_path, "app.py", FLASK_QUICKSTART)
    app, server = detect_app(load_config(tmp_path))
    assert app.kind in ("command", "wsgi")
    assert server == (None if "start" in table else "uwsgi" if "uwsgi" in table else "gunicorn")


def test_the_build_fails_with_the_fix(tmp_path: Path) -> None:
    """The launcher's build-time check: no image whose app would exit at once."""
    write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n')
    write(tmp_path, "app.py", NEITHER)
    with pytest.raises(ConfigError) as caught:
        detect_app(load_config(tmp_path))
    assert "app.py does not run itself" in caught.value.message
    assert caught.value.fix is not None and "__main__" in caught.value.fix


def test_the_launcher_says_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clear_launcher_env(monkeypatch)  # also what main() sets with setdefault
    monkeypatch.setattr(start, "CONFIG_FILE", str(tmp_path / "none.json"))
    write(tmp_path, "app.py", NEITHER)
    monkeypatch.chdir(tmp_path)
    assert start.main(["--print"]) == 2
    err = capsys.readouterr().err
    assert "app.py does not run itself" in err and "\n  fix: add an `if __name__" in err


def test_the_launcher_prints_the_start_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clear_launcher_env(monkeypatch)  # also what main() sets with setdefault
    monkeypatch.setattr(start, "CONFIG_FILE", str(tmp_path / "none.json"))
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    write(tmp_path, "app.py", FLASK_QUICKSTART)
    monkeypatch.chdir(tmp_path)
    assert start.main(["--print"]) == 0
    assert capsys.readouterr().out.split()[-1] == "app:app"
