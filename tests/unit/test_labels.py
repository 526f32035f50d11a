"""The label sets: built as the code built them before labels.py (the reference below),
key for key, value for value and in the same order, so that images made by an earlier
version are still recognised (and this version's images are what it would have made);
read back into the same record."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from unit_support import BASE, PKEY, write_wsgi_site

from nox_warpdrive.build import app_layer as app_layer_module
from nox_warpdrive.build import deps as deps_module
from nox_warpdrive.config import load_config
from nox_warpdrive.labels import (
    AppLabels,
    DepsLabels,
    WheelhouseLabels,
    deps_selector,
    inherited_deps_labels,
)
from nox_warpdrive.registry import cache as registry_module
from nox_warpdrive.wheelhouse import image as wheelhouse_image_module
from nox_warpdrive.wheelhouse.wheels import Wheel, wheel_ids

P = "io.warpdrive"
WHEELS = [
    Wheel("Django-5.0.6-py3-none-any.whl", "Django", "5.0.6", "d" * 64, 8166129),
    Wheel("asgiref-3.8.1-py3-none-any.whl", "asgiref", "3.8.1", "a" * 64, 23828),
]
IDS = wheel_ids(WHEELS)


def old_deps_labels(
    key: str, project: str, base_id: str, installer: str, ids: list[str], depth: int
) -> dict[str, str]:
    """deps.deps_labels before labels.py."""
    return {
        f"{P}.deps-key": key,
        f"{P}.kind": "deps",
        f"{P}.deps-format": deps_module.DEPS_FORMAT,
        f"{P}.deps-project": project,
        f"{P}.deps-base": base_id,
        f"{P}.deps-installer": installer,
        f"{P}.deps-wheels": json.dumps(ids, separators=(",", ":")),
        f"{P}.deps-depth": str(depth),
    }


def old_app_labels(
    created: str, source: dict[str, str], server: str | None, static_key: str
) -> dict[str, str]:
    """app_layer.app_commit's labels before labels.py."""
    labels = {
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.title": "site",
        "org.opencontainers.image.base.name": "python:3.12-slim",
        **source,
        f"{P}.platform-key": PKEY.slug,
        f"{P}.base-image": "python:3.12-slim",
        f"{P}.base-image-id": BASE.id,
        f"{P}.deps-key": "k" * 64,
        f"{P}.build-key": "b" * 64,
        f"{P}.static-key": static_key,
        f"{P}.requirements": "r" * 64,
        f"{P}.installer-setting": "auto",
        f"{P}.kind": "app",
        f"{P}.app": "wsgi wsgi:application" + (f" ({server})" if server else ""),
    }
    if not created:
        del labels["org.opencontainers.image.created"]
    return labels


def old_wheelhouse_labels(slug: str, wheels: dict[str, str], depth: int) -> dict[str, str]:
    """wheelhouse_image._bundle's labels before labels.py."""
    return {
        f"{P}.kind": "wheelhouse",
        f"{P}.platform-key": slug,
        f"{P}.wheelhouse.wheels": json.dumps(wheels, sort_keys=True, separators=(",", ":")),
        f"{P}.wheelhouse.layers": str(depth + 1),
        "org.opencontainers.image.description": (
            f"nox-warpdrive wheelhouse for {slug} (wheels only; not runnable)"
        ),
    }


@pytest.mark.parametrize(("installer", "depth"), [("pip", 0), ("uv0.4.1", 3)])
def test_deps_labels_as_before(installer: str, depth: int) -> None:
    record = DepsLabels(
        "k" * 64, deps_module.DEPS_FORMAT, "site", BASE.id, installer, tuple(IDS), depth
    )
    labels = record.to_labels()
    old = old_deps_labels("k" * 64, "site", BASE.id, installer, IDS, depth)
    assert list(labels.items()) == list(old.items())
    assert DepsLabels.from_labels(labels) == record


def test_plan_deps_labels_as_before(tmp_path: Path) -> None:
    write_wsgi_site(tmp_path / "site")
    cfg = load_config(tmp_path / "site")
    installer = deps_module.Installer("uv", "/warpdrive/x/uv", "0.4.1")
    plan = deps_module.plan_deps(cfg, BASE, PKEY, WHEELS, installer)
    assert plan.step.commit is not None
    old = old_deps_labels(plan.key, cfg.name, BASE.id, "uv0.4.1", IDS, 0)
    assert list(plan.step.commit.labels.items()) == list(old.items())
    # what find_parent asks the engine for is what the deps image carries
    selector = deps_selector(deps_module.DEPS_FORMAT, cfg.name, BASE.id)
    assert selector.items() <= plan.step.commit.labels.items()


@pytest.mark.parametrize(
    ("labels", "wheels", "depth"),
    [
        ({f"{P}.deps-wheels": '["a@1"]'}, ("a@1",), 0),  # an earlier image without depth
        ({f"{P}.deps-wheels": "[]", f"{P}.deps-depth": "2"}, (), 2),
        ({f"{P}.deps-wheels": "not json"}, None, 0),
        ({f"{P}.deps-wheels": '{"a@1": 1}'}, None, 0),
        ({f"{P}.deps-wheels": "[1]"}, None, 0),
        ({f"{P}.deps-wheels": "[]", f"{P}.deps-depth": "x"}, None, 0),
        ({f"{P}.deps-key": "k"}, None, 0),  # no wheel list
    ],
)
def test_deps_labels_read_as_before(
    labels: dict[str, str], wheels: tuple[str, ...] | None, depth: int
) -> None:
    found = DepsLabels.from_labels(labels)
    if wheels is None:
        assert found is None
    else:
        assert found is not None and (found.wheels, found.depth) == (wheels, depth)
        assert found.key == ""  # a missing label reads as "", which matches no key


