"""No foreign exception reaches a user: every public Engine call, through both backends
(the local socket, and docker-py over TCP), against a fake Engine API that answers the
handshake and then fails in each way engines fail: refused connections, 404, 500, a body
that is not JSON, a connection cut mid-answer, no answer in time. Each call must end
normally or with a WarpdriveError that names what failed and has a fix."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nox_warpdrive.assembly import Bundle, layer_bundle
from nox_warpdrive.engine import DockerEngine, Engine, LocalEngine, connect
from nox_warpdrive.errors import WarpdriveError
from nox_warpdrive.plan import CommitSpec, Step
from nox_warpdrive.tars import tar_files

FAULTS = ("refused", "404", "500", "not-json", "cut", "hang")
TIMEOUT = 0.5


class Handler(http.server.BaseHTTPRequestHandler):
    fault = "500"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "fake"

    def reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("API-Version", "1.41")
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        if path.endswith("/_ping"):
            return self.reply(200, b"OK", "text/plain")
        if path.endswith("/version"):
            return self.reply(200, b'{"ApiVersion":"1.41","Version":"20.10.24"}')
        if self.fault == "404":
            return self.reply(404, b'{"message":"no such thing"}')
        if self.fault == "500":
            return self.reply(500, b'{"message":"engine exploded"}')
        if self.fault == "not-json":
            return self.reply(200, b"<html>a proxy's error page</html>")
        if self.fault == "cut":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"Id": "sha')
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if self.fault == "hang":
            time.sleep(TIMEOUT * 4)
            return None
        return self.reply(500, b'{"message":"unexpected"}')

    do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = handle_any


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def fake_engine(kind: str, fault: str, tmp_path: Path) -> Iterator[str]:
    """A fake engine with this fault; yields the DOCKER_HOST that reaches it."""
    handler = type("Faulty", (Handler,), {"fault": fault})
    server: socketserver.BaseServer
    if kind == "unix":
        path = str(tmp_path / f"{fault}.sock")
        server = UnixServer(path, handler)
        host = f"unix://{path}"
    else:
        server = TcpServer(("127.0.0.1", 0), handler)
        host = f"tcp://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()


def _read(engine: Engine) -> None:
    with engine.image_reader("img") as read:
        read("/etc/os-release")


def _secrets(engine: Engine) -> None:
    with engine.secrets_volume({"ca.pem": b"x"}, "img"):
        pass


def _read_archive(engine: Engine) -> None:
    with engine.archive_reader("img", "vol") as read:
        stream = read("/warpdrive/key/manifest.json")
        if stream is not None:
            b"".join(stream)


def _bundle() -> Bundle:
    return layer_bundle(
        {"Architecture": "amd64"},
        [],
        tar_files({"a": b"a"}),
        CommitSpec(),
        created="1970-01-01T00:00:01Z",
    )


STEP = Step(name="probe", image="img", command=("true",), files=(("/tmp", tar_files({})),))
EXPORT = dataclasses.replace(STEP, export=("tar",))
CALLS: dict[str, Callable[[Engine], object]] = {
    "describe": lambda e: e.describe(),
    "memory_total": lambda e: e.memory_total(),
    "image": lambda e: e.image("img"),
    "images_with_labels": lambda e: e.images_with_labels({"a": "b"}),
    "require_image": lambda e: e.require_image("img", "base-image"),
    "tag": lambda e: e.tag("sha256:" + "a" * 64, "app:latest"),
    "remove_image": lambda e: e.remove_image("sha256:" + "a" * 64),
    "history": lambda e: e.history("img"),
    "inspect_raw": lambda e: e.inspect_raw("img"),
    "image_reader": _read,
    "append_layer": lambda e: e.append_layer("img", tar_files({"a": b"a"}), CommitSpec()),
    "save_image": lambda e: e.save_image("img", Path(tempfile.mkdtemp()) / "img.tar"),
    "ensure_volume": lambda e: e.ensure_volume("vol"),
    "volume_exists": lambda e: e.volume_exists("vol"),
    "remove_volume": lambda e: e.remove_volume("vol"),
    "read_volume_file": lambda e: e.read_volume_file("vol", "a/manifest.json", "img"),
    "secrets_volume": _secrets,
    "run": lambda e: e.run(STEP, lambda line: None),
    "run_checked": lambda e: e.run_checked(STEP, lambda line: None),
    "run_export": lambda e: e.run_export(EXPORT, lambda line: None, Path("/nonexistent/l.tar")),
    "run_probe": lambda e: e.run_probe("img", ["true"]),
    "put_files": lambda e: e.put_files("c", [("/tmp", tar_files({"go": b""}))]),
    "remove_temp": lambda e: e.remove_temp("c"),
    "exec_in": lambda e: e.exec_in("c", ["true"], lambda line: None),
    "read_out": lambda e: e.read_out("c", ["true"], Path("/nonexistent/o.tar"), "o", print),
    "abort": lambda e: e.abort(),
    "sweep": lambda e: e.sweep(),
    "remove_app": lambda e: e.remove_app("app-run"),
    "start_app": lambda e: e.start_app("img", "app-run", 18080),
    "container_state": lambda e: e.container_state("c"),
    "published_port": lambda e: e.published_port("c"),
    "follow_logs": lambda e: e.follow_logs("c", lambda line: None),
    "logs_tail": lambda e: e.logs_tail("c"),
    "stop_app": lambda e: e.stop_app("c"),
    "pull": lambda e: e.pull("127.0.0.1:5999/app:latest"),
    "push": lambda e: e.push("127.0.0.1:5999/app:latest", lambda line: None),
    "registry_login": lambda e: e.registry_login("127.0.0.1:5999"),
    "load_bundle": lambda e: e.load_bundle({"manifest.json": b"[]"}, "test bundle"),
    "load_image": lambda e: e.load_image(_bundle(), "test image"),
    "archive_reader": _read_archive,
    "run_with_archives": lambda e: e.run_with_archives(
        STEP, [("/tmp", lambda: iter([tar_files({"b": b"b"})]))], lambda line: None
    ),
    "about": lambda e: e.about(),
    "disk_usage": lambda e: e.disk_usage(),
    "login_helper": lambda e: e.login_helper("127.0.0.1:5999"),
}
#: a call that waits for a hung engine costs the timeout; these cover each kind of call
HANG_CALLS = (
    "image",
    "append_layer",
    "run",
    "read_volume_file",
    "start_app",
    "tag",
    "pull",
    "archive_reader",
)


def test_every_protocol_method_is_exercised() -> None:
    protocol = {n for n in vars(Engine) if not n.startswith("_")}
    assert protocol <= set(CALLS), protocol - set(CALLS)


@pytest.mark.parametrize("kind", ["unix", "tcp"])
@pytest.mark.parametrize("fault", FAULTS)
def test_faults_become_one_clear_error(
    kind: str, fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fake_engine(kind, fault if fault != "refused" else "500", tmp_path) as host:
        monkeypatch.setenv("DOCKER_HOST", host)
        engine = connect(timeout=TIMEOUT)
        assert isinstance(engine, LocalEngine if kind == "unix" else DockerEngine)
        if fault == "refused":
            # the engine answered the handshake, then went away
            pass
        names = HANG_CALLS if fault == "hang" else tuple(CALLS)
        if fault != "refused":
            failures = _call_all(engine, names)
    if fault == "refused":
        failures = _call_all(engine, names)
    assert not failures, "\n".join(failures)


def _call_all(engine: Engine, names: tuple[str, ...]) -> list[str]:
    failures = []
    for name in names:
        try:
            CALLS[name](engine)
        except WarpdriveError as exc:
            text = str(exc)
            if "Traceback" in text or exc.fix is None or len(text.splitlines()[0]) > 400:
                failures.append(f"{name}: unclear error: {text!r}")
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    return failures


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_no_engine_at_all(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = f"unix://{tmp_path}/none.sock" if kind == "unix" else "tcp://127.0.0.1:1"
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(WarpdriveError) as info:
        connect(timeout=TIMEOUT)
    first = str(info.value).splitlines()[0]
    assert "no Docker engine answers" in first and len(first) < 200, first
    assert info.value.fix
