"""``image -- --plan`` with several platforms (issue 22), on the fake engine: one plan per
platform, naming its engine, whether it is emulated, where its images come from (local,
kept as REF-linux-arm64, or a pull the plan does not make) and how its wheels are made;
what needs running something of another CPU is said to be unknown, not guessed; and
nothing is pulled, run, tagged or written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from test_doctor_plan import BUILDER, PKEY, acted, project
from unit_support import BASE

from nox_warpdrive.errors import EngineError
from nox_warpdrive.image_plan import ImagePlan
from nox_warpdrive.multiarch import plan as multiplan
from nox_warpdrive.wheelhouse import probe_cache

BOTH = 'platforms = ["linux/amd64", "linux/arm64"]\n'
AMD_BASE = dataclasses.replace(BASE, platform="linux/amd64")
AMD_BUILDER = dataclasses.replace(BUILDER, platform="linux/amd64")
ARM_BASE = dataclasses.replace(BASE, id="sha256:armbase", platform="linux/arm64")
ARM_BUILDER = dataclasses.replace(BUILDER, id="sha256:armbuilder", platform="linux/arm64")
ARM_KEY = dataclasses.replace(
    PKEY,
    platform="linux_aarch64",
    markers=tuple((k, "aarch64" if k == "platform_machine" else v) for k, v in PKEY.markers),
)


class NoPulls(FakeEngine):
    def pull(self, ref: str, out: Any = None, platform: str | None = None) -> Any:
        raise AssertionError(f"a plan pulled {ref} for {platform}")

    def run_probe(self, image: str, command: list[str], network: str | None = None) -> str:
        raise AssertionError(f"a plan ran {image} (its probes are cached here)")


def engine_with(arm: bool = True) -> NoPulls:
    probe_cache.store(AMD_BASE.id, "python3", PKEY)
    probe_cache.store(AMD_BUILDER.id, "python3", PKEY)
    images = {"base:1": AMD_BASE, "builder:1": AMD_BUILDER}
    if arm:
        images.update({"base:1-linux-arm64": ARM_BASE, "builder:1-linux-arm64": ARM_BUILDER})
    return NoPulls(images=images)


def test_without_platforms_the_plan_is_the_single_platform_one(tmp_path: Path) -> None:
    plan = multiplan.plan_for(project(tmp_path), engine_with())
    assert isinstance(plan, ImagePlan)


def test_each_platform_is_planned_and_another_cpu_is_never_run(tmp_path: Path) -> None:
    cfg = project(tmp_path, BOTH)
    engine = engine_with()
    plan = multiplan.plan_for(cfg, engine)
    assert isinstance(plan, multiplan.MultiPlan)
    amd, arm = plan.platforms
    assert (amd.platform, amd.native, amd.tag) == ("linux/amd64", True, "shop:latest")
    assert (arm.platform, arm.native, arm.tag) == ("linux/arm64", False, "shop:latest-linux-arm64")
    assert amd.plan is not None and "x86_64" in amd.plan.platform
    assert [c.local for c in arm.images] == ["base:1-linux-arm64", "builder:1-linux-arm64"]
    # never probed: probing runs an arm64 container, which a plan does not do
    assert arm.plan is None and "was never probed" in arm.unknown[0]
    assert "on this engine's CPU (linux/amd64) by builder:1, without emulation" in arm.wheels
    lines = "\n".join(plan.lines())
    assert lines.startswith("plan for shop:latest for 2 platforms (linux/amd64, linux/arm64)")
    assert (
        "linux/arm64: as shop:latest-linux-arm64, on DOCKER_HOST's engine, under emulation" in lines
    )
    assert "  not known without running: its platform key" in lines
    assert json.loads(plan.to_json())["platforms"][1]["plan"] is None
    assert acted(engine) == [[], [], [], [], [], [], [], []]

    # probed by an earlier build: the arm64 plan is the whole one, for its own key
    probe_cache.store(ARM_BASE.id, "python3", ARM_KEY)
    plan = multiplan.plan_for(cfg, engine)
    arm = plan.platforms[1]  # type: ignore[union-attr]
    assert arm.plan is not None and "aarch64" in arm.plan.platform and not arm.unknown
    assert arm.plan.base_image == "base:1-linux-arm64"
    assert "without emulation" in arm.wheels
    assert acted(engine) == [[], [], [], [], [], [], [], []]


def test_an_image_not_here_would_be_pulled_and_what_follows_is_unknown(tmp_path: Path) -> None:
    cfg = project(tmp_path, BOTH)
    engine = engine_with(arm=False)
    plan = multiplan.plan_for(cfg, engine)
    arm = plan.platforms[1]  # type: ignore[union-attr]
    base = arm.images[0]
    assert base.local == "" and "pulled for linux/arm64" in base.how
    assert "(the local base:1 is for linux/amd64)" in base.how
    assert "known only by pulling, which a plan does not do" in base.how
    assert arm.plan is None and "known once its images are pulled" in arm.unknown[0]


def test_a_named_engine_is_asked_and_one_that_does_not_answer_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = project(tmp_path, BOTH + 'engines = { "linux/arm64" = "ssh://me@arm-box" }\n')
    arm = NoPulls(images={"base:1": ARM_BASE, "builder:1": ARM_BUILDER})
    arm.about_info = dataclasses.replace(arm.about_info, arch="arm64")
    probe_cache.store(ARM_BASE.id, "python3", ARM_KEY)
    monkeypatch.setattr(multiplan, "connect_engine", lambda host=None: arm)
    plan = multiplan.plan_for(cfg, engine_with(arm=False))
    named = plan.platforms[1]  # type: ignore[union-attr]
    assert (named.engine, named.native, named.tag) == (
        "the engine at ssh://arm-box",
        True,
        "shop:latest",
    )
    assert named.plan is not None and "aarch64" in named.plan.platform
    assert "natively (linux/arm64)" in named.wheels
    assert acted(arm) == [[], [], [], [], [], [], [], []]

    def down(host: str | None = None) -> Any:
        raise EngineError("Connection refused", fix="start it")

    monkeypatch.setattr(multiplan, "connect_engine", down)
    named = multiplan.plan_for(cfg, engine_with(arm=False)).platforms[1]  # type: ignore[union-attr]
    assert named.native is None and named.plan is None
    assert named.unknown == ("the engine at ssh://arm-box did not answer (Connection refused)",)
    assert (
        "linux/arm64: as shop:latest-linux-arm64, on the engine at ssh://arm-box, not reachable"
        in "\n".join(multiplan.plan_for(cfg, engine_with(arm=False)).lines())
    )


def test_without_a_builder_of_the_engines_cpu_the_wheels_are_all_made_emulated(
    tmp_path: Path,
) -> None:
    cfg = project(tmp_path, BOTH)
    engine = engine_with()
    del engine.images["builder:1"]  # only the arm64 builder is here
    arm = multiplan.plan_for(cfg, engine).platforms[1]  # type: ignore[union-attr]
    assert arm.wheels == (
        "everything in the linux/arm64 builder, under emulation, unless builder-image "
        "builder:1 is pulled for linux/amd64"
    )


def test_a_key_the_native_route_cannot_serve_is_planned_emulated_with_why(
    tmp_path: Path,
) -> None:
    cfg = project(tmp_path, BOTH)
    engine = engine_with()
    probe_cache.store(ARM_BASE.id, "python3", dataclasses.replace(ARM_KEY, libc="unknown"))
    arm = multiplan.plan_for(cfg, engine).platforms[1]  # type: ignore[union-attr]
    assert arm.wheels.startswith("everything in the linux/arm64 builder, under emulation (")
    assert "is not a target" in arm.wheels
