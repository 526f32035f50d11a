"""The build in the registry (registry/build.py) without a registry: when the cache can
carry the build, which blobs are reused and which uploaded, and the config and manifest
it puts; and the whole build against the fake registry of test_registry_api."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from fake_engine import FakeEngine
from test_registry_api import FakeRegistry
from test_registry_api import registry as registry
from unit_support import PKEY, write_wsgi_site

from nox_warpdrive.build import app_layer
from nox_warpdrive.build.deps import (
    DEPS_FORMAT,
    GROW_LIST,
    MAX_DEPS_DEPTH,
    Installer,
    can_grow,
    deps_labels,
    plan_deps,
    plan_grow,
)
from nox_warpdrive.config import load_config
from nox_warpdrive.engine import ImageInfo
from nox_warpdrive.engine import registry_api as api
from nox_warpdrive.labels import KIND_LABEL, DepsLabels
from nox_warpdrive.layout import APP_ROOT
from nox_warpdrive.plan import CommitSpec
from nox_warpdrive.platform import PlatformKey
from nox_warpdrive.registry import build as rb
from nox_warpdrive.registry.cache import deps_layers as registry_deps_layers
from nox_warpdrive.tars import tar_files
from nox_warpdrive.wheelhouse.wheels import Wheel, wheel_ids

BASE = ImageInfo("sha256:base", ("PATH=/usr/bin",), {"base": "yes"}, 1, 2, "", ("sha256:b1",))


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def desc(n: int) -> dict[str, object]:
    return {"mediaType": api.DOCKER_LAYER, "size": 100 + n, "digest": f"sha256:{n:064x}"}


def cache(labels: dict[str, str] | None = None, media: str = api.DOCKER_MANIFEST) -> rb.Cache:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/venv/bin:/usr/bin", "APP=1"],
            "Cmd": ["warpdrive-start"],
            "Labels": {"io.warpdrive.kind": "app", "old-app-label": "x", **(labels or {})},
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:b1", "sha256:d1", "sha256:a1"]},
        "history": [
            {"created": "2026-01-01T00:00:00Z", "created_by": "ADD rootfs"},
            {"created": "2026-01-01T00:00:00Z", "created_by": "ENV X", "empty_layer": True},
            {"created": "2026-01-02T00:00:00Z", "created_by": "deps"},
            {"created": "2026-01-03T00:00:00Z", "created_by": "nox-warpdrive app layer"},
        ],
    }
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media,
            "config": {"mediaType": api.DOCKER_CONFIG, "size": 1, "digest": "sha256:" + "c" * 64},
            "layers": [desc(1), desc(2), desc(3)],
        }
    ).encode()
    manifest = api.Manifest(digest(body), media, body)
    return rb.cache_record(api.parse_ref("127.0.0.1:5000/wd/app:latest"), manifest, config)


def test_the_cache_record_pairs_diff_ids_with_blobs() -> None:
    c = cache()
    assert c.info.id == "sha256:" + "c" * 64 and c.info.layers == 3
    assert c.info.size == 101 + 102 + 103
    assert c.descriptors["sha256:a1"] == desc(3)
    broken = rb.cache_record(c.ref, c.manifest, {**c.config, "rootfs": {"diff_ids": ["x"]}})
    assert broken.info.diff_ids == ()  # a manifest that does not match: not usable


def test_only_layers_the_cache_lacks_are_uploaded() -> None:
    c = cache()
    named = rb.Layer("nox-warpdrive app assets", "sha256:d1", desc(2))
    same = rb.Layer("nox-warpdrive app layer", "sha256:a1", desc(9), Path("/tmp/x.gz"))
    new = rb.Layer("nox-warpdrive app layer", "sha256:new", desc(9), Path("/tmp/y.gz"))
    layers, upload = rb.blob_plan([named, same, new], c.descriptors)
    assert upload == [new]
    # a layer made again that is the cache's (reproducible): its blob, not the new gzip
    assert layers[1].descriptor == desc(3) and layers[1].made is None
    assert layers[0] == named and layers[2] == new


def test_history_keeps_the_rows_below_and_adds_one_per_layer() -> None:
    rows = cache().config["history"]
    kept = rb.history_rows(rows, 2, ["a", "b"], "2026-02-01T00:00:00Z", "msg")
    assert [r["created_by"] for r in kept] == ["ADD rootfs", "ENV X", "deps", "a", "b"]
    assert kept[-1]["comment"] == "msg" and "comment" not in kept[-2]
    assert rb.history_rows(rows, 5, ["a"], "t", "") == []  # rows that do not match: none


def test_the_config_is_the_deps_image_plus_the_commit() -> None:
    c = cache()
    spec = CommitSpec(env=(("APP", "2"),), cmd=("warpdrive-start",), labels={"new": "1"})
    parent = {"base": "yes", "io.warpdrive.kind": "deps"}
    raw = rb.image_config(
        c.config, parent, spec, ["sha256:b1", "sha256:d1"], [("app", "sha256:n")], "T"
    )
    config = json.loads(raw)
    assert config["rootfs"]["diff_ids"] == ["sha256:b1", "sha256:d1", "sha256:n"]
    assert config["config"]["Labels"] == {"base": "yes", "io.warpdrive.kind": "deps", "new": "1"}
    env = config["config"]["Env"]
    assert "APP=2" in env and "PATH=/venv/bin:/usr/bin" in env
    assert config["created"] == "T" and config["history"][-1]["created_by"] == "app"
    assert raw == rb.image_config(
        c.config, parent, spec, ["sha256:b1", "sha256:d1"], [("app", "sha256:n")], "T"
    )


def test_the_manifest_follows_the_cache_kind() -> None:
    config = b'{"x":1}'
    body, media = rb.manifest_body(api.DOCKER_MANIFEST, config, [desc(1)])
    data = json.loads(body)
    assert media == api.DOCKER_MANIFEST == data["mediaType"]
    assert data["config"] == {"mediaType": api.DOCKER_CONFIG, "size": 7, "digest": digest(config)}
    assert data["layers"] == [desc(1)]
    body, media = rb.manifest_body(api.OCI_MANIFEST, config, [desc(1)])
    assert media == api.OCI_MANIFEST and json.loads(body)["config"]["mediaType"] == api.OCI_CONFIG
    assert rb.new_descriptor(api.OCI_MANIFEST, "sha256:x", 5)["mediaType"] == api.OCI_LAYER
    assert rb.new_descriptor(api.DOCKER_MANIFEST, "sha256:x", 5)["mediaType"] == api.DOCKER_LAYER


def test_why_not_says_why(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "site"\nversion = "0"\n')
    (tmp_path / "wsgi.py").write_text("application = None\n")
    cfg = load_config(tmp_path)
    c = cache({"org.opencontainers.image.title": "shop"})
    pkey = PlatformKey.__new__(PlatformKey)
    reqs = type("R", (), {"digest": "r"})()
    assert "not an image nox-warpdrive built" in rb.why_not(
        dataclasses.replace(c, info=dataclasses.replace(c.info, labels={})), cfg, BASE, pkey, reqs
    )
    assert "another app" in rb.why_not(c, cfg, BASE, pkey, reqs)
    broken = dataclasses.replace(c, info=dataclasses.replace(c.info, diff_ids=()))
    assert "does not match its config" in rb.why_not(broken, cfg, BASE, pkey, reqs)


def test_summaries() -> None:
    pushed = rb.Pushed("r/app:1", "sha256:m", "sha256:c", False, 1, 2500, 4, 10, 5)
    assert "1 layer uploaded (2.5 kB with the config), 4 reused by digest" in rb.summary(
        pushed, 1.0
    )
    same = dataclasses.replace(pushed, up_to_date=True, moved=False)
    assert "up to date in the registry: nothing pushed or pulled" in rb.summary(same, 1.0)


BASE_DIFF, DEPS_DIFF = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def seeded(
    registry: str, tmp_path: Path, labels: dict[str, str]
) -> tuple[api.Registry, list[dict[str, object]]]:
    """A registry holding wd/app:latest: an app image of a base, a deps and an app
    layer with these labels; the client and the layers' descriptors."""
    client = api.Registry(registry, None, timeout=5)
    blobs = []
    for n, data in enumerate((b"base layer", b"deps layer", b"old app layer")):
        blob = tmp_path / f"{n}.gz"
        blob.write_bytes(data)
        client.upload("wd/app", blob, digest(data))
        blobs.append({"mediaType": api.DOCKER_LAYER, "size": len(data), "digest": digest(data)})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"], "Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [BASE_DIFF, DEPS_DIFF, "sha256:" + "3" * 64]},
        }
    ).encode()
    client.upload_bytes("wd/app", config, digest(config))
    body, media = rb.manifest_body(api.DOCKER_MANIFEST, config, blobs)
    client.put_manifest("wd/app", "latest", body, media)
    return client, blobs


