"""The deps layer of another CPU's image, made without emulating its installer.

A virtualenv holds no compiled code of its own: its files are the wheels' files, the
console scripts, ``pyvenv.cfg`` and the interpreter's symbolic links (paths, not code),
and bytecode, which depends on the Python minor version and not on the CPU. So the deps
layer of a ``linux/arm64`` image can be made in a container of the engine's own CPU, from
the same wheels (``/warpdrive/<the arm64 key>/wheels``), with the same installer step
(runtime/assemble.py ``deps``), as long as that container's Python is the same version
at the same path as the target's: pip takes the target's wheel tags (``--platform``)
instead of its own, and the layer's ``/etc/passwd`` starts from the target image's.
The layer, exported as always, is put on the target's base image with no container
(engine.append_layer, as an emulated export step's layer is), with the same labels
and key. The shared-library and server check runs in the same container, from data
(runtime/assemble.native_check): each compiled file's needed libraries against the
target's loader cache (read out of its image, never run), and the pure-Python servers
loaded natively. Only where that cannot tell (no glibc loader cache, a library it does
not find, a server that does not load here) does the check run in the target's image,
emulated, as before (`ldd` there decides, and names what is missing).

tests/integration/test_foreign_deps_engine.py proves that both ways give the same layer
(the same files, modes, owners and bytes; the same image id).
"""

from __future__ import annotations

import base64
import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..engine import Engine, ImageInfo, Output, RunResult
from ..errors import WarpdriveError, host_writes
from ..layout import VENV
from ..plan import VOLUME_DIR, Step, assemble
from ..platform import Platform, PlatformKey, platform_ref
from ..refs import split_ref
from ..runtime import elfcheck, protocol
from ..tars import archived_file
from ..wheelhouse.build import probe_image, read_manifest
from ..wheelhouse.targets import engine_platform, image_for, image_platform, restore
from ..wheelhouse.wheels import Wheel
from . import deps_step as d
from .deps_step import DepsPlan, Installer


@dataclass(frozen=True)
class NativeTwin:
    """An image of the engine's own CPU whose Python is the target's (same version, same
    path): where a foreign deps layer can be installed natively."""

    ref: str
    info: ImageInfo
    pkey: PlatformKey
    #: the engine's CPU's uv of the target's uv version, in the volume ("": pip installs)
    uv: str = ""


def foreign_platform(engine: Engine, base: ImageInfo) -> Platform | None:
    """The base image's platform when it is not the engine's own (None: it is, or its
    config does not say)."""
    found = image_platform(base)
    if found is None or found.matches(engine_platform(engine)):
        return None
    return found


def _candidates(cfg: Config, platform: Platform, native: Platform) -> list[str]:
    """Where the engine's own image of the base ref is: the ref a platform tag
    (``REF-linux-arm64``) was made from, and that ref's tag for the engine's platform."""
    repo, tag = split_ref(cfg.base_image)
    suffix = f"-{platform.slug}"
    ref = f"{repo}:{tag[: -len(suffix)]}" if tag.endswith(suffix) else cfg.base_image
    return list(dict.fromkeys((ref, platform_ref(ref, native))))


def _pull_twin(engine: Engine, ref: str, native: Platform) -> str | None:
    """The name of the engine's own image of ``ref`` pulled now (kept as
    ``REF-linux-amd64``), when neither it nor that tag is here but a registry has it
    (``ref`` an image index, as python:3.12-slim is: `--platform linux/arm64` alone on
    an amd64 engine); None when one is here already, or none can be pulled (the layer
    is then made emulated)."""
    if any(engine.image(r) is not None for r in (ref, platform_ref(ref, native))):
        return None
    try:  # kept as REF-linux-amd64, the tag REF put back (as a build keeps what it pulls)
        found = image_for(engine, ref, "base-image", native, None, None)
    except WarpdriveError:
        return None
    restore(engine, (found,))
    return found.name


def native_twin(
    engine: Engine, cfg: Config, platform: Platform, pkey: PlatformKey
) -> tuple[NativeTwin | None, str]:
    """The base image of the engine's own CPU for ``cfg``'s base ref, when its Python is
    the target's (``pkey``: the target's probe): (twin, "") or (None, why not)."""
    native = engine_platform(engine)
    candidates = _candidates(cfg, platform, native)
    pulled = _pull_twin(engine, candidates[0], native)
    for ref in candidates if pulled is None else [pulled]:
        info = engine.image(ref)
        found = image_platform(info) if info is not None else None
        if info is None or found is None or not found.matches(native):
            continue
        _, twin = probe_image(engine, ref, "base-image", cfg)
        ours = (twin.interpreter, twin.abi, twin.python_version, twin.executable)
        theirs = (pkey.interpreter, pkey.abi, pkey.python_version, pkey.executable)
        if ours != theirs:
            return None, (
                f"{ref} ({native}) has Python {twin.python_version} at {twin.executable}, "
                f"the {platform} image {pkey.python_version} at {pkey.executable}"
            )
        return NativeTwin(ref, info, twin), ""
    return None, f"there is no local {native} image of {candidates[0]} to install in"


