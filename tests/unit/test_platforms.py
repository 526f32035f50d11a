"""Target platforms (issue 22): parsing `platforms`/--platform, resolving base and
builder images per platform (a local image of another CPU is an error naming both and the
fix, an index in a registry is pulled for the platform and its tag put back), the image
index body, and `exec format error` turned into the emulation fix."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fake_engine import FakeEngine

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import ImageInfo
from nox_warpdrive.engine.base import foreign_cpu
from nox_warpdrive.engine.dockerpy import image_info
from nox_warpdrive.errors import (
    ConfigError,
    EngineError,
    ImagePlatformError,
    RegistryError,
    WarpdriveError,
)
from nox_warpdrive.platform import Platform, parse_platform, parse_platforms, platform_ref
from nox_warpdrive.registry.index import Entry, index_body, push_index
from nox_warpdrive.wheelhouse.targets import image_for, restore, target_for

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")


def info(image_id: str, platform: str) -> ImageInfo:
    return ImageInfo(image_id, (), {}, 1, 1, "", platform=platform)


class PullingEngine(FakeEngine):
    """A fake engine whose registry has ``remote[(ref, platform)]``: a pull tags it
    locally, as `docker pull --platform` does."""

    def __init__(self, remote: dict[tuple[str, str], ImageInfo], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.remote = remote
        self.pulls: list[tuple[str, str | None]] = []

    def pull(self, ref: str, out: Any = None, platform: str | None = None) -> ImageInfo | None:
        self.pulls.append((ref, platform))
        found = self.remote.get((ref, platform or ""))
        if found is not None:
            self.images[ref] = found
            self.images[found.id] = found
        return found


def test_platforms_parse_with_variants_aliases_and_comma_lists() -> None:
    assert parse_platform("linux/arm64") == ARM64
    assert parse_platform("linux/aarch64") == ARM64
    assert parse_platform("linux/x86_64") == AMD64
    assert str(parse_platform("linux/arm/v7")) == "linux/arm/v7"
    assert parse_platform("linux/arm/v7").slug == "linux-arm-v7"
    assert parse_platforms("linux/amd64,linux/arm64,linux/amd64") == (AMD64, ARM64)
    assert parse_platforms(["linux/arm64", "linux/amd64,linux/arm/v7"])[2].variant == "v7"
    for bad in ("arm64", "linux/", "linux/arm/v7/x", "linux arm64"):
        with pytest.raises(WarpdriveError, match="OS/ARCH"):
            parse_platform(bad)


def test_an_empty_variant_matches_any() -> None:
    assert Platform("linux", "arm64", "v8").matches(ARM64)
    assert not Platform("linux", "arm", "v7").matches(Platform("linux", "arm", "v6"))
    assert not AMD64.matches(ARM64)


def test_platforms_key_and_its_errors(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = []\n[tool.warpdrive]\n'
        'platforms = ["linux/amd64", "linux/arm64"]\n'
    )
    assert load_config(tmp_path).platforms == (AMD64, ARM64)
    assert load_config(tmp_path, {"platforms": ["linux/arm64"]}).platforms == (ARM64,)
    with pytest.raises(ConfigError, match=r"`platforms` in \[tool\.warpdrive\]"):
        load_config(tmp_path, {"platforms": ["arm64"]})
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = []\n')
    assert load_config(tmp_path).platforms == ()  # the engine's own, as before


def test_image_info_reads_the_platform_of_the_config() -> None:
    attrs = {"Id": "sha256:x", "Os": "linux", "Architecture": "arm64", "Variant": "v8"}
    assert image_info(attrs).platform == "linux/arm64/v8"
    assert image_info({"Id": "sha256:x"}).platform == ""


def test_a_local_image_of_the_platform_is_used_as_it_is() -> None:
    engine = PullingEngine({}, images={"py": info("sha256:amd", "linux/amd64")})
    found = image_for(engine, "py", "base-image", AMD64)
    assert found.info.id == "sha256:amd" and found.moved is None
    assert engine.pulls == []


def test_a_local_image_of_another_cpu_that_no_registry_has_is_an_error() -> None:
    engine = PullingEngine({}, images={"py": info("sha256:amd", "linux/amd64")})
    with pytest.raises(ImagePlatformError) as raised:
        image_for(engine, "py", "base-image", ARM64)
    message = str(raised.value)
    assert "base-image py is an image for linux/amd64, not linux/arm64" in message
    assert "image index" in message and "fix:" in message


def test_a_failed_pull_for_a_local_image_of_another_cpu_keeps_its_cause() -> None:
    class Offline(PullingEngine):
        def pull(self, ref: str, out: Any = None, platform: str | None = None) -> None:
            raise EngineError("cannot pull py: no network")

    engine = Offline({}, images={"py": info("sha256:amd", "linux/amd64")})
    with pytest.raises(ImagePlatformError, match="pulling it failed") as raised:
        image_for(engine, "py", "base-image", ARM64)
    assert isinstance(raised.value.__cause__, EngineError)


def test_an_index_is_pulled_for_the_platform_and_the_tag_put_back() -> None:
    remote = {("reg/py", "linux/arm64"): info("sha256:arm", "linux/arm64")}
    engine = PullingEngine(remote, images={"reg/py": info("sha256:amd", "linux/amd64")})
    found = image_for(engine, "reg/py", "base-image", ARM64)
    assert found.info.id == "sha256:arm"
    assert engine.pulls == [("reg/py", "linux/arm64")]
    assert found.moved == ("reg/py", "sha256:amd")
    restore(engine, (found,))
    assert engine.tags[-1] == ("sha256:amd", "reg/py")


def test_a_registry_image_not_for_the_platform_is_an_error_and_the_tag_put_back() -> None:
    remote = {("reg/py", "linux/arm64"): info("sha256:amd2", "linux/amd64")}
    engine = PullingEngine(remote, images={"reg/py": info("sha256:amd", "linux/amd64")})
    with pytest.raises(ImagePlatformError, match="not an image index holding linux/arm64"):
        image_for(engine, "reg/py", "base-image", ARM64)
    assert engine.tags[-1] == ("sha256:amd", "reg/py")


def test_a_missing_image_is_the_usual_missing_image_error() -> None:
    engine = PullingEngine({})
    with pytest.raises(EngineError, match="not on the engine"):
        image_for(engine, "nope", "base-image", ARM64)


def test_target_for_the_engine_platform_keeps_the_config(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = []\n[tool.warpdrive]\nbase-image = "py"\n'
        'builder-image = "pyb"\n'
    )
    cfg = load_config(tmp_path)
    engine = PullingEngine(
        {("pyb", "linux/arm64"): info("sha256:armb", "linux/arm64")},
        images={"py": info("sha256:amd", "linux/amd64"), "pyb": info("sha256:b", "")},
    )
    native = target_for(cfg, engine, AMD64, AMD64)
    assert native.native and native.cfg is cfg
    engine.images["py"] = info("sha256:arm", "linux/arm64")  # a local arm64 base
    arm = target_for(cfg, engine, ARM64, AMD64)
    # "pyb" says no platform: taken as it is (an image of an older engine)
    assert not arm.native
    assert (arm.cfg.base_image, arm.cfg.builder_image) == ("py", "pyb")
    assert dataclasses.replace(arm.cfg, base_image="py", builder_image="pyb") == cfg


def test_the_index_lists_each_platform_with_its_manifest() -> None:
    docker_manifest = "application/vnd.docker.distribution.manifest.v2+json"
    entries = [
        Entry(AMD64, "sha256:a", docker_manifest, 10),
        Entry(Platform("linux", "arm", "v7"), "sha256:b", docker_manifest, 11),
    ]
    body, media = index_body(entries)
    assert media == "application/vnd.docker.distribution.manifest.list.v2+json"
    data = json.loads(body)
    assert data["schemaVersion"] == 2 and data["mediaType"] == media
    assert [m["platform"] for m in data["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm", "os": "linux", "variant": "v7"},
    ]
    assert [(m["digest"], m["size"]) for m in data["manifests"]] == [
        ("sha256:a", 10),
        ("sha256:b", 11),
    ]
    oci = "application/vnd.oci.image.manifest.v1+json"
    assert (
        index_body([Entry(AMD64, "sha256:a", oci, 1)])[1]
        == "application/vnd.oci.image.index.v1+json"
    )


def test_platform_refs_keep_the_registry_port() -> None:
    assert platform_ref("127.0.0.1:5000/app:1", ARM64) == "127.0.0.1:5000/app:1-linux-arm64"
    assert platform_ref("app", ARM64) == "app:latest-linux-arm64"


def test_exec_format_error_is_recognized() -> None:
    said = "standard_init_linux.go:228: exec user process caused: exec format error"
    assert foreign_cpu(said)
    assert not foreign_cpu("exited with code 1")


def test_a_pulled_image_is_kept_under_its_platform_tag_and_found_there_next() -> None:
    remote = {("reg/py", "linux/arm64"): info("sha256:arm", "linux/arm64")}
    engine = PullingEngine(remote)
    found = image_for(engine, "reg/py", "base-image", ARM64, native=AMD64)
    assert ("sha256:arm", "reg/py:latest-linux-arm64") in engine.tags
    assert found.moved == ("reg/py", "")  # the tag named nothing: it is removed again
    assert found.name == "reg/py:latest-linux-arm64"  # what the build names it by
    restore(engine, (found,))
    assert engine.removed[-1] == "reg/py"
    engine.images.pop("reg/py", None)
    again = image_for(engine, "reg/py", "base-image", ARM64, native=AMD64)
    assert again.info.id == "sha256:arm" and again.moved is None
    assert engine.pulls == [("reg/py", "linux/arm64")]  # not pulled twice


def test_the_engine_platform_pulled_where_nothing_was_keeps_the_tag() -> None:
    remote = {("reg/py", "linux/amd64"): info("sha256:amd", "linux/amd64")}
    engine = PullingEngine(remote)
    found = image_for(engine, "reg/py", "base-image", AMD64, native=AMD64)
    assert found.moved is None and engine.tags == []


def test_the_sessions_take_platform_and_refuse_what_does_not_work_with_it_yet(
    tmp_path: Path,
) -> None:
    sessions = importlib.import_module("nox_warpdrive.sessions")

    for parser in (sessions.wheelhouse_parser, sessions.image_parser, sessions.run_parser):
        args = parser().parse_args(["--platform", "linux/amd64,linux/arm64"])
        assert sessions._platforms(args) == {"platforms": ["linux/amd64", "linux/arm64"]}
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = []\n')
    # --push-only takes platforms, and as without them wants a ref in a registry
    with pytest.raises(sessions._ArgError, match="--push-only builds the image in a registry"):
        sessions.run_image(tmp_path, ["--platform", "linux/arm64", "--push-only"], print)
    with pytest.raises(sessions._ArgError, match="--check-reproducible checks the engine's own"):
        sessions.run_image(tmp_path, ["--platform", "linux/arm64", "--check-reproducible"], print)


class _FakeRegistry:
    """What push_index asks a registry: the manifest at a tag, and the index put last."""

    put: ClassVar[list[tuple[str, str, bytes, str]]] = []

    def __init__(self, registry: str, login: Any, timeout: float) -> None:
        self.registry = registry

    def manifest(self, repo: str, reference: str) -> Any:
        from nox_warpdrive.engine.registry_api import DOCKER_MANIFEST, Manifest

        return Manifest(f"sha256:{reference}", DOCKER_MANIFEST, b"{}")

    def put_manifest(self, repo: str, tag: str, body: bytes, media_type: str) -> str:
        self.put.append((repo, tag, body, media_type))
        return "sha256:index"


def test_the_tag_moves_only_once_every_platform_image_is_pushed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nox_warpdrive.engine import registry_api

    monkeypatch.setattr(registry_api, "Registry", _FakeRegistry)
    _FakeRegistry.put = []
    images = {"reg:5000/app:1": info("sha256:a", "linux/amd64")}
    images["reg:5000/app:1-linux-arm64"] = info("sha256:b", "linux/arm64")
    engine = FakeEngine(images=images)
    pairs = [(AMD64, "reg:5000/app:1"), (ARM64, "reg:5000/app:1-linux-arm64")]
    assert push_index(engine, "reg:5000/app:1", pairs, print) == "sha256:index"
    assert engine.pushed == ["reg:5000/app:1-linux-amd64", "reg:5000/app:1-linux-arm64"]
    ((repo, tag, body, _),) = _FakeRegistry.put
    assert (repo, tag) == ("app", "1")
    digests = [m["digest"] for m in json.loads(body)["manifests"]]
    assert digests == ["sha256:1-linux-amd64", "sha256:1-linux-arm64"]

    class FailingSecond(FakeEngine):
        def push(self, ref: str, out: Any) -> str:
            if ref.endswith("arm64"):
                raise RegistryError("pushing it failed: refused")
            return super().push(ref, out)

    _FakeRegistry.put = []
    with pytest.raises(RegistryError):
        push_index(FailingSecond(images=images), "reg:5000/app:1", pairs, print)
    assert _FakeRegistry.put == []  # no index: the tag still names what it named


def test_the_summary_says_each_platform_and_the_total_once(tmp_path: Path) -> None:
    from nox_warpdrive.image import ImageResult
    from nox_warpdrive.multiarch.build import MultiResult, PlatformImage

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = []\n')
    cfg = load_config(tmp_path)

    def one(arch: str, seconds: float) -> PlatformImage:
        result = ImageResult("app:latest", "sha256:x", False, True, 1, 3, seconds)
        return PlatformImage(Platform("linux", arch), "app:latest", result, cfg)

    alone = MultiResult("app:latest", (one("arm64", 23.8),), 23.8)
    assert alone.summary() == "image app:latest for 1 platform: linux/arm64 built (23.8 s)"
    both = MultiResult("app:latest", (one("amd64", 4.0), one("arm64", 70.0)), 74.5)
    assert both.summary() == (
        "image app:latest for 2 platforms: linux/amd64 built (4.0 s), "
        "linux/arm64 built (70.0 s) (74.5 s in all)"
    )
    # pushed under each platform's own tag with several, the tag itself alone
    assert [i.pushed_as("reg:5000/app:1", True) for i in both.images] == [
        "reg:5000/app:1-linux-amd64",
        "reg:5000/app:1-linux-arm64",
    ]
    assert alone.images[0].pushed_as("reg:5000/app:1", False) == "reg:5000/app:1"


def test_engines_name_the_engine_that_builds_a_platform_and_refuse_what_is_not_one(
    tmp_path: Path,
) -> None:
    def cfg_with(line: str) -> Any:
        (tmp_path / "pyproject.toml").write_text(
            '[project]\nname = "x"\ndependencies = []\n[tool.warpdrive]\n' + line + "\n"
        )
        return load_config(tmp_path)

    cfg = cfg_with('engines = { "linux/aarch64" = "ssh://me@arm-builder" }')
    assert cfg.engines == ((ARM64, "ssh://me@arm-builder"),)
    for bad, said in (
        ('engines = { "arm64" = "ssh://arm" }', "`engines` in [tool.warpdrive]"),
        ('engines = { "linux/arm64" = "arm-builder" }', "is not a DOCKER_HOST URL"),
        ('engines = { "linux/arm64" = 3 }', "is not a DOCKER_HOST URL"),
        ('engines = "ssh://arm"', "`engines` in [tool.warpdrive] is"),
    ):
        with pytest.raises(ConfigError, match=re.escape(said)):
            cfg_with(bad)


def connect_to(monkeypatch: pytest.MonkeyPatch, engine: FakeEngine) -> list[str | None]:
    """Every engine `engines` names connects to ``engine``; the hosts asked for, in order."""
    from nox_warpdrive.multiarch import build as multi

    connected: list[str | None] = []

    def connect(timeout: float = 600, host: str | None = None) -> FakeEngine:
        connected.append(host)
        return engine

    monkeypatch.setattr(multi, "connect_engine", connect)
    return connected


def test_a_platform_with_an_engine_is_built_there_the_others_on_the_session_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine `engines` names is connected once and builds its platform as
    its own (no emulation): its base image is its local one; a platform without one is
    built on the session's engine; a named engine of another CPU is said."""
    from nox_warpdrive.multiarch import build as multi

    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = []\n[tool.warpdrive]\nbase-image = "py"\n'
        'platforms = ["linux/amd64", "linux/arm64"]\n'
        'engines = { "linux/arm64" = "tcp://arm:2375" }\n'
    )
    cfg = load_config(tmp_path)
    here = FakeEngine(images={"py": info("sha256:amd", "linux/amd64")})
    arm = FakeEngine(images={"py": info("sha256:arm", "linux/arm64")})
    arm.about_info = dataclasses.replace(arm.about_info, arch="arm64")
    connected = connect_to(monkeypatch, arm)
    lines: list[str] = []
    builders = multi._targets(cfg, here, lines.append)  # type: ignore[arg-type]
    assert connected == ["tcp://arm:2375"]
    amd, arm64 = builders
    assert amd.engine is here and amd.host == "" and amd.named is None and amd.target.native
    assert arm64.engine is arm and arm64.named is arm and arm64.target.native
    assert arm64.target.cfg.base_image == "py"  # its own engine's local arm64 base
    multi._announce(lines.append, arm64, 2)
    assert lines[-1] == "warpdrive: == linux/arm64 on the engine at tcp://arm:2375"

    # an engine named for arm64 that is an amd64 one: built there, emulated, and said
    arm.about_info = dataclasses.replace(arm.about_info, arch="amd64")
    arm.images["py-linux-arm64"] = info("sha256:arm", "linux/arm64")
    lines.clear()
    builders = multi._targets(cfg, here, lines.append)  # type: ignore[arg-type]
    assert not builders[1].target.native
    assert any("runs linux/amd64: linux/arm64 is emulated there" in line for line in lines)


