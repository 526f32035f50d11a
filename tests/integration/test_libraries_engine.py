"""An image that starts, or no image: a package compiled in the builder against a
library the base image lacks (libpython3.X.so, as uwsgi links it) fails the build, naming
the library, its Debian package, the package that needs it and the fix; the tag stays."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import App
from pkgindex import Index

from nox_warpdrive.build.libraries import MissingLibraries
from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.image import build_image


def test_a_library_the_base_image_lacks_fails_the_build_and_keeps_the_tag(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    lines: list[str] = []
    first = build_image(load_config(app.root), engine, lines.append)
    # the compiled wheel goes on the deps layer built early: checked there
    assert any("compiled files checked" in line for line in lines), lines

    app.requirements.append("wd-embed-demo")
    app.write()
    lines.clear()
    with pytest.raises(MissingLibraries) as exc:
        build_image(load_config(app.root), engine, lines.append)
    text = str(exc.value)
    assert "libpython3.11.so.1.0 (Debian package libpython3.11)" in text, text
    assert "needed by wd-embed-demo" in text and "_embed.cpython-311" in text, text
    assert "the base image warpdrive/python:3.11-bookworm lacks" in text, text
    assert "apt-get install -y --no-install-recommends libpython3.11" in (exc.value.fix or "")
    tagged = engine.image(app.image)
    assert tagged is not None and tagged.id == first.image_id, "the tag moved"


def test_a_whole_deps_layer_built_in_memory_is_checked_too(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    """The wheelhouse built first (no deps layer started early, none to add to): the
    deps layer is built whole, in memory, and exported; the check fails it the same way."""
    from nox_warpdrive.wheelhouse.build import build_wheelhouse

    app: App = make_app(["wd-embed-demo"])
    build_wheelhouse(load_config(app.root), engine, lambda line: None)
    lines: list[str] = []
    with pytest.raises(MissingLibraries) as exc:
        build_image(load_config(app.root), engine, lines.append, no_index=True)
    assert "libpython3.11.so.1.0 (Debian package libpython3.11)" in str(exc.value)
    assert not any("adding" in line for line in lines), "it was built on another deps layer"
    assert engine.image(app.image) is None, "an image was tagged"
