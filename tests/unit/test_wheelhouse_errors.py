"""The wheelhouse's errors name the cause the builder reported, and the fix for that
cause; credentials never appear in them."""

from __future__ import annotations

import json
import socket

import pytest

from nox_warpdrive.errors import BuildError
from nox_warpdrive.runtime.fetch import unreachable
from nox_warpdrive.runtime.protocol import FAILURE_PREFIX
from nox_warpdrive.wheelhouse.build import _failure, builder_failure
from nox_warpdrive.wheelhouse.buildenv import build_secrets

SECRETS = build_secrets({"PIP_INDEX_URL": "https://user:s3cret@index.example/simple"})


@pytest.mark.parametrize(
    ("stage", "package", "words", "fix_words"),
    [
        ("compile", "cext==1.0", "compiling cext==1.0 failed", "-dev headers"),
        ("resolve", "nosuch", "no version of nosuch", "PIP_INDEX_URL"),
        ("download", None, "downloading packages failed", "proxy"),
        ("network", None, "cannot reach the package index", 'network = "host"'),
        ("disk", None, "engine's storage is full", "docker system df"),
        ("internal", None, "builder failed", "bug"),
    ],
)
def test_each_cause_has_its_message_and_fix(
    stage: str, package: str | None, words: str, fix_words: str
) -> None:
    failure = {"stage": stage, "package": package, "detail": ["last line"]}
    error = builder_failure(1, failure, SECRETS)
    assert isinstance(error, BuildError)
    assert words in error.message
    assert "last line" in error.message
    assert error.fix is not None and fix_words in error.fix
    assert "manifest is unchanged" in error.message


def test_a_killed_builder_without_a_report() -> None:
    error = builder_failure(137, {}, SECRETS)
    assert "killed" in error.message and "137" in error.message
    assert error.fix is not None and "memory" in error.fix


def test_the_generic_failure_does_not_blame_headers() -> None:
    error = builder_failure(2, {}, SECRETS)
    assert "exit code 2" in error.message
    assert "-dev" not in str(error)


def test_credentials_in_the_details_are_redacted() -> None:
    failure = {
        "stage": "download",
        "detail": ["GET https://user:s3cret@index.example/simple/x/ failed"],
    }
    assert "s3cret" not in str(builder_failure(1, failure, SECRETS))


def test_the_last_failure_line_is_read() -> None:
    lines = [
        "noise",
        FAILURE_PREFIX + json.dumps({"stage": "resolve"}),
        FAILURE_PREFIX + json.dumps({"stage": "compile"}),
    ]
    assert _failure(lines) == {"stage": "compile"}
    assert _failure(["noise", FAILURE_PREFIX + "{not json"]) == {}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_index_is_said_at_once() -> None:
    """The builder tries one connection to the index (or its proxy) before pip and uv
    would retry for minutes: refused, it says where, in one line; a listening one, or
    a proxy bypassed, or a file:// index, passes."""
    port = closed_port()
    env = {"PIP_INDEX_URL": f"http://127.0.0.1:{port}/simple/"}
    why = unreachable(env, timeout=2)
    assert why is not None and f"127.0.0.1:{port} from the build container" in why
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        open_port = listening.getsockname()[1]
        assert unreachable({"PIP_INDEX_URL": f"http://127.0.0.1:{open_port}/"}) is None
        # through a proxy that is down: the proxy is what is named
        proxied = {
            "PIP_INDEX_URL": f"https://127.0.0.1:{open_port}/simple/",
            "HTTPS_PROXY": f"http://127.0.0.1:{port}",
        }
        why = unreachable(proxied, timeout=2)
        assert why is not None and "(its proxy)" in why
        assert unreachable({**proxied, "NO_PROXY": "127.0.0.1"}, timeout=2) is None
    assert unreachable({"PIP_INDEX_URL": "file:///wheels/simple"}) is None
    assert unreachable({**env, "PIP_NO_INDEX": "1"}) is None