@pytest.mark.parametrize(
    ("created", "source", "server", "static_key"),
    [
        ("2026-12-01T00:00:00Z", {}, "gunicorn", "s" * 64),
        ("", {}, None, ""),
        (
            "2026-12-01T00:00:00Z",
            {
                "org.opencontainers.image.revision": "0123abc",
                "org.opencontainers.image.source": "https://example.com/site.git",
            },
            "waitress",
            "",
        ),
    ],
)
def test_app_labels_as_before(
    created: str, source: dict[str, str], server: str | None, static_key: str
) -> None:
    record = AppLabels(
        title="site",
        base_image="python:3.12-slim",
        base_image_id=BASE.id,
        platform_key=PKEY.slug,
        deps_key="k" * 64,
        build_key="b" * 64,
        static_key=static_key,
        requirements="r" * 64,
        installer_setting="auto",
        app="wsgi wsgi:application" + (f" ({server})" if server else ""),
        created=created,
        source=source,
    )
    labels = record.to_labels()
    assert list(labels.items()) == list(old_app_labels(created, source, server, static_key).items())
    assert AppLabels.from_labels(labels) == record
    # on the deps image it was committed on: the deps labels are inherited, kind is "app"
    deps = old_deps_labels("k" * 64, "site", BASE.id, "pip", IDS, 0)
    image = {**deps, **labels}
    assert AppLabels.from_labels(image) == record
    assert DepsLabels.from_labels(image) is not None
    assert AppLabels.from_labels(deps) is None  # a deps image is no app image
    assert inherited_deps_labels(image) == deps


def test_app_commit_labels_as_before(tmp_path: Path) -> None:
    write_wsgi_site(tmp_path / "site")
    cfg = load_config(tmp_path / "site")
    plan = app_layer_module.plan_app(
        cfg,
        BASE,
        PKEY,
        "k" * 64,
        "site",
        requirements_digest="r" * 64,
        source_labels={"org.opencontainers.image.revision": "0123abc"},
        created="2026-12-01T00:00:00Z",
    )
    labels = dict(plan.commit.labels)
    app = labels[f"{P}.app"]
    old = {
        "org.opencontainers.image.created": "2026-12-01T00:00:00Z",
        "org.opencontainers.image.title": cfg.name,
        "org.opencontainers.image.base.name": cfg.base_image,
        "org.opencontainers.image.revision": "0123abc",
        f"{P}.platform-key": PKEY.slug,
        f"{P}.base-image": cfg.base_image,
        f"{P}.base-image-id": BASE.id,
        f"{P}.deps-key": "k" * 64,
        f"{P}.build-key": plan.build_key,
        f"{P}.static-key": plan.static_key,
        f"{P}.requirements": "r" * 64,
        f"{P}.installer-setting": cfg.installer,
        f"{P}.kind": "app",
        f"{P}.app": app,
    }
    assert list(labels.items()) == list(old.items())
    assert app.startswith(f"{plan.app.kind} {plan.app.module}")


def test_app_labels_read_leniently() -> None:
    """An image lacking a label reads it as "" (what it compared as before)."""
    found = AppLabels.from_labels({f"{P}.static-key": "s", f"{P}.deps-key": "d"})
    assert found is not None
    assert (found.static_key, found.deps_key, found.build_key) == ("s", "d", "")
    assert AppLabels.from_labels({f"{P}.kind": "wheelhouse"}) is None


def test_wheelhouse_labels_as_before() -> None:
    wheels = {"b-1-py3-none-any.whl": "b" * 64, "a-1-py3-none-any.whl": "a" * 64}
    record = WheelhouseLabels(PKEY.slug, wheels, 4)
    labels = record.to_labels()
    assert list(labels.items()) == list(old_wheelhouse_labels(PKEY.slug, wheels, 3).items())
    assert WheelhouseLabels.from_labels(labels) == record
    broken = {**labels, f"{P}.wheelhouse.wheels": "[not json"}
    found = WheelhouseLabels.from_labels(broken)
    assert found is not None and found.wheels == {}
    assert WheelhouseLabels.from_labels({**labels, f"{P}.kind": "app"}) is None


def test_readers_take_the_records_labels(tmp_path: Path) -> None:
    """registry and wheelhouse_image accept what the records write."""
    app = dataclasses.replace(
        BASE,
        id="sha256:app",
        labels={
            **old_deps_labels("k" * 64, "site", BASE.id, "pip", IDS, 0),
            **old_app_labels("", {}, None, ""),
        },
        diff_ids=(*BASE.diff_ids, "sha256:deps", "sha256:app"),
    )
    write_wsgi_site(tmp_path / "site")
    cfg = load_config(tmp_path / "site")
    assert registry_module.unusable(app, cfg, BASE) == ""
    image = dataclasses.replace(BASE, labels=old_wheelhouse_labels(PKEY.slug, {}, 0))
    assert wheelhouse_image_module.unusable(image, PKEY) == ""
