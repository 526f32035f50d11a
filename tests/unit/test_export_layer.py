"""The deps layer built in memory and exported instead of committed: the plan (tmpfs,
export, plan.json), assemble.py's export (GNU tar or tarfile) and its export mode, the
engine's log follower that stops at EXPORT_READY, Engine.run / _export, append_layer's
image bundle, and ensure_deps falling back to a commit when the engine refuses the layer."""

from __future__ import annotations

import compileall
import dataclasses
import io
import json
import os
import py_compile
import stat
import subprocess
import sys
import tarfile
import types
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from unit_support import BASE, PKEY, tar_contents, write, write_wsgi_site

from nox_warpdrive import layout as layout_module
from nox_warpdrive.build import deps as deps_module
from nox_warpdrive.config import Config, load_config
from nox_warpdrive.engine.dockerpy import _follow
from nox_warpdrive.errors import BuildError, EngineError, LayerRefused
from nox_warpdrive.plan import EXPORT_READY, HELPERS_DIR, Step
from nox_warpdrive.runtime import assemble, layerdiff, protocol
from nox_warpdrive.wheelhouse.wheels import Wheel


def wheel(file: str, name: str, version: str, sha: str) -> Wheel:
    return Wheel(file, name, version, sha * 64, 1000)


RESOLVED = [
    wheel("asgiref-3.8.1-py3-none-any.whl", "asgiref", "3.8.1", "a"),
    wheel("django-5.0-py3-none-any.whl", "django", "5.0", "b"),
    wheel("gunicorn-22.0-py3-none-any.whl", "gunicorn", "22.0", "c"),
]
GIB = 1 << 30


# ----------------------------------------------------------------------------- helpers


def wsgi_project(root: Path) -> Config:
    write_wsgi_site(root)
    return load_config(root)


def plan_json(step: Step) -> dict[str, Any]:
    archives = [data for dest, data in step.files if dest == "/tmp"]
    assert len(archives) == 1
    plan = json.loads(tar_contents(archives[0])["warpdrive-build/plan.json"])
    assert isinstance(plan, dict)
    return plan


def parent_of(have: list[Wheel]) -> deps_module.DepsParent:
    info = dataclasses.replace(BASE, id="sha256:parent")
    return deps_module.DepsParent(info, tuple(deps_module.wheel_ids(have)), 0)


def tar_members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


class Stop(Exception):
    """Raised by a fake os.execv: the process would have been replaced."""


class FakeStdout:
    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def write(self, text: str) -> int:  # pragma: no cover - export writes bytes only
        raise AssertionError(f"text written to stdout: {text!r}")

    def flush(self) -> None:
        pass


