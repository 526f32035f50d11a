"""Another CPU's wheels, resolved and downloaded without emulating it.

A wheelhouse for a platform that is not the engine's own (linux/arm64 on an amd64
engine) used to run its builder, pip and uv included, under QEMU: a cold wheelhouse of a
small app took 55 s instead of 3 s. Most of that work does not depend on the CPU at all:
resolving the requirements for the probed interpreter (uv's ``--python-platform`` and
``--python-version``) and downloading the wheels the index has for its tags. So the
builder runs twice: first in the engine's own builder (the native one), writing the
foreign key's part of the volume, and only the pins that have no wheel for the probed
tags (sdists: they must be compiled on that CPU) go to a second run in the foreign
builder, under emulation, given the resolution so that it does not resolve again.

This module is the host's part, pure data: the probed key's tag list (what a wheel must
carry to be installed there, computed as ``packaging.tags`` computes it inside an
interpreter, from the probed interpreter, ABI, architecture and libc version), uv's and
pip's names for the target, and whether this route can serve a build at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from packaging import tags as ptags

from ..engine import ImageInfo, Output
from ..errors import BuildError, WarpdriveError
from ..inputs.requirements import RequirementSet
from ..platform import PlatformKey

#: the glibc versions uv 0.13 takes as ``ARCH-manylinux_2_N`` targets (besides 2014)
UV_MANYLINUX = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
#: the CPUs this route targets (uv names targets of these; others stay emulated)
ARCHES = ("x86_64", "aarch64")
#: manylinux's oldest glibc per CPU (PEP 600: aarch64 wheels start at manylinux2014)
_OLDEST_GLIBC = {"x86_64": 5, "aarch64": 17}
#: PEP 600's legacy names of some glibc versions
_LEGACY = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


def arch_of(key: PlatformKey) -> str:
    """``aarch64`` of ``linux_aarch64`` ('' when the key's platform is not Linux)."""
    plat = key.platform
    return plat[len("linux_") :] if plat.startswith("linux_") else ""


def _minor(version: str) -> int | None:
    """The minor of a ``2.36``/``1.2`` libc version (None when it says none)."""
    parts = version.split(".")
    try:
        return int(parts[1]) if len(parts) >= 2 and int(parts[0]) in (1, 2) else None
    except ValueError:
        return None


def platform_tags(key: PlatformKey) -> list[str]:
    """The platform tags a wheel may carry for this key, best first, as pip's
    ``packaging.tags`` lists them inside that interpreter: ``manylinux_2_36_aarch64``
    down to the oldest manylinux of the CPU (with PEP 600's legacy aliases), or
    ``musllinux_1_2_x86_64`` down to ``1_0``; then ``linux_aarch64``."""
    arch, minor = arch_of(key), _minor(key.libc_version)
    if not arch:
        return []
    found: list[str] = []
    if key.libc == "glibc" and minor is not None:
        for m in range(minor, _OLDEST_GLIBC.get(arch, 17) - 1, -1):
            found.append(f"manylinux_2_{m}_{arch}")
            if m in _LEGACY:
                found.append(f"{_LEGACY[m]}_{arch}")
    elif key.libc == "musl" and minor is not None:
        found += [f"musllinux_1_{m}_{arch}" for m in range(minor, -1, -1)]
    return [*found, key.platform]


def supported_tags(key: PlatformKey) -> list[str]:
    """Every ``interpreter-abi-platform`` tag the key's interpreter installs, best first
    (a CPython key on Linux; empty for any other, which stays emulated)."""
    interp = key.interpreter
    if not interp.startswith("cp") or not interp[2:].isdigit() or len(interp) < 4:
        return []
    version = (int(interp[2]), int(interp[3:]))
    plats = platform_tags(key)
    if not plats:
        return []  # not Linux: not a target
    found = list(ptags.cpython_tags(version, [key.abi], plats))
    found += ptags.compatible_tags(version, interp, plats)
    return [str(t) for t in dict.fromkeys(found)]


def uv_python_platform(key: PlatformKey) -> str | None:
    """uv's ``--python-platform`` for the key (``aarch64-manylinux_2_36``): the newest
    glibc target uv has that is not newer than the key's (None: uv has none for it)."""
    arch, minor = arch_of(key), _minor(key.libc_version)
    if arch not in ARCHES or minor is None:
        return None
    if key.libc == "musl":
        return f"{arch}-unknown-linux-musl" if minor >= 2 else None
    if key.libc != "glibc":
        return None
    fits = [m for m in UV_MANYLINUX if m <= minor]
    return f"{arch}-manylinux_2_{fits[-1]}" if fits else None


def pip_platforms(key: PlatformKey) -> list[str]:
    """pip download's ``--platform`` values: the key's platform tags."""
    return platform_tags(key)


@dataclass(frozen=True)
class Route:
    """How the foreign key's wheels are made: ``native`` (resolved and downloaded in the
    engine's own builder, sdists compiled emulated) or not, and why not in one line."""

    native: bool
    why: str = ""


def route_for(
    key: PlatformKey, reqs: RequirementSet, native_builder: str, *, prune: str = ""
) -> Route:
    """Whether the native route can serve this build: a native builder was found, the
    key is a CPython on Linux of a CPU uv targets, and the set is an unlocked list of
    requirements (a lock's own file choice, the project's own wheel and --prune stay in
    the foreign builder, as before)."""
    if not native_builder:
        return Route(False, "no builder image of the engine's own CPU was found")
    if not supported_tags(key) or uv_python_platform(key) is None:
        return Route(False, f"{key.interpreter} on {key.platform} ({key.libc}) is not a target")
    if reqs.locked_from:
        return Route(False, f"the pins come from {reqs.locked_from}")
    if reqs.project is not None or reqs.members:
        return Route(False, "the project itself is built into a wheel")
    if prune:
        return Route(False, "--prune runs in the platform's own builder")
    return Route(True)


def cross_plan(key: PlatformKey, native_key: PlatformKey) -> dict[str, object]:
    """What the builder's native run needs to resolve and download for ``key`` (the
    plan's ``cross`` entry): uv's and pip's names of the target, its tag list, and the
    native key, whose tools (uv for this CPU) it runs."""
    full = key.python_version or f"{key.interpreter[2]}.{key.interpreter[3:]}"
    return {
        "python_platform": uv_python_platform(key),
        "python_version": full,
        "tags": supported_tags(key),
        "pip_platforms": pip_platforms(key),
        "implementation": key.interpreter[:2],
        "abi": key.abi,
        "native_key": native_key.slug,
    }


#: probes a builder image by its ref: (its info, its platform key)
Probe = Callable[[str], tuple[ImageInfo, PlatformKey]]
#: runs the builder with a plan (a WheelhousePlan) and a ready callback: its summary
Runner = Callable[[Any, Any], dict[str, Any]]


def run(
    plan: Any,
    native_ref: str,
    probe: Probe,
    run_builder: Runner,
    on_ready: Any,
    out: Output,
) -> dict[str, Any]:
    """Run the builder for ``plan`` (a WheelhousePlan) and return its summary. For a
    key of another CPU (``native_ref``: the engine's own builder image, "" for a key of
    the engine's CPU) the native run comes first, then, only for what it left to compile,
    the key's own builder under emulation; where the native route cannot serve, a line
    says why and the key's own builder does everything, as before."""
    if not native_ref:
        return run_builder(plan, on_ready)
    route = route_for(plan.key, plan.requirements, native_ref, prune=plan.prune)
    native = _probe(native_ref, probe, plan.key) if route.native else route.why
    if isinstance(native, str):
        return _emulated(plan, native, run_builder, on_ready, out)
    info, native_key = native
    first = run_builder(
        dataclasses.replace(plan, builder_image=info.id, cross=cross_plan(plan.key, native_key)),
        on_ready,
    )
    if first.get("unserved"):
        return _emulated(plan, str(first["unserved"]), run_builder, on_ready, out)
    pending = first.get("pending")
    if not isinstance(pending, list):
        return first
    names = ", ".join(str(c) for c in first.get("compile") or ())
    out(f"warpdrive: compiling {names} for {plan.key.slug} in its own builder (emulated)")
    given = tuple(tuple(p) for p in pending)
    try:
        second = run_builder(dataclasses.replace(plan, pins=given), None)
    except BuildError as exc:  # named with the platform key it was compiled for
        raise BuildError(f"for {plan.key.slug} (emulated): {exc.message}", fix=exc.fix) from exc
    return {**second, "new": [*first.get("new", ()), *second.get("new", ())]}


def _probe(ref: str, probe: Probe, key: PlatformKey) -> tuple[ImageInfo, PlatformKey] | str:
    """The native builder and its key, or why it cannot serve (it cannot be probed, or
    it is of the same CPU as the target after all)."""
    try:
        info, native_key = probe(ref)
    except WarpdriveError as exc:
        return f"the engine's own builder image {ref} cannot be used ({exc.message})"
    if native_key.platform == key.platform:
        return f"the builder image {ref} is also for {key.platform}"
    return info, native_key


def _emulated(
    plan: Any, why: str, run_builder: Runner, on_ready: Any, out: Output
) -> dict[str, Any]:
    out(
        f"warpdrive: {why}; every wheel of {plan.key.slug} is resolved and made in its "
        "own builder, under emulation"
    )
    return run_builder(plan, on_ready)
