"""`run -- --watch` without Docker: the forwarder (the held port follows the switch, an
open connection keeps its container, a busy port is a clear error), which saves count
and of what kind, how bursts merge into one rebuild, and the reload decisions (a failed
build or a container that does not answer keeps the old one; everything is removed at
the end) on the fake engine with real HTTP servers standing in for containers."""

from __future__ import annotations

import contextlib
import http.server
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import watchfiles
from fake_engine import FakeEngine

from nox_warpdrive.config import Config
from nox_warpdrive.engine import ImageInfo
from nox_warpdrive.errors import EngineError, WarpdriveError
from nox_warpdrive.image import ImageResult
from nox_warpdrive.run import RunOptions
from nox_warpdrive.source.ignore import load_ignore_rules
from nox_warpdrive.watch.changes import ChangeSet, Inputs, Watcher, change_set, drain, lasting
from nox_warpdrive.watch.forward import Forwarder, wait_drained
from nox_warpdrive.watch.loop import WatchLoop, reload_line


@contextlib.contextmanager
def server(reply: bytes) -> Iterator[tuple[str, int]]:
    """A TCP server on 127.0.0.1 that answers every connection with ``reply`` once it
    has read a line, then keeps the connection open until the client closes it."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            f = conn.makefile("rb")
            while not stop.is_set() and f.readline():
                conn.sendall(reply + b"\n")

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[:2]
    finally:
        stop.set()
        listener.close()


def ask(conn: socket.socket) -> bytes:
    conn.sendall(b"hi\n")
    return conn.makefile("rb").readline().strip()


@pytest.fixture
def forwarder() -> Iterator[Forwarder]:
    fwd = Forwarder("127.0.0.1", 0)
    fwd.start()
    yield fwd
    fwd.close()


def test_the_port_follows_the_switch_and_an_open_connection_keeps_its_target(
    forwarder: Forwarder,
) -> None:
    with server(b"old") as old, server(b"new") as new:
        forwarder.point_to(*old)
        kept = socket.create_connection(("127.0.0.1", forwarder.port), timeout=5)
        assert ask(kept) == b"old"
        forwarder.point_to(*new)
        with socket.create_connection(("127.0.0.1", forwarder.port), timeout=5) as fresh:
            assert ask(fresh) == b"new"
        assert ask(kept) == b"old"  # an open connection stays where it was opened
        assert forwarder.open_to(old) == 1
        kept.close()
        assert wait_drained(forwarder, old, 5.0, time.sleep)


def test_a_connection_before_the_first_container_waits_for_it(forwarder: Forwarder) -> None:
    with server(b"first") as first:
        conn = socket.create_connection(("127.0.0.1", forwarder.port), timeout=5)
        with conn:
            conn.sendall(b"hi\n")
            forwarder.point_to(*first)
            assert conn.makefile("rb").readline().strip() == b"first"


def test_closing_ends_open_connections_and_frees_the_port() -> None:
    fwd = Forwarder("127.0.0.1", 0)
    fwd.start()
    with server(b"x") as target:
        fwd.point_to(*target)
        conn = socket.create_connection(("127.0.0.1", fwd.port), timeout=5)
        assert ask(conn) == b"x"
        fwd.close()
        assert conn.recv(10) == b""  # ended, not left hanging
        conn.close()
    Forwarder("127.0.0.1", fwd.port).close()  # the port is free again


def test_a_busy_port_is_a_clear_error_naming_another() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(EngineError) as caught:
            Forwarder("127.0.0.1", port)
    assert f"port {port} is already in use" in caught.value.message
    assert f"--watch --port {port + 1}" in (caught.value.fix or "")


def test_an_address_this_machine_lacks_is_not_called_a_busy_port() -> None:
    """192.0.2.1 (TEST-NET-1) is on no interface here: the bind fails with
    EADDRNOTAVAIL, which the message says as such, with a fix that names an address."""
    with pytest.raises(EngineError) as caught:
        Forwarder("192.0.2.1", 0)
    assert "already in use" not in caught.value.message
    assert caught.value.message.startswith("cannot listen on 192.0.2.1 port 0 (")
    assert caught.value.fix is not None and "127.0.0.1" in caught.value.fix
    assert isinstance(caught.value.__cause__, OSError)


# -- which saves count, and as what -------------------------------------------------------


def inputs_for(root: Path, lock: Path | None = None) -> Inputs:
    (root / ".dockerignore").write_text("docs/\n")
    files = [root / "requirements.txt", *([lock] if lock else [])]
    return Inputs(root, load_ignore_rules(root), frozenset(files), root / "pyproject.toml")


@pytest.mark.parametrize(
    ("relpath", "kind"),
    [
        ("pyproject.toml", "config"),
        ("requirements.txt", "requirements"),
        (".dockerignore", "ignore rules"),
        ("shop/static/shop/site.css", "static"),
        ("assets/app.js", "static"),
        ("shop/views.py", "code"),
        ("templates/index.html", "code"),
        ("docs/guide.md", None),  # left out by .dockerignore
        ("shop/__pycache__/views.cpython-311.pyc", None),  # by the defaults
        (".git/index", None),
        (".env", None),  # a secret the image leaves out
        ("shop/.views.py.swp", None),  # editors' temporary files
        ("shop/views.py~", None),
        ("shop/.#views.py", None),
    ],
)
def test_each_save_has_a_kind_or_does_not_count(
    tmp_path: Path, relpath: str, kind: str | None
) -> None:
    assert inputs_for(tmp_path).kind(tmp_path / relpath) == kind


def test_a_lock_outside_the_app_is_watched_and_counts(tmp_path: Path) -> None:
    app = tmp_path / "members" / "web"
    app.mkdir(parents=True)
    lock = tmp_path / "uv.lock"
    inputs = inputs_for(app, lock)
    assert inputs.paths() == [app, lock]
    assert inputs.kind(lock) == "requirements"
    assert inputs.kind(tmp_path / "other.py") is None


def test_a_burst_of_saves_is_one_change_set_timed_from_the_last_save(tmp_path: Path) -> None:
    inputs = inputs_for(tmp_path)
    views, css = tmp_path / "views.py", tmp_path / "site.css"
    views.write_text("a")
    css.write_text("b")
    os.utime(views, (1000.0, 1000.0))
    os.utime(css, (1005.0, 1005.0))
    first = change_set(inputs, [str(views), str(tmp_path / "docs" / "x.md")], arrived=2000.0)
    assert first == ChangeSet(("views.py",), ("code",), 1000.0)
    pending: queue.Queue[ChangeSet] = queue.Queue()
    pending.put(change_set(inputs, [str(css)], arrived=2000.0))  # type: ignore[arg-type]
    gone = change_set(inputs, [str(tmp_path / "requirements.txt")], arrived=1010.0)
    pending.put(gone)  # type: ignore[arg-type]
    merged = drain(first, pending)  # type: ignore[arg-type]
    assert merged.files == ("requirements.txt", "site.css", "views.py")
    assert merged.kinds == ("requirements", "static", "code")
    assert merged.saved_at == 1010.0  # a deleted file: when the watcher saw it go
    assert merged.describe() == "requirements, static, code changed (3 files)"
    assert pending.empty()
    assert change_set(inputs, [str(tmp_path / "docs" / "x.md")], 1.0) is None


def test_the_watcher_reports_a_save_and_ignores_what_the_image_leaves_out(
    tmp_path: Path,
) -> None:
    (tmp_path / "docs").mkdir()
    with Watcher(inputs_for(tmp_path), debounce_ms=400, step_ms=50) as watcher:
        watcher.wait_ready()
        (tmp_path / "docs" / "guide.md").write_text("left out")
        (tmp_path / "views.py").write_text("counts")
        found = next(watcher.next(poll=0.1))
    assert found.files == ("views.py",)
    assert found.kinds == ("code",)


# -- reload decisions ---------------------------------------------------------------------


class Answering(FakeEngine):
    """A fake engine whose app containers are real HTTP servers on 127.0.0.1 (or never
    answer, for the images in ``broken``)."""

    def __init__(self, broken: set[str] | None = None) -> None:
        super().__init__()
        self.broken = broken or set()
        self.servers: dict[str, http.server.ThreadingHTTPServer] = {}
        self.stopped: list[str] = []

    def start_app(
        self, image: str, name: str, host_port: int, env: Any = None, host_ip: str = "127.0.0.1"
    ) -> str:
        super().start_app(image, name, host_port, env, host_ip)
        cid = f"c-{name}"
        if image not in self.broken:
            body = image.encode()

            class Handler(http.server.BaseHTTPRequestHandler):
                def do_GET(self) -> None:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, *args: Any) -> None:
                    pass

            srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self.servers[cid] = srv
        return cid

    def published_port(self, container_id: str) -> int | None:
        srv = self.servers.get(container_id)
        return int(srv.server_address[1]) if srv else None

    def container_state(self, container_id: str) -> tuple[bool, int | None]:
        return (True, None) if container_id in self.servers else (False, 1)

    def logs_tail(self, container_id: str, lines: int = 40) -> str:
        return "ModuleNotFoundError: No module named 'oops'"

    def stop_app(self, container_id: str, timeout: int = 10) -> int | None:
        self.stopped.append(container_id)
        srv = self.servers.pop(container_id, None)
        if srv is not None:
            srv.shutdown()
            srv.server_close()
        return 0


class Loop(WatchLoop):
    """The loop with its builds given: an image id, or an error, per build."""

    results: list[str | WarpdriveError]
    lines: list[str]

    def build(self, out: Any) -> tuple[Config, ImageResult]:
        got = self.results.pop(0)
        if isinstance(got, WarpdriveError):
            out("pip: no matching distribution")
            raise got
        cfg = Config(self.project_dir, "app", "app:latest", "base", "base", ())
        return cfg, ImageResult("app:latest", got, False, True, 1, 1, 0.1)


def loop_with(tmp_path: Path, engine: FakeEngine, results: list[str | WarpdriveError]) -> Loop:
    lines: list[str] = []
    loop = Loop(tmp_path, {}, engine, lines.append, RunOptions(port=0))
    loop.results, loop.lines = results, lines
    return loop


CODE = ChangeSet(("views.py",), ("code",), time.time())


def test_a_reload_switches_to_the_new_container_and_stops_the_old(
    tmp_path: Path, forwarder: Forwarder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    engine = Answering()
    engine.images["img-1"] = ImageInfo("img-1", (), {}, 1, 1, "")  # untagged by the build
    engine.images["img-2"] = ImageInfo("img-2", (), {}, 1, 1, "", tags=("mine:kept",))
    loop = loop_with(tmp_path, engine, ["img-1", "img-2", "img-3"])
    cfg, first = loop.build(loop.out)
    loop.serving = loop.launch(cfg, first.image_id)
    forwarder.point_to(*loop.serving.target)
    assert loop.reload(forwarder, CODE) is not None
    assert forwarder.target == loop.serving.target
    assert loop.serving.image_id == "img-2"
    loop.settle()  # the old one is stopped in a thread
    assert engine.stopped == ["c-app-run-watch-1"]
    assert engine.removed == ["img-1"]  # the old image, untagged now
    assert list(loop.started) == ["c-app-run-watch-2"]
    assert engine.started_apps[-1][3] == {"WEB_CONCURRENCY": "1"}  # one worker boots fastest
    line = loop.lines[-1]
    assert line.startswith("warpdrive: reload 1: code changed (views.py) -> rebuilt app layer;")
    loop.reload(forwarder, CODE)
    loop.settle()
    assert engine.removed == ["img-1"]  # another tag names img-2: it stays
    loop.stop_all()
    assert loop.started == {}


@pytest.mark.parametrize("failure", ["build", "start"])
def test_a_failed_build_or_start_keeps_the_old_one_serving(
    tmp_path: Path, forwarder: Forwarder, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    engine = Answering(broken={"img-broken"})
    second: str | WarpdriveError = (
        WarpdriveError("pip failed") if failure == "build" else "img-broken"
    )
    loop = loop_with(tmp_path, engine, ["img-1", second, "img-fixed"])
    cfg, first = loop.build(loop.out)
    loop.serving = loop.launch(cfg, first.image_id)
    forwarder.point_to(*loop.serving.target)
    before = loop.serving
    loop.reload(forwarder, CODE)
    output = "\n".join(loop.lines)
    assert loop.serving == before and forwarder.target == before.target
    assert "keeps serving" in output
    if failure == "build":
        assert "pip: no matching distribution" in output and "pip failed" in output
    else:
        assert "No module named 'oops'" in output  # the new container's last output
        assert engine.stopped == ["c-app-run-watch-2"]  # and it is removed
    assert list(loop.started) == ["c-app-run-watch-1"]
    loop.reload(forwarder, CODE)  # the next save tries again
    assert loop.serving.image_id == "img-fixed"
    loop.stop_all()
    assert loop.started == {}


def test_the_reload_line_says_what_changed_what_was_rebuilt_and_how_long() -> None:
    changes = ChangeSet(("requirements.txt",), ("requirements",), 100.0)
    what = "wheelhouse (+1 wheels), deps layer, app layer"
    line = reload_line(3, changes, what, 2.345, 1.5, 0.75)
    assert line == (
        "warpdrive: reload 3: requirements changed (requirements.txt) -> rebuilt wheelhouse "
        "(+1 wheels), deps layer, app layer; new container answered 2.35 s after the save "
        "(build 1.50 s, start 0.75 s)"
    )


def test_watch_with_detach_is_refused_before_anything_starts(tmp_path: Path) -> None:
    from nox_warpdrive.sessions import _ArgError, run_container

    with pytest.raises(_ArgError, match="--watch stays in the foreground: drop --detach"):
        run_container(tmp_path, ["--watch", "--detach"], print)


def test_watch_connects_to_the_engine_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One connection serves the sweep of leftovers and the whole loop."""
    import importlib

    from nox_warpdrive import watch

    sessions = importlib.import_module("nox_warpdrive.sessions")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "0"\n')
    (tmp_path / "requirements.txt").write_text("")
    made: list[FakeEngine] = []

    def connect_engine() -> FakeEngine:
        made.append(FakeEngine())
        return made[-1]

    given: list[object] = []
    monkeypatch.setattr(sessions, "connect_engine", connect_engine)
    monkeypatch.setattr(watch, "watch_run", lambda _dir, _over, engine, *a: given.append(engine))
    sessions.run_container(tmp_path, ["--watch"], print)
    assert len(made) == 1 and given == made


