"""The registry cache (registry/cache.py) without an engine: which layers of a pulled app image
are its deps layers, when a pulled image cannot serve, and the bundle that makes those
layers a local deps image again."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import ImageInfo
from nox_warpdrive.registry import cache as registry

BASE = ImageInfo("sha256:base", ("PATH=/usr/bin",), {}, 1, 2, "", ("sha256:b1", "sha256:b2"))


def app_image(layers: tuple[str, ...], **labels: str) -> ImageInfo:
    all_labels = {
        "io.warpdrive.kind": "app",
        "org.opencontainers.image.title": "site",
        "io.warpdrive.deps-key": "k" * 64,
        "io.warpdrive.deps-wheels": '["a.whl@1"]',
        **labels,
    }
    return dataclasses.replace(BASE, id="sha256:app", labels=all_labels, diff_ids=layers)


def config(tmp_path: Path) -> object:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "site"\nversion = "0"\n')
    (tmp_path / "wsgi.py").write_text("application = None\n")
    return load_config(tmp_path)


def test_deps_layers_lie_between_the_base_and_the_app_layer() -> None:
    pulled = app_image(("sha256:b1", "sha256:b2", "sha256:d1", "sha256:d2", "sha256:app"))
    assert registry.deps_layers(pulled, BASE) == ("sha256:d1", "sha256:d2")


def test_deps_layers_leave_out_the_static_layer() -> None:
    layers = ("sha256:b1", "sha256:b2", "sha256:d1", "sha256:st", "sha256:app")
    pulled = app_image(layers, **{"io.warpdrive.static-layer": "sha256:st"})
    assert registry.deps_layers(pulled, BASE) == ("sha256:d1",)


def test_no_deps_layers_on_another_base() -> None:
    pulled = app_image(("sha256:other", "sha256:b2", "sha256:d1", "sha256:app"))
    assert registry.deps_layers(pulled, BASE) is None
    assert registry.deps_layers(app_image(("sha256:b1", "sha256:b2", "sha256:app")), BASE) is None


def test_unusable_caches_say_why(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    good = app_image(("sha256:b1", "sha256:b2", "sha256:d1", "sha256:app"))
    assert registry.unusable(good, cfg, BASE) == ""  # type: ignore[arg-type]
    other_app = dataclasses.replace(
        good, labels={**good.labels, "org.opencontainers.image.title": "shop"}
    )
    assert "another app" in registry.unusable(other_app, cfg, BASE)  # type: ignore[arg-type]
    not_ours = dataclasses.replace(good, labels={})
    assert "not an image nox-warpdrive built" in registry.unusable(not_ours, cfg, BASE)  # type: ignore[arg-type]
    moved = dataclasses.replace(good, diff_ids=("sha256:x", "sha256:d1", "sha256:app"))
    assert "another base image" in registry.unusable(moved, cfg, BASE)  # type: ignore[arg-type]


def test_the_deps_bundle_names_every_layer_and_carries_none() -> None:
    base = {
        "Architecture": "amd64",
        "Os": "linux",
        "Created": "2026-01-01T00:00:00.123Z",
        "Config": {"Env": ["PATH=/usr/bin"], "Labels": {"base": "yes"}},
        "RootFS": {"Layers": ["sha256:" + "1" * 64]},
    }
    history = [{"Created": 1_700_000_000, "CreatedBy": "ADD rootfs", "Size": 10}]
    labels = {"io.warpdrive.kind": "deps", "io.warpdrive.deps-key": "k"}
    image_id, members = registry.deps_bundle(
        base, history, ["sha256:" + "2" * 64], labels, "reg/app:latest"
    )
    assert set(members) == {"manifest.json", image_id[7:] + ".json"}
    manifest = json.loads(members["manifest.json"])
    assert manifest[0]["Layers"] == ["1" * 64 + "/layer.tar", "2" * 64 + "/layer.tar"]
    cfg = json.loads(members[image_id[7:] + ".json"])
    assert cfg["rootfs"]["diff_ids"] == ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
    assert cfg["config"]["Labels"] == {"base": "yes", **labels}
    assert [h["created_by"] for h in cfg["history"]] == [
        "ADD rootfs",
        "nox-warpdrive deps layer (from reg/app:latest)",
    ]


def test_deps_layers_leave_out_every_app_layer_the_label_lists() -> None:
    """A big tree's image has several app layers (assets, code, static, changes)."""
    layers = ("sha256:b1", "sha256:b2", "sha256:d1", "sha256:as", "sha256:co", "sha256:ch")
    rows = [
        ["assets", "k1", "sha256:as"],
        ["code", "k2", "sha256:co"],
        ["code-changes", "k3", "sha256:ch"],
    ]
    pulled = app_image(layers, **{"io.warpdrive.app-layers": json.dumps(rows)})
    assert registry.deps_layers(pulled, BASE) == ("sha256:d1",)


def test_an_engine_that_refuses_the_deps_bundle_still_uses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Podman loads no layers named by diff ID: the pulled image is still the cache (its
    app layers), its deps layers are built here, and the build goes on with a warning."""
    from fake_engine import FakeEngine

    from nox_warpdrive.errors import LayerRefused

    pulled = app_image(("sha256:b1", "sha256:b2", "sha256:d1", "sha256:app"))

    class Refusing(FakeEngine):
        def load_bundle(self, members: Mapping[str, bytes], what: str) -> None:
            raise LayerRefused(f"Podman refused the {what}")

    engine = Refusing(images={"sha256:base": BASE})
    monkeypatch.setattr(registry.registry_check, "pull", lambda engine, ref, out: pulled)
    lines: list[str] = []
    found = registry.cache_from(engine, config(tmp_path), "reg/site:latest", BASE, lines.append)  # type: ignore[arg-type]
    assert found == pulled
    assert "refused the deps layers of the cache; its deps layers are built here" in lines[0]
    assert "using the cache reg/site:latest" in lines[-1]
