"""The start launcher: every detection path and its precedence, the server each app gets,
what the image must install for it, the server command lines (static files included),
.warpdrive/environment, main(), and the static file handler shipped next to it."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from unit_support import clear_launcher_env, write

from nox_warpdrive.runtime import start
from nox_warpdrive.runtime import warpdrive_static as static_mod
from nox_warpdrive.runtime.start import (
    App,
    NotDetected,
    choose_server,
    detect,
    main,
    read_environment,
    required_packages,
    server_command,
)

SETTINGS_ENV = {"DJANGO_SETTINGS_MODULE": "site1.settings"}


def django(root: Path, settings: str) -> None:
    """A Django project whose settings module (site1.settings) has ``settings``."""
    write(
        root,
        "manage.py",
        'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "site1.settings")\n',
    )
    write(root, "site1/__init__.py", "")
    write(root, "site1/settings.py", settings)
    write(root, "site1/wsgi.py", "application = None\n")
    write(root, "site1/asgi.py", "application = None\n")


#: an app.py that runs itself: run with Python
SCRIPT = "if __name__ == '__main__':\n    print('hi')\n"

WSGI_AND_ASGI = (
    'WSGI_APPLICATION = "site1.wsgi.application"\nASGI_APPLICATION = "site1.asgi.application"\n'
)


def everything(root: Path) -> None:
    """A project with every entry point the launcher looks for, below `start` and
    `app-module` (which come from the config and the environment)."""
    write(root, "app.sh", "#!/bin/sh\nexec python app.py\n", mode=0o755)
    write(root, "app.py", SCRIPT)
    django(root, 'WSGI_APPLICATION = "site1.wsgi.application"\n')
    write(root, "wsgi.py", "application = None\n")
    write(root, "asgi.py", "application = None\n")


# ----------------------------------------------------------------------------- detection


def test_detection_order(tmp_path: Path) -> None:
    """Each path wins over every one below it; taking it away reveals the next."""
    everything(tmp_path)
    root = str(tmp_path)
    config = {"start": "python serve.py", "app_module": "web.main:app"}
    env = {"APP_MODULE": "envmod:app"}

    app = detect(root, env=env, config=config)
    assert (app.kind, app.command, app.interface) == (
        "command",
        ["sh", "-c", "python serve.py"],
        None,
    )
    assert "`start`" in app.how

    app = detect(root, env=env, config={"app_module": "web.main:app"})
    assert (app.kind, app.module, app.interface) == ("wsgi", "web.main:app", "wsgi")
    assert "`app-module`" in app.how

    app = detect(root, env=env, config={})
    assert (app.kind, app.module) == ("wsgi", "envmod:app")
    assert app.how == "APP_MODULE"

    app = detect(root, env={}, config={})
    assert (app.kind, app.command) == ("command", [str(tmp_path / "app.sh")])

    (tmp_path / "app.sh").unlink()
    app = detect(root, env={}, config={})
    assert (app.kind, app.module, app.command) == ("python", "app.py", ["python", "app.py"])

    (tmp_path / "app.py").unlink()
    app = detect(root, env={}, config={})
    assert (app.kind, app.module, app.settings) == (
        "django",
        "site1.wsgi:application",
        "site1.settings",
    )

    (tmp_path / "manage.py").unlink()
    app = detect(root, env={}, config={})
    assert (app.kind, app.module, app.interface) == ("wsgi", "wsgi:application", "wsgi")

    (tmp_path / "wsgi.py").unlink()
    app = detect(root, env={}, config={})
    assert (app.kind, app.module, app.interface) == ("asgi", "asgi:application", "asgi")


def test_blank_start_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, "wsgi.py", "application = None\n")
    assert detect(str(tmp_path), env={}, config={"start": "  "}).kind == "wsgi"


def test_app_module_without_a_callable_means_application(tmp_path: Path) -> None:
    assert detect(str(tmp_path), env={"APP_MODULE": "pkg.web"}).module == "pkg.web:application"
    got = detect(str(tmp_path), env={}, config={"app_module": "pkg.web"})
    assert got.module == "pkg.web:application"


def test_non_executable_app_sh_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, "app.sh", "#!/bin/sh\n", mode=0o644)
    write(tmp_path, "wsgi.py", "application = None\n")
    assert detect(str(tmp_path), env={}).kind == "wsgi"


def test_app_script_and_app_file_name_other_files(tmp_path: Path) -> None:
    write(tmp_path, "run.sh", "#!/bin/sh\n", mode=0o755)
    write(tmp_path, "serve.py", SCRIPT)
    write(tmp_path, "app.py", SCRIPT)
    app = detect(str(tmp_path), env={"APP_SCRIPT": "run.sh"})
    assert (app.kind, app.command) == ("command", [str(tmp_path / "run.sh")])
    app = detect(str(tmp_path), env={"APP_FILE": "serve.py"})
    assert (app.kind, app.command) == ("python", ["python", "serve.py"])


def test_app_py_runs_with_this_python_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the image (env is os.environ) app.py runs with the launcher's interpreter."""
    for key in ("APP_MODULE", "APP_SCRIPT", "APP_FILE", "WARPDRIVE_SERVER_TYPE"):
        monkeypatch.delenv(key, raising=False)
    write(tmp_path, "app.py", SCRIPT)
    assert detect(str(tmp_path)).command == [sys.executable, "app.py"]


