"""The stat pass shared with a forked child (forked.py, context.walk_tree): the same
answer as one process's walk, in the same order, errors included; and every way the
child can fail leaves the work done here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from unit_support import write

from nox_warpdrive.errors import ContextError
from nox_warpdrive.source import context, forked
from nox_warpdrive.source.context import Walked, load_ignore_rules, parse_dockerignore, walk_tree

needs_fork = pytest.mark.skipif(not forked.can_fork(), reason="one CPU, or no fork here")


def square(n: int) -> int:
    return n * n


@needs_fork
def test_share_keeps_the_order_and_the_parents_errors() -> None:
    assert forked.share(list(range(9)), square, lambda r: r, int) == [n * n for n in range(9)]

    def boom(n: int) -> int:
        if n == 4:
            raise ValueError("here")
        return n

    with pytest.raises(ValueError, match="here"):
        forked.share(list(range(9)), boom, lambda r: r, int)


@needs_fork
def test_a_child_that_fails_leaves_its_jobs_to_the_parent() -> None:
    parent = os.getpid()

    def child_fails(n: int) -> int:
        if os.getpid() != parent:
            raise RuntimeError("in the child")
        return n + 1

    assert forked.share(list(range(5)), child_fails, lambda r: r, int) == [1, 2, 3, 4, 5]
    unreadable = forked.share(list(range(5)), square, lambda r: object(), int)
    assert unreadable == [0, 1, 4, 9, 16]  # what the child sent could not be marshalled


def tree(root: Path) -> Path:
    for i in range(40):
        write(root, f"pkg/d{i:02d}/m.py", f"X = {i}\n")
        write(root, f"pkg/d{i:02d}/data.bin", bytes([i]) * 10)
    write(root, "pkg/d03/.env", "SECRET=1\n")
    write(root, "pkg/d05/__pycache__/m.cpython-311.pyc", "x")
    write(root, "pkg/d07/keep/x.txt", "x")
    write(root, "pkg/d07/skip/y.txt", "y")
    (root / "pkg" / "d09" / "link").symlink_to("m.py")
    (root / "pkg" / "d11" / "empty").mkdir()
    write(root, "wsgi.py", "application = None\n")
    return root


def walked(root: Path, monkeypatch: pytest.MonkeyPatch, share: bool, extra: str = "") -> Walked:
    rules = load_ignore_rules(root)
    if extra:
        rules = context.IgnoreRules(rules.patterns + parse_dockerignore(extra).patterns)
    monkeypatch.setattr(context, "_SPLIT_DIRS", 8)
    monkeypatch.setattr(forked, "can_fork", (lambda: True) if share else (lambda: False))
    return walk_tree(root, rules)


@needs_fork
@pytest.mark.parametrize("extra", ["", "pkg/d07/skip\n", "pkg/d1*\n!pkg/d12/m.py\n"])
def test_a_shared_walk_is_one_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str
) -> None:
    root = tree(tmp_path / "p")
    one, two = walked(root, monkeypatch, False, extra), walked(root, monkeypatch, True, extra)
    assert one.entries == two.entries
    assert list(one.children.items()) == list(two.children.items())
    assert list(one.signatures.items()) == list(two.signatures.items())
    assert sorted(one.dotenv) == sorted(two.dotenv) and one.newest == two.newest
    assert [e.relpath for e in two.entries] == [
        e.relpath
        for e in context.collect(
            root,
            context.IgnoreRules(
                load_ignore_rules(root).patterns + parse_dockerignore(extra).patterns
            ),
        )
    ]


@needs_fork
def test_a_refusal_in_a_shared_subtree_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(tmp_path / "p")
    (root / "pkg" / "d13" / "m.py").chmod(0o200)
    for share in (False, True):
        with pytest.raises(ContextError, match=r"pkg/d13/m\.py is not readable by its owner"):
            walked(root, monkeypatch, share)