def wheel_platforms(pkey: PlatformKey) -> list[str]:
    """The platform tags the target's pip takes (``--platform``), as packaging derives
    them from its libc: ``manylinux_2_36_aarch64`` down to ``manylinux_2_5``, their
    legacy aliases, then ``linux_aarch64``; ``musllinux_1_2`` down to ``_1_0``."""
    arch = pkey.platform.split("_", 1)[1] if pkey.platform.startswith("linux_") else ""
    if not arch:
        return []
    major, _, minor = pkey.libc_version.partition(".")
    found: list[str] = []
    if pkey.libc == "glibc" and major.isdigit() and minor.isdigit():
        aliases = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        for m in range(int(minor), 4, -1):
            found.append(f"manylinux_{major}_{m}_{arch}")
            if int(major) == 2 and m in aliases:
                found.append(f"{aliases[m]}_{arch}")
    elif pkey.libc == "musl" and major.isdigit() and minor.isdigit():
        found += [f"musllinux_{major}_{m}_{arch}" for m in range(int(minor), -1, -1)]
    return [*found, pkey.platform]


#: the manylinux versions uv's ``--python-platform`` names (``aarch64-manylinux_2_36``)
UV_MANYLINUX = (17, 28, *range(31, 41))


def uv_platform(pkey: PlatformKey) -> str:
    """uv's ``--python-platform`` for exactly the target's tags ("": uv has none)."""
    arch = pkey.platform.split("_", 1)[1] if pkey.platform.startswith("linux_") else ""
    major, _, minor = pkey.libc_version.partition(".")
    if arch not in ("x86_64", "aarch64") or not minor.isdigit():
        return ""
    if pkey.libc == "glibc" and major == "2" and int(minor) in UV_MANYLINUX:
        return f"{arch}-manylinux_2_{minor}"
    if pkey.libc == "musl" and pkey.libc_version == "1.2":
        return f"{arch}-unknown-linux-musl"
    return ""


def why_not(installer: Installer, on_parent: bool, pkey: PlatformKey) -> str:
    """Why this deps layer is not made natively ("" when it can be)."""
    if on_parent:
        return "it adds wheels to an earlier deps layer of that platform"
    if installer.name == "uv" and not uv_platform(pkey):
        return f"uv names no platform of exactly its wheel tags ({pkey.describe()})"
    if not wheel_platforms(pkey):
        return f"its wheel tags ({pkey.platform}) are not known here"
    return ""


def native_uv(engine: Engine, cfg: Config, twin: NativeTwin, installer: Installer) -> str:
    """The engine's CPU's uv of the target's uv version in the volume, as the manifest of
    the twin's platform key records it, else where a wheelhouse of another platform keeps
    it (``<native key>/tools/uv-VERSION/uv``, fetched to resolve for that platform; read
    once to know it is there); "" when the volume has none."""
    manifest = read_manifest(engine, cfg.volume, twin.pkey, twin.info.id)
    tools = manifest.get("tools")
    uv = tools.get("uv") if isinstance(tools, dict) else None
    if isinstance(uv, dict) and uv.get("path") and str(uv.get("version")) == installer.version:
        return f"{VOLUME_DIR}/{twin.pkey.slug}/{uv['path']}"
    kept = f"{twin.pkey.slug}/tools/uv-{installer.version}/uv"
    if installer.version and engine.read_volume_file(cfg.volume, kept, twin.info.id):
        return f"{VOLUME_DIR}/{kept}"
    return ""


def plan_native(
    cfg: Config,
    emulated: DepsPlan,
    target: tuple[PlatformKey, Installer],
    resolved: list[Wheel],
    twin: NativeTwin,
    base: tuple[bytes, list[str] | None],
) -> Step:
    """The target's deps step (``emulated``: its key, ref and labels stay) run in the
    twin instead, exporting the layer, checked there against the target's loader
    cache's sonames when it has one (``base``: its /etc/passwd and those sonames), else
    not (``check_step`` does it)."""
    pkey, installer = target
    passwd, sonames = base
    plan = {
        **d.step_plan(cfg, pkey, resolved, installer, list(emulated.files)),
        "export": True,
        "tmpdir": d.DEPS_SCRATCH,
        "platforms": wheel_platforms(pkey),
        **({"uv": twin.uv, "python_platform": uv_platform(pkey)} if twin.uv else {}),
        "passwd": base64.b64encode(passwd).decode(),
        "check": False,
        **({"loader_cache": sonames} if sonames is not None else {}),
    }
    return dataclasses.replace(
        emulated.step,
        image=twin.info.id,
        files=(("/tmp", d.helpers(plan)),),
        export=d.export_command(cfg.python),
    )


def check_step(cfg: Config, image: str) -> Step:
    """The shared-library and server check of the virtualenv in ``image`` (the target's
    base image with the new layer), run in a container of the target's CPU."""
    plan = {"venv": VENV, "python": cfg.python}
    return Step(
        name="deps check",
        image=image,
        command=assemble(cfg.python, "check"),
        files=(("/tmp", d.helpers(plan)),),
        network="none",
        user="0:0",
    )