def test_django_asgi_application_means_asgi(tmp_path: Path) -> None:
    django(tmp_path, WSGI_AND_ASGI)
    app = detect(str(tmp_path), env={})
    assert (app.kind, app.module, app.interface) == ("django", "site1.asgi:application", "asgi")
    assert app.settings == "site1.settings"
    assert choose_server(app, {}, {}) == "uvicorn"


@pytest.mark.parametrize("server", ["gunicorn", "waitress", "mod_wsgi", "uwsgi"])
def test_django_asgi_application_with_a_wsgi_server_uses_wsgi(tmp_path: Path, server: str) -> None:
    django(tmp_path, WSGI_AND_ASGI)
    for env, config in (({}, {"server": server}), ({"WARPDRIVE_SERVER_TYPE": server}, {})):
        app = detect(str(tmp_path), env=env, config=config)
        assert (app.module, app.interface) == ("site1.wsgi:application", "wsgi")
        assert choose_server(app, config, env) == server


def test_django_wsgi_only_with_uvicorn_uses_its_asgi_module(tmp_path: Path) -> None:
    django(tmp_path, 'WSGI_APPLICATION = "site1.wsgi.application"\n')
    app = detect(str(tmp_path), env={}, config={"server": "uvicorn"})
    assert (app.module, app.interface) == ("site1.asgi:application", "asgi")
    app = detect(str(tmp_path), env={})
    assert (app.module, app.interface) == ("site1.wsgi:application", "wsgi")


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("application = None\napp = None\n", "application"),
        ("app = None\n", "app"),
        ("def application(environ, start_response):\n    return []\n", "application"),
        ("from flask import Flask\napp = Flask(__name__)\n", "app"),
        ("from site1.web import app\n", "app"),
    ],
)
def test_wsgi_py_defines_application_or_app(tmp_path: Path, source: str, name: str) -> None:
    write(tmp_path, "wsgi.py", source)
    assert detect(str(tmp_path), env={}).module == "wsgi:" + name


def test_asgi_package_defining_app(tmp_path: Path) -> None:
    write(tmp_path, "asgi/__init__.py", "from fastapi import FastAPI\napp = FastAPI()\n")
    app = detect(str(tmp_path), env={})
    assert (app.kind, app.module, app.interface) == ("asgi", "asgi:app", "asgi")
    assert app.how == "asgi.py"


def test_wsgi_py_without_a_callable_falls_through_to_asgi_py(tmp_path: Path) -> None:
    write(tmp_path, "wsgi.py", "handler = None\n")
    write(tmp_path, "asgi.py", "app = None\n")
    assert detect(str(tmp_path), env={}).module == "asgi:app"


# ----------------------------------------------------------------------------- app-module interface


@pytest.mark.parametrize(
    ("source", "interface"),
    [
        ("from fastapi import FastAPI\napp = FastAPI()\n", "asgi"),
        ("from starlette.applications import Starlette\napp = Starlette()\n", "asgi"),
        ("from django.core.asgi import get_asgi_application\n", "asgi"),
        ("from flask import Flask\napp = Flask(__name__)\n", "wsgi"),
        ("def app(environ, start_response):\n    return []\n", "wsgi"),
    ],
)
def test_app_module_interface_is_guessed_from_its_source(
    tmp_path: Path, source: str, interface: str
) -> None:
    write(tmp_path, "web/main.py", source)
    app = detect(str(tmp_path), env={}, config={"app_module": "web.main:app"})
    assert (app.kind, app.interface) == (interface, interface)
    assert choose_server(app, {}, {}) == ("uvicorn" if interface == "asgi" else "gunicorn")


def test_app_module_that_is_not_there_is_wsgi(tmp_path: Path) -> None:
    assert detect(str(tmp_path), env={"APP_MODULE": "missing:app"}).interface == "wsgi"