class FakeStream:
    """What ``container.logs(stream=True, follow=True)`` returns: byte chunks, counted as
    they are taken, and a close() that is recorded."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = list(chunks)
        self.taken = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        while self.taken < len(self.chunks):
            self.taken += 1
            yield self.chunks[self.taken - 1]

    def close(self) -> None:
        self.closed = True


class FakeContainer:
    def __init__(self, chunks: Iterable[bytes] = (), status: int = 0) -> None:
        self.id = "c0ffee"
        self.stream = FakeStream(chunks)
        self.status = status
        self.log_kwargs: dict[str, Any] = {}
        self.events: list[str] = []
        self.archives: list[tuple[str, bytes]] = []

    def logs(self, **kwargs: Any) -> FakeStream:
        self.log_kwargs = kwargs
        return self.stream

    def put_archive(self, directory: str, data: bytes) -> bool:
        self.archives.append((directory, data))
        return True

    def start(self) -> None:
        self.events.append("start")

    def wait(self) -> dict[str, int]:
        self.events.append("wait")
        return {"StatusCode": self.status}

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.events.append("remove")


# ----------------------------------------------------------------------------- plan_deps


def test_full_deps_plan_is_built_in_memory_and_exported(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    step = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED).step
    assert step.tmpfs == (layout_module.APP_ROOT, deps_module.DEPS_SCRATCH)
    assert step.export == (
        cfg.python,
        f"{HELPERS_DIR}/assemble.py",
        "export",
        "opt/app-root",
        "etc/passwd",
    )
    assert step.commit is not None  # the config the exported layer gets
    plan = plan_json(step)
    assert plan["export"] is True
    assert plan["tmpdir"] == deps_module.DEPS_SCRATCH
    assert "incremental" not in plan
    # the paths exported are relative to / and are what the deps step writes
    assert "/" + step.export[3] == plan["app_root"]
    assert plan["venv"].startswith(plan["app_root"] + "/")


def test_incremental_deps_plan_exports_what_it_added(tmp_path: Path) -> None:
    """On a parent, the layer is exactly the paths the install added or changed (listed
    by the step, exported sorted with fixed mtimes: reproducible, unlike a commit's
    diff); without export (the engine refused a loaded layer) it is committed."""
    cfg = wsgi_project(tmp_path / "site")
    deps = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED, parent=parent_of(RESOLVED[:2]))
    assert deps.step.image == "sha256:parent"
    assert deps.step.tmpfs == (deps_module.DEPS_SCRATCH,)  # the venv is the parent's
    assert deps.step.export[-2:] == ("export", "@" + deps_module.GROW_LIST)
    plan = plan_json(deps.step)
    assert plan["incremental"] is True and plan["grow"] == deps_module.GROW_LIST
    assert plan["export"] is True and plan["epoch"] == 1
    committed = deps_module.plan_deps(
        cfg, BASE, PKEY, RESOLVED, parent=parent_of(RESOLVED[:2]), export=False
    )
    assert committed.step.tmpfs == () and committed.step.export == ()
    plan = plan_json(committed.step)
    assert plan["incremental"] is True
    assert "export" not in plan and "tmpdir" not in plan and "grow" not in plan


def test_deps_plan_without_export_is_committed(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    step = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED, export=False).step
    assert step.tmpfs == () and step.export == ()
    plan = plan_json(step)
    assert "export" not in plan and "tmpdir" not in plan
    assert "incremental" not in plan


def test_deps_key_does_not_depend_on_how_the_layer_is_made(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    exported = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED)
    committed = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED, export=False)
    assert exported.key == committed.key and exported.ref == committed.ref
    assert exported.step.commit == committed.step.commit
    assert exported.step.command == committed.step.command
    # only how the layer is made differs
    assert dataclasses.replace(exported.step, tmpfs=(), export=(), files=()) == dataclasses.replace(
        committed.step, files=()
    )
    parent = parent_of(RESOLVED[:1])
    on_parent = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED, parent=parent)
    on_parent_commit = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED, parent=parent, export=False)
    assert on_parent.key == on_parent_commit.key == exported.key


# ----------------------------------------------------------------------------- assemble.export


def make_tree(root: Path) -> Path:
    tree = root / "tree"
    write(tree, "a.txt", "alpha")
    write(tree, "sub/b.py", b"\x00\x01binary")
    write(tree, "sub/deeper/c", "")
    (tree / "empty").mkdir()
    (tree / "link").symlink_to("sub/b.py")
    (tree / "dangling").symlink_to("/nowhere/at/all")
    if os.getuid() == 0:  # owners other than the runner's: numbers must survive
        os.chown(tree / "sub" / "b.py", 1001, 0)
        os.chown(tree / "sub" / "deeper", 1001, 0)
    # distinct whole-second and sub-second mtimes
    os.utime(tree / "a.txt", (1_600_000_000.75, 1_600_000_000.75))
    os.utime(tree / "sub" / "b.py", (1_500_000_123.2, 1_500_000_123.2))
    return tree


def python_export(monkeypatch: pytest.MonkeyPatch, paths: list[str]) -> bytes:
    monkeypatch.setattr(assemble.shutil, "which", lambda name: None)

    def no_exec(*args: object) -> None:
        raise AssertionError(f"execv called: {args!r}")

    monkeypatch.setattr(assemble.os, "execv", no_exec)
    stdout = FakeStdout()
    monkeypatch.setattr(sys, "stdout", stdout)
    assert assemble.export(paths) == 0
    return stdout.buffer.getvalue()


def test_export_without_tar_writes_a_python_tar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = make_tree(tmp_path)
    rel = str(tree)[1:]
    data = python_export(monkeypatch, [rel])
    members = tar_members(data)
    expected = {
        rel,
        f"{rel}/a.txt",
        f"{rel}/sub",
        f"{rel}/sub/b.py",
        f"{rel}/sub/deeper",
        f"{rel}/sub/deeper/c",
        f"{rel}/empty",
        f"{rel}/link",
        f"{rel}/dangling",
    }
    assert set(members) == expected
    for name, info in members.items():
        src = Path("/" + name)
        st = src.lstat()
        assert info.uname == "" and info.gname == "", name
        assert (info.uid, info.gid) == (st.st_uid, st.st_gid), name
        assert info.mtime == 1, name  # the plan's epoch (none here: 1), not the file's
        assert info.mode == st.st_mode & 0o7777, name
    assert members[rel].uid == os.getuid() and members[rel].gid == os.getgid()
    # in name order, a directory before what it holds: the same files, the same bytes
    names = list(members)
    assert names[:3] == [rel, f"{rel}/a.txt", f"{rel}/dangling"]
    assert names.index(f"{rel}/sub") < names.index(f"{rel}/sub/b.py")
    if os.getuid() == 0:
        assert members[f"{rel}/sub/b.py"].uid == 1001
        assert members[f"{rel}/sub/deeper"].uid == 1001
    assert members[f"{rel}/empty"].isdir() and members[f"{rel}/sub/deeper"].isdir()
    assert members[f"{rel}/link"].issym() and members[f"{rel}/link"].linkname == "sub/b.py"
    assert members[f"{rel}/dangling"].issym()
    assert members[f"{rel}/dangling"].linkname == "/nowhere/at/all"
    files = tar_contents(data)
    assert files[f"{rel}/a.txt"] == b"alpha"
    assert files[f"{rel}/sub/b.py"] == b"\x00\x01binary"
    assert files[f"{rel}/sub/deeper/c"] == b""


def test_export_without_tar_takes_several_paths_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = make_tree(tmp_path)
    write(tmp_path, "etc/passwd", "root:x:0:0::/root:/bin/sh\n")
    rel_passwd = str(tmp_path / "etc" / "passwd")[1:]
    rel_sub = str(tree / "sub")[1:]
    data = python_export(monkeypatch, [rel_sub, rel_passwd])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert names[0] == rel_sub and names[-1] == rel_passwd
    assert all(not n.startswith("/") for n in names)
    assert tar_contents(data)[rel_passwd] == b"root:x:0:0::/root:/bin/sh\n"


def test_export_with_gnu_tar_execs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        calls.append((path, list(argv)))
        raise Stop

    monkeypatch.setattr(assemble.os, "execv", fake_execv)
    tar = assemble.shutil.which("tar")
    assert tar is not None, "GNU tar is expected on this machine"
    with pytest.raises(Stop):
        assemble.export(["opt/app-root", "etc/passwd"])
    assert calls == [
        (
            tar,
            [
                *(tar, "-C", "/", "--numeric-owner", "--sort=name", "--mtime=@1", "-cf", "-"),
                *("--", "opt/app-root", "etc/passwd"),
            ],
        )
    ]


def test_export_with_a_tar_that_is_not_gnu_uses_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """busybox tar has no --numeric-owner: the Python fallback then writes the tar."""
    tree = make_tree(tmp_path)
    monkeypatch.setattr(assemble.shutil, "which", lambda name: "/bin/tar")

    def fake_run(cmd: list[str], **kw: Any) -> Any:
        assert cmd == ["/bin/tar", "--version"]
        return types.SimpleNamespace(stdout="tar (busybox) 1.36.1\n", returncode=0)

    def no_exec(*args: object) -> None:
        raise AssertionError(f"execv called: {args!r}")

    monkeypatch.setattr(assemble.subprocess, "run", fake_run)
    monkeypatch.setattr(assemble.os, "execv", no_exec)
    stdout = FakeStdout()
    monkeypatch.setattr(sys, "stdout", stdout)
    assert assemble.export([str(tree)[1:]]) == 0
    members = tar_members(stdout.buffer.getvalue())
    assert f"{str(tree)[1:]}/a.txt" in members
    assert all(m.uname == "" and m.gname == "" for m in members.values())


def grown(tree: Path) -> list[str]:
    """What assemble's grow mode lists after a file is added to, one changed in and a
    directory made in ``tree`` (the snapshot taken before)."""
    before = layerdiff.snapshot(str(tree))
    write(tree, "sub/new.py", "NEW = 1\n")
    write(tree, "a.txt", "alpha, changed")
    write(tree, "-rf/x", "a name tar could take for an option")
    return layerdiff.changed(str(tree), before)


def test_the_grow_list_is_what_changed(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    rel = str(tree)[1:]
    listed = grown(tree)
    assert listed == sorted(
        [rel, f"{rel}/-rf", f"{rel}/-rf/x", f"{rel}/a.txt", f"{rel}/sub", f"{rel}/sub/new.py"]
    )
    assert layerdiff.changed(str(tree), layerdiff.snapshot(str(tree))) == []


def test_the_list_after_the_bytecode_is_what_a_walk_of_the_tree_finds(tmp_path: Path) -> None:
    """A grow's second list (with_bytecode: the first list and the __pycache__ of its
    sources' directories) is exactly what walking the whole tree again gives, whether
    the compile made a __pycache__ or wrote into one the layer below had."""
    tree = make_tree(tmp_path)
    write(tree, "pkg/old.py", "OLD = 1\n")
    py_compile.compile(str(tree / "pkg/old.py"))  # the layer below's bytecode
    before = layerdiff.snapshot(str(tree))
    write(tree, "pkg/added.py", "ADDED = 1\n")
    write(tree, "newpkg/__init__.py", "")
    write(tree, "newpkg/data.txt", "not a source")
    first = layerdiff.changed_paths(str(tree), before)
    compiled = [p for p in first if p.endswith(".py")]
    assert compiled and compileall.compile_file(str(tree / "pkg/added.py"), quiet=1)
    assert compileall.compile_file(str(tree / "newpkg/__init__.py"), quiet=1)
    walked = layerdiff.changed_paths(str(tree), before)
    assert layerdiff.with_bytecode(str(tree), before, first) == walked
    assert [p for p in walked if p.endswith(".pyc")] and walked != first


def test_the_snapshot_is_every_path_once_links_not_followed(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    write(tree, "deep/er/f.py", "x")
    os.symlink(str(tree / "deep"), tree / "link-to-dir")  # listed, not walked into
    os.symlink("missing", tree / "nowhere")
    found = layerdiff.snapshot(str(tree))
    walked = {str(tree)}
    for root, dirs, names in os.walk(tree):
        walked.update(os.path.join(root, n) for n in dirs + names)
    assert set(found) == walked
    assert stat.S_ISLNK(found[str(tree / "link-to-dir")][0])
    assert found[str(tree / "deep/er/f.py")][1] == 1
    assert layerdiff.snapshot(str(tree / "absent")) == {}


@pytest.mark.parametrize("gnu", [True, False])
def test_export_of_a_list_writes_exactly_its_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gnu: bool
) -> None:
    """``export @LIST``: the listed paths and nothing below a listed directory that is
    not listed itself (GNU tar, run for real, and the Python fallback)."""
    tree = make_tree(tmp_path)
    listed = grown(tree)
    listing = tmp_path / "grow.list"
    layerdiff.write_list(str(listing), listed)
    if gnu:
        proc = subprocess.run(
            [sys.executable, assemble.__file__, "export", f"@{listing}"],
            capture_output=True,
            check=True,
        )
        data = proc.stdout
    else:
        data = python_export(monkeypatch, [f"@{listing}"])
    members = tar_members(data)
    assert sorted(members) == listed
    rel = str(tree)[1:]
    assert tar_contents(data)[f"{rel}/sub/new.py"] == b"NEW = 1\n"
    assert members[f"{rel}/sub"].isdir() and f"{rel}/sub/b.py" not in members


def test_numeric_clears_names_only() -> None:
    info = tarfile.TarInfo("x")
    info.uid, info.gid, info.uname, info.gname = 1001, 0, "default", "root"
    assert assemble.numeric(info) is info
    assert (info.uid, info.gid, info.uname, info.gname) == (1001, 0, "", "")


# ----------------------------------------------------------------------------- assemble.main


def run_main(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    plan: dict[str, Any],
    what: str = "deps",
) -> tuple[int, list[dict[str, Any]], list[float]]:
    helpers = tmp_path / "warpdrive-build"
    write(helpers, "plan.json", json.dumps(plan))
    write(helpers, "assemble.py", "# the copy the export runs again\n")
    monkeypatch.setattr(assemble, "HELPERS", str(helpers))
    ran: list[dict[str, Any]] = []
    slept: list[float] = []
    monkeypatch.setattr(assemble, what, ran.append)
    monkeypatch.setattr(assemble.time, "sleep", slept.append)
    monkeypatch.setattr(sys, "argv", ["assemble.py", what])
    return assemble.main(), ran, slept


def test_assemble_module_marker_is_the_plans() -> None:
    assert assemble.protocol.EXPORT_READY == EXPORT_READY == protocol.EXPORT_READY


def test_main_in_export_mode_announces_waits_and_keeps_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = {"export": True, "export_wait": 0, "app_root": "/opt/app-root"}
    code, ran, slept = run_main(tmp_path, monkeypatch, plan)
    assert code == 1  # nobody came for it
    assert ran == [plan]
    assert slept == [0]
    assert capsys.readouterr().out.splitlines()[-1] == EXPORT_READY
    helpers = tmp_path / "warpdrive-build"
    assert (helpers / "assemble.py").is_file() and (helpers / "plan.json").is_file()


def test_main_in_export_mode_waits_900_s_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, slept = run_main(tmp_path, monkeypatch, {"export": True})
    assert (code, slept) == (1, [900])
    assert EXPORT_READY in capsys.readouterr().out.splitlines()


def test_main_in_export_mode_sleeps_after_announcing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The host reads the layer while the container sleeps: the marker comes first."""
    order: list[str] = []
    helpers = tmp_path / "warpdrive-build"
    write(helpers, "plan.json", json.dumps({"export": True, "export_wait": 5}))
    monkeypatch.setattr(assemble, "HELPERS", str(helpers))
    monkeypatch.setattr(assemble, "deps", lambda plan: order.append("deps"))
    monkeypatch.setattr(
        assemble.time,
        "sleep",
        lambda s: order.append(f"sleep {s} after {capsys.readouterr().out.strip()}"),
    )
    monkeypatch.setattr(sys, "argv", ["assemble.py", "deps"])
    assert assemble.main() == 1
    assert order == ["deps", f"sleep 5 after {EXPORT_READY}"]


