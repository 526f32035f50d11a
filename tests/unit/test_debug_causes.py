"""Errors keep their cause, and WARPDRIVE_DEBUG=1 (or --debug) shows the chain under the
usual message; without it the output is the message and the fix, no traceback."""

from __future__ import annotations

import importlib
import socket
import traceback
from pathlib import Path

import pytest
from test_sessions import NOXFILE, nox_run, output
from unit_support import write

from nox_warpdrive.engine.base import foreign_errors
from nox_warpdrive.errors import EngineError, WarpdriveError, cause_of, cause_report, causes

sessions_module = importlib.import_module("nox_warpdrive.sessions")


def refused() -> EngineError:
    """An EngineError two causes deep, as a refused connection gives."""
    try:
        try:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except OSError as exc:
                raise ValueError("no answer\nsecond line") from exc
        except ValueError as exc:
            raise EngineError("no Docker engine answers", fix="start one") from exc
    except EngineError as exc:
        return exc
    raise AssertionError("not raised")


def test_causes_follow_from_then_the_implicit_context() -> None:
    error = refused()
    assert [type(c) for c in causes(error)] == [ValueError, ConnectionRefusedError]
    try:
        try:
            raise KeyError("k")
        except KeyError:
            raise WarpdriveError("while handling") from None
    except WarpdriveError as exc:
        assert causes(exc) == []  # `from None` hides the context
    try:
        try:
            raise KeyError("k")
        except KeyError:
            raise WarpdriveError("while handling")  # noqa: B904 - the implicit context
    except WarpdriveError as exc:
        assert [type(c) for c in causes(exc)] == [KeyError]


def test_causes_stop_at_a_loop() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert causes(a) == [b]


def test_cause_report_names_each_cause_and_the_innermost_traceback() -> None:
    report = cause_report(refused())
    lines = report.splitlines()
    assert lines[0] == "warpdrive debug: the chain of causes"
    assert lines[1] == "  caused by ValueError: no answer"
    assert lines[2] == "    second line"  # a message of many lines stays indented
    assert lines[3] == "  caused by ConnectionRefusedError: [Errno 111] Connection refused"
    assert lines[4] == "  traceback of ConnectionRefusedError:"
    assert lines[5].strip() == "Traceback (most recent call last):"
    assert "in refused" in report  # the frame where it was raised
    assert lines[-1].strip() == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert "no Docker engine answers" not in report  # the message is shown above it, once


def test_cause_report_of_an_error_with_no_cause_is_its_own_traceback() -> None:
    try:
        raise WarpdriveError("bad key", fix="fix it")
    except WarpdriveError as exc:
        report = cause_report(exc)
    assert report.splitlines()[0] == "warpdrive debug: no cause"
    assert "traceback of WarpdriveError:" in report
    assert "nox_warpdrive.errors.WarpdriveError: bad key" in report


def test_foreign_types_are_named_with_their_module() -> None:
    class Refusal(Exception):
        pass

    error = EngineError("x")
    error.__cause__ = Refusal("said no")
    assert f"caused by {__name__}.{Refusal.__qualname__}: said no" in cause_report(error)


def test_an_error_told_again_is_raised_from_the_first_ones_cause() -> None:
    first = refused()
    assert cause_of(first) is first.__cause__
    try:
        raise EngineError(first.message, fix="a better fix") from cause_of(first)
    except EngineError as told:
        assert [type(c) for c in causes(told)] == [ValueError, ConnectionRefusedError]


def test_the_engine_translation_keeps_the_cause() -> None:
    with pytest.raises(EngineError) as info, foreign_errors("pulling"):
        raise refused()  # an EngineError with no fix: given one, its cause kept
    assert info.value.fix and info.value.message == "no Docker engine answers"
    assert [type(c) for c in causes(info.value)] == [ValueError, ConnectionRefusedError]
    assert "in refused" in "".join(traceback.format_tb(info.value.__traceback__))
    with pytest.raises(EngineError) as info, foreign_errors("pulling"):
        raise ConnectionResetError(104, "Connection reset by peer")
    assert isinstance(info.value.__cause__, ConnectionResetError)


@pytest.mark.parametrize(
    "parser", ["wheelhouse_parser", "image_parser", "run_parser", "serve_parser", "doctor_parser"]
)
def test_every_session_takes_debug(parser: str) -> None:
    assert getattr(sessions_module, parser)().parse_args(["--debug"]).debug is True


@pytest.mark.parametrize(
    ("env", "posargs", "wanted"),
    [
        ("", [], False),
        ("0", [], False),
        ("1", [], True),
        ("", ["--tag", "x:1", "--debug"], True),
    ],
)
def test_debug_wanted(
    monkeypatch: pytest.MonkeyPatch, env: str, posargs: list[str], wanted: bool
) -> None:
    monkeypatch.setenv("WARPDRIVE_DEBUG", env)
    assert sessions_module.debug_wanted(posargs) is wanted


# ----------------------------------------------------------------------------- real nox


def free_port() -> int:
    """A local port nothing listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def app(tmp_path: Path) -> Path:
    write(tmp_path, "noxfile.py", NOXFILE)
    write(tmp_path, "pyproject.toml", '[project]\nname = "site"\n')
    write(tmp_path, "requirements.txt", "flask\n")
    write(tmp_path, "wsgi.py", "application = None\n")
    return tmp_path


def test_a_refusing_engine_gives_message_and_fix_and_no_traceback(app: Path) -> None:
    proc = nox_run(app, "-s", "image", DOCKER_HOST=f"tcp://127.0.0.1:{free_port()}")
    text = output(proc)
    assert proc.returncode != 0, text
    assert "no Docker engine answers at tcp://127.0.0.1:" in text
    assert "Connection refused" in text and "fix: " in text
    assert "Traceback" not in text and "warpdrive debug" not in text
    assert "caused by" not in text


@pytest.mark.parametrize("how", ["env", "posarg"])
def test_debug_shows_the_refused_connection_underneath(app: Path, how: str) -> None:
    env = {"DOCKER_HOST": f"tcp://127.0.0.1:{free_port()}"}
    args = ["-s", "image"]
    if how == "env":
        env["WARPDRIVE_DEBUG"] = "1"
    else:
        args += ["--", "--debug"]
    proc = nox_run(app, *args, **env)
    text = output(proc)
    assert proc.returncode != 0, text
    message = text.index("no Docker engine answers")
    fix = text.index("fix: ", message)
    chain = text.index("warpdrive debug: the chain of causes", fix)  # under the message
    assert "caused by docker.errors.DockerException" in text[chain:]
    assert "caused by ConnectionRefusedError: [Errno 111] Connection refused" in text[chain:]
    assert "traceback of ConnectionRefusedError:" in text[chain:]
    assert "Traceback (most recent call last):" in text[chain:]
