"""The app found from what it declares for other tools: a Procfile's `web:` line
(Heroku, buildpacks, Railpack) and `entrypoint` in [tool.fastapi] (FastAPI's CLI), after
the explicit keys and before the files the launcher looks for."""

from __future__ import annotations

from pathlib import Path

from test_start import django
from unit_support import write

from nox_warpdrive.config import load_config, start_config
from nox_warpdrive.errors import ConfigError
from nox_warpdrive.runtime.start import detect, procfile_web, server_command

FASTAPI_PYPROJECT = """\
[project]
name = "app"
version = "0.1.0"
dependencies = ["fastapi"]

[tool.fastapi]
entrypoint = "app.main:app"
"""


def test_fastapi_entrypoint_is_read_and_passed_to_the_launcher(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", FASTAPI_PYPROJECT)
    write(tmp_path, "app/__init__.py", "")
    write(tmp_path, "app/main.py", "from fastapi import FastAPI\napp = FastAPI()\n")
    write(tmp_path, "asgi.py", "application = None\n")  # found later: the declaration wins
    config = start_config(load_config(tmp_path))
    assert config["fastapi_entrypoint"] == "app.main:app"
    app = detect(str(tmp_path), env={}, config=config)
    assert (app.kind, app.module, app.interface) == ("asgi", "app.main:app", "asgi")
    assert app.how == "`entrypoint` in [tool.fastapi]"
    assert server_command(app, {"PORT": "8080", "WEB_CONCURRENCY": "2"}, "uvicorn")[:1] == [
        "uvicorn"
    ]


def test_explicit_keys_win_over_declarations(tmp_path: Path) -> None:
    write(tmp_path, "Procfile", "web: gunicorn other:app\n")
    config = {"app_module": "mine:app", "fastapi_entrypoint": "app.main:app"}
    assert detect(str(tmp_path), env={}, config=config).module == "mine:app"
    start = detect(str(tmp_path), env={}, config={"start": "./run.sh"})
    assert start.command == ["sh", "-c", "./run.sh"]


def test_procfile_web_line_before_fastapi_and_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        "Procfile",
        "# processes\nrelease: python migrate.py\n"
        "web: uvicorn app.main:app --host 0.0.0.0 --port $PORT\nworker: celery -A app worker\n",
    )
    write(tmp_path, "app.py", "print('hi')\n")
    app = detect(str(tmp_path), env={}, config={"fastapi_entrypoint": "app.main:app"})
    assert app.kind == "command" and app.how == "Procfile's web: line"
    assert app.command == ["sh", "-c", "uvicorn app.main:app --host 0.0.0.0 --port $PORT"]
    assert server_command(app, {}) == app.command


def test_procfile_without_web_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, "Procfile", "worker: python worker.py\n#web: nope\n")
    assert procfile_web(str(tmp_path)) is None
    write(tmp_path, "wsgi.py", "application = None\n")
    assert detect(str(tmp_path), env={}, config={}).module == "wsgi:application"


def test_procfile_of_a_django_project_keeps_its_settings(tmp_path: Path) -> None:
    django(tmp_path, body='WSGI_APPLICATION = "site1.wsgi.application"\n')
    write(tmp_path, "Procfile", "web: gunicorn site1.wsgi --log-file -\n")
    app = detect(str(tmp_path), env={}, config={})
    assert app.kind == "command" and app.settings == "site1.settings"


def test_a_bad_fastapi_entrypoint_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", FASTAPI_PYPROJECT.replace("app.main:app", "app/main.py"))
    try:
        load_config(tmp_path)
    except ConfigError as exc:
        assert "not a module path" in str(exc)
    else:
        raise AssertionError("no error")


def test_a_procfile_left_out_of_the_image_still_starts_the_app(tmp_path: Path) -> None:
    """The host reads the Procfile and passes its web: line to the launcher: with the
    file left out of the image (.dockerignore), the image starts the app the same way
    the host decided (not the Django project it would find next)."""
    django(tmp_path)
    write(tmp_path, "Procfile", "web: uwsgi ./etc/uwsgi.ini\n")
    write(tmp_path, ".dockerignore", "Procfile\n")
    config = start_config(load_config(tmp_path))
    assert config["procfile_web"] == "uwsgi ./etc/uwsgi.ini"
    image = tmp_path / "image"  # the app as the image holds it: no Procfile
    image.mkdir()
    django(image)
    app = detect(str(image), env={}, config=config)
    assert (app.kind, app.command) == ("command", ["sh", "-c", "uwsgi ./etc/uwsgi.ini"])
