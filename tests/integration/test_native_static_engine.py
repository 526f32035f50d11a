"""collectstatic for a linux/arm64 image built alone on an amd64 engine, run natively
(issue 22, item 5; build/native_static.py), on the real engine with the real arm64
images and QEMU (test_platforms_engine.py sets them up) and the local package index.

One Django app, built twice with `--platform linux/arm64` alone: first collectstatic runs
in the stand-in (the amd64 base image with the arm64 virtualenv and the app layers), no
emulated app container; then the settings import the app's compiled module (wd-cext-demo,
compiled for aarch64) inside a ``try/except ImportError`` that would hide the failure: the
guard makes that run fail, and collectstatic runs under emulation. Both images' static
layers hold the same files (path, type, mode, owner, sha256) and are the same blob."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from conftest import App, write_django
from pkgindex import Index
from test_build import nox
from test_foreign_deps_engine import images, layer_files
from test_platforms_engine import arm64_ready, use

from nox_warpdrive.engine import Engine
from nox_warpdrive.labels import STATIC_LAYER_LABEL

__all__ = ["arm64_ready", "images"]  # the fixtures, used by name

GUARDED_IMPORT = """
try:  # an optional speed-up: its failure is hidden from the build
    import wd_cext_demo  # noqa: F401
except ImportError:
    pass
"""


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
    app: App = make_app(["django", "wd-cext-demo"])  # type: ignore[operator]
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

    settings = app.root / "site1" / "settings.py"
    settings.write_text(settings.read_text() + GUARDED_IMPORT)
    emulated = nox(app, "-s", "image", "--", "--platform", "linux/arm64")
    out = emulated.stdout + emulated.stderr
    assert emulated.returncode == 0, out
    assert "it loads a compiled module: wd_cext_demo._speedup" in out, out
    assert "running it under emulation" in out, out
    assert out.count("collectstatic --noinput") == 2, out  # native (failed), then emulated
    emulated_diff, emulated_layer = static_layer(engine, app.image, tmp_path)

    files, expected = layer_files(native_layer), layer_files(emulated_layer)
    assert any(p.endswith("shop/site.css") for p in files), sorted(files)
    assert any(p.endswith("staticfiles.json") or p.endswith(".css") for p in expected)
    differ = sorted(p for p in set(files) | set(expected) if files.get(p) != expected.get(p))
    assert not differ, [(p, files.get(p), expected.get(p)) for p in differ[:20]]
    assert native_diff == emulated_diff  # the same blob
