"""The app-source archive: Docker-compatible ignore rules, a safe walk, deterministic tar."""

from __future__ import annotations

import io
import os
import socket
import stat
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from unit_support import write

import nox_warpdrive.source.archive as archive_module
import nox_warpdrive.source.context as context_module
from nox_warpdrive.errors import ContextError
from nox_warpdrive.source.archive import build_tar, context_digest, source_date_epoch
from nox_warpdrive.source.context import (
    DEFAULT_EXCLUDES,
    LARGE_FILE_BYTES,
    SECRET_EXCLUDES,
    Entry,
    IgnoreRules,
    collect,
    is_excluded,
    large_files,
    load_ignore_rules,
    parse_dockerignore,
    secret_files_left_out,
)

# ----------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def no_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive's default mtime comes from the environment: start from none."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


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
        assert loaded.patterns == tuple((False, p) for p in DEFAULT_EXCLUDES + SECRET_EXCLUDES)
        for path in (".git/HEAD", "a/b/__pycache__/m.pyc", ".venv/bin/python", "x/y.pyc"):
            assert is_excluded(loaded, path), path
        assert is_excluded(loaded, "frontend/node_modules/react/index.js")
        assert not is_excluded(loaded, "pkg/venv/module.py")  # only the root venv

    def test_order_is_defaults_then_file_then_extra(self, tmp_path: Path) -> None:
        write(tmp_path, ".dockerignore", "secrets\n")
        loaded = load_ignore_rules(tmp_path, extra=["!secrets/public.pem", "/tmp"])
        defaults = DEFAULT_EXCLUDES + SECRET_EXCLUDES
        assert loaded.patterns[: len(defaults)] == tuple((False, p) for p in defaults)
        assert loaded.patterns[len(defaults) :] == (
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
        real_listing = context_module._listing

        def spy(directory: Path, relpath: str) -> tuple[list[str], list[os.stat_result]]:
            scanned.append(relpath)
            return real_listing(directory, relpath)

        monkeypatch.setattr(context_module, "_listing", spy)
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
        real_listing = context_module._listing

        def spy(directory: Path, relpath: str) -> tuple[list[str], list[os.stat_result]]:
            scanned.append(relpath)
            return real_listing(directory, relpath)

        monkeypatch.setattr(context_module, "_listing", spy)
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
            (0o600, 0o664),
            (0o640, 0o664),
            (0o444, 0o664),
            (0o400, 0o664),
            (0o666, 0o664),
            (0o755, 0o775),
            (0o700, 0o775),
            (0o744, 0o775),
            (0o500, 0o775),
            (0o4755, 0o775),
            (0o655, 0o664),  # group and others' execute bits do not count: only the owner's
        ],
    )
    def test_file_modes_keep_only_the_executable_bit(
        self, tmp_path: Path, disk: int, archived: int
    ) -> None:
        write(tmp_path, "f", mode=disk)
        assert members(build_tar(tmp_path, collect(tmp_path, IgnoreRules())))["f"].mode == archived

    @pytest.mark.parametrize("disk", [0o755, 0o700, 0o750, 0o777, 0o1777])
    def test_directory_modes_are_775(self, tmp_path: Path, disk: int) -> None:
        (tmp_path / "d").mkdir()
        (tmp_path / "d").chmod(disk)
        assert members(build_tar(tmp_path, collect(tmp_path, IgnoreRules())))["d"].mode == 0o775

    def test_symlink_mode_is_777(self, tmp_path: Path) -> None:
        write(tmp_path, "f")
        os.symlink("f", tmp_path / "l")
        assert members(build_tar(tmp_path, collect(tmp_path, IgnoreRules())))["l"].mode == 0o777

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

    def test_mtime_given_or_fixed_not_the_files_own(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
        write(tmp_path, "f")
        (tmp_path / "d").mkdir()
        os.utime(tmp_path / "f", (1_000_000_000.7, 1_000_000_000.7))
        entries = collect(tmp_path, IgnoreRules())
        assert {m.mtime for m in members(build_tar(tmp_path, entries)).values()} == {1}
        assert members(build_tar(tmp_path, entries, mtime=42))["f"].mtime == 42
        monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
        assert members(build_tar(tmp_path, entries))["f"].mtime == 1_700_000_000
        assert members(build_tar(tmp_path, entries, mtime=42))["f"].mtime == 42

    def test_explicit_mtime_ignores_a_bad_source_date_epoch(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write(tmp_path, "f")
        entries = collect(tmp_path, IgnoreRules())
        monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
        assert members(build_tar(tmp_path, entries, mtime=0))["f"].mtime == 0
        with pytest.raises(ContextError, match="SOURCE_DATE_EPOCH"):
            build_tar(tmp_path, entries)

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

    def test_file_changed_after_collect_is_archived_as_read(self, tmp_path: Path) -> None:
        """Not a failure (a log being written): one consistent read (steady.py)."""
        write(tmp_path, "f", "short")
        entries = collect(tmp_path, IgnoreRules())
        write(tmp_path, "f", "much longer now")
        with tarfile.open(fileobj=io.BytesIO(build_tar(tmp_path, entries))) as tar:
            assert tar.extractfile("f").read() == b"much longer now"  # type: ignore[union-attr]

    def test_file_replaced_by_symlink_after_collect_is_left_out(self, tmp_path: Path) -> None:
        write(tmp_path, "f")
        write(tmp_path, "g")
        entries = collect(tmp_path, IgnoreRules())
        (tmp_path / "f").unlink()
        os.symlink("/etc/passwd", tmp_path / "f")
        with tarfile.open(fileobj=io.BytesIO(build_tar(tmp_path, entries))) as tar:
            assert tar.getnames() == ["g"]  # not followed, not archived

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

    def test_file_deleted_after_collect_is_left_out(self, tmp_path: Path) -> None:
        write(tmp_path, "f", "short")
        write(tmp_path, "g", "kept")
        entries = collect(tmp_path, IgnoreRules())
        (tmp_path / "f").unlink()
        without = [e for e in entries if e.relpath != "f"]
        assert context_digest(tmp_path, entries) == context_digest(tmp_path, without)


def test_mode_helper_uses_kind_and_owner_execute_bit_only() -> None:
    tar_mode = archive_module._tar_mode
    assert tar_mode("file", 0o751) == 0o775
    assert tar_mode("file", 0o100) == 0o775
    assert tar_mode("file", stat.S_IFREG | 0o604) == 0o664
    assert tar_mode("file", 0o077) == 0o664
    assert tar_mode("dir", 0o500) == 0o775
    assert tar_mode("symlink", 0o755) == 0o777


# ----------------------------------------------------------------------------- reproducibility


def make_clone(root: Path, umask: int, when: float) -> Path:
    """One commit as a clone made under ``umask`` at time ``when`` would have it: git
    keeps only the executable bit, the rest of the modes and every mtime are the clone's."""
    old = os.umask(umask)
    try:
        write(root, "app/__init__.py", "")
        write(root, "app/views.py", "def index(): ...\n")
        write(root, "bin/run.sh", "#!/bin/sh\n")
        (root / "bin" / "run.sh").chmod(0o777 & ~umask)
        write(root, "d/" + "n" * 120 + "/é.txt", "long and non-ASCII name\n")
        (root / "media").mkdir()
        os.symlink("app/views.py", root / "views-link")
    finally:
        os.umask(old)
    for path in [root, *root.rglob("*")]:
        os.utime(path, (when, when), follow_symlinks=False)
    return root


def raw_pax_records(data: bytes) -> list[bytes]:
    """Every ``key=value`` record of the archive's PAX extended headers."""
    records: list[bytes] = []
    offset = 0
    while offset + tarfile.BLOCKSIZE <= len(data) and data[offset : offset + 1] != b"\0":
        header = data[offset : offset + tarfile.BLOCKSIZE]
        size = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
        body = data[offset + tarfile.BLOCKSIZE : offset + tarfile.BLOCKSIZE + size]
        if header[156:157] in (b"x", b"g"):
            records.extend(line.split(b" ", 1)[1] for line in body.splitlines())
        offset += tarfile.BLOCKSIZE + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    return records


class TestReproducible:
    def test_clones_with_other_umask_and_mtimes_give_identical_bytes(self, tmp_path: Path) -> None:
        one = make_clone(tmp_path / "one", 0o022, 1_600_000_000.25)
        two = make_clone(tmp_path / "two", 0o077, 1_700_000_000.75)
        entries_one = collect(one, load_ignore_rules(one))
        entries_two = collect(two, load_ignore_rules(two))
        assert entries_one != entries_two  # the modes on disk do differ
        assert build_tar(one, entries_one) == build_tar(two, entries_two)
        assert build_tar(one, entries_one, prefix="opt/app-root/src", uid=1001) == build_tar(
            two, entries_two, prefix="opt/app-root/src", uid=1001
        )
        assert context_digest(one, entries_one) == context_digest(two, entries_two)

    def test_archive_of_a_clone(self, tmp_path: Path) -> None:
        root = make_clone(tmp_path / "c", 0o077, 1_650_000_000.5)
        data = build_tar(root, collect(root, load_ignore_rules(root)))
        found = members(data)
        assert {m.mtime for m in found.values()} == {1}
        assert {(m.uname, m.gname) for m in found.values()} == {("", "")}
        assert found["bin/run.sh"].mode == 0o775
        assert found["app/views.py"].mode == 0o664
        assert found["app"].mode == found["media"].mode == 0o775
        assert found["views-link"].mode == 0o777
        assert list(found) == sorted(found, key=lambda name: name.split("/"))

    def test_pax_records_only_carry_the_long_name(self, tmp_path: Path) -> None:
        root = make_clone(tmp_path / "c", 0o022, 1_650_000_000.5)
        data = build_tar(root, collect(root, load_ignore_rules(root)))
        records = raw_pax_records(data)
        assert records  # the long, non-ASCII name needs one
        assert {record.split(b"=", 1)[0] for record in records} == {b"path"}
        for member in members(data).values():
            assert not {"mtime", "atime", "ctime"} & set(member.pax_headers)

    def test_umask_only_mode_change_keeps_digest(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        entries = collect(tmp_path, load_ignore_rules(tmp_path))
        before = context_digest(tmp_path, entries)
        (tmp_path / "app" / "views.py").chmod(0o600)
        (tmp_path / "static").chmod(0o700)
        (tmp_path / "manage.py").chmod(0o700)
        assert context_digest(tmp_path, collect(tmp_path, load_ignore_rules(tmp_path))) == before
        (tmp_path / "app" / "views.py").chmod(0o700)
        assert context_digest(tmp_path, collect(tmp_path, load_ignore_rules(tmp_path))) != before

    def test_digest_format_version_is_2(self) -> None:
        assert context_module._DIGEST_VERSION == b"nox-warpdrive context digest v2\0"


class TestSourceDateEpoch:
    def test_unset_or_empty_is_1(self, monkeypatch: pytest.MonkeyPatch) -> None:
        assert source_date_epoch() == 1
        monkeypatch.setenv("SOURCE_DATE_EPOCH", "")
        assert source_date_epoch() == 1

    @pytest.mark.parametrize(
        ("value", "epoch"), [("0", 0), ("1700000000", 1_700_000_000), (" 42\n", 42)]
    )
    def test_whole_seconds(self, monkeypatch: pytest.MonkeyPatch, value: str, epoch: int) -> None:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
        assert source_date_epoch() == epoch

    @pytest.mark.parametrize("value", ["abc", "-5", "1.5", "1_000", "+7", "2024-01-01", "\u00b2"])
    def test_anything_else_is_refused(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
        with pytest.raises(ContextError) as info:
            source_date_epoch()
        assert repr(value) in info.value.message
        assert info.value.fix is not None
        assert "git log -1 --format=%ct" in info.value.fix
        assert "unset it" in info.value.fix


# ----------------------------------------------------------------------------- unreadable


@pytest.fixture
def chmod_dir() -> Iterator[Callable[[Path, int], None]]:
    """chmod a directory, and give it back 0o755 at teardown: a non-root pytest could not
    remove a directory it cannot list, and would fail on the next run's temp dirs."""
    changed: list[Path] = []

    def chmod(path: Path, mode: int) -> None:
        changed.append(path)
        path.chmod(mode)

    yield chmod
    for path in changed:
        path.chmod(0o755)


class TestUnreadable:
    @pytest.mark.parametrize("mode", [0o000, 0o200, 0o044, 0o300])
    def test_file_its_owner_cannot_read_is_refused(self, tmp_path: Path, mode: int) -> None:
        write(tmp_path, "conf/key.pem", "-----BEGIN", mode=mode)
        with pytest.raises(ContextError) as info:
            collect(tmp_path, load_ignore_rules(tmp_path))
        assert info.value.message.startswith(
            f"conf/key.pem is not readable by its owner (mode 0o{mode:03o})"
        )
        assert info.value.fix == (
            "`chmod u+r conf/key.pem` (the image's app user owns it) or "
            "add 'conf/key.pem' to .dockerignore"
        )

    @pytest.mark.parametrize("mode", [0o000, 0o300, 0o600, 0o644])
    def test_directory_its_owner_cannot_enter_is_refused(
        self, tmp_path: Path, chmod_dir: Callable[[Path, int], None], mode: int
    ) -> None:
        write(tmp_path, "data/x.txt")
        chmod_dir(tmp_path / "data", mode)
        with pytest.raises(ContextError) as info:
            collect(tmp_path, load_ignore_rules(tmp_path))
        assert f"data is not readable by its owner (mode 0o{mode:03o})" in info.value.message
        assert info.value.fix is not None
        assert info.value.fix.startswith("`chmod u+rx data`")

    def test_readable_by_owner_only_is_fine(self, tmp_path: Path) -> None:
        write(tmp_path, "a/f", mode=0o400)
        (tmp_path / "a").chmod(0o500)
        assert relpaths(tmp_path) == ["a", "a/f"]

    def test_excluded_paths_are_not_checked(
        self, tmp_path: Path, chmod_dir: Callable[[Path, int], None]
    ) -> None:
        write(tmp_path, ".dockerignore", "private\n*.key\n")
        write(tmp_path, "server.key", mode=0o000)
        write(tmp_path, "private/x")
        chmod_dir(tmp_path / "private", 0o000)
        write(tmp_path, "app.py")
        assert relpaths(tmp_path) == [".dockerignore", "app.py"]

    def test_excluded_dir_walked_for_a_negation_is_checked_only_if_archived(
        self, tmp_path: Path, chmod_dir: Callable[[Path, int], None]
    ) -> None:
        write(tmp_path, ".dockerignore", "private\n!**/keep\n")
        write(tmp_path, "private/x")
        chmod_dir(tmp_path / "private", 0o000)
        try:
            os.listdir(tmp_path / "private")
        except PermissionError:
            pytest.skip("only a host that reads anything (root) walks a 0o000 directory")
        assert relpaths(tmp_path) == [".dockerignore"]
        (tmp_path / "private").chmod(0o755)
        write(tmp_path, "private/keep")
        (tmp_path / "private").chmod(0o000)
        with pytest.raises(ContextError, match="private is not readable by its owner"):
            collect(tmp_path, load_ignore_rules(tmp_path))


# ----------------------------------------------------------------------------- secrets


class TestSecretFiles:
    @pytest.mark.parametrize(
        "path", [".env", ".env.local", ".env.production", "site/.env", "a/b/.env.test", ".env."]
    )
    def test_dotenv_files_are_excluded_by_default(self, tmp_path: Path, path: str) -> None:
        assert is_excluded(load_ignore_rules(tmp_path), path)

    @pytest.mark.parametrize("path", [".envrc", "prod.env", "env", "site/env.py", ".environment"])
    def test_lookalikes_are_kept(self, tmp_path: Path, path: str) -> None:
        assert not is_excluded(load_ignore_rules(tmp_path), path)

    def test_dockerignore_can_reinclude(self, tmp_path: Path) -> None:
        write(tmp_path, ".dockerignore", "!.env\n!**/.env.example\n")
        loaded = load_ignore_rules(tmp_path)
        assert not is_excluded(loaded, ".env")
        assert not is_excluded(loaded, "site/.env.example")
        assert is_excluded(loaded, "site/.env")
        assert is_excluded(loaded, ".env.local")

    def make_tree(self, root: Path, dockerignore: str) -> None:
        write(root, ".dockerignore", dockerignore)
        write(root, "app.py")
        for path in (".env", ".env.production", ".env.example", ".envrc", "app/.env"):
            write(root, path, "SECRET_KEY=x\n")
        write(root, "app/.env.local", "DEBUG=1\n")
        write(root, "node_modules/pkg/.env")  # inside a default-excluded directory
        write(root, "tools/.env/bin/python")  # a virtualenv called .env: not a file

    def test_left_out_files_are_reported(self, tmp_path: Path) -> None:
        self.make_tree(tmp_path, ".env.example\n!app/.env.local\n")
        loaded = load_ignore_rules(tmp_path)
        entries = collect(tmp_path, loaded)
        archived = [entry.relpath for entry in entries]
        assert ".envrc" in archived
        assert "app/.env.local" in archived
        for path in (".env", ".env.production", ".env.example", "app/.env", "tools/.env"):
            assert path not in archived
        # .env.example: the project's own rule left it out; app/.env.local: re-included
        assert secret_files_left_out(tmp_path, loaded, entries) == [
            ".env",
            ".env.production",
            "app/.env",
        ]

    def test_nothing_reported_when_reincluded(self, tmp_path: Path) -> None:
        self.make_tree(tmp_path, "!**/.env\n!**/.env.*\n")
        loaded = load_ignore_rules(tmp_path)
        entries = collect(tmp_path, loaded)
        assert {".env", ".env.production", "app/.env", "tools/.env/bin/python"} <= {
            entry.relpath for entry in entries
        }
        assert secret_files_left_out(tmp_path, loaded, entries) == []

    def test_extra_rules_count(self, tmp_path: Path) -> None:
        write(tmp_path, ".env")
        loaded = load_ignore_rules(tmp_path, extra=["!.env"])
        assert secret_files_left_out(tmp_path, loaded, collect(tmp_path, loaded)) == []

    def test_rules_without_the_secret_defaults_report_nothing(self, tmp_path: Path) -> None:
        self.make_tree(tmp_path, "")
        loaded = parse_dockerignore(".env\n")
        assert secret_files_left_out(tmp_path, loaded, collect(tmp_path, loaded)) == []

    def test_no_dotenv_files(self, tmp_path: Path) -> None:
        make_app(tmp_path)
        loaded = load_ignore_rules(tmp_path)
        assert secret_files_left_out(tmp_path, loaded, collect(tmp_path, loaded)) == []


# ----------------------------------------------------------------------------- large files


class TestLargeFiles:
    def test_limit(self) -> None:
        assert LARGE_FILE_BYTES == 100 * 1024 * 1024

    def test_files_over_the_limit(self, tmp_path: Path) -> None:
        write(tmp_path, "small.txt", "x" * 10)
        write(tmp_path, "big.bin", "x" * 11)
        write(tmp_path, "d/bigger.bin", "x" * 12)
        os.symlink("big.bin", tmp_path / "link")
        entries = collect(tmp_path, IgnoreRules())
        assert [e.relpath for e in large_files(entries, limit=10)] == ["big.bin", "d/bigger.bin"]
        assert large_files(entries, limit=12) == []
        assert large_files(entries) == []

    def test_default_limit_with_a_sparse_file(self, tmp_path: Path) -> None:
        with open(tmp_path / "model.bin", "wb") as handle:
            handle.truncate(LARGE_FILE_BYTES + 1)  # sparse: no 100 MiB written
        write(tmp_path, "at-limit.bin")
        os.truncate(tmp_path / "at-limit.bin", LARGE_FILE_BYTES)
        found = large_files(collect(tmp_path, IgnoreRules()))
        assert found == [Entry("model.bin", "file", found[0].mode, LARGE_FILE_BYTES + 1)]

    def test_excluded_files_are_not_entries(self, tmp_path: Path) -> None:
        write(tmp_path, ".dockerignore", "*.bin\n")
        write(tmp_path, "big.bin", "x" * 11)
        assert large_files(collect(tmp_path, load_ignore_rules(tmp_path)), limit=10) == []


def test_a_whiteout_name_is_refused_unless_excluded(tmp_path: Path) -> None:
    """In an image layer, ``.wh.x`` deletes ``x``: such a file would silently vanish."""
    write(tmp_path, "a/.wh.x", "x")
    with pytest.raises(ContextError, match=r"a/\.wh\.x cannot go into an image"):
        collect(tmp_path, load_ignore_rules(tmp_path))
    assert "a/.wh.x" not in relpaths(tmp_path, rules("**/.wh.*"))
    (tmp_path / "a" / ".wh.x").unlink()
    (tmp_path / "a" / ".wh.d").mkdir()
    with pytest.raises(ContextError, match="cannot go into an image"):
        collect(tmp_path, load_ignore_rules(tmp_path))
