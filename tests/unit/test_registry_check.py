"""Pulls and pushes whose engine answer hides the registry's (registry_check.py): a
token server answering 404 reached docker-py as "error parsing HTTP 404 response body",
read as "no such image" (``--cache-from``: "a first run" for ever) or a raw push error.
The engine's answer against the fake registry of test_registry_api, on a real socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from test_registry_api import FakeRegistry
from test_registry_api import registry as registry

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import ImageInfo, registry_check
from nox_warpdrive.engine.docker_registry import _not_found
from nox_warpdrive.errors import EngineError, RegistryError, TokenServerError
from nox_warpdrive.registry import cache as registry_module

#: what dockerd 20.10 relays when the token URL answers 404 (measured on this engine)
PARSE_404 = (
    'HTTP 500: Head "http://127.0.0.1:5000/v2/app/cache/manifests/latest": error parsing '
    "HTTP 404 response body: invalid character 'p' after top-level value: "
    '"404 page not found\\n"'
)


def test_a_404_body_the_engine_could_not_parse_is_not_no_such_image() -> None:
    assert not _not_found(PARSE_404)
    assert _not_found("manifest for 127.0.0.1:5000/app:v1 not found: manifest unknown")


class EngineSaying(FakeEngine):
    """An engine whose pulls and pushes fail as dockerd relays a broken token server."""

    def pull(self, ref: str, out: Any = None) -> ImageInfo | None:
        raise EngineError(f"cannot pull {ref}: {PARSE_404}", fix="check that it is reachable")

    def push(self, ref: str, out: Any) -> str:
        raise EngineError(f"pushing {ref} failed: {PARSE_404}", fix="`docker login`")


@pytest.fixture
def broken(registry: str) -> str:
    FakeRegistry.mode, FakeRegistry.token_fault = "bearer", "404"
    return registry


def test_a_pull_names_the_token_server(broken: str) -> None:
    with pytest.raises(TokenServerError) as failed:
        registry_check.pull(EngineSaying(), f"{broken}/wd/app:cache", print)
    assert f"(http://{broken}/token) answered HTTP 404" in str(failed.value)
    assert isinstance(failed.value.__cause__, EngineError)  # the engine's word is kept


def test_a_push_names_the_token_server_not_a_login(broken: str) -> None:
    with pytest.raises(RegistryError) as failed:
        registry_check.push(EngineSaying(), f"{broken}/wd/app:v1", print)
    text = str(failed.value)
    assert text.startswith(f"pushing {broken}/wd/app:v1 failed: the token server of {broken}")
    assert "the image is built and tagged here" in text
    assert "docker login" not in text and "error parsing" not in text


def test_cache_from_warns_of_the_token_server_not_a_first_run(broken: str, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "site"\nversion = "0"\n')
    (tmp_path / "wsgi.py").write_text("application = None\n")
    cfg = load_config(tmp_path)
    lines: list[str] = []
    base = ImageInfo("sha256:base", (), {}, 1, 1, "")
    ref = f"{broken}/wd/app:cache"
    assert registry_module.cache_from(EngineSaying(), cfg, ref, base, lines.append) is None
    assert lines[0].startswith(f"warpdrive: warning: cannot pull the cache {ref} (the token")
    assert f"http://{broken}/token" in lines[1]
    assert not any("first run" in line for line in lines)


def test_when_the_registry_answers_as_a_registry_the_engine_word_stands(registry: str) -> None:
    """The registry is fine (anonymous, no such image): the engine's failure is its own."""
    with pytest.raises(EngineError):
        registry_check.pull(EngineSaying(), f"{registry}/wd/app:cache", print)
    with pytest.raises(EngineError):
        registry_check.push(EngineSaying(), f"{registry}/wd/app:v1", print)


def test_a_registry_this_host_cannot_reach_leaves_the_engine_word() -> None:
    """A remote engine may reach what this host cannot: no guess from here."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EngineError):
        registry_check.pull(EngineSaying(), f"127.0.0.1:{port}/wd/app:cache", print)


def test_a_refused_login_keeps_the_engine_word(registry: str) -> None:
    """The engine already names a refused login with the config file it read."""
    FakeRegistry.mode = "basic"
    engine = EngineSaying()
    engine.logins[registry] = ("someone", "wrong-password")
    with pytest.raises(EngineError) as failed:
        registry_check.push(engine, f"{registry}/wd/app:v1", print)
    assert "`docker login`" in str(failed.value)
