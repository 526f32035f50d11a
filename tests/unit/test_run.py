"""`nox -s run`: the readiness check (any HTTP answer, a redirect never followed), the
container's variables (--env, --env-file) and where the port is published."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from fake_engine import FakeEngine
from unit_support import BASE

from nox_warpdrive.config import load_config
from nox_warpdrive.errors import ConfigError
from nox_warpdrive.run import (
    RunOptions,
    env_file,
    http_status,
    published_on,
    run_env,
    start,
    wait_http,
)
from nox_warpdrive.sessions import run_parser


class _Redirects(http.server.BaseHTTPRequestHandler):
    """What production settings answer on plain HTTP: every request sent elsewhere
    (here to this same server, so a followed redirect shows in ``hits``)."""

    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Redirects.hits.append(self.path)
        self.send_response(301)
        self.send_header("Location", f"http://{self.headers['Host']}/followed")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirects)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_to_https_is_an_answer_and_is_not_followed(redirecting: str) -> None:
    _Redirects.hits.clear()
    assert http_status(redirecting) == 301
    assert wait_http(redirecting, lambda: True, timeout=5) == 301
    assert _Redirects.hits == ["/", "/"], "the redirect was followed"


def test_nothing_listening_is_no_answer() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert http_status(f"http://127.0.0.1:{port}/", timeout=0.5) is None


def test_env_pairs_and_files(tmp_path: Path) -> None:
    f = tmp_path / "prod.env"
    f.write_text('# production\n\nSECRET_KEY=abc=def\nDATABASE_URL=postgres://u@db/x\nQUOTED="q"\n')
    assert env_file(f) == {
        "SECRET_KEY": "abc=def",
        "DATABASE_URL": "postgres://u@db/x",
        "QUOTED": '"q"',  # as docker --env-file takes it
    }
    # files first, in order; then --env, a later one winning
    env = run_env([f], ["SECRET_KEY=override", "EMPTY="])
    assert env["SECRET_KEY"] == "override" and env["EMPTY"] == ""


@pytest.mark.parametrize("bad", ["NOEQUALS", "=value", "1ABC=x", "A B=x", "-x=1"])
def test_a_bad_env_argument_is_named(bad: str) -> None:
    with pytest.raises(ConfigError) as exc:
        run_env([], [bad])
    shown = bad.split("=")[0] + "=..." if "=" in bad else bad
    assert repr(shown) in exc.value.message and "--env" in exc.value.message
    assert "KEY=VALUE" in (exc.value.fix or "")


def test_a_bad_env_file_line_is_named_with_its_number(tmp_path: Path) -> None:
    f = tmp_path / ".env.prod"
    f.write_text("A=1\n# fine\nexport B=2\n")
    with pytest.raises(ConfigError) as exc:
        env_file(f)
    assert f"{f} line 3" in exc.value.message and "'export B=...'" in exc.value.message
    assert "2" not in exc.value.message.split("line 3")[1], "the value was shown"
    with pytest.raises(ConfigError, match="cannot read the env file"):
        env_file(tmp_path / "missing.env")


def test_published_on_this_machine_unless_told() -> None:
    assert published_on(None, "127.0.0.1") == ("127.0.0.1", "127.0.0.1")
    assert published_on("0.0.0.0", "127.0.0.1") == ("0.0.0.0", "127.0.0.1")
    assert published_on("192.0.2.7", "127.0.0.1") == ("192.0.2.7", "192.0.2.7")
    # a remote engine: its host's addresses are the only way to reach it from here
    assert published_on(None, "build-host") == ("0.0.0.0", "build-host")


def test_the_parser_takes_the_run_options() -> None:
    args = run_parser().parse_args(
        ["--env", "A=1", "--env", "B=2", "--env-file", "x.env", "--host", "0.0.0.0"]
    )
    assert args.env == ["A=1", "B=2"] and args.env_file == ["x.env"]
    assert args.host == "0.0.0.0"
    assert run_parser().parse_args([]).host is None


def test_start_passes_the_variables_and_the_address(
    tmp_path: Path, redirecting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[tool.warpdrive]\nimage = "demo:1"\n'
    )
    cfg = load_config(tmp_path)
    engine = FakeEngine(images={"demo:1": BASE})
    port = int(redirecting.rsplit(":", 1)[1].strip("/"))
    monkeypatch.setattr("nox_warpdrive.run.port_free", lambda port, host_ip: True)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    running = start(cfg, engine, RunOptions(port, None, {"SECRET_KEY": "s"}))
    assert running.status == 301
    assert engine.started_apps == [("demo:1", "demo-run", port, {"SECRET_KEY": "s"}, "127.0.0.1")]


def test_an_engine_named_for_the_platform_publishes_on_its_own_host(
    tmp_path: Path, redirecting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --platform P` where `engines` names an engine for P (RunOptions.docker_host):
    the port is published on every address of that engine's host and asked there, not
    on DOCKER_HOST's; the stop hint names that engine (without its user)."""
    from nox_warpdrive.run import run

    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[tool.warpdrive]\nimage = "demo:1"\n'
    )
    cfg = load_config(tmp_path)
    engine = FakeEngine(images={"demo:1": BASE})
    port = int(redirecting.rsplit(":", 1)[1].strip("/"))
    monkeypatch.setattr("nox_warpdrive.run.port_free", lambda port, host_ip: False)
    monkeypatch.setenv("DOCKER_HOST", "tcp://elsewhere.invalid:2375")
    lines: list[str] = []
    options = RunOptions(port, None, {}, None, "ssh://me@localhost")
    running = run(cfg, engine, lines.append, options, detach=True)
    assert running.url == f"http://localhost:{port}/" and running.status == 301
    assert engine.started_apps == [("demo:1", "demo-run", port, {}, "0.0.0.0")]
    assert lines[0] == f"warpdrive: demo:1 answers at http://localhost:{port}/ (HTTP 301)"
    assert "stop it with: DOCKER_HOST=ssh://localhost docker rm -f demo-run" in lines[1]