def test_main_without_export_removes_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for what in ("deps", "app"):
        code, ran, slept = run_main(tmp_path, monkeypatch, {"app_root": "/opt/app-root"}, what)
        assert code == 0
        assert ran == [{"app_root": "/opt/app-root"}]
        assert slept == []
        assert not (tmp_path / "warpdrive-build").exists()
        assert EXPORT_READY not in capsys.readouterr().out


def test_main_export_mode_failure_neither_announces_nor_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    helpers = tmp_path / "warpdrive-build"
    write(helpers, "plan.json", json.dumps({"export": True, "export_wait": 0}))
    monkeypatch.setattr(assemble, "HELPERS", str(helpers))

    def failing(plan: dict[str, Any]) -> None:
        raise SystemExit(3)

    monkeypatch.setattr(assemble, "deps", failing)
    monkeypatch.setattr(sys, "argv", ["assemble.py", "deps"])
    with pytest.raises(SystemExit) as exc:
        assemble.main()
    assert exc.value.code == 3
    assert EXPORT_READY not in capsys.readouterr().out
    assert helpers.is_dir()


def test_main_export_command_exports_the_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(assemble, "export", lambda paths: seen.append(paths) or 0)
    monkeypatch.setattr(sys, "argv", ["assemble.py", "export", "opt/app-root", "etc/passwd"])
    assert assemble.main() == 0
    assert seen == [["opt/app-root", "etc/passwd"]]


