"""`engines` in [tool.warpdrive] (issue 22): a platform built on the engine named for it,
for real: a second Docker engine of this session reached over TCP (scripts/second-
engine.sh, the `runner` fixture) builds linux/arm64, the session's engine linux/amd64,
and one `--push` puts both in one image index of the loopback registry. The second
engine is an amd64 one too (this machine has no other CPU): it runs the arm64 build
under the kernel's QEMU handlers, and the build says so; what is tested is where each
platform is built and that the index is whole."""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

import daemons
from conftest import BASE_IMAGE, BUILDER_IMAGE, App
from pkgindex import Index
from test_build import http_get
from test_platforms_engine import ARM_BASE, ARM_BUILDER, arch_of, arm64_ready, manifests, use
from test_registry import cleanup_runner, client_for, nox_on

from nox_warpdrive.engine import Engine

__all__ = ["arm64_ready"]  # the fixture, used by name


def test_a_platform_named_in_engines_is_built_on_that_engine(
    make_app: Any, engine: Engine, index: Index, registry: str, runner: str, arm64_ready: None
) -> None:
    app: App = make_app(["wd-pure-demo"])  # no sdist: nothing compiled under emulation
    wsgi = app.root / "wsgi.py"  # an app that runs without the sdist's module
    wsgi.write_text(
        wsgi.read_text()
        .replace("import wd_cext_demo\n", "")
        .replace("wd_cext_demo.add(2, 40)", "42")
    )
    ref = f"{registry}/{app.name}:latest"
    with client_for(runner) as client:  # the runner's own arm64 images, as a build keeps them
        for local, name in ((ARM_BASE, BASE_IMAGE), (ARM_BUILDER, BUILDER_IMAGE)):
            if not client.images.list(name=f"{name}-linux-arm64"):
                data = b"".join(engine.client.images.get(local).save())
                (loaded,) = client.images.load(io.BytesIO(data))
                loaded.tag(f"{name}-linux-arm64")
    engines = f'{{ "linux/arm64" = "{runner}" }}'
    both = '["linux/amd64", "linux/arm64"]'
    wheels = f"{registry}/{app.name}-wheelhouse"  # each platform's pushed from its engine
    extra = {"wheelhouse-image": f'"{wheels}"'}
    use(app, BASE_IMAGE, BUILDER_IMAGE, image=ref, engines=engines, platforms=both, **extra)
    try:
        code, text = nox_on(app, None, index, "-s", "image", "--", "--push")
        assert code == 0, text
        said = f"== linux/arm64 on the engine at {runner} (what must run on its CPU runs under"
        assert said in text, text
        assert "as an image index (linux/amd64, linux/arm64)" in text, text
        assert "Traceback" not in text, text
        assert "the wheelhouse image was not updated" not in text, text
        keys = set(re.findall(rf"pushed {re.escape(wheels)}:(cp\S+?)[\s:(]", text))
        assert len(keys) == 2 and any("aarch64" in k for k in keys), text
        # arm64 was built on the runner only, amd64 here only
        assert engine.image(f"{ref}-linux-arm64") is None
        assert arch_of(engine, ref) == "amd64"
        with client_for(runner) as client:
            built = client.images.get(f"{ref}-linux-arm64")
            assert built.attrs["Architecture"] == "arm64"
            assert not [i for i in client.images.list() if ref in i.tags]
        images = manifests(registry, app.name, "latest")
        assert sorted(images) == ["linux/amd64", "linux/arm64"]
        # the app source is one blob for both, though made on two engines
        tops = {p: m["layers"][-1]["digest"] for p, m in images.items()}  # type: ignore[index]
        assert len(set(tops.values())) == 1, tops
        # `run --platform linux/arm64` runs the image the runner built, on the runner
        port = daemons.free_port()
        code, text = nox_on(
            app, None, index, "-s", "run", "--", "--platform", "linux/arm64", "--detach",
            "--port", str(port),
        )  # fmt: skip
        assert code == 0, text
        said = f"running {ref}-linux-arm64 (linux/arm64) on the engine at {runner}, which built it"
        assert said in text, text
        assert f"answers at http://127.0.0.1:{port}/" in text, text
        status, body = http_get(f"http://127.0.0.1:{port}/", timeout=60)
        assert status == 200 and "add=42 uid=1001" in body, body
        assert f"DOCKER_HOST={runner} docker rm -f {app.name}-run" in text, text
        with client_for(runner) as client:
            assert client.containers.get(f"{app.name}-run").status == "running"
        assert not engine.client.containers.list(all=True, filters={"name": f"{app.name}-run"})
    finally:
        with client_for(runner) as client, contextlib.suppress(Exception):
            client.containers.get(f"{app.name}-run").remove(force=True)
        cleanup_runner(runner, app)
        for image in engine.client.images.list(name=wheels):  # the amd64 key's, pushed here
            with contextlib.suppress(Exception):
                engine.client.images.remove(image.id, force=True)
