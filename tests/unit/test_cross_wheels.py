"""Another CPU's wheels without emulation (issue 22, item 3): the probed key's tag list
and uv's and pip's names of it, which pins go to the emulated builder, the host's two
runs of the builder and when it falls back to the all-emulated one."""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path
from typing import Any

import pytest
from packaging import tags as ptags
from test_plans import wheelhouse_plan, wsgi_project
from test_platforms import ARM64, PullingEngine, info

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import ImageInfo
from nox_warpdrive.errors import BuildError, EngineError
from nox_warpdrive.inputs.model import ProjectBuild
from nox_warpdrive.multiarch.build import _targets
from nox_warpdrive.platform import PlatformKey
from nox_warpdrive.runtime import resolve
from nox_warpdrive.wheelhouse import cross

ARM_KEY = PlatformKey("cp311", "cp311", "linux_aarch64", "glibc", "2.36", "debian", "12", "3.11.2")
AMD_KEY = dataclasses.replace(ARM_KEY, platform="linux_x86_64")
MUSL_KEY = PlatformKey("cp312", "cp312", "linux_x86_64", "musl", "1.2", "alpine", "3.20", "3.12.8")


def test_the_tag_list_of_an_aarch64_key() -> None:
    found = cross.supported_tags(ARM_KEY)
    assert found[0] == "cp311-cp311-manylinux_2_36_aarch64"
    for tag in (
        "cp311-cp311-manylinux_2_17_aarch64",
        "cp311-cp311-manylinux2014_aarch64",
        "cp311-cp311-linux_aarch64",
        "cp39-abi3-manylinux_2_28_aarch64",
        "py3-none-manylinux_2_17_aarch64",
        "py3-none-any",
        "py311-none-any",
    ):
        assert tag in found
    assert not [t for t in found if "x86_64" in t or "manylinux_2_37" in t or "_2_16_" in t]
    assert "cp312-cp312-manylinux_2_36_aarch64" not in found


@pytest.mark.skipif(
    platform.machine() != "x86_64" or platform.libc_ver()[0] != "glibc",
    reason="compares with this host's own tags (an x86_64 glibc host)",
)
def test_the_tag_list_is_the_one_packaging_computes_inside_the_interpreter() -> None:
    """The host's own key gives exactly the tags packaging computes here (same set)."""
    import sys

    here = PlatformKey(
        f"cp{sys.version_info[0]}{sys.version_info[1]}",
        f"cp{sys.version_info[0]}{sys.version_info[1]}",
        "linux_x86_64",
        "glibc",
        platform.libc_ver()[1],
        "",
        "",
    )
    assert set(cross.supported_tags(here)) == {str(t) for t in ptags.sys_tags()}


def test_musl_and_other_interpreters() -> None:
    plats = cross.platform_tags(MUSL_KEY)
    assert plats == [
        "musllinux_1_2_x86_64",
        "musllinux_1_1_x86_64",
        "musllinux_1_0_x86_64",
        "linux_x86_64",
    ]
    assert cross.uv_python_platform(MUSL_KEY) == "x86_64-unknown-linux-musl"
    pypy = dataclasses.replace(ARM_KEY, interpreter="pp310", abi="pypy310_pp73")
    assert cross.supported_tags(pypy) == []
    assert cross.supported_tags(dataclasses.replace(ARM_KEY, platform="win_amd64")) == []


def test_uv_targets_the_newest_glibc_it_has_not_newer_than_the_key() -> None:
    assert cross.uv_python_platform(ARM_KEY) == "aarch64-manylinux_2_36"
    assert cross.uv_python_platform(dataclasses.replace(ARM_KEY, libc_version="2.30")) == (
        "aarch64-manylinux_2_28"
    )
    assert cross.uv_python_platform(dataclasses.replace(AMD_KEY, libc_version="2.41")) == (
        "x86_64-manylinux_2_40"
    )
    assert cross.uv_python_platform(dataclasses.replace(AMD_KEY, libc_version="2.12")) is None
    assert cross.uv_python_platform(dataclasses.replace(ARM_KEY, platform="linux_s390x")) is None
    assert cross.uv_python_platform(dataclasses.replace(ARM_KEY, libc="unknown")) is None


