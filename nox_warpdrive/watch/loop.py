"""`nox -s run -- --watch`: build, run, then on every saved change build a real image
again, start it beside the one serving, switch the traffic once it answers, stop the old.

What serves is always an image the build made (no files synced into a running
container): what you test is what you ship. The host port is held by this process
(forward.py), so it never refuses a connection during a switch. A failed build, or a new
container that exits or never answers, leaves the old one serving; the error (with the
container's last output) is printed and the next save tries again. Ctrl-C or SIGTERM
stops and removes every container the loop started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, load_config
from ..engine import Engine, Output
from ..errors import WarpdriveError
from ..image import ImageResult, build_image
from ..run import RunOptions, engine_host, published_on, wait_http
from .changes import ChangeSet, Inputs, Watcher
from .forward import Forwarder, wait_drained

#: how long a new container may take to answer before the loop gives up on it
READY_TIMEOUT = 60.0
#: how long the old container's open connections may run on after a switch
DRAIN_SECONDS = 1.0
#: the variables every container of the loop gets unless --env sets them: one server
#: worker (the launcher's default is two a CPU; each imports the app as it boots, and on
#: a small machine four booting side by side take seconds longer to give a first answer)
WATCH_ENV = {"WEB_CONCURRENCY": "1"}
#: what the build says when it reuses the collected static files (image.py)
_STATIC_REUSED = "reusing the collected static files"
#: what the build says when it copies only the changed static files again (image.py)
_RECOLLECTED = "re-collected only those"
#: what the build's output shows when collectstatic runs (runtime/assemble.py)
_COLLECTSTATIC = "manage.py collectstatic"


@dataclass(frozen=True)
class Serving:
    """One app container the loop started: its id and name, and where it answers."""

    container_id: str
    name: str
    image_id: str
    target: tuple[str, int]


@dataclass
class WatchLoop:
    """The state of one watch run: the containers it started (all removed at the end),
    the one serving, and how many reloads it made."""

    project_dir: Path
    overrides: dict[str, str]
    engine: Engine
    out: Output
    options: RunOptions
    started: dict[str, str] = dataclasses.field(default_factory=dict)
    #: every name a container was started under (a signal may come before its id does)
    names: list[str] = dataclasses.field(default_factory=list)
    #: the threads stopping replaced containers (the next save need not wait for them)
    retiring: list[threading.Thread] = dataclasses.field(default_factory=list)
    serving: Serving | None = None
    reloads: int = 0
    count: int = 0

    # -- one container ------------------------------------------------------------------

    def launch(self, cfg: Config, image_id: str) -> Serving:
        """Start ``image_id`` on an ephemeral port and wait until it answers; a
        WarpdriveError with its last output (and it removed) when it does not."""
        self.count += 1
        name = f"{self.options.name or cfg.name + '-run'}-watch-{self.count}"
        host_ip, host = published_on(None, engine_host())
        self.names.append(name)
        env = {**WATCH_ENV, **self.options.env}
        cid = self.engine.start_app(image_id, name, 0, env, host_ip)
        self.started[cid] = name
        try:
            port = self.engine.published_port(cid)
            if port is None:
                raise WarpdriveError("the container stopped before it answered")
            alive = lambda: self.engine.container_state(cid)[0]  # noqa: E731
            wait_http(f"http://{host}:{port}/", alive, READY_TIMEOUT, interval=0.05)
        except WarpdriveError as exc:
            tail = self.engine.logs_tail(cid, 80).rstrip()
            with contextlib.suppress(WarpdriveError):
                self.stop(cid)  # else stop_all tries again
            raise WarpdriveError(
                f"the new container did not start: {exc.message}; its last output:\n{tail}",
                fix="read its output above; `docker run --rm -it IMAGE sh` lets you look inside",
            ) from exc
        return Serving(cid, name, image_id, (host, port))

    def stop(self, container_id: str) -> None:
        """Stop and remove one container the loop started (gracefully: open requests end)."""
        self.engine.stop_app(container_id, timeout=3)
        name = self.started.pop(container_id, None)  # kept for stop_all when it failed
        if name in self.names:
            self.names.remove(name)

    def retire(self, forwarder: Forwarder, old: Serving) -> None:
        """Stop a replaced container in a thread, once its open connections had a
        moment to end, and remove its image when no tag names it (the build could not
        while the container used it)."""

        def run() -> None:
            wait_drained(forwarder, old.target, DRAIN_SECONDS, time.sleep)
            with contextlib.suppress(WarpdriveError):
                self.stop(old.container_id)
                image = self.engine.image(old.image_id)
                if image is not None and not image.tags:  # as image.py's _move_tag does
                    self.engine.remove_image(old.image_id)

        thread = threading.Thread(target=run, name="warpdrive-retire", daemon=True)
        self.retiring = [t for t in self.retiring if t.is_alive()] + [thread]
        thread.start()

    def settle(self) -> None:
        """Wait for the replaced containers to be stopped."""
        for thread in self.retiring:
            thread.join(timeout=60)
        self.retiring = []

    def stop_all(self) -> None:
        """Every container the loop started, removed (a failure to remove one is said,
        and the others are still removed)."""
        self.settle()
        for cid, name in list(self.started.items()):
            try:
                self.stop(cid)
            except WarpdriveError as exc:
                self.out(f"warpdrive: could not remove {name}: {exc.message}")
        for name in self.names:  # one whose start a signal cut short (only ours go)
            with contextlib.suppress(WarpdriveError):
                self.engine.remove_app(name)
        self.names.clear()

    # -- builds --------------------------------------------------------------------------

    def build(self, out: Output) -> tuple[Config, ImageResult]:
        cfg = load_config(self.project_dir, self.overrides)  # pyproject.toml read again
        return cfg, build_image(cfg, self.engine, out)

    def reload(self, forwarder: Forwarder, changes: ChangeSet) -> Config | None:
        """One reload; the config it built with (None when the build failed: the old
        container serves on)."""
        lines: list[str] = []
        began = time.time()
        try:
            cfg, result = self.build(lines.append)
        except WarpdriveError as exc:
            tail = "\n".join(lines[-15:])
            self.out(
                f"warpdrive: {changes.describe()}: the build failed, the previous "
                f"version keeps serving:\n{tail}\n{exc}"
            )
            return None
        old = self.serving
        if old is not None and result.image_id == old.image_id:
            self.out(f"warpdrive: {changes.describe()}: the image is the same, nothing to switch")
            return cfg
        built = time.time()
        try:
            new = self.launch(cfg, result.image_id)
        except WarpdriveError as exc:
            self.out(
                f"warpdrive: {changes.describe()}: {exc.message}\n"
                "warpdrive: the previous version keeps serving; save again to retry"
            )
            return cfg
        answered = time.time()
        forwarder.point_to(*new.target)
        self.serving = new
        self.reloads += 1
        spans = (answered - changes.saved_at, built - began, answered - built)
        self.out(reload_line(self.reloads, changes, rebuilt(result, lines), *spans))
        if old is not None:
            self.retire(forwarder, old)
        return cfg


def rebuilt(result: ImageResult, lines: list[str]) -> str:
    """What a build remade, in a few words: `app layer`, `wheelhouse (+2 wheels), deps
    layer, app layer`; `static files reused`, `changed static files re-collected` or
    `collectstatic ran` when the build said so."""
    parts: list[str] = []
    wh = result.wheelhouse
    if wh is not None and wh.new:
        parts.append(f"wheelhouse (+{len(wh.new)} wheels)")
    parts.append("app layer" if result.deps_reused else "deps layer, app layer")
    if any(_STATIC_REUSED in line for line in lines):
        parts.append("static files reused")
    elif any(_RECOLLECTED in line for line in lines):
        parts.append("changed static files re-collected")
    elif any(_COLLECTSTATIC in line for line in lines):
        parts.append("collectstatic ran")
    return ", ".join(parts)


def reload_line(
    number: int, changes: ChangeSet, what: str, seconds: float, build: float, start: float
) -> str:
    """The one line a reload prints: the time from the save to the first answer, and
    the build's and the new container's shares of it (the rest: the debounce)."""
    return (
        f"warpdrive: reload {number}: {changes.describe()} -> rebuilt {what}; "
        f"new container answered {max(seconds, 0.0):.2f} s after the save "
        f"(build {build:.2f} s, start {start:.2f} s)"
    )


def watch_run(
    project_dir: Path,
    overrides: dict[str, str],
    engine: Engine,
    out: Output,
    options: RunOptions,
) -> int:
    """Run the loop until a signal (KeyboardInterrupt); the number of reloads made.
    Every container it started is removed on the way out, whatever ends it."""
    loop = WatchLoop(project_dir, overrides, engine, out, options)
    host_ip = options.host_ip or "127.0.0.1"
    forwarder = Forwarder(host_ip, options.port)  # held from the start: fails early
    try:
        cfg, result = loop.build(out)
        out(f"warpdrive: {result.summary()}")
        loop.serving = loop.launch(cfg, result.image_id)
        forwarder.point_to(*loop.serving.target)
        forwarder.start()
        shown = "127.0.0.1" if host_ip in ("0.0.0.0", "::") else host_ip
        url = f"http://{shown}:{forwarder.port}/"
        said = f"warpdrive: {cfg.image} answers at {url}; watching {cfg.project_dir} (Ctrl-C stops)"
        inputs = Inputs.of(cfg)
        while True:
            inputs = watch(loop, forwarder, inputs, said)
            said = ""
    except KeyboardInterrupt:
        out("warpdrive: stopping")
    finally:
        with contextlib.suppress(Exception):
            forwarder.close()
        loop.stop_all()
    plural = "" if loop.reloads == 1 else "s"
    out(f"warpdrive: stopped; {loop.reloads} reload{plural}, every container removed")
    return loop.reloads


def watch(loop: WatchLoop, forwarder: Forwarder, inputs: Inputs, said: str = "") -> Inputs:
    """Reload on every change set until the watched paths change (pyproject.toml named
    another requirement or lock file outside the app): the new inputs, to watch anew.
    A change of the ignore rules or the config only changes the filter. ``said``: the
    line to print once the watcher runs (a save right after it is seen)."""
    with Watcher(inputs) as watcher:
        watcher.wait_ready()
        if said:
            loop.out(said)
        for changes in watcher.next():
            cfg = loop.reload(forwarder, changes)
            if cfg is None or not {"config", "ignore rules"} & set(changes.kinds):
                continue
            new = Inputs.of(cfg)
            if new.paths() != inputs.paths():
                return new
            watcher.inputs = new
    raise AssertionError("Watcher.next never ends")  # pragma: no cover
