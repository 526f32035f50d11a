"""Collected static files shared by the platforms of one build (build/static_sibling.py):
another platform's image lends its files only when collectstatic read the same things."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from test_layer_plans import STATIC_ROOT, django_project, engine_for, plan
from unit_support import BASE, PKEY

from nox_warpdrive.build import app_layer
from nox_warpdrive.build.static_sibling import releases, sibling_hook, sibling_static
from nox_warpdrive.config import Config, load_config
from nox_warpdrive.engine import ImageInfo
from nox_warpdrive.wheelhouse.wheels import Wheel

AMD = [
    Wheel("Django-5.2-py3-none-any.whl", "django", "5.2", "a" * 64),
    Wheel(
        "MarkupSafe-3.0.3-cp312-cp312-manylinux_2_17_x86_64.whl", "markupsafe", "3.0.3", "b" * 64
    ),
]
ARM = [
    AMD[0],
    Wheel(
        "MarkupSafe-3.0.3-cp312-cp312-manylinux_2_17_aarch64.whl", "markupsafe", "3.0.3", "c" * 64
    ),
]
ARM_PKEY = dataclasses.replace(PKEY, platform="linux_aarch64")
ARM_BASE = dataclasses.replace(BASE, id="sha256:armbase")


def sibling(app: app_layer.AppPlan, wheels: list[Wheel]) -> ImageInfo:
    """The amd64 image as its build labelled it (its own and its deps image's labels)."""
    labels = {
        **app.commit.labels,
        "io.warpdrive.deps-wheels": json.dumps([w.id for w in wheels]),
        "io.warpdrive.deps-key": "depskey",
    }
    return dataclasses.replace(BASE, id="sha256:amdimage", labels=labels)


def test_releases_are_the_names_and_versions_whatever_the_cpu() -> None:
    assert releases([w.id for w in AMD]) == releases([w.id for w in ARM])
    assert releases(["zope.interface-7.0-cp312-cp312-linux_x86_64.whl@ab"]) == {
        ("zope-interface", "7.0")
    }


def test_another_platforms_image_lends_its_files_when_only_the_cpu_differs(tmp_path: Path) -> None:
    cfg = django_project(tmp_path / "p")
    amd = plan(cfg)
    arm = app_layer.plan_app(cfg, ARM_BASE, ARM_PKEY, "armdeps", "s")
    assert arm.static_key != amd.static_key  # each platform's own key: its base image
    assert arm.static_source == amd.static_source != ""
    assert amd.commit.labels["io.warpdrive.static-source"] == amd.static_source
    found = sibling_static(engine_for(), sibling(amd, AMD), arm, ARM)
    assert found is not None and found[0] == STATIC_ROOT


def test_no_files_are_lent_when_collectstatic_read_something_else(tmp_path: Path) -> None:
    cfg = django_project(tmp_path / "p")
    amd = plan(cfg)
    arm = app_layer.plan_app(cfg, ARM_BASE, ARM_PKEY, "armdeps", "s")
    engine = engine_for()
    # another release of a package
    newer = [dataclasses.replace(ARM[0], filename="Django-5.2.1-py3-none-any.whl", version="5.2.1")]
    assert sibling_static(engine, sibling(amd, AMD), arm, newer + ARM[1:]) is None
    # another Python (the interpreter is part of the static source)
    py313 = dataclasses.replace(ARM_PKEY, interpreter="cp313", abi="cp313")
    other = app_layer.plan_app(cfg, ARM_BASE, py313, "armdeps", "s")
    assert sibling_static(engine, sibling(amd, AMD), other, ARM) is None
    # this build's wheels unknown (an earlier deps layer reused), or no label on the image
    assert sibling_static(engine, sibling(amd, AMD), arm, None) is None
    bare = dataclasses.replace(sibling(amd, AMD), labels={})
    assert sibling_static(engine, bare, arm, ARM) is None
    # another settings file's content changes the source files collectstatic reads
    (tmp_path / "p" / "site1" / "static" / "site.css").write_text("body { color: blue }\n")
    changed = app_layer.plan_app(load(tmp_path), ARM_BASE, ARM_PKEY, "armdeps", "s")
    assert changed.static_source != amd.static_source
    assert sibling_static(engine, sibling(amd, AMD), changed, ARM) is None


def load(tmp_path: Path) -> Config:
    return load_config(tmp_path / "p")


def with_hook(root: Path, per_platform: bool = False) -> Config:
    hook = root / ".warpdrive" / "action_hooks" / "build"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\nnpm run build\n")
    hook.chmod(0o755)
    if per_platform:
        path = root / "pyproject.toml"
        path.write_text(path.read_text() + "\n[tool.warpdrive]\nbuild-hook-per-platform = true\n")
    return load_config(root)


def test_another_platforms_image_lends_its_hook_layer_when_only_the_cpu_differs(
    tmp_path: Path,
) -> None:
    django_project(tmp_path / "p")
    cfg = with_hook(tmp_path / "p")
    amd = plan(cfg)
    arm = app_layer.plan_app(cfg, ARM_BASE, ARM_PKEY, "armdeps", "s")
    assert amd.build_hook and arm.hook_source == amd.hook_source != ""
    assert amd.commit.labels["io.warpdrive.hook-source"] == amd.hook_source
    assert sibling_hook(sibling(amd, AMD), arm, ARM)
    # another release of a package, this build's wheels unknown, or no label
    newer = [dataclasses.replace(ARM[0], filename="Django-5.2.1-py3-none-any.whl", version="5.2.1")]
    assert not sibling_hook(sibling(amd, AMD), arm, newer + ARM[1:])
    assert not sibling_hook(sibling(amd, AMD), arm, None)
    assert not sibling_hook(dataclasses.replace(sibling(amd, AMD), labels={}), arm, ARM)
    # any source file (the hook may read it), or another Python
    (tmp_path / "p" / "site1" / "views.py").write_text("def index(request): return 1\n")
    changed = app_layer.plan_app(load(tmp_path), ARM_BASE, ARM_PKEY, "armdeps", "s")
    assert not sibling_hook(sibling(amd, AMD), changed, ARM)
    py313 = dataclasses.replace(ARM_PKEY, interpreter="cp313", abi="cp313")
    assert not sibling_hook(
        sibling(amd, AMD), app_layer.plan_app(cfg, ARM_BASE, py313, "d", "s"), ARM
    )


def test_a_hook_said_to_depend_on_the_cpu_runs_on_every_platform(tmp_path: Path) -> None:
    django_project(tmp_path / "p")
    cfg = with_hook(tmp_path / "p", per_platform=True)
    assert cfg.hook_per_platform
    amd = plan(cfg)
    arm = app_layer.plan_app(cfg, ARM_BASE, ARM_PKEY, "armdeps", "s")
    assert (
        amd.build_hook
        and amd.hook_source == ""
        and "io.warpdrive.hook-source" not in amd.commit.labels
    )
    assert not sibling_hook(sibling(amd, AMD), arm, ARM)
