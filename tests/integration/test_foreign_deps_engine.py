"""The deps layer of another CPU's image made without emulation (issue 22, item 4), on
the real engine with the real arm64 images and QEMU (test_platforms_engine.py sets them
up): the layer made in an amd64 container from the aarch64 wheels is the layer the
emulated arm64 container makes, file for file (path, type, mode, owner, sha256 of the
content, link target), and so the same image. The app has pure wheels, gunicorn (a
console script and the server check) and wd-cext-demo, an sdist compiled for aarch64
under emulation by the wheelhouse."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BASE_IMAGE, BUILDER_IMAGE, App, serve_image
from pkgindex import Index
from test_build import http_get, nox
from test_platforms_engine import AMD64, ARM64, ARM_BASE, ARM_BUILDER, arm64_ready, use

from nox_warpdrive.build.deps import choose_installer, plan_deps, run_deps
from nox_warpdrive.build.foreign_deps import build_native, native_way
from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.platform import platform_ref
from nox_warpdrive.wheelhouse.build import probe_image, read_manifest, resolved_set
from nox_warpdrive.wheelhouse.targets import restore, target_for

__all__ = ["arm64_ready"]  # the fixture, used by name


@pytest.fixture
def images(engine: Engine, arm64_ready: None) -> Iterator[tuple[str, str]]:
    """(base, builder): refs of this test naming the amd64 test images, with the arm64
    ones under their ``-linux-arm64`` tags (where a build finds another CPU's image)."""
    name = f"wdtest-fd-{uuid.uuid4().hex[:8]}"
    base, builder = f"{name}/python:3.11-bookworm", f"{name}/python-builder:3.11-bookworm"
    made = []
    try:
        for ref, amd, arm in ((base, BASE_IMAGE, ARM_BASE), (builder, BUILDER_IMAGE, ARM_BUILDER)):
            for tag, src in ((ref, amd), (platform_ref(ref, ARM64), arm)):
                found = engine.image(src)
                assert found is not None
                engine.tag(found.id, tag)
                made.append(tag)
        yield base, builder
    finally:
        for tag in made:
            with contextlib.suppress(Exception):
                engine.remove_image(tag)  # the tag only: the images are the test images'


def layer_files(tar_bytes: bytes | Path) -> dict[str, tuple[object, ...]]:
    """Each member of a layer tar: (type, mode, uid, gid, sha256 of the content, link)."""
    source = io.BytesIO(tar_bytes) if isinstance(tar_bytes, bytes) else tar_bytes.open("rb")
    found: dict[str, tuple[object, ...]] = {}
    with source, tarfile.open(fileobj=source, mode="r|") as tar:
        for m in tar:
            data = tar.extractfile(m) if m.isreg() else None
            digest = hashlib.sha256(data.read()).hexdigest() if data is not None else ""
            found[m.name] = (m.type, m.mode, m.uid, m.gid, digest, m.linkname)
    return found


def top_layer(engine: Engine, image: str, tmp: Path) -> bytes:
    """The last layer of an image, as `docker save` gives it."""
    saved = tmp / "saved.tar"
    engine.save_image(image, saved)
    with tarfile.open(saved) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        member = tar.extractfile(manifest[0]["Layers"][-1])
        assert member is not None
        return member.read()


def test_the_arm64_deps_layer_made_natively_is_the_emulated_one(
    make_app: object, engine: Engine, index_env: Index, images: tuple[str, str], tmp_path: Path
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-cext-demo", "gunicorn"])  # type: ignore[operator]
    use(app, *images)
    # both platforms: the volume then keeps the engine's CPU's uv too (for a uv install)
    wheels = nox(app, "-s", "wheelhouse", "--", "--platform", "linux/amd64,linux/arm64")
    assert wheels.returncode == 0, wheels.stdout + wheels.stderr
    cfg = load_config(app.root)
    target = target_for(cfg, engine, ARM64, AMD64)
    restore(engine, target.resolved)
    tcfg = target.cfg
    base, pkey = probe_image(engine, tcfg.base_image, "base-image", tcfg)
    manifest = read_manifest(engine, tcfg.volume, pkey, base.id)
    (digest,) = manifest["sets"]
    resolved = resolved_set(manifest, digest)
    assert resolved is not None
    assert any("aarch64" in w.filename and w.filename.startswith("wd_cext") for w in resolved)
    installer = choose_installer(tcfg, manifest, pkey)
    emulated = plan_deps(tcfg, base, pkey, resolved, installer)
    lines: list[str] = []

    started = time.monotonic()  # today's way: the deps step in the arm64 image, emulated
    run_deps(engine, emulated.step, lines.append, into=tmp_path / "emulated.tar")
    emulated_s = time.monotonic() - started

    twin = native_way(engine, tcfg, (base, pkey, installer), False, lines.append)
    assert twin is not None, lines
    assert twin.ref == images[0] and bool(twin.uv) == (installer.name == "uv")
    started = time.monotonic()  # the amd64 container, the layer on the arm64 base, checked
    made = build_native(
        engine, tcfg, emulated, (base, pkey, installer), resolved, twin, lines.append
    )
    native_s = time.monotonic() - started
    assert made.image_id is not None
    try:
        layer = top_layer(engine, made.image_id, tmp_path)
        diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
        native = layer_files(layer)
        emulated_files = layer_files(tmp_path / "emulated.tar")
        differ = sorted(
            p for p in set(native) | set(emulated_files) if native.get(p) != emulated_files.get(p)
        )
        assert not differ, [(p, native.get(p), emulated_files.get(p)) for p in differ[:20]]
        assert any(p.endswith("/bin/gunicorn") for p in native)
        assert any(p.endswith(".pyc") for p in native)
        assert "etc/passwd" in native
        # the same layer on the same base with the same labels: the same image
        again = engine.append_layer(
            base.id,
            tmp_path / "emulated.tar",
            emulated.step.commit,  # type: ignore[arg-type]
            created_by="nox-warpdrive deps layer",
        )
        assert again == made.image_id
        info = engine.inspect_raw(made.image_id)
        assert info["Architecture"] == "arm64"
        labels = info["Config"]["Labels"]
        assert emulated.step.commit is not None
        assert all(labels.get(k) == v for k, v in emulated.step.commit.labels.items())
        assert any("compiled files checked" in line for line in lines)
    finally:
        engine.remove_image(made.image_id)
    timing = [line for line in lines if "ready in" in line or "files checked in" in line]
    print(
        f"\ncold arm64 deps layer, {len(resolved)} wheels, installer {installer.name}: "
        f"emulated {emulated_s:.1f} s, native {native_s:.1f} s "
        f"(install {made.seconds:.1f} s of containers); {timing}"
    )
    # the build itself takes that way, and the image it makes runs on arm64 (emulated)
    built = nox(app, "-s", "image", "--", "--platform", "linux/arm64")
    said = built.stdout + built.stderr
    assert built.returncode == 0, said
    assert f"making the linux/arm64 deps layer in {images[0]} (no emulation)" in said, said
    assert diff_id in engine.inspect_raw(app.image)["RootFS"]["Layers"]
    with serve_image(engine, app.image) as (_, url):
        status, body = http_get(url + "/", timeout=90)
    assert status == 200 and "add=42 uid=1001" in body, body
