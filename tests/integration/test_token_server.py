"""A registry whose token server is broken, on the real engine: a real HTTP server on a
free loopback port answers every registry call with 401 and a Bearer realm whose token
URL fails (404, 500, not JSON, nothing listening). Every path through the engine names
the token server and its URL: ``--cache-from`` (never "a first run"), ``--push``,
``--push-only``, ``wheelhouse -- --pull/--push``."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from conftest import App
from pkgindex import Index
from test_reliability import run_nox
from tokenfault import broken_token_server

from nox_warpdrive.build.deps import deps_name_of
from nox_warpdrive.engine import Engine, registry_check
from nox_warpdrive.errors import RegistryError, TokenServerError

SAID = {
    "404": "answered HTTP 404 (404 page not found)",
    "500": "answered HTTP 500 (internal error)",
    "json": "answered HTTP 200 with something that is not JSON (text/html)",
    "unreachable": "(Connection refused)",
}


@pytest.mark.parametrize("mode", list(SAID))
def test_a_pull_through_the_engine_names_the_token_server(engine: Engine, mode: str) -> None:
    with broken_token_server(mode) as fault, pytest.raises(TokenServerError) as failed:
        registry_check.pull(engine, f"{fault.registry}/app/cache:latest", print)
    text = str(failed.value)
    assert f"token server of {fault.registry} ({fault.token_url})" in text, text
    assert SAID[mode] in text, text
    assert failed.value.fix and fault.token_url in failed.value.fix


def test_a_push_through_the_engine_names_the_token_server(engine: Engine) -> None:
    with broken_token_server("404") as fault:
        ref = f"{fault.registry}/app/x:v1"
        engine.client.api.tag("warpdrive/python:3.11-bookworm", f"{fault.registry}/app/x", "v1")
        try:
            with pytest.raises(RegistryError) as failed:
                registry_check.push(engine, ref, print)
        finally:
            engine.client.api.remove_image(ref)
    text = str(failed.value)
    assert f"pushing {ref} failed: the token server of {fault.registry}" in text, text
    assert "error parsing" not in text and "docker login" not in text, text


def _untag(engine: Engine, *refs: str) -> None:
    """The images tagged ``refs``, and the deps images builds tagged ``refs`` made (named
    after the tag's repository: build.deps.deps_name_of)."""
    deps = {f"warpdrive-deps/{deps_name_of(ref)}:" for ref in refs}
    for ref in refs:
        with contextlib.suppress(Exception):
            engine.client.api.remove_image(ref)
    for img in engine.client.images.list():
        if any(t.startswith(tuple(deps)) for t in img.tags):
            with contextlib.suppress(Exception):
                engine.client.images.remove(img.id, force=True)


def test_every_session_names_the_token_server(make_app: Any, engine: Engine, index: Index) -> None:
    app: App = make_app(["wd-pure-demo"])
    with broken_token_server("404") as fault:
        ref, cache = f"{fault.registry}/app:v1", f"{fault.registry}/app:cache"
        named = f"the token server of {fault.registry} ({fault.token_url}) answered HTTP 404"
        try:
            code, text = run_nox(app, "image", index, "--tag", ref, "--cache-from", cache, "--push")
            assert code != 0, text
            assert f"cannot pull the cache {cache} ({named}" in text, text
            assert "first run" not in text, text
            assert f"pushing {ref} failed: {named}" in text, text
            assert "error parsing" not in text, text

            code, text = run_nox(app, "image", index, "--tag", ref, "--push-only")
            assert code != 0, text
            assert f"cannot build in the registry ({named}" in text, text
            assert f"pushing {ref} failed: {named}" in text, text

            wh = f"{fault.registry}/app-wheelhouse"
            fresh: App = make_app(["wd-pure-demo"])  # an empty volume: --pull is tried
            code, text = run_nox(fresh, "wheelhouse", index, "--pull", wh, "--push", wh)
            assert code != 0, text
            assert f"cannot pull the wheelhouse image {wh}:" in text, text
            assert f"cannot reach the wheelhouse image {wh}:" in text, text  # the push
            assert text.count(named) == 2 and "first run" not in text, text
        finally:
            _untag(engine, ref)
