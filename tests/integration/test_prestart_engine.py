"""The deps step's container started while the wheelhouse resolves (build/prestart.py,
issue 24), on the real engine with a local index of its own.

A first build makes its whole virtualenv in the container started on the base image;
then the app adds a package, and its grow runs in the container started on the current
image's deps image. Each makes the very deps image the step started afterwards makes
(same ID). A change that is not a grow (a package removed) removes the started grow
container: none of the build's containers is left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import App, use_index
from pkgindex import Index, serve
from test_resolve_kept_engine import OwnIndex

from nox_warpdrive.build import prestart as prestart_module
from nox_warpdrive.build.deps import choose_installer, ensure_deps
from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.image import build_image
from nox_warpdrive.labels import DEPS_KEY_LABEL
from nox_warpdrive.wheelhouse.build import build_inputs, probe_image, read_manifest, resolved_set


def temp_deps_containers(engine: Engine) -> list[str]:
    found = engine.client.containers.list(all=True, filters={"name": "warpdrive-tmp.deps"})
    return [c.name for c in found]


def made_again(engine: Engine, app: App, made: str) -> str:
    """The deps image the regular step makes for the wheels of the deps image ``made``,
    once ``made`` is untagged (its layers stay: a grow goes on the same parent)."""
    cfg = load_config(app.root)
    base, pkey = probe_image(engine, cfg.base_image, "base-image", cfg)
    manifest = read_manifest(engine, cfg.volume, pkey, base.id)
    full = resolved_set(manifest, build_inputs(cfg, pkey).reqs.digest)
    assert full is not None
    image = engine.image(made)
    assert image is not None
    for tag in image.tags:
        engine.remove_image(tag)
    installer = choose_installer(cfg, manifest, pkey)
    again, reused, _ = ensure_deps(engine, cfg, base, pkey, full, installer, lambda line: None)
    assert not reused
    found = engine.image(again)
    assert found is not None and found.labels[DEPS_KEY_LABEL] == image.labels[DEPS_KEY_LABEL]
    return again


def test_a_grow_runs_in_the_container_started_while_the_wheelhouse_resolved(
    make_app: object,
    engine: Engine,
    index: Index,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    own = OwnIndex(tmp_path / "index", index)
    own.publish("wd-first", "1.0")
    own.publish("wd-added", "1.0")
    used: list[Any] = []
    real_use = prestart_module.Prestart.use

    def use(self: prestart_module.Prestart, *args: Any) -> str | None:
        made = real_use(self, *args)
        used.append(made)
        return made

    monkeypatch.setattr(prestart_module.Prestart, "use", use)
    with serve(own.root) as idx:
        use_index(monkeypatch, idx)
        app: App = make_app(["wd-pure-demo", "wd-first"])  # type: ignore[operator]
        build_image(load_config(app.root), engine, lambda line: None)
        assert len(used) == 1 and used[0] is not None  # the whole virtualenv, started early
        assert made_again(engine, app, used[0]) == used[0]

        app.requirements.append("wd-added")
        app.write()
        lines: list[str] = []
        result = build_image(load_config(app.root), engine, lines.append)
        assert len(used) == 2 and used[1] is not None, lines
        assert any("adding 1 wheels on top of the deps layer" in x for x in lines), lines
        assert not any("waiting for the plan" in x for x in lines), lines
        assert temp_deps_containers(engine) == []
        image = engine.image(result.image_id)
        assert image is not None
        grown = engine.image(used[1])
        assert grown is not None

        # the same wheels grown the regular way, on the same deps image: the same image
        assert made_again(engine, app, grown.id) == grown.id

        # not a grow (a package removed): the started container is removed
        app.requirements.remove("wd-first")
        app.write()
        build_image(load_config(app.root), engine, lambda line: None)
        assert len(used) == 3 and used[2] is None  # not a grow: offered and declined
        assert temp_deps_containers(engine) == []
