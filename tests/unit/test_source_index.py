"""The host's index of the app source (source/index.py): unchanged files are not read
again, and nothing in it is trusted that could be wrong (racily clean files, damaged or
foreign indexes, a file replaced by another with the same size and times)."""

from __future__ import annotations

import functools
import hashlib
import os
import time
from pathlib import Path

import pytest
from unit_support import write

from nox_warpdrive.build import app_layer
from nox_warpdrive.build.app_layer import read_source
from nox_warpdrive.source import index as source_index
from nox_warpdrive.source.archive import file_sha256
from nox_warpdrive.source.context import (
    Entry,
    IgnoreRules,
    Walked,
    large_files,
    load_ignore_rules,
    walk_tree,
)
from nox_warpdrive.source.image_layers import app_tree, app_tree_of
from nox_warpdrive.source.steady import Hashed

WHERE = ("opt/app-root/src", 1)


def members(
    root: Path,
    hashed: list[str] | None = None,
    later: int = 60,
    walks: list[Walked] | None = None,
) -> source_index.SourceTree:
    """The source's members, the walk told the index's signatures (as a build's);
    ``later``: the filesystem's clock has moved on this many seconds past the newest
    change (the test's files were all written in one second); ``walks``: gets the walk."""
    rules = load_ignore_rules(root)
    old = source_index.load(root, WHERE, rules)
    walked = walk_tree(root, rules, {name: d.signature for name, d in old.items()})
    if walks is not None:
        walks.append(walked)
    walked.newest[0] += later

    def hash_file(entry: Entry) -> Hashed:
        if hashed is not None:
            hashed.append(entry.relpath)
        return Hashed(file_sha256(root, entry.relpath, entry.size), entry.size)

    found = source_index.source_tree(root, walked, WHERE, hash_file, rules, old)
    source_index.flush()  # the index is written while a build goes on
    return found


def digests(root: Path, hashed: list[str] | None = None, later: int = 60) -> dict[str, str]:
    """relpath -> sha256, as the members say."""
    cut = len(WHERE[0]) + 1
    tree = members(root, hashed, later).tree
    return {n[cut:]: line.split("\0")[5] for n, line in tree.items() if line.startswith("file")}


def age(root: Path, seconds: float = 60) -> None:
    """Every file last changed a while ago (not racily clean)."""
    then = time.time() - seconds
    for path in root.rglob("*"):
        os.utime(path, (then, then), follow_symlinks=False)


def real(root: Path, relpath: str) -> str:
    return hashlib.sha256((root / relpath).read_bytes()).hexdigest()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    for i in range(5):
        write(root, f"pkg/m{i}.py", f"X = {i}\n")
    write(root, "wsgi.py", "application = None\n")
    return root


