"""The tools the bench compares: a timed command, the ``Tool`` base class every tool
shares (its app copy and the scenarios' edits to it), and nox-warpdrive itself. The
Dockerfile peers are in ``peers``."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .apps import App, bench_pyproject
from .common import (
    COPY_IGNORE,
    REPO,
    WARPDRIVE,
    WD_IMAGE,
    WD_REFERENCES,
    WD_VOLUME,
    BenchError,
    interrupt,
)
from .dockercli import Docker
from .gentree import generate


@dataclass
class Step:
    """One timed command, its output appended to a log file."""

    seconds: float
    output: str


class BuildTimeout(BenchError):
    """A build stopped (as Ctrl-C stops it) after the bench's ``timeout``: its time is a
    lower bound, not a failure of the tool."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


def timed(
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    stamp: bool = False,
    timeout: float | None = None,
) -> Step:
    """Run ``cmd`` with its output appended to ``log``, and time it: the wall clock of the
    command a user would type, start-up included. With ``stamp`` every line of the log
    starts with the seconds since the command began (where a pipeline's time goes), and
    ``Step.output`` is the lines without it. A failure is a BenchError that quotes the
    log's tail. With ``timeout`` (seconds) a command still running then is interrupted
    and a BuildTimeout raised (emulated builds of a big app can take an hour)."""
    stamped: list[str] = []
    with log.open("a") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        fh.flush()
        start = log.stat().st_size
        began = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE if stamp else fh,
            stderr=subprocess.STDOUT,
            text=stamp,
        )
        try:
            if proc.stdout is not None:
                for line in proc.stdout:
                    stamped.append(line)
                    fh.write(f"[{time.perf_counter() - began:6.1f}s] {line}")
                    fh.flush()
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            interrupt(proc, 60)
            fh.write(f"# stopped after the bench's timeout of {timeout:.0f} s\n")
            raise BuildTimeout(
                f"`{shlex.join(cmd)}` stopped after {timeout:.0f} s; log: {log}",
                time.perf_counter() - began,
            ) from None
        except KeyboardInterrupt:
            interrupt(proc, 30)
            raise
        seconds = time.perf_counter() - began
        fh.write(f"# exit {returncode} after {seconds:.1f} s\n")
    if stamp:
        output = "".join(stamped)
    else:
        with log.open() as fh:
            fh.seek(start)
            output = fh.read()
    if returncode != 0:
        tail = "\n".join("    " + line for line in output.splitlines()[-25:])
        raise BenchError(f"`{shlex.join(cmd)}` failed (exit {returncode}); log: {log}\n{tail}")
    return Step(seconds, output)


class Tool:
    """One way of building the app: owns an app copy and the Docker objects it creates."""

    name = ""

    def __init__(self, docker: Docker, workdir: Path, app: App) -> None:
        self.docker = docker
        self.spec = app
        self.root = workdir / self.name
        self.app = self.root / "app"
        self.image_ids: set[str] = set()
        #: seconds a build may take before it is stopped (None: no limit)
        self.timeout: float | None = None

    def fresh_copy(self) -> None:
        """The app as it is in its source, without a local run's outputs and caches, and
        with the generated files the bench was asked for (the same bytes in every copy)."""
        shutil.rmtree(self.app, ignore_errors=True)
        shutil.copytree(self.spec.source, self.app, ignore=shutil.ignore_patterns(*COPY_IGNORE))
        if self.spec.files or self.spec.assets_mb:
            generate(self.app, self.spec.files, self.spec.assets_mb)

    def edit_code(self, stamp: str) -> None:
        """A code-only change: a new module-level constant in one .py file."""
        with (self.app / self.spec.code_file).open("a") as fh:
            fh.write(f"\nBENCH_REVISION = {stamp!r}\n")

    def mark_run(self, marker: str) -> None:
        """A comment naming the run at the top of requirements.txt: every run's files
        differ, so no build reuses a layer an earlier run cached for the same text (the
        layered peer's "add package" did: its RUN step hit run 1's cache in run 2)."""
        path = self.app / "requirements.txt"
        path.write_text(f"# bench run {marker}\n" + path.read_text())

    def add_package(self, package: str) -> None:
        """The add-package scenario: one requirement appended, on a line of its own."""
        path = self.app / "requirements.txt"
        text = path.read_text()
        path.write_text(text + ("" if text.endswith("\n") else "\n") + package + "\n")

    def reset(self, run: int) -> None:
        """Cold state for this tool, and a fresh copy of the app."""
        raise NotImplementedError

    def build(self, log: Path) -> tuple[float, dict[str, float], tuple[str, ...]]:
        """One build: its seconds, the parts of them the tool reports, and notes."""
        raise NotImplementedError

    def image(self) -> str:
        """The reference of the image the last build made (its size is reported)."""
        raise NotImplementedError

    def cleanup(self) -> list[str]:
        """Remove everything this tool created in Docker; returns what could not be."""
        raise NotImplementedError