def read_base(engine: Engine, image: str, arch: str) -> tuple[bytes, list[str] | None]:
    """The image's /etc/passwd and the sonames of its loader cache (/etc/ld.so.cache,
    those for ``arch``, a CPU as wheel tags name it), read without running it (one
    created container); None for the sonames when it has no glibc loader cache (musl)
    or it cannot be read."""
    with engine.image_reader(image) as read:
        passwd, cache = archived_file(read("/etc/passwd")), archived_file(read("/etc/ld.so.cache"))
    if passwd is None:
        raise WarpdriveError(f"image {image} has no /etc/passwd", fix="use a Debian-like base")
    try:
        return passwd, elfcheck.cache_sonames(cache, arch) if cache is not None else None
    except ValueError:
        return passwd, None


def still_to_check(found: object, loader_cache: bool) -> str:
    """Why the layer must still be checked in the target's image, from what the native
    check said (its CHECKED line's data); "" when that settled it."""
    if not loader_cache:
        return "its image has no glibc loader cache (/etc/ld.so.cache) readable here"
    if not isinstance(found, dict):
        return "the check from its loader cache said nothing"
    if found.get("unread"):
        return f"compiled files not readable here: {', '.join(found['unread'][:2])}"
    libraries = found.get("libraries")
    if isinstance(libraries, dict) and libraries:
        return f"its loader cache lacks {', '.join(sorted(libraries))} (the loader is asked there)"
    if found.get("failed"):
        return f"{found['failed']} (a compiled module of that CPU's?)"
    return ""


def build_native(
    engine: Engine,
    cfg: Config,
    emulated: DepsPlan,
    target: tuple[ImageInfo, PlatformKey, Installer],
    resolved: list[Wheel],
    twin: NativeTwin,
    out: Output,
) -> RunResult:
    """The target's whole deps layer (``emulated``: the step that would make it under
    emulation), made in ``twin`` and put on the target's base image, then checked there;
    that image is removed when the check fails (nothing half made stays). The result
    as run_deps gives it (the image id, the seconds both containers took)."""
    base, pkey, installer = target
    arch = pkey.platform.split("_", 1)[1] if pkey.platform.startswith("linux_") else ""
    passwd, sonames = read_base(engine, base.id, arch)
    step = plan_native(cfg, emulated, (pkey, installer), resolved, twin, (passwd, sonames))
    if not d.fits_in_memory(resolved, engine.memory_total()):
        step = dataclasses.replace(step, tmpfs=(d.DEPS_SCRATCH,))
    assert step.commit is not None
    found: list[object] = []

    def heard(line: str) -> None:  # the native check's line is for the host only
        kind, data = protocol.parse(line) or ("", None)
        if kind == "checked":
            found.append(data)
        else:
            out(line)

    with tempfile.TemporaryDirectory(prefix="warpdrive-layer-") as tmp, host_writes(tmp):
        layer = Path(tmp) / "layer.tar"
        made = d.run_deps(engine, step, heard, into=layer)
        image = engine.append_layer(
            base.id, layer, step.commit, created_by="nox-warpdrive deps layer"
        )
    platform = image_platform(base)
    said = found[-1] if found else None
    why = still_to_check(said, sonames is not None)
    if not why and isinstance(said, dict):
        servers = ", ".join(str(s) for s in said.get("servers") or ()) or "none"
        out(
            f"warpdrive: {said.get('files')} compiled files checked against the {platform} "
            f"image's loader cache and servers loaded natively ({servers}) in "
            f"{said.get('seconds')} s: no emulated check"
        )
        return RunResult(0, made.output_tail, image, made.seconds)
    out(f"warpdrive: checking the {platform} deps layer in its own image (emulated): {why}")
    try:
        checked = d.run_deps(engine, check_step(cfg, image), out)
    except BaseException:
        engine.remove_image(image)
        raise
    return RunResult(0, made.output_tail, image, made.seconds + checked.seconds)


def native_way(
    engine: Engine,
    cfg: Config,
    target: tuple[ImageInfo, PlatformKey, Installer],
    on_parent: bool,
    out: Output,
) -> NativeTwin | None:
    """The twin a foreign platform's deps layer is made in natively, where that gives
    the same layer; None where it is the engine's own platform, or (after one line
    saying why) where it must be made under emulation."""
    base, pkey, installer = target
    platform = foreign_platform(engine, base)
    if platform is None:
        return None
    why = why_not(installer, on_parent, pkey)
    twin = None
    if not why:
        twin, why = native_twin(engine, cfg, platform, pkey)
    if twin is not None and installer.name == "uv":
        twin = dataclasses.replace(twin, uv=native_uv(engine, cfg, twin, installer))
        if not twin.uv:
            why = f"the volume has no {twin.pkey.platform} uv {installer.version} (its installer)"
            twin = None
    if twin is None:
        out(f"warpdrive: making the {platform} deps layer under emulation: {why}")
        return None
    out(f"warpdrive: making the {platform} deps layer in {twin.ref} (no emulation)")
    return twin