def test_unchanged_files_are_not_read_again(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first: list[str] = []
    found = digests(tree, first)
    assert sorted(first) == sorted(found) and found["wsgi.py"] == real(tree, "wsgi.py")
    # a ctime can only be "now": make the files old by moving the clock forward
    monkeypatch.setattr(time, "time", lambda: os.stat(tree / "wsgi.py").st_ctime + 60)
    again: list[str] = []
    digests(tree, again)  # hashed again: racily clean when first hashed
    third: list[str] = []
    assert digests(tree, third) == found and third == []


def test_a_changed_file_is_read_again(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digests(tree)
    monkeypatch.setattr(time, "time", lambda: os.stat(tree / "wsgi.py").st_ctime + 60)
    digests(tree)
    write(tree, "wsgi.py", "application = 1\n")
    monkeypatch.setattr(time, "time", lambda: os.stat(tree / "wsgi.py").st_ctime + 60)
    hashed: list[str] = []
    found = digests(tree, hashed)
    assert hashed == ["wsgi.py"] and found["wsgi.py"] == real(tree, "wsgi.py")


def test_a_racily_clean_file_is_hashed_again(tree: Path) -> None:
    """Changed in the same second it was hashed, with the same size and mtime: only a
    new hash tells (git's "racily clean")."""
    digests(tree)
    index = source_index.load(tree, WHERE, load_ignore_rules(tree))
    assert index[""].signature.startswith(source_index.RACY)
    st = os.stat(tree / "wsgi.py")
    (tree / "wsgi.py").write_text("application = 2\n")  # the same size
    os.utime(tree / "wsgi.py", ns=(st.st_atime_ns, st.st_mtime_ns))
    hashed: list[str] = []
    found = digests(tree, hashed)
    assert "wsgi.py" in hashed and found["wsgi.py"] == real(tree, "wsgi.py")


def test_the_newest_files_are_racily_clean_whatever_the_hosts_clock(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The filesystem's clock (a network filesystem's) may be behind this host's: the
    files changed as late as the newest change in the tree are hashed again."""
    monkeypatch.setattr(time, "time", lambda: os.stat(tree / "wsgi.py").st_ctime + 60)
    everything = sorted(digests(tree, later=0))
    hashed: list[str] = []
    digests(tree, hashed, later=0)  # as late as the newest change: hashed again
    assert sorted(hashed) == everything
    hashed.clear()
    digests(tree, hashed, later=1)  # the filesystem's clock had moved on: trusted after
    assert sorted(hashed) == everything
    hashed.clear()
    digests(tree, hashed, later=1)
    assert hashed == []


def test_same_size_and_times_but_another_file_is_hashed_again(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests(tree)
    monkeypatch.setattr(time, "time", lambda: os.stat(tree / "wsgi.py").st_ctime + 60)
    digests(tree)
    st = os.stat(tree / "wsgi.py")
    other = tree / "other"
    other.write_text("application = 3\n")  # an editor's save: a new file renamed over
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    other.replace(tree / "wsgi.py")
    hashed: list[str] = []
    found = digests(tree, hashed)
    assert hashed == ["wsgi.py"] and found["wsgi.py"] == real(tree, "wsgi.py")


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-10],  # cut short
        lambda data: data.replace(b"source index 4", b"source index 9", 1),  # a format
        lambda data: data[:-3] + bytes([data[-3] ^ 1]) + data[-2:],  # body changed
        lambda data: b"not an index",
        lambda data: b"",
    ],
)
def test_a_damaged_index_is_ignored(
    tree: Path, damage: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: os.stat(tree / "wsgi.py").st_ctime + 60)
    digests(tree)
    path = source_index.index_path(tree)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    assert source_index.load(tree, WHERE, load_ignore_rules(tree)) == {}
    hashed: list[str] = []
    found = digests(tree, hashed)
    assert len(hashed) == 6 and found["pkg/m0.py"] == real(tree, "pkg/m0.py")


def test_another_projects_index_is_ignored(tmp_path: Path, tree: Path) -> None:
    digests(tree)
    other = tmp_path / "other"
    write(other, "wsgi.py", "application = None\n")
    source_index.index_path(other).parent.mkdir(parents=True, exist_ok=True)
    source_index.index_path(other).write_bytes(source_index.index_path(tree).read_bytes())
    assert source_index.load(other, WHERE, load_ignore_rules(other)) == {}
    assert source_index.load(tree, WHERE, load_ignore_rules(tree)) != {}
    another_epoch = (WHERE[0], 2)
    assert source_index.load(tree, another_epoch, load_ignore_rules(tree)) == {}


def test_the_index_lives_in_the_cache_not_in_the_project(tree: Path) -> None:
    before = sorted(p.name for p in tree.rglob("*"))
    digests(tree)
    assert sorted(p.name for p in tree.rglob("*")) == before
    assert source_index.index_path(tree).is_relative_to(source_index.cache_dir())


def test_the_members_from_the_index_are_those_made_from_the_files(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tree, "run.sh", "#!/bin/sh\n", mode=0o755)
    write(tree, "media/logo.png", b"\x89PNG" * 1000)
    (tree / "pkg" / "link.py").symlink_to("m0.py")
    (tree / "empty").mkdir()
    entries = walk_tree(tree, load_ignore_rules(tree)).entries
    files = {e.relpath: real(tree, e.relpath) for e in entries if e.kind == "file"}
    want = app_tree(tree, entries, files, {})
    first = members(tree)
    monkeypatch.setattr(time, "time", lambda: os.stat(tree / "wsgi.py").st_ctime + 60)
    members(tree)
    hashed: list[str] = []
    again = members(tree, hashed)  # every directory from the index
    assert hashed == []
    for found in (first, again):
        got = app_tree_of(tree, found, {})
        assert (got.tree, got.assets, got.asset_bytes) == (want.tree, want.assets, want.asset_bytes)
    assert first.digest == again.digest
    write(tree, "pkg/m1.py", "X = 'other'\n")
    assert members(tree).digest != first.digest


def test_only_the_changed_directory_is_looked_at_again(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: os.stat(tree / "wsgi.py").st_ctime + 60)
    members(tree)
    write(tree, "pkg/m3.py", "X = 33\n")
    monkeypatch.setattr(time, "time", lambda: os.stat(tree / "pkg" / "m3.py").st_ctime + 60)
    hashed: list[str] = []
    found = members(tree, hashed)
    assert hashed == ["pkg/m3.py"]
    assert found.tree["opt/app-root/src/pkg/m3.py"].split("\0")[5] == real(tree, "pkg/m3.py")


def test_names_with_newlines_are_never_taken_from_the_index(tree: Path) -> None:
    write(tree, "odd\nname.py", "X = 1\n")
    first = members(tree)
    assert "opt/app-root/src/odd\nname.py" in first.tree
    hashed: list[str] = []
    assert members(tree, hashed).tree == first.tree
    assert "odd\nname.py" in hashed  # its directory is hashed again, every time


def test_the_source_digest_tracks_the_tree(tree: Path) -> None:
    first = read_source(tree).digest
    assert read_source(tree).digest == first
    (tree / "pkg" / "m0.py").chmod(0o755)
    assert read_source(tree).digest != first


def settled(tree: Path, monkeypatch: pytest.MonkeyPatch) -> source_index.SourceTree:
    """The members once the index has every directory (nothing racily clean)."""
    monkeypatch.setattr(time, "time", lambda: os.stat(tree / "wsgi.py").st_ctime + 60)
    members(tree)
    return members(tree)


def test_a_walk_makes_nothing_of_the_files_of_an_unchanged_directory(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tree, "pkg/sub/deep.py", "X = 'deep'\n")
    settled(tree, monkeypatch)
    write(tree, "wsgi.py", "application = 'changed'\n")
    walks: list[Walked] = []
    found = members(tree, walks=walks)
    walked = walks[0]
    assert list(walked.children) == [""]  # the one directory that changed
    assert [e.relpath for e in walked.entries] == ["pkg", "pkg/sub", "wsgi.py"]
    assert list(walked.signatures) == ["", "pkg", "pkg/sub"]
    full = walk_tree(tree, load_ignore_rules(tree))  # told nothing: every entry
    files = {e.relpath: real(tree, e.relpath) for e in full.entries if e.kind == "file"}
    assert app_tree_of(tree, found, {}).tree == app_tree(tree, full.entries, files, {}).tree


@pytest.mark.parametrize("change", ["edit", "delete", "add", "chmod", "replaced"])
def test_a_change_deep_in_a_big_tree_is_exactly_in_the_members(
    tree: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    for i in range(30):
        write(tree, f"lib/d{i:02d}/m.py", f"X = {i}\n")
    settled(tree, monkeypatch)
    path = tree / "lib" / "d17" / "m.py"
    st = path.stat()
    if change == "edit":
        path.write_text("X = 'edited'\n")
    elif change == "delete":
        path.unlink()
    elif change == "add":
        write(tree, "lib/d17/new.py", "Y = 1\n")
    elif change == "chmod":
        path.chmod(0o755)
    else:  # an editor's save: another file of the same size and times renamed over it
        other = tree / "lib" / "d17" / "tmp"
        other.write_text("X = 99\n")
        os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
        other.replace(path)
    found = members(tree, later=0).tree  # as late as the change: nothing trusted there
    full = walk_tree(tree, load_ignore_rules(tree))
    files = {e.relpath: real(tree, e.relpath) for e in full.entries if e.kind == "file"}
    assert app_tree_of(tree, members(tree), {}).tree == app_tree(tree, full.entries, files, {}).tree
    assert found == members(tree).tree


def test_an_index_made_with_other_ignore_rules_is_ignored(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled(tree, monkeypatch)
    assert source_index.load(tree, WHERE, load_ignore_rules(tree)) != {}
    other = IgnoreRules((*load_ignore_rules(tree).patterns, (False, "pkg/m1.py")))
    assert source_index.load(tree, WHERE, other) == {}
    write(tree, ".dockerignore", "pkg/m1.py\n")
    assert "opt/app-root/src/pkg/m1.py" not in members(tree).tree


def test_notices_come_from_unchanged_directories_too(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tree, "pkg/.env", "SECRET=1\n")
    monkeypatch.setattr(source_index, "LARGE_FILE_BYTES", 1000)  # "large" from 1000 bytes
    monkeypatch.setattr(app_layer, "large_files", functools.partial(large_files, limit=1000))
    write(tree, "pkg/big.bin", b"x" * 2000)
    monkeypatch.setattr(time, "time", lambda: os.stat(tree / "wsgi.py").st_ctime + 60)
    first = read_source(tree).notices
    write(tree, "wsgi.py", "application = 'changed'\n")
    again = read_source(tree).notices
    assert first == again and len(again) == 2
    assert "left out pkg/.env" in again[0] and "pkg/big.bin" in again[1]
