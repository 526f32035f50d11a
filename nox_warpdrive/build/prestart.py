"""A deps step's container started before its wheels are known (issue 24).

When the requirements change, the wheelhouse resolves and downloads first; only then
does the deps step start: on the current image's deps image to add what changed, or on
the base image for a whole virtualenv. Its container's create and start, Python's start
and (for a grow) the snapshot of the virtualenv it diffs against (runtime/layerdiff.py)
do not depend on the wheels: they are done while the wheelhouse works, in a container of
the same step whose plan says ``wait`` (runtime/assemble.py: wait_for_go). When the step
decided on is that very container (the same image and settings: ``same_container``), it
is given the step's real files, then the go file, and runs as it would have; else it is
removed. On one added wheel this took the grow from 0.73 s to 0.44 s after the wheelhouse
published it; on a first build it saves the container's start (0.15-0.2 s)."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..engine import Engine, Output
from ..engine.owner import temp_name
from ..errors import WarpdriveError, host_writes
from ..plan import Step
from ..tars import merge_tars, tar_files
from .deps_step import run_deps

#: how long a started container waits for its plan before it ends on its own (seconds):
#: the host removes it sooner when the build does not use it
WAIT_SECONDS = 600

#: the line a started step prints once it waits (runtime/assemble.py), not shown
WAITING = "warpdrive: waiting for the plan"

#: the go file, put after the real plan (/tmp/warpdrive-build/go)
GO = tar_files({"warpdrive-build/go": b""})


def with_go(files: tuple[tuple[str, bytes], ...]) -> list[tuple[str, bytes]]:
    """A step's files with the go file after them: in the same archive when the last one
    goes to /tmp (one put, not two: 25 ms of an added package; an archive is unpacked in
    order, so the plan is whole before go appears)."""
    if files and files[-1][0] == "/tmp":
        return [*files[:-1], ("/tmp", merge_tars(files[-1][1], GO))]
    return [*files, ("/tmp", GO)]


def same_container(a: Step, b: Step) -> bool:
    """Whether two steps make the same container: all but their files and commit."""
    return dataclasses.replace(a, files=(), commit=None) == dataclasses.replace(
        b, files=(), commit=None
    )


class Prestart:
    """``step`` (a deps step whose plan says ``wait``) run now in a thread, its layer
    exported to a file once it is given its plan (``use``); ``after``: what uses its
    container then, while that layer loads."""

    def __init__(
        self, engine: Engine, step: Step, after: Callable[[str], None] | None = None
    ) -> None:
        self.engine, self.step = engine, step
        self.name = temp_name(step.name)
        self.dir = tempfile.mkdtemp(prefix="warpdrive-prestart-")
        self.layer = Path(self.dir) / "layer.tar"
        self.lock = threading.Lock()
        self.waiting = threading.Event()
        self.sink: Output | None = None
        self.held: list[str] = []
        self.error: BaseException | None = None
        #: from its plan given to its layer read (ensure_deps's "seconds spent building")
        self.seconds = 0.0
        self.used = False
        #: set once its layer is read (or its run ended): ``use`` loads it then
        self.exported = threading.Event()
        #: what uses the container while its layer loads (its name given; it must not
        #: raise): early_static.EarlyStatic.run
        self.after = after
        self.thread = threading.Thread(target=self._run, name="warpdrive-prestart", daemon=True)
        self.thread.start()

    def _out(self, line: str) -> None:
        if line == WAITING:
            self.waiting.set()
            return
        with self.lock:
            if self.sink is None:
                self.held.append(line)
                return
        self.sink(line)

    def _run(self) -> None:
        try:
            with host_writes(self.dir):
                run_deps(self.engine, self.step, self._out, self.layer, self.name, self._read)
        except BaseException as exc:  # handed to ``use``; a removed container's is no news
            self.error = exc
        finally:
            self.waiting.set()  # it ended: nobody waits for it any more
            self.exported.set()

    def _read(self) -> None:
        """Its layer is read: ``use`` loads it now, while ``after`` uses the container
        (the engine removes it once this returns)."""
        self.exported.set()
        if self.after is not None:
            self.after(self.name)

    def use(self, step: Step, out: Output) -> str | None:
        """The image ``step`` makes (its layer on its image, as engine.run would put it),
        made in the started container; None, the container removed, when ``step`` is not
        that container or it could not be given the files. Errors are the step's own
        (MissingLibraries, DamagedWheels, LayerRefused...), as run_deps raises them."""
        if not same_container(step, self.step) or not self.waiting.wait(30) or self.error:
            self.cancel()
            return None
        with self.lock:
            self.sink, held, self.held = out, self.held, []
        for line in held:
            out(line)
        try:
            self.engine.put_files(self.name, with_go(step.files))
        except WarpdriveError:
            self.cancel()
            return None
        self.used, given = True, time.monotonic()
        try:
            self.exported.wait()
            self.seconds = time.monotonic() - given
            image_id = None
            if self.error is None:  # its layer loads while ``after`` uses the container
                assert step.commit is not None
                image_id = self.engine.append_layer(
                    step.image, self.layer, step.commit, created_by=step.created_by
                )
            self.thread.join()
            if self.error is not None:
                if image_id is not None:
                    self.engine.remove_image(image_id)
                raise self.error
            assert image_id is not None
            return image_id
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def cancel(self) -> None:
        """Remove the container unless it was used; wait for its thread to see it."""
        if self.used:
            return
        while self.thread.is_alive():  # again until it ends: it may not exist yet
            self.engine.remove_temp(self.name)
            self.thread.join(0.2)
        shutil.rmtree(self.dir, ignore_errors=True)
