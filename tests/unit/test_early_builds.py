"""The sdists of the top requirements compiled while uv resolves (runtime/early_builds.py):
which lines are requirements, which of them the wheelhouse lacks, which release a resolve
would take and which of its files is fetched (its best wheel for this interpreter, else
its sdist), that a started build is used only for the very pin and sdist the resolve
gives (any other is stopped, its files and log gone), and a downloaded wheel only for the
pin naming that very file. The processes are real (`sleep`, `sh`); the index and
uv are not. tests/integration/test_early_builds_engine.py runs it all in the builder."""

from __future__ import annotations

import hashlib
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from nox_warpdrive.runtime import builds, common, early_builds


def test_the_requirement_lines_are_the_top_files_their_includes_and_the_extras(
    tmp_path: Path,
) -> None:
    (tmp_path / "requirements.txt").write_text(
        "\n".join(
            [
                "psycopg2==2.9.13",
                "uWSGI>=2.0,<2.1  # the server",
                "# a comment",
                "",
                "requests==2.34.2 \\",
                "    --hash=sha256:abc",
                "-r sub/other.txt",
                "-c constraints.txt",
                "--index-url https://example.org/simple",
                "pkg @ https://example.org/pkg.tar.gz#sha256=abc",
            ]
        )
        + "\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/other.txt").write_text("wagtail\n--requirement=../more.txt\n")
    (tmp_path / "more.txt").write_text("aws-requests-auth==0.4.3\n-r requirements.txt\n")
    (tmp_path / "constraints.txt").write_text("pinned-only==1.0\n")
    plan = {"req_dir": str(tmp_path), "top": ["requirements.txt", "missing.txt"]}
    plan["extra"] = ["gunicorn"]
    assert early_builds.requirement_lines(plan) == [
        "gunicorn",
        "psycopg2==2.9.13",
        "uWSGI>=2.0,<2.1",
        "pkg @ https://example.org/pkg.tar.gz#sha256=abc",
        "wagtail",
        "aws-requests-auth==0.4.3",  # included by an included file
    ]


def _utils() -> Any:
    pytest.importorskip("pip")  # the runtime uses pip's vendored packaging, as here
    return early_builds._Packaging()


def test_what_is_wanted_are_named_requirements_the_wheelhouse_has_no_fitting_release_of() -> None:
    utils = _utils()
    lines = [
        "psycopg2==2.9.13",
        "uWSGI>=2.0,<2.1",
        "uwsgi!=2.0.30",  # a name given twice: both
        "Django[argon2]>=5",
        "pywin32==311; sys_platform == 'win32'",
        "pkg @ https://example.org/pkg.tar.gz",
        "not a requirement !",
    ]
    published = [("django", "5.2.20"), ("psycopg2", "2.9.12")]
    found = early_builds.wanted(lines, published, utils)
    assert sorted(found) == ["psycopg2", "uwsgi"]  # django: the wheelhouse has a fit
    assert str(found["uwsgi"]) == str(utils.requirement("x!=2.0.30,<2.1,>=2.0").specifier)


@pytest.mark.parametrize(
    "line",
    [
        "psycopg2==2.9.13",
        "Django>=5.2,<5.3",
        "uWSGI >= 2.0 , < 2.1",
        "django[argon2, bcrypt]~=5.2.0",
        "gunicorn",
        "zope.interface===6.0",
        "pkg!=1.0.*,>=0.9",
        "a_b-c.d==1!2.0.post1",
        "pkg==1.0; python_version >= '3'",
        "pkg[x]>=1 ; sys_platform == 'win32'",
        "pkg @ https://example.org/pkg-1.0.tar.gz",
        "pkg (>=1.0)",
    ],
)
def test_a_plain_line_is_read_as_pips_parser_reads_it(line: str) -> None:
    """Plain lines skip pip's requirement parser (it imports pyparsing): same result."""
    utils = _utils()
    req = utils.requirement(line)
    marker_false = req.marker is not None and not req.marker.evaluate()
    expected = None if req.url or marker_false else (common.normalize(req.name), req.specifier)
    assert early_builds._named(line, utils) == expected


def test_a_line_neither_parser_reads_is_left_out() -> None:
    utils = _utils()
    lines = ["pkg =1.0", "pkg <> 1", "-e .", "pkg==1.0 extra"]
    assert early_builds.wanted(lines, [], utils) == {}


