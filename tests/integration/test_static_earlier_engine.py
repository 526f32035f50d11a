"""A package added, then taken out again (issue 24's inner loop): the build after the
removal installs fewer packages than the current image, so that image's collected
static files are not reused (static.same_packages_or_more), and the image that had
them lost its tag to the add. The host's index by static key (static_cache.remember_key)
finds that earlier image's files: no collectstatic runs, and the result is the very
image of the first build. Real engine, real index."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import App, write_django
from pkgindex import Index
from test_early_static_engine import CSS, cat

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.image import build_image
from nox_warpdrive.image_plan import plan_image

EARLIER = "static inputs and packages as in an earlier image"
COLLECTED = re.compile(r"\d+ static files? copied")


@pytest.fixture
def django_app(
    make_app: Any, index_env: Index, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> App:
    """A Django app with a static file, on the local index, its host caches this test's
    own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    app: App = make_app(["Django==5.2.19"])
    os.unlink(app.root / "wsgi.py")
    write_django(app.root)
    return app


def test_a_package_taken_out_again_reuses_the_earlier_images_static_files(
    django_app: App, engine: Engine
) -> None:
    app = django_app
    reqs = app.root / "requirements.txt"
    lines: list[str] = []
    first = build_image(load_config(app.root), engine, lines.append)
    assert COLLECTED.search("\n".join(lines)), lines
    assert engine.image(first.image_id) is not None

    reqs.write_text("Django==5.2.19\nwd-extra-demo\n")  # added: the current files reused
    lines.clear()
    second = build_image(load_config(app.root), engine, lines.append)
    text = "\n".join(lines)
    assert "static inputs unchanged; reusing the collected static files" in text, text
    assert engine.image(first.image_id) is None, "the add's tag move removes the first image"

    reqs.write_text("Django==5.2.19\n")  # taken out again
    plan = plan_image(load_config(app.root), engine)
    assert plan.static.startswith("reused: the collected files of an earlier image"), plan
    lines.clear()
    third = build_image(load_config(app.root), engine, lines.append)
    text = "\n".join(lines)
    assert EARLIER in text and first.image_id.removeprefix("sha256:")[:12] in text, text
    assert not COLLECTED.search(text), text
    assert third.image_id == first.image_id  # what collectstatic made then, byte for byte
    assert cat(engine, app.image, CSS) == "body { color: red }\n"

    # a changed static input is not the earlier image's: collectstatic runs
    (app.root / "shop" / "static" / "shop" / "site.css").write_text("body { color: blue }\n")
    reqs.write_text("Django==5.2.19\nwd-extra-demo\n")
    build_image(load_config(app.root), engine, lines.append)
    reqs.write_text("Django==5.2.19\n")
    lines.clear()
    build_image(load_config(app.root), engine, lines.append)
    text = "\n".join(lines)
    assert EARLIER not in text and COLLECTED.search(text), text
    assert cat(engine, app.image, CSS) == "body { color: blue }\n"
    assert second.image_id != third.image_id


def test_a_static_file_changed_and_changed_back_reuses_the_first_images_files(
    django_app: App, engine: Engine
) -> None:
    """A branch switch: the CSS changed, then back as it was, the requirements never
    changed (so the wheelhouse is not read): the build back finds the first image's
    files by the wheels of the current image's deps layer, and makes that very image."""
    app = django_app
    css = app.root / "shop" / "static" / "shop" / "site.css"
    lines: list[str] = []
    first = build_image(load_config(app.root), engine, lines.append)
    assert COLLECTED.search("\n".join(lines)), lines
    red = css.read_text()

    css.write_text("body { color: green }\n")  # another branch's CSS
    lines.clear()
    build_image(load_config(app.root), engine, lines.append)
    assert EARLIER not in "\n".join(lines), lines
    assert cat(engine, app.image, CSS) == "body { color: green }\n"

    css.write_text(red)  # back
    plan = plan_image(load_config(app.root), engine)
    assert plan.static.startswith("reused: the collected files of an earlier image"), plan
    lines.clear()
    third = build_image(load_config(app.root), engine, lines.append)
    text = "\n".join(lines)
    assert EARLIER in text and not COLLECTED.search(text) and "re-collected" not in text, text
    assert third.image_id == first.image_id
    assert cat(engine, app.image, CSS) == red