def test_explicit_server_wins_over_the_guess(tmp_path: Path) -> None:
    write(tmp_path, "web.py", "from flask import Flask\napp = Flask(__name__)\n")
    write(tmp_path, "api.py", "from fastapi import FastAPI\napp = FastAPI()\n")
    app = detect(str(tmp_path), env={}, config={"app_module": "web:app", "server": "uvicorn"})
    assert app.interface == "asgi"
    app = detect(str(tmp_path), env={"APP_MODULE": "api:app", "WARPDRIVE_SERVER_TYPE": "waitress"})
    assert app.interface == "wsgi"


# ----------------------------------------------------------------------------- choose_server


def test_choose_server_defaults() -> None:
    wsgi = App("wsgi", "wsgi:application", "t", interface="wsgi")
    asgi = App("asgi", "asgi:application", "t", interface="asgi")
    assert choose_server(wsgi, {}, {}) == "gunicorn"
    assert choose_server(asgi, {}, {}) == "uvicorn"
    assert choose_server(wsgi, {"server": "waitress"}, {}) == "waitress"
    assert choose_server(wsgi, {}, {"WARPDRIVE_SERVER_TYPE": "uwsgi"}) == "uwsgi"
    # the config wins over the environment
    assert choose_server(wsgi, {"server": "mod_wsgi"}, {"WARPDRIVE_SERVER_TYPE": "uwsgi"}) == (
        "mod_wsgi"
    )


def test_choose_server_mismatch_names_the_app() -> None:
    wsgi = App("wsgi", "mysite.wsgi:application", "t", interface="wsgi")
    with pytest.raises(NotDetected) as info:
        choose_server(wsgi, {"server": "uvicorn"}, {})
    msg = str(info.value)
    assert "uvicorn" in msg and "mysite.wsgi:application" in msg and "WSGI" in msg
    asgi = App("asgi", "api:app", "t", interface="asgi")
    with pytest.raises(NotDetected, match="api:app"):
        choose_server(asgi, {}, {"WARPDRIVE_SERVER_TYPE": "gunicorn"})


def test_choose_server_unknown() -> None:
    wsgi = App("wsgi", "wsgi:application", "t", interface="wsgi")
    with pytest.raises(NotDetected, match="hypercorn"):
        choose_server(wsgi, {"server": "hypercorn"}, {})


def test_wsgi_py_with_uvicorn_is_a_mismatch(tmp_path: Path) -> None:
    write(tmp_path, "wsgi.py", "application = None\n")
    config = {"server": "uvicorn"}
    app = detect(str(tmp_path), env={}, config=config)
    with pytest.raises(NotDetected, match="wsgi:application"):
        choose_server(app, config, {})


# ----------------------------------------------------------------------------- required_packages


def test_required_packages() -> None:
    dj_wsgi = App("django", "site1.wsgi:application", "t", "site1.settings", interface="wsgi")
    dj_asgi = App("django", "site1.asgi:application", "t", "site1.settings", interface="asgi")
    assert required_packages(dj_wsgi, "gunicorn") == ["gunicorn", "whitenoise"]
    assert required_packages(dj_wsgi, "waitress") == ["waitress", "whitenoise"]
    # these servers map the static files themselves; uvicorn gets the ASGI handler
    assert required_packages(dj_wsgi, "uwsgi") == ["uwsgi"]
    assert required_packages(dj_wsgi, "mod_wsgi") == ["mod_wsgi"]
    assert required_packages(dj_asgi, "uvicorn") == ["uvicorn"]
    plain = App("wsgi", "wsgi:application", "t", interface="wsgi")
    assert required_packages(plain, "gunicorn") == ["gunicorn"]
    command = App("command", "x", "t", command=["sh", "-c", "x"])
    python = App("python", "app.py", "t", command=["python", "app.py"])
    assert required_packages(command, None) == []
    assert required_packages(python, None) == []
    assert required_packages(command, "gunicorn") == []


# ----------------------------------------------------------------------------- server_command


WSGI_APP = App("wsgi", "web:app", "t", interface="wsgi")
ASGI_APP = App("asgi", "api:app", "t", interface="asgi")
DJANGO_WSGI = App("django", "site1.wsgi:application", "t", "site1.settings", interface="wsgi")
DJANGO_ASGI = App("django", "site1.asgi:application", "t", "site1.settings", interface="asgi")
ENV = {"PORT": "9001", "WEB_CONCURRENCY": "6"}