class Warpdrive(Tool):
    """nox-warpdrive, run as a user runs it (``nox -s image``) on a frozen copy of the
    code under test, with its own volume, images and host-side cache."""

    name = WARPDRIVE

    def __init__(self, docker: Docker, workdir: Path, app: App) -> None:
        super().__init__(docker, workdir, app)
        self.xdg = self.root / "xdg-cache"
        self.src = self.root / "src"

    def env(self) -> dict[str, str]:
        """The snapshot first on PYTHONPATH, and a private XDG cache (the probe cache)."""
        path = os.pathsep.join(p for p in (str(self.src), os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "XDG_CACHE_HOME": str(self.xdg), "PYTHONPATH": path}

    def snapshot(self) -> None:
        """Freeze the code under test: nox-warpdrive is installed editable, so an edit to
        the checkout during the bench would otherwise change the tool (and its cache keys)
        between two scenarios. PYTHONPATH comes before the editable finder."""
        shutil.copytree(
            REPO / "nox_warpdrive",
            self.src / "nox_warpdrive",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        # with bytecode, as an installed package has it (pip compiles at install): with
        # PYTHONDONTWRITEBYTECODE set every build would compile the whole package again
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(self.src / "nox_warpdrive")],
            check=True,
            capture_output=True,
        )
        proc = subprocess.run(
            [sys.executable, "-c", "import nox_warpdrive; print(nox_warpdrive.__file__)"],
            cwd=self.root,  # not the checkout: `-c` puts the working directory first
            capture_output=True,
            text=True,
            env=self.env(),
            check=False,
        )
        if not proc.stdout.strip().startswith(str(self.src)):
            raise BenchError(
                f"{sys.executable} does not import nox_warpdrive from the bench's snapshot "
                f"({proc.stdout.strip() or proc.stderr.strip()})"
            )

    def settings(self) -> dict[str, object]:
        """[tool.warpdrive] settings on top of the bench's own (none here)."""
        return {}

    def fresh_copy(self) -> None:
        """The app, with the bench's pyproject.toml (its own name, image and volume),
        and README's two-line noxfile.py when the app (an --app never set up for
        nox-warpdrive) has none."""
        super().fresh_copy()
        pyproject = self.app / "pyproject.toml"
        pyproject.write_text(bench_pyproject(pyproject, self.settings()))
        noxfile = self.app / "noxfile.py"
        if not noxfile.exists():
            noxfile.write_text("import nox_warpdrive\n\nnox_warpdrive.sessions()\n")

    def remove_all(self) -> list[str]:
        """Every image this tool made or may have made, and its volume; returns what is
        left."""
        ids = set(self.image_ids)
        for reference in WD_REFERENCES:
            ids.update(self.docker.images(reference))
        left = self.docker.remove_images(ids)
        self.image_ids.clear()
        self.docker.run("volume", "rm", "--force", WD_VOLUME, check=False)
        if self.docker.run("volume", "inspect", WD_VOLUME, check=False).returncode == 0:
            left.append(f"volume {WD_VOLUME}")
        return left

    def reset(self, run: int) -> None:
        """Cold for nox-warpdrive: no volume (wheels, pip's and uv's caches), no images of
        the bench's, an empty probe cache; a run that cannot get there stops."""
        left = self.remove_all()
        if left:
            raise BenchError(f"could not remove {', '.join(left)} for a cold start")
        # the host-side probe cache too: a cold start knows nothing about the images
        shutil.rmtree(self.xdg, ignore_errors=True)
        self.fresh_copy()
        self.mark_run(f"r{run}")

    def build(self, log: Path) -> tuple[float, dict[str, float], tuple[str, ...]]:
        """One command, what a user runs after any change: `nox -s image` builds what the
        wheelhouse lacks (cached, incremental), then the image."""
        env = self.env()
        nox = [sys.executable, "-m", "nox", "--no-color"]
        image = timed([*nox, "-s", "image"], cwd=self.app, env=env, log=log)
        parts = {"image": image.seconds, **step_times(image.output)}
        notes = [
            line.split("nox > ", 1)[-1].strip()
            for line in image.output.splitlines()
            if re.search(r"nox > image ", line)
        ]
        # remember every image made, so the ones a later build untags are removed too
        self.image_ids.update(self.docker.images(WD_REFERENCES[1]))
        image_id = self.docker.image_id(WD_IMAGE)
        if image_id:
            self.image_ids.add(image_id)
        return image.seconds, parts, tuple(notes)

    def image(self) -> str:
        return WD_IMAGE

    def cleanup(self) -> list[str]:
        return self.remove_all()


def step_times(output: str) -> dict[str, float]:
    """The ``wheelhouse``/``deps``/``app`` seconds in `nox -s image`'s output (its summary
    says e.g. ``(wheelhouse 3.1 s, deps 20.4 s, app 1.2 s; 25.0 s)``), so RESULTS.md can
    split the one command's time; a step it did not print is left out."""
    parts: dict[str, float] = {}
    for step in ("wheelhouse", "deps", "app"):
        m = re.search(rf"[(,] ?{step} (\d+(?:\.\d+)?) s", output)
        if m:
            parts[step] = float(m.group(1))
    return parts
