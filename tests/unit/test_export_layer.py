"""The deps layer built in memory and exported instead of committed: the plan (tmpfs,
export, plan.json), assemble.py's export (GNU tar or tarfile) and its export mode, the
engine's log follower that stops at EXPORT_READY, Engine.run / _export, append_layer's
image bundle, and ensure_deps falling back to a commit when the engine refuses the layer."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
import tarfile
import time
import types
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import docker.errors
import pytest
from unit_support import BASE, PKEY, tar_contents, write, write_wsgi_site

from nox_warpdrive import engine as engine_module
from nox_warpdrive import image as image_module
from nox_warpdrive.config import Config, load_config
from nox_warpdrive.engine import Engine, ImageInfo, RunResult, _follow, _sha256
from nox_warpdrive.errors import BuildError, EngineError, LayerRefused, WarpdriveError
from nox_warpdrive.plan import EXPORT_READY, HELPERS_DIR, CommitSpec, Step
from nox_warpdrive.runtime import assemble


def wheel(file: str, name: str, version: str, sha: str) -> dict[str, Any]:
    return {"file": file, "name": name, "version": version, "sha256": sha * 64, "size": 1000}


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


def parent_of(have: list[dict[str, str]]) -> tuple[ImageInfo, list[str], int]:
    info = dataclasses.replace(BASE, id="sha256:parent")
    return info, image_module.wheel_ids(have), 0


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
    step = image_module.plan_deps(cfg, BASE, PKEY, RESOLVED).step
    assert step.tmpfs == (image_module.APP_ROOT, image_module.DEPS_SCRATCH)
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
    assert plan["tmpdir"] == image_module.DEPS_SCRATCH
    assert "incremental" not in plan
    # the paths exported are relative to / and are what the deps step writes
    assert "/" + step.export[3] == plan["app_root"]
    assert plan["venv"].startswith(plan["app_root"] + "/")


def test_incremental_deps_plan_is_committed(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    for export in (True, False):
        deps = image_module.plan_deps(
            cfg, BASE, PKEY, RESOLVED, parent=parent_of(RESOLVED[:2]), export=export
        )
        assert deps.step.image == "sha256:parent"
        assert deps.step.tmpfs == () and deps.step.export == ()
        plan = plan_json(deps.step)
        assert plan["incremental"] is True
        assert "export" not in plan and "tmpdir" not in plan


def test_deps_plan_without_export_is_committed(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    step = image_module.plan_deps(cfg, BASE, PKEY, RESOLVED, export=False).step
    assert step.tmpfs == () and step.export == ()
    plan = plan_json(step)
    assert "export" not in plan and "tmpdir" not in plan
    assert "incremental" not in plan


def test_deps_key_does_not_depend_on_how_the_layer_is_made(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    exported = image_module.plan_deps(cfg, BASE, PKEY, RESOLVED)
    committed = image_module.plan_deps(cfg, BASE, PKEY, RESOLVED, export=False)
    assert exported.key == committed.key and exported.ref == committed.ref
    assert exported.step.commit == committed.step.commit
    assert exported.step.command == committed.step.command
    # only how the layer is made differs
    assert dataclasses.replace(exported.step, tmpfs=(), export=(), files=()) == dataclasses.replace(
        committed.step, files=()
    )
    parent = parent_of(RESOLVED[:1])
    on_parent = image_module.plan_deps(cfg, BASE, PKEY, RESOLVED, parent=parent)
    on_parent_commit = image_module.plan_deps(
        cfg, BASE, PKEY, RESOLVED, parent=parent, export=False
    )
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
        assert info.mtime == int(st.st_mtime), name
        assert info.mode == st.st_mode & 0o7777, name
    assert members[rel].uid == os.getuid() and members[rel].gid == os.getgid()
    assert members[f"{rel}/a.txt"].mtime == 1_600_000_000
    assert members[f"{rel}/sub/b.py"].mtime == 1_500_000_123
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
        (tar, [tar, "-C", "/", "--numeric-owner", "-cf", "-", "--", "opt/app-root", "etc/passwd"])
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
    assert assemble.EXPORT_READY == EXPORT_READY


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


def test_sha256_of_bytes_and_of_a_file_agree(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # more than one read chunk
    path = tmp_path / "layer.tar"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert _sha256(data) == expected
    assert _sha256(path) == expected
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert _sha256(empty) == _sha256(b"") == hashlib.sha256(b"").hexdigest()


# ----------------------------------------------------------------------------- append_layer

PARENT_DIFF_IDS = ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
#: docker's history: newest first; one row without a layer (Size 0)
PARENT_HISTORY = [
    {"Created": 1_700_000_200, "CreatedBy": "/bin/sh -c #(nop) CMD", "Size": 0},
    {"Created": 1_700_000_100, "CreatedBy": "apt-get install", "Size": 10, "Comment": "c"},
    {"Created": 1_600_000_000, "CreatedBy": "ADD rootfs", "Size": 100},
]
FROZEN = 1_710_000_000


class FakeImage:
    def __init__(self, image_id: str, config: dict[str, Any]) -> None:
        self.id = image_id
        self.attrs = {
            "Config": config["config"],
            "RootFS": {"Layers": config["rootfs"]["diff_ids"]},
            "Size": 1,
            "Created": config["created"],
        }


class FakeImages:
    def __init__(self) -> None:
        self.loaded: dict[str, FakeImage] = {}

    def get(self, ref: str) -> FakeImage:
        if ref not in self.loaded:
            raise docker.errors.ImageNotFound(ref)
        return self.loaded[ref]


class FakeAPI:
    def __init__(self, images: FakeImages, history: list[dict[str, Any]]) -> None:
        self.images = images
        self.history_rows = history
        self.bundles: list[bytes] = []
        self.chunks: list[Any] = [{"stream": "Loaded image"}]
        self.raise_on_load: Exception | None = None
        self.register = True

    def inspect_image(self, ref: str) -> dict[str, Any]:
        assert ref == "sha256:parent"
        return {
            "Id": ref,
            "Architecture": "arm64",
            "Variant": "v8",
            "Os": "linux",
            "Config": {
                "Env": ["PATH=/usr/bin:/bin", "LANG=C"],
                "Cmd": ["/bin/sh"],
                "Entrypoint": ["/entry"],
                "Hostname": "abc",
                "Domainname": "",
                "Image": "sha256:older",
                "Labels": {"base": "yes"},
                "ExposedPorts": {"22/tcp": {}},
            },
            "RootFS": {"Type": "layers", "Layers": list(PARENT_DIFF_IDS)},
        }

    def history(self, ref: str) -> list[dict[str, Any]]:
        return list(self.history_rows)

    def load_image(self, data: Any) -> Iterator[Any]:
        bundle = data.read()  # read now: the caller closes it afterwards
        self.bundles.append(bundle)
        if self.raise_on_load is not None:
            raise self.raise_on_load
        if self.register:
            with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
                manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
                name = manifest[0]["Config"]
                config = json.loads(tar.extractfile(name).read())  # type: ignore[union-attr]
            image_id = "sha256:" + name.removesuffix(".json")
            self.images.loaded[image_id] = FakeImage(image_id, config)
        return iter(self.chunks)


class FakeClient:
    def __init__(self, history: list[dict[str, Any]] = PARENT_HISTORY) -> None:
        self.images = FakeImages()
        self.api = FakeAPI(self.images, history)


SPEC = CommitSpec(
    env=(("PATH", "/opt/app-root/venv/bin:/usr/bin:/bin"), ("NEW", "1")),
    cmd=("/opt/app-root/bin/start",),
    user="1001",
    workdir="/opt/app-root/src",
    exposed_ports=("8080/tcp",),
    labels={"io.warpdrive.kind": "deps"},
    message="nox-warpdrive deps layer",
)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """``time.gmtime()`` (now) fixed in the engine module; everything else real."""
    real = time

    def gmtime(secs: float | None = None) -> time.struct_time:
        return real.gmtime(FROZEN if secs is None else secs)

    fake = types.SimpleNamespace(
        gmtime=gmtime, strftime=real.strftime, monotonic=real.monotonic, time=real.time
    )
    monkeypatch.setattr(engine_module, "time", fake)


def bundle_parts(bundle: bytes) -> tuple[list[dict[str, Any]], str, bytes, dict[str, bytes]]:
    """(manifest, config file name, config bytes, all files)."""
    files = tar_contents(bundle)
    manifest = json.loads(files["manifest.json"])
    name = manifest[0]["Config"]
    return manifest, name, files[name], files


def layer_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"print('hello')\n"
        info = tarfile.TarInfo("opt/app-root/venv/hello.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_append_layer_from_a_file(tmp_path: Path, frozen: None) -> None:
    layer = layer_bytes()
    path = tmp_path / "layer.tar"
    path.write_bytes(layer)
    client = FakeClient()
    engine = Engine(client)
    image_id = engine.append_layer("sha256:parent", path, SPEC, created_by="nox-warpdrive deps")
    (bundle,) = client.api.bundles
    manifest, name, config_bytes, files = bundle_parts(bundle)

    assert set(tar_members(bundle)) == {"manifest.json", name, "new", "new/layer.tar"}
    assert files["new/layer.tar"] == layer
    assert image_id == "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    assert name == image_id[7:] + ".json"
    assert manifest == [
        {
            "Config": name,
            "RepoTags": None,
            "Layers": ["1" * 64 + "/layer.tar", "2" * 64 + "/layer.tar", "new/layer.tar"],
        }
    ]
    config = json.loads(config_bytes)
    new_diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    assert config["rootfs"] == {"type": "layers", "diff_ids": [*PARENT_DIFF_IDS, new_diff]}
    assert (config["architecture"], config["os"], config["variant"]) == ("arm64", "linux", "v8")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(FROZEN))
    assert config["created"] == now
    assert config["history"] == [
        {"created": "2020-09-13T12:26:40Z", "created_by": "ADD rootfs"},
        {"created": "2023-11-14T22:15:00Z", "created_by": "apt-get install", "comment": "c"},
        {
            "created": "2023-11-14T22:16:40Z",
            "created_by": "/bin/sh -c #(nop) CMD",
            "empty_layer": True,
        },
        {"created": now, "created_by": "nox-warpdrive deps", "comment": SPEC.message},
    ]
    cfg = config["config"]
    assert cfg["Env"] == [
        "PATH=/opt/app-root/venv/bin:/usr/bin:/bin",
        "LANG=C",
        "NEW=1",
    ]
    assert cfg["Cmd"] == ["/opt/app-root/bin/start"]
    assert cfg["Entrypoint"] is None
    assert (cfg["User"], cfg["WorkingDir"]) == ("1001", "/opt/app-root/src")
    assert cfg["ExposedPorts"] == {"22/tcp": {}, "8080/tcp": {}}
    assert cfg["Labels"] == {"base": "yes", "io.warpdrive.kind": "deps"}
    assert not {"Hostname", "Domainname", "Image"} & set(cfg)


def test_append_layer_bytes_and_file_make_the_same_image(tmp_path: Path, frozen: None) -> None:
    layer = layer_bytes()
    path = tmp_path / "layer.tar"
    path.write_bytes(layer)
    from_file = FakeClient()
    from_bytes = FakeClient()
    id_file = Engine(from_file).append_layer("sha256:parent", path, SPEC, created_by="x")
    id_bytes = Engine(from_bytes).append_layer("sha256:parent", layer, SPEC, created_by="x")
    assert id_file == id_bytes
    file_parts = bundle_parts(from_file.api.bundles[0])
    bytes_parts = bundle_parts(from_bytes.api.bundles[0])
    assert file_parts[0] == bytes_parts[0] and file_parts[2] == bytes_parts[2]
    assert bytes_parts[3]["new/layer.tar"] == layer
    assert set(tar_members(from_bytes.api.bundles[0])) == set(tar_members(from_file.api.bundles[0]))


def test_append_layer_default_created_by_is_the_app_layer(frozen: None) -> None:
    client = FakeClient()
    Engine(client).append_layer("sha256:parent", layer_bytes(), CommitSpec())
    config = json.loads(bundle_parts(client.api.bundles[0])[2])
    assert config["history"][-1]["created_by"] == "nox-warpdrive app layer"


def test_append_layer_leaves_out_a_history_that_does_not_match(frozen: None) -> None:
    client = FakeClient(history=PARENT_HISTORY[1:2])  # one layer row, two layers
    Engine(client).append_layer("sha256:parent", layer_bytes(), SPEC, created_by="nox-warpdrive x")
    config = json.loads(bundle_parts(client.api.bundles[0])[2])
    assert [h["created_by"] for h in config["history"]] == ["nox-warpdrive x"]


def test_append_layer_refused_by_an_error_chunk(frozen: None) -> None:
    assert issubclass(LayerRefused, EngineError)
    assert issubclass(LayerRefused, WarpdriveError)
    client = FakeClient()
    client.api.chunks = [{"stream": "x"}, {"error": "unsupported layer format"}]
    with pytest.raises(EngineError) as exc:
        Engine(client).append_layer(
            "sha256:parent", layer_bytes(), SPEC, created_by="nox-warpdrive deps layer"
        )
    assert isinstance(exc.value, LayerRefused)
    assert "deps layer" in str(exc.value)
    assert "unsupported layer format" in str(exc.value)


def test_append_layer_refused_by_an_api_error(frozen: None) -> None:
    client = FakeClient()
    client.api.raise_on_load = docker.errors.APIError("500 Server Error: content store")
    with pytest.raises(LayerRefused, match="content store"):
        Engine(client).append_layer("sha256:parent", layer_bytes(), SPEC)


def test_append_layer_refused_when_the_image_does_not_show(frozen: None) -> None:
    client = FakeClient()
    client.api.register = False
    with pytest.raises(LayerRefused, match="does not show"):
        Engine(client).append_layer("sha256:parent", layer_bytes(), SPEC)


# ----------------------------------------------------------------------------- Engine.run


class FakeRunAPI:
    def __init__(self, out: list[bytes], code: int = 0, err: bytes = b"") -> None:
        self.out = out
        self.code = code
        self.err = err
        self.execs: list[tuple[str, list[str], str]] = []
        self.commits: list[str] = []

    def exec_create(self, container_id: str, cmd: list[str], user: str = "") -> str:
        self.execs.append((container_id, list(cmd), user))
        return "exec1"

    def exec_start(self, exec_id: str, stream: bool, demux: bool) -> Iterator[tuple[Any, Any]]:
        assert (exec_id, stream, demux) == ("exec1", True, True)
        for chunk in self.out:
            yield chunk, None
        if self.err:
            yield None, self.err

    def exec_inspect(self, exec_id: str) -> dict[str, int]:
        return {"ExitCode": self.code}

    def commit(self, container_id: str, message: Any = None, conf: Any = None) -> dict[str, str]:
        self.commits.append(container_id)
        return {"Id": "sha256:committed"}


class FakeContainers:
    def __init__(self, container: FakeContainer) -> None:
        self.container = container
        self.created: list[tuple[str, dict[str, Any]]] = []

    def create(self, image: str, **kwargs: Any) -> FakeContainer:
        self.created.append((image, kwargs))
        return self.container


class FakeRunClient:
    def __init__(self, container: FakeContainer, api: FakeRunAPI) -> None:
        self.containers = FakeContainers(container)
        self.api = api


def export_step(tmp_path: Path) -> Step:
    return image_module.plan_deps(wsgi_project(tmp_path / "site"), BASE, PKEY, RESOLVED).step


def run_engine(
    step: Step,
    container: FakeContainer,
    api: FakeRunAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[RunResult, list[str], list[tuple[str, bytes, CommitSpec, str]]]:
    engine = Engine(FakeRunClient(container, api))
    appended: list[tuple[str, bytes, CommitSpec, str]] = []

    def append_layer(
        parent: str, layer: bytes | Path, spec: CommitSpec, created_by: str = ""
    ) -> str:
        assert isinstance(layer, Path)
        appended.append((parent, layer.read_bytes(), spec, created_by))
        return "sha256:appended"

    monkeypatch.setattr(engine, "append_layer", append_layer)
    shown: list[str] = []
    return engine.run(step, shown.append), shown, appended


def test_run_export_step_reads_the_layer_after_the_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = export_step(tmp_path)
    container = FakeContainer(
        [b"warpdrive: virtualenv ready in 1.0 s\n", EXPORT_READY.encode() + b"\n"]
    )
    api = FakeRunAPI([b"part1", b"part2"])
    result, shown, appended = run_engine(step, container, api, monkeypatch)
    assert result.exit_code == 0 and result.image_id == "sha256:appended"
    assert shown == ["warpdrive: virtualenv ready in 1.0 s"]
    assert EXPORT_READY not in result.output_tail
    assert api.execs == [("c0ffee", list(step.export), "0:0")]
    assert appended == [(step.image, b"part1part2", step.commit, "nox-warpdrive deps layer")]
    assert api.commits == []
    assert "wait" not in container.events  # the container sleeps until it is removed
    assert container.events[-1] == "remove"


def test_run_mounts_the_steps_tmpfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    step = export_step(tmp_path)
    container = FakeContainer([EXPORT_READY.encode() + b"\n"])
    client = FakeRunClient(container, FakeRunAPI([b"x"]))
    engine = Engine(client)
    monkeypatch.setattr(engine, "append_layer", lambda *a, **k: "sha256:appended")
    engine.run(step, lambda line: None)
    ((image, kwargs),) = client.containers.created
    assert image == BASE.id
    assert kwargs["tmpfs"] == {
        image_module.APP_ROOT: "exec,mode=755",
        image_module.DEPS_SCRATCH: "exec,mode=755",
    }
    no_tmpfs = dataclasses.replace(step, tmpfs=(), export=())
    client.containers.created.clear()
    Engine(client).run(no_tmpfs, lambda line: None)
    assert "tmpfs" not in client.containers.created[0][1]


def test_run_export_step_that_ends_without_the_marker_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = export_step(tmp_path)
    container = FakeContainer([b"warpdrive: done\n"], status=0)
    api = FakeRunAPI([b"never"])
    result, shown, appended = run_engine(step, container, api, monkeypatch)
    assert result.exit_code == 1
    assert result.image_id is None
    assert appended == [] and api.execs == [] and api.commits == []
    assert shown == ["warpdrive: done"]
    assert container.events[-1] == "remove"


def test_run_export_step_keeps_a_failing_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = export_step(tmp_path)
    container = FakeContainer([b"boom\n"], status=3)
    result, _, appended = run_engine(step, container, FakeRunAPI([]), monkeypatch)
    assert (result.exit_code, result.image_id, appended) == (3, None, [])


def test_run_export_fails_when_reading_the_layer_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = export_step(tmp_path)
    container = FakeContainer([EXPORT_READY.encode() + b"\n"])
    api = FakeRunAPI([b"partial"], code=2, err=b"tar: opt/app-root: Cannot stat\n")
    with pytest.raises(BuildError, match="Cannot stat") as exc:
        run_engine(step, container, api, monkeypatch)
    assert "exit 2" in str(exc.value)
    assert container.events[-1] == "remove"


def test_run_commit_step_is_committed_not_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = dataclasses.replace(export_step(tmp_path), tmpfs=(), export=())
    container = FakeContainer([EXPORT_READY.encode() + b"\n", b"after\n"], status=0)
    api = FakeRunAPI([])
    result, shown, appended = run_engine(step, container, api, monkeypatch)
    assert (result.exit_code, result.image_id) == (0, "sha256:committed")
    assert shown == [EXPORT_READY, "after"]  # no export: the marker means nothing
    assert appended == [] and api.execs == [] and api.commits == ["c0ffee"]


# ----------------------------------------------------------------------------- ensure_deps


class FakeEngine:
    """run_checked raises the next of ``failures`` (None: succeeds) and records steps."""

    def __init__(self, failures: list[Exception | None], memory: int = 8 * GIB) -> None:
        self.failures = failures
        self.memory = memory
        self.steps: list[Step] = []
        self.tags: list[tuple[str, str]] = []

    def image(self, ref: str) -> ImageInfo | None:
        return None

    def images_with_labels(self, labels: dict[str, str]) -> list[ImageInfo]:
        return []

    def memory_total(self) -> int:
        return self.memory

    def run_checked(self, step: Step, out: Any, secrets_volume: str | None = None) -> RunResult:
        self.steps.append(step)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return RunResult(0, "", f"sha256:built{len(self.steps)}", 4.5)

    def tag(self, image_id: str, ref: str) -> None:
        self.tags.append((image_id, ref))


def ensure(
    engine: FakeEngine,
    cfg: Config,
    out: list[str],
    resolved: list[dict[str, Any]] = RESOLVED,
) -> tuple[str, bool, float]:
    return image_module.ensure_deps(
        cast(Engine, engine),
        cfg,
        BASE,
        PKEY,
        resolved,
        image_module.Installer("pip"),
        out.append,
    )


def test_ensure_deps_exports_the_full_layer(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine([None])
    out: list[str] = []
    assert ensure(engine, cfg, out) == ("sha256:built1", False, 4.5)
    (step,) = engine.steps
    assert step.export and step.tmpfs
    assert out == []


def test_ensure_deps_falls_back_to_a_commit_when_the_layer_is_refused(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    plan = image_module.plan_deps(cfg, BASE, PKEY, RESOLVED)
    refused = LayerRefused("the engine refused the deps layer: no such layer")
    engine = FakeEngine([refused, None])
    out: list[str] = []
    assert ensure(engine, cfg, out) == ("sha256:built2", False, 4.5)
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
        (8 * GIB, [{k: v for k, v in w.items() if k != "size"} for w in RESOLVED]),
        (8 * 3000 * 4 - 1, RESOLVED),  # just too small for 3000 bytes of wheels
    ],
    ids=["no-memory", "no-sizes", "too-small"],
)
def test_ensure_deps_commits_a_layer_that_may_not_fit_in_memory(
    tmp_path: Path, memory: int, resolved: list[dict[str, Any]]
) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine([None], memory=memory)
    out: list[str] = []
    assert ensure(engine, cfg, out, resolved) == ("sha256:built1", False, 4.5)
    (step,) = engine.steps
    assert step.export == () and step.tmpfs == ()
    assert "export" not in plan_json(step)
    plan = image_module.plan_deps(cfg, BASE, PKEY, resolved)
    assert engine.tags == [("sha256:built1", plan.ref)]
    assert out == []


def test_ensure_deps_exports_a_layer_that_just_fits(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine([None], memory=8 * 3000 * 4)
    ensure(engine, cfg, [])
    assert engine.steps[0].export and engine.steps[0].tmpfs


@pytest.mark.parametrize(
    "error",
    [EngineError("the engine went away"), BuildError("the deps step exited with code 1")],
    ids=["engine-error", "build-error"],
)
def test_ensure_deps_does_not_retry_other_errors(tmp_path: Path, error: Exception) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine([error, None])
    out: list[str] = []
    with pytest.raises(type(error)):
        ensure(engine, cfg, out)
    assert len(engine.steps) == 1 and engine.tags == [] and out == []


def test_ensure_deps_second_refusal_is_raised(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine([LayerRefused("refused"), LayerRefused("refused again")])
    with pytest.raises(LayerRefused, match="again"):
        ensure(engine, cfg, [])
    assert len(engine.steps) == 2 and engine.tags == []