def test_the_cross_plan_names_the_target_and_the_native_tools() -> None:
    plan = cross.cross_plan(ARM_KEY, AMD_KEY)
    assert plan["python_platform"] == "aarch64-manylinux_2_36"
    assert plan["python_version"] == "3.11.2"
    assert plan["native_key"] == AMD_KEY.slug
    assert (plan["implementation"], plan["abi"]) == ("cp", "cp311")
    assert plan["pip_platforms"][0] == "manylinux_2_36_aarch64"
    assert plan["tags"] == cross.supported_tags(ARM_KEY)


def test_the_route_stays_emulated_for_locks_projects_prune_and_no_native_builder(
    tmp_path: Path,
) -> None:
    reqs = wheelhouse_plan(wsgi_project(tmp_path / "a")).requirements
    assert cross.route_for(ARM_KEY, reqs, "pyb").native
    assert "no builder image" in cross.route_for(ARM_KEY, reqs, "").why
    assert "--prune" in cross.route_for(ARM_KEY, reqs, "pyb", prune="unused").why
    locked = dataclasses.replace(reqs, locked_from="uv.lock")
    assert cross.route_for(ARM_KEY, locked, "pyb").why == "the pins come from uv.lock"
    project = dataclasses.replace(reqs, project=ProjectBuild("a", tmp_path, False, "k"))
    assert not cross.route_for(ARM_KEY, project, "pyb").native
    pypy = dataclasses.replace(ARM_KEY, interpreter="pp310")
    assert "is not a target" in cross.route_for(pypy, reqs, "pyb").why


# ------------------------------------------------------------- the builder's choice of wheel

WHEELS = "https://files.example/"


def pylock(*packages: tuple[str, list[str], bool]) -> dict[str, Any]:
    """A pylock.toml as uv writes it: (name-version, wheel files, has an sdist)."""
    out = []
    for spec, wheels, sdist in packages:
        name, version = spec.split("-")
        entry: dict[str, Any] = {
            "name": name,
            "version": version,
            "wheels": [{"url": WHEELS + w, "hashes": {"sha256": f"sha-{w}"}} for w in wheels],
        }
        if sdist:
            entry["sdist"] = {"url": f"{WHEELS}{spec}.tar.gz", "hashes": {"sha256": "s"}}
        out.append(entry)
    return {"packages": out}


def test_each_pin_gets_its_best_wheel_for_the_tags_and_sdists_go_to_the_target() -> None:
    lock = pylock(
        (
            "markupsafe-3.0.3",
            [
                "markupsafe-3.0.3-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
                "markupsafe-3.0.3-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
                "markupsafe-3.0.3-cp311-cp311-manylinux_2_28_aarch64.whl",
            ],
            True,
        ),
        ("gunicorn-27.0.1", ["gunicorn-27.0.1-py3-none-any.whl"], True),
        ("wd_cext_demo-0.1.0", [], True),
        ("psycopg2-2.9.13", ["psycopg2-2.9.13-cp311-cp311-win_amd64.whl"], True),
        ("newer-1.0", ["newer-1.0-cp312-cp312-manylinux_2_17_aarch64.whl"], True),
    )
    pins = {p.name: p for p in resolve.pins_for_tags(lock, cross.supported_tags(ARM_KEY))}
    assert pins["markupsafe"].wheel_url == (
        WHEELS + "markupsafe-3.0.3-cp311-cp311-manylinux_2_28_aarch64.whl"
    )
    assert pins["markupsafe"].wheel_sha == (
        "sha-markupsafe-3.0.3-cp311-cp311-manylinux_2_28_aarch64.whl"
    )
    assert pins["gunicorn"].wheel_url == WHEELS + "gunicorn-27.0.1-py3-none-any.whl"
    for sdist_only in ("wd_cext_demo", "psycopg2", "newer"):
        assert pins[sdist_only].wheel_url is None
        assert (
            pins[sdist_only].sdist_url == f"{WHEELS}{sdist_only}-{pins[sdist_only].version}.tar.gz"
        )


def test_wheel_tags_expand_compressed_tag_sets() -> None:
    name = "uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    assert resolve.wheel_tags(name) == {
        "py3-none-manylinux_2_17_aarch64",
        "py3-none-manylinux2014_aarch64",
    }
    assert resolve.wheel_tags("wd_cext_demo-0.1.0.tar.gz") == set()


# ---------------------------------------------------------------- the host's runs of the builder


