"""collectstatic beside the early deps layer's load (build/early_static.py, issue 24), on
the real engine with the local index.

A first build of a Django app whose wheelhouse compiles an sdist (wd-cext-demo: the late
wheel, installed in the deps step's container before collectstatic) collects its static
files in the deps step's container while that layer loads, and no app container runs
collectstatic. The same source built again without a current image runs collectstatic
in the app step, the usual way: it must give the very same image (same static layer,
same image ID), and the SBOM's records were read back beside the collect."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import App, output, write_django
from pkgindex import Index

from nox_warpdrive.build import static_cache
from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.image import build_image
from nox_warpdrive.supply import gather

CSS = "/opt/app-root/src/collected/shop/site.css"
EARLY = "collectstatic ran in the deps step's container while its layer loaded"


def cat(engine: Engine, ref: str, path: str) -> str:
    return str(output(engine.client, ref, ["cat", path]).decode())


def test_static_files_collected_beside_the_deps_layers_load_are_the_app_steps(
    make_app: Any,
    engine: Engine,
    index_env: Index,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    app: App = make_app(["Django==5.2.19", "wd-cext-demo"])
    os.unlink(app.root / "wsgi.py")
    write_django(app.root)
    reads: list[int] = []
    real_read = gather._read_metadata

    def read_metadata(*args: Any) -> Any:
        reads.append(len(args[2]))
        return real_read(*args)

    monkeypatch.setattr(gather, "_read_metadata", read_metadata)
    lines: list[str] = []
    first = build_image(load_config(app.root), engine, lines.append)
    text = "\n".join(lines)
    assert EARLY in text, text
    assert "1 static file copied" in text, text
    assert "+ wd-cext-demo" in text, text  # the late wheel, installed there first
    assert cat(engine, first.image_id, CSS) == "body { color: red }\n"
    assert reads == [], "the SBOM's METADATA were read from the image, not beside the collect"

    # the same source, no current image: collectstatic in the app step, the same image
    # (without the host's index of collected files by static key, which would give the
    # first image's files: test_static_earlier_engine.py)
    engine.client.images.remove(app.image)
    shutil.rmtree(static_cache.cache_dir() / "keys")
    lines.clear()
    again = build_image(load_config(app.root), engine, lines.append)
    text = "\n".join(lines)
    assert EARLY not in text and "manage.py collectstatic" in text, text
    assert again.image_id == first.image_id
