"""A top requirement's sdist compiled while uv resolves (runtime/early_builds.py, issue
24), on the real engine with the local index.

``wd-cext-demo>=0.1`` names its project before any resolve, and the index has only the
sdist of its highest release: the builder starts compiling it at once, and the
resolve's pin takes that build (the same sdist, by its sha256) instead of compiling it
again. The wheel must be the very wheel the usual way makes (``--upgrade``, which starts nothing
before the resolve: it is compiled after it), byte for byte, and nothing of the build
left in the volume. The other top requirement, ``wd-pure-demo``, has a wheel: it is
downloaded while uv resolves, and its pin takes it."""

from __future__ import annotations

import dataclasses
from typing import Any

from conftest import App
from pkgindex import Index
from test_build import manifest, volume_listing, wheelhouse

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.wheelhouse.build import build_wheelhouse

EARLY = "building wd-cext-demo==0.1.0 while uv resolves"


def cext_wheel(data: dict[str, Any]) -> tuple[str, str]:
    found = [(fn, sha) for fn, sha in data["wheels"].items() if fn.startswith("wd_cext_demo-")]
    assert len(found) == 1, data["wheels"]
    return found[0]


def test_a_top_requirements_sdist_is_compiled_while_uv_resolves_into_the_same_wheel(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    early: App = make_app(["wd-pure-demo", "wd-cext-demo>=0.1"])
    lines: list[str] = []
    wheelhouse(early, engine, lines)
    text = "\n".join(lines)
    assert EARLY in text, text
    assert text.index(EARLY) < text.index(" pinned, "), "not started before the resolve ended"
    assert text.count("building wd-cext-demo") == 1, "compiled twice"
    assert "built wd-cext-demo==0.1.0 in" in text, text
    # the other top requirement has a wheel: downloaded while uv resolved, and taken
    assert "Downloaded wd_pure_demo-0.1.0-py3-none-any.whl while uv resolved" in text, text
    early_wheel = cext_wheel(manifest(engine, early))
    listing = volume_listing(engine, early.volume)
    assert not [p for p in listing if "early-" in p or "staging-" in p], listing

    # the usual way: --upgrade starts nothing before the resolve, so the sdist is
    # compiled after it
    usual: App = make_app(["wd-pure-demo", "wd-needs-cext-demo"])
    lines.clear()
    cfg = dataclasses.replace(load_config(usual.root), upgrade=True)
    build_wheelhouse(cfg, engine, lines.append)
    text = "\n".join(lines)
    assert "while uv resolve" not in text, text
    assert "building wd-cext-demo==0.1.0" in text, text
    assert cext_wheel(manifest(engine, usual)) == early_wheel
