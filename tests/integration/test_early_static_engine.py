"""collectstatic run beside the grow of a cold build (issue 24; build/early_static.py), on
the real engine with the local package index.

A Django app with wd-cext-demo, an sdist: the wheelhouse publishes Django's wheels first,
the deps layer for them is made while the sdist compiles, and the compiled wheel is then
added on top (a grow). collectstatic runs on the first deps image beside that grow; the
app does not import wd_cext_demo when it collects, so its files are taken. Built again
with the app image and the host's copies of the static files gone (the deps image stays:
no grow, collectstatic in a container of the app image, as always), the image is the same
one. With a settings file that tries to import wd_cext_demo, the early files are refused,
the build says why, and remembers it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import App, write_django
from pkgindex import Index
from test_build import nox
from test_native_static_engine import static_layer

from nox_warpdrive.engine import Engine

TAKEN = "warpdrive: collectstatic ran while the last packages were added"


def django_with_sdist(make_app: object) -> App:
    app: App = make_app(["django", "wd-cext-demo"])  # type: ignore[operator]
    (app.root / "wsgi.py").unlink()
    write_django(app.root, "shop-v1", css="body { color: blue }\n")
    return app


def test_collectstatic_beside_the_grow_makes_the_image_collectstatic_after_it_makes(
    make_app: object,
    engine: Engine,
    index_env: Index,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    app = django_with_sdist(make_app)

    early = nox(app, "-s", "image")
    out = early.stdout + early.stderr
    assert early.returncode == 0, out
    assert "built while the wheelhouse finished" in out, out  # the first deps layer
    assert "adding 1 wheels on top of the deps layer" in out, out  # the grow
    assert TAKEN in out, out
    assert out.count("collectstatic --noinput") == 1, out  # the early run's, shown once
    first = engine.image(app.image)
    assert first is not None
    first_diff, first_layer = static_layer(engine, app.image, tmp_path)
    assert b"shop/site.css" in first_layer

    engine.remove_image(app.image)
    shutil.rmtree(cache)  # no host copy of the files: collectstatic runs again
    again = nox(app, "-s", "image")
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    assert "deps layer reused" in out, out
    assert TAKEN not in out and out.count("collectstatic --noinput") == 1, out
    assert static_layer(engine, app.image, tmp_path)[0] == first_diff
    second = engine.image(app.image)
    assert second is not None and second.id == first.id


def test_a_settings_file_that_imports_the_added_package_refuses_the_early_files(
    make_app: object,
    engine: Engine,
    index_env: Index,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    app = django_with_sdist(make_app)
    settings = app.root / "site1" / "settings.py"
    settings.write_text(
        settings.read_text()
        + "try:\n    import wd_cext_demo  # noqa: F401\nexcept ImportError:\n    pass\n"
    )

    built = nox(app, "-s", "image")
    out = built.stdout + built.stderr
    assert built.returncode == 0, out
    assert "adding 1 wheels on top of the deps layer" in out, out
    assert (
        "collectstatic runs again with every package: collectstatic imports wd_cext_demo, "
        "which the added packages hold"
    ) in out, out
    assert TAKEN not in out and out.count("collectstatic --noinput") == 1, out
    remembered = list((cache / "nox-warpdrive" / "early-static").iterdir())
    assert len(remembered) == 1
    assert "wd_cext_demo" in remembered[0].read_text()