def test_deps_unpacks_wheels_in_the_plans_tmpdir(monkeypatch: pytest.MonkeyPatch) -> None:
    envs: list[dict[str, str]] = []
    monkeypatch.setattr(assemble, "install_wheels", lambda plan, files, env: envs.append(env))
    base: dict[str, Any] = {
        "app_root": "/opt/app-root",
        "venv": "/opt/app-root/venv",
        "wheels_dir": "/w",
        "incremental": True,
    }
    monkeypatch.delenv("TMPDIR", raising=False)
    assemble.deps({**base, "tmpdir": "/tmp/warpdrive-scratch", "files": ["a.whl"]})
    assemble.deps(base)
    assert envs[0]["TMPDIR"] == "/tmp/warpdrive-scratch"
    assert "TMPDIR" not in envs[1]


# ----------------------------------------------------------------------------- _follow


def follow(
    chunks: list[bytes], until: str | None = EXPORT_READY, maxlen: int = 60
) -> tuple[bool, list[str], deque[str], FakeContainer]:
    container = FakeContainer(chunks)
    shown: list[str] = []
    tail: deque[str] = deque(maxlen=maxlen)
    ready = _follow(container, shown.append, tail, until)
    return ready, shown, tail, container


def test_follow_stops_at_the_marker_without_showing_it() -> None:
    marker = EXPORT_READY.encode()
    chunks = [
        b"fir",
        b"st\nsec",
        b"ond\r\nth" + "é".encode()[:1],
        "é".encode()[1:] + b"rd\n" + marker[:7],
        marker[7:] + b"\nafter the marker\n",
        b"never taken\n",
    ]
    ready, shown, tail, container = follow(chunks)
    assert ready is True
    assert shown == ["first", "second", "thérd"]
    assert list(tail) == shown
    assert container.stream.taken == 5  # the chunk after the marker stays in the stream
    assert container.stream.closed
    assert container.log_kwargs == {
        "stream": True,
        "follow": True,
        "stdout": True,
        "stderr": True,
    }


