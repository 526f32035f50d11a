"""An arm64 wheelhouse on an amd64 engine without emulating what needs no CPU (issue 22,
item 3), on the real engine with real QEMU user emulation and the arm64 test images
(see test_platforms_engine.py), from the real local index (pkgindex.py): its wheels for
aarch64 (markupsafe's manylinux wheel, a C extension; pure wheels) are resolved and
downloaded by the engine's own builder; only wd-cext-demo, an sdist, is compiled in the
arm64 builder, under emulation, and kept. Which builder ran is read from the steps the
host hands the engine (the real engine, recorded as it runs them)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import BASE_IMAGE, BUILDER_IMAGE, App, serve_image
from pkgindex import Index
from test_build import http_get, nox
from test_platforms_engine import ARM64, ARM_BASE, ARM_BUILDER, arm64_ready  # noqa: F401

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.multiarch.build import build_wheelhouses
from nox_warpdrive.platform import platform_ref
from nox_warpdrive.wheelhouse.build import WheelhouseResult, build_wheelhouse

#: ELF e_machine of AArch64 (and of x86-64)
EM_AARCH64, EM_X86_64 = 183, 62


class Recording:
    """The real engine, with the image of every step it runs written down."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.steps: list[tuple[str, str]] = []

    def run(self, step: Any, *args: Any, **kwargs: Any) -> Any:
        self.steps.append((step.name, step.image))
        return self._engine.run(step, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@pytest.fixture(scope="module")
def arm64_tags(engine: Engine, arm64_ready: None) -> Iterator[None]:  # noqa: F811
    """The arm64 test images where a build of the local base images finds them for
    linux/arm64 (REF-linux-arm64, docs/multi-platform.md); tags made here are removed."""
    made = []
    for ref, arm in ((BASE_IMAGE, ARM_BASE), (BUILDER_IMAGE, ARM_BUILDER)):
        tag = platform_ref(ref, ARM64)
        if engine.image(tag) is None:
            engine.tag(arm, tag)
            made.append(tag)
    try:
        yield
    finally:
        for tag in made:
            with contextlib.suppress(Exception):
                engine.remove_image(tag)


def wheelhouse_arm64(app: App, engine: Engine) -> tuple[WheelhouseResult, list[str], list[str]]:
    """`nox -s wheelhouse -- --platform linux/arm64`, in this process on a recording
    engine: (its result, the output, the CPU of each wheelhouse step's image)."""
    cfg = dataclasses.replace(load_config(app.root), platforms=(ARM64,))
    recording, lines = Recording(engine), []
    results = build_wheelhouses(
        cfg,
        recording,  # type: ignore[arg-type]
        lines.append,
        lambda c, on: build_wheelhouse(c, on, lines.append, check=True),
    )
    cpus = [
        str(engine.inspect_raw(image).get("Architecture"))
        for name, image in recording.steps
        if name == "wheelhouse"
    ]
    return results[0][0], lines, cpus


def manifest(engine: Engine, app: App, slug: str) -> dict[str, Any]:
    raw = engine.read_volume_file(app.volume, f"{slug}/manifest.json", BASE_IMAGE)
    assert raw is not None
    return dict(json.loads(raw))


def elf_machines(wheel: bytes) -> set[int]:
    """The e_machine of every shared object in a wheel."""
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(wheel)) as zf:
        return {
            int.from_bytes(zf.read(n)[18:20], "little") for n in zf.namelist() if n.endswith(".so")
        }


MARKUPSAFE_APP = """\
import os

import markupsafe
import wd_pure_demo
from markupsafe import _speedups  # the aarch64 C extension


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{markupsafe.escape('<b>')} uid={os.getuid()}".encode()]
"""


def test_an_arm64_app_of_binary_wheels_runs_no_emulated_builder(
    make_app: Any, engine: Engine, index_env: Index, arm64_tags: None
) -> None:
    """Pure wheels and markupsafe's aarch64 wheel: the one wheelhouse step runs in the
    amd64 builder, the wheels are the index's files (same sha256), a second run does
    nothing, and the arm64 image answers under emulation as uid 1001."""
    app: App = make_app(["wd-pure-demo", "markupsafe"])
    (app.root / "wsgi.py").write_text(MARKUPSAFE_APP)
    result, lines, cpus = wheelhouse_arm64(app, engine)
    out = "\n".join(lines)
    assert cpus == ["amd64"], out  # no builder of the other CPU ran
    assert "resolving for aarch64-manylinux_2_36" in out and "compiling" not in out, out
    slug = result.key.slug
    assert slug.startswith("cp311-cp311-linux_aarch64")
    data = manifest(engine, app, slug)
    files = {w["file"]: w["sha256"] for w in data["resolved"]}
    [ms] = [f for f in files if f.startswith("markupsafe-")]
    assert "aarch64" in ms
    served = (index_env.root / "files" / ms).read_bytes()
    import hashlib

    assert files[ms] == hashlib.sha256(served).hexdigest()
    assert any(f.startswith("gunicorn-") for f in files)
    # the arm64 uv is in the key's tools (fetched, never run here) for its deps layer
    assert data["tools"]["uv"]["path"].startswith("tools/uv-")

    again, _, cpus = wheelhouse_arm64(app, engine)
    assert again.up_to_date and cpus == ["amd64"]  # the check of the volume: native

    built = nox(app, "-s", "image", "--", "--platform", "linux/arm64")
    assert built.returncode == 0, built.stdout + built.stderr
    assert str(engine.inspect_raw(app.image).get("Architecture")) == "arm64"
    with serve_image(engine, app.image) as (_, url):
        status, body = http_get(url + "/", timeout=90)
    assert status == 200 and "&lt;b&gt; uid=1001" in body, body


def test_the_sdist_alone_is_compiled_for_aarch64_under_emulation_and_kept(
    make_app: Any, engine: Engine, index_env: Index, arm64_tags: None
) -> None:
    """wd-cext-demo has no wheel: the amd64 builder resolves and downloads the rest,
    then the arm64 builder (emulated) compiles it alone; its .so is AArch64; the set is
    recorded once, and a second run compiles nothing."""
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    result, lines, cpus = wheelhouse_arm64(app, engine)
    out = "\n".join(lines)
    assert cpus == ["amd64", "arm64"], out
    assert "compiling wd-cext-demo==0.1.0 for cp311-cp311-linux_aarch64" in out, out
    assert "resolving with uv" in out and out.count("resolving with uv") == 1, out
    data = manifest(engine, app, result.key.slug)
    [cext] = [w["file"] for w in data["resolved"] if w["file"].startswith("wd_cext_demo")]
    assert cext.endswith("-cp311-cp311-linux_aarch64.whl")
    wheel = engine.read_volume_file(app.volume, f"{result.key.slug}/wheels/{cext}", BASE_IMAGE)
    assert wheel is not None and elf_machines(wheel) == {EM_AARCH64}
    assert len(data["sets"]) == 1 and sorted(result.new) == sorted(
        w["file"] for w in data["resolved"]
    )

    again, _, cpus = wheelhouse_arm64(app, engine)
    assert again.up_to_date and cpus == ["amd64"]  # the check of the volume: native
