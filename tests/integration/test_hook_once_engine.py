"""The build hook runs once for both platforms (issue 22, item 5), on the real engine with
the real arm64 images and QEMU (test_platforms_engine.py sets them up): the engine's own
platform is built first and runs it; the arm64 image takes the layer that step made, the
same blob, on its own app layers. `build-hook-per-platform = true` runs it in each
platform's image instead (the arm64 one under emulation)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from conftest import App
from pkgindex import Index
from test_build import nox
from test_foreign_deps_engine import images
from test_platforms_engine import ARM64, arm64_ready, use

from nox_warpdrive.engine import Engine
from nox_warpdrive.platform import platform_ref

__all__ = ["arm64_ready", "images"]  # the fixtures, used by name

HOOK = "#!/bin/sh\nset -e\necho HOOK-RAN-ON-$(uname -m)\ndate +%s%N > stamp.txt\n"


def stamp(engine: Engine, image: str) -> bytes:
    with engine.image_reader(image) as read:
        data = read("/opt/app-root/src/stamp.txt")
    assert data is not None
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("stamp.txt")
        assert member is not None
        return member.read()


def test_the_build_hook_runs_once_and_both_images_have_its_layer(
    make_app: object,
    engine: Engine,
    index_env: Index,
    images: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    app: App = make_app(["wd-pure-demo"])  # type: ignore[operator]
    hooks = app.root / ".warpdrive" / "action_hooks"
    hooks.mkdir(parents=True)
    (hooks / "build").write_text(HOOK)
    (hooks / "build").chmod(0o755)
    use(app, *images, platforms='["linux/amd64", "linux/arm64"]')
    arm_ref = platform_ref(app.image, ARM64)

    done = nox(app, "-s", "image")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert out.count("HOOK-RAN-ON-") == 1 and "HOOK-RAN-ON-x86_64" in out, out
    assert "the build hook's layer of the first platform's image reused (it ran once)" in out
    amd, arm = engine.inspect_raw(app.image), engine.inspect_raw(arm_ref)
    assert (amd["Architecture"], arm["Architecture"]) == ("amd64", "arm64")
    amd_layers, arm_layers = amd["RootFS"]["Layers"], arm["RootFS"]["Layers"]
    assert amd_layers[-1] == arm_layers[-1]  # the hook's layer: one blob
    assert amd_layers[-2] == arm_layers[-2]  # the app layer below it
    assert amd_layers[0] != arm_layers[0]  # each CPU's base
    assert stamp(engine, app.image) == stamp(engine, arm_ref)

    # a hook whose output depends on the CPU: it runs in each platform's image
    (app.root / "pyproject.toml").write_text(
        (app.root / "pyproject.toml").read_text() + "build-hook-per-platform = true\n"
    )
    (app.root / "changed.txt").write_text("a code change\n")
    again = nox(app, "-s", "image")
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    assert "HOOK-RAN-ON-x86_64" in out and "HOOK-RAN-ON-aarch64" in out, out
    assert "first platform's image reused (it ran once)" not in out
    amd, arm = engine.inspect_raw(app.image), engine.inspect_raw(arm_ref)
    assert amd["RootFS"]["Layers"][-1] != arm["RootFS"]["Layers"][-1]
    assert stamp(engine, app.image) != stamp(engine, arm_ref)
