"""A resolution that failed because every release needs a newer Python than the base
image's says so, and points at the base image, not at the requirement's name or index.
The builder's text is what pip and uv really printed (captured against the local test
index with the fixture wd-newpy-demo, Requires-Python >=3.99, in the 3.11 builder)."""

from __future__ import annotations

import json

import pytest

from nox_warpdrive.runtime import failures
from nox_warpdrive.wheelhouse.build import _failure, _python_image, builder_failure
from nox_warpdrive.wheelhouse.buildenv import build_secrets

SECRETS = build_secrets({})

#: pip 25 in the builder image: `pip wheel --no-deps --index-url URL wd-newpy-demo`
PIP_NONE_LEFT = [
    "Looking in indexes: http://127.0.0.1:35663/simple/",
    "ERROR: Ignored the following versions that require a different python version: "
    "0.1.0 Requires-Python >=3.99",
    "ERROR: Could not find a version that satisfies the requirement wd-newpy-demo "
    "(from versions: none)",
    "ERROR: No matching distribution found for wd-newpy-demo",
]

#: pip's line when Django 6 is asked of a 3.11 base and Django 5 releases exist
PIP_SOME_LEFT = [
    "ERROR: Ignored the following versions that require a different python version: "
    "6.0 Requires-Python >=3.12; 6.0.1 Requires-Python >=3.12",
    "ERROR: Could not find a version that satisfies the requirement django>=6 "
    "(from versions: 5.1, 5.2, 5.2.8)",
    "ERROR: No matching distribution found for django>=6",
]

#: uv 0.13.9: `uv pip compile --python python3 --index-url URL` of wd-newpy-demo
UV_TEXT = [
    "error: No solution found when resolving dependencies",
    "  cause: Because the current Python version (3.11.2) does not satisfy Python>=3.99 "
    "and wd-newpy-demo==0.1.0 depends on Python>=3.99, we can conclude that "
    "wd-newpy-demo==0.1.0 cannot be used.",
    "         And because only wd-newpy-demo==0.1.0 is available and you require "
    "wd-newpy-demo, we can conclude that your requirements are unsatisfiable.",
]


@pytest.fixture(autouse=True)
def builder_python_311(monkeypatch: pytest.MonkeyPatch) -> None:
    """The builder's Python is the test base image's, 3.11, whatever runs the tests."""
    newer = failures.needs_newer
    monkeypatch.setattr(failures, "needs_newer", lambda spec: newer(spec, (3, 11)))


def reported(lines: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    stage, package = failures.classify(1, lines)
    failures.report_failure(stage, 1, lines, package)
    return _failure(capsys.readouterr().out.splitlines())


def test_pip_with_no_release_left(capsys: pytest.CaptureFixture[str]) -> None:
    failure = reported(PIP_NONE_LEFT, capsys)
    assert failure["stage"] == "resolve" and failure["package"] == "wd-newpy-demo"
    assert failure["needs"] == [">=3.99"] and failure["versions"] == ["0.1.0"]
    assert failure["all"] is True
    error = builder_failure(1, failure, SECRETS)
    assert "every release of wd-newpy-demo needs Python >=3.99 (left out: 0.1.0)" in (error.message)
    assert f"the base image has Python {failure['python']}" in error.message
    assert error.fix is not None and "base image" in error.fix and "satisfies >=3.99" in error.fix
    assert "private package" not in str(error)


def test_pip_with_older_releases_left(capsys: pytest.CaptureFixture[str]) -> None:
    failure = reported(PIP_SOME_LEFT, capsys)
    assert failure["needs"] == [">=3.12"] and failure["versions"] == ["6.0", "6.0.1"]
    assert failure["all"] is False
    error = builder_failure(1, failure, SECRETS)
    assert "the releases of django>=6 that would fit need Python >=3.12" in error.message
    assert error.fix is not None and "e.g. python:3.12-slim" in error.fix
    assert "require a release of django>=6 that supports Python 3." in error.fix


def test_uv_says_it_with_the_python_version(capsys: pytest.CaptureFixture[str]) -> None:
    failure = reported(UV_TEXT, capsys)
    assert failure["python"] == "3.11.2" and failure["needs"] == [">=3.99"]
    error = builder_failure(1, failure, SECRETS)
    assert "needs Python >=3.99" in error.message and "Python 3.11.2" in error.message


def test_a_missing_name_keeps_the_index_fix(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        "ERROR: Could not find a version that satisfies the requirement nosuch "
        "(from versions: none)",
        "ERROR: No matching distribution found for nosuch",
    ]
    failure = reported(lines, capsys)
    assert "needs" not in failure
    error = builder_failure(1, failure, SECRETS)
    assert error.fix is not None and "private package needs its index" in error.fix


@pytest.mark.parametrize(
    ("spec", "example"),
    [(">=3.12", ", e.g. python:3.12-slim"), (">3.12", ", e.g. python:3.13-slim"), ("<3", "")],
)
def test_the_example_image(spec: str, example: str) -> None:
    assert _python_image(spec) == example


def test_the_report_line_is_json() -> None:
    data = failures.python_mismatch(PIP_NONE_LEFT)
    assert json.loads(json.dumps(data)) == data


def test_releases_left_out_for_an_older_python_are_not_the_cause(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = [
        "ERROR: Ignored the following versions that require a different python version: "
        "0.1 Requires-Python <3; 0.2 Requires-Python ==2.7.*",
        "ERROR: Could not find a version that satisfies the requirement old==9 "
        "(from versions: 1.0)",
        "ERROR: No matching distribution found for old==9",
    ]
    failure = reported(lines, capsys)
    assert "needs" not in failure
    assert "private package" in (builder_failure(1, failure, SECRETS).fix or "")


@pytest.mark.parametrize(
    ("spec", "newer"),
    [(">=3.12", True), (">3.11", True), ("~=3.13", True), (">=3.8", False), ("<3", False)],
)
def test_needs_newer(spec: str, newer: bool) -> None:
    assert failures.needs_newer(spec) is newer  # as the builder's 3.11 sees it


def test_the_releases_named_are_the_requirements_own_and_long_lines_are_cut() -> None:
    """bakerydemo's `Django>=6.0,<6.1` on a 3.11 base: pip leaves out 21 releases (6.1.x
    among them, which the requirement excludes anyway) and lists every Django release
    ever made on one line."""
    versions = [f"6.0.{n}" for n in range(1, 11)] + ["6.1", "6.1.1", "6.1rc1"]
    failure = {
        "stage": "resolve",
        "package": "Django<6.1,>=6.0",
        "needs": [">=3.12"],
        "versions": versions,
        "python": "3.11.2",
        "detail": ["ERROR: Could not find a version (from versions: " + "1.0, " * 500 + ")"],
    }
    message = builder_failure(1, failure, SECRETS).message
    assert "(left out: 6.0.6, 6.0.7, 6.0.8, 6.0.9, 6.0.10 and 5 more)" in message
    assert "6.1rc1" not in message
    long_line = next(line for line in message.splitlines() if "from versions" in line)
    assert len(long_line) < 500 and long_line.endswith("characters)")
