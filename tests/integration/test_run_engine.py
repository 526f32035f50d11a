"""`nox -s run` on a real engine, with an app whose settings send every request to
https (as production settings do): it is ready, published on 127.0.0.1 only, and sees
the variables given with --env and --env-file."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
from conftest import App
from pkgindex import Index

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.image import build_image

#: answers every request with a 301 to https, the variables in the target
REDIRECTING_APP = """\
import os


def application(environ, start_response):
    target = "https://%s/?key=%s&file=%s" % (
        environ.get("HTTP_HOST", "x"), os.environ.get("WD_RUN_KEY"), os.environ.get("WD_FILE_KEY")
    )
    start_response("301 Moved Permanently", [("Location", target), ("Content-Length", "0")])
    return [b""]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nox_run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`nox -s run -- args` in ``root``, as the user types it (what it said, captured)."""
    return subprocess.run(
        [sys.executable, "-m", "nox", "--no-color", "-s", "run", "--", *args],
        cwd=root,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_is_ready_behind_a_redirect_on_127_0_0_1_with_the_variables(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["wd-pure-demo"])
    (app.root / "wsgi.py").write_text(REDIRECTING_APP)
    (app.root / "prod.env").write_text("# for the run\nWD_FILE_KEY=from-file\n")
    build_image(load_config(app.root), engine, lambda line: None)
    port = free_port()
    name = f"{app.name}-run"
    args = ["--port", str(port), "--env", "WD_RUN_KEY=s3cret", "--env-file", "prod.env"]
    try:
        r = nox_run(app.root, "--detach", *args)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"answers at http://127.0.0.1:{port}/ (HTTP 301)" in r.stdout, r.stdout
        container = engine.client.containers.get(name)
        bindings = container.attrs["HostConfig"]["PortBindings"]["8080/tcp"]
        assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(port)}], bindings
        published = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"]
        assert {b["HostIp"] for b in published} == {"127.0.0.1"}, published
        # the variables reached the app (it puts them in its redirect)
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        with conn:
            conn.sendall(b"GET / HTTP/1.0\r\nHost: here\r\n\r\n")
            answer = conn.recv(4096).decode()
        assert "301" in answer.splitlines()[0], answer
        assert "key=s3cret&file=from-file" in answer, answer
        logs = container.logs().decode()
        assert "Invalid HTTP request" not in logs, logs  # the check followed no redirect
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            engine.client.containers.get(name).remove(force=True)


def test_a_bad_env_argument_is_refused_before_anything_starts(make_app: Any) -> None:
    app: App = make_app(["wd-pure-demo"])
    r = subprocess.run(
        [sys.executable, "-m", "nox", "--no-color", "-s", "run", "--", "--env", "NOVALUE"],
        cwd=app.root,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "--env: 'NOVALUE' is not KEY=VALUE" in r.stdout + r.stderr, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
