"""``nox -s bench -- --watch``: the inner loop, edit -> see, timed.

N edits of a view (the example's ``/health/``), each timed from the file write to the
first HTTP answer that carries the new text, with a client polling the same URL every
50 ms through the whole run and counting what failed (no answer, a refused connection, an
error status). Two ways:

- **nox-warpdrive**: ``nox -s run -- --watch --port P`` (a new image per save, the port
  held by nox and switched to the new container once it answers);
- **uv peer**: what a user without compose watch does with uv's recommended Dockerfile
  (bench/peers/uv.Dockerfile): ``docker build``, ``docker rm -f`` the old container,
  ``docker run -d -p P:8080`` the new one.

The example's deploy hook (``migrate`` at every container start) is removed from both
copies: ``/health/`` touches no database and the peer's image runs no hook, so both
serve the same view the same way.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .apps import App
from .common import PROJECT_NAME, RESULTS_DIR, BenchError, interrupt, out
from .dockercli import Docker
from .matrix import cleanup
from .peers import Peer
from .tools import Tool, Warpdrive

#: the file and the text an edit changes, in examples/wagtail-site
VIEW_FILE = "mysite/urls.py"
VIEW_TEXT = 'HttpResponse("ok"'
VIEW_PATH = "/health/"
#: a static file the bench adds to both copies, edited after the view (nox-warpdrive
#: only: the peer's image has no static file server, Django serves none with DEBUG off)
STATIC_FILE = "home/static/home/bench.css"
STATIC_PATH = "/static/home/bench.css"
STATIC_EDITS = 3
#: how long one edit may take to be served before the bench gives up on it
EDIT_TIMEOUT = 180.0
#: the pause after a served edit, so that the old container is stopped before the next
SETTLE = 2.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, timeout: float = 5.0) -> str | None:
    """The body of a 200 answer; None for anything else."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return bytes(resp.read()).decode("utf-8", "replace")
    except (OSError, urllib.error.URLError, ValueError):
        return None


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (p95 of 20 values is the 19th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Poller:
    """GET ``url`` every 50 ms in a thread, from its start to its stop; counts answers
    and failures (with the first few failures' reasons)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failed = 0
        self.reasons: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with _OPENER.open(self.url, timeout=10) as resp:
                    resp.read()
                self.ok += 1
            except Exception as exc:  # every kind of failure counts
                self.failed += 1
                if len(self.reasons) < 5:
                    self.reasons.append(repr(exc)[:120])
            self._stop.wait(0.05)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@dataclass
class LoopResult:
    """One tool's edits: seconds from each write to the new text served, and the poller."""

    tool: str
    seconds: list[float] = field(default_factory=list)
    #: the same for edits of a static file (collectstatic in the build)
    static_seconds: list[float] = field(default_factory=list)
    polls_ok: int = 0
    polls_failed: int = 0
    failures: list[str] = field(default_factory=list)
    #: what the tool itself said of each reload (nox-warpdrive's reload lines)
    said: list[str] = field(default_factory=list)

    def row(self) -> str:
        s, st = self.seconds, self.static_seconds
        static = f"{max(st):.2f} ({len(st)})" if st else "–"
        return (
            f"| {self.tool} | {len(s)} | {percentile(s, 50):.2f} | {percentile(s, 95):.2f} | "
            f"{max(s, default=math.nan):.2f} | {static} | {self.polls_failed} of "
            f"{self.polls_ok + self.polls_failed} |"
        )


@contextlib.contextmanager
def polled(url: str, result: LoopResult) -> Iterator[None]:
    """The block's edits with ``url`` polled throughout; what the poller saw goes into
    ``result`` once the block has ended."""
    poller = Poller(url).start()
    try:
        yield
    finally:
        poller.stop()
    result.polls_ok, result.polls_failed, result.failures = poller.ok, poller.failed, poller.reasons


def edit_view(app: Path, text: str) -> None:
    """The view answers ``text`` from now on (one line changed, written at once)."""
    path = app / VIEW_FILE
    source = path.read_text()
    start = source.index('HttpResponse("') + len('HttpResponse("')
    end = source.index('"', start)
    path.write_text(source[:start] + text + source[end:])


def timed_edits(
    url: str,
    edits: int,
    write: Callable[[int], str],
    apply: Callable[[], None],
    result: LoopResult,
    into: list[float],
) -> None:
    """``edits`` edits, each timed from its write (``write(n)`` makes edit n and returns
    the text it makes ``url`` answer) to the first answer carrying that text, appended
    to ``into``; ``apply`` is what the tool needs done after a write (nothing for a
    watcher)."""
    what = "static" if into is result.static_seconds else "edit"
    for n in range(1, edits + 1):
        text = write(n)
        began = time.perf_counter()
        apply()
        while text not in (fetch(url) or ""):
            if time.perf_counter() - began > EDIT_TIMEOUT:
                raise BenchError(f"{result.tool}: {what} {n} not served in {EDIT_TIMEOUT:.0f} s")
            time.sleep(0.01)
        into.append(time.perf_counter() - began)
        out(f"  {result.tool:<14} {what} {n:>2}: served in {into[-1]:.2f} s")
        time.sleep(SETTLE)


def view_writer(app: Path, tag: str) -> Callable[[int], str]:
    def write(n: int) -> str:
        text = f"ok-{tag}-{n}"
        edit_view(app, text)
        return text

    return write


def static_writer(app: Path, tag: str) -> Callable[[int], str]:
    def write(n: int) -> str:
        text = f"/* bench {tag} static {n} */"
        (app / STATIC_FILE).write_text(text + "\n")
        return text

    return write


def prepared_copy(tool: Tool, run: int) -> None:
    """The tool's cold copy of the example, without the deploy hook (see the module)."""
    tool.reset(run)
    (tool.app / ".warpdrive" / "action_hooks" / "deploy").unlink(missing_ok=True)
    (tool.app / STATIC_FILE).parent.mkdir(parents=True, exist_ok=True)
    (tool.app / STATIC_FILE).write_text("/* bench */\n")
    if VIEW_TEXT not in (tool.app / VIEW_FILE).read_text():
        raise BenchError(f"{VIEW_FILE} has no {VIEW_TEXT}: the watch bench edits that view")


def warpdrive_loop(tool: Warpdrive, edits: int, tag: str, logs: Path) -> LoopResult:
    """`nox -s run -- --watch` in the copy; the edits; SIGINT; no container left."""
    prepared_copy(tool, 1)
    port = free_port()
    url = f"http://127.0.0.1:{port}{VIEW_PATH}"
    cmd = [sys.executable, "-m", "nox", "--no-color", "-s", "run", "--", "--watch"]
    lines: list[str] = []
    log = (logs / "watch-nox-warpdrive.log").open("w")
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        cwd=tool.app,
        env=tool.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    stdout = proc.stdout

    def read() -> None:
        for line in stdout:
            lines.append(line)
            log.write(line)
            log.flush()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    result = LoopResult("nox-warpdrive")
    try:
        deadline = time.monotonic() + 1800
        while not any("watching" in line for line in lines):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"`nox -s run -- --watch` never served:\n{''.join(lines[-20:])}")
            time.sleep(0.2)
        out(f"  nox-warpdrive  cold build and first container up; editing {VIEW_FILE}")
        with polled(url, result):
            write = view_writer(tool.app, tag)
            timed_edits(url, edits, write, lambda: None, result, result.seconds)
            static_url = f"http://127.0.0.1:{port}{STATIC_PATH}"
            write = static_writer(tool.app, tag)
            timed_edits(
                static_url, STATIC_EDITS, write, lambda: None, result, result.static_seconds
            )
    finally:
        interrupt(proc, 120)
        reader.join(timeout=10)
        log.close()
    result.said = [line.strip() for line in lines if "warpdrive: reload " in line]
    left = tool.docker.run("ps", "-aq", "--filter", f"name={PROJECT_NAME}-run-watch", check=False)
    if left.stdout.split():
        raise BenchError(f"`nox -s run -- --watch` left containers: {left.stdout.split()}")
    return result