def test_a_build_in_the_fake_registry(registry: str, tmp_path: Path) -> None:
    """The whole build against a registry on a real socket: a first app image on a cache
    of base and deps layers, then a code change: one layer (and the config) uploaded,
    every other named by the cache's digest; then nothing to build at all."""
    write_wsgi_site(tmp_path / "site")
    cfg = load_config(tmp_path / "site")
    base_diff, deps_diff = BASE_DIFF, DEPS_DIFF
    base = dataclasses.replace(BASE, diff_ids=(base_diff,))
    labels = {"io.warpdrive.kind": "app", "io.warpdrive.deps-key": "k", "old-app": "x"}
    labels["io.warpdrive.deps-project"] = "site"
    client, blobs = seeded(registry, tmp_path, labels)
    target = api.parse_ref(f"{registry}/wd/app:latest")

    def built(message: str) -> rb.Pushed:
        (tmp_path / "site" / "views.py").write_text(f"MESSAGE = {message!r}\n")
        plan = app_layer.plan_app(cfg, base, PKEY, "k", "s")
        cache = rb.read_cache(client, target, ("linux", "amd64", ""))
        assert cache is not None
        if rb.up_to_date(cache, plan):
            return rb.retag(client, cache, target)
        return rb.build(client, cache, plan, target, base, ("", ""), "T", lambda line: None)

    first = built("v1")
    assert (first.uploaded, first.reused, first.layers) == (1, 2, 3)
    second = built("v2")
    assert (second.uploaded, second.reused, second.layers) == (1, 2, 3)
    assert second.uploaded_bytes < 20_000
    found = client.manifest("wd/app", "latest")
    assert found is not None and found.digest == second.digest
    layers = found.data["layers"]
    assert layers[:2] == blobs[:2] and layers[2]["mediaType"] == api.DOCKER_LAYER
    config_now = json.loads(client.blob("wd/app", found.data["config"]["digest"]))
    # the deps image's labels (inherited), the new app's; none of the old app's own
    assert config_now["config"]["Labels"]["io.warpdrive.deps-project"] == "site"
    assert "old-app" not in config_now["config"]["Labels"]
    assert config_now["config"]["Labels"]["io.warpdrive.kind"] == "app"
    assert config_now["rootfs"]["diff_ids"][:2] == [base_diff, deps_diff]
    same = built("v2")
    assert same.up_to_date and not same.moved and same.uploaded_bytes == 0
    assert client.manifest("wd/app", "latest") == found
    # the same build under another repository: every blob mounted, the same manifest
    cache = rb.read_cache(client, target, ("linux", "amd64", ""))
    assert cache is not None
    elsewhere = api.parse_ref(f"{registry}/wd/app-pr:1")
    moved = rb.retag(client, cache, elsewhere)
    assert moved.up_to_date and moved.moved
    assert client.manifest("wd/app-pr", "1") == found
    for layer in found.data["layers"]:
        assert client.has_blob("wd/app-pr", layer["digest"])
    # and a code change built there, on the cache of the other repository
    (tmp_path / "site" / "views.py").write_text("MESSAGE = 'v3'\n")
    plan = app_layer.plan_app(cfg, base, PKEY, "k", "s")
    other = api.parse_ref(f"{registry}/wd/app-other:1")
    pushed = rb.build(client, cache, plan, other, base, ("", ""), "T", lambda line: None)
    assert pushed.uploaded == 1
    assert client.has_blob("wd/app-other", blobs[0]["digest"])
    mounts = [s for s in FakeRegistry.seen if "mount=" in s]
    assert mounts and all("from=wd%2Fapp" in s for s in mounts), mounts