def test_follow_marker_with_crlf_and_as_first_line() -> None:
    ready, shown, tail, container = follow([EXPORT_READY.encode() + b"\r\n", b"x\n"])
    assert ready is True and shown == [] and list(tail) == []
    assert container.stream.taken == 1 and container.stream.closed


def test_follow_marker_must_be_the_whole_line() -> None:
    lines = [f"echo {EXPORT_READY}", f"{EXPORT_READY} ", EXPORT_READY + "x"]
    ready, shown, _, container = follow([("\n".join(lines) + "\n").encode()])
    assert ready is False
    assert shown == lines
    assert container.stream.closed


def test_follow_without_the_marker_shows_a_trailing_partial_line() -> None:
    ready, shown, tail, container = follow([b"a\nb", b"c", b"\nd", b"ef"], maxlen=2)
    assert ready is False
    assert shown == ["a", "bc", "def"]
    assert list(tail) == ["bc", "def"]
    assert container.stream.taken == 4 and container.stream.closed


def test_follow_without_until_never_stops_early() -> None:
    chunks = [EXPORT_READY.encode() + b"\n", b"more\n"]
    ready, shown, _, container = follow(chunks, until=None)
    assert ready is False
    assert shown == [EXPORT_READY, "more"]
    assert container.stream.taken == 2


