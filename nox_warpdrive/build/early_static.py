"""collectstatic while the deps layer loads (issue 24: the cold build).

On a first build the app step ran only once the early deps layer was in the engine: the
layer's load (1.5-2 s for the Wagtail example's 160 MB, the engine's disk decides), then
a container of the new deps image, collectstatic (1.2 s) and its commit, one after the
other. The early deps step's container (build/prestart.py) holds that very virtualenv
once its layer is read out of it, and the engine loads that layer from a file: the
container is free. So, while the layer loads, the rest of the wheels (the late ones, the
sdists the wheelhouse compiled meanwhile) are installed in it as they are (`assemble.py
install`: no bytecode, no layer), the app layers' tree and the app step's helpers are put
in, and the app step runs there exactly as it runs on the deps image (`assemble.py app`:
collectstatic as the app user, the settings and environment it reads). The source tree
is then read back and its collected files become the app image's static layer, as a
reused one does (native_static.py reads another container's files the same way).

The files are the same as the app step's: the same packages at the same paths, the same
source, settings, user and environment (the deps image's config adds nothing to the base
image's: its commit sets labels only), and collectstatic writes no bytecode. Two things
differ, and decline it: a build hook (it may do anything, so it runs where it always
did), and the network: the deps container has none, so a collectstatic that needs one
(a storage that uploads) fails here, and the app step runs it as before, after one line.
Only a whole virtualenv's container is used (the first build of a set): a grow's holds
an older layer's packages too, and there the collected files are mostly reused anyway.
"""

from __future__ import annotations

import contextlib
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine import Engine, Output
from ..errors import BuildError, WarpdriveError, host_writes
from ..plan import EXPORT_READY, assemble
from ..tars import file_contents, tar_files
from ..wheelhouse.wheels import Wheel
from .app_layer import APP_STEP, AppPlan
from .deps_step import Installer, helpers
from .native_static import Collected, app_export, collected_from, export_helpers

#: how long the container waits for the build to say what to collect (seconds): the
#: wheelhouse may still compile when the layer is read
OFFER_SECONDS = 600


#: where the app layers' tree is put as a file, to be unpacked in the container: the
#: engine's archive API cannot reach its app root, a tmpfs (deps_step.DEPS_SCRATCH)
UNPACK = "/tmp/warpdrive-unpack/app.tar"


@dataclass(frozen=True)
class CollectJob:
    """What runs in the container: ``install`` (the plan of a deps step for the wheels
    its layer lacks, deps_step.step_plan), then the app step of ``app``."""

    app: AppPlan
    install: dict[str, Any]
    python: str
    #: files read back after (paths; the SBOM's METADATA), into ``EarlyStatic.read``
    reads: tuple[str, ...] = ()


class EarlyStatic:
    """The collect of one build, in the early deps step's container: ``offer`` says what
    (from the build's thread, once the wheels are known), ``run`` does it (from the
    container's thread, once its layer is read); ``collected`` then holds the files."""

    def __init__(
        self,
        app_for: Callable[[list[Wheel], Installer], AppPlan | None],
        reads: Callable[[list[Wheel]], list[str]] = lambda wheels: [],
    ) -> None:
        #: the app plan for the whole set of wheels and their installer, when its
        #: collectstatic should run here; None when not (no collectstatic, a hook, files
        #: reused...); ``reads``: what files to read back from the virtualenv after
        self.app_for, self.reads = app_for, reads
        #: those files (path -> bytes), when they could be read
        self.read: dict[str, bytes] = {}
        self.offered = threading.Event()
        self.job: CollectJob | None = None
        self.collected: tuple[str, Collected] | None = None  # (static key, files)
        self.lines: list[str] = []
        self.failed = ""
        self.seconds = 0.0

    def offer(self, job: Callable[[], CollectJob | None] | None) -> None:
        """What to collect (``job`` makes it; None: nothing), once per build."""
        if self.offered.is_set():
            return
        try:
            self.job = job() if job is not None else None
        except WarpdriveError:
            self.job = None
        finally:
            self.offered.set()

    def run(self, engine: Engine, name: str) -> None:
        """Collect in the running container ``name`` when offered a job; a failure is
        kept (``failed``), never raised: the app step collects then."""
        if not self.offered.wait(OFFER_SECONDS) or self.job is None:
            return
        started = time.monotonic()
        try:
            found = collect_in(engine, name, self.job, self.lines.append)
            if found is not None:
                self.collected = (self.job.app.static_key, found)
            else:
                self.failed = "it recorded no STATIC_ROOT below the app"
        except WarpdriveError as exc:
            self.failed = exc.message.splitlines()[0]
        if self.job.reads:
            with contextlib.suppress(WarpdriveError, OSError, tarfile.TarError):
                self.read = read_back(engine, name, self.job)
        self.seconds = time.monotonic() - started

    def for_app(self, app: AppPlan) -> Collected | None:
        """The collected files, when they are this app plan's (its static key)."""
        if self.collected is None or self.collected[0] != app.static_key:
            return None
        return self.collected[1]

    def report(self, out: Output) -> None:
        """Say what ran (its output, as the app step's would show), or why it failed."""
        if self.collected is not None:
            for line in self.lines:
                out(line)
            out(
                "warpdrive: collectstatic ran in the deps step's container while its "
                f"layer loaded ({self.seconds:.1f} s)"
            )
        elif self.failed:
            out(
                f"warpdrive: collectstatic beside the deps layer's load failed "
                f"({self.failed}); the app step runs it"
            )


def collect_in(engine: Engine, name: str, job: CollectJob, out: Output) -> Collected | None:
    """The late wheels installed, the app step run in the container ``name`` and its
    source tree read back: the collected files (None: nothing recorded). BuildError
    when a step fails."""
    plan = {**job.install, "unpack": [UNPACK]}
    tree = tar_files({UNPACK.removeprefix("/tmp/"): job.app.layer})
    engine.put_files(name, [("/tmp", helpers(plan)), ("/tmp", tree)])
    code = engine.exec_in(name, assemble(job.python, "install"), out)
    if code != 0:
        raise BuildError(f"installing the rest of the wheels failed (exit code {code})")
    engine.put_files(name, [("/tmp", export_helpers(job.app.helpers))])
    said: list[str] = []

    def shown(line: str) -> None:
        if line.strip():
            said.append(line.strip())
        out(line)

    code = engine.exec_in(name, APP_STEP, shown, EXPORT_READY)
    if code != 0:
        last = f": {said[-1][-200:]}" if said else ""
        raise BuildError(f"the app step failed (exit code {code}){last}")
    with tempfile.TemporaryDirectory(prefix="warpdrive-static-") as tmp, host_writes(tmp):
        made = Path(tmp) / "made.tar"
        engine.read_out(name, app_export(job.python), made, "collected static files", out)
        return collected_from(made, job.app)


def read_back(engine: Engine, name: str, job: CollectJob) -> dict[str, bytes]:
    """The files ``job.reads`` names (regular files only), read out of the container in
    one tar: path -> bytes."""
    command = assemble(job.python, "export", *(p[1:] for p in job.reads))
    with tempfile.TemporaryDirectory(prefix="warpdrive-read-") as tmp, host_writes(tmp):
        made = Path(tmp) / "read.tar"
        engine.read_out(name, command, made, "metadata", lambda line: None)
        files = file_contents(made.read_bytes())
    return {"/" + name: data for name, data in files.items()}
