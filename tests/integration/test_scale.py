"""A big tree on the real engine: the app layers split by change rate, a code change
that sends one small layer, an edited and a deleted asset, deletions and kind changes;
after every build the image's files are compared with the source's, exactly (names,
kinds, modes, owners, contents, link targets)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import App, output, serve_image, write_django
from pkgindex import Index
from test_build import http_get, image, wheelhouse

from nox_warpdrive.engine import Engine
from nox_warpdrive.source.image_layers import LAYERS_LABEL
from nox_warpdrive.source.layers import (
    ASSET_CHANGES,
    ASSETS,
    CODE,
    CODE_CHANGES,
    KEEP_CODE_FILES,
    STATIC,
)

SRC = "/opt/app-root/src"

#: the image's files under SRC, as the source's are listed below
LIST_IMAGE = r"""
import hashlib, os, stat
root = "/opt/app-root/src"
for d, dirs, files in os.walk(root):
    for name in dirs + files:
        p = os.path.join(d, name)
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            what = "l " + os.readlink(p)
        elif stat.S_ISDIR(st.st_mode):
            what = "d"
        else:
            with open(p, "rb") as fh:
                what = "f " + hashlib.sha256(fh.read()).hexdigest()
        print(os.path.relpath(p, root), oct(st.st_mode & 0o7777), st.st_uid, st.st_gid, what)
"""


def source_listing(root: Path) -> set[str]:
    """What the image must hold under SRC: every path of the source but .git, owned by
    the app user, directories and executables 0775, other files 0664, links 0777."""
    rows = set()
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != ".git"]
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                mode, what = 0o777, "l " + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                mode, what = 0o775, "d"
            else:
                mode = 0o775 if st.st_mode & 0o100 else 0o664
                what = "f " + hashlib.sha256(Path(p).read_bytes()).hexdigest()
            rows.add(f"{os.path.relpath(p, root)} {oct(mode)} 1001 0 {what}")
    return rows


def image_listing(engine: Engine, ref: str) -> set[str]:
    out = output(engine.client, ref, ["python3", "-c", LIST_IMAGE])
    return set(out.decode().splitlines())


def assert_same_tree(engine: Engine, app: App, ref: str) -> None:
    want, have = source_listing(app.root), image_listing(engine, ref)
    assert want == have, (sorted(want - have)[:10], sorted(have - want)[:10])


def write_wsgi(app: App, message: str) -> None:
    """The app's module, with only the pure-Python package (no compiler needed)."""
    (app.root / "wsgi.py").write_text(
        "import wd_pure_demo\n\n\n"
        "def application(environ, start_response):\n"
        '    start_response("200 OK", [("Content-Type", "text/plain")])\n'
        f'    return [b"{message} " + wd_pure_demo.hello().encode()]\n'
    )


def generate(root: Path, files: int) -> None:
    """``files`` small code files in 12 packages, 4 assets of 8 MiB, some icons."""
    for i in range(files):
        path = root / "gen" / f"pkg{i % 12:02d}" / f"m{i:05d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE = {i}\n" + "# padding\n" * (i % 40))
    for i in range(4):
        path = root / "media" / f"asset-{i}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(hashlib.sha256(str(i).encode()).digest() * (8 * 1024 * 1024 // 32))
    for i in range(10):
        (root / "media" / f"icon-{i}.png").write_bytes(b"\x89PNG" + bytes([i]) * 2000)
    (root / "gen" / "latest.py").symlink_to("pkg00/m00000.py")
    (root / "gen" / "empty").mkdir()


def app_layers(engine: Engine, ref: str) -> list[tuple[str, str]]:
    """(role, diff ID) of the image's app layers, bottom up, checked against its layers."""
    info = engine.image(ref)
    assert info is not None
    rows = json.loads(info.labels[LAYERS_LABEL])
    assert [d for _, _, d in rows] == list(info.diff_ids[-len(rows) :])
    return [(role, diff) for role, _, diff in rows]


def top_layer_bytes(engine: Engine, ref: str) -> int:
    history: list[dict[str, Any]] = engine.history(ref)
    return int(history[0]["Size"])


@pytest.fixture
def big_app(make_app: Any, engine: Engine, index_env: Index) -> App:
    app: App = make_app(["wd-pure-demo"])
    write_wsgi(app, "hello-v1")
    generate(app.root, KEEP_CODE_FILES + 200)
    wheelhouse(app, engine)
    return app


