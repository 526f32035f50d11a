"""collectstatic for a linux/arm64 image built alone on an amd64 engine, run natively
(issue 22, item 5; build/native_static.py), on the real engine with the real arm64
images and QEMU (test_platforms_engine.py sets them up) and the local package index.

A Django app of pure-Python packages, built twice with `--platform linux/arm64` alone:
first collectstatic runs in one container of the amd64 base image given the arm64
virtualenv and the app tree (no emulated app container); then, the engine's own image of
the base ref gone and a settings comment added (collectstatic runs again), under
emulation. Both images' static layers hold the same files (path, type, mode, owner,
sha256) and are the same blob. With a compiled package (wd-cext-demo, aarch64) it is not
tried natively, and the build says why."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from conftest import BASE_IMAGE, App, write_django
from pkgindex import Index
from test_build import nox
from test_foreign_deps_engine import images, layer_files
from test_platforms_engine import arm64_ready, use

from nox_warpdrive.engine import Engine
from nox_warpdrive.labels import STATIC_LAYER_LABEL

__all__ = ["arm64_ready", "images"]  # the fixtures, used by name


def static_layer(engine: Engine, image: str, tmp: Path) -> tuple[str, bytes]:
    """(diff ID, tar) of the app image's static layer (its label names it), as saved."""
    info = engine.inspect_raw(image)
    diff = info["Config"]["Labels"][STATIC_LAYER_LABEL]
    index = info["RootFS"]["Layers"].index(diff)
    saved = tmp / "saved.tar"
    engine.save_image(image, saved)
    with tarfile.open(saved) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        member = tar.extractfile(manifest[0]["Layers"][index])
        assert member is not None
        data = member.read()
    saved.unlink()
    return diff, data


def test_arm64_collectstatic_runs_natively_and_collects_what_emulation_does(
    make_app: object,
    engine: Engine,
    index_env: Index,
    images: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no earlier failure kept
    app: App = make_app(["django"])  # type: ignore[operator]
    (app.root / "wsgi.py").unlink()
    write_django(app.root, "shop-v1")
    use(app, *images)

    native = nox(app, "-s", "image", "--", "--platform", "linux/arm64")
    out = native.stdout + native.stderr
    assert native.returncode == 0, out
    assert f"collectstatic for linux/arm64 ran in {images[0]} (no emulation, " in out, out
    assert out.count("collectstatic --noinput") == 1, out  # the native run, nothing emulated
    assert engine.inspect_raw(app.image)["Architecture"] == "arm64"
    native_diff, native_layer = static_layer(engine, app.image, tmp_path)

    engine.remove_image(images[0])  # the tag: no twin now, so the emulated way
    settings = app.root / "site1" / "settings.py"
    settings.write_text(settings.read_text() + "# a comment: collectstatic runs again\n")
    emulated = nox(app, "-s", "image", "--", "--platform", "linux/arm64")
    out = emulated.stdout + emulated.stderr
    assert emulated.returncode == 0, out
    assert "running collectstatic for linux/arm64 under emulation: there is no local" in out
    assert out.count("collectstatic --noinput") == 1, out
    emulated_diff, emulated_layer = static_layer(engine, app.image, tmp_path)

    files, expected = layer_files(native_layer), layer_files(emulated_layer)
    assert any(p.endswith("shop/site.css") for p in files), sorted(files)
    assert len(files) > 5, sorted(files)
    differ = sorted(p for p in set(files) | set(expected) if files.get(p) != expected.get(p))
    assert not differ, [(p, files.get(p), expected.get(p)) for p in differ[:20]]
    assert native_diff == emulated_diff  # the same blob

    # compiled packages: not tried natively (their copy costs more than emulation saves,
    # and Django's setup may import one), said in one line
    (app.root / "requirements.txt").write_text("django\nwd-cext-demo\n")
    engine.tag(engine.require_image(BASE_IMAGE, "base").id, images[0])
    settings.write_text(settings.read_text() + "# another comment\n")
    compiled = nox(app, "-s", "image", "--", "--platform", "linux/arm64")
    out = compiled.stdout + compiled.stderr
    assert compiled.returncode == 0, out
    assert "under emulation: it has compiled packages (wd-cext-demo)" in out, out
    assert out.count("collectstatic --noinput") == 1, out
