"""CI on fresh runners, for real: a local registry (Debian's docker-registry, on
loopback) and a second, empty engine reached over TCP (a fresh runner, and a remote
engine). A first pipeline pushes; a second, on the engine that never saw the app, reuses
what was pushed. A missing or unreachable cache is one line and a cold build."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import docker
import pytest
from conftest import App
from pkgindex import Index
from test_build import http_get

from nox_warpdrive.engine import Engine


def nox_on(
    app: App, host: str | None, index: Index, *args: str, env_extra: Mapping[str, str] = {}
) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "DOCKER_"))}
    env.update(PIP_INDEX_URL=index.url, PYTHONUNBUFFERED="1", **env_extra)
    if host:
        env["DOCKER_HOST"] = host
    proc = subprocess.run(
        [sys.executable, "-m", "nox", "-f", "noxfile.py", *args],
        cwd=app.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return proc.returncode, proc.stdout + proc.stderr


@contextlib.contextmanager
def client_for(host: str) -> Iterator[Any]:
    client = docker.DockerClient(base_url=host)
    try:
        yield client
    finally:
        client.close()


def cleanup_runner(host: str, app: App) -> None:
    with client_for(host) as client:
        for img in client.images.list():
            if (
                any(app.name in t for t in img.tags)
                or (img.labels or {}).get("org.opencontainers.image.title") == app.name
            ):
                with contextlib.suppress(Exception):
                    client.images.remove(img.id, force=True)
        with contextlib.suppress(Exception):
            client.volumes.get(app.volume).remove(force=True)


def serve_on(host: str, ref: str) -> str:
    """Run ``ref`` on the engine at ``host`` (host network, a free port); the body of /."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with client_for(host) as client:
        c = client.containers.run(
            ref, detach=True, network_mode="host", environment={"PORT": str(port)}
        )
        try:
            try:
                status, body = http_get(f"http://127.0.0.1:{port}/")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{c.logs().decode(errors='replace')}") from None
            assert status == 200, (body, c.logs().decode(errors="replace"))
            return body
        finally:
            c.remove(force=True)


@pytest.fixture
def pushed_app(
    make_app: Any, engine: Engine, index: Index, registry: str, runner: str
) -> Iterator[App]:
    """An app whose first pipeline (on the main engine) built and pushed its image."""
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    app.image = f"{registry}/{app.name}:latest"
    app.write()
    code, text = nox_on(app, None, index, "-s", "image", "--", "--push")
    assert code == 0, text
    assert f"pushed {app.image}" in text
    try:
        yield app
    finally:
        cleanup_runner(runner, app)


def test_a_fresh_runner_reuses_the_pushed_layers(
    pushed_app: App, index: Index, runner: str
) -> None:
    app = pushed_app
    # nothing changed: the cache is this very build, tagged, nothing built
    code, text = nox_on(app, runner, index, "-s", "image", "--", "--cache-from", app.image)
    assert code == 0, text
    assert "up to date" in text and "the wheelhouse lacks" not in text, text
    # a code change: the app layer only, no wheelhouse, no compiler
    app.write(message="fresh-runner-v2")
    code, text = nox_on(app, runner, index, "-s", "image", "--", "--cache-from", app.image)
    assert code == 0, text
    assert "deps layer reused" in text, text
    assert "building wd-cext-demo" not in text and "wheelhouse" not in text.split("nox >")[-1]
    assert "fresh-runner-v2" in serve_on(runner, app.image)


def test_a_missing_or_unreachable_cache_is_a_cold_build(
    make_app: Any, index: Index, registry: str, runner: str
) -> None:
    app: App = make_app(["wd-pure-demo"])
    try:
        missing = f"{registry}/nothing-{uuid.uuid4().hex[:8]}:latest"
        code, text = nox_on(app, runner, index, "-s", "image", "--", "--cache-from", missing)
        assert code == 0, text
        assert f"no cache at {missing} yet" in text, text
        app.write(message="second")
        closed = "127.0.0.1:1/wd/none:latest"
        code, text = nox_on(app, runner, index, "-s", "image", "--", "--cache-from", closed)
        assert code == 0, text
        assert f"cannot pull the cache {closed}" in text, text
        with client_for(runner) as client:
            assert client.images.get(app.image).labels["org.opencontainers.image.title"]
    finally:
        cleanup_runner(runner, app)


def test_a_build_container_with_no_way_out_fails_at_once(
    make_app: Any, index: Index, runner: str
) -> None:
    """On the runner's own bridge (not the host network the other tests use) the index
    on the host's loopback cannot be reached: one connection tried, then the network
    cause and its fix, instead of minutes of pip's and uv's retries."""
    app: App = make_app(["wd-pure-demo"])
    config = app.root / "pyproject.toml"
    config.write_text(config.read_text().replace('network = "host"\n', ""))
    try:
        started = time.monotonic()
        code, text = nox_on(app, runner, index, "-s", "wheelhouse")
        took = time.monotonic() - started
        assert code != 0 and "cannot reach the package index" in text, text
        assert 'network = "host"' in text and "Traceback" not in text, text
        assert took < 90, (took, text)
    finally:
        cleanup_runner(runner, app)


def test_every_session_on_an_engine_reached_over_tcp(
    make_app: Any, index: Index, runner: str
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    try:
        code, text = nox_on(app, runner, index, "-s", "wheelhouse")
        assert code == 0, text
        code, text = nox_on(app, runner, index, "-s", "image", "--", "--no-index")
        assert code == 0, text
        assert "hello from wd-pure-demo" in serve_on(runner, app.image)
    finally:
        cleanup_runner(runner, app)


def test_a_refused_push_names_the_ref_and_keeps_the_image(
    make_app: Any, engine: Engine, index: Index
) -> None:
    app: App = make_app(["wd-pure-demo"])
    app.image = f"127.0.0.1:1/{app.name}:latest"
    app.write()
    code, text = nox_on(app, None, index, "-s", "image", "--", "--push")
    assert code != 0
    assert f"pushing {app.image} failed" in text and "fix:" in text, text
    assert "Traceback" not in text
    assert engine.image(app.image) is not None  # built and tagged here all the same