def peer_loop(peer: Peer, edits: int, tag: str, logs: Path) -> LoopResult:
    """The uv peer: cold build, `docker run`; then per edit `docker build`, `docker rm -f`
    the old container, `docker run` the new one."""
    prepared_copy(peer, 1)
    log = logs / "watch-uv.log"
    peer.build(log)
    port = free_port()
    url = f"http://127.0.0.1:{port}{VIEW_PATH}"
    name = f"bench-uv-watch-{tag}"
    docker = peer.docker

    def restart() -> None:
        peer.build(log)
        docker.run("rm", "--force", name, check=False)
        docker.run("run", "--detach", "--name", name, "-p", f"127.0.0.1:{port}:8080", peer.tag)

    result = LoopResult("uv peer")
    try:
        docker.run("run", "--detach", "--name", name, "-p", f"127.0.0.1:{port}:8080", peer.tag)
        deadline = time.monotonic() + 300
        while fetch(url) is None:
            if time.monotonic() > deadline:
                raise BenchError("the uv peer's first container never answered")
            time.sleep(0.1)
        out("  uv peer        cold build and first container up; editing the same view")
        with polled(url, result):
            timed_edits(url, edits, view_writer(peer.app, tag), restart, result, result.seconds)
    finally:
        docker.run("rm", "--force", name, check=False)
    return result


def table(results: Sequence[LoopResult]) -> str:
    head = (
        "| tool | edits | p50 s | p95 s | max s | static edit, max s (n) | failed polls (50 ms) |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    return "\n".join([head, *(r.row() for r in results)])


def main_watch(app: App, edits: int, docker: Docker, ca: Path, command: str, revision: str) -> int:
    """The watch bench; 1 when it failed (after cleaning up), 0 otherwise."""
    if not app.is_example:
        raise BenchError("--watch edits examples/wagtail-site's /health/ view: no --app/--files")
    tag = uuid.uuid4().hex[:6]
    workdir = Path(tempfile.mkdtemp(prefix="warpdrive-bench-watch-"))
    logs = RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cache_before = {r.get("ID", "") for r in docker.build_cache()}
    wd = Warpdrive(docker, workdir, app)
    uv = Peer("uv", docker, workdir, app, ca, tag)
    out(f"bench --watch: {edits} edits of {VIEW_FILE} ({VIEW_PATH}); nox-warpdrive {revision}")
    results: list[LoopResult] = []
    error: str | None = None
    try:
        wd.snapshot()
        results.append(warpdrive_loop(wd, edits, tag, logs))
        results.append(peer_loop(uv, edits, tag, logs))
    except BenchError as exc:
        error = str(exc)
    except KeyboardInterrupt:
        error = "interrupted"
    finally:
        cleanup([wd, uv], cache_before, workdir)
    text = table(results)
    data = {
        "command": command,
        "revision": revision,
        "cpus": os.cpu_count(),
        "error": error,
        "results": [asdict(r) for r in results],
    }
    (RESULTS_DIR / "watch.json").write_text(json.dumps(data, indent=2) + "\n")
    out("")
    out(text)
    for r in results:
        for reason in r.failures:
            out(f"  {r.tool}: failed poll: {reason}")
    if error is not None:
        sys.stderr.write(f"bench --watch failed: {error}\n")
        return 1
    out(f"wrote {RESULTS_DIR / 'watch.json'}")
    return 0
