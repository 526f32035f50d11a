"""The app-source archive: Docker-compatible ignore rules, a safe walk, deterministic tar."""

from __future__ import annotations

import io
import os
import socket
import stat
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from unit_support import write

import nox_warpdrive.context as context_module
from nox_warpdrive.context import (
    DEFAULT_EXCLUDES,
    Entry,
    IgnoreRules,
    build_tar,
    collect,
    context_digest,
    is_excluded,
    load_ignore_rules,
    parse_dockerignore,
)
from nox_warpdrive.errors import ContextError

# ----------------------------------------------------------------------------- helpers


def rules(*lines: str) -> IgnoreRules:
    return parse_dockerignore("\n".join(lines))


def relpaths(root: Path, ignore: IgnoreRules | None = None) -> list[str]:
    return [entry.relpath for entry in collect(root, ignore or load_ignore_rules(root))]


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {member.name: member for member in tar.getmembers()}


def member_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def read_member(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


def make_app(root: Path) -> Path:
    """A small app tree with the usual clutter next to it."""
    write(root, "app/__init__.py", "")
    write(root, "app/views.py", "def index(): ...\n", mode=0o644)
    write(root, "manage.py", "#!/usr/bin/env python\n", mode=0o755)
    write(root, "static/css/site.css", "body{}\n")
    (root / "media").mkdir()
    write(root, "app/__pycache__/views.cpython-311.pyc", b"\0\1")
    write(root, ".git/HEAD", "ref: refs/heads/main\n")
    write(root, ".venv/bin/python", "")
    return root


# ----------------------------------------------------------------------------- parsing


class TestParseDockerignore:
    def test_comments_blank_lines_and_whitespace(self) -> None:
        text = "# a comment\n\n   \n  foo  \n\tbar/baz\t\n"
        assert parse_dockerignore(text).patterns == ((False, "foo"), (False, "bar/baz"))

    def test_only_column_one_hash_is_a_comment(self) -> None:
        # Docker checks for "#" before trimming, so an indented "#" is a pattern.
        assert parse_dockerignore("  #notes").patterns == ((False, "#notes"),)

    def test_negation_with_and_without_space(self) -> None:
        assert rules("!keep", "! /also").patterns == ((True, "keep"), (True, "also"))

    def test_patterns_are_cleaned_and_leading_slash_dropped(self) -> None:
        assert rules("/a/./b/../c//", "//x", "./y/").patterns == (
            (False, "a/c"),
            (False, "x"),
            (False, "y"),
        )

    def test_bom_and_crlf(self) -> None:
        assert parse_dockerignore("\ufefffoo\r\n!bar\r\n").patterns == (
            (False, "foo"),
            (True, "bar"),
        )

    def test_bare_bang_is_refused_with_line_number(self) -> None:
        with pytest.raises(ContextError) as info:
            parse_dockerignore("ok\n!\n")
        assert "line 2" in info.value.message
        assert info.value.fix is not None and "line 2" in info.value.fix

    @pytest.mark.parametrize("bad", ["[abc", "a\\", "[]", "[a-]", "[z-a]"])
    def test_invalid_pattern_is_refused(self, bad: str) -> None:
        with pytest.raises(ContextError) as info:
            parse_dockerignore(f"# header\n{bad}\n")
        assert "line 2" in info.value.message
        assert info.value.fix is not None

    def test_hand_built_rules_are_validated(self) -> None:
        with pytest.raises(ContextError, match="invalid"):
            IgnoreRules(((False, "[oops"),))


# ----------------------------------------------------------------------------- matching


class TestIsExcluded:
    @pytest.mark.parametrize(
        ("lines", "excluded", "kept"),
        [
            pytest.param(
                ["foo"], ["foo"], ["a/foo", "foobar"], id="plain_name_is_anchored_at_the_root"
            ),
            pytest.param(
                ["build"],
                ["build/lib/x.py"],
                ["builder/x.py"],
                id="matching_directory_excludes_everything_below",
            ),
            pytest.param(
                ["[ab].txt", "n[0-9]", "[^x]y", "[\\]]z"],
                ["a.txt", "n7", "ay", "]z"],
                ["c.txt", "nx", "xy"],
                id="character_classes",
            ),
            pytest.param(["\\*.txt"], ["*.txt"], ["a.txt"], id="backslash_escapes_a_wildcard"),
            pytest.param(
                ["a+b(c).txt"],
                ["a+b(c).txt"],
                ["aab(c)xtxt"],
                id="regexp_metacharacters_are_literal",
            ),
            pytest.param(
                ["**/*.pyc"],
                ["x.pyc", "a/b/c/x.pyc"],
                ["a/x.py"],
                id="double_star_matches_any_depth_including_none",
            ),
            pytest.param(["a/**/z"], ["a/z", "a/b/c/z"], ["a/bz"], id="double_star_in_the_middle"),
            pytest.param(
                ["a/**"],
                ["a/b", "a/b/c"],
                ["a"],
                id="trailing_double_star_excludes_contents_not_the_dir",
            ),
            # Docker's fast path: "**foo" is a plain suffix test.
            pytest.param(
                ["**foo"],
                ["d/xfoo"],
                [],
                id="leading_double_star_without_slash_is_a_suffix_match",
            ),
            pytest.param(
                ["*.md", "!README*.md", "README-secret.md"],
                ["CHANGES.md", "README-secret.md"],
                ["README.md"],
                id="last_matching_rule_wins",
            ),
            pytest.param(
                ["docs", "!docs/index.md"],
                ["docs/other.md", "docs"],
                ["docs/index.md"],
                id="negation_reincludes_inside_an_excluded_directory",
            ),
            pytest.param(
                ["!docs/index.md", "docs"],
                ["docs/index.md"],
                [],
                id="exclusion_of_a_parent_after_a_negation_wins",
            ),
        ],
    )
    def test_rules(self, lines: list[str], excluded: list[str], kept: list[str]) -> None:
        r = rules(*lines)
        for path in excluded:
            assert is_excluded(r, path), path
        for path in kept:
            assert not is_excluded(r, path), path

    def test_star_does_not_cross_directories(self) -> None:
        r = rules("*.log")
        assert is_excluded(r, "x.log")
        assert not is_excluded(r, "logs/x.log")
        assert is_excluded(rules("*/*.log"), "logs/x.log")

    def test_question_mark(self) -> None:
        r = rules("file?.txt")
        assert is_excluded(r, "file1.txt")
        assert not is_excluded(r, "file10.txt")
        assert not is_excluded(rules("a?b"), "a/b")

    def test_relpath_is_cleaned_and_root_never_excluded(self) -> None:
        assert is_excluded(rules("a/b"), "./a//b")
        assert not is_excluded(rules("**"), ".")


# ----------------------------------------------------------------------------- loading


class TestLoadIgnoreRules:
    def test_defaults_without_a_dockerignore(self, tmp_path: Path) -> None:
        loaded = load_ignore_rules(tmp_path)
        assert loaded.patterns == tuple((False, p) for p in DEFAULT_EXCLUDES)
        for path in (".git/HEAD", "a/b/__pycache__/m.pyc", ".venv/bin/python", "x/y.pyc"):
            assert is_excluded(loaded, path), path
        assert is_excluded(loaded, "frontend/node_modules/react/index.js")
        assert not is_excluded(loaded, "pkg/venv/module.py")  # only the root venv

    def test_order_is_defaults_then_file_then_extra(self, tmp_path: Path) -> None:
        write(tmp_path, ".dockerignore", "secrets\n")
        loaded = load_ignore_rules(tmp_path, extra=["!secrets/public.pem", "/tmp"])
        assert loaded.patterns[: len(DEFAULT_EXCLUDES)] == tuple(
            (False, p) for p in DEFAULT_EXCLUDES
        )
        assert loaded.patterns[len(DEFAULT_EXCLUDES) :] == (
            (False, "secrets"),
            (True, "secrets/public.pem"),
            (False, "tmp"),
        )

    def test_dockerignore_can_reinclude_a_default(self, tmp_path: Path) -> None:
        write(tmp_path, ".dockerignore", "!.venv\n")
        loaded = load_ignore_rules(tmp_path)
        assert not is_excluded(loaded, ".venv/bin/python")
        assert is_excluded(loaded, ".git/HEAD")

    def test_bad_line_names_the_file(self, tmp_path: Path) -> None:
        write(tmp_path, ".dockerignore", "ok\n[broken\n")
        with pytest.raises(ContextError) as info:
            load_ignore_rules(tmp_path)
        assert str(tmp_path / ".dockerignore") in info.value.message
        assert "line 2" in info.value.message

    def test_bad_extra_pattern(self, tmp_path: Path) -> None:
        with pytest.raises(ContextError, match="extra ignore pattern"):
            load_ignore_rules(tmp_path, extra=["!"])

    def test_unreadable_dockerignore(self, tmp_path: Path) -> None:
        (tmp_path / ".dockerignore").mkdir()
        with pytest.raises(ContextError) as info:
            load_ignore_rules(tmp_path)
        assert info.value.fix is not None

    def test_non_utf8_dockerignore(self, tmp_path: Path) -> None:
        write(tmp_path, ".dockerignore", b"caf\xe9\n")
        with pytest.raises(ContextError, match="UTF-8"):
            load_ignore_rules(tmp_path)


# ----------------------------------------------------------------------------- walking


class TestCollect:
    def test_defaults_are_excluded_and_order_is_tree_order(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        write(tmp_path, "app/sub/__pycache__/x.pyc", b"")
        write(tmp_path, "app/stray.pyc", b"")
        write(tmp_path, "app-extra.txt")
        assert relpaths(tmp_path) == [
            "app",
            "app/__init__.py",
            "app/sub",
            "app/views.py",
            "app-extra.txt",
            "manage.py",
            "media",
            "static",
            "static/css",
            "static/css/site.css",
        ]

    def test_entry_fields(self, tmp_path: Path) -> None:
        write(tmp_path, "run.sh", "echo hi\n", mode=0o750)
        (tmp_path / "d").mkdir(mode=0o700)
        (tmp_path / "d").chmod(0o700)
        os.symlink("run.sh", tmp_path / "link")
        by_path = {e.relpath: e for e in collect(tmp_path, IgnoreRules())}
        assert by_path["run.sh"] == Entry("run.sh", "file", 0o750, 8, None)
        assert by_path["d"] == Entry("d", "dir", 0o700, 0, None)
        assert by_path["link"].kind == "symlink"
        assert by_path["link"].target == "run.sh"
        assert by_path["link"].size == 0

    def test_dockerignore_itself_is_included_unless_excluded(self, tmp_path: Path) -> None:
        write(tmp_path, ".dockerignore", "*.log\n")
        write(tmp_path, "x.log")
        assert relpaths(tmp_path) == [".dockerignore"]
        write(tmp_path, ".dockerignore", "*.log\n.dockerignore\n")
        assert relpaths(tmp_path) == []

    def test_empty_directory_is_kept(self, tmp_path: Path) -> None:
        (tmp_path / "empty" / "nested").mkdir(parents=True)
        assert relpaths(tmp_path) == ["empty", "empty/nested"]

    def test_negation_reincludes_inside_an_excluded_dir(self, tmp_path: Path) -> None:
        write(tmp_path, ".dockerignore", "build\n!build/keep/me.txt\n")
        write(tmp_path, "build/keep/me.txt")
        write(tmp_path, "build/keep/not-me.txt")
        write(tmp_path, "build/junk.o")
        assert relpaths(tmp_path) == [
            ".dockerignore",
            "build",
            "build/keep",
            "build/keep/me.txt",
        ]

    def test_wildcard_negation_reaches_into_excluded_dirs(self, tmp_path: Path) -> None:
        # Docker's classic builder would not descend here; BuildKit does, and so do we.
        ignore = rules("vendor", "!**/LICENSE")
        write(tmp_path, "vendor/lib/LICENSE")
        write(tmp_path, "vendor/lib/code.c")
        assert relpaths(tmp_path, ignore) == ["vendor", "vendor/lib", "vendor/lib/LICENSE"]

    def test_negated_default_reincludes_a_nested_pycache_file(self, tmp_path: Path) -> None:
        write(tmp_path, ".dockerignore", "!app/__pycache__/keep.pyc\n")
        write(tmp_path, "app/__pycache__/keep.pyc", b"")
        write(tmp_path, "app/__pycache__/drop.pyc", b"")
        assert "app/__pycache__/keep.pyc" in relpaths(tmp_path)
        assert "app/__pycache__/drop.pyc" not in relpaths(tmp_path)

    def test_excluded_dirs_are_not_walked_without_negations(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        make_app(tmp_path)
        scanned: list[str] = []
        real_scan: Callable[[Path, str], list[os.DirEntry[str]]] = context_module._scan

        def spy(directory: Path, relpath: str) -> list[os.DirEntry[str]]:
            scanned.append(relpath)
            return real_scan(directory, relpath)

        monkeypatch.setattr(context_module, "_scan", spy)
        collect(tmp_path, load_ignore_rules(tmp_path))
        assert ".git" not in scanned
        assert ".venv" not in scanned
        assert "app/__pycache__" not in scanned
        assert "app" in scanned

    def test_unrelated_negation_does_not_walk_excluded_dirs(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        make_app(tmp_path)
        scanned: list[str] = []
        real_scan = context_module._scan

        def spy(directory: Path, relpath: str) -> list[os.DirEntry[str]]:
            scanned.append(relpath)
            return real_scan(directory, relpath)

        monkeypatch.setattr(context_module, "_scan", spy)
        collect(tmp_path, load_ignore_rules(tmp_path, extra=["static", "!static/css"]))
        assert ".venv" not in scanned
        assert "static" in scanned

    def test_inner_symlink_is_kept_as_symlink_and_not_followed(self, tmp_path: Path) -> None:
        write(tmp_path, "real/data.txt")
        os.symlink("real", tmp_path / "alias")
        os.symlink("../real/data.txt", tmp_path / "real" / "self")
        entries = {e.relpath: e for e in collect(tmp_path, IgnoreRules())}
        assert entries["alias"].kind == "symlink"
        assert entries["alias"].target == "real"
        assert "alias/data.txt" not in entries
        assert entries["real/self"].target == "../real/data.txt"

    def test_dangling_inner_symlink_is_kept(self, tmp_path: Path) -> None:
        os.symlink("not-yet", tmp_path / "later")
        assert [e.kind for e in collect(tmp_path, IgnoreRules())] == ["symlink"]

    def test_absolute_symlink_is_refused(self, tmp_path: Path) -> None:
        os.symlink("/etc/passwd", tmp_path / "passwd")
        with pytest.raises(ContextError) as info:
            collect(tmp_path, IgnoreRules())
        assert "passwd" in info.value.message
        assert "absolute" in info.value.message
        assert info.value.fix is not None
        assert ".dockerignore" in info.value.fix
        assert "copy" in info.value.fix

    def test_escaping_symlink_is_refused(self, tmp_path: Path) -> None:
        root = tmp_path / "root"
        write(root, "sub/x")
        write(tmp_path, "outside")
        os.symlink("../../outside", root / "sub" / "out")
        with pytest.raises(ContextError) as info:
            collect(root, IgnoreRules())
        assert "sub/out" in info.value.message
        assert info.value.fix is not None and ".dockerignore" in info.value.fix

    def test_escape_through_a_chain_of_links_is_refused(self, tmp_path: Path) -> None:
        root = tmp_path / "root"
        (root / "b").mkdir(parents=True)
        os.symlink(".", root / "a")  # a -> the root itself
        os.symlink("a/b/../..", root / "e")  # lexically ".", really the root's parent
        with pytest.raises(ContextError, match="outside the app root"):
            collect(root, IgnoreRules())

    def test_excluded_bad_symlink_is_fine(self, tmp_path: Path) -> None:
        os.symlink("/etc/passwd", tmp_path / "passwd")
        write(tmp_path, "keep")
        assert relpaths(tmp_path, rules("passwd")) == ["keep"]

    def test_special_files_are_skipped(self, tmp_path: Path) -> None:
        os.mkfifo(tmp_path / "fifo")
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(str(tmp_path / "sock"))
        except OSError:  # path too long for AF_UNIX on some hosts
            pass
        finally:
            sock.close()
        write(tmp_path, "file")
        assert relpaths(tmp_path, IgnoreRules()) == ["file"]

    @pytest.mark.skipif(sys.platform == "darwin", reason="APFS refuses non-UTF-8 names")
    def test_non_utf8_name_is_refused_unless_excluded(self, tmp_path: Path) -> None:
        os.close(os.open(os.path.join(os.fsencode(tmp_path), b"caf\xe9"), os.O_CREAT, 0o644))
        with pytest.raises(ContextError, match="UTF-8"):
            collect(tmp_path, IgnoreRules())
        assert collect(tmp_path, rules("caf?")) == []

    def test_root_must_be_a_directory(self, tmp_path: Path) -> None:
        with pytest.raises(ContextError, match="not a directory"):
            collect(tmp_path / "missing", IgnoreRules())


# ----------------------------------------------------------------------------- tar


class TestBuildTar:
    def test_same_tree_gives_identical_bytes(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        ignore = load_ignore_rules(tmp_path)
        first = build_tar(tmp_path, collect(tmp_path, ignore))
        second = build_tar(tmp_path, collect(tmp_path, ignore))
        assert first == second

    def test_same_content_in_two_places_gives_identical_bytes(self, tmp_path: Path) -> None:
        one, two = make_app(tmp_path / "one"), make_app(tmp_path / "two")
        os.utime(two / "manage.py", (1, 1))
        tar_one = build_tar(one, collect(one, load_ignore_rules(one)), mtime=0)
        tar_two = build_tar(two, collect(two, load_ignore_rules(two)), mtime=0)
        assert tar_one == tar_two

    def test_entry_order_does_not_matter(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        entries = collect(tmp_path, load_ignore_rules(tmp_path))
        assert build_tar(tmp_path, entries[::-1], mtime=5) == build_tar(tmp_path, entries, mtime=5)

    def test_members_parents_first_including_empty_dir(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        data = build_tar(tmp_path, collect(tmp_path, load_ignore_rules(tmp_path)))
        names = member_names(data)
        assert names == relpaths(tmp_path)
        assert members(data)["media"].isdir()
        for name in names:
            assert not name.startswith("/")
            assert ".." not in name.split("/")
            parent = name.rpartition("/")[0]
            assert not parent or names.index(parent) < names.index(name)

    def test_file_contents_and_large_file(self, tmp_path: Path) -> None:
        big = os.urandom(3 * 1024 * 1024 + 17)
        write(tmp_path, "big.bin", big)
        write(tmp_path, "small.txt", "hello\n")
        data = build_tar(tmp_path, collect(tmp_path, IgnoreRules()))
        assert read_member(data, "big.bin") == big
        assert read_member(data, "small.txt") == b"hello\n"

    @pytest.mark.parametrize(
        ("disk", "archived"),
        [
            (0o644, 0o664),
            (0o755, 0o775),
            (0o600, 0o660),
            (0o640, 0o660),
            (0o700, 0o770),
            (0o444, 0o444),
            (0o4755, 0o775),
        ],
    )
    def test_group_gets_owner_bits(self, tmp_path: Path, disk: int, archived: int) -> None:
        write(tmp_path, "f", mode=disk)
        assert members(build_tar(tmp_path, collect(tmp_path, IgnoreRules())))["f"].mode == archived

    def test_directory_modes_are_group_writable(self, tmp_path: Path) -> None:
        (tmp_path / "d").mkdir()
        (tmp_path / "d").chmod(0o755)
        assert members(build_tar(tmp_path, collect(tmp_path, IgnoreRules())))["d"].mode == 0o775

    def test_default_owner(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        data = build_tar(tmp_path, collect(tmp_path, load_ignore_rules(tmp_path)))
        for member in members(data).values():
            assert (member.uid, member.gid) == (1001, 0)
            assert (member.uname, member.gname) == ("", "")

    def test_custom_owner(self, tmp_path: Path) -> None:
        write(tmp_path, "f")
        member = members(build_tar(tmp_path, collect(tmp_path, IgnoreRules()), uid=5, gid=7))["f"]
        assert (member.uid, member.gid, member.uname, member.gname) == (5, 7, "", "")

    def test_negative_owner_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ContextError):
            build_tar(tmp_path, [], uid=-1)

    def test_mtime_given_or_the_files_own(self, tmp_path: Path) -> None:
        write(tmp_path, "f")
        os.utime(tmp_path / "f", (1_000_000_000.7, 1_000_000_000.7))
        entries = collect(tmp_path, IgnoreRules())
        assert members(build_tar(tmp_path, entries))["f"].mtime == 1_000_000_000
        assert members(build_tar(tmp_path, entries, mtime=42))["f"].mtime == 42

    def test_symlink_member(self, tmp_path: Path) -> None:
        write(tmp_path, "real.txt")
        os.symlink("real.txt", tmp_path / "link")
        member = members(build_tar(tmp_path, collect(tmp_path, IgnoreRules())))["link"]
        assert member.issym()
        assert member.linkname == "real.txt"

    def test_prefix(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        entries = collect(tmp_path, load_ignore_rules(tmp_path))
        data = build_tar(tmp_path, entries, prefix="opt/src/")
        names = member_names(data)
        assert names == [f"opt/src/{e.relpath}" for e in entries]
        assert "opt" not in names
        assert "opt/src" not in names
        assert build_tar(tmp_path, entries, prefix="opt/src") == data

    @pytest.mark.parametrize("prefix", ["/abs", "../up", "a/../b", "a//b", "./a"])
    def test_unsafe_prefix_is_refused(self, tmp_path: Path, prefix: str) -> None:
        with pytest.raises(ContextError, match="prefix"):
            build_tar(tmp_path, [], prefix=prefix)

    def test_pax_names_for_long_and_non_ascii_paths(self, tmp_path: Path) -> None:
        long_name = "d/" + "n" * 150 + "/é.txt"
        write(tmp_path, long_name)
        entries = collect(tmp_path, IgnoreRules())
        data = build_tar(tmp_path, entries, mtime=0)
        assert long_name in member_names(data)
        assert build_tar(tmp_path, entries, mtime=0) == data

    @pytest.mark.parametrize(
        "entries",
        [
            [Entry("../etc/passwd", "file", 0o644, 0)],
            [Entry("/etc/passwd", "file", 0o644, 0)],
            [Entry("a/./b", "file", 0o644, 0)],
            [Entry("a/b", "file", 0o644, 0)],  # no entry for its parent
            [Entry("a", "file", 0o644, 0), Entry("a/b", "file", 0o644, 0)],
            [Entry("a", "dir", 0o755, 0), Entry("a", "dir", 0o755, 0)],
        ],
    )
    def test_malformed_entries_are_refused(self, tmp_path: Path, entries: list[Entry]) -> None:
        with pytest.raises(ContextError) as info:
            build_tar(tmp_path, entries)
        assert info.value.fix is not None

    def test_file_changed_after_collect(self, tmp_path: Path) -> None:
        write(tmp_path, "f", "short")
        entries = collect(tmp_path, IgnoreRules())
        write(tmp_path, "f", "much longer now")
        with pytest.raises(ContextError, match="changed"):
            build_tar(tmp_path, entries)

    def test_file_replaced_by_symlink_after_collect(self, tmp_path: Path) -> None:
        write(tmp_path, "f")
        entries = collect(tmp_path, IgnoreRules())
        (tmp_path / "f").unlink()
        os.symlink("/etc/passwd", tmp_path / "f")
        with pytest.raises(ContextError, match="changed"):
            build_tar(tmp_path, entries)

    def test_hand_built_escaping_symlink_entry_is_refused(self, tmp_path: Path) -> None:
        os.symlink("../x", tmp_path / "l")
        with pytest.raises(ContextError, match="outside"):
            build_tar(tmp_path, [Entry("l", "symlink", 0o777, 0, "../x")])

    def test_tar_is_pax_and_uncompressed(self, tmp_path: Path) -> None:
        write(tmp_path, "f")
        data = build_tar(tmp_path, collect(tmp_path, IgnoreRules()))
        assert data[257:263] == b"ustar\0"  # POSIX header magic, not gzip
        assert len(data) % tarfile.RECORDSIZE == 0


# ----------------------------------------------------------------------------- digest


class TestContextDigest:
    def digest(self, root: Path) -> str:
        return context_digest(root, collect(root, load_ignore_rules(root)))

    def test_stable_and_hex(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        first = self.digest(tmp_path)
        assert first == self.digest(tmp_path)
        assert len(first) == 64
        int(first, 16)

    def test_same_content_elsewhere_same_digest(self, tmp_path: Path) -> None:
        one, two = make_app(tmp_path / "one"), make_app(tmp_path / "two")
        os.utime(two / "manage.py", (1, 1))
        assert self.digest(one) == self.digest(two)

    def test_content_change_changes_digest(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        before = self.digest(tmp_path)
        write(tmp_path, "app/views.py", "def INDEX(): ...\n")  # same size
        assert self.digest(tmp_path) != before

    def test_mode_change_changes_digest(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        before = self.digest(tmp_path)
        (tmp_path / "app" / "views.py").chmod(0o755)
        assert self.digest(tmp_path) != before

    def test_new_empty_dir_changes_digest(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        before = self.digest(tmp_path)
        (tmp_path / "new").mkdir()
        assert self.digest(tmp_path) != before

    def test_symlink_target_change_changes_digest(self, tmp_path: Path) -> None:
        write(tmp_path, "a")
        write(tmp_path, "b")
        os.symlink("a", tmp_path / "l")
        before = self.digest(tmp_path)
        (tmp_path / "l").unlink()
        os.symlink("b", tmp_path / "l")
        assert self.digest(tmp_path) != before

    def test_rename_changes_digest(self, tmp_path: Path) -> None:
        write(tmp_path, "a", "same")
        before = self.digest(tmp_path)
        (tmp_path / "a").rename(tmp_path / "b")
        assert self.digest(tmp_path) != before

    def test_excluded_file_change_keeps_digest(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        write(tmp_path, ".dockerignore", "*.log\n")
        write(tmp_path, "debug.log", "one")
        before = self.digest(tmp_path)
        write(tmp_path, "debug.log", "two, and longer")
        write(tmp_path, ".git/HEAD", "ref: refs/heads/other\n")
        write(tmp_path, "app/__pycache__/new.pyc", b"\0")
        assert self.digest(tmp_path) == before

    def test_mtime_change_keeps_digest(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        before = self.digest(tmp_path)
        os.utime(tmp_path / "manage.py", (12345, 12345))
        assert self.digest(tmp_path) == before

    def test_file_changed_after_collect(self, tmp_path: Path) -> None:
        write(tmp_path, "f", "short")
        entries = collect(tmp_path, IgnoreRules())
        (tmp_path / "f").unlink()
        with pytest.raises(ContextError, match="changed"):
            context_digest(tmp_path, entries)


def test_mode_helper_keeps_others_bits() -> None:
    assert context_module._tar_mode(0o751) == 0o771
    assert context_module._tar_mode(stat.S_IFREG | 0o604) == 0o664
