"""Podman as the engine, through its Docker-compatible API (`podman system service`,
Debian's podman 4.3.1: rootful as scripts/podman-up.sh starts it, and a plain user's
rootless one as scripts/podman-rootless-up.sh starts it): a Flask app with
gunicorn and a Django app with collectstatic build, and the images Podman holds answer
HTTP as uid 1001 with the config the plan says; a code change reuses the deps image
(found by its labels) and sends only the app layer.

The rootful service is reached at WARPDRIVE_PODMAN_HOST (default: the socket
podman-up.sh makes); the rootless one is started for the session and stopped at its
end. One test runs the sessions as that plain user (its own Python and virtualenv);
the others build as root against the user's socket. Without them these tests fail
under CI=true (scripts/test.sh sets them up) and are skipped elsewhere, with the command
that starts them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    App,
    apps_on,
    cleanup,
    serve_image,
    write_django,
)
from pkgindex import Index
from test_build import http_get, image, nox, wheelhouse
from test_run_engine import free_port

from nox_warpdrive.engine import Engine, connect, local_socket
from nox_warpdrive.errors import WarpdriveError

PODMAN_HOST = os.environ.get("WARPDRIVE_PODMAN_HOST", "unix:///run/warpdrive-podman/podman.sock")
START = "bash scripts/podman-up.sh"
ROOT = Path(__file__).resolve().parents[2]

FLASK_APP = """\
import os

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "{message} uid=%d" % os.getuid()
"""


def missing(said: str) -> None:
    """Fail under CI=true (scripts/test.sh sets Podman up), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(said, pytrace=False)
    pytest.skip(said)


@pytest.fixture(scope="session")
def rootless_host() -> Iterator[str]:
    """The DOCKER_HOST of a plain user's rootless Podman service, started for this
    session by scripts/podman-rootless-up.sh (which opens /dev/net/tun to the user) and
    stopped at its end (which restores /dev/net/tun's mode)."""
    script = ROOT / "scripts" / "podman-rootless-up.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        missing(f"rootless Podman did not start (`bash {script}`): {done.stderr[-2000:]}")
    try:
        yield done.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(script), "--stop"], capture_output=True, timeout=120)


