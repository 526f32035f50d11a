"""The app layer as one tar: merging and moving tars, the skeleton of parent directories,
the static inputs that key collectstatic, and reusing collected static files."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from unit_support import BASE, PKEY, tar_contents, write, write_django_site, write_wsgi_site

from nox_warpdrive import layout as layout_module
from nox_warpdrive.build import app_layer as app_layer_module
from nox_warpdrive.build import static as static_module
from nox_warpdrive.build import static_cache
from nox_warpdrive.build.static_inputs import choose
from nox_warpdrive.config import Config, load_config
from nox_warpdrive.engine import ImageInfo
from nox_warpdrive.errors import LayerRefused
from nox_warpdrive.source.context import collect, load_ignore_rules
from nox_warpdrive.tars import TAR_END, merge_tars, reprefix_tar, tar_body, tar_files

SETTINGS = (
    'WSGI_APPLICATION = "site1.wsgi.application"\n'
    'INSTALLED_APPS = ["site1", "django.contrib.staticfiles"]\n'
)
SRC = layout_module.APP_SRC[1:]  # "opt/app-root/src": layer names are relative to /
RECORD = layout_module.STATIC_ROOT_RECORD
STATIC_ROOT = f"{layout_module.APP_SRC}/static"


# ----------------------------------------------------------------------------- helpers


def make_tar(*members: tuple[str, str, bytes | str | None], **meta: int) -> bytes:
    """members: (name, kind, payload) with kind "file" (payload: bytes), "dir", "link"
    (hard link, payload: target) or "symlink" (payload: target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            for key, value in meta.items():
                setattr(info, key, value)
            if kind == "file":
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = meta.get("mode", 0o755)
            elif kind == "link":
                info.type = tarfile.LNKTYPE
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
            if isinstance(payload, str):
                info.linkname = payload
            tar.addfile(info)
    return buf.getvalue()


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def names(data: bytes) -> list[str]:
    return [m.name for m in members(data)]


def by_name(data: bytes) -> dict[str, tarfile.TarInfo]:
    return {m.name: m for m in members(data)}


def missing_parents(data: bytes) -> set[str]:
    """Directories the engine would have to invent (root:root 0755) to apply the layer."""
    info = by_name(data)
    missing = set()
    for name in info:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in info or not info[parent].isdir():
                missing.add(parent)
    return missing


def django_project(root: Path) -> Config:
    write_django_site(root)
    write(root, "site1/settings.py", SETTINGS)
    write(root, "site1/static/site.css", "body { color: red }\n")
    write(root, "site1/views.py", "def index(request): ...\n")
    return load_config(root)


def wsgi_project(root: Path) -> Config:
    write_wsgi_site(root)
    write(root, "app/static/site.css", "body {}\n")
    return load_config(root)


def plan(cfg: Config, deps_key: str = "depskey") -> app_layer_module.AppPlan:
    return app_layer_module.plan_app(cfg, BASE, PKEY, deps_key, "s")


# ----------------------------------------------------------------------------- merge_tars


def test_merge_tars_keeps_order_and_contents() -> None:
    a = make_tar(("d", "dir", None), ("d/a.txt", "file", b"A"), ("d/b.txt", "file", b"B"))
    b = make_tar(("e", "dir", None), ("e/c.txt", "file", b"C"))
    merged = merge_tars(a, b)
    assert names(merged) == ["d", "d/a.txt", "d/b.txt", "e", "e/c.txt"]
    assert tar_contents(merged) == {"d/a.txt": b"A", "d/b.txt": b"B", "e/c.txt": b"C"}


def test_merge_tars_replaces_a_repeated_name_in_its_place() -> None:
    a = make_tar(("d", "dir", None), ("d/a.txt", "file", b"old"), ("d/b.txt", "file", b"B"))
    b = make_tar(("d/a.txt", "file", b"new, longer"), ("d/z.txt", "file", b"Z"))
    merged = merge_tars(a, b)
    # no duplicate path (engines refuse them) and the replaced file keeps its position
    assert names(merged) == ["d", "d/a.txt", "d/b.txt", "d/z.txt"]
    assert tar_contents(merged) == {"d/a.txt": b"new, longer", "d/b.txt": b"B", "d/z.txt": b"Z"}
    assert by_name(merged)["d/a.txt"].size == len(b"new, longer")


def test_merge_tars_later_directory_metadata_wins_but_parents_stay_first() -> None:
    a = make_tar(("d", "dir", None), ("d/x", "file", b"x"), mode=0o755, uid=0)
    b = make_tar(("d", "dir", None), ("d/y", "file", b"y"), mode=0o2775, uid=1001)
    merged = merge_tars(a, b)
    assert names(merged) == ["d", "d/x", "d/y"]
    d = by_name(merged)["d"]
    assert d.isdir()
    assert (d.mode, d.uid) == (0o2775, 1001)


def test_merge_tars_keeps_directories_links_and_metadata() -> None:
    a = make_tar(
        ("top", "dir", None),
        ("top/empty", "dir", None),
        ("top/f", "file", b"data"),
        ("top/hard", "link", "top/f"),
        ("top/soft", "symlink", "f"),
        uid=1001,
        gid=0,
        mode=0o640,
        mtime=12345,
    )
    merged = merge_tars(a)
    info = by_name(merged)
    assert info["top/empty"].isdir()
    assert info["top/hard"].islnk() and info["top/hard"].linkname == "top/f"
    assert info["top/soft"].issym() and info["top/soft"].linkname == "f"
    assert (info["top/f"].uid, info["top/f"].mode, info["top/f"].mtime) == (1001, 0o640, 12345)
    assert tar_contents(merged) == {"top/f": b"data"}


def test_merge_tars_with_nothing_is_an_empty_tar() -> None:
    assert names(merge_tars()) == []
    assert names(merge_tars(make_tar(), make_tar(("a", "file", b"")))) == ["a"]


def test_merge_tars_joins_the_bytes_when_no_name_repeats() -> None:
    """The fast path: the members of each tar, byte for byte, one end marker."""
    long_name = "d/" + "n" * 150 + ".txt"  # a PAX path record travels with its member
    a = make_tar(("d", "dir", None), (long_name, "file", b"A" * 700))
    b = make_tar(("e", "dir", None), ("e/c.txt", "file", b"C"))
    merged = merge_tars(a, b)
    body_a, names_a = tar_body_of(a)
    body_b, _ = tar_body_of(b)
    assert merged == body_a + body_b + TAR_END
    assert names_a == ["d", long_name]
    assert tar_contents(merged) == {long_name: b"A" * 700, "e/c.txt": b"C"}
    # and it is a tar Go's archive/tar and GNU tar read to the end: no zero block inside
    assert b"\0" * 1024 not in merged[: -len(TAR_END)]


def test_merge_tars_keeps_the_last_of_a_name_a_tar_repeats_itself() -> None:
    a = make_tar(("x", "file", b"1"), ("y", "file", b"y"), ("x", "file", b"2"))
    assert names(merge_tars(a)) == ["x", "y"]
    assert tar_contents(merge_tars(a)) == {"x": b"2", "y": b"y"}


def test_merge_tars_moves_members_with_long_names_byte_for_byte() -> None:
    """PAX records (long or non-ASCII names) travel with their member, also when a
    repeated name moves a later member into an earlier position."""
    long_name = "d/" + "n" * 150 + ".txt"
    a = make_tar((long_name, "file", b"old"), ("é.txt", "file", b"e"))
    b = make_tar(("z", "file", b"z"), (long_name, "file", b"new"))
    merged = merge_tars(a, b)
    assert names(merged) == [long_name, "é.txt", "z"]
    assert tar_contents(merged) == {long_name: b"new", "é.txt": b"e", "z": b"z"}


def test_merge_tars_copies_members_after_a_global_header() -> None:
    """A PAX global header would apply to the members of the tars joined after it."""
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "g"}
    ) as tar:
        info = tarfile.TarInfo("g.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"g"))
    assert tar_body(buf.getvalue()) is None
    merged = merge_tars(buf.getvalue(), make_tar(("h.txt", "file", b"h")))
    assert names(merged) == ["g.txt", "h.txt"]
    assert tar_contents(merged) == {"g.txt": b"g", "h.txt": b"h"}


def tar_body_of(data: bytes) -> tuple[bytes, list[str]]:
    found = tar_body(data)
    assert found is not None
    return found


# ----------------------------------------------------------------------------- reprefix_tar


def docker_cp_archive() -> bytes:
    """What ``get_archive('/some/static')`` returns: names start at the basename."""
    return make_tar(
        ("static", "dir", None),
        ("static/site.css", "file", b"body {}"),
        ("static/copy.css", "link", "static/site.css"),
        ("static/alias.css", "symlink", "site.css"),
        ("static/abs.css", "symlink", "/etc/passwd"),
    )


def test_reprefix_tar_moves_names_and_hard_link_targets() -> None:
    moved = reprefix_tar(docker_cp_archive(), "/opt/app-root/src/")
    info = by_name(moved)
    assert list(info) == [
        "opt/app-root/src/static",
        "opt/app-root/src/static/site.css",
        "opt/app-root/src/static/copy.css",
        "opt/app-root/src/static/alias.css",
        "opt/app-root/src/static/abs.css",
    ]
    # a hard link names a member of the archive: it moves with it
    assert info["opt/app-root/src/static/copy.css"].linkname == "opt/app-root/src/static/site.css"
    # a symlink target is a path inside the image: untouched
    assert info["opt/app-root/src/static/alias.css"].linkname == "site.css"
    assert info["opt/app-root/src/static/abs.css"].linkname == "/etc/passwd"
    assert tar_contents(moved) == {"opt/app-root/src/static/site.css": b"body {}"}


def test_reprefix_tar_without_prefix_keeps_names() -> None:
    data = docker_cp_archive()
    for prefix in ("", "/"):
        moved = reprefix_tar(data, prefix)
        assert names(moved) == names(data)
        assert by_name(moved)["static/copy.css"].linkname == "static/site.css"


@pytest.mark.parametrize("name", ["static/caf\u00e9.css", "static/" + "a" * 120 + ".css"])
def test_reprefix_tar_moves_names_stored_in_pax_records(name: str) -> None:
    data = make_tar(
        ("static", "dir", None), (name, "file", b"x"), ("static/link.css", "link", name)
    )
    info = by_name(reprefix_tar(data, "opt/app-root/src"))
    assert f"opt/app-root/src/{name}" in info
    assert info["opt/app-root/src/static/link.css"].linkname == f"opt/app-root/src/{name}"


# ----------------------------------------------------------------------------- skeleton


def test_skeleton_tar_metadata() -> None:
    info = members(layout_module.skeleton_tar())
    got = [(m.name, m.isdir(), m.uid, m.gid, m.mode) for m in info]
    assert got == [
        ("opt", True, 0, 0, 0o755),
        ("opt/app-root", True, 0, 0, 0o755),
        ("opt/app-root/.warpdrive", True, 0, 0, 0o755),
        ("opt/app-root/bin", True, 0, 0, 0o755),
        ("opt/app-root/lib", True, 0, 0, 0o755),
        ("opt/app-root/src", True, layout_module.APP_UID, 0, 0o2775),
    ]
    assert layout_module.APP_UID == 1001
    assert all(m.size == 0 for m in info)


# ----------------------------------------------------------------------------- the app layer


@pytest.mark.parametrize("project", [django_project, wsgi_project])
def test_app_layer_has_no_duplicates_and_carries_every_parent(
    project: Callable[[Path], Config], tmp_path: Path
) -> None:
    """A directory the engine must invent while applying a layer is root:root 0755: it
    would hide the app user's write access to APP_SRC. So every parent is in the layer."""
    layer = plan(project(tmp_path / "p")).layer
    layer_names = names(layer)
    assert len(layer_names) == len(set(layer_names))
    assert missing_parents(layer) == set()
    assert all(not n.startswith("/") and ".." not in n.split("/") for n in layer_names)


def test_app_layer_ownership_and_modes(tmp_path: Path) -> None:
    layer = by_name(plan(django_project(tmp_path / "p")).layer)
    skeleton = by_name(layout_module.skeleton_tar())
    for name, info in skeleton.items():  # the skeleton's metadata is not overridden
        assert (layer[name].uid, layer[name].gid, layer[name].mode) == (
            info.uid,
            info.gid,
            info.mode,
        ), name
    launcher = layer["opt/app-root/bin/warpdrive-start"]
    assert launcher.isfile()
    assert (launcher.uid, launcher.mode) == (0, 0o755)
    src = {n: m for n, m in layer.items() if n.startswith(SRC + "/")}
    assert f"{SRC}/manage.py" in src and f"{SRC}/site1/static/site.css" in src
    assert all((m.uid, m.gid) == (layout_module.APP_UID, 0) for m in src.values())
    # parents come before their children
    order = names(plan(django_project(tmp_path / "p")).layer)
    for i, name in enumerate(order):
        parent = name.rsplit("/", 1)[0]
        if "/" in name:
            assert order.index(parent) < i, name


# ----------------------------------------------------------------------------- static inputs


def relpaths(root: Path, settings: str, skip: frozenset[str] = frozenset()) -> set[str]:
    entries = collect(root, load_ignore_rules(root))
    _, chosen = choose(root, settings, entries, {e.relpath: e.kind for e in entries}, skip)
    return {e.relpath for e in chosen if e.kind == "file"}


def test_static_inputs(tmp_path: Path) -> None:
    cfg = django_project(tmp_path / "p")
    root = cfg.project_dir
    write(root, "site1/apps.py", "from django.apps import AppConfig\n")
    write(root, "site1/models.py", "X = 1\n")
    write(root, "site1/urls.py", "urlpatterns = []\n")
    write(root, "site1/settings_extra.py", "Y = 1\n")  # not imported by the settings
    write(root, "site1/templates/index.html", "<p>hi</p>\n")
    write(root, "site1/migrations/0001_initial.py", "\n")
    write(root, "blog/apps.py", "\n")  # not an installed app
    write(root, "blog/static/blog.js", "1;\n")
    write(root, "reqs/base.txt", "Django\n")
    write(root, "requirements.txt", "-r reqs/base.txt\n")
    cfg = load_config(root)
    app, server = app_layer_module.detect_app(cfg)
    assert app.settings == "site1.settings"
    assert server == "gunicorn"
    skip = static_module.not_static_inputs(cfg)
    # packages are compared by their wheels when the files are reused, not by these files
    assert {"pyproject.toml", "requirements.txt"} <= skip
    got = relpaths(root, "site1.settings", skip | {"reqs/base.txt"})
    assert got == {
        "manage.py",
        "site1/__init__.py",
        "site1/settings.py",
        "site1/apps.py",
        "site1/static/site.css",
    }


def test_static_inputs_with_a_settings_package(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root, "manage.py", "\n")
    write(root, "site1/__init__.py", "")
    write(root, "site1/settings/__init__.py", "")
    write(root, "site1/settings/base.py", "STATIC_ROOT = 'x'\nfrom site1.common import X\n")
    write(root, "site1/common.py", "X = 1\n")
    write(root, "site1/settings/prod.py", "from .base import *\nDEBUG = False\n")
    write(root, "site1/settings/dev.py", "from .base import *\nDEBUG = True\n")
    write(root, "site1/views.py", "\n")
    got = relpaths(root, "site1.settings.prod")
    assert got == {
        "manage.py",
        "site1/__init__.py",
        "site1/common.py",
        "site1/settings/__init__.py",
        "site1/settings/base.py",
        "site1/settings/prod.py",
    }


# ----------------------------------------------------------------------------- static key


def test_static_key_survives_a_views_edit(tmp_path: Path) -> None:
    cfg = django_project(tmp_path / "p")
    first = plan(cfg)
    assert first.collectstatic and len(first.static_key) == 64
    assert first.commit.labels["io.warpdrive.static-key"] == first.static_key
    assert plan(cfg).static_key == first.static_key

    write(cfg.project_dir, "site1/views.py", "def index(request): return 1\n")
    second = plan(cfg)
    assert second.build_key != first.build_key  # the app layer is rebuilt...
    assert second.static_key == first.static_key  # ...but the collected files are reused


@pytest.mark.parametrize(
    ("relpath", "text"),
    [
        ("requirements.txt", "Django>=5\nwhitenoise\n"),
        ("pyproject.toml", '[project]\nname = "site1"\nversion = "2"\n'),
        ("site1/models.py", "X = 2\n"),
        ("site1/templates/index.html", "<p>hi</p>\n"),
        ("site1/migrations/0002_more.py", "\n"),
        ("blog/static/blog.js", "1;\n"),  # not an installed app
    ],
)
def test_static_key_ignores_python_and_requirement_edits(
    tmp_path: Path, relpath: str, text: str
) -> None:
    cfg = django_project(tmp_path / "p")
    first = plan(cfg)
    write(cfg.project_dir, relpath, text)
    again = plan(load_config(cfg.project_dir))
    assert again.build_key != first.build_key
    assert again.static_key == first.static_key


@pytest.mark.parametrize(
    ("relpath", "text"),
    [
        ("site1/static/site.css", "body { color: blue }\n"),
        ("site1/static/new.css", "p {}\n"),
        ("site1/settings.py", SETTINGS + 'STATIC_URL = "/s/"\n'),
        ("site1/apps.py", "from django.apps import AppConfig\n"),
        (".warpdrive/environment", "DEBUG=1\n"),
    ],
)
def test_static_key_changes_with_a_static_input(tmp_path: Path, relpath: str, text: str) -> None:
    cfg = django_project(tmp_path / "p")
    first = plan(cfg)
    write(cfg.project_dir, relpath, text)
    assert plan(cfg).static_key != first.static_key


def test_static_key_tracks_the_base_image_not_the_deps(tmp_path: Path) -> None:
    """Packages are checked when the files are reused (reusable_static), not in the key:
    adding a package must not throw the collected files away."""
    cfg = django_project(tmp_path / "p")
    assert plan(cfg, "deps-a").static_key == plan(cfg, "deps-b").static_key
    other_base = dataclasses.replace(BASE, id="sha256:other")
    moved = app_layer_module.plan_app(cfg, other_base, PKEY, "deps-a", "s")
    assert moved.static_key != plan(cfg, "deps-a").static_key


def test_static_key_empty_without_collectstatic(tmp_path: Path) -> None:
    wsgi = plan(wsgi_project(tmp_path / "w"))
    assert (wsgi.collectstatic, wsgi.static_key) == (False, "")
    assert wsgi.commit.labels["io.warpdrive.static-key"] == ""
    cfg = dataclasses.replace(django_project(tmp_path / "d"), collectstatic=False)
    off = plan(cfg)
    assert (off.collectstatic, off.static_key) == (False, "")
    assert off.commit.labels["io.warpdrive.static-key"] == ""


# ------------------------------------------------------------------- reusable_static_files


def static_engine(paths: dict[str, bytes]) -> FakeEngine:
    """Answers image reads like ``docker cp`` out of a created container would (each
    image_reader is one created container: ``readers`` counts them)."""
    return FakeEngine(paths=paths)


def record_tar(root: str) -> bytes:
    return make_tar(("static-root", "file", (root + "\n").encode()))


def static_tar() -> bytes:
    return make_tar(
        ("static", "dir", None),
        ("static/site.css", "file", b"body { color: red }\n"),
        ("static/admin", "dir", None),
        ("static/admin/base.css", "file", b"admin\n"),
        uid=layout_module.APP_UID,
        mode=0o664,
    )


def current_image(
    static_key: str, deps_key: str = "depskey", wheels: list[str] | None = None
) -> ImageInfo:
    labels = {"io.warpdrive.static-key": static_key, "io.warpdrive.deps-key": deps_key}
    if wheels is not None:
        labels["io.warpdrive.deps-wheels"] = json.dumps(wheels)
    return dataclasses.replace(BASE, id="sha256:current", labels=labels)


def reuse(
    engine: FakeEngine,
    current: ImageInfo | None,
    app: app_layer_module.AppPlan,
    deps_key: str = "depskey",
    wheels: list[str] | None = None,
) -> bytes | None:
    """The reused files as members of the app layer, with the directories it lacks (what
    build_image does when they cannot be a layer of their own)."""
    found = static_module.reusable_static_files(engine, current, app, deps_key, wheels)
    if found is None:
        return None
    root, files = found
    record_dir = layout_module.STATIC_ROOT_RECORD.rsplit("/", 1)[0]
    return merge_tars(
        static_module.parent_dirs(app.layer, root.rsplit("/", 1)[0], record_dir), files
    )


def engine_for(root: str = STATIC_ROOT) -> FakeEngine:
    return static_engine({RECORD: record_tar(root), root: static_tar()})


def test_reusable_static_when_the_keys_match(tmp_path: Path) -> None:
    app = plan(django_project(tmp_path / "p"))
    engine = engine_for()
    static = reuse(engine, current_image(app.static_key), app)
    assert static is not None
    assert engine.reads == [("sha256:current", RECORD), ("sha256:current", STATIC_ROOT)]
    assert engine.readers == 1  # both reads through one created container
    info = by_name(static)
    assert set(info) == {
        f"{SRC}/static",
        f"{SRC}/static/site.css",
        f"{SRC}/static/admin",
        f"{SRC}/static/admin/base.css",
        # its directory is in the app layer already (start.json lives there)
        "opt/app-root/.warpdrive/static-root",
    }
    files = tar_contents(static)
    assert files[f"{SRC}/static/site.css"] == b"body { color: red }\n"
    assert files["opt/app-root/.warpdrive/static-root"] == f"{STATIC_ROOT}\n".encode()
    assert info[f"{SRC}/static"].isdir() and info[f"{SRC}/static"].uid == layout_module.APP_UID
    # merged into the app layer (as build_image does): still no duplicate path
    layer = merge_tars(app.layer, static)
    assert len(names(layer)) == len(set(names(layer)))
    assert missing_parents(layer) == set()
    assert f"{SRC}/site1/static/site.css" in tar_contents(layer)


def test_reusable_static_none_when_labels_differ(tmp_path: Path) -> None:
    app = plan(django_project(tmp_path / "p"))
    engine = engine_for()
    for current in (
        current_image("another-key"),
        current_image(""),
        dataclasses.replace(BASE, id="sha256:current", labels={}),
    ):
        assert reuse(engine, current, app) is None
    assert reuse(engine, None, app) is None
    assert engine.reads == []  # nothing read from an image that cannot match


def test_reusable_static_when_packages_were_only_added(tmp_path: Path) -> None:
    app = plan(django_project(tmp_path / "p"), "new-deps")
    current = current_image(app.static_key, "old-deps", ["a@1", "b@2"])
    # same deps key: reused whatever the wheel lists say
    assert reuse(engine_for(), current_image(app.static_key, "new-deps"), app, "new-deps")
    # a package added, none changed or removed: collectstatic would give the same files
    assert reuse(engine_for(), current, app, "new-deps", ["a@1", "b@2", "c@3"]) is not None
    assert reuse(engine_for(), current, app, "new-deps", ["a@1", "b@2"]) is not None


@pytest.mark.parametrize(
    ("labels", "wheels"),
    [
        ({"io.warpdrive.deps-wheels": '["a@1","b@2"]'}, ["a@1", "b@3"]),  # a wheel changed
        ({"io.warpdrive.deps-wheels": '["a@1","b@2"]'}, ["a@1"]),  # a wheel removed
        ({"io.warpdrive.deps-wheels": '["a@1","b@2"]'}, None),  # unpinned install
        ({"io.warpdrive.deps-wheels": "not json"}, ["a@1"]),
        ({"io.warpdrive.deps-wheels": '{"a@1": 1}'}, ["a@1"]),
        ({}, ["a@1"]),
    ],
)
def test_reusable_static_none_when_packages_changed(
    tmp_path: Path, labels: dict[str, str], wheels: list[str] | None
) -> None:
    app = plan(django_project(tmp_path / "p"), "new-deps")
    current = current_image(app.static_key, "old-deps")
    current = dataclasses.replace(current, labels={**current.labels, **labels})
    engine = engine_for()
    assert reuse(engine, current, app, "new-deps", wheels) is None
    assert engine.reads == []


def test_reusable_static_none_without_collectstatic(tmp_path: Path) -> None:
    app = plan(wsgi_project(tmp_path / "w"))
    engine = engine_for()
    # an empty key never matches, even an image whose label is empty too
    assert reuse(engine, current_image(""), app) is None
    assert engine.reads == []


def test_reusable_static_none_when_the_record_is_missing(tmp_path: Path) -> None:
    app = plan(django_project(tmp_path / "p"))
    engine = static_engine({STATIC_ROOT: static_tar()})
    assert reuse(engine, current_image(app.static_key), app) is None
    empty = static_engine({RECORD: make_tar(), STATIC_ROOT: static_tar()})
    assert reuse(empty, current_image(app.static_key), app) is None


def test_reusable_static_none_when_the_static_root_is_missing(tmp_path: Path) -> None:
    app = plan(django_project(tmp_path / "p"))
    engine = static_engine({RECORD: record_tar(STATIC_ROOT)})
    assert reuse(engine, current_image(app.static_key), app) is None


@pytest.mark.parametrize(
    "root", ["../etc", "relative/static", "", "/opt/app-root/../../etc", "/opt/app-root/src/.."]
)
def test_reusable_static_none_for_an_unsafe_record(tmp_path: Path, root: str) -> None:
    app = plan(django_project(tmp_path / "p"))
    engine = static_engine({RECORD: record_tar(root), root: static_tar()})
    assert reuse(engine, current_image(app.static_key), app) is None
    assert engine.reads == [("sha256:current", RECORD)]  # the unsafe path is never read


@pytest.mark.parametrize("root", [STATIC_ROOT, f"{layout_module.APP_SRC}/var/static"])
def test_reused_static_layer_carries_every_parent(tmp_path: Path, root: str) -> None:
    app = plan(django_project(tmp_path / "p"))
    static = reuse(engine_for(root), current_image(app.static_key), app)
    assert static is not None
    assert missing_parents(merge_tars(app.layer, static)) == set()


def test_tar_files_makes_its_parent_dirs() -> None:
    """The launcher tar relies on this: its bin/ parents match the skeleton's."""
    data = tar_files({"opt/app-root/bin/warpdrive-start": b"#!"}, mode=0o755)
    info = by_name(data)
    assert list(info) == [
        "opt",
        "opt/app-root",
        "opt/app-root/bin",
        "opt/app-root/bin/warpdrive-start",
    ]
    assert all((m.uid, m.gid, m.mode) == (0, 0, 0o755) for m in info.values())


def test_reusable_static_reads_the_host_copy_after_the_first_time(tmp_path: Path) -> None:
    app = plan(django_project(tmp_path / "p"))
    engine = engine_for()
    first = reuse(engine, current_image(app.static_key), app)
    assert first is not None and engine.readers == 1
    second = reuse(engine, current_image(app.static_key), app)
    assert second == first
    assert engine.readers == 1, "the image was read again instead of the host copy"
    # another image id has no copy yet: read through a container
    other = dataclasses.replace(current_image(app.static_key), id="sha256:other")
    assert reuse(engine, other, app) == first
    assert engine.readers == 2


def test_reusable_static_ignores_an_unsafe_host_copy(tmp_path: Path) -> None:
    app = plan(django_project(tmp_path / "p"))
    static_cache.store("sha256:current", record_tar("/etc"), static_tar())
    engine = engine_for()
    assert reuse(engine, current_image(app.static_key), app) is not None
    assert engine.readers == 1  # the bad copy was not used; the image was read


def test_static_cache_round_trip_copy_and_limit() -> None:
    assert static_cache.load("sha256:none") is None
    static_cache.store("sha256:a", b"record", b"static")
    assert static_cache.load("sha256:a") == (b"record", b"static")
    static_cache.copy("sha256:a", "sha256:b")
    assert static_cache.load("sha256:b") == (b"record", b"static")
    static_cache.copy("sha256:missing", "sha256:c")
    assert static_cache.load("sha256:c") is None
    for i in range(static_cache.KEEP + 3):
        static_cache.store(f"sha256:n{i}", b"r", b"s")
    assert len(list(static_cache.cache_dir().glob("*.tar"))) == static_cache.KEEP
    assert static_cache.load(f"sha256:n{static_cache.KEEP + 2}") == (b"r", b"s")


def test_static_cache_counts_linked_copies_as_one_set() -> None:
    """Every code change names the same files under its new image id (a hard link): the
    limit counts sets of files, and names per set, not names in all."""
    static_cache.store("sha256:a", b"record", b"static")
    for i in range(static_cache.KEEP - 1):
        static_cache.store(f"sha256:other{i}", b"r", b"s")
    for i in range(30):
        static_cache.copy("sha256:a" if i == 0 else f"sha256:c{i - 1}", f"sha256:c{i}")
    files = list(static_cache.cache_dir().glob("*.tar"))
    assert len({f.resolve() for f in files}) == static_cache.KEEP
    assert (
        static_cache.load("sha256:a") == static_cache.load("sha256:c29") == (b"record", b"static")
    )
    for i in range(static_cache.NAMES + 5):
        static_cache.copy(f"sha256:d{i - 1}" if i else "sha256:c29", f"sha256:d{i}")
        # one build after another (file times here are coarser than this loop)
        link = static_cache.cache_dir() / f"sha256_d{i}.tar"
        os.utime(link, (2e9 + i, 2e9 + i), follow_symlinks=False)
    real = (static_cache.cache_dir() / "sha256_a.tar").resolve()
    names = [f for f in static_cache.cache_dir().glob("*.tar") if f.is_symlink()]
    assert len(names) == static_cache.NAMES and all(f.resolve() == real for f in names)
    # the newest names stay
    assert static_cache.load(f"sha256:d{static_cache.NAMES + 4}") == (b"record", b"static")
    assert static_cache.load("sha256:c0") is None
    # a used set is the newest: a new one pushes out another, and its names go with it
    static_cache.store("sha256:newest", b"r", b"s")
    assert static_cache.load("sha256:a") is not None
    assert static_cache.load("sha256:other0") is None


def test_static_cache_ignores_a_damaged_copy() -> None:
    static_cache.cache_dir().mkdir(parents=True, exist_ok=True)
    (static_cache.cache_dir() / "sha256_bad.tar").write_bytes(b"not a tar")
    assert static_cache.load("sha256:bad") is None


# ----------------------------------------------------------------------------- static layer


def split_engine(*deps: str, refuse: bool = False) -> FakeEngine:
    """The deps images ``deps`` (on a base layer); append_layer refuses when told to."""
    images = {
        d: dataclasses.replace(BASE, id=d, diff_ids=("sha256:base", "sha256:deps")) for d in deps
    }
    refused = LayerRefused("the engine refused the app layer: no")
    return FakeEngine(images=images, failures=[refused] if refuse else [])


def collected(root: str = STATIC_ROOT) -> tuple[bytes, bytes]:
    files = merge_tars(
        reprefix_tar(static_tar(), root.rsplit("/", 1)[0].lstrip("/")),
        reprefix_tar(record_tar(root), RECORD.rsplit("/", 1)[0].lstrip("/")),
    )
    return record_tar(root), files


def test_split_static_rebuilds_a_container_build_as_static_and_app_layers(tmp_path: Path) -> None:
    app = plan(django_project(tmp_path / "p"))
    engine = split_engine("sha256:deps")
    static_cache.store("sha256:built", *collected())
    result = static_module.split_static(engine, "sha256:deps", app, "sha256:built", collected())
    assert result == "sha256:appended1" and engine.removed == ["sha256:built"]
    ((parent, spec, _),) = engine.appended
    ((layer, under),) = engine.appended_data
    assert (parent, layer) == ("sha256:deps", app.layer)
    ((what, static),) = under
    assert what == static_module.STATIC_CREATED_BY and isinstance(static, bytes)
    assert (
        spec.labels["io.warpdrive.static-layer"] == "sha256:" + hashlib.sha256(static).hexdigest()
    )
    assert spec.labels["io.warpdrive.static-root"] == STATIC_ROOT
    assert spec.labels["io.warpdrive.build-key"] == app.commit.labels["io.warpdrive.build-key"]
    # a layer of its own must carry every parent, with the owners the app layer gives them
    info = by_name(static)
    assert not missing_parents(static)
    assert (info[SRC].uid, info[SRC].mode) == (layout_module.APP_UID, 0o2775)
    assert {f"{SRC}/static/site.css", "opt/app-root/.warpdrive/static-root"} <= set(info)
    # the host copy of the files is known under the new image id too
    assert static_cache.load("sha256:appended1") == static_cache.load("sha256:built")


def test_split_static_keeps_the_container_build_when_it_cannot_split(tmp_path: Path) -> None:
    app = plan(django_project(tmp_path / "p"))
    refused = split_engine("d", refuse=True)
    built = static_module.split_static(refused, "d", app, "sha256:built", collected())
    assert built == "sha256:built" and refused.removed == []
    # files collected on the developer's machine are in the source: on top of a static
    # layer they would hide what collectstatic made, so no split
    shadowed = plan(django_project(tmp_path / "q"))
    engine = split_engine("d")
    root = f"{layout_module.APP_SRC}/site1"  # a directory the app layer has
    result = static_module.split_static(engine, "d", shadowed, "sha256:b", collected(root))
    assert result == "sha256:b" and engine.appended == []


def test_reusable_static_names_its_layer_and_reads_it_only_when_sent(tmp_path: Path) -> None:
    app = plan(django_project(tmp_path / "p"))
    labels = {
        "io.warpdrive.static-key": app.static_key,
        "io.warpdrive.deps-key": "depskey",
        "io.warpdrive.static-layer": "sha256:static",
        "io.warpdrive.static-root": STATIC_ROOT,
    }
    layers = ("sha256:base", "sha256:deps", "sha256:static", "sha256:app")
    current = dataclasses.replace(BASE, id="sha256:current", labels=labels, diff_ids=layers)
    engine = engine_for()
    found = static_module.reusable_static(engine, current, app, "depskey")
    assert found is not None
    root, layer = found
    assert (root, layer.diff_id) == (STATIC_ROOT, "sha256:static")
    assert engine.reads == []  # named: nothing read
    data = layer.data()  # had it to be sent: read then, as a layer of its own
    assert engine.reads and f"{SRC}/static/site.css" in tar_contents(data)
    # a label naming a layer the image does not have: the files are read now
    moved = dataclasses.replace(current, diff_ids=(*layers[:2], "sha256:other", layers[3]))
    found = static_module.reusable_static(engine_for(), moved, app, "depskey")
    assert found is not None and found[1].diff_id.startswith("sha256:")
    assert found[1].diff_id != "sha256:static"
    # other static inputs, other packages, an unsafe root: nothing reused
    for changed in (
        {**labels, "io.warpdrive.static-key": "x"},
        {**labels, "io.warpdrive.deps-key": "other"},
    ):
        image = dataclasses.replace(current, labels=changed)
        assert static_module.reusable_static(engine, image, app, "depskey") is None
    assert static_module.reusable_static(engine, None, app, "depskey") is None


def test_static_key_follows_the_packages_when_the_settings_import_optional_ones(
    tmp_path: Path,
) -> None:
    """`try: import debug_toolbar` in the settings: a package added can change what is
    collected, so the deps key is part of the static key."""
    cfg = django_project(tmp_path / "p")
    assert plan(cfg, "deps-a").static_key == plan(cfg, "deps-b").static_key
    write(
        cfg.project_dir,
        "site1/settings.py",
        SETTINGS + "try:\n    import debug_toolbar\nexcept ImportError:\n    pass\n",
    )
    assert plan(cfg, "deps-a").static_key != plan(cfg, "deps-b").static_key
    assert "the installed packages" in plan(cfg).static_notes[1]


def test_static_notes_say_the_settings_and_where_they_come_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    cfg = django_project(tmp_path / "p")
    notes = plan(cfg).static_notes
    assert notes[0] == (
        "warpdrive: collectstatic uses DJANGO_SETTINGS_MODULE=site1.settings "
        "(from manage.py's default)"
    )
    assert notes[1] == "warpdrive: collectstatic inputs: 1 settings module, 1 static directory"
    write(cfg.project_dir, "site1/prod.py", "from .settings import *\nX = open('x')\n")
    write(cfg.project_dir, ".warpdrive/environment", "DJANGO_SETTINGS_MODULE=site1.prod\n")
    notes = plan(cfg).static_notes
    assert notes[0].endswith("=site1.prod (from .warpdrive/environment)")
    assert "reruns on any change to the source: site1/prod.py line 2 calls open()" in notes[1]
    based = dataclasses.replace(BASE, env=("DJANGO_SETTINGS_MODULE=site1.settings",))
    notes = app_layer_module.plan_app(cfg, based, PKEY, "d", "s").static_notes
    assert notes[0].endswith("=site1.settings (from the base image's environment)")
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "site1.other")
    notes = plan(cfg).static_notes
    assert notes[1] == (
        "warpdrive: DJANGO_SETTINGS_MODULE=site1.other of this shell does not reach the "
        "build; name it in .warpdrive/environment to use it"
    )


