"""The sdists of exact pins compiled while uv resolves (runtime/early_builds.py): which
lines name one release, which releases are sdist-only for this interpreter, and that a
started build is used only for the very pin and sdist the resolve gives (any other is
stopped, its files and log gone). The processes are real (`sleep`, `sh`); the index and
uv are not. tests/integration/test_early_builds_engine.py runs it all in the builder."""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from nox_warpdrive.runtime import builds, common, early_builds


def test_only_lines_that_name_one_release_are_exact_pins(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "\n".join(
            [
                "psycopg2==2.9.13",
                "uWSGI == 2.0.31  # the server",
                "Django[argon2]==5.2.20",
                "wagtail>=7",
                "attrs==25.*",
                "pywin32==311; sys_platform == 'win32'",
                "requests==2.34.2 \\",
                "    --hash=sha256:abc",
                "-r sub/other.txt",
                "-c constraints.txt",
                "git+https://example.org/x.git",
                "psycopg2==2.9.12",  # the first pin of a name wins
            ]
        )
        + "\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/other.txt").write_text("uwsgi==2.0.99\n--requirement=../more.txt\n")
    (tmp_path / "more.txt").write_text("aws-requests-auth==0.4.3\n-r requirements.txt\n")
    (tmp_path / "constraints.txt").write_text("pinned-only==1.0\n")
    plan = {"req_dir": str(tmp_path), "top": ["requirements.txt", "missing.txt"]}
    plan["extra"] = ["gunicorn==27.0.1", "whitenoise"]
    assert early_builds.exact_pins(plan) == [
        ("aws-requests-auth", "0.4.3"),  # included by an included file
        ("django", "5.2.20"),
        ("gunicorn", "27.0.1"),
        ("psycopg2", "2.9.13"),
        ("uwsgi", "2.0.31"),
    ]


def _utils() -> Any:
    pytest.importorskip("pip")  # the runtime uses pip's vendored packaging, as here
    return early_builds._Packaging()


def test_a_release_is_built_early_only_when_it_has_no_wheel_for_this_interpreter() -> None:
    utils = _utils()
    supported = {"cp311-cp311-manylinux_2_17_x86_64", "py3-none-any"}
    files = [
        ("psycopg2-2.9.13-cp311-cp311-win_amd64.whl", "https://i/p1.whl", "a" * 64, False),
        ("psycopg2-2.9.13.tar.gz", "https://i/p.tar.gz", "b" * 64, False),
        ("psycopg2-2.9.12.tar.gz", "https://i/old.tar.gz", "c" * 64, False),
    ]
    found = early_builds.sdist_only(files, "psycopg2", "2.9.13", supported, utils)
    assert found == ("https://i/p.tar.gz", "b" * 64)
    with_wheel = [*files, ("psycopg2-2.9.13-py3-none-any.whl", "https://i/w.whl", "d" * 64, False)]
    assert early_builds.sdist_only(with_wheel, "psycopg2", "2.9.13", supported, utils) is None
    assert early_builds.sdist_only(files, "psycopg2", "2.9.14", supported, utils) is None
    no_sha = [(f, u, None, y) for f, u, _, y in files]
    assert early_builds.sdist_only(no_sha, "psycopg2", "2.9.13", supported, utils) is None
    assert early_builds.sdist_only([("junk", "u", "e", False)], "x", "1", supported, utils) is None


def _ctx(tmp_path: Path) -> Any:
    staging = tmp_path / "staging"
    staging.mkdir()
    return types.SimpleNamespace(
        plan={"python": sys.executable, "verbose": False},
        root=str(tmp_path),
        staging=str(staging),
        wheels=str(tmp_path / "wheels"),
    )


def _early(tmp_path: Path) -> early_builds.EarlyBuilds:
    early = early_builds.EarlyBuilds(_ctx(tmp_path), {})
    early.use_uv("uv")
    return early


def _start(
    early: early_builds.EarlyBuilds, name: str, version: str, sha: str, cmd: list[str]
) -> Any:
    """A started build as _start_one leaves it, its process ``cmd`` (writing into ``out``)."""
    out = os.path.join(early.ctx.staging, "early-" + name)
    os.makedirs(out)
    log, _ = builds.build_log(early.ctx, f"{name}=={version}")
    tee = builds.Tee(cmd, cwd=out, log=log, echo=False, group=True)
    build = early_builds._Build(name, version, sha, tee, out)
    early.builds[name] = build
    return build


def _pin(name: str, version: str, sha: str) -> Any:
    return common.Pin(name, version, None, None, f"https://i/{name}.tar.gz", sha)


