"""`image -- --plan` with two platforms (issue 22) on the real engine: one plan per
platform, the arm64 one naming where its images come from and that it would be emulated,
and nothing changed (no image, container or volume of the app; nothing run under QEMU)."""

from __future__ import annotations

import json

from conftest import BASE_IMAGE, BUILDER_IMAGE, App
from pkgindex import Index
from test_build import nox
from test_doctor_plan_engine import state
from test_platforms_engine import arm64_ready, use

from nox_warpdrive.engine import Engine

__all__ = ["arm64_ready"]  # the fixture, used by name


def test_a_plan_of_two_platforms_plans_each_and_changes_nothing(
    make_app: object, engine: Engine, index_env: Index, arm64_ready: None
) -> None:
    app: App = make_app(["wd-pure-demo"])  # type: ignore[operator]
    use(app, BASE_IMAGE, BUILDER_IMAGE, platforms='["linux/amd64", "linux/arm64"]')
    before = state(engine, app)
    r = nox(app, "-s", "image", "--", "--plan")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert f"plan for {app.image} for 2 platforms (linux/amd64, linux/arm64)" in out, out
    assert f"linux/amd64: as {app.image}, on DOCKER_HOST's engine, natively" in out, out
    said = f"linux/arm64: as {app.image}-linux-arm64, on DOCKER_HOST's engine, under emulation"
    assert said in out, out
    # the arm64 base: the kept REF-linux-arm64 when an earlier build or test left it,
    # else a pull the plan does not make
    assert f"base-image {BASE_IMAGE}: " in out, out
    r = nox(app, "-s", "image", "--", "--plan", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    plan = json.loads(r.stdout.split("\nnox >")[0])
    amd, arm = plan["platforms"]
    assert amd["native"] is True and amd["plan"]["wheels"]["complete"] is False
    assert arm["native"] is False and (arm["plan"] is not None or arm["unknown"]), arm
    assert state(engine, app) == before, "the plan changed something"
