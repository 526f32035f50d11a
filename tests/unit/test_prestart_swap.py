"""Which deps image the container started beside the builder goes on (EarlyDeps._below,
_unless_swapped): the current image's deps image, unless its last layer added only
packages the requirements no longer name (a package swapped for another), where the
grow takes the image that layer was grown on."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_engine import FakeEngine
from test_early_deps import deps_image, wsgi_project
from unit_support import BASE, PKEY

from nox_warpdrive.build import deps as deps_module

BASE_WHEELS = ["django-5.0-py3-none-any.whl@b", "gunicorn-22.0-py3-none-any.whl@c"]
ENVIRON = ["django_environ-0.14.0-py3-none-any.whl@e"]
HTTPX = ["httpx-0.28.1-py3-none-any.whl@h", "h11-0.16.0-py3-none-any.whl@i"]


def choose(tmp_path: Path, asked: set[str], added: list[str], depth: str = "1") -> str:
    cfg = wsgi_project(tmp_path / "site")
    below = deps_image("sha256:below", BASE_WHEELS)
    grown = deps_image("sha256:grown", BASE_WHEELS + added, depth=depth)
    engine = FakeEngine(base=BASE, images={"below": below, "grown": grown})
    early = deps_module.EarlyDeps(engine, cfg, BASE, PKEY, frozenset(asked))
    found = deps_module.DepsParent(grown, tuple(BASE_WHEELS + added), int(depth))
    return early._unless_swapped(found, deps_module.Installer("pip")).image.id


@pytest.mark.parametrize(
    ("asked", "added", "depth", "chosen"),
    [
        # one more package on top: the grown image (its package is still asked for)
        ({"django", "gunicorn", "django-environ", "emoji"}, ENVIRON, "1", "sha256:grown"),
        # swapped for another: the image before it
        ({"django", "gunicorn", "django-cors-headers"}, ENVIRON, "1", "sha256:below"),
        # its package still asked for, its dependencies never are by name
        ({"django", "gunicorn", "httpx"}, HTTPX, "1", "sha256:grown"),
        ({"django", "gunicorn"}, HTTPX, "1", "sha256:below"),
        # a whole virtualenv's image: nothing was added on top of another
        ({"django", "gunicorn"}, ENVIRON, "0", "sha256:grown"),
        # the names are not known: as before
        (set(), ENVIRON, "1", "sha256:grown"),
    ],
)
def test_the_image_before_a_swapped_package(
    tmp_path: Path, asked: set[str], added: list[str], depth: str, chosen: str
) -> None:
    assert choose(tmp_path, asked, added, depth) == chosen


def test_no_image_it_was_grown_on_keeps_the_current_one(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    grown = deps_image("sha256:grown", BASE_WHEELS + ENVIRON, depth="1")
    engine = FakeEngine(base=BASE, images={"grown": grown})
    early = deps_module.EarlyDeps(engine, cfg, BASE, PKEY, frozenset({"django"}))
    found = deps_module.DepsParent(grown, tuple(BASE_WHEELS + ENVIRON), 1)
    assert early._unless_swapped(found, deps_module.Installer("pip")) is found