WHEELS = [
    Wheel("a-1-py3-none-any.whl", "a", "1", "a" * 64),
    Wheel("b-1-py3-none-any.whl", "b", "1", "b" * 64),
]


def test_a_grown_build_in_the_fake_registry(registry: str, tmp_path: Path) -> None:
    """Packages only added: the layer the grow step exports goes between the cache's
    deps layers and the new app layer, both uploaded; the config carries the new deps
    labels (one deeper, every wheel), not the cache's."""
    write_wsgi_site(tmp_path / "site")
    cfg = load_config(tmp_path / "site")
    base = dataclasses.replace(BASE, diff_ids=(BASE_DIFF,))
    installer = Installer("uv", "/warpdrive/uv", "0.1")
    parent = deps_labels(cfg, base, "k-old", installer, wheel_ids(WHEELS[:1]), 0)
    client, blobs = seeded(registry, tmp_path, {**parent.to_labels(), KIND_LABEL: "app"})
    target = api.parse_ref(f"{registry}/wd/app:latest")
    cache = rb.read_cache(client, target, ("linux", "amd64", ""))
    assert cache is not None
    deps = plan_grow(cfg, base, PKEY, WHEELS, installer, parent)
    assert deps.files == ("b-1-py3-none-any.whl",)
    plan = app_layer.plan_app(cfg, base, PKEY, deps.key, "s")
    engine = FakeEngine()
    layer = tar_files({"opt/app-root/venv/lib/b.py": b"B = 1\n"})
    engine.exported = layer
    pushed = rb.grow(rb.Grow(client, cache, target), deps, plan, base, engine, lambda _: None)
    assert pushed is not None and pushed.wheels_added == 1
    assert (pushed.uploaded, pushed.reused, pushed.layers) == (2, 2, 4)
    assert "and a deps layer of 1 added wheel), 2 reused" in rb.summary(pushed, 1.0)
    step = engine.steps[0]
    assert step.image == base.id and step.commit is None and step.export[-1] == "@" + GROW_LIST
    found = client.manifest("wd/app", "latest")
    assert found is not None and found.data["layers"][:2] == blobs[:2]
    config = json.loads(client.blob("wd/app", found.data["config"]["digest"]))
    diff_ids = config["rootfs"]["diff_ids"]
    assert diff_ids[:2] == [BASE_DIFF, DEPS_DIFF] and diff_ids[2] == digest(layer)
    labels = DepsLabels.from_labels(config["config"]["Labels"])
    assert labels is not None and labels.key == deps.key and labels.depth == 1
    assert labels.wheels == tuple(wheel_ids(WHEELS))
    assert config["config"]["Labels"][KIND_LABEL] == "app"
    assert registry_deps_layers(rb.cache_record(target, found, config).info, base) == (
        DEPS_DIFF,
        digest(layer),
    )


