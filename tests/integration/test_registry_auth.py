"""Registry credentials, for real: a second local registry (Debian's docker-registry)
that requires basic auth (a bcrypt htpasswd file made here), and the credentials the way
Docker users have them: the Docker config file (``auths``, as ``docker login`` writes
it) and credential helpers, read by docker-py. A refused push is one error naming the ref
and the fix, with the image still built and tagged; a refused pull is a warning and a
cold build. The password (a canary) is in no output, label, history, config or layer.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import App, AuthRegistry, serve_image
from pkgindex import Index
from test_build import http_get
from test_registry import cleanup_runner, nox_on, serve_on

from nox_warpdrive.engine import Engine

MAIN = "unix:///var/run/docker.sock"


def docker_config(where: Path, document: dict[str, Any]) -> Path:
    """A Docker config directory (for DOCKER_CONFIG) holding ``document`` as config.json.
    Always a file: docker-py falls back to ~/.docker/config.json when there is none."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "config.json").write_text(json.dumps(document))
    return where


def logged_in(where: Path, reg: AuthRegistry, password: str | None = None) -> Path:
    """The config `docker login` writes (``auths``), with ``password`` when given."""
    auth = reg.auth
    if password is not None:
        auth = base64.b64encode(f"{reg.user}:{password}".encode()).decode()
    return docker_config(where, {"auths": {reg.address: {"auth": auth}}})


@dataclass
class Runs:
    """Everything the sessions printed, for the canary check."""

    texts: list[str]

    def nox(
        self,
        app: App,
        index: Index,
        config: Path,
        *args: str,
        path: Path | None = None,
        host: str | None = None,
    ) -> tuple[int, str]:
        extra = {"DOCKER_CONFIG": str(config)}
        if path is not None:
            extra["PATH"] = f"{path}{os.pathsep}{os.environ.get('PATH', '')}"
        code, text = nox_on(app, host, index, *args, env_extra=extra)
        self.texts.append(text)
        return code, text


@pytest.fixture
def runs(auth_registry: AuthRegistry) -> Iterator[Runs]:
    """Session runs whose output is checked, at the end, not to hold the password."""
    done = Runs([])
    yield done
    for text in done.texts:
        for secret in auth_registry.secrets():
            assert secret not in text, "a session printed the registry password"


#: the app of conftest without its C extension (nothing to compile: these tests are
#: about logins, and a build is then a few seconds)
PURE_APP = """\
import wd_pure_demo


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s %s" % ("{message}", wd_pure_demo.hello())).encode()]
"""


def write_pure(app: App, message: str = "hello-v1") -> None:
    app.write(message=message)
    (app.root / "wsgi.py").write_text(PURE_APP.format(message=message))


@pytest.fixture
def auth_app(make_app: Any, auth_registry: AuthRegistry) -> Iterator[App]:
    """A pure-Python app whose image is named in the auth registry; its images (the
    wheelhouse images too: their tags name the app) are removed afterwards."""
    app: App = make_app(["wd-pure-demo"])
    app.image = f"{auth_registry.address}/{app.name}:latest"
    write_pure(app)
    try:
        yield app
    finally:
        cleanup_runner(MAIN, app)


def assert_serves(engine: Engine, ref: str, message: str = "hello-v1") -> None:
    with serve_image(engine, ref) as (_, url):
        status, body = http_get(url + "/")
    assert status == 200 and message in body, body


def assert_one_refusal(text: str, ref: str, registry: str, *more: str) -> None:
    """One error, naming the ref, the registry's login and ``more``; no traceback."""
    assert text.count(f"pushing {ref} failed") == 1, text
    assert f"docker login {registry}" in text and "fix:" in text, text
    assert "built and tagged here" in text, text
    assert "Traceback" not in text, text
    for part in more:
        assert part in text, text


def test_a_refused_push_is_one_error_and_loses_nothing(
    auth_app: App,
    engine: Engine,
    index: Index,
    auth_registry: AuthRegistry,
    runs: Runs,
    tmp_path: Path,
) -> None:
    app, reg = auth_app, auth_registry
    # (a) no credentials at all: the build succeeds, the push is refused
    none = docker_config(tmp_path / "none", {})
    code, text = runs.nox(app, index, none, "-s", "image", "--", "--push")
    assert code != 0, text
    assert_one_refusal(text, app.image, reg.address, "no credentials")
    built = engine.image(app.image)
    assert built is not None
    # the wheelhouse (built by that session) cannot be pushed either; the volume keeps it
    wheelhouse = f"{reg.address}/{app.name}-wheelhouse"
    code, text = runs.nox(app, index, none, "-s", "wheelhouse", "--", "--push", wheelhouse)
    assert code != 0, text
    assert "nothing was pushed" in text and "no credentials" in text, text
    assert f"docker login {reg.address}" in text and "Traceback" not in text, text
    code, text = runs.nox(app, index, none, "-s", "wheelhouse", "--", "--no-index")
    assert code == 0 and "up to date" in text, text
    # (d) a wrong password: refused as such, nothing moved
    wrong = logged_in(tmp_path / "wrong", reg, password="not-" + reg.password[::-1])
    code, text = runs.nox(app, index, wrong, "-s", "image", "--", "--push")
    assert code != 0, text
    assert_one_refusal(text, app.image, reg.address, "refused", str(wrong / "config.json"))
    # a credential helper that is not installed: its name and the config file
    helperless = docker_config(tmp_path / "helperless", {"credsStore": "wdtest-missing"})
    code, text = runs.nox(app, index, helperless, "-s", "image", "--", "--push")
    assert code != 0, text
    assert_one_refusal(text, app.image, reg.address, "docker-credential-wdtest-missing")
    assert "UserWarning" not in text, text
    # the image is the one built, still tagged, and runs
    after = engine.image(app.image)
    assert after is not None and after.id == built.id
    assert_serves(engine, app.image)


