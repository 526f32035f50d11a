"""The deps step's parts that any way of making a deps layer uses: what its plan.json
says, the helpers it ships, the export command, and running it (with the errors its
machine-read lines name). deps.py decides which deps layer to make; foreign_deps.py makes
another CPU's natively."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import runtime
from ..assembly import FIXED_EPOCH
from ..config import Config
from ..engine import Engine, Output, RunResult, check_result
from ..errors import BuildError, WarpdriveError
from ..layout import APP_ROOT, APP_UID, VENV
from ..plan import VOLUME_DIR, Step, assemble
from ..platform import PlatformKey
from ..runtime import protocol
from ..tars import tar_files
from ..wheelhouse.wheels import Wheel
from .libraries import MissingLibraries, parse_report

#: where a deps step unpacks wheels (a tmpfs: never in the image)
DEPS_SCRATCH = "/tmp/warpdrive-scratch"


@dataclass(frozen=True)
class DepsPlan:
    key: str
    ref: str
    step: Step
    parent: str | None = None  # an earlier deps image this one is built on
    files: tuple[str, ...] = ()  # the wheels this step installs


@dataclass(frozen=True)
class Installer:
    name: str  # "uv" | "pip" | "none" (nothing to install)
    path: str = ""  # uv's path inside the build container
    version: str = ""


def step_plan(
    cfg: Config, pkey: PlatformKey, resolved: list[Wheel], installer: Installer, files: list[str]
) -> dict[str, Any]:
    """What assemble.py's deps step reads: where things go, the installer, the wheel
    files to install and the sha256 each must have."""
    return {
        "app_root": APP_ROOT,
        "venv": VENV,
        "uid": APP_UID,
        "python": cfg.python,
        # every file's mtime in the layer, and so in the bytecode (assemble.stabilize)
        "epoch": FIXED_EPOCH,
        "wheels_dir": f"{VOLUME_DIR}/{pkey.slug}/wheels",
        "installer": installer.name,
        "uv": installer.path,
        "files": files,
        # every wheel is hashed against these before it goes into the layer
        "sha256": {w.filename: w.sha256 for w in resolved if w.filename in set(files)},
    }


def export_command(python: str) -> tuple[str, ...]:
    """The export command and the paths (relative to /) the in-memory layer consists of."""
    return assemble(python, "export", APP_ROOT[1:], "etc/passwd")


def helpers(plan: dict[str, Any]) -> bytes:
    return tar_files(
        {
            "warpdrive-build/plan.json": json.dumps(plan, sort_keys=True).encode(),
            **runtime.files(runtime.ASSEMBLER, "warpdrive-build/"),
        }
    )


def fits_in_memory(resolved: list[Wheel], memory: int) -> bool:
    """Whether a virtualenv of these wheels can be built on tmpfs: the unpacked wheels and
    the installed files (with bytecode) take a few times the wheels' size each, and that
    must stay well below the engine's memory. Unknown sizes (a manifest written before
    sizes were recorded) or memory: no."""
    sizes = [w.size for w in resolved]
    if memory <= 0 or not all(s is not None and s >= 0 for s in sizes):
        return False
    return 8 * sum(s for s in sizes if s is not None) <= memory // 4


class DamagedWheels(WarpdriveError):
    """Wheels in the volume that do not match the manifest's sha256, or are not there
    at all (found by the deps step, which checks every wheel before installing it)."""

    def __init__(self, files: list[str], missing: list[str] | None = None) -> None:
        self.missing = tuple(missing or ())
        self.files = tuple(files) + self.missing
        said = []
        if files:
            said.append(f"{len(files)} wheels in the wheelhouse do not match their sha256: ")
            said[-1] += ", ".join(files[:5])
        if self.missing:
            said.append(f"{len(self.missing)} wheels the wheelhouse lists are missing from it: ")
            said[-1] += ", ".join(self.missing[:5])
        super().__init__(
            "; ".join(said),
            fix="run `nox -s wheelhouse -- --verify` (it fetches or builds them again)",
        )


def run_deps(
    engine: Engine,
    step: Step,
    out: Output,
    into: Path | None = None,
    name: str | None = None,
    then: Callable[[], None] | None = None,
) -> RunResult:
    """Run a deps step; DamagedWheels when it refused a wheel whose hash is wrong or
    found one missing, MissingLibraries when a file of the virtualenv needs a library
    the base image lacks. ``into``: the file an export step's layer is written to
    (engine.run_export) instead of an image; ``name``: its container's, ``then``: what
    runs once the layer is read, in the container still running (build/prestart.py)."""
    found: dict[str, list[str]] = {"damaged": [], "missing": []}
    libraries: dict[str, list[dict[str, str]]] = {}

    def shown(line: str) -> None:
        kind, data = protocol.parse(line) or ("", None)
        if kind == "libraries":
            libraries.update(parse_report(data))
        elif kind not in found:
            out(line)
        elif isinstance(data, list):
            found[kind].extend(str(f) for f in data)

    try:
        if into is None:
            return engine.run_checked(step, shown)
        return check_result(step, engine.run_export(step, shown, into, name, then))
    except BuildError as exc:
        if found["damaged"] or found["missing"]:
            raise DamagedWheels(found["damaged"], found["missing"]) from exc
        if libraries:
            raise MissingLibraries(libraries) from exc
        raise
