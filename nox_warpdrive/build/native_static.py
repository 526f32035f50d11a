"""collectstatic for another CPU's image, run on the engine's own CPU (issue 22, item 5).

When a foreign platform is built alone (``--platform linux/arm64`` on an amd64 engine)
no image of the engine's platform lends it its collected files (static_sibling.py), and
collectstatic would run in a container of the arm64 image, under QEMU (about 6 s of a
23 s cold arm64 build of the Wagtail example, against 1.5 s natively). collectstatic
copies files: its output depends on the source, the settings and the installed
packages, not on the CPU. So it runs in a stand-in image instead: the native twin (the
engine's image of the same base ref, with the same Python at the same path:
foreign_deps.native_twin) with the foreign image's deps layer (its virtualenv and
``/etc/passwd``) and the app layers on top. Pure-Python packages run there as they are.
A compiled module of the virtualenv cannot be loaded there (wrong ELF): a
``sitecustomize`` put on the step's PYTHONPATH notes any failed load of an extension
module and makes the process exit non-zero, whatever the app did with the ImportError
(a settings file that falls back to something else could collect other files), and
collectstatic then runs under emulation, after one line saying why. The collected files
become the foreign image's static layer exactly as an emulated run's would (the same
tar, so the same blob and image ID); the stand-in images are removed whatever happens.

tests/integration/test_native_static_engine.py proves both ways give the same files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..engine import Engine, ImageInfo, Output
from ..errors import WarpdriveError
from ..layout import key_digest
from ..plan import CommitSpec, Step
from ..platform import PlatformKey
from ..source.image_layers import StaticLayer, append_app
from ..tars import reprefix_tar, tar_files
from . import static_cache
from .app_layer import AppPlan
from .foreign_deps import foreign_platform, native_twin
from .static import read_static, shadows_static, static_layer, static_root

#: every image made for the native run carries it (none is left: they are removed)
STAND_IN_LABEL = "io.warpdrive.stand-in"
#: where the guard goes in the step's container (on its PYTHONPATH)
GUARD_DIR = "/tmp/warpdrive-guard"
#: what the guard prints, and its exit code, when a compiled module failed to load
GUARD_MARK = "warpdrive-foreign-module:"
GUARD_EXIT = 97

GUARD = f'''"""Written by nox-warpdrive for a native run on another CPU's virtualenv: a failed
load of a compiled module makes the process fail (exit {GUARD_EXIT}), whatever the code
that imported it did with the ImportError, so the step runs under emulation instead.
Modules named for another CPU (``.cpython-311-aarch64-linux-gnu.so``) are tried too,
where they would otherwise not be found at all."""
import atexit
import os
import sys
from importlib import machinery

_failed = []
_create = machinery.ExtensionFileLoader.create_module
_TUPLES = (
    "aarch64-linux-gnu", "x86_64-linux-gnu", "arm-linux-gnueabihf", "i386-linux-gnu",
    "powerpc64le-linux-gnu", "s390x-linux-gnu", "riscv64-linux-gnu",
    "aarch64-linux-musl", "x86_64-linux-musl",
)


def _guarded(self, spec):
    try:
        return _create(self, spec)
    except ImportError as exc:
        _failed.append("%s (%s)" % (spec.name, exc))
        raise


def _check():
    if _failed:
        sys.stdout.flush()
        sys.stderr.write("{GUARD_MARK} %s\\n" % _failed[0])
        sys.stderr.flush()
        os._exit({GUARD_EXIT})


def _hook():
    tag = "cpython-%d%d" % sys.version_info[:2]
    ours = list(machinery.EXTENSION_SUFFIXES)
    theirs = [".%s-%s.so" % (tag, t) for t in _TUPLES]
    details = (
        (machinery.ExtensionFileLoader, ours + [s for s in theirs if s not in ours]),
        (machinery.SourceFileLoader, machinery.SOURCE_SUFFIXES),
        (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES),
    )
    hooks = [h for h in sys.path_hooks if "FileFinder" not in getattr(h, "__qualname__", "")]
    sys.path_hooks[:] = hooks + [machinery.FileFinder.path_hook(*details)]
    sys.path_importer_cache.clear()


machinery.ExtensionFileLoader.create_module = _guarded
_hook()
atexit.register(_check)
'''


@dataclass(frozen=True)
class Collected:
    """The files collectstatic wrote in the stand-in: their root, their layer, and
    (record, files) for the host's copy (static_cache)."""

    root: str
    layer: StaticLayer
    record: bytes
    files: bytes