@pytest.fixture(params=["rootful"])
def podman(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """A Podman service as the engine (DOCKER_HOST points at it for this test): the
    rootful one of scripts/podman-up.sh, or a plain user's rootless one."""
    host = PODMAN_HOST if request.param == "rootful" else request.getfixturevalue("rootless_host")
    path = local_socket(host)
    monkeypatch.setenv("DOCKER_HOST", host)
    try:
        if path is None or not Path(path).exists():
            raise WarpdriveError(f"no socket at {host}")
        engine = connect()
    except WarpdriveError as exc:
        missing(f"the Podman service does not answer ({exc}): run `{START}`")
    assert engine.is_podman(), f"{host} is not Podman"  # type: ignore[attr-defined]
    return engine


@pytest.fixture
def podman_app(tmp_path_factory: pytest.TempPathFactory, podman: Engine) -> Iterator[Any]:
    yield from apps_on(tmp_path_factory, podman)


def config_of(engine: Engine, ref: str) -> dict[str, Any]:
    config: dict[str, Any] = engine.inspect_raw(ref)["Config"]
    return config


def assert_planned_config(engine: Engine, ref: str) -> None:
    """What Podman 4.3 dropped before (its commit ignored the config): user, command,
    port, the virtualenv on PATH, the labels."""
    config = config_of(engine, ref)
    assert config["User"] == "1001"
    assert config["Cmd"] and "warpdrive-start" in " ".join(config["Cmd"]), config["Cmd"]
    assert "8080/tcp" in (config.get("ExposedPorts") or {})
    path = next(e for e in config["Env"] if e.startswith("PATH="))
    assert "/opt/app-root/venv/bin" in path, path
    assert config["Labels"]["io.warpdrive.deps-key"]


@pytest.mark.parametrize("podman", ["rootful", "rootless"], indirect=True)
def test_flask_app_on_podman_serves_as_uid_1001_and_a_code_change_reuses_the_deps(
    podman_app: Any, podman: Engine, index_env: Index
) -> None:
    app: App = podman_app(["flask"])
    os.unlink(app.root / "wsgi.py")
    (app.root / "wsgi.py").write_text(FLASK_APP.format(message="flask-v1"))
    wheelhouse(app, podman)
    first = image(app, podman, no_index=True)
    assert not first.deps_reused
    podman.tag(first.image_id, f"{app.name}:first")  # a second tag keeps it after rebuilds
    assert_planned_config(podman, app.image)
    with serve_image(podman, app.image) as (container, url):
        status, body = http_get(f"{url}/")
        assert (status, body) == (200, "flask-v1 uid=1001"), body
        _, out = container.exec_run(["sh", "-c", "id -u; id -g; stat -c %u:%g wsgi.py"])
        assert out.decode().split() == ["1001", "0", "1001:0"]

    same = image(app, podman, no_index=True)
    assert same.up_to_date and same.image_id == first.image_id

    (app.root / "wsgi.py").write_text(FLASK_APP.format(message="flask-v2"))
    lines: list[str] = []
    second = image(app, podman, lines, no_index=True)
    assert second.deps_reused, "\n".join(lines)  # found by its labels (map-form filter)
    assert "building the deps layer" not in "\n".join(lines)
    old = podman.inspect_raw(first.image_id)["RootFS"]["Layers"]
    new = podman.inspect_raw(second.image_id)["RootFS"]["Layers"]
    assert old[:-1] == new[:-1] and old[-1] != new[-1]
    with serve_image(podman, app.image) as (_, url):
        assert http_get(f"{url}/") == (200, "flask-v2 uid=1001")

    # `nox -s run` starts it on Podman too, and sees it answer
    port, name = free_port(), f"{app.name}-run"
    try:
        run = nox(app, "-s", "run", "--", "--detach", "--port", str(port))
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"answers at http://127.0.0.1:{port}/ (HTTP 200)" in run.stdout, run.stdout
    finally:
        podman.remove_app(name)


def test_django_app_with_collectstatic_on_podman_serves_as_uid_1001(
    podman_app: Any, podman: Engine, index_env: Index
) -> None:
    """The app-container path (collectstatic runs at build time): Podman takes it, and
    the image serves the page and the collected files."""
    app: App = podman_app(["Django==5.2.19"])
    os.unlink(app.root / "wsgi.py")
    write_django(app.root)
    wheelhouse(app, podman)
    lines: list[str] = []
    image(app, podman, lines, no_index=True)
    text = "\n".join(lines)
    assert "manage.py collectstatic" in text
    assert "not running" not in text and "runs and answers" not in text
    assert_planned_config(podman, app.image)
    with serve_image(podman, app.image) as (container, url):
        assert http_get(f"{url}/") == (200, "shop-v1 uid=1001")
        css = "/opt/app-root/src/collected/shop/site.css"
        _, out = container.exec_run(["stat", "-c", "%u:%g", css])
        assert out.decode().strip() == "1001:0"

    write_django(app.root, message="shop-v2")
    second = image(app, podman, no_index=True)
    assert second.deps_reused
    with serve_image(podman, app.image) as (_, url):
        assert http_get(f"{url}/") == (200, "shop-v2 uid=1001")


def test_the_docker_engine_still_answers_beside_podman() -> None:
    """podman-up.sh must not disturb dockerd (its own store, socket and network)."""
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    with contextlib.suppress(FileNotFoundError):
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr


def as_user(user: str, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as ``user`` with only the environment given (and a plain PATH)."""
    pairs = [f"{k}={v}" for k, v in {"PATH": "/usr/bin:/bin", **env}.items()]
    return subprocess.run(
        ["runuser", "-u", user, "--", "env", "-i", *pairs, *command],
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_sessions_as_a_plain_user_on_its_rootless_podman(
    rootless_host: str, index_env: Index, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nox -s wheelhouse` and `nox -s image` run by the user whose rootless Podman it is
    (its own Python, its own virtualenv with nox-warpdrive, its $XDG_RUNTIME_DIR socket):
    the image that user's Podman holds answers as uid 1001."""
    user = os.environ.get("WARPDRIVE_PODMAN_USER", "wdpodman")
    entry = pwd.getpwnam(user)
    home = Path(entry.pw_dir)
    wheel_dir = tmp_path / "wheel"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheel_dir), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheel_dir.glob("*.whl")
    tag = uuid.uuid4().hex[:8]
    work = home / f"wdtest-{tag}"
    work.mkdir()
    shutil.copy(wheel, work / wheel.name)
    venv = work / "venv"
    app = App(work / "app", f"wdtest-{tag}", f"wdtest-{tag}:latest", f"wdtest-{tag}", ["flask"])
    app.root.mkdir()
    app.write()
    (app.root / "wsgi.py").write_text(FLASK_APP.format(message="rootless-v1"))
    subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(work)], check=True)
    monkeypatch.setenv("DOCKER_HOST", rootless_host)
    engine = connect()
    env = {
        "HOME": str(home),
        "XDG_RUNTIME_DIR": f"/run/user/{entry.pw_uid}",
        "DOCKER_HOST": rootless_host,
        "PIP_INDEX_URL": index_env.url,
        "XDG_CACHE_HOME": str(work / "cache"),
    }
    try:
        done = as_user(user, "/usr/bin/python3", "-m", "venv", str(venv))
        assert done.returncode == 0, done.stderr
        done = as_user(user, f"{venv}/bin/pip", "install", "-q", "nox", str(work / wheel.name))
        assert done.returncode == 0, done.stderr
        for session in (["-s", "wheelhouse"], ["-s", "image", "--", "--no-index"]):
            done = as_user(
                user,
                "sh",
                "-c",
                f'cd "{app.root}" && exec "$0" "$@"',
                f"{venv}/bin/nox",
                "--no-color",
                *session,
                **env,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert "Traceback" not in done.stderr
        assert_planned_config(engine, app.image)
        with serve_image(engine, app.image) as (_, url):
            assert http_get(f"{url}/") == (200, "rootless-v1 uid=1001")
    finally:
        cleanup(engine, app)
        shutil.rmtree(work, ignore_errors=True)