def test_the_resolves_pin_takes_its_own_build_and_its_wheel_lands_in_staging(
    tmp_path: Path,
) -> None:
    early = _early(tmp_path)
    _start(early, "demo", "1.0", "s1", ["sh", "-c", "echo compiled; : > demo-1.0-cp311-x.whl"])
    taken = early.take(_pin("Demo", "1.0", "s1"))
    assert taken is not None
    assert taken.wait() == 0
    assert sorted(os.listdir(early.ctx.staging)) == ["demo-1.0-cp311-x.whl", "early-demo"]
    assert list(taken.tail) == ["compiled"]  # the Tee's, as the usual build's report reads
    assert early.take(_pin("demo", "1.0", "s1")) is None  # taken once


@pytest.mark.parametrize(("version", "sha"), [("1.1", "s1"), ("1.0", "another sdist")])
def test_a_build_the_resolve_does_not_ask_for_is_stopped_and_forgotten(
    tmp_path: Path, version: str, sha: str
) -> None:
    early = _early(tmp_path)
    build = _start(early, "demo", "1.0", "s1", ["sleep", "60"])
    log = build.tee.log
    deadline = time.monotonic() + 10
    while not os.path.exists(log) and time.monotonic() < deadline:  # the Tee's thread opens it
        time.sleep(0.01)
    assert os.path.exists(log)
    assert early.take(_pin("demo", version, sha)) is None
    assert build.tee.proc.poll() is not None, "still compiling"
    assert not os.path.exists(build.out) and not os.path.exists(log)


def test_builds_no_pin_took_are_stopped_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = _early(tmp_path)
    sdist = tmp_path / "late-1.0.tar.gz"
    sdist.write_bytes(b"")
    monkeypatch.setattr(early_builds.fetch, "fetch", lambda *args, **kw: str(sdist))
    # a build's compilers are its children: `sleep 61` stands for gcc here
    build = _start(early, "demo", "1.0", "s1", ["sh", "-c", "sleep 61 & echo $!; wait"])
    deadline = time.monotonic() + 10
    while not build.tee.tail and time.monotonic() < deadline:
        time.sleep(0.01)
    child = int(build.tee.tail[0])
    early.stop_rest()
    assert build.tee.proc.poll() is not None
    assert early.builds == {}
    assert _gone(child), "the build's compiler still runs"
    early._start_one("late", "1.0", ("https://i/late.tar.gz", "x"), None, {})  # after the end
    assert early.builds == {}


def _gone(pid: int) -> bool:
    """Whether ``pid`` ended (a zombie nobody reaped yet counts: it runs no more)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.01)
    return False


def test_nothing_starts_for_pip_without_an_index_or_a_missing_exact_pin(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    os.makedirs(ctx.wheels)
    (tmp_path / "requirements.txt").write_text("psycopg2==2.9.13\nwagtail\n")
    ctx.plan.update(req_dir=str(tmp_path), top=["requirements.txt"])
    for other in ({"installer": "pip"}, {"no_index": True}, {"locked": []}, {"pins": []}):
        changed = types.SimpleNamespace(**{**vars(ctx), "plan": {**ctx.plan, **other}})
        assert early_builds.EarlyBuilds.start(changed, {}) is None, other
    (Path(ctx.wheels) / "psycopg2-2.9.13-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
    assert early_builds.EarlyBuilds.start(ctx, {}) is None  # the wheelhouse has it


def test_without_uv_a_downloaded_sdist_is_not_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = early_builds.EarlyBuilds(_ctx(tmp_path), {})
    sdist = tmp_path / "demo-1.0.tar.gz"
    sdist.write_bytes(b"")
    monkeypatch.setattr(early_builds.fetch, "fetch", lambda *args, **kw: str(sdist))
    early.use_uv(None)  # the run found no uv: pip builds everything
    early._start_one("demo", "1.0", ("https://i/demo-1.0.tar.gz", "x"), None, {})
    assert early.builds == {}


def test_a_page_that_cannot_be_read_only_means_the_build_starts_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _utils()

    def unreachable(*args: Any) -> Any:
        raise OSError("no route to host")

    monkeypatch.setattr(early_builds.fetch, "index_files", unreachable)
    early = early_builds.EarlyBuilds(_ctx(tmp_path), {"PIP_INDEX_URL": "https://i/simple"})
    early._run([("psycopg2", "2.9.13")])
    assert early.builds == {}
    said = capsys.readouterr().out
    assert (
        "1 exact pin(s) not looked up before the resolve (psycopg2==2.9.13: no route to host)"
        in said
    )
