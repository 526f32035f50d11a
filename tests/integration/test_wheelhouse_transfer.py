"""The wheelhouse carried between engines, for real: a local registry (Debian's
docker-registry on loopback) and a second, empty engine reached over TCP (a fresh CI
runner). A first pipeline pushes its wheelhouse image; a second, on the engine that
never saw the app, adds a package and builds without compiling the sdist-only
wd-cext-demo, and the image runs. A missing, unreachable, foreign or other-platform
image is one line (or a warning with its fix) and a cold build that succeeds; a
directory cache is exported on one engine and imported on the other, a damaged wheel in
it refused."""

from __future__ import annotations

import contextlib
import json
import re
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from conftest import App
from pkgindex import Index
from test_registry import cleanup_runner, client_for, nox_on, serve_on

from nox_warpdrive import assembly
from nox_warpdrive.engine import Engine
from nox_warpdrive.plan import CommitSpec
from nox_warpdrive.tars import tar_files

MAIN = "unix:///var/run/docker.sock"
COMPILED = ("building wd-cext-demo", "Building wheel for wd-cext-demo")


def slug_of(text: str) -> str:
    """The platform key a wheelhouse run reported."""
    found = re.search(r"wheelhouse (?:up to date for )?(cp\S+?):? ", text)
    assert found, text
    return found.group(1)


def wipe_volume(host: str | None, app: App) -> None:
    """Remove the app's volume on an engine: the next run starts from an empty one."""
    with (
        client_for(host or MAIN) as client,
        contextlib.suppress(Exception),
    ):
        client.volumes.get(app.volume).remove(force=True)


@pytest.fixture
def fresh(runner: str) -> Iterator[list[App]]:
    """Apps to clean off both engines afterwards (their wheelhouse images included: their
    tags name the app, and no base image is ever tagged so)."""
    apps: list[App] = []
    yield apps
    for app in apps:
        cleanup_runner(runner, app)
        cleanup_runner(MAIN, app)