def test_a_name_from_the_folder_is_said(tmp_path: Path) -> None:
    cfg = django_project(tmp_path / "p")
    assert not any("named after the folder" in n for n in plan(cfg).notices)
    write(cfg.project_dir, "pyproject.toml", "[tool.warpdrive]\n")
    notices = plan(load_config(cfg.project_dir)).notices
    assert (
        "warpdrive: no [project].name: the image and volume are named after the folder (p); "
        "set [project].name, or `image` in [tool.warpdrive]"
    ) in notices


def test_a_symbolic_link_among_the_static_inputs_makes_every_file_count(tmp_path: Path) -> None:
    cfg = django_project(tmp_path / "p")
    write(cfg.project_dir, "shared/x.css", "p {}\n")
    (cfg.project_dir / "site1" / "static" / "shared").symlink_to("../../shared")
    first = plan(cfg)
    assert (
        "site1/static/shared, an input of collectstatic, is a symbolic link"
        in (first.static_notes[1])
    )
    write(cfg.project_dir, "site1/templates/index.html", "<p>hi</p>\n")
    assert plan(cfg).static_key != first.static_key  # every file counts


def test_an_app_container_build_whose_appended_layers_are_refused_runs_in_a_container(
    tmp_path: Path,
) -> None:
    """A build step (collectstatic) on an engine that refuses the appended layers (Podman
    4.3 refused the partial archive): the whole tree goes into a container of the deps
    image, as when a container-free build is refused; the engine answered, so nothing
    says to check that it runs."""
    import types

    from nox_warpdrive import image as image_module

    app = plan(django_project(tmp_path / "p"))
    assert app.runs_something
    engine = split_engine("sha256:deps", refuse=True)
    lines: list[str] = []
    b = types.SimpleNamespace(engine=engine, out=lines.append, deps_image=None, current=None)
    image_id = image_module._app_container(b, app, "sha256:deps")  # type: ignore[arg-type]
    (step,) = engine.steps
    assert image_id in engine.built
    assert step.image == "sha256:deps" and step.files and step.command is not None
    said = "\n".join(lines)
    assert "building the app layer in a container instead" in said
    assert "runs and answers" not in said
