"""Helpers and data shared by the unit tests (plain functions and constants, no fixtures).

pytest puts tests/unit on sys.path (rootdir, prepend import mode), so the test files
import this module as ``from unit_support import ...``.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from nox_warpdrive.engine import ImageInfo
from nox_warpdrive.platform import PlatformKey

# ----------------------------------------------------------------------------- data

BASE = ImageInfo(
    id="sha256:abc", env=("PATH=/usr/bin:/bin",), labels={}, size=0, layers=1, created=""
)
PKEY = PlatformKey(
    interpreter="cp312",
    abi="cp312",
    platform="linux_x86_64",
    libc="glibc",
    libc_version="2.36",
    distro="debian",
    distro_version="12",
    python_version="3.12.4",
)

# every variable the start launcher reads, or that main() may set
LAUNCHER_ENV_VARS = (
    "APP_MODULE",
    "APP_SCRIPT",
    "APP_FILE",
    "DJANGO_SETTINGS_MODULE",
    "PORT",
    "WEB_CONCURRENCY",
    "WARPDRIVE_SERVER_TYPE",
    "WARPDRIVE_START_CONFIG",
    "WARPDRIVE_STATIC_URL",
    "FROM_FILE",
)


# ----------------------------------------------------------------------------- files


def write(root: Path, relpath: str, content: str | bytes = "x", mode: int | None = None) -> Path:
    """Write ``root/relpath`` (text or bytes), making its parent directories."""
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    if mode is not None:
        path.chmod(mode)
    return path


def write_django_site(root: Path, pyproject: str = '[project]\nname = "site1"\n') -> None:
    """A minimal Django project: settings module site1.settings, WSGI site1.wsgi."""
    write(root, "pyproject.toml", pyproject)
    write(root, "requirements.txt", "Django>=5\n")
    write(
        root,
        "manage.py",
        "import os, sys\n"
        "def main():\n"
        '    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site1.settings")\n'
        "    from django.core.management import execute_from_command_line\n"
        "    execute_from_command_line(sys.argv)\n",
    )
    write(root, "site1/__init__.py", "")
    write(root, "site1/settings.py", 'WSGI_APPLICATION = "site1.wsgi.application"\n')
    write(root, "site1/wsgi.py", "application = None\n")


def write_wsgi_site(root: Path, requirements: str = "flask\n") -> None:
    """A minimal WSGI project: wsgi.py defining ``application``."""
    write(root, "pyproject.toml", '[project]\nname = "site"\n')
    write(root, "requirements.txt", requirements)
    write(root, "wsgi.py", "def application(environ, start_response):\n    return []\n")


# ----------------------------------------------------------------------------- tars


def tar_contents(data: bytes) -> dict[str, bytes]:
    """The regular files of a tar archive: name -> bytes."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                fh = tar.extractfile(member)
                assert fh is not None
                out[member.name] = fh.read()
    return out


# ----------------------------------------------------------------------------- environment


def clear_launcher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset every launcher variable for the test."""
    for key in LAUNCHER_ENV_VARS:
        # set then delete: at teardown monkeypatch then also undoes what the code under
        # test set (with setdefault, say), not only what the test itself changed
        monkeypatch.setenv(key, "x")
        monkeypatch.delenv(key)