@pytest.fixture(autouse=True)
def no_static_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees a static-root record of the host."""
    monkeypatch.setattr(start, "STATIC_ROOT_RECORD", str(tmp_path / "no-static-root-record"))


@pytest.fixture
def static_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    root = tmp_path / "collected"
    write(root, "site.css", "body {}\n")
    record = write(tmp_path, "record/static-root", f"{root}\n")
    monkeypatch.setattr(start, "STATIC_ROOT_RECORD", str(record))
    return root


def after(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


@pytest.mark.parametrize(
    ("app", "server", "address", "target", "absent"),
    [
        pytest.param(
            WSGI_APP, "gunicorn", {"--bind": "0.0.0.0:9001"}, "web:app", "--reload", id="gunicorn"
        ),
        pytest.param(
            ASGI_APP,
            "uvicorn",
            {"--host": "0.0.0.0", "--port": "9001"},
            "api:app",
            "--app-dir",
            id="uvicorn",
        ),
    ],
)
def test_default_server_command(
    app: App, server: str, address: dict[str, str], target: str, absent: str
) -> None:
    cmd = server_command(app, ENV, server)
    assert cmd[0] == server
    assert {flag: after(cmd, flag) for flag in address} == address
    assert after(cmd, "--workers") == "6"
    assert cmd[-1] == target
    assert absent not in cmd
    assert server_command(app, ENV) == cmd  # the default for the app's interface


def test_waitress_command() -> None:
    cmd = server_command(WSGI_APP, ENV, "waitress")
    assert cmd[0] == "waitress-serve"
    assert "--listen=0.0.0.0:9001" in cmd
    assert "--threads=6" in cmd
    assert cmd[-1] == "web:app"
    # at least four threads
    assert "--threads=4" in server_command(WSGI_APP, {"WEB_CONCURRENCY": "1"}, "waitress")


def test_uwsgi_command() -> None:
    cmd = server_command(WSGI_APP, ENV, "uwsgi")
    assert cmd[0] == "uwsgi"
    assert after(cmd, "--http-socket") == "0.0.0.0:9001"
    assert after(cmd, "--processes") == "6"
    assert after(cmd, "--module") == "web:app"
    assert "--die-on-term" in cmd
    assert "--static-map" not in cmd
    no_attr = App("wsgi", "web", "t", interface="wsgi")
    assert after(server_command(no_attr, ENV, "uwsgi"), "--module") == "web:application"


def test_mod_wsgi_command() -> None:
    cmd = server_command(WSGI_APP, {**ENV, "TMPDIR": "/scratch"}, "mod_wsgi")
    assert cmd[:2] == ["mod_wsgi-express", "start-server"]
    assert after(cmd, "--port") == "9001"
    assert "--host" not in cmd  # mod_wsgi-express listens on every interface
    assert after(cmd, "--processes") == "6"
    assert after(cmd, "--application-type") == "module"
    assert after(cmd, "--callable-object") == "app"
    assert after(cmd, "--server-root") == "/scratch/mod_wsgi"
    assert cmd[-1] == "web"
    assert "--url-alias" not in cmd


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn", "waitress", "uwsgi", "mod_wsgi"])
def test_default_port_and_workers(monkeypatch: pytest.MonkeyPatch, server: str) -> None:
    monkeypatch.setattr(start, "default_workers", lambda: 5)
    app = ASGI_APP if server == "uvicorn" else WSGI_APP
    line = " ".join(server_command(app, {}, server))
    assert "8080" in line and "9001" not in line
    assert ("--threads=5" if server == "waitress" else " 5") in line


def test_reload() -> None:
    gunicorn = server_command(WSGI_APP, ENV, "gunicorn", reload=True)
    assert "--reload" in gunicorn and gunicorn[-1] == "web:app"
    uvicorn = server_command(ASGI_APP, ENV, "uvicorn", reload=True)
    assert "--reload" in uvicorn and uvicorn[-1] == "api:app"
    assert "--workers" not in uvicorn  # uvicorn's reloader runs a single worker


def test_command_apps_run_their_command() -> None:
    command = App("command", "x", "t", command=["sh", "-c", "x"])
    assert server_command(command, ENV, None) == ["sh", "-c", "x"]
    assert server_command(command, ENV, "gunicorn", reload=True) == ["sh", "-c", "x"]


def test_static_gunicorn_and_waitress_wrap_the_app(static_root: Path) -> None:
    assert start.static_files(DJANGO_WSGI) == str(static_root)
    assert server_command(DJANGO_WSGI, ENV, "gunicorn")[-1] == "warpdrive_static:application"
    assert server_command(DJANGO_WSGI, ENV, "waitress")[-1] == "warpdrive_static:application"


def test_static_uvicorn_uses_the_asgi_handler(static_root: Path) -> None:
    cmd = server_command(DJANGO_ASGI, ENV, "uvicorn")
    assert cmd[-3:] == ["--app-dir", start.LIB_DIR, "warpdrive_static:asgi_application"]
    assert "site1.asgi:application" not in cmd


def test_static_uwsgi_maps_the_files(static_root: Path) -> None:
    cmd = server_command(DJANGO_WSGI, ENV, "uwsgi")
    assert after(cmd, "--static-map") == f"/static/={static_root}"
    assert after(cmd, "--module") == "site1.wsgi:application"
    custom = server_command(DJANGO_WSGI, {**ENV, "WARPDRIVE_STATIC_URL": "assets/"}, "uwsgi")
    assert after(custom, "--static-map") == f"/assets/={static_root}"


def test_static_mod_wsgi_aliases_the_files(static_root: Path) -> None:
    cmd = server_command(DJANGO_WSGI, ENV, "mod_wsgi")
    i = cmd.index("--url-alias")
    assert cmd[i + 1 : i + 3] == ["/static", str(static_root)]
    assert cmd[-1] == "site1.wsgi"


def test_static_url_from_the_settings(
    static_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    write(project, "site1/settings.py", 'STATIC_URL = "media/static/"\n')
    monkeypatch.chdir(project)
    cmd = server_command(DJANGO_WSGI, ENV, "uwsgi")
    assert after(cmd, "--static-map") == f"/media/static/={static_root}"


@pytest.mark.parametrize("server", ["gunicorn", "waitress", "uvicorn", "uwsgi", "mod_wsgi"])
def test_an_app_serving_its_own_static_files_is_not_wrapped(
    static_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    """WhiteNoise's middleware in the settings (here added in production.py, which
    star-imports base.py, as Wagtail's demo does): the app's own serving, with its own
    cache headers, is what the client gets."""
    project = tmp_path / "project"
    write(project, "site1/settings/__init__.py", "")
    write(project, "site1/settings/base.py", 'MIDDLEWARE = ["a.B"]\n')
    write(
        project,
        "site1/settings/production.py",
        'from .base import *\nMIDDLEWARE.append("whitenoise.middleware.WhiteNoiseMiddleware")\n',
    )
    write(project, "site1/settings/dev.py", "from .base import *\n")
    monkeypatch.chdir(project)
    app = DJANGO_ASGI if server == "uvicorn" else DJANGO_WSGI
    prod = App(app.kind, app.module, "t", "site1.settings.production", interface=app.interface)
    dev = App(app.kind, app.module, "t", "site1.settings.dev", interface=app.interface)
    assert start.serves_own_static(str(project), prod.settings)
    assert not start.serves_own_static(str(project), dev.settings)
    assert start.static_files(prod) is None
    cmd = server_command(prod, ENV, server)
    assert not any("warpdrive_static" in c or "static" in c for c in cmd), cmd
    assert start.static_files(dev) == str(static_root)  # the launcher serves for dev


def test_no_static_wrapping_when_it_does_not_apply(
    static_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # not Django
    assert server_command(WSGI_APP, ENV, "gunicorn")[-1] == "web:app"
    assert server_command(ASGI_APP, ENV, "uvicorn")[-1] == "api:app"
    # --reload: Django's runserver-like development serves its own files
    assert server_command(DJANGO_WSGI, ENV, "gunicorn", reload=True)[-1] == (
        "site1.wsgi:application"
    )
    assert server_command(DJANGO_ASGI, ENV, "uvicorn", reload=True)[-1] == (
        "site1.asgi:application"
    )
    # a record naming a directory that is not there
    missing = write(tmp_path, "other-record", f"{tmp_path / 'nowhere'}\n")
    monkeypatch.setattr(start, "STATIC_ROOT_RECORD", str(missing))
    assert start.static_files(DJANGO_WSGI) is None
    assert server_command(DJANGO_WSGI, ENV, "gunicorn")[-1] == "site1.wsgi:application"


# ----------------------------------------------------------------------------- environment


def test_read_environment(tmp_path: Path) -> None:
    write(
        tmp_path,
        ".warpdrive/environment",
        "# a comment\n"
        "\n"
        "PLAIN=value\n"
        "  SPACED = padded  \n"
        "export EXPORTED=1\n"
        'DOUBLE="two words"\n'
        "SINGLE='it is'\n"
        "MISMATCHED=\"open'\n"
        "EMPTY=\n"
        "WITH_EQUALS=a=b=c\n"
        'LONE="\n'
        "1BAD=no\n"
        "BAD-KEY=no\n"
        "no equals sign\n"
        "    # indented comment=1\n",
    )
    assert read_environment(str(tmp_path)) == {
        "PLAIN": "value",
        "SPACED": "padded",
        "EXPORTED": "1",
        "DOUBLE": "two words",
        "SINGLE": "it is",
        "MISMATCHED": "\"open'",
        "EMPTY": "",
        "WITH_EQUALS": "a=b=c",
        "LONE": '"',
    }


def test_read_environment_without_the_file(tmp_path: Path) -> None:
    assert read_environment(str(tmp_path)) == {}


# ----------------------------------------------------------------------------- main


@pytest.fixture
def launcher_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A clean environment for main(); every variable it may set is restored afterwards.
    Returns the path main() reads its start.json from."""
    clear_launcher_env(monkeypatch)  # also removes what main() sets with setdefault
    config = tmp_path / "image" / "start.json"
    monkeypatch.setattr(start, "CONFIG_FILE", str(config))
    return config