def test_each_build_reads_pyproject_toml_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nox_warpdrive.watch import loop as loop_module

    seen: list[str] = []

    def fake_build(cfg: Config, engine: Any, out: Any) -> ImageResult:
        seen.append(cfg.image)
        return ImageResult(cfg.image, "img", False, True, 1, 1, 0.1)

    monkeypatch.setattr(loop_module, "build_image", fake_build)
    (tmp_path / "requirements.txt").write_text("")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "shop"\n\n[tool.warpdrive]\nimage = "shop:one"\n')
    loop = WatchLoop(tmp_path, {}, FakeEngine(), print, RunOptions(port=0))
    loop.build(print)
    pyproject.write_text('[project]\nname = "shop"\n\n[tool.warpdrive]\nimage = "shop:two"\n')
    loop.build(print)
    assert seen == ["shop:one", "shop:two"]


def test_a_watcher_that_fails_is_a_clear_error_with_a_fix(tmp_path: Path) -> None:
    watcher = Watcher(inputs_for(tmp_path))
    watcher.error = OSError(28, "inotify watch limit reached")
    with pytest.raises(WarpdriveError) as caught:
        next(watcher.next(poll=0.01))
    assert f"cannot watch {tmp_path} for changes" in caught.value.message
    assert "WATCHFILES_FORCE_POLLING=1" in (caught.value.fix or "")
    assert isinstance(caught.value.__cause__, OSError)