def native_collect(
    engine: Engine,
    cfg: Config,
    target: tuple[ImageInfo, PlatformKey],
    deps_id: str,
    app: AppPlan,
    out: Output,
) -> Collected | None:
    """The collected static files of the foreign image on ``deps_id``, collected on the
    engine's own CPU; None (and one line saying why, when it was tried) when the build
    runs collectstatic itself: the base image is of the engine's CPU, a build hook runs
    too (its output may depend on the CPU), no twin, or the native run failed."""
    base, pkey = target
    platform = foreign_platform(engine, base)
    if platform is None or not app.collectstatic or app.build_hook:
        return None
    twin, why = native_twin(engine, cfg, platform, pkey)
    if twin is None:
        out(f"warpdrive: running collectstatic for {platform} under emulation: {why}")
        return None
    failed = _failed_before(deps_id, app)
    if failed:
        out(
            f"warpdrive: running collectstatic for {platform} under emulation: it failed in "
            f"{twin.ref} before, with these packages and settings ({failed})"
        )
        return None
    made: list[str] = []
    started = time.monotonic()
    try:
        found = _collect(engine, twin.info, deps_id, app, out, made)
    except WarpdriveError as exc:
        reason = _reason(exc.message)
        out(
            f"warpdrive: collectstatic for {platform} failed in {twin.ref} after "
            f"{time.monotonic() - started:.1f} s ({reason}); running it under emulation"
        )
        _remember_failure(deps_id, app, reason)
        return None
    finally:
        for image in reversed(made):
            with contextlib.suppress(WarpdriveError):
                engine.remove_image(image)
    if found is None:
        out(f"warpdrive: no collected files found in {twin.ref}; running it under emulation")
        return None
    seconds = time.monotonic() - started
    out(
        f"warpdrive: collectstatic for {platform} ran in {twin.ref} (no emulation, {seconds:.1f} s)"
    )
    return found


def _failure_path(deps_id: str, app: AppPlan) -> Path:
    """Where a failed native run is remembered: per deps image (the packages, whose
    compiled modules Django's setup imports) and settings module, so that later builds
    of them (a changed static file, a changed setting) do not pay for it again; new
    packages try again. Emulation always gives the right files: a stale entry costs
    time only."""
    name = key_digest("native collectstatic 1", deps_id, str(app.app.settings))
    return static_cache.cache_dir().parent / "native-static" / name


def _failed_before(deps_id: str, app: AppPlan) -> str:
    """Why the native run failed for these packages and settings before ("": it did not)."""
    try:
        return _failure_path(deps_id, app).read_text().strip() or "no reason kept"
    except OSError:
        return ""


def _remember_failure(deps_id: str, app: AppPlan, reason: str) -> None:
    path = _failure_path(deps_id, app)
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(reason + "\n")


def _reason(message: str) -> str:
    """The line of a failed step's output that says why (the guard's, else the last)."""
    lines = [line.strip(" |") for line in message.splitlines() if line.strip(" |")]
    marked = [line for line in lines if GUARD_MARK in line]
    if marked:
        return "it loads a compiled module: " + marked[-1].split(GUARD_MARK, 1)[1].strip()
    errors = [line for line in lines if re.match(r"[A-Za-z_.]*(Error|Exception):", line)]
    return (errors or lines or [message])[-1]


def _stand_in_spec(app: AppPlan) -> CommitSpec:
    return dataclasses.replace(app.commit, labels={**app.commit.labels, STAND_IN_LABEL: "1"})


def _collect(
    engine: Engine, twin: ImageInfo, deps_id: str, app: AppPlan, out: Output, made: list[str]
) -> Collected | None:
    """Make the stand-in (``made``: every image, for the caller to remove), run the app
    step there, and read what it collected."""
    with engine.image_reader(deps_id) as read:  # the deps layer: /opt/app-root, passwd
        opt, passwd = read("/opt"), read("/etc/passwd")
    if opt is None or passwd is None:
        raise WarpdriveError(f"the deps image {deps_id[:19]} has no virtualenv to copy")
    spec = _stand_in_spec(app)
    deps = engine.append_layer(
        twin.id,
        opt,
        spec,
        created_by="nox-warpdrive stand-in deps layer",
        under=(("nox-warpdrive stand-in passwd", reprefix_tar(passwd, "etc")),),
    )
    made.append(deps)
    below = append_app(engine, engine.require_image(deps, "stand-in image"), app.tree, spec)
    made.append(below)
    step = app.build_step(below)
    guard = tar_files({"warpdrive-guard/sitecustomize.py": GUARD.encode()})
    step = Step(
        name="app (native)",
        image=below,
        command=step.command,
        files=(*step.files, ("/tmp", guard)),
        user=step.user,
        network=step.network,
        env=(("PYTHONPATH", GUARD_DIR),),
        commit=spec,
    )
    image_id = engine.run_checked(step, out).image_id
    assert image_id is not None
    made.append(image_id)
    found = read_static(engine, image_id)
    root = static_root(found[0]) if found is not None else None
    if found is None or root is None or shadows_static(app.tree.tree, root):
        return None
    layer = static_layer(root, found[1])
    static = StaticLayer("sha256:" + hashlib.sha256(layer).hexdigest(), lambda: layer)
    return Collected(root, static, found[0], found[1])
