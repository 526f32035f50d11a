"""Which saved files matter to the image, what kind of change each is, and the change
sets the watcher hands the loop (merged while a build runs: one rebuild for a burst).

A file the build leaves out of the image (the build's own ignore rules: the defaults,
``.dockerignore``) never triggers; neither does an editor's swap or backup file. The
input files (requirement files, the lock file, ``pyproject.toml``) always do, wherever
they are (a workspace's lock may sit above the app).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from ..config import Config
from ..errors import WarpdriveError
from ..source.ignore import IgnoreRules, is_excluded, load_ignore_rules

#: the kinds, in the order a line names them (the widest first)
KINDS = ("config", "requirements", "ignore rules", "static", "code")

#: editors' temporary files (vim swap, emacs locks and backups, JetBrains' safe write)
_EDITOR_TEMP = re.compile(r"(\.sw.|~|\.___jb_...___)$|^\.#|^\.DS_Store$|^flycheck_|^4913$")

#: what a static file looks like when it is not under a directory named static
_STATIC_SUFFIXES = frozenset(
    [
        ".css",
        ".js",
        ".map",
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".svg",
        ".ico",
        ".webp",
        ".woff",
        ".woff2",
        ".ttf",
        ".eot",
    ]
)


@dataclass(frozen=True)
class Inputs:
    """What the loop watches: the app's directory under its ignore rules, and the input
    files by their absolute paths (those outside the directory watched one by one)."""

    root: Path
    rules: IgnoreRules
    requirements: frozenset[Path]
    pyproject: Path

    @classmethod
    def of(cls, cfg: Config) -> Inputs:
        files = [*cfg.requirement_files, *([cfg.lock_file] if cfg.lock_file else [])]
        return cls(
            cfg.project_dir,
            load_ignore_rules(cfg.project_dir),
            frozenset(Path(f).resolve() for f in files),
            (cfg.project_dir / "pyproject.toml").resolve(),
        )

    def paths(self) -> list[Path]:
        """What to give the watcher: the directory, and each input file outside it."""
        outside = [p for p in self.requirements if not _under(p, self.root)]
        return [self.root, *sorted(outside)]

    def kind(self, path: Path) -> str | None:
        """The kind of change a save of ``path`` is; None when it does not matter."""
        path = Path(os.path.abspath(path))
        if _EDITOR_TEMP.search(path.name):
            return None
        if path == self.pyproject:
            return "config"
        if path in self.requirements or Path(os.path.realpath(path)) in self.requirements:
            return "requirements"
        if not _under(path, self.root):
            return None
        rel = path.relative_to(self.root).as_posix()
        if rel == ".dockerignore":
            return "ignore rules"
        if is_excluded(self.rules, rel):
            return None
        parts = rel.split("/")
        if "static" in parts[:-1] or path.suffix.lower() in _STATIC_SUFFIXES:
            return "static"
        return "code"


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass(frozen=True)
class ChangeSet:
    """The saved files of one reload (relative to the app where they are in it), their
    kinds, and when the last of them was saved (its mtime: the write itself, not when the
    watcher saw it; the arrival time for a deleted file)."""

    files: tuple[str, ...]
    kinds: tuple[str, ...]
    saved_at: float

    def merged(self, other: ChangeSet) -> ChangeSet:
        files = tuple(sorted({*self.files, *other.files}))
        kinds = tuple(k for k in KINDS if k in {*self.kinds, *other.kinds})
        return ChangeSet(files, kinds, max(self.saved_at, other.saved_at))

    def describe(self) -> str:
        """`code changed (app/views.py)`, `requirements, code changed (3 files)`."""
        shown = self.files[0] if len(self.files) == 1 else f"{len(self.files)} files"
        return f"{', '.join(self.kinds)} changed ({shown})"


def change_set(inputs: Inputs, paths: Iterable[str], arrived: float) -> ChangeSet | None:
    """The change set of the paths one watcher batch named; None when none matters."""
    files: set[str] = set()
    kinds: set[str] = set()
    saved = 0.0
    for raw in paths:
        path = Path(raw)
        kind = inputs.kind(path)
        if kind is None:
            continue
        kinds.add(kind)
        files.add(path.relative_to(inputs.root).as_posix() if _under(path, inputs.root) else raw)
        try:
            saved = max(saved, min(path.stat().st_mtime, arrived))
        except OSError:
            saved = max(saved, arrived)  # deleted: it went when the watcher saw it go
    if not kinds:
        return None
    return ChangeSet(tuple(sorted(files)), tuple(k for k in KINDS if k in kinds), saved)


def lasting(batch: Iterable[tuple[watchfiles.Change, str]]) -> list[str]:
    """The paths of a watcher batch without the ones that came and went in it: an
    editor's or `sed -i`'s temporary file, written and renamed over the file saved, is
    not a change of its own (the reload line would count it)."""
    events: dict[str, set[watchfiles.Change]] = {}
    for change, path in batch:
        events.setdefault(path, set()).add(change)
    came_and_went = {watchfiles.Change.added, watchfiles.Change.deleted}
    return sorted(
        path
        for path, seen in events.items()
        if not (came_and_went <= seen and not os.path.lexists(path))
    )


def drain(first: ChangeSet, pending: queue.Queue[ChangeSet]) -> ChangeSet:
    """``first`` and every change set already waiting, as one: the saves made while a
    build ran make one rebuild, not one each."""
    merged = first
    while True:
        try:
            merged = merged.merged(pending.get_nowait())
        except queue.Empty:
            return merged


class Watcher:
    """``watchfiles`` (Rust notify; what uvicorn's reloader uses) in a thread: change
    sets go to a queue the loop blocks on, so a signal reaches the loop at once. The
    filter runs the build's ignore rules (replaced when they change). A change set is
    given once ``step_ms`` passed with no new change (an editor's save is a few events
    within milliseconds), at most ``debounce_ms`` after its first change."""

    def __init__(self, inputs: Inputs, debounce_ms: int = 1600, step_ms: int = 20) -> None:
        self.inputs = inputs
        self.changes: queue.Queue[ChangeSet] = queue.Queue()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._debounce, self._step = debounce_ms, step_ms
        self._thread = threading.Thread(target=self._run, name="warpdrive-watch", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _keep(self, change: watchfiles.Change, path: str) -> bool:
        return self.inputs.kind(Path(path)) is not None

    def _run(self) -> None:
        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # each line is ours
        try:
            batches = watchfiles.watch(
                *self.inputs.paths(),
                watch_filter=self._keep,
                debounce=self._debounce,
                step=self._step,
                stop_event=self._stop,
                rust_timeout=500,
                yield_on_timeout=True,
                raise_interrupt=False,
            )
            for batch in batches:
                self._ready.set()
                if not batch:
                    continue
                found = change_set(self.inputs, lasting(batch), time.time())
                if found is not None:
                    self.changes.put(found)
        except Exception as exc:  # the loop reports it and stops
            self.error = exc
            self._ready.set()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until the watcher runs (its first timeout came back), so that a save right
        after the loop said it watches is seen."""
        self._ready.wait(timeout)

    def next(self, poll: float = 0.5) -> Iterator[ChangeSet]:
        """The change sets, each merged with those already waiting; blocks."""
        while True:
            if self.error is not None:
                raise watch_failed(self.inputs.root, self.error) from self.error
            try:
                first = self.changes.get(timeout=poll)
            except queue.Empty:
                continue
            yield drain(first, self.changes)


def watch_failed(root: Path, exc: BaseException) -> WarpdriveError:
    """Why the watcher stopped, with the fix: most often the system's limit of inotify
    watches (one a directory, a big tree or a node_modules uses many)."""
    return WarpdriveError(
        f"cannot watch {root} for changes: {exc}",
        fix="raise the limit (`sysctl fs.inotify.max_user_watches=524288`), or watch by "
        "polling: WATCHFILES_FORCE_POLLING=1 nox -s run -- --watch",
    )