def test_can_grow_only_what_only_adds() -> None:
    installer = Installer("uv", "/x", "0.1")
    have = DepsLabels("k", DEPS_FORMAT, "site", "sha256:base", "uv0.1", ("a@1",), 0)
    assert can_grow(have, installer, ["a@1", "b@2"]) == ""
    assert "removed or changed" in can_grow(have, installer, ["a@2", "b@2"])
    assert "removed or changed" in can_grow(have, installer, ["a@1"])  # nothing added
    assert "installed by pip" in can_grow(
        dataclasses.replace(have, installer="pip"), installer, ["a@1", "b@2"]
    )
    assert "older layout" in can_grow(dataclasses.replace(have, format="1"), installer, ["b"])
    assert "older layout" in can_grow(None, installer, ["a@1", "b@2"])
    deep = dataclasses.replace(have, depth=MAX_DEPS_DEPTH)
    assert "already sits on" in can_grow(deep, installer, ["a@1", "b@2"])


def test_a_grow_step_is_keyed_as_an_incremental_one(tmp_path: Path) -> None:
    """The grown deps layer has the key and labels a build on the engine gives the same
    wheels: a later build finds it either way."""
    write_wsgi_site(tmp_path / "site")
    cfg = load_config(tmp_path / "site")
    installer = Installer("pip")
    parent = deps_labels(cfg, BASE, "k0", installer, wheel_ids(WHEELS[:1]), 2)
    grown = plan_grow(cfg, BASE, PKEY, WHEELS, installer, parent)
    assert grown.key == plan_deps(cfg, BASE, PKEY, WHEELS, installer).key
    labels = DepsLabels.from_labels(grown.step.commit.labels if grown.step.commit else {})
    assert labels is not None and labels.depth == 3
    assert APP_ROOT in grown.step.tmpfs and grown.step.network == "none"