def test_the_engine_platform_built_from_its_kept_platform_tag(tmp_path: Path) -> None:
    """The engine's own image of the base kept as REF-linux-amd64 (an earlier build for
    another platform pulled it so, REF put back to naming nothing): the native target
    names that tag, else its build would look for REF and not find it."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = []\n[tool.warpdrive]\nbase-image = "reg/py"\n'
    )
    cfg = load_config(tmp_path)
    engine = PullingEngine(
        {}, images={platform_ref("reg/py", AMD64): info("sha256:amd", "linux/amd64")}
    )
    native = target_for(cfg, engine, AMD64, AMD64)
    assert native.native and native.cfg.base_image == platform_ref("reg/py", AMD64)


def test_run_with_a_platform_named_in_engines_runs_on_that_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --platform linux/arm64` with an engine named for arm64: the image that
    engine built (and keeps) runs there, and the line says where its port is; a platform
    not named runs on the session's engine, as before."""
    from nox_warpdrive.multiarch import build as multi

    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = []\n[tool.warpdrive]\nimage = "app:1"\n'
        'platforms = ["linux/amd64", "linux/arm64"]\n'
        'engines = { "linux/arm64" = "ssh://me@arm-box" }\n'
    )
    cfg = load_config(tmp_path)
    here = FakeEngine(images={"app:1": info("sha256:amd", "linux/amd64")})
    arm = FakeEngine(images={"app:1-linux-arm64": info("sha256:arm", "linux/arm64")})
    connected = connect_to(monkeypatch, arm)
    lines: list[str] = []
    ran, on, host = multi.run_on(cfg, here, ARM64, lines.append)  # type: ignore[arg-type]
    assert (ran.image, on, host) == ("app:1-linux-arm64", arm, "ssh://me@arm-box")
    assert connected == ["ssh://me@arm-box"]
    assert lines == [
        "warpdrive: running app:1-linux-arm64 (linux/arm64) on the engine at ssh://arm-box, "
        "which built it: its port is published on that engine's host, arm-box, not on "
        "DOCKER_HOST's"
    ]
    lines.clear()
    ran, on, host = multi.run_on(cfg, here, AMD64, lines.append)  # type: ignore[arg-type]
    assert (ran.image, on, host, lines) == ("app:1", here, "", [])
    # not built there yet: the error names that engine and the fix
    del arm.images["app:1-linux-arm64"]
    with pytest.raises(WarpdriveError) as exc:
        multi.run_on(cfg, here, ARM64, lines.append)  # type: ignore[arg-type]
    assert exc.value.message == (
        "there is no image of app:1 for linux/arm64 on the engine at ssh://arm-box "
        "(`engines` names it for linux/arm64)"
    )
    assert exc.value.fix == "build it first: `nox -s image -- --platform linux/arm64`"


