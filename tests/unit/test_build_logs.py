"""Quiet success: an sdist build's output goes to its log in the volume (shown as it
comes only with --verbose); one line says it was built; a failure carries its last 60
lines and the log's place, which the host turns into the command that prints it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from nox_warpdrive.runtime import builds, common, failures
from nox_warpdrive.wheelhouse.build import _failure, builder_failure

KEY = "cp311-cp311-linux_x86_64-glibc2.36-debian12"


def ctx_for(tmp_path: Path, verbose: bool = False) -> Any:
    return common.RunState({"verbose": verbose}, str(tmp_path / KEY), str(tmp_path))


def noisy(lines: int, code: int = 0) -> list[str]:
    script = f"for i in range({lines}): print('gcc -c x%d.c' % i)\nraise SystemExit({code})"
    return [sys.executable, "-c", script]


def test_the_output_goes_to_the_log_not_the_screen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, echo = builds.build_log(ctx_for(tmp_path), "wd-cext-demo==0.1.0")
    assert path == str(tmp_path / KEY / "logs" / "wd-cext-demo==0.1.0.log") and not echo
    tee = builds.Tee(noisy(390), log=path, echo=echo)
    assert tee.wait() == 0
    builds.built_line("wd-cext-demo==0.1.0", tee)
    out = capsys.readouterr().out
    assert "gcc" not in out
    assert "built wd-cext-demo==0.1.0 in " in out
    assert f"(its output: {KEY}/logs/wd-cext-demo==0.1.0.log)" in out
    assert Path(path).read_text().count("gcc -c") == 390 and tee.lines == 390


def test_verbose_shows_it_and_keeps_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, echo = builds.build_log(ctx_for(tmp_path, verbose=True), "x==1")
    tee = builds.Tee(noisy(3), log=path, echo=echo)
    tee.wait()
    builds.built_line("x==1", tee)
    out = capsys.readouterr().out
    assert out.count("gcc -c") == 3 and "its output:" not in out
    assert Path(path).read_text().count("gcc -c") == 3


def test_a_strange_spec_makes_a_plain_file_name(tmp_path: Path) -> None:
    path, _ = builds.build_log(ctx_for(tmp_path), "../../etc/passwd x")
    assert Path(path).parent == tmp_path / KEY / "logs"


def test_a_failed_build_reports_its_last_60_lines_and_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, echo = builds.build_log(ctx_for(tmp_path), "wd-broken-demo==0.1.0")
    tee = builds.Tee(noisy(100, code=1), log=path, echo=echo)
    code = builds.build_failed(tee, "wd-broken-demo==0.1.0", tee.wait())
    assert code == 1
    failure = _failure(capsys.readouterr().out.splitlines())
    assert failure["stage"] == "compile" and failure["package"] == "wd-broken-demo==0.1.0"
    assert len(failure["detail"]) == 60 and failure["detail"][-1] == "gcc -c x99.c"
    assert failure["log"] == f"{KEY}/logs/wd-broken-demo==0.1.0.log"
    error = builder_failure(1, failure, {}, ("vol", "sha256:" + "ab" * 32))
    assert "compiling wd-broken-demo==0.1.0 failed" in error.message
    assert "gcc -c x40.c" in error.message and "gcc -c x39.c" not in error.message
    assert (
        f"`docker run --rm -v vol:/w:ro {'ab' * 6} cat /w/{KEY}/logs/wd-broken-demo==0.1.0.log`"
        in error.message
    )


def test_a_log_outside_the_volume_is_not_named() -> None:
    failure = {"stage": "compile", "detail": ["x"], "log": "/etc/shadow"}
    assert "the whole output" not in builder_failure(1, failure, {}, ("v", "i")).message


def test_failures_without_a_log_keep_15_lines(capsys: pytest.CaptureFixture[str]) -> None:
    failures.report_failure("download", 1, [f"line {i}" for i in range(40)])
    failure = _failure(capsys.readouterr().out.splitlines())
    assert failure["detail"] == [f"line {i}" for i in range(25, 40)]


def test_verbose_is_an_option_of_wheelhouse_and_image() -> None:
    from nox_warpdrive.sessions import image_parser, wheelhouse_parser

    assert wheelhouse_parser().parse_args(["--verbose"]).verbose
    assert image_parser().parse_args(["--verbose", "--tag", "x"]).verbose
    assert not image_parser().parse_args([]).verbose


def test_the_log_holds_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        common, "secret_env", lambda: {"PIP_INDEX_URL": "https://me:t0ken@index.example/simple"}
    )
    path = tmp_path / "x.log"
    script = (
        "print('GET https://me:t0ken@index.example/simple/x/');print('from http://other:pw@host/y')"
    )
    tee = builds.Tee([sys.executable, "-c", script], log=str(path), echo=False)
    tee.wait()
    text = path.read_text()
    assert "t0ken" not in text and "pw@" not in text and text.count("<redacted>") == 2


def test_a_log_that_cannot_be_written_does_not_stop_the_build(tmp_path: Path) -> None:
    tee = builds.Tee(noisy(20000), log=str(tmp_path / "missing-dir" / "x.log"), echo=False)
    assert tee.wait() == 0 and tee.lines == 20000


def test_a_full_disk_under_the_log_does_not_block_the_build() -> None:
    """/dev/full: every write fails with ENOSPC, as a full volume does."""
    tee = builds.Tee(noisy(20000), log="/dev/full", echo=False)
    assert tee.wait() == 0 and tee.lines == 20000
