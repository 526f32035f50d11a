"""Files that change while the build reads them (steady.py): read again, or held as one
consistent read with a warning, or left out when gone; never a failed build. The layer
holds what was hashed, and the source index trusts none of it later."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from unit_support import write

from nox_warpdrive.build import app_layer
from nox_warpdrive.errors import ContextError
from nox_warpdrive.source import index as source_index
from nox_warpdrive.source import steady
from nox_warpdrive.source.image_layers import layer_bytes, write_layer
from nox_warpdrive.source.steady import Hashed, Reads


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Writer:
    """A sleep that writes to a file while the reader waits (a log being written)."""

    def __init__(self, path: Path, times: int = 1000, delete_at: int | None = None) -> None:
        self.path, self.times, self.delete_at, self.calls = path, times, delete_at, 0

    def __call__(self, seconds: float) -> None:
        self.calls += 1
        if self.delete_at == self.calls:
            self.path.unlink()
        elif self.calls <= self.times:
            with self.path.open("a") as fh:
                fh.write(f"line {self.calls}\n")


def test_a_steady_file_is_streamed_and_nothing_held(tmp_path: Path) -> None:
    write(tmp_path, "a.py", "print(1)\n")
    reads = Reads(tmp_path, sleep=Writer(tmp_path / "a.py"))
    assert reads.hash_file("a.py", 9) == Hashed(sha(b"print(1)\n"), 9)
    assert reads.held == {} and reads.notices == []


def test_a_file_changed_since_the_walk_is_read_again_until_it_settles(tmp_path: Path) -> None:
    write(tmp_path, "build.log", "one\ntwo\n")
    reads = Reads(tmp_path, sleep=Writer(tmp_path / "build.log", times=0))
    hashed = reads.hash_file("build.log", 4)  # the walk saw "one\n"
    assert hashed == Hashed(sha(b"one\ntwo\n"), 8, steady=False, held=b"one\ntwo\n")
    assert reads.held == {"build.log": b"one\ntwo\n"}
    assert reads.notices == []  # it stood still: nothing to say


def test_a_file_that_keeps_changing_is_held_as_one_read_with_a_warning(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "build.log"
    write(tmp_path, "logs/build.log", "start\n")
    writer = Writer(log)
    reads = Reads(tmp_path, sleep=writer)
    hashed = reads.hash_file("logs/build.log", 3)  # the walk saw less
    assert hashed is not None and not hashed.steady and hashed.held is not None
    assert writer.calls == steady.TRIES
    assert hashed.held.startswith(b"start\nline 1\n") and len(hashed.held) == hashed.size
    assert hashed.digest == sha(hashed.held)
    assert reads.held == {"logs/build.log": hashed.held}
    (notice,) = reads.notices
    assert "logs/build.log kept changing while the app source was read" in notice
    assert "add 'logs/build.log' to .dockerignore" in notice


def test_a_deleted_file_is_left_out_with_a_warning(tmp_path: Path) -> None:
    reads = Reads(tmp_path)
    assert reads.hash_file("gone.txt", 3) is None
    (notice,) = reads.notices
    assert "gone.txt was deleted" in notice and "left out" in notice
    write(tmp_path, "nohup.out", "x\n")
    reads = Reads(tmp_path, sleep=Writer(tmp_path / "nohup.out", delete_at=2))
    assert reads.hash_file("nohup.out", 1) is None  # deleted while read again
    assert "nohup.out was deleted" in reads.notices[0]


def test_a_file_replaced_by_a_link_is_left_out(tmp_path: Path) -> None:
    write(tmp_path, "target.txt", "secret\n")
    os.symlink("target.txt", tmp_path / "swapped")
    reads = Reads(tmp_path)
    assert reads.hash_file("swapped", 7) is None
    assert "swapped was deleted (or replaced" in reads.notices[0]


def grow_after_walk(monkeypatch: pytest.MonkeyPatch, path: Path, text: str) -> None:
    """The walk of read_source sees ``path`` as it is; it grows right after."""
    real = app_layer.walk_tree

    def walk(*args: object, **kwargs: object) -> object:
        found = real(*args, **kwargs)  # type: ignore[arg-type]
        with path.open("a") as fh:
            fh.write(text)
        return found

    monkeypatch.setattr(app_layer, "walk_tree", walk)


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar
            if m.isfile()
        }


@pytest.fixture(autouse=True)
def private_index(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_the_layer_holds_the_read_and_the_index_trusts_none_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "p"
    write(root, "wsgi.py", "application = None\n")
    write(root, "build.log", "nox > Running session image\n")
    grow_after_walk(monkeypatch, root / "build.log", "warpdrive: reading the source\n")
    source = app_layer.read_source(root)
    source_index.flush()
    name = "opt/app-root/src/build.log"
    line = source.members.tree[name]
    read = b"nox > Running session image\nwarpdrive: reading the source\n"
    assert line.endswith(f"{sha(read)}\0{len(read)}")  # what went into the layer
    assert source.held == {"build.log": read}
    # the build writes more before the layer is made: the layer holds the read
    (root / "build.log").write_bytes(read + b"warpdrive: app layer\n")
    tree = app_layer.source_tree(source, b"#!launcher\n", {}, b"{}")
    assert members(layer_bytes(tree))[name] == read
    # the index keeps no digest of it: the next build reads it again
    index = source_index.load(root, ("opt/app-root/src", 1), app_layer.load_ignore_rules(root))
    assert index[""].signature.startswith(source_index.RACY)
    kept = dict(zip(index[""].names.split("\n"), index[""].lines.split("\n"), strict=True))
    assert kept[name].split("\0")[5] == ""


def test_a_file_that_grew_after_it_was_hashed_gives_the_layer_its_first_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "p"
    write(root, "wsgi.py", "application = None\n")
    write(root, "nohup.out", "first\n")
    source = app_layer.read_source(root)
    assert source.held == {}
    with (root / "nohup.out").open("a") as fh:
        fh.write("second\n")  # appended, as a log is
    tree = app_layer.source_tree(source, b"#!launcher\n", {}, b"{}")
    assert members(layer_bytes(tree))["opt/app-root/src/nohup.out"] == b"first\n"
    assert tree.grown == ["nohup.out"]
    # but a file rewritten since (not what was hashed) still stops the layer
    (root / "nohup.out").write_text("FIRST\nsecond\n")
    with pytest.raises(ContextError, match="changed while the app layer was being written"):
        write_layer(tree, tree.tree, io.BytesIO())


def test_the_plan_says_which_files_grew(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root, "wsgi.py", "application = None\n")
    write(root, "build.log", "a\n")
    source = app_layer.read_source(root)
    tree = app_layer.source_tree(source, b"#!launcher\n", {}, b"{}")
    tree.grown.append("build.log")
    plan = app_layer.AppPlan(
        "key",
        None,
        1,
        None,
        False,
        "",
        b"",
        None,
        make_tree=lambda: tree,  # type: ignore[arg-type]
    )
    assert plan.grown_notices() == []  # the tree was never made: nothing read again
    assert plan.tree is tree
    (notice,) = plan.grown_notices()
    assert "build.log grew while the app layers were made" in notice
    assert "add 'build.log' to .dockerignore" in notice


def test_the_build_s_own_output_is_named(tmp_path: Path) -> None:
    """`nox -s image > build.log 2>&1` in the project: build.log is this process's
    output, and the source says so even when it never changed while read."""
    root = tmp_path / "p"
    write(root, "wsgi.py", "application = None\n")
    write(root, "logs/build.log", "")
    code = (
        "import sys\nfrom pathlib import Path\nfrom nox_warpdrive.build import app_layer\n"
        "source = app_layer.read_source(Path(sys.argv[1]))\n"
        "print('|'.join(source.notices), file=sys.stderr)\n"
    )
    with (root / "logs" / "build.log").open("w") as out:
        subprocess.run(
            [sys.executable, "-c", code, str(root)],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        )
    said = (root / "logs" / "build.log").read_text()
    assert "logs/build.log is where this build's output goes" in said
    assert "add 'logs/build.log' to .dockerignore" in said
    assert steady.own_output(root) == []  # not ours here
