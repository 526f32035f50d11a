"""The start launcher shipped into images: detection, worker count, server command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from unit_support import clear_launcher_env, write

from nox_warpdrive import runtime
from nox_warpdrive.runtime import start
from nox_warpdrive.runtime.start import (
    App,
    NotDetected,
    default_workers,
    detect,
    main,
    server_command,
)

MIB = 1024 * 1024

MANAGE_PY = """\
#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{settings}")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
"""


def django(root: Path, settings: str = "site1.settings", body: str = "") -> Path:
    write(root, "manage.py", MANAGE_PY.format(settings=settings))
    path = root.joinpath(*settings.split(".")).with_suffix(".py")
    write(root, str(path.relative_to(root)), body)
    return root


# ----------------------------------------------------------------------------- detect


def test_app_module_env_wins(tmp_path: Path) -> None:
    django(tmp_path, body='WSGI_APPLICATION = "site1.wsgi.application"\n')
    write(tmp_path, "wsgi.py", "application = None\n")
    app = detect(str(tmp_path), env={"APP_MODULE": "myapp.main:app"})
    assert (app.kind, app.module) == ("wsgi", "myapp.main:app")
    assert "APP_MODULE" in app.how


def test_django_with_wsgi_application(tmp_path: Path) -> None:
    django(
        tmp_path,
        body=(
            "import os\n"
            "BASE_DIR = os.path.dirname(__file__)\n"
            'WSGI_APPLICATION = "config.wsgi_custom.application"\n'
        ),
    )
    app = detect(str(tmp_path), env={})
    assert app.kind == "django"
    assert app.module == "config.wsgi_custom:application"
    assert app.settings == "site1.settings"


def test_django_settings_are_read_not_imported(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    django(
        tmp_path,
        body=(
            f"open({str(marker)!r}, 'w').close()\n"
            "raise SystemExit('settings must not be executed')\n"
            'WSGI_APPLICATION = "site1.wsgi.application"\n'
        ),
    )
    assert detect(str(tmp_path), env={}).module == "site1.wsgi:application"
    assert not marker.exists()
    assert "site1" not in sys.modules


def test_django_last_assignment_wins(tmp_path: Path) -> None:
    django(tmp_path, body='WSGI_APPLICATION = "a.wsgi.application"\nWSGI_APPLICATION = "b.w.app"\n')
    assert detect(str(tmp_path), env={}).module == "b.w:app"


def test_django_settings_package(tmp_path: Path) -> None:
    write(tmp_path, "manage.py", MANAGE_PY.format(settings="proj.settings"))
    write(tmp_path, "proj/settings/__init__.py", 'WSGI_APPLICATION = "proj.wsgi.application"\n')
    assert detect(str(tmp_path), env={}).module == "proj.wsgi:application"


def test_django_without_wsgi_application(tmp_path: Path) -> None:
    django(tmp_path, body="DEBUG = False\n")
    app = detect(str(tmp_path), env={})
    assert app.kind == "django"
    assert app.module == "site1.wsgi:application"
    assert app.settings == "site1.settings"


def test_django_with_unparsable_settings_falls_back_to_default(tmp_path: Path) -> None:
    django(tmp_path, body="this is not python (\n")
    assert detect(str(tmp_path), env={}).module == "site1.wsgi:application"


def test_django_settings_module_env_overrides_manage_py(tmp_path: Path) -> None:
    django(tmp_path, body='WSGI_APPLICATION = "site1.wsgi.application"\n')
    write(tmp_path, "prod/settings.py", 'WSGI_APPLICATION = "prod.wsgi.application"\n')
    app = detect(str(tmp_path), env={"DJANGO_SETTINGS_MODULE": "prod.settings"})
    assert app.settings == "prod.settings"
    assert app.module == "prod.wsgi:application"


def test_manage_py_single_quotes(tmp_path: Path) -> None:
    write(
        tmp_path,
        "manage.py",
        "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'shop.settings')\n",
    )
    app = detect(str(tmp_path), env={})
    assert (app.kind, app.settings) == ("django", "shop.settings")


def test_django_split_settings_with_star_import(tmp_path: Path) -> None:
    write(tmp_path, "manage.py", MANAGE_PY.format(settings="config.settings.production"))
    write(tmp_path, "config/__init__.py", "")
    write(tmp_path, "config/wsgi.py", "application = None\n")
    write(tmp_path, "config/settings/__init__.py", "")
    write(tmp_path, "config/settings/base.py", 'WSGI_APPLICATION = "config.wsgi.application"\n')
    write(tmp_path, "config/settings/production.py", "from .base import *  # noqa\nDEBUG = False\n")
    assert detect(str(tmp_path), env={}).module == "config.wsgi:application"


def test_wsgi_py(tmp_path: Path) -> None:
    write(tmp_path, "wsgi.py", "application = None\n")
    app = detect(str(tmp_path), env={})
    assert (app.kind, app.module, app.settings) == ("wsgi", "wsgi:application", None)


def test_wsgi_package(tmp_path: Path) -> None:
    write(tmp_path, "wsgi/__init__.py", "application = None\n")
    assert detect(str(tmp_path), env={}).module == "wsgi:application"


def test_manage_py_without_settings_falls_through_to_wsgi(tmp_path: Path) -> None:
    write(tmp_path, "manage.py", "print('not django')\n")
    write(tmp_path, "wsgi.py", "application = None\n")
    assert detect(str(tmp_path), env={}).kind == "wsgi"


def test_nothing_found_lists_what_was_looked_for(tmp_path: Path) -> None:
    write(tmp_path, "main.py", "app = None\n")  # not a name the launcher looks for
    write(tmp_path, "app.sh", "#!/bin/sh\n")  # not executable
    write(tmp_path, "wsgi", "a file, not a package\n")
    write(tmp_path, "asgi.py", "handler = None\n")  # neither `application` nor `app`
    with pytest.raises(NotDetected) as info:
        detect(str(tmp_path), env={})
    msg = str(info.value)
    assert str(tmp_path) in msg
    for looked_for in (
        "`start`",
        "`app-module`",
        "APP_MODULE",
        "app.sh",
        "app.py",
        "manage.py",
        "DJANGO_SETTINGS_MODULE",
        "wsgi.py",
        "asgi.py",
    ):
        assert looked_for in msg


def test_detect_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_MODULE", "x:y")
    assert detect(str(tmp_path)).module == "x:y"


# ----------------------------------------------------------------------------- workers


@pytest.fixture
def no_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(start, "_cgroup_memory_limit", lambda: None)


@pytest.mark.usefixtures("no_cgroup")
@pytest.mark.parametrize(
    ("cpus", "memory", "expected"),
    [
        (2, None, 4),
        (2, 256 * MIB, 4),  # min(4, (256 - 43) // 40 = 5)
        (8, 256 * MIB, 5),  # memory bound
        (2, 100 * MIB, 1),  # (100 - 43) // 40 = 1
        (2, 40 * MIB, 1),  # negative by the formula: at least one worker
        (16, None, 12),  # capped
        (1, None, 2),
    ],
)
def test_default_workers(cpus: int, memory: int | None, expected: int) -> None:
    assert default_workers(cpus=cpus, memory=memory) == expected


def test_default_workers_uses_the_cgroup_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(start, "_cgroup_memory_limit", lambda: 128 * MIB)
    assert default_workers(cpus=4) == 2  # (128 - 43) // 40


def test_cgroup_limit_is_none_or_sane() -> None:
    limit = start._cgroup_memory_limit()
    assert limit is None or 0 < limit < (1 << 50)


# ----------------------------------------------------------------------------- server command


APP = App("wsgi", "wsgi:application", "wsgi.py")


def test_server_command_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(start, "default_workers", lambda: 3)
    cmd = server_command(APP, {})
    assert cmd[0] == "gunicorn"
    assert cmd[cmd.index("--bind") + 1] == "0.0.0.0:8080"
    assert cmd[cmd.index("--workers") + 1] == "3"
    assert cmd[-1] == "wsgi:application"
    assert cmd[cmd.index("--access-logfile") + 1] == "-"


def test_server_command_honours_port_and_web_concurrency() -> None:
    cmd = server_command(APP, {"PORT": "9000", "WEB_CONCURRENCY": "7"})
    assert cmd[cmd.index("--bind") + 1] == "0.0.0.0:9000"
    assert cmd[cmd.index("--workers") + 1] == "7"


def test_server_command_empty_port_uses_default() -> None:
    cmd = server_command(APP, {"PORT": "", "WEB_CONCURRENCY": "2"})
    assert cmd[cmd.index("--bind") + 1] == "0.0.0.0:8080"


# ----------------------------------------------------------------------------- main


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clear_launcher_env(monkeypatch)
    # no image files of the host's /opt/app-root may leak in
    monkeypatch.setattr(start, "CONFIG_FILE", str(tmp_path / "no-start.json"))
    monkeypatch.setattr(start, "STATIC_ROOT_RECORD", str(tmp_path / "no-static-root"))


@pytest.mark.usefixtures("clean_env")
def test_main_print(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    django(tmp_path, body='WSGI_APPLICATION = "site1.wsgi.application"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    assert main(["--print"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("gunicorn --bind 0.0.0.0:8123 --workers 2 ")
    assert out.endswith(" site1.wsgi:application")
    assert "DJANGO_SETTINGS_MODULE" not in os.environ  # main() did not touch our env


@pytest.mark.usefixtures("clean_env")
def test_main_nothing_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--print"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("warpdrive-start: no way to start the app")


def test_shipped_launcher_runs_standalone(tmp_path: Path) -> None:
    """The bytes shipped into images run on their own (stdlib only, no package import)."""
    launcher = tmp_path / "warpdrive-start"
    launcher.write_bytes(runtime.read("start.py"))
    app_dir = tmp_path / "app"
    write(app_dir, "wsgi.py", "application = None\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "WEB_CONCURRENCY": "3",
        "APP_ROOT": str(tmp_path / "app-root"),  # no start.json: detection alone
    }
    proc = subprocess.run(
        [sys.executable, "-I", str(launcher), "--print"],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "gunicorn --bind 0.0.0.0:8080 --workers 3 --access-logfile - --error-logfile - "
        "--graceful-timeout 10 wsgi:application"
    )