def run_print(capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["--print"]) == 0
    return shlex.split(capsys.readouterr().out)


def test_main_print_honours_environment_file_and_config(
    launcher_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = tmp_path / "project"
    write(project, "wsgi.py", "application = None\n")
    write(project, "api.py", "from fastapi import FastAPI\napp = FastAPI()\n")
    write(
        project,
        ".warpdrive/environment",
        "PORT=9999\nWEB_CONCURRENCY=5\nexport FROM_FILE='yes'\n",
    )
    write(launcher_env.parent, "start.json", json.dumps({"app_module": "api:app"}))
    monkeypatch.chdir(project)
    monkeypatch.setenv("PORT", "8123")  # already set: the file does not override it

    cmd = run_print(capsys)
    assert cmd[0] == "uvicorn"
    assert after(cmd, "--port") == "8123"
    assert after(cmd, "--workers") == "5"
    assert cmd[-1] == "api:app"
    assert os.environ["FROM_FILE"] == "yes"
    assert os.environ["PORT"] == "8123"


@pytest.fixture
def wsgi_project(launcher_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current directory for main(): a project with just wsgi.py."""
    project = tmp_path / "project"
    write(project, "wsgi.py", "application = None\n")
    monkeypatch.chdir(project)
    return project


@pytest.mark.usefixtures("wsgi_project")
def test_main_print_without_config_detects(
    launcher_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    cmd = run_print(capsys)
    assert cmd[0] == "gunicorn" and cmd[-1] == "wsgi:application"
    # a broken start.json is no config
    write(launcher_env.parent, "start.json", "{not json")
    assert run_print(capsys)[-1] == "wsgi:application"


@pytest.mark.usefixtures("wsgi_project")
def test_main_config_from_the_environment_wins_over_the_file(
    launcher_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(launcher_env.parent, "start.json", json.dumps({"server": "uwsgi"}))
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    assert run_print(capsys)[0] == "uwsgi"
    monkeypatch.setenv("WARPDRIVE_START_CONFIG", json.dumps({"server": "waitress"}))
    assert run_print(capsys)[0] == "waitress-serve"


@pytest.mark.usefixtures("wsgi_project")
def test_main_server_mismatch_exits_2(
    launcher_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(launcher_env.parent, "start.json", json.dumps({"server": "uvicorn"}))
    assert main(["--print"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "wsgi:application" in captured.err


class Exec(Exception):
    pass


@pytest.fixture
def exec_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str], dict[str, str]]]:
    """main() up to the exec of the server, which is recorded instead."""
    calls: list[tuple[str, list[str], dict[str, str]]] = []

    def fake_exec(file: str, args: list[str], env: dict[str, str]) -> None:
        calls.append((file, list(args), dict(env)))
        raise Exec

    # start._exec, not os.execvpe: it also resets this process's SIGPIPE handling
    monkeypatch.setattr(start, "_exec", lambda cmd, env: fake_exec(cmd[0], cmd, dict(env)))
    monkeypatch.setattr(start, "ensure_passwd_entry", lambda: None)
    return calls


def test_main_hands_the_static_wrapper_its_settings(
    launcher_env: Path,
    static_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    exec_calls: list[tuple[str, list[str], dict[str, str]]],
) -> None:
    project = tmp_path / "project"
    django(project, 'WSGI_APPLICATION = "site1.wsgi.application"\n')
    monkeypatch.chdir(project)
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    with pytest.raises(Exec):
        main([])
    (file, cmd, env) = exec_calls[0]
    assert file == "gunicorn" and cmd[-1] == "warpdrive_static:application"
    assert env["WARPDRIVE_APPLICATION"] == "site1.wsgi:application"
    assert env["WARPDRIVE_STATIC_ROOT"] == str(static_root)
    assert env["WARPDRIVE_STATIC_URL"] == "/static/"
    assert env["DJANGO_SETTINGS_MODULE"] == "site1.settings"
    assert env["PYTHONPATH"].split(os.pathsep)[:2] == [start.LIB_DIR, str(project)]
    assert "WARPDRIVE_APPLICATION" not in os.environ


def test_main_runs_the_deploy_hook_first(
    wsgi_project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    exec_calls: list[tuple[str, list[str], dict[str, str]]],
) -> None:
    project = wsgi_project
    marker = tmp_path / "deployed"
    write(project, ".warpdrive/action_hooks/deploy", f"#!/bin/sh\ntouch {marker}\n", mode=0o755)
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    with pytest.raises(Exec):
        main([])
    assert marker.exists()
    assert exec_calls[0][0] == "gunicorn"
    # a failing hook stops the start with its exit code
    write(project, ".warpdrive/action_hooks/deploy", "#!/bin/sh\nexit 3\n", mode=0o755)
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 3
    assert len(exec_calls) == 1


# ----------------------------------------------------------------------------- warpdrive_static


APP_MODULE_NAME = "wd_test_tiny_asgi_app"

TINY_APP = """\
async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"app"})
"""


@pytest.fixture
def static_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    code = tmp_path / "code"
    write(code, f"{APP_MODULE_NAME}.py", TINY_APP)
    monkeypatch.syspath_prepend(str(code))
    root = tmp_path / "static"
    write(root, "x.css", "body { color: red }\n")
    write(root, "sub/y.js", "1;\n")
    write(tmp_path, "secret", "top secret\n")
    monkeypatch.setenv("WARPDRIVE_APPLICATION", f"{APP_MODULE_NAME}:app")
    monkeypatch.setenv("WARPDRIVE_STATIC_ROOT", str(root))
    monkeypatch.setenv("WARPDRIVE_STATIC_URL", "/static/")
    static_mod._cache.clear()
    yield root
    static_mod._cache.clear()
    sys.modules.pop(APP_MODULE_NAME, None)


def call(path: str, method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {"type": "http", "method": method, "path": path, "headers": []}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(static_mod.asgi_application(scope, receive, send))
    assert sent[0]["type"] == "http.response.start"
    headers = dict(sent[0]["headers"])
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert all(m["type"] == "http.response.body" for m in sent[1:])
    assert not sent[-1].get("more_body", False)
    return sent[0]["status"], headers, body


def test_static_file_is_served(static_env: Path) -> None:
    status, headers, body = call("/static/x.css")
    assert status == 200
    assert headers[b"content-type"] == b"text/css"
    assert body == b"body { color: red }\n"
    assert headers[b"content-length"] == str(len(body)).encode()
    status, headers, body = call("/static/sub/y.js")
    assert (status, body) == (200, b"1;\n")


def test_static_head_has_no_body(static_env: Path) -> None:
    status, headers, body = call("/static/x.css", method="HEAD")
    assert status == 200
    assert headers[b"content-type"] == b"text/css"
    assert headers[b"content-length"] == b"20"
    assert body == b""


@pytest.mark.parametrize(
    "path",
    [
        "/static/../secret",
        "/static/../../secret",
        "/static/%2e%2e/secret",
        "/static/sub/../../secret",
        "/static/",
        "/static/sub",
        "/static/missing.css",
        "/staticx.css",
        "/other",
        "/",
    ],
)
def test_everything_else_goes_to_the_app(static_env: Path, path: str) -> None:
    status, headers, body = call(path)
    assert (status, body) == (200, b"app")
    assert headers[b"content-type"] == b"text/plain"


def test_static_only_for_get_and_head(static_env: Path) -> None:
    assert call("/static/x.css", method="POST")[2] == b"app"


def test_static_is_never_outside_the_root_via_a_symlink(static_env: Path, tmp_path: Path) -> None:
    (static_env / "leak.txt").symlink_to(tmp_path / "secret")
    assert call("/static/leak.txt")[2] == b"app"


def test_static_url_prefix(static_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARPDRIVE_STATIC_URL", "assets")
    static_mod._cache.clear()
    assert call("/assets/x.css")[2] == b"body { color: red }\n"
    assert call("/static/x.css")[2] == b"app"


def test_large_static_file_is_sent_in_chunks(static_env: Path) -> None:
    data = bytes(range(256)) * 1024  # 256 KiB: four chunks
    (static_env / "big.bin").write_bytes(data)
    status, headers, body = call("/static/big.bin")
    assert (status, body) == (200, data)
    assert headers[b"content-type"] == b"application/octet-stream"


def test_the_handler_is_built_once(static_env: Path) -> None:
    first = static_mod.asgi_application
    assert static_mod.asgi_application is first
    assert static_mod._cache == {"asgi_application": first}
    with pytest.raises(AttributeError):
        static_mod.something_else  # noqa: B018


def test_hashed_files_of_the_manifest_are_cacheable_for_a_year(static_env: Path) -> None:
    """Django's manifest storage names files by their content: those names (a 12-hex
    hash before the extension, in staticfiles.json) never change, the others may."""
    write(static_env, "css/site.55e7cbb9ba48.css", "p {}\n")
    write(static_env, "css/site.css", "p {}\n")
    write(static_env, "js/app.0123456789ab.js", "1;\n")  # looks hashed, not in the manifest
    manifest = {"paths": {"css/site.css": "css/site.55e7cbb9ba48.css"}, "version": "1.1"}
    write(static_env, "staticfiles.json", json.dumps(manifest))
    year = b"max-age=31536000, public, immutable"
    assert call("/static/css/site.55e7cbb9ba48.css")[1][b"cache-control"] == year
    assert call("/static/css/site.css")[1][b"cache-control"] == b"max-age=60, public"
    assert call("/static/js/app.0123456789ab.js")[1][b"cache-control"] == b"max-age=60, public"
    assert static_mod.immutable("/static/css/site.55e7cbb9ba48.css")
    assert not static_mod.immutable("/other/css/site.55e7cbb9ba48.css")


def test_no_manifest_no_immutable_files(static_env: Path) -> None:
    write(static_env, "staticfiles.json", "not json")
    assert call("/static/x.css")[1][b"cache-control"] == b"max-age=60, public"
    assert static_mod._hashed() == frozenset()


def test_wsgi_wrapper_is_whitenoise_around_the_app(
    static_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """WhiteNoise is not installed here: a stand-in records what it is given."""
    fake = tmp_path / "fake"
    write(
        fake,
        "whitenoise/__init__.py",
        "class WhiteNoise:\n"
        "    FOREVER = 315360000\n"
        "    def __init__(self, app, root=None, prefix=None, immutable_file_test=None):\n"
        "        self.app, self.root, self.prefix = app, root, prefix\n"
        "        self.immutable_file_test = immutable_file_test\n",
    )
    monkeypatch.syspath_prepend(str(fake))
    monkeypatch.delitem(sys.modules, "whitenoise", raising=False)
    try:
        wrapped = static_mod.application
        assert wrapped.app is sys.modules[APP_MODULE_NAME].app
        assert (wrapped.root, wrapped.prefix) == (str(static_env), "/static/")
        assert wrapped.FOREVER == 31536000  # a year, not WhiteNoise's ten
        assert not wrapped.immutable_file_test(str(static_env / "x.css"), "/static/x.css")
        write(static_env, "x.0123456789ab.css", "p {}\n")
        write(static_env, "staticfiles.json", '{"paths": {"x.css": "x.0123456789ab.css"}}')
        static_mod._cache.pop("hashed", None)
        assert wrapped.immutable_file_test("", "/static/x.0123456789ab.css")
    finally:
        sys.modules.pop("whitenoise", None)


# ----------------------------------------------------------------------------- build = start


def test_build_detection_sees_the_environment_file(
    launcher_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The image starts what `.warpdrive/environment` names (APP_MODULE here); the build
    must detect the same app, or it installs the wrong server, or fails for an app the
    image could start."""
    from nox_warpdrive.config import load_config
    from nox_warpdrive.wheelhouse.build import detect_app

    project = tmp_path / "project"
    write(project, "pyproject.toml", '[project]\nname = "site"\n')
    write(project, "api.py", "from fastapi import FastAPI\napp = FastAPI()\n")
    write(project, ".warpdrive/environment", "APP_MODULE=api:app\n")
    monkeypatch.chdir(project)
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    cmd = run_print(capsys)
    assert (cmd[0], cmd[-1]) == ("uvicorn", "api:app")  # what the image runs
    app, server = detect_app(load_config(project))  # raises ConfigError today
    assert (app.module, server) == ("api:app", "uvicorn")