def test_the_static_reuse_the_reload_line_names_is_what_the_build_says() -> None:
    import inspect

    from nox_warpdrive import image
    from nox_warpdrive.runtime import assemble
    from nox_warpdrive.watch import loop as loop_module

    assert loop_module._STATIC_REUSED in inspect.getsource(image)
    assert '"manage.py", "collectstatic"' in inspect.getsource(assemble)
    result = ImageResult("app:latest", "img", False, True, 1, 1, 0.1)
    ran = ["warpdrive: $ /opt/app-root/venv/bin/python manage.py collectstatic --noinput"]
    assert loop_module.rebuilt(result, ran) == "app layer, collectstatic ran"
    reused = ["warpdrive: static inputs unchanged; reusing the collected static files"]
    assert loop_module.rebuilt(result, reused) == "app layer, static files reused"
    assert loop_module._RECOLLECTED in inspect.getsource(image)
    again = ["warpdrive: 1 static file(s) changed (home/static/a.css); re-collected only those"]
    assert loop_module.rebuilt(result, again) == "app layer, changed static files re-collected"


def test_a_temporary_file_that_came_and_went_is_not_a_change(tmp_path: Path) -> None:
    """`sed -i` writes a temporary file beside the one it edits and renames it over it:
    the batch names both, the reload is of one file."""
    saved = tmp_path / "wsgi.py"
    saved.write_text("x = 1\n")
    temp = str(tmp_path / "sedAbC123")
    gone = str(tmp_path / "old.py")  # deleted for good: a change
    batch = [
        (watchfiles.Change.added, temp),
        (watchfiles.Change.modified, temp),
        (watchfiles.Change.deleted, temp),
        (watchfiles.Change.modified, str(saved)),
        (watchfiles.Change.deleted, gone),
    ]
    assert lasting(batch) == sorted([str(saved), gone])
    # a file made and still there is a change
    (tmp_path / "new.py").write_text("")
    made = [(watchfiles.Change.added, str(tmp_path / "new.py"))]
    assert lasting(made) == [str(tmp_path / "new.py")]
