"""collectstatic for another CPU's image, run on the engine's own CPU (issue 22, item 5).

When a foreign platform is built alone (``--platform linux/arm64`` on an amd64 engine)
no image of the engine's platform lends it its collected files (static_sibling.py), and
collectstatic would run in a container of the arm64 image, under QEMU (about 6 s of a
23 s cold arm64 build of the Wagtail example, against 1.5 s natively). collectstatic
copies files: its output depends on the source, the settings and the installed
packages, not on the CPU. So it runs in a stand-in instead: one container of the native
twin (the engine's image of the same base ref, with the same Python at the same path:
foreign_deps.native_twin) given the foreign deps layer's files (its virtualenv and
``/etc/passwd``) and the app layers' tree, from which the source tree is read back once
the step is done (an export step: nothing is committed or loaded, which for a 175 MB
virtualenv would cost more than the emulated run). Pure-Python packages run there as they
are. A compiled module of the virtualenv cannot be loaded there (wrong ELF): a
``sitecustomize`` put on the step's PYTHONPATH notes any failed load of an extension
module and makes the process exit non-zero, whatever the app did with the ImportError
(a settings file that falls back to something else could collect other files), and
collectstatic then runs under emulation, after one line saying why. The collected files
become the foreign image's static layer exactly as an emulated run's would (the same
tar, so the same blob and image ID).

tests/integration/test_native_static_engine.py proves both ways give the same files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..engine import Engine, ImageInfo, Output, check_result
from ..errors import WarpdriveError, host_writes
from ..labels import DepsLabels
from ..layout import APP_SRC, STATIC_ROOT_RECORD, key_digest
from ..plan import Step, assemble
from ..platform import PlatformKey
from ..source.image_layers import StaticLayer
from ..tars import file_contents, tar_files
from ..wheelhouse.wheels import parse_wheel_id
from . import static_cache
from .app_layer import APP_STEP, AppPlan
from .foreign_deps import foreign_platform, native_twin
from .static import safe_root, shadows_static, static_layer

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
    compiled = compiled_wheels(engine, deps_id)
    twin, why = (
        (None, compiled_why(compiled)) if compiled else native_twin(engine, cfg, platform, pkey)
    )
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
    started = time.monotonic()
    try:
        found = _collect(engine, cfg, twin.info, deps_id, app, out)
    except WarpdriveError as exc:
        reason = _reason(exc.message)
        out(
            f"warpdrive: collectstatic for {platform} failed in {twin.ref} after "
            f"{time.monotonic() - started:.1f} s ({reason}); running it under emulation"
        )
        _remember_failure(deps_id, app, reason)
        return None
    if found is None:
        out(
            f"warpdrive: collectstatic in {twin.ref} recorded no STATIC_ROOT below the app, "
            "or the source has files there; running it under emulation"
        )
        return None
    seconds = time.monotonic() - started
    out(
        f"warpdrive: collectstatic for {platform} ran in {twin.ref} (no emulation, {seconds:.1f} s)"
    )
    return found


def compiled_wheels(engine: Engine, deps_id: str) -> list[str]:
    """The names of the deps image's wheels that are not pure Python (["?"]: its labels
    do not say)."""
    info = engine.image(deps_id)
    deps = DepsLabels.from_labels(info.labels) if info is not None else None
    if deps is None:
        return ["?"]
    found = []
    for wheel_id in deps.wheels:
        parsed = parse_wheel_id(wheel_id)
        if parsed is None:
            found.append(wheel_id.partition("@")[0])
        elif any(tag.platform != "any" for tag in parsed[2]):
            found.append(parsed[0])
    return found


def compiled_why(compiled: list[str]) -> str:
    """Why a virtualenv with compiled packages is not tried natively: what its copy
    into a container costs (8.5 s for the Wagtail example's 175 MB) is more than the
    emulated run saves, and Django's setup usually imports one of them (Wagtail:
    pillow_heif, pydantic_core), which cannot load there."""
    if compiled == ["?"]:
        return "its deps image does not list its packages"
    named = ", ".join(compiled[:3]) + (
        f" and {len(compiled) - 3} more" if len(compiled) > 3 else ""
    )
    return f"it has compiled packages ({named}), which cannot run on this CPU"


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


def export_helpers(helpers: bytes) -> bytes:
    """The build step's helpers with an export plan: the step waits once it is done, and
    the host reads what it made out of the running container (no commit, no image)."""
    members = file_contents(helpers)
    plan = json.loads(members["warpdrive-build/plan.json"])
    plan.update(export=True, export_wait=600)
    members["warpdrive-build/plan.json"] = json.dumps(plan).encode()
    return tar_files(members)


def _collect(
    engine: Engine, cfg: Config, twin: ImageInfo, deps_id: str, app: AppPlan, out: Output
) -> Collected | None:
    """Run the app step in one container of the twin, given the foreign deps layer's
    files and the app layers' tree, and read what it collected out of it (the source
    tree and the record of STATIC_ROOT; nothing is committed or loaded)."""
    with engine.image_reader(deps_id) as read:  # the deps layer: /opt/app-root, passwd
        opt, passwd = read("/opt"), read("/etc/passwd")
    if opt is None or passwd is None:
        raise WarpdriveError(f"the deps image {deps_id[:19]} has no virtualenv to copy")
    guard = tar_files({"warpdrive-guard/sitecustomize.py": GUARD.encode()})
    step = Step(
        name="app (native)",
        image=twin.id,
        command=APP_STEP,
        files=(
            ("/", opt),
            ("/etc", passwd),
            ("/", app.layer),
            ("/tmp", export_helpers(app.helpers)),
            ("/tmp", guard),
        ),
        user="0:0",
        network=app.network,
        env=(("PYTHONPATH", GUARD_DIR),),
        export=app_export(cfg.python),
    )
    with tempfile.TemporaryDirectory(prefix="warpdrive-static-") as tmp, host_writes(tmp):
        made = Path(tmp) / "made.tar"
        check_result(step, engine.run_export(step, out, made))
        return collected_from(made, app)


def collected_from(made: Path, app: AppPlan) -> Collected | None:
    """The collected files in an app step's export (the source tree and the record of
    STATIC_ROOT), as the static layer an app image gets; None when nothing was recorded,
    or the source has files where they went."""
    found = _collected(made)
    if found is None or shadows_static(app.tree.tree, found[0]):
        return None
    root, record, files = found
    layer = static_layer(root, files)
    static = StaticLayer("sha256:" + hashlib.sha256(layer).hexdigest(), lambda: layer)
    return Collected(root, static, record, files)


def app_export(python: str) -> tuple[str, ...]:
    """The command that reads an app step's result out of its container: the source tree
    and the record of STATIC_ROOT."""
    return assemble(python, "export", APP_SRC[1:], STATIC_ROOT_RECORD[1:])


def _collected(made: Path) -> tuple[str, bytes, bytes] | None:
    """(STATIC_ROOT, the record's tar, the collected files and the record at their paths)
    from the step's export, as read_static reads them from an image; None when nothing
    was recorded."""
    record_name = STATIC_ROOT_RECORD[1:]
    with tarfile.open(made) as tar:
        members = tar.getmembers()
        found = next((m for m in members if m.name == record_name and m.isfile()), None)
        fh = tar.extractfile(found) if found is not None else None
        data = fh.read() if fh is not None else b""
        root = safe_root(data.decode().strip())
        if found is None or root is None:
            return None
        inside = root[1:]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as files:
            for member in members:
                if member.name == inside or member.name.startswith(inside + "/"):
                    files.addfile(member, tar.extractfile(member) if member.isfile() else None)
            files.addfile(found, io.BytesIO(data))
    record = tar_files({record_name.rsplit("/", 1)[1]: data})
    return root, record, buf.getvalue()