def test_the_docker_config_file_logs_in_and_nothing_leaks(
    auth_app: App,
    engine: Engine,
    index: Index,
    auth_registry: AuthRegistry,
    runs: Runs,
    runner: str,
    tmp_path: Path,
) -> None:
    app, reg = auth_app, auth_registry
    config = logged_in(tmp_path / "docker", reg)
    wheelhouse = f"{reg.address}/{app.name}-wheelhouse"
    # (b) the image and the wheelhouse pushed through the login
    code, text = runs.nox(app, index, config, "-s", "image", "--", "--push")
    assert code == 0, text
    assert f"pushed {app.image}" in text, text
    code, text = runs.nox(app, index, config, "-s", "wheelhouse", "--", "--push", wheelhouse)
    assert code == 0, text
    assert "pushed" in text and wheelhouse in text, text
    pushed = {t for t in _tags(engine, app) if t.startswith(wheelhouse + ":")}
    assert pushed, _tags(engine, app)
    # a fresh start on this engine: no volume, no local tags; all of it comes back
    # through the registry, with the login
    _untag(engine, [*pushed, app.image])
    engine.remove_volume(app.volume)
    code, text = runs.nox(app, index, config, "-s", "wheelhouse", "--", "--pull", wheelhouse)
    assert code == 0, text
    assert "warning" not in text and "Traceback" not in text, text
    assert pushed <= set(_tags(engine, app)), text
    write_pure(app, message="auth-v2")
    code, text = runs.nox(app, index, config, "-s", "image", "--", "--cache-from", app.image)
    assert code == 0, text
    assert f"using the cache {app.image}" in text and "deps layer reused" in text, text
    assert_serves(engine, app.image, "auth-v2")
    # a fresh runner reached over TCP: docker-py hands the login to that engine, which
    # pulls the cache with it
    try:
        write_pure(app, message="auth-v3")
        code, text = runs.nox(
            app, index, config, "-s", "image", "--", "--cache-from", app.image, host=runner
        )
        assert code == 0, text
        assert f"using the cache {app.image}" in text and "deps layer reused" in text, text
        assert "auth-v3" in serve_on(runner, app.image)
    finally:
        cleanup_runner(runner, app)
    # (c) the password is in no label, history, config, nor any layer of what was pushed
    for ref in [app.image, *pushed]:
        for secret in reg.secrets():
            assert secret not in json.dumps(engine.inspect_raw(ref)), ref
            assert secret not in json.dumps(engine.history(ref)), ref
        assert not _saved_holds(engine, ref, reg.secrets()), ref


def test_a_credential_helper_logs_in(
    auth_app: App,
    engine: Engine,
    index: Index,
    auth_registry: AuthRegistry,
    runs: Runs,
    tmp_path: Path,
) -> None:
    app, reg = auth_app, auth_registry
    bin_dir, calls = tmp_path / "bin", tmp_path / "helper-calls"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-wdtest"
    helper.write_text(
        "#!/bin/sh\n"
        "# a Docker credential helper: `get` reads a server, prints its login\n"
        f'[ "$1" = get ] || exit 1\nserver=$(cat)\necho "get $server" >> {calls}\n'
        f'printf \'{{"ServerURL":"%s","Username":"{reg.user}","Secret":"{reg.password}"}}\' '
        '"$server"\n'
    )
    helper.chmod(0o755)
    config = docker_config(tmp_path / "docker", {"credHelpers": {reg.address: "wdtest"}})
    code, text = runs.nox(app, index, config, "-s", "image", "--", "--push", path=bin_dir)
    assert code == 0, text
    assert f"pushed {app.image}" in text, text
    assert f"get {reg.address}" in calls.read_text()


def test_a_refused_pull_is_a_warning_and_a_cold_build(
    auth_app: App,
    engine: Engine,
    index: Index,
    auth_registry: AuthRegistry,
    runs: Runs,
    tmp_path: Path,
) -> None:
    app, reg = auth_app, auth_registry
    none = docker_config(tmp_path / "none", {})
    wheelhouse = f"{reg.address}/{app.name}-wheelhouse"
    # (e) the wheelhouse image and the app image cannot be pulled without a login
    code, text = runs.nox(app, index, none, "-s", "wheelhouse", "--", "--pull", wheelhouse)
    assert code == 0, text
    assert f"warning: cannot pull the wheelhouse image {wheelhouse}" in text, text
    assert f"docker login {reg.address}" in text and "Traceback" not in text, text
    code, text = runs.nox(app, index, none, "-s", "image", "--", "--cache-from", app.image)
    assert code == 0, text
    assert f"warning: cannot pull the cache {app.image}" in text, text
    assert "building without it" in text, text
    assert f"docker login {reg.address}" in text and "Traceback" not in text, text
    assert_serves(engine, app.image)


def _tags(engine: Engine, app: App) -> list[str]:
    return [t for img in engine.client.images.list() for t in img.tags if app.name in t]


def _untag(engine: Engine, refs: list[str]) -> None:
    """Remove these tags (the images stay while other tags or children hold them)."""
    for ref in refs:
        with contextlib.suppress(Exception):
            engine.client.api.remove_image(ref, noprune=True)


def _saved_holds(engine: Engine, ref: str, needles: tuple[str, ...]) -> bool:
    """Whether `docker save` of ``ref`` (every layer, the config) holds any needle."""
    wanted = [n.encode() for n in needles]
    keep = max(len(n) for n in wanted)
    tail = b""
    for chunk in engine.client.images.get(ref).save(named=True):
        window = tail + chunk
        if any(n in window for n in wanted):
            return True
        tail = window[-keep:]
    return False
