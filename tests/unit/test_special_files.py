"""FIFOs and sockets in the app source are left out, and one line names them (a tar of a
FIFO would hang; neither is app source)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from nox_warpdrive.build.app_layer import read_source, special_notice
from nox_warpdrive.source import forked
from nox_warpdrive.source.context import load_ignore_rules, walk_tree


def _tree(root: Path) -> None:
    (root / "app").mkdir(parents=True)
    (root / "app" / "wsgi.py").write_text("application = None\n")
    os.mkfifo(root / "app" / "pipe")
    os.mkfifo(root / "ignored-pipe")
    (root / ".dockerignore").write_text("ignored-pipe\n")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "app" / "server.sock"))


def test_the_walk_names_fifos_and_sockets_no_rule_excludes(tmp_path: Path) -> None:
    _tree(tmp_path)
    walked = walk_tree(tmp_path, load_ignore_rules(tmp_path))
    assert sorted(walked.special) == ["app/pipe", "app/server.sock"]
    assert not any(e.relpath.endswith(("pipe", ".sock")) for e in walked.entries)


def test_a_known_unchanged_directory_still_names_them(tmp_path: Path) -> None:
    _tree(tmp_path)
    rules = load_ignore_rules(tmp_path)
    first = walk_tree(tmp_path, rules)
    again = walk_tree(tmp_path, rules, dict(first.signatures))
    assert sorted(again.special) == ["app/pipe", "app/server.sock"]


def test_a_forked_walk_carries_them_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    monkeypatch.setattr(forked, "can_fork", lambda: True)  # other tests' threads aside
    for i in range(40):  # enough directories at one depth for a split
        (tmp_path / f"d{i:02}").mkdir()
        (tmp_path / f"d{i:02}" / "f.py").write_text("x = 1\n")
    os.mkfifo(tmp_path / "d07" / "pipe")
    walked = walk_tree(tmp_path, load_ignore_rules(tmp_path))
    assert walked.special == ["d07/pipe"]


def test_the_build_says_them_in_one_line(tmp_path: Path) -> None:
    _tree(tmp_path)
    source = read_source(tmp_path)
    lines = [n for n in source.notices if "FIFOs, sockets" in n]
    assert len(lines) == 1
    assert "app/pipe" in lines[0] and "app/server.sock" in lines[0]
    assert "ignored-pipe" not in lines[0]


def test_many_are_counted_not_listed() -> None:
    (line,) = special_notice([f"p{i}" for i in range(8)])
    assert "p0, p1, p2, p3, p4 and 3 more" in line
    assert special_notice([]) == ()
