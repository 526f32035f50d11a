"""`wheelhouse-image` with two platforms (issue 22), for real: one `image -- --push` of
both platforms (linux/arm64 under the kernel's QEMU handlers) pushes one wheelhouse image
per platform key (`REF:<key>`); on a fresh runner (the app's images, wheelhouse images
and volume gone) `wheelhouse` seeds both keys from the registry and compiles nothing for
either. Base and builder images are the indexes of test_platforms_engine.py."""

from __future__ import annotations

import contextlib
import re

from conftest import App
from pkgindex import Index
from test_build import nox
from test_platforms_engine import arm64_ready, forget, indexes, use

from nox_warpdrive.engine import Engine

__all__ = ["arm64_ready", "indexes"]  # the fixtures, used by name

COMPILED = ("building wd-cext-demo", "Building wheel for wd-cext-demo")


def test_a_fresh_runner_seeds_both_platform_keys_from_the_wheelhouse_image(
    make_app: object,
    engine: Engine,
    index_env: Index,
    indexes: tuple[str, str],
    registry: str,
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])  # type: ignore[operator]
    ref = f"{registry}/{app.name}:latest"
    wheels = f"{registry}/{app.name}-wheelhouse"
    both = '["linux/amd64", "linux/arm64"]'
    use(app, *indexes, image=ref, platforms=both, **{"wheelhouse-image": f'"{wheels}"'})
    pushed: list[str] = []
    try:
        first = nox(app, "-s", "image", "--", "--push")
        out = first.stdout + first.stderr
        assert first.returncode == 0, out
        assert "as an image index (linux/amd64, linux/arm64)" in out, out
        pushed = sorted(set(re.findall(rf"pushed {re.escape(wheels)}:(cp\S+?)[\s:(]", out)))
        assert len(pushed) == 2, out
        assert any("aarch64" in k for k in pushed) and any("x86_64" in k for k in pushed), pushed

        # a fresh runner: none of the app's images, wheelhouse images or volume here
        forget(engine, app.name)
        for key in pushed:
            with contextlib.suppress(Exception):
                engine.client.images.remove(f"{wheels}:{key}", force=True)
        engine.remove_volume(app.volume)
        again = nox(app, "-s", "wheelhouse")
        out = again.stdout + again.stderr
        assert again.returncode == 0, out
        for key in pushed:
            assert f"wheelhouse image {wheels}:{key}:" in out, out
        assert out.count("wheels imported") == 2, out
        assert not any(c in out for c in COMPILED), out
        assert "Traceback" not in out, out
    finally:
        forget(engine, app.name)
        for key in pushed:
            with contextlib.suppress(Exception):
                engine.client.images.remove(f"{wheels}:{key}", force=True)