def test_the_release_fetched_early_is_the_highest_fit_its_best_wheel_else_its_sdist() -> None:
    utils = _utils()
    supported = ["cp311-cp311-manylinux_2_28_x86_64", "cp311-cp311-manylinux_2_17_x86_64"]
    supported.append("py3-none-any")
    spec = utils.requirement("psycopg2>=2.9").specifier
    files = [
        ("psycopg2-2.9.13-cp311-cp311-win_amd64.whl", "https://i/p1.whl", "a" * 64, False),
        ("psycopg2-2.9.13.tar.gz", "https://i/p.tar.gz", "b" * 64, False),
        ("psycopg2-2.9.12.tar.gz", "https://i/old.tar.gz", "c" * 64, False),
        ("psycopg2-2.9.14.tar.gz", "https://i/yanked.tar.gz", "d" * 64, True),
        ("psycopg2-3.0.0b1.tar.gz", "https://i/pre.tar.gz", "e" * 64, False),
        ("psycopg2-2.8.6.tar.gz", "https://i/older.tar.gz", "f" * 64, False),
    ]
    found = early_builds.release_to_fetch(files, "psycopg2", spec, supported, utils)
    assert found == ("sdist", "2.9.13", "https://i/p.tar.gz", "b" * 64)
    pinned = utils.requirement("psycopg2==2.9.12").specifier
    assert early_builds.release_to_fetch(files, "psycopg2", pinned, supported, utils) == (
        "sdist",
        "2.9.12",
        "https://i/old.tar.gz",
        "c" * 64,
    )
    # a release with wheels for this interpreter: the best of them (pip's tag order)
    any_wheel = ("psycopg2-2.9.13-py3-none-any.whl", "https://i/w.whl", "g" * 64, False)
    old_glibc = "psycopg2-2.9.13-cp311-cp311-manylinux_2_17_x86_64.whl"
    new_glibc = "psycopg2-2.9.13-cp311-cp311-manylinux_2_28_x86_64.whl"
    with_wheels = [
        *files,
        any_wheel,
        (old_glibc, "https://i/m17.whl", "h" * 64, False),
        (new_glibc, "https://i/m28.whl", "i" * 64, True),  # yanked
    ]
    assert early_builds.release_to_fetch(with_wheels, "psycopg2", spec, supported, utils) == (
        "wheel",
        "2.9.13",
        old_glibc,
        "https://i/m17.whl",
        "h" * 64,
    )
    found = early_builds.release_to_fetch([*files, any_wheel], "psycopg2", spec, supported, utils)
    assert found == ("wheel", "2.9.13", any_wheel[0], "https://i/w.whl", "g" * 64)
    no_hash = [*files, (any_wheel[0], any_wheel[1], None, False)]
    assert early_builds.release_to_fetch(no_hash, "psycopg2", spec, supported, utils) is None
    none_fits = utils.requirement("psycopg2>=4").specifier
    assert early_builds.release_to_fetch(files, "psycopg2", none_fits, supported, utils) is None
    no_sha = [(f, u, None, y) for f, u, _, y in files]
    assert early_builds.release_to_fetch(no_sha, "psycopg2", spec, supported, utils) is None
    junk = [("junk", "u", "e", False)]
    assert early_builds.release_to_fetch(junk, "x", spec, supported, utils) is None


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
    early._start_one("late", ("1.0", "https://i/late.tar.gz", "x"), None, {})  # after the end
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


def test_nothing_starts_for_pip_without_an_index_or_without_a_requirement(
    tmp_path: Path,
) -> None:
    ctx = _ctx(tmp_path)
    (tmp_path / "requirements.txt").write_text("psycopg2==2.9.13\nwagtail\n")
    ctx.plan.update(req_dir=str(tmp_path), top=["requirements.txt"])
    for other in ({"installer": "pip"}, {"no_index": True}, {"locked": []}, {"pins": []}):
        changed = types.SimpleNamespace(**{**vars(ctx), "plan": {**ctx.plan, **other}})
        assert early_builds.EarlyBuilds.start(changed, {}) is None, other
    (tmp_path / "requirements.txt").write_text("# nothing\n")
    assert early_builds.EarlyBuilds.start(ctx, {}) is None


def test_without_uv_a_downloaded_sdist_is_not_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = early_builds.EarlyBuilds(_ctx(tmp_path), {})
    sdist = tmp_path / "demo-1.0.tar.gz"
    sdist.write_bytes(b"")
    monkeypatch.setattr(early_builds.fetch, "fetch", lambda *args, **kw: str(sdist))
    early.use_uv(None)  # the run found no uv: pip builds everything
    early._start_one("demo", ("1.0", "https://i/demo-1.0.tar.gz", "x"), None, {})
    assert early.builds == {}