def test_a_fresh_runner_adds_a_package_without_compiling(
    make_app: Any,
    engine: Engine,
    index: Index,
    registry: str,
    runner: str,
    fresh: list[App],
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    fresh.append(app)
    ref = f"{registry}/{app.name}-wheelhouse"
    app.extra_config["wheelhouse-image"] = ref
    app.write()
    # the first pipeline: a cold build (the sdist is compiled), then the push
    code, text = nox_on(app, None, index, "-s", "wheelhouse", "--", "--push")
    assert code == 0, text
    assert "no wheelhouse image at" in text and "yet (a first run)" in text, text
    assert any(c in text for c in COMPILED), text
    slug = slug_of(text)
    assert f"pushed {ref}:{slug}" in text, text
    # the second pipeline, on an engine that never saw the app: one added package
    app.requirements.append("wd-extra-demo")
    app.write(message="fresh-runner-wheels")
    started = time.monotonic()
    code, text = nox_on(app, runner, index, "-s", "wheelhouse", "--", "--push")
    seeded = time.monotonic() - started
    assert code == 0, text
    assert f"wheelhouse image {ref}:{slug}:" in text and "wheels imported" in text, text
    assert not any(c in text for c in COMPILED), text
    assert "1 new (wd_extra_demo)" in text, text
    assert "a layer with 1 new wheels" in text and "on 1 earlier layers" in text, text
    code, text = nox_on(app, runner, index, "-s", "image")
    assert code == 0, text
    assert not any(c in text for c in COMPILED), text
    assert "fresh-runner-wheels" in serve_on(runner, app.image)
    _the_image_is_layered_and_not_runnable(runner, f"{ref}:{slug}")
    # offline on an empty volume: `image -- --no-index` seeds it from the wheelhouse image
    # (a registry is not a package index) and never asks the index (a dead one here)
    cleanup_runner(runner, app)
    app.write(message="offline-from-the-image")
    dead = cast(Index, types.SimpleNamespace(url="http://127.0.0.1:1/simple"))
    code, text = nox_on(app, runner, dead, "-s", "image", "--", "--no-index")
    assert code == 0, text
    assert "wheels imported" in text, text
    assert not any(c in text for c in COMPILED), text
    assert "offline-from-the-image" in serve_on(runner, app.image)
    # the same with the registry gone: a cold build that succeeds and says why
    cleanup_runner(runner, app)
    app.extra_config["wheelhouse-image"] = "127.0.0.1:1/wd/wheelhouse"
    app.write(message="cold-after-all")
    started = time.monotonic()
    code, text = nox_on(app, runner, index, "-s", "image")
    cold = time.monotonic() - started
    assert code == 0, text
    assert "warning: cannot pull the wheelhouse image 127.0.0.1:1/wd/wheelhouse:" in text, text
    assert "building without it" in text and "fix:" in text, text
    assert any(c in text for c in COMPILED), text
    assert "cold-after-all" in serve_on(runner, app.image)
    print(
        f"\nfresh runner, one added package: wheelhouse {seeded:.1f} s seeded, "
        f"image {cold:.1f} s cold (wheelhouse and image)"
    )


def _the_image_is_layered_and_not_runnable(host: str, tag: str) -> None:
    with client_for(host) as client:
        image = client.images.get(tag)
        labels = image.labels
        assert labels["io.warpdrive.kind"] == "wheelhouse"
        assert labels["io.warpdrive.wheelhouse.layers"] == "2"
        assert not image.attrs["Config"].get("Cmd") and not image.attrs["Config"].get("Entrypoint")
        assert len(image.attrs["RootFS"]["Layers"]) == 2
        wheels = json.loads(labels["io.warpdrive.wheelhouse.wheels"])
        assert any(w.startswith("wd_cext_demo-") for w in wheels), wheels
        history = [h.get("CreatedBy", "") for h in image.history()]
        assert "nox-warpdrive wheelhouse layer (1 wheels)" in history, history


def test_missing_foreign_and_unreachable_wheelhouse_images(
    make_app: Any,
    engine: Engine,
    index: Index,
    registry: str,
    runner: str,
    fresh: list[App],
) -> None:
    app: App = make_app(["wd-pure-demo"])
    fresh.append(app)
    missing = f"{registry}/nothing-{uuid.uuid4().hex[:8]}"
    code, text = nox_on(app, runner, index, "-s", "wheelhouse", "--", "--pull", missing)
    assert code == 0, text
    lines = [line for line in text.splitlines() if missing in line]
    assert len(lines) == 1 and "yet (a first run); building without it" in lines[0], text
    slug = slug_of(text)
    # a tag that is not a wheelhouse image (an image of its own: never one that shares
    # its id with a base image, which the runner's clean-up would remove)
    foreign = f"{registry}/{app.name}-foreign"
    _push_image(engine, f"{foreign}:{slug}", {"io.warpdrive.kind": "app"}, app.name)
    wipe_volume(runner, app)
    code, text = nox_on(app, runner, index, "-s", "wheelhouse", "--", "--pull", foreign)
    assert code == 0, text
    assert f"warning: {foreign}:{slug} is not a wheelhouse image" in text and "fix:" in text
    code, text = nox_on(app, runner, index, "-s", "wheelhouse", "--", "--push", foreign)
    assert code != 0 and "would replace it" in text and "fix:" in text, text
    # a wheelhouse image of another platform key under this platform's tag
    other = f"{registry}/{app.name}-other"
    _push_other_platform(engine, f"{other}:{slug}")
    wipe_volume(runner, app)
    code, text = nox_on(app, runner, index, "-s", "wheelhouse", "--", "--pull", other)
    assert code == 0, text
    assert "holds the wheelhouse of platform 'cp313-cp313" in text, text
    # an unreachable registry: a warning and a cold build; a push there: an error, and
    # the volume is untouched (the image builds offline from it)
    wipe_volume(runner, app)
    closed = "127.0.0.1:1/wd/wheelhouse"
    code, text = nox_on(app, runner, index, "-s", "wheelhouse", "--", "--pull", closed)
    assert code == 0 and "warning: cannot pull the wheelhouse image" in text, text
    code, text = nox_on(app, runner, index, "-s", "wheelhouse", "--", "--push", closed)
    assert code != 0 and "cannot reach the wheelhouse image" in text and "fix:" in text, text
    assert "Traceback" not in text
    code, text = nox_on(app, runner, index, "-s", "image", "--", "--no-index")
    assert code == 0, text


def _push_other_platform(engine: Engine, tag: str) -> None:
    labels = {
        "io.warpdrive.kind": "wheelhouse",
        "io.warpdrive.platform-key": "cp313-cp313-linux_x86_64-glibc2.41-debian13",
        "io.warpdrive.wheelhouse.wheels": "{}",
    }
    _push_image(engine, tag, labels, "wheelhouse/manifest.json")


def _push_image(engine: Engine, tag: str, labels: dict[str, str], content: str) -> None:
    """Push a one-layer image with these labels (a unique one: its file names ``content``
    and the time), then untag it here."""
    layer = tar_files({"wheelhouse/manifest.json": json.dumps({"of": content}).encode()})
    spec = CommitSpec(labels=labels)
    created = assembly.timestamp(time.time())
    bundle = assembly.layer_bundle(
        {"Architecture": "amd64", "Os": "linux"}, [], layer, spec, created=created
    )
    image_id = engine.load_image(bundle, "test image")
    engine.tag(image_id, tag)
    engine.push(tag, lambda line: None)
    engine.remove_image(tag)


def test_a_directory_cache_between_engines_refuses_a_damaged_wheel(
    make_app: Any,
    engine: Engine,
    index: Index,
    runner: str,
    fresh: list[App],
    tmp_path: Path,
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-extra-demo"])
    fresh.append(app)
    cache = tmp_path / "ci-cache"
    code, text = nox_on(app, None, index, "-s", "wheelhouse", "--", "--export", str(cache))
    assert code == 0, text
    slug = slug_of(text)
    wheels = sorted(p.name for p in (cache / slug / "wheels").iterdir())
    assert any(w.startswith("wd_pure_demo-") for w in wheels), wheels
    assert f"{len(wheels)} wheels written, 0 already there" in text, text
    code, text = nox_on(app, None, index, "-s", "wheelhouse", "--", "--export", str(cache))
    assert code == 0 and f"0 wheels written, {len(wheels)} already there" in text, text
    damaged = next(cache / slug / "wheels" / w for w in wheels if w.startswith("wd_pure_demo-"))
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    # the next job, on the other engine, over TCP
    code, text = nox_on(app, runner, index, "-s", "wheelhouse", "--", "--import", str(cache))
    assert code == 0, text
    assert f"wheel {damaged.name} from {cache / slug} does not match its sha256" in text, text
    assert f"imported {cache / slug}: {len(wheels) - 1} wheels imported" in text, text
    assert "1 refused" in text and "1 new (wd_pure_demo)" in text, text
    # a requirement set the volume has all the wheels for, resolved with no index at all
    # (uv reads the published wheels from a page listing them with their sha256s)
    app.requirements = ["wd-extra-demo"]
    app.write()
    code, text = nox_on(app, runner, index, "-s", "wheelhouse", "--", "--no-index")
    assert code == 0 and "0 new (none)" in text, text


def test_one_image_command_carries_the_wheelhouse_between_runners(
    make_app: Any,
    engine: Engine,
    index: Index,
    registry: str,
    runner: str,
    fresh: list[App],
) -> None:
    """The one-command CI recipe: `image -- --cache-from I --push` with `wheelhouse-image`
    set pushes the image, and the wheelhouse when it grew; a fresh runner that adds a
    package compiles nothing and pushes the one new wheel; a code change does not even
    read the wheelhouse."""
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    fresh.append(app)
    wheels = f"{registry}/{app.name}-wheelhouse"
    app.image = f"{registry}/{app.name}:latest"
    app.extra_config["wheelhouse-image"] = wheels
    app.write()
    pipeline = ("-s", "image", "--", "--cache-from", app.image, "--push")
    code, text = nox_on(app, None, index, *pipeline)
    assert code == 0, text
    assert any(c in text for c in COMPILED), text
    slug = slug_of(text)
    assert f"pushed {app.image}" in text and f"pushed {wheels}:{slug}" in text, text
    # a fresh runner adds a package: seeded from the wheelhouse image, one wheel pushed
    app.requirements.append("wd-extra-demo")
    app.write(message="one-command-add")
    code, text = nox_on(app, runner, index, *pipeline)
    assert code == 0, text
    assert "wheels imported" in text and not any(c in text for c in COMPILED), text
    assert f"pushed {wheels}:{slug}" in text and "a layer with 1 new wheels" in text, text
    assert "one-command-add" in serve_on(runner, app.image)
    # another fresh runner, a code change: the wheelhouse is neither read nor pushed
    cleanup_runner(runner, app)
    app.write(message="one-command-code")
    code, text = nox_on(app, runner, index, *pipeline)
    assert code == 0, text
    assert f"using the cache {app.image}" in text, text
    assert "wheels imported" not in text and f"pushed {wheels}" not in text, text
    assert f"pushed {app.image}" in text, text
    assert "one-command-code" in serve_on(runner, app.image)
