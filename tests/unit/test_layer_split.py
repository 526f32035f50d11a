"""The app layers split by change rate (layers.py, source/image_layers.py): what each build
makes, names and sends, and that the layers, applied one on another as an engine applies
them (whiteouts included), always give exactly the source's tree."""

from __future__ import annotations

import hashlib
import io
import os
import random
import tarfile
from pathlib import Path

import pytest
from unit_support import write

from nox_warpdrive.errors import ContextError
from nox_warpdrive.source import image_layers as source_layers
from nox_warpdrive.source import index as source_index
from nox_warpdrive.source import layers
from nox_warpdrive.source.context import collect, load_ignore_rules
from nox_warpdrive.source.image_layers import app_tree, write_layer
from nox_warpdrive.source.layers import (
    ASSET_CHANGES,
    ASSETS,
    CODE,
    CODE_CHANGES,
    AppTree,
    LayerPlan,
    Previous,
    Rec,
    is_asset,
    parse_listing,
    plan_layers,
)

MB = 1024 * 1024
RUNTIME = {"bin/warpdrive-start": b"#!launcher", ".warpdrive/start.json": b"{}"}


@pytest.fixture(autouse=True)
def small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trees of a few files stand in for big ones: an assets layer from 64 KiB of
    assets, change layers over a code layer of 20 files."""
    monkeypatch.setattr(layers, "SPLIT_BYTES", 64 * 1024)
    monkeypatch.setattr(layers, "KEEP_CODE_FILES", 20)
    monkeypatch.setattr(layers, "CHANGES_FLOOR_FILES", 4)
    monkeypatch.setattr(layers, "ASSET_CHANGES_FLOOR", 64 * 1024)
    monkeypatch.setattr(layers, "CODE_CHANGES_FLOOR", 1024)


def tree_of(root: Path) -> AppTree:
    entries = collect(root, load_ignore_rules(root))
    digests = {
        e.relpath: hashlib.sha256((root / e.relpath).read_bytes()).hexdigest()
        for e in entries
        if e.kind == "file"
    }
    return app_tree(root, entries, digests, RUNTIME)


def project(root: Path) -> Path:
    """30 small code files, 4 assets (100 KB each), a symlink, an empty directory."""
    for i in range(30):
        write(root, f"app/m{i:02d}.py", f"X = {i}\n")
    write(root, "wsgi.py", "application = None\n")
    write(root, "run.sh", "#!/bin/sh\n", mode=0o755)
    for i in range(4):
        write(root, f"media/a{i}.bin", bytes([i]) * 100_000)
    write(root, "static/logo.png", b"\x89PNG" * 100)
    (root / "app" / "link.py").symlink_to("m00.py")
    (root / "empty").mkdir()
    return root


# ----------------------------------------------------------------------------- applying


def apply(layers_in_order: list[bytes]) -> dict[str, tuple[str, int, int, int, bytes | str]]:
    """The files an engine shows after applying these layer tars in order, as moby's
    applier does: a whiteout ``.wh.x`` removes ``x`` and all below it; a member replaces
    what is at its path unless both are directories (then only the metadata changes)."""
    state: dict[str, tuple[str, int, int, int, bytes | str]] = {}

    def drop(path: str) -> None:
        for name in [n for n in state if n == path or n.startswith(path + "/")]:
            del state[name]

    for data in layers_in_order:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar:
                parent, _, base = m.name.rpartition("/")
                if base.startswith(".wh."):
                    drop(f"{parent}/{base[4:]}" if parent else base[4:])
                    continue
                if parent:
                    assert parent in state and state[parent][0] == "dir", m.name
                old = state.get(m.name)
                if old is not None and not (old[0] == "dir" and m.isdir()):
                    drop(m.name)
                if m.isdir():
                    state[m.name] = ("dir", m.mode, m.uid, m.gid, b"")
                elif m.issym():
                    state[m.name] = ("symlink", m.mode, m.uid, m.gid, m.linkname)
                else:
                    fh = tar.extractfile(m)
                    assert fh is not None
                    state[m.name] = ("file", m.mode, m.uid, m.gid, fh.read())
    return state


def expected(app: AppTree) -> dict[str, tuple[str, int, int, int, bytes | str]]:
    """What the image must show for ``app``: every member, with its bytes."""
    out: dict[str, tuple[str, int, int, int, bytes | str]] = {}
    for name, line in app.tree.items():
        rec = Rec.parse(line)
        if rec.kind == "file":
            source = app.source(name)
            data = source if isinstance(source, bytes) else (app.root / source).read_bytes()
            out[name] = ("file", rec.mode, rec.uid, rec.gid, data)
        elif rec.kind == "symlink":
            out[name] = ("symlink", rec.mode, rec.uid, rec.gid, rec.digest)
        else:
            out[name] = ("dir", rec.mode, rec.uid, rec.gid, b"")
    return out


class Image:
    """An image's app layers as a build leaves them: the plans, each layer's bytes, and
    the label rows the next build reads (listings kept as append_app keeps them)."""

    def __init__(self, by_dir: bool = True) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.data: dict[str, bytes] = {}  # diff ID -> tar
        self.by_dir = by_dir  # compare by directory (as builds do), or member by member

    def previous(self) -> Previous | None:
        if not self.rows:
            return None
        bases = {}
        for role, key, _ in self.rows:
            found = source_index.load_listing(key)
            listed = parse_listing(found) if found is not None else None
            if listed is not None:
                bases[role] = listed
        lower = source_index.load_lower(source_layers._lower_key(self.rows)) if bases else None
        return Previous(tuple(self.rows), bases, lower if self.by_dir else None)

    def build(self, app: AppTree) -> tuple[LayerPlan, ...]:
        previous = self.previous()
        plans = plan_layers(app, previous)
        rows = []
        for plan in plans:
            if plan.named is not None:
                assert plan.named in self.data, "named a layer the image does not have"
                rows.append((plan.role, plan.key, plan.named))
                continue
            buf = io.BytesIO()
            diff_id = write_layer(app, plan.tree, buf)
            self.data[diff_id] = buf.getvalue()
            rows.append((plan.role, plan.key, diff_id))
        self.rows = rows
        source_layers.remember(plans, previous)
        assert apply([self.data[d] for _, _, d in rows]) == expected(app)
        return plans


def roles(plans: tuple[LayerPlan, ...]) -> list[tuple[str, bool]]:
    return [(p.role, p.named is not None) for p in plans]


# ----------------------------------------------------------------------------- the split


def test_is_asset_by_kind_and_size() -> None:
    assert not is_asset("app/views.py", 10) and not is_asset("templates/a.html", 10)
    assert not is_asset("Procfile", 10) and not is_asset(".flake8", 10)
    assert is_asset("media/a.mp4", 10) and is_asset("static/app.js", 10)
    assert is_asset("data/big.json", 2 * MB)  # big: an asset whatever its kind


def test_a_small_app_is_one_layer_made_again_on_every_change(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root, "wsgi.py", "application = None\n")
    write(root, "logo.png", b"x" * 1000)
    image = Image()
    assert roles(image.build(tree_of(root))) == [(CODE, False)]
    write(root, "wsgi.py", "application = 1\n")
    assert roles(image.build(tree_of(root))) == [(CODE, False)]


def test_first_build_splits_assets_from_code(tmp_path: Path) -> None:
    app = tree_of(project(tmp_path / "p"))
    (assets, code) = Image().build(app)
    assert (assets.role, code.role) == (ASSETS, CODE)
    src = "opt/app-root/src"
    asset_files = {n for n, line in assets.tree.items() if line.startswith("file")}
    assert asset_files == {f"{src}/media/a{i}.bin" for i in range(4)} | {f"{src}/static/logo.png"}
    assert f"{src}/app/m00.py" in code.tree and f"{src}/empty" in code.tree
    assert "opt/app-root/bin/warpdrive-start" in code.tree
    assert not asset_files & set(code.tree)


def test_code_change_sends_one_small_layer_over_named_ones(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    image = Image()
    first = image.build(tree_of(root))
    write(root, "app/m03.py", "X = 'changed'\n")
    plans = image.build(tree_of(root))
    assert roles(plans) == [(ASSETS, True), (CODE, True), (CODE_CHANGES, False)]
    assert [p.named for p in plans[:2]] == [image.rows[0][2], image.rows[1][2]]
    assert plans[0].key == first[0].key
    changed = {n for n, line in plans[2].tree.items() if not line.startswith("dir")}
    assert changed == {"opt/app-root/src/app/m03.py"}
    # the same code again: the same change layer, named
    write(root, "app/m03.py", "X = 'changed'\n")
    assert roles(image.build(tree_of(root))) == [(ASSETS, True), (CODE, True), (CODE_CHANGES, True)]


def test_edited_and_deleted_assets_are_asset_changes_under_the_code_changes(
    tmp_path: Path,
) -> None:
    root = project(tmp_path / "p")
    image = Image()
    image.build(tree_of(root))
    write(root, "app/m01.py", "X = 'one'\n")
    code_changes = image.build(tree_of(root))[-1]
    write(root, "media/a1.bin", b"edited" * 1000)
    (root / "media" / "a2.bin").unlink()
    plans = image.build(tree_of(root))
    # the code changes are the same layer, sent again: the layers below it changed
    assert roles(plans) == [
        (ASSETS, True),
        (CODE, True),
        (ASSET_CHANGES, False),
        (CODE_CHANGES, False),
    ]
    assert plans[3].key == code_changes.key
    members = set(plans[2].tree)
    assert "opt/app-root/src/media/a1.bin" in members
    assert "opt/app-root/src/media/.wh.a2.bin" in members
    assert not any("m01" in n for n in members)


def test_deletions_kind_changes_links_and_modes_are_exact(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    image = Image()
    image.build(tree_of(root))
    (root / "app" / "m05.py").unlink()  # a deleted file
    for p in sorted((root / "static").iterdir()):
        p.unlink()
    (root / "static").rmdir()  # a deleted directory (with an asset)
    (root / "empty").rmdir()
    write(root, "empty", "now a file\n")  # a directory that became a file
    (root / "wsgi.py").unlink()
    write(root, "wsgi.py/__init__.py", "application = None\n")  # a file that became one
    (root / "app" / "link.py").unlink()
    (root / "app" / "link.py").symlink_to("m01.py")  # another target
    (root / "run.sh").chmod(0o644)  # no longer executable
    write(root, "new/deep/x.py", "X = 1\n")
    image.build(tree_of(root))  # apply() checks the image's tree against the source


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("by_dir", [True, False])
def test_random_changes_always_give_the_source_tree(
    tmp_path: Path, seed: int, by_dir: bool
) -> None:
    rng = random.Random(seed)
    root = project(tmp_path / "p")
    image = Image(by_dir)
    image.build(tree_of(root))
    for _ in range(6):
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        for path in rng.sample(files, min(len(files), rng.randint(1, 4))):
            action = rng.choice(["edit", "delete", "grow", "exec"])
            if action == "edit":
                path.write_bytes(path.read_bytes() + b"\n#")
            elif action == "delete":
                path.unlink()
            elif action == "grow":
                path.write_bytes(os.urandom(rng.randint(1, 200_000)))
            else:
                path.chmod(0o755)
        write(root, f"added/{rng.randint(0, 5)}/f{rng.randint(0, 99)}.{rng.choice(['py', 'bin'])}")
        plans = image.build(tree_of(root))
        assert len(plans) <= 4


def test_changes_past_a_share_of_the_code_layer_make_it_again(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    image = Image()
    image.build(tree_of(root))
    for i in range(30):  # every code file changed: more than a quarter of the layer
        write(root, f"app/m{i:02d}.py", f"X = {i} * 2\n")
    plans = image.build(tree_of(root))
    assert roles(plans) == [(ASSETS, True), (CODE, False)]


def test_without_the_listings_the_layers_are_made_from_the_tree_and_named_if_same(
    tmp_path: Path,
) -> None:
    """Another machine (or an emptied cache) has no listings: its layers are made from
    the tree alone, the same bytes as on any clone, so unchanged ones are still named."""
    root = project(tmp_path / "p")
    image = Image()
    first = image.build(tree_of(root))
    for path in source_index.listings_dir().iterdir():
        path.unlink()
    write(root, "app/m03.py", "X = 'changed'\n")
    plans = image.build(tree_of(root))
    assert roles(plans) == [(ASSETS, True), (CODE, False)]
    assert plans[0].key == first[0].key
    # the named assets layer's listing is kept again: the next code change is small
    write(root, "app/m04.py", "X = 'changed too'\n")
    plans = image.build(tree_of(root))
    assert roles(plans) == [(ASSETS, True), (CODE, True), (CODE_CHANGES, False)]


def test_an_emptied_cache_with_nothing_changed_recovers_its_listings(tmp_path: Path) -> None:
    """Both layers named from the tree (nothing changed since the cache was emptied):
    their listings are kept again, so the first code change after is one small layer."""
    root = project(tmp_path / "p")
    image = Image()
    image.build(tree_of(root))
    for path in source_index.listings_dir().iterdir():
        path.unlink()
    assert roles(image.build(tree_of(root))) == [(ASSETS, True), (CODE, True)]
    write(root, "app/m03.py", "X = 'changed'\n")
    plans = image.build(tree_of(root))
    assert roles(plans) == [(ASSETS, True), (CODE, True), (CODE_CHANGES, False)]


def test_two_clones_make_the_same_layers(tmp_path: Path) -> None:
    a, b = project(tmp_path / "a"), project(tmp_path / "b")
    os.utime(b / "wsgi.py", (1e9, 1e9))
    (b / "app" / "m00.py").chmod(0o600)
    one, two = Image(), Image()
    assert [p.key for p in one.build(tree_of(a))] == [p.key for p in two.build(tree_of(b))]
    assert sorted(one.data) == sorted(two.data)


def test_a_damaged_listing_is_not_used(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    image = Image()
    image.build(tree_of(root))
    for path in source_index.listings_dir().iterdir():
        data = bytearray(path.read_bytes())
        data[-5] ^= 1
        path.write_bytes(bytes(data))
    assert all(source_index.load_listing(key) is None for _, key, _ in image.rows)
    write(root, "app/m03.py", "X = 'changed'\n")
    assert roles(image.build(tree_of(root))) == [(ASSETS, True), (CODE, False)]


def test_a_layer_is_written_as_tarfile_would_and_checked_against_its_listing(
    tmp_path: Path,
) -> None:
    root = project(tmp_path / "p")
    app = tree_of(root)
    buf = io.BytesIO()
    diff_id = write_layer(app, app.tree, buf)
    assert diff_id == "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        again = io.BytesIO()
        with tarfile.open(fileobj=again, mode="w", format=tarfile.PAX_FORMAT) as out:
            for m in tar:
                out.addfile(m, tar.extractfile(m) if m.isfile() else None)
    assert again.getvalue() == buf.getvalue()
    write(root, "app/m07.py", "X = 7\n".replace("7", "8"))  # same size, other bytes
    with pytest.raises(ContextError, match="changed while the app layer was being written"):
        write_layer(app, app.tree, io.BytesIO())


def test_the_tree_lines_are_what_rec_writes(tmp_path: Path) -> None:
    app = tree_of(project(tmp_path / "p"))
    for line in app.tree.values():
        assert Rec.parse(line).line() == line
    src = "opt/app-root/src"
    assert Rec.parse(app.tree[f"{src}/run.sh"])[:5] == ("file", 0o775, 1001, 0, 1)
    assert Rec.parse(app.tree[f"{src}/wsgi.py"])[:5] == ("file", 0o664, 1001, 0, 1)
    assert Rec.parse(app.tree[src])[:4] == ("dir", 0o2775, 1001, 0)
    assert Rec.parse(app.tree["opt/app-root/bin/warpdrive-start"])[:5] == ("file", 0o755, 0, 0, 0)


def test_an_assets_layer_stays_while_the_assets_weigh_half_the_threshold(tmp_path: Path) -> None:
    """An edit that makes the assets a little lighter than the threshold must not make
    every layer again (nor one that makes them a little heavier, back)."""
    root = project(tmp_path / "p")  # 400 KB of assets against a 64 KiB threshold
    image = Image()
    image.build(tree_of(root))
    for i in range(3):
        (root / "media" / f"a{i}.bin").unlink()
    write(root, "media/a3.bin", b"x" * 40_000)  # 40 KB (+ the logo): under 64 KiB
    plans = image.build(tree_of(root))
    assert [p.role for p in plans][:2] == [ASSETS, CODE] and plans[1].named is not None
    fresh = Image()  # a first build of the same tree: no assets layer
    assert roles(fresh.build(tree_of(root))) == [(CODE, False)]


def test_the_static_layer_goes_where_it_is_sent_least(tmp_path: Path) -> None:
    """Under a code layer made again on every change (a small app): a code change names
    it. Over a big code layer, under the change layers: a code change names it, and new
    static files send only the change layers again, never the code or the assets."""
    small = tmp_path / "small"
    write(small, "wsgi.py", "application = None\n")
    app = tree_of(small)
    plans = plan_layers(app, None, "sha256:static")
    assert [p.role for p in plans] == [layers.STATIC, CODE]
    rows = tuple((p.role, p.key, p.named or f"sha256:{i}") for i, p in enumerate(plans))
    again = plan_layers(app, Previous(rows, {}), "sha256:static")
    assert again[0].named == "sha256:0" and again[1].named == "sha256:1"

    root = project(tmp_path / "big")
    image = Image()
    image.build(tree_of(root))  # no static layer yet
    write(root, "app/m02.py", "X = 'two'\n")
    big = tree_of(root)
    previous = image.previous()
    plans = plan_layers(big, previous, "sha256:static")
    assert [p.role for p in plans] == [ASSETS, CODE, layers.STATIC, CODE_CHANGES]
    assert [p.named is not None for p in plans] == [True, True, False, False]
    rows = tuple((p.role, p.key, p.named or f"sha256:{p.role}") for p in plans)
    assert previous is not None
    with_static = Previous(rows, previous.bases)
    same = plan_layers(big, with_static, "sha256:static")
    assert all(p.named is not None for p in same)
    other = plan_layers(big, with_static, "sha256:other")
    assert [p.named is not None for p in other] == [True, True, False, False]


def test_the_label_counts_the_app_layers_only_when_it_matches_the_image() -> None:
    import dataclasses
    import json as json_module

    from unit_support import BASE

    rows = [["code", "k", "sha256:b"], ["code-changes", "k2", "sha256:c"]]
    labels = {source_layers.LAYERS_LABEL: json_module.dumps(rows)}
    info = dataclasses.replace(BASE, labels=labels, diff_ids=("sha256:a", "sha256:b", "sha256:c"))
    assert source_layers.app_layer_count(info) == 2
    moved = dataclasses.replace(info, diff_ids=("sha256:a", "sha256:c", "sha256:b"))
    assert source_layers.app_layer_count(moved) is None
    for bad in ("", "not json", "{}", "[[1, 2]]"):
        broken = dataclasses.replace(info, labels={source_layers.LAYERS_LABEL: bad})
        assert source_layers.app_layer_count(broken) is None
    assert source_layers.previous_layers(info, ("sha256:a",)) is not None
    assert source_layers.previous_layers(info, ("sha256:x",)) is None