def test_changes_to_a_big_tree_send_only_what_changed_and_the_tree_stays_exact(
    big_app: App, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = big_app
    first = image(app, engine, no_index=True)
    one = app_layers(engine, app.image)
    assert [role for role, _ in one] == [ASSETS, CODE]
    assert_same_tree(engine, app, app.image)
    engine.tag(first.image_id, f"{app.name}:first")

    # a code change: one small layer on the others, named
    write_wsgi(app, "hello-v2")
    image(app, engine, no_index=True)
    two = app_layers(engine, app.image)
    assert two[:2] == one and [role for role, _ in two] == [ASSETS, CODE, CODE_CHANGES]
    assert top_layer_bytes(engine, app.image) < 10_000
    assert_same_tree(engine, app, app.image)
    with serve_image(engine, app.image) as (_, url):
        status, body = http_get(f"{url}/")
        assert status == 200 and body.startswith("hello-v2"), body

    # an edited asset: the asset changes under the (same) code changes
    (app.root / "media" / "asset-1.bin").write_bytes(b"edited" * 100_000)
    image(app, engine, no_index=True)
    three = app_layers(engine, app.image)
    assert three[:2] == one and [role for role, _ in three][2:] == [ASSET_CHANGES, CODE_CHANGES]
    assert three[3] == two[2]  # the same layer, sent again on the new one below
    assert_same_tree(engine, app, app.image)

    # a deleted asset, a deleted package, kind changes, a new link target, an exec bit
    (app.root / "media" / "asset-2.bin").unlink()
    shutil.rmtree(app.root / "gen" / "pkg03")
    (app.root / "gen" / "empty").rmdir()
    (app.root / "gen" / "empty").write_text("a file now\n")
    (app.root / "gen" / "pkg04" / "m00004.py").unlink()
    (app.root / "gen" / "pkg04" / "m00004.py").mkdir()
    (app.root / "gen" / "pkg04" / "m00004.py" / "inner.py").write_text("X = 1\n")
    (app.root / "gen" / "latest.py").unlink()
    (app.root / "gen" / "latest.py").symlink_to("pkg01/m00001.py")
    (app.root / "gen" / "pkg05" / "m00005.py").chmod(0o755)
    image(app, engine, no_index=True)
    four = app_layers(engine, app.image)
    assert four[:2] == one
    assert_same_tree(engine, app, app.image)

    # the same source anywhere else (another umask, other mtimes, no host cache, no
    # image): the layers made from the tree alone, byte for byte the first build's
    clone = tmp_path / "clone"
    old_umask = os.umask(0o077)
    try:
        shutil.copytree(app.root, clone, symlinks=True)
    finally:
        os.umask(old_umask)
    for path in clone.rglob("*"):
        os.utime(path, (1e9, 1e9), follow_symlinks=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "clone-cache"))
    engine.remove_image(app.image)
    fresh = image(App(clone, app.name, app.image, app.volume), engine, no_index=True)
    monkeypatch.undo()
    again = app_layers(engine, fresh.image_id)
    assert [role for role, _ in again] == [ASSETS, CODE] and again[0][1] != one[0][1]
    assert_same_tree(engine, App(clone, app.name, app.image, app.volume), fresh.image_id)
    image(app, engine, no_index=True)  # the original, without its image: the same layers
    assert app_layers(engine, app.image) == again


def test_a_big_django_tree_reuses_and_recollects_static_files_in_their_own_layer(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    """collectstatic runs on the app layers as a code change makes them (no archive of
    the whole tree), and its files sit over the big code layer: an edited static file
    sends the static and change layers again, never the code or the assets."""
    app: App = make_app(["Django==5.2.19"])
    os.unlink(app.root / "wsgi.py")
    write_django(app.root)
    generate(app.root, KEEP_CODE_FILES + 200)
    wheelhouse(app, engine)
    image(app, engine, no_index=True)
    one = app_layers(engine, app.image)
    assert [role for role, _ in one] == [ASSETS, CODE, STATIC]
    css = f"{SRC}/collected/shop/site.css"

    def check(color: str) -> None:
        have = {row for row in image_listing(engine, app.image) if not row.startswith("collected")}
        assert have == source_listing(app.root)
        out = output(engine.client, app.image, ["cat", css])
        assert out.decode().strip() == f"body {{ color: {color} }}"

    check("red")
    write_django(app.root, message="shop-v2")  # a view: the static files named
    lines: list[str] = []
    image(app, engine, lines, no_index=True)
    assert "reusing the collected static files" in "\n".join(lines)
    two = app_layers(engine, app.image)
    assert two[:3] == one and [role for role, _ in two][3:] == [CODE_CHANGES]
    check("red")
    write_django(app.root, message="shop-v2", css="body { color: blue }\n")
    lines.clear()
    image(app, engine, lines, no_index=True)
    assert "re-collected only those" in "\n".join(lines)
    three = app_layers(engine, app.image)
    assert three[:2] == one[:2] and three[2] != one[2]
    check("blue")