def test_a_page_that_cannot_be_read_only_means_the_build_starts_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _utils()

    def unreachable(*args: Any) -> Any:
        raise OSError("no route to host")

    monkeypatch.setattr(early_builds.fetch, "index_files", unreachable)
    early = early_builds.EarlyBuilds(_ctx(tmp_path), {"PIP_INDEX_URL": "https://i/simple"})
    os.makedirs(early.ctx.wheels)
    early._run(["psycopg2==2.9.13"], None)
    assert early.builds == {}
    said = capsys.readouterr().out
    assert "1 requirement(s) not fetched before the resolve (psycopg2: no route to host)" in said


def test_the_lookups_end_with_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No lookup thread outlives stop_rest (one frozen in the interpreter's shutdown while
    reading a page crashed the builder: exit 139), and none is a daemon."""
    _utils()
    ctx = _ctx(tmp_path)
    os.makedirs(ctx.wheels)
    (tmp_path / "requirements.txt").write_text("".join(f"pkg{i}\n" for i in range(40)))
    ctx.plan.update(req_dir=str(tmp_path), top=["requirements.txt"])
    pages: list[str] = []

    def slow_page(opener: Any, url: str, headers: Any) -> list[Any]:
        pages.append(url)
        time.sleep(0.2)
        return []

    monkeypatch.setattr(early_builds.fetch, "index_files", slow_page)
    early = early_builds.EarlyBuilds.start(ctx, {"PIP_INDEX_URL": "https://i/simple"})
    assert early is not None and early.thread is not None and not early.thread.daemon
    time.sleep(0.1)
    early.stop_rest()
    assert not early.thread.is_alive()
    assert 0 < len(pages) < 40, "the pages left were still read after the end"


def _wheel_pin(name: str, version: str, filename: str, sha: str) -> Any:
    return common.Pin(name, version, f"https://i/{filename}", sha, None, None)


def test_a_wheel_downloaded_early_is_used_only_for_the_pin_naming_that_very_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    early = _early(tmp_path)
    wheel_a, wheel_b = "a-1.0-py3-none-any.whl", "b-2.0-py3-none-any.whl"
    url_a, url_b = f"https://i/{wheel_a}", f"https://i/{wheel_b}"
    served = {url_a: b"wheel a", url_b: b"wheel b", "https://i/c.whl": b"wheel c"}

    def download(opener: Any, url: str, directory: str, headers: Any, stopped: Any) -> Any:
        path = os.path.join(directory, url.rsplit("/", 1)[1])
        Path(path).write_bytes(served[url])
        return path, hashlib.sha256(served[url]).hexdigest()

    monkeypatch.setattr(early_builds.fetch, "download_checked", download)
    sha_a, sha_b = (hashlib.sha256(served[url]).hexdigest() for url in (url_a, url_b))
    found_a = ("1.0", wheel_a, url_a, sha_a)
    assert early._download_one("a", found_a, None, {}) is None
    assert early._download_one("b", ("2.0", wheel_b, url_b, sha_b), None, {}) is None
    # the index served another file than its page said: not kept
    said = early._download_one("c", ("1.0", "c.whl", "https://i/c.whl", "0" * 64), None, {})
    assert said == "c: sha256 mismatch"
    pins = [
        _wheel_pin("A", "1.0", wheel_a, sha_a),  # the very file
        _wheel_pin("b", "2.0", wheel_b, "another sha"),  # another file by that name
        _wheel_pin("c", "1.0", "c.whl", "0" * 64),
    ]
    assert early.take_downloads(pins) == pins[1:]
    assert (Path(early.ctx.staging) / wheel_a).read_bytes() == b"wheel a"
    assert f"Downloaded {wheel_a} while uv resolved" in capsys.readouterr().out
    early.stop_rest()
    assert os.listdir(early.ctx.staging) == [wheel_a]  # b's early download is gone
    assert early._download_one("a", found_a, None, {}) is None  # after the end: not kept
    assert early.downloads == {}


def test_a_lookup_not_fetching_when_its_pin_asks_is_left_to_the_usual_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pin does not wait for a lookup still reading its page (that one fetches nothing
    now: the usual downloads run side by side); and once the pins are known, nothing
    more is looked up."""
    early = _early(tmp_path)
    queued = early_builds._Lookup()
    early.lookups["demo"] = queued
    assert early.take(_pin("demo", "1.0", "s1")) is None  # returns at once
    assert queued.skip
    wheel = _wheel_pin("demo", "1.0", "demo-1.0-py3-none-any.whl", "s")
    assert early.take_downloads([wheel]) == [wheel]
    _utils()
    os.makedirs(early.ctx.wheels)
    pages: list[str] = []
    monkeypatch.setattr(early_builds.fetch, "index_files", lambda o, url, h: pages.append(url))
    early._run(["more"], None)  # the resolve was quicker: nothing is queued
    assert "more" not in early.lookups and pages == []
    assert "could not start" not in capsys.readouterr().out
