"""The host's index of collected static files by static key (static_cache.remember_key,
static_cache.earlier, static.earlier_static): a package added and taken out again finds
the files of the image before the add, which lost its tag."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from test_layer_plans import django_project, plan, record_tar, static_tar

from nox_warpdrive.build import static as static_module
from nox_warpdrive.build import static_cache
from nox_warpdrive.engine import ImageInfo
from nox_warpdrive.labels import OCI_TITLE, DepsLabels


def title(app: static_module.AppPlan) -> str:
    return app.commit.labels.get(OCI_TITLE, "")


def test_an_earlier_image_is_found_by_static_key_with_the_same_packages_or_fewer() -> None:
    static_cache.store("sha256:a", b"record", b"static")
    static_cache.remember_key("site", "key1", ["w1@1", "w2@2"], "sha256:a")
    assert static_cache.earlier("site", "key1", ["w2@2", "w1@1"]) == "sha256:a"
    assert static_cache.earlier("site", "key1", ["w1@1", "w2@2", "w3@3"]) == "sha256:a"
    assert static_cache.earlier("site", "key1", ["w1@1"]) is None  # it had one more
    assert static_cache.earlier("site", "key1", ["w1@1", "w2@other"]) is None  # another build of w2
    assert static_cache.earlier("site", "key2", ["w1@1", "w2@2"]) is None
    assert static_cache.earlier("other-app", "key1", ["w1@1", "w2@2"]) is None  # its own only
    assert static_cache.earlier("site", "", []) is None


def test_the_newest_fitting_image_wins_and_a_pruned_set_is_passed_over() -> None:
    for name in ("old", "new"):
        static_cache.store(f"sha256:{name}", b"record", name.encode())
    static_cache.remember_key("site", "k", ["w@1"], "sha256:old")
    static_cache.remember_key("site", "k", ["w@1", "x@1"], "sha256:new")
    assert static_cache.earlier("site", "k", ["w@1", "x@1"]) == "sha256:new"
    assert static_cache.earlier("site", "k", ["w@1"]) == "sha256:old"
    (static_cache.cache_dir() / "sha256_new.tar").unlink()  # pruned since
    assert static_cache.earlier("site", "k", ["w@1", "x@1"]) == "sha256:old"


def test_only_kept_files_are_indexed_and_the_index_is_bounded() -> None:
    static_cache.remember_key("site", "k", ["w@1"], "sha256:never-stored")
    assert not (static_cache.cache_dir() / "keys").exists()
    for i in range(static_cache.KEEP_PER_KEY + 3):
        static_cache.store(f"sha256:i{i}", b"r", b"s")
        static_cache.remember_key("site", "k", [f"w@{i}"], f"sha256:i{i}")
    static_cache.remember_key("site", "k", ["w@0"], "sha256:i0")  # again: moved to the front
    data = json.loads(static_cache._keys_path("site", "k").read_text())
    assert len(data) == static_cache.KEEP_PER_KEY
    assert data[0] == {"image": "sha256:i0", "wheels": ["w@0"]}
    assert [e["image"] for e in data].count("sha256:i0") == 1


def test_an_unreadable_index_finds_nothing() -> None:
    static_cache.store("sha256:a", b"record", b"static")
    path = static_cache._keys_path("site", "k")
    path.parent.mkdir(parents=True)
    for text in ("{not json", '{"image": "sha256:a"}', '[{"image": 1, "wheels": []}]'):
        path.write_text(text)
        assert static_cache.earlier("site", "k", ["w@1"]) is None
    static_cache.remember_key("site", "k", ["w@1"], "sha256:a")  # written over
    assert static_cache.earlier("site", "k", ["w@1"]) == "sha256:a"


def test_earlier_static_is_the_host_copys_layer(tmp_path: Path) -> None:
    app = plan(django_project(tmp_path / "p"))
    root = "/opt/app-root/src/static"
    static_cache.store("sha256:gone", record_tar(root), static_tar())
    static_cache.remember_key(title(app), app.static_key, ["w@1"], "sha256:gone")
    found = static_module.earlier_static(app, ["w@1", "x@2"])
    assert found is not None
    image_id, got_root, layer = found
    want = static_module.static_layer(root, static_tar())
    assert (image_id, got_root) == ("sha256:gone", root)
    assert layer.diff_id == "sha256:" + hashlib.sha256(want).hexdigest()
    assert layer.data() == want
    assert static_module.earlier_static(app, None) is None  # the packages are not known
    assert static_module.earlier_static(app, []) is None


def test_earlier_static_refuses_a_root_outside_the_app() -> None:
    static_cache.store("sha256:bad", record_tar("/etc"), static_tar())
    static_cache.remember_key("site", "k", [], "sha256:bad")
    commit = type("Commit", (), {"labels": {OCI_TITLE: "site"}})()
    app = type("App", (), {"static_key": "k", "commit": commit})()
    assert static_module.earlier_static(app, []) is None  # type: ignore[arg-type]


def test_the_same_image_again_keeps_its_files_and_a_link_loop_is_dropped() -> None:
    """A build after a removal gives the earlier image itself (the same ID): its files
    are named for it already, and are not made a link to themselves (a loop, which
    Python before 3.13 reports as RuntimeError, not OSError)."""
    static_cache.store("sha256:a", b"record", b"static")
    static_cache.copy("sha256:a", "sha256:a")
    assert static_cache.load("sha256:a") == (b"record", b"static")
    loop = static_cache.cache_dir() / "sha256_loop.tar"
    loop.symlink_to(loop.name)
    static_cache.copy("sha256:loop", "sha256:b")  # no error: nothing to name
    static_cache.prune(static_cache.cache_dir())
    assert not loop.is_symlink()
    assert static_cache.load("sha256:a") == (b"record", b"static")


def test_the_plan_says_an_earlier_images_files_are_reused(tmp_path: Path) -> None:
    """`--plan` says what the build does: the earlier image's files, also when no image
    has the tag (removed by hand); not before the wheelhouse has resolved the set."""
    from nox_warpdrive import image_plan

    app = plan(django_project(tmp_path / "p"))
    static_cache.store("sha256:gone", record_tar("/opt/app-root/src/static"), static_tar())
    assert image_plan._static(app, None, "depskey", ["w@1"], True)[0].startswith(
        "collectstatic runs"
    )
    static_cache.remember_key(title(app), app.static_key, ["w@1"], "sha256:gone")
    said, named = image_plan._static(app, None, "depskey", ["w@1"], True)
    assert said.startswith("reused: the collected files of an earlier image (gone)"), said
    assert named is None
    assert image_plan._static(app, None, "depskey", ["w@1"], False)[0].startswith(
        "collectstatic runs"
    )


def test_code_changes_on_one_set_keep_the_set_before_the_add() -> None:
    """Each code change names the same files under a new image id: one entry per set
    of packages, so the image before an add stays findable after many code changes."""
    static_cache.store("sha256:before", b"r", b"s")
    static_cache.remember_key("site", "k", ["w@1"], "sha256:before")
    for i in range(static_cache.KEEP_PER_KEY + 4):
        static_cache.copy("sha256:before", f"sha256:c{i}")
        static_cache.remember_key("site", "k", ["w@1", "x@1"], f"sha256:c{i}")
    data = json.loads(static_cache._keys_path("site", "k").read_text())
    assert [e["image"] for e in data] == [
        f"sha256:c{static_cache.KEEP_PER_KEY + 3}",
        "sha256:before",
    ]
    assert static_cache.earlier("site", "k", ["w@1"]) == "sha256:before"


def test_the_wheels_installed_are_the_current_images_when_its_deps_layer_is_reused() -> None:
    """A code change whose requirements did not change reads no wheelhouse: the wheels
    it installs are the current image's (its deps labels), so a static input changed
    and changed back (a branch switch) still finds the earlier image's files."""
    deps = DepsLabels("dk", "1", "site", "sha256:base", "uv", ("w@1", "x@2"))
    current = ImageInfo("sha256:cur", (), deps.to_labels(), 1, 1, "")
    assert static_module.installed_wheels(None, current, "dk") == ["w@1", "x@2"]
    assert static_module.installed_wheels(["y@3"], current, "dk") == ["y@3"]  # resolved
    assert static_module.installed_wheels(None, current, "other") is None  # not its deps
    assert static_module.installed_wheels(None, None, "dk") is None
    assert static_module.installed_wheels(None, current, "") is None