class Runs:
    """A stand-in for running the builder: records each plan and answers in turn."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.plans: list[Any] = []
        self.ready: list[Any] = []

    def __call__(self, plan: Any, ready: Any) -> dict[str, Any]:
        self.plans.append(plan)
        self.ready.append(ready)
        return self.answers.pop(0)


NATIVE = ImageInfo("sha256:amdbuilder", (), {}, 1, 1, "", platform="linux/amd64")


def arm_plan(tmp_path: Path) -> Any:
    plan = wheelhouse_plan(wsgi_project(tmp_path / "site"))
    return dataclasses.replace(plan, key=ARM_KEY, builder_image="sha256:armbuilder")


def probe(ref: str) -> tuple[ImageInfo, PlatformKey]:
    assert ref == "pyb"
    return NATIVE, AMD_KEY


def test_binary_wheels_only_run_one_native_builder(tmp_path: Path) -> None:
    plan = arm_plan(tmp_path)
    runs, lines = Runs({"new": ["a.whl"], "manifest": {"x": 1}}), []
    ready = object()
    summary = cross.run(plan, "pyb", probe, runs, ready, lines.append)
    assert summary == {"new": ["a.whl"], "manifest": {"x": 1}}
    [first] = runs.plans
    assert first.builder_image == NATIVE.id and first.key == ARM_KEY
    assert first.cross["native_key"] == AMD_KEY.slug and first.pins is None
    assert runs.ready == [ready]
    data = json.loads(first.plan_json())
    assert data["key"] == ARM_KEY.slug and data["cross"]["python_platform"].startswith("aarch64")
    assert "pins" not in data
    assert lines == []


def test_what_has_no_wheel_is_compiled_by_a_second_run_in_the_emulated_builder(
    tmp_path: Path,
) -> None:
    plan = arm_plan(tmp_path)
    pins = [["wd-cext-demo", "0.1.0", None, None, "http://i/c.tar.gz", "s"]]
    runs = Runs(
        {"pending": pins, "compile": ["wd-cext-demo==0.1.0"], "new": ["g.whl"]},
        {"new": ["c.whl"], "resolved": 2, "manifest": {"y": 2}},
    )
    lines: list[str] = []
    summary = cross.run(plan, "pyb", probe, runs, object(), lines.append)
    first, second = runs.plans
    assert first.builder_image == NATIVE.id
    assert second.builder_image == "sha256:armbuilder" and second.cross is None
    assert second.pins == (("wd-cext-demo", "0.1.0", None, None, "http://i/c.tar.gz", "s"),)
    assert json.loads(second.plan_json())["pins"] == pins
    assert runs.ready[1] is None  # the first run announced what is ready
    assert summary["new"] == ["g.whl", "c.whl"] and summary["manifest"] == {"y": 2}
    assert any("compiling wd-cext-demo==0.1.0" in line for line in lines)


def test_a_native_run_that_cannot_serve_falls_back_to_the_emulated_builder(
    tmp_path: Path,
) -> None:
    plan = arm_plan(tmp_path)
    runs = Runs({"unserved": "uv could not resolve for it"}, {"new": [], "resolved": 1})
    lines: list[str] = []
    cross.run(plan, "pyb", probe, runs, None, lines.append)
    assert [p.builder_image for p in runs.plans] == [NATIVE.id, "sha256:armbuilder"]
    assert runs.plans[1] == plan
    assert len(lines) == 1 and "uv could not resolve for it; every wheel of" in lines[0]


def test_no_native_builder_or_a_broken_one_is_the_emulated_route_said_once(
    tmp_path: Path,
) -> None:
    plan = arm_plan(tmp_path)
    runs, lines = Runs({"new": []}), []
    cross.run(plan, "", probe, runs, None, lines.append)  # the engine's own CPU: as before
    assert runs.plans == [plan] and lines == []

    def broken(ref: str) -> tuple[ImageInfo, PlatformKey]:
        raise EngineError("no such image")

    runs = Runs({"new": []})
    cross.run(plan, "pyb", broken, runs, None, lines.append)
    assert runs.plans == [plan]
    assert len(lines) == 1 and "pyb cannot be used (no such image)" in lines[0]

    def same(ref: str) -> tuple[ImageInfo, PlatformKey]:
        return NATIVE, ARM_KEY

    runs = Runs({"new": []})
    cross.run(plan, "pyb", same, runs, None, lines.append)
    assert runs.plans == [plan] and "also for linux_aarch64" in lines[-1]


# ----------------------------------------------------------------- which builder is native


def test_another_cpu_target_is_told_the_engine_builder(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = []\n[tool.warpdrive]\nbase-image = "py"\n'
        'builder-image = "pyb"\nplatforms = ["linux/amd64", "linux/arm64"]\n'
    )
    cfg = load_config(tmp_path)
    engine = PullingEngine(
        {
            ("py", "linux/arm64"): info("sha256:arm", "linux/arm64"),
            ("pyb", "linux/arm64"): info("sha256:armb", "linux/arm64"),
        },
        images={"py": info("sha256:amd", "linux/amd64"), "pyb": info("sha256:b", "linux/amd64")},
    )
    amd, arm = (b.target for b in _targets(cfg, engine, lambda line: None))
    assert amd.native and not arm.native
    assert amd.cfg.cross_builder == "" and arm.platform == ARM64
    assert arm.cfg.cross_builder == "pyb" and arm.cfg.builder_image == "pyb:latest-linux-arm64"

    # arm64 alone: the engine's builder is found for it (here: the local one)
    alone = dataclasses.replace(cfg, platforms=(ARM64,))
    [built] = _targets(alone, engine, lambda line: None)
    assert built.target.cfg.cross_builder == "pyb"


def test_no_builder_for_the_engine_cpu_leaves_the_target_emulated(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = []\n[tool.warpdrive]\nbase-image = "py"\n'
        'builder-image = "pyb"\nplatforms = ["linux/arm64"]\n'
    )
    cfg = load_config(tmp_path)
    engine = PullingEngine(
        {},
        images={"py": info("sha256:arm", "linux/arm64"), "pyb": info("sha256:armb", "linux/arm64")},
    )
    lines: list[str] = []
    [built] = _targets(cfg, engine, lines.append)
    assert built.target.cfg.cross_builder == ""
    assert any("no builder image for linux/amd64" in line for line in lines)


def test_a_wheel_another_key_has_is_linked_not_downloaded(tmp_path: Path) -> None:
    """The same file (its sha256 the index's) in another key's wheels is hard-linked
    into this run's staging; a file of that name with other bytes is not taken."""
    import hashlib

    from nox_warpdrive.runtime import common
    from nox_warpdrive.runtime import cross as runtime_cross

    amd = tmp_path / "amdkey" / "wheels"
    amd.mkdir(parents=True)
    (amd / "gunicorn-27.0.1-py3-none-any.whl").write_bytes(b"pure")
    (amd / "other-1.0-py3-none-any.whl").write_bytes(b"changed")
    arm = tmp_path / "armkey"
    (arm / "wheels").mkdir(parents=True)
    staging = arm / "staging-1"
    staging.mkdir()
    ctx = common.RunState({"volume_dir": str(tmp_path)}, str(arm), str(staging))
    sha = hashlib.sha256(b"pure").hexdigest()
    pins = [
        common.Pin(
            "gunicorn", "27.0.1", WHEELS + "gunicorn-27.0.1-py3-none-any.whl", sha, None, None
        ),
        common.Pin("other", "1.0", WHEELS + "other-1.0-py3-none-any.whl", sha, None, None),
        common.Pin("new", "1.0", WHEELS + "new-1.0-py3-none-any.whl", sha, None, None),
    ]
    assert runtime_cross.link_known(ctx, pins) == pins[:1]
    assert sorted(p.name for p in staging.iterdir()) == ["gunicorn-27.0.1-py3-none-any.whl"]
    linked = staging / "gunicorn-27.0.1-py3-none-any.whl"
    assert linked.stat().st_ino == (amd / "gunicorn-27.0.1-py3-none-any.whl").stat().st_ino


def test_a_failed_compile_names_the_platform_key(tmp_path: Path) -> None:
    plan = arm_plan(tmp_path)
    pins = [["wd-broken-demo", "0.1.0", None, None, "http://i/b.tar.gz", "s"]]

    def runs(p: Any, ready: Any) -> dict[str, Any]:
        if p.pins is None:
            return {"pending": pins, "compile": ["wd-broken-demo==0.1.0"], "new": []}
        raise BuildError("compiling wd-broken-demo==0.1.0 failed; its last lines: x", fix="f")

    with pytest.raises(BuildError) as caught:
        cross.run(plan, "pyb", probe, runs, None, lambda line: None)
    assert caught.value.message.startswith(f"for {ARM_KEY.slug} (emulated): compiling")
    assert caught.value.fix == "f" and isinstance(caught.value.__cause__, BuildError)