def test_follow_closes_the_stream_when_out_raises() -> None:
    container = FakeContainer([b"a\n"])

    def broken(line: str) -> None:
        raise RuntimeError("shown nowhere")

    with pytest.raises(RuntimeError):
        _follow(container, broken, deque(), EXPORT_READY)
    assert container.stream.closed


# ----------------------------------------------------------------------------- _sha256


def ensure(
    engine: FakeEngine,
    cfg: Config,
    out: list[str],
    resolved: list[Wheel] = RESOLVED,
) -> tuple[str, bool, float]:
    return deps_module.ensure_deps(
        engine,
        cfg,
        BASE,
        PKEY,
        resolved,
        deps_module.Installer("pip"),
        out.append,
    )


def test_ensure_deps_exports_the_full_layer(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine(failures=[None], base=BASE)
    out: list[str] = []
    assert ensure(engine, cfg, out) == ("sha256:built1", False, 7.5)
    (step,) = engine.steps
    assert step.export and step.tmpfs
    assert out == []


def test_ensure_deps_falls_back_to_a_commit_when_the_layer_is_refused(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    plan = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED)
    refused = LayerRefused("the engine refused the deps layer: no such layer")
    engine = FakeEngine(failures=[refused, None], base=BASE)
    out: list[str] = []
    assert ensure(engine, cfg, out) == ("sha256:built2", False, 7.5)
    first, second = engine.steps
    assert first == plan.step
    assert first.export and first.tmpfs
    assert second.export == () and second.tmpfs == ()
    assert "export" not in plan_json(second) and "tmpdir" not in plan_json(second)
    assert second.commit == first.commit and second.image == first.image
    assert len(out) == 1
    assert "building the deps layer by commit instead" in out[0]
    assert "no such layer" in out[0]
    assert out[0].startswith("warpdrive: ")
    assert engine.tags == [("sha256:built2", plan.ref)]


@pytest.mark.parametrize(
    ("memory", "resolved"),
    [
        (0, RESOLVED),  # the engine does not say
        (8 * GIB, [dataclasses.replace(w, size=None) for w in RESOLVED]),
        (8 * 3000 * 4 - 1, RESOLVED),  # just too small for 3000 bytes of wheels
    ],
    ids=["no-memory", "no-sizes", "too-small"],
)
def test_ensure_deps_commits_a_layer_that_may_not_fit_in_memory(
    tmp_path: Path, memory: int, resolved: list[Wheel]
) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine(failures=[None], memory=memory, base=BASE)
    out: list[str] = []
    assert ensure(engine, cfg, out, resolved) == ("sha256:built1", False, 7.5)
    (step,) = engine.steps
    assert step.export == () and step.tmpfs == ()
    assert "export" not in plan_json(step)
    plan = deps_module.plan_deps(cfg, BASE, PKEY, resolved)
    assert engine.tags == [("sha256:built1", plan.ref)]
    assert out == []


def test_ensure_deps_exports_a_layer_that_just_fits(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine(failures=[None], memory=8 * 3000 * 4, base=BASE)
    ensure(engine, cfg, [])
    assert engine.steps[0].export and engine.steps[0].tmpfs


@pytest.mark.parametrize(
    "error",
    [EngineError("the engine went away"), BuildError("the deps step exited with code 1")],
    ids=["engine-error", "build-error"],
)
def test_ensure_deps_does_not_retry_other_errors(tmp_path: Path, error: Exception) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine(failures=[error, None], base=BASE)
    out: list[str] = []
    with pytest.raises(type(error)):
        ensure(engine, cfg, out)
    assert len(engine.steps) == 1 and engine.tags == [] and out == []


def test_ensure_deps_second_refusal_is_raised(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine(
        failures=[LayerRefused("refused"), LayerRefused("refused again")], base=BASE
    )
    with pytest.raises(LayerRefused, match="again"):
        ensure(engine, cfg, [])
    assert len(engine.steps) == 2 and engine.tags == []


def _aged(tree: Path) -> None:
    """Every mtime in ``tree`` set to the epoch of a layer below (the grow's case)."""
    for root, dirs, names in os.walk(tree):
        for name in dirs + names:
            os.utime(os.path.join(root, name), (1, 1), follow_symlinks=False)
    os.utime(tree, (1, 1))


def test_what_an_install_changed_is_found_without_a_walk_of_every_file(tmp_path: Path) -> None:
    """changed_by_install (a grow's list) equals the walk of the whole tree after an
    install that only adds: new files in old and new directories, a mode changed, a
    file of the layer below written over in place (its directory's mtime unchanged:
    found through the new distribution's RECORD), a link; and it reads only the
    directories that changed."""
    tree = make_tree(tmp_path)
    site = tree / "lib/python3.11/site-packages"
    write(tree, "lib/python3.11/site-packages/old/__init__.py", "OLD = 1\n")
    write(tree, "lib/python3.11/site-packages/old/data.txt", "kept\n")
    write(tree, "lib/python3.11/site-packages/ns/__init__.py", "")
    write(tree, "bin/tool", "#!/bin/sh\n")
    _aged(tree)
    before = layerdiff.snapshot(str(tree))
    # the install: a new package, a module added to an old namespace directory, a file
    # of the layer below written over in place, a script, a link
    write(tree, "lib/python3.11/site-packages/new/__init__.py", "NEW = 1\n")
    write(tree, "lib/python3.11/site-packages/new/sub/deep.py", "")
    write(tree, "lib/python3.11/site-packages/ns/added.py", "")
    with open(site / "old/data.txt", "r+") as fh:  # in place: old/'s mtime stays
        fh.write("over")
    os.utime(site / "old", (1, 1))
    write(tree, "bin/newtool", "#!/bin/sh\n")
    os.symlink("newtool", tree / "bin/alias")
    os.chmod(tree / "bin/tool", 0o755)
    record = (
        "new/__init__.py,,\nold/data.txt,,\n../../../bin/newtool,,\nnew-1.0.dist-info/RECORD,,\n"
    )
    write(tree, "lib/python3.11/site-packages/new-1.0.dist-info/RECORD", record)
    walked = layerdiff.changed_paths(str(tree), before)
    assert str(site / "old/data.txt") in walked and str(tree / "bin/tool") in walked
    scanned: list[str] = []
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        scanned.append(str(path))
        return real_scandir(path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(layerdiff.os, "scandir", scandir)
        assert layerdiff.changed_by_install(str(tree), before, recent=0) == walked
    assert str(site / "old") not in scanned  # unchanged: not read
    # without the RECORD, a file written over in place is not seen: what it is for
    os.unlink(site / "new-1.0.dist-info/RECORD")
    without = layerdiff.changed_by_install(str(tree), before, recent=0)
    assert str(site / "old/data.txt") not in without


def test_a_directory_changed_within_the_clocks_step_is_read_anyway(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    write(tree, "pkg/a.py", "")
    before = layerdiff.snapshot(str(tree))  # made just now: its mtimes are recent
    with open(tree / "pkg/a.py", "a") as fh:
        fh.write("# edited in place\n")
    assert layerdiff.changed_by_install(str(tree), before) == layerdiff.changed_paths(
        str(tree), before
    )
