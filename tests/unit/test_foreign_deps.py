"""Which foreign deps layers are made natively (build/foreign_deps.py), on the fake
engine: the native image found for the base ref, the preconditions from the probes, the
target's wheel tags, and the one line saying why a layer stays emulated. That the two
ways give the same layer is proved on the real engine (test_foreign_deps_engine.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from fake_engine import BLANK, FakeEngine

from nox_warpdrive.build import foreign_deps
from nox_warpdrive.build.deps_step import Installer
from nox_warpdrive.config import Config, load_config
from nox_warpdrive.platform import Platform, PlatformKey

ARM64 = Platform("linux", "arm64")
ARM_KEY = PlatformKey(
    "cp311", "cp311", "linux_aarch64", "glibc", "2.36", "debian", "12", "3.11.2", "/usr/bin/python3"
)
AMD_KEY = dataclasses.replace(ARM_KEY, platform="linux_x86_64")
AMD_IMAGE = dataclasses.replace(BLANK, id="sha256:amd", platform="linux/amd64")
ARM_IMAGE = dataclasses.replace(BLANK, id="sha256:arm", platform="linux/arm64")


def config(tmp_path: Path, base: str) -> Config:
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "site"\nversion = "0"\n[tool.warpdrive]\nbase-image = "{base}"\n'
    )
    (tmp_path / "wsgi.py").write_text("application = None\n")
    return load_config(tmp_path)


@pytest.fixture
def probed(monkeypatch: pytest.MonkeyPatch) -> dict[str, PlatformKey]:
    """What the probe of each image says (image ref -> key)."""
    keys: dict[str, PlatformKey] = {}

    def probe(engine: object, ref: str, role: str, cfg: Config) -> tuple[object, PlatformKey]:
        return None, keys[ref]

    monkeypatch.setattr(foreign_deps, "probe_image", probe)
    return keys


def test_wheel_platforms_are_the_targets_tags_newest_first() -> None:
    tags = foreign_deps.wheel_platforms(ARM_KEY)
    assert tags[0] == "manylinux_2_36_aarch64"
    assert tags.index("manylinux_2_17_aarch64") + 1 == tags.index("manylinux2014_aarch64")
    assert tags[-1] == "linux_aarch64"
    musl = dataclasses.replace(ARM_KEY, libc="musl", libc_version="1.2")
    assert foreign_deps.wheel_platforms(musl) == [
        "musllinux_1_2_aarch64",
        "musllinux_1_1_aarch64",
        "musllinux_1_0_aarch64",
        "linux_aarch64",
    ]
    assert foreign_deps.wheel_platforms(dataclasses.replace(ARM_KEY, platform="win_amd64")) == []


def test_the_native_twin_is_the_base_ref_of_the_engines_cpu(
    tmp_path: Path, probed: dict[str, PlatformKey]
) -> None:
    engine = FakeEngine(
        images={"img/python:3.11": AMD_IMAGE, "img/python:3.11-linux-arm64": ARM_IMAGE}
    )
    cfg = config(tmp_path, "img/python:3.11-linux-arm64")  # as target_for names it
    probed["img/python:3.11"] = AMD_KEY
    twin, why = foreign_deps.native_twin(engine, cfg, ARM64, ARM_KEY)
    assert twin is not None and twin.ref == "img/python:3.11" and why == ""
    assert twin.info.id == "sha256:amd"


def test_another_python_or_no_native_image_keeps_emulation(
    tmp_path: Path, probed: dict[str, PlatformKey]
) -> None:
    engine = FakeEngine(
        images={"img/python:3.11": AMD_IMAGE, "img/python:3.11-linux-arm64": ARM_IMAGE}
    )
    cfg = config(tmp_path, "img/python:3.11-linux-arm64")
    probed["img/python:3.11"] = dataclasses.replace(AMD_KEY, python_version="3.11.9")
    twin, why = foreign_deps.native_twin(engine, cfg, ARM64, ARM_KEY)
    assert twin is None and "3.11.9" in why and "3.11.2" in why
    probed["img/python:3.11"] = dataclasses.replace(AMD_KEY, executable="/usr/local/bin/python3")
    assert foreign_deps.native_twin(engine, cfg, ARM64, ARM_KEY)[0] is None
    alone = FakeEngine(images={"img/python:3.11-linux-arm64": ARM_IMAGE})
    twin, why = foreign_deps.native_twin(alone, cfg, ARM64, ARM_KEY)
    assert (
        twin is None
        and why == "there is no local linux/amd64 image of img/python:3.11 to install in"
    )


def test_only_a_whole_layer_of_another_cpu_is_made_natively(
    tmp_path: Path, probed: dict[str, PlatformKey]
) -> None:
    engine = FakeEngine(
        images={"img/python:3.11": AMD_IMAGE, "img/python:3.11-linux-arm64": ARM_IMAGE}
    )
    cfg = config(tmp_path, "img/python:3.11-linux-arm64")
    probed["img/python:3.11"] = AMD_KEY
    lines: list[str] = []
    pip = Installer("pip")
    found = foreign_deps.native_way(engine, cfg, (ARM_IMAGE, ARM_KEY, pip), False, lines.append)
    assert found is not None and found.uv == ""
    assert lines == [
        "warpdrive: making the linux/arm64 deps layer in img/python:3.11 (no emulation)"
    ]
    lines.clear()  # the engine's own platform: nothing to say
    way = foreign_deps.native_way(engine, cfg, (AMD_IMAGE, AMD_KEY, pip), False, lines.append)
    assert way is None and lines == []
    uv = Installer("uv", f"/warpdrive/{ARM_KEY.slug}/tools/uv-0.13.9/uv", "0.13.9")
    assert (
        foreign_deps.native_way(engine, cfg, (ARM_IMAGE, ARM_KEY, uv), False, lines.append) is None
    )
    assert (
        foreign_deps.native_way(engine, cfg, (ARM_IMAGE, ARM_KEY, pip), True, lines.append) is None
    )
    assert lines == [
        "warpdrive: making the linux/arm64 deps layer under emulation: the volume has no "
        "linux_x86_64 uv 0.13.9 (its installer)",
        "warpdrive: making the linux/arm64 deps layer under emulation: it adds wheels to "
        "an earlier deps layer of that platform",
    ]
    # the engine's CPU's uv of that version, kept for its own platform key: uv installs
    tools = {"tools": {"uv": {"path": "tools/uv-0.13.9/uv", "version": "0.13.9"}}}
    engine.volumes.add(cfg.volume)
    engine.volume_files[(cfg.volume, f"{AMD_KEY.slug}/manifest.json")] = json.dumps(tools).encode()
    found = foreign_deps.native_way(engine, cfg, (ARM_IMAGE, ARM_KEY, uv), False, lines.append)
    assert found is not None and found.uv == f"/warpdrive/{AMD_KEY.slug}/tools/uv-0.13.9/uv"
    # kept for the native key by a wheelhouse of another platform (no manifest of its own)
    del engine.volume_files[(cfg.volume, f"{AMD_KEY.slug}/manifest.json")]
    engine.volume_files[(cfg.volume, f"{AMD_KEY.slug}/tools/uv-0.13.9/uv")] = b"\x7fELF"
    found = foreign_deps.native_way(engine, cfg, (ARM_IMAGE, ARM_KEY, uv), False, lines.append)
    assert found is not None and found.uv == f"/warpdrive/{AMD_KEY.slug}/tools/uv-0.13.9/uv"
    older = Installer("uv", uv.path, "0.12.0")
    assert (
        foreign_deps.native_way(engine, cfg, (ARM_IMAGE, ARM_KEY, older), False, lines.append)
        is None
    )


def test_uv_platform_names_exactly_the_targets_tags() -> None:
    assert foreign_deps.uv_platform(ARM_KEY) == "aarch64-manylinux_2_36"
    assert foreign_deps.uv_platform(AMD_KEY) == "x86_64-manylinux_2_36"
    assert foreign_deps.uv_platform(dataclasses.replace(ARM_KEY, libc_version="2.30")) == ""
    musl = dataclasses.replace(ARM_KEY, libc="musl", libc_version="1.2")
    assert foreign_deps.uv_platform(musl) == "aarch64-unknown-linux-musl"


def test_the_native_step_installs_the_targets_wheels_for_its_tags(
    tmp_path: Path, probed: dict[str, PlatformKey]
) -> None:
    import io
    import tarfile

    from nox_warpdrive.build.deps import plan_deps

    cfg = config(tmp_path, "img/python:3.11-linux-arm64")
    emulated = plan_deps(cfg, ARM_IMAGE, ARM_KEY, [], Installer("pip"))
    twin = foreign_deps.NativeTwin("img/python:3.11", AMD_IMAGE, AMD_KEY)
    base = (b"root:x:0:0::/root:/bin/sh\n", ["libc.so.6"])
    step = foreign_deps.plan_native(cfg, emulated, (ARM_KEY, Installer("pip")), [], twin, base)
    assert step.image == "sha256:amd"  # run natively...
    assert step.commit == emulated.step.commit  # ...labelled and keyed as the emulated one
    with tarfile.open(fileobj=io.BytesIO(step.files[0][1])) as tar:
        member = tar.extractfile("warpdrive-build/plan.json")
        assert member is not None
        plan = json.load(member)
    assert plan["wheels_dir"] == f"/warpdrive/{ARM_KEY.slug}/wheels"
    assert plan["platforms"][0] == "manylinux_2_36_aarch64"
    assert plan["check"] is False and plan["passwd"]
    assert plan["loader_cache"] == ["libc.so.6"]  # checked there, from the target's cache
    no_cache = foreign_deps.plan_native(
        cfg, emulated, (ARM_KEY, Installer("pip")), [], twin, (base[0], None)
    )
    with tarfile.open(fileobj=io.BytesIO(no_cache.files[0][1])) as tar:
        member = tar.extractfile("warpdrive-build/plan.json")
        assert member is not None
        assert "loader_cache" not in json.load(member)  # the emulated check only


def test_pip_takes_the_targets_tags_in_the_virtualenv(monkeypatch: pytest.MonkeyPatch) -> None:
    """assemble.py: pip is started so that --platform is taken without --target (the
    virtualenv is the target's), and is started as always without platforms."""
    from nox_warpdrive.runtime import assemble

    ran: list[list[str]] = []
    monkeypatch.setattr(assemble, "run", lambda cmd, **kw: ran.append(cmd))
    plan = {"venv": "/v", "installer": "pip", "platforms": ["manylinux_2_36_aarch64"]}
    assemble.install_wheels(plan, ["/w/a.whl"], {})
    assemble.install_wheels({"venv": "/v", "installer": "pip"}, ["/w/a.whl"], {})
    cross, native = ran
    assert cross[:3] == ["/v/bin/python", "-c", assemble.PIP_FOR_PLATFORMS]
    assert cross[3] == "install" and "--platform=manylinux_2_36_aarch64" in cross
    assert cross[-1] == "/w/a.whl"
    assert native[:4] == ["/v/bin/python", "-m", "pip", "install"]
    assert not any(a.startswith("--platform") for a in native)