def test_each_platform_grown_wheelhouse_is_pushed_from_the_engine_that_built_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`image -- --push` with `wheelhouse-image` and an engine named for arm64: the
    arm64 key's new wheels are in that engine's volume, so they are pushed from there
    (from DOCKER_HOST's engine they were missing: a warning, and no wheelhouse image)."""
    from unit_support import PKEY

    from nox_warpdrive.image import ImageResult
    from nox_warpdrive.multiarch import build as multi
    from nox_warpdrive.wheelhouse.build import WheelhouseResult

    sessions = importlib.import_module("nox_warpdrive.sessions")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = []\n[tool.warpdrive]\nimage = "reg:5000/x:1"\n'
        'wheelhouse-image = "reg:5000/x-wheels"\nplatforms = ["linux/amd64", "linux/arm64"]\n'
    )
    cfg = load_config(tmp_path)
    here, arm = FakeEngine(), FakeEngine()

    def result(key: Any) -> ImageResult:
        wh = WheelhouseResult(key, False, ("a-1-py3-none-any.whl",), 1, 0.1, {"wheels": {}})
        return ImageResult("reg:5000/x:1", "sha256:i", False, False, 1, 1, 0.1, wheelhouse=wh)

    arm_key = dataclasses.replace(PKEY, platform="linux_aarch64")
    images = (
        multi.PlatformImage(AMD64, "reg:5000/x:1", result(PKEY), cfg),
        multi.PlatformImage(ARM64, "reg:5000/x:1-linux-arm64", result(arm_key), cfg, arm),
    )
    built = multi.MultiResult("reg:5000/x:1", images, 0.2, "sha256:index")
    monkeypatch.setattr(sessions, "connect", lambda out: here)
    monkeypatch.setattr(multi, "build_images", lambda *a, **k: built)
    monkeypatch.setattr(multi.MultiResult, "push_supply", lambda self, engine, out: None)
    pushed: list[tuple[Any, str]] = []
    monkeypatch.setattr(
        "nox_warpdrive.wheelhouse.image.push_wheelhouse",
        lambda engine, wh, ref, manifest, out: pushed.append((engine, wh.key.slug)),
    )
    sessions.run_image(tmp_path, ["--push"], lambda line: None)
    assert pushed == [(here, PKEY.slug), (arm, arm_key.slug)]


def test_run_goes_to_the_engine_named_for_the_one_configured_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`platforms = ["linux/arm64"]` alone with an engine named for it: `image` built
    and tagged it there, so `run` (no --platform) runs it there, its port on that host."""
    from nox_warpdrive.multiarch import build as multi

    sessions = importlib.import_module("nox_warpdrive.sessions")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = []\n[tool.warpdrive]\nimage = "app:1"\n'
        'platforms = ["linux/arm64"]\nengines = { "linux/arm64" = "tcp://arm-box:2375" }\n'
    )
    here = FakeEngine()
    arm = FakeEngine(images={"app:1": info("sha256:arm", "linux/arm64")})
    monkeypatch.setattr(sessions, "connect_engine", lambda: here)
    monkeypatch.setattr(multi, "connect_engine", lambda host=None: arm)
    ran: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        "nox_warpdrive.run.run",
        lambda cfg, engine, out, options, detach: ran.append((cfg.image, engine, options)),
    )
    sessions.run_container(tmp_path, ["--detach"], lambda line: None)
    ((image, engine, options),) = ran
    assert (image, engine, options.docker_host) == ("app:1", arm, "tcp://arm-box:2375")
