"""doctor's checks and ``image -- --plan``'s decisions, on the fake engine: what they
report, that a build-breaking finding fails, that no secret is shown, and that a plan
runs, tags, writes and creates nothing (the source index included)."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from unit_support import BASE, write
from unit_support import PKEY as BARE_KEY

from nox_warpdrive import doctor
from nox_warpdrive.build.app_layer import plan_app
from nox_warpdrive.build.deps import DEPS_FORMAT, deps_ref
from nox_warpdrive.config import Config, load_config
from nox_warpdrive.engine import Engine, ImageInfo
from nox_warpdrive.engine.about import DiskUsage
from nox_warpdrive.errors import EngineError, WarpdriveError
from nox_warpdrive.image_plan import missing_wheels, plan_image
from nox_warpdrive.inputs.model import LockedFile, Pin
from nox_warpdrive.inputs.requirements import RequirementSet
from nox_warpdrive.labels import DEPS_KEY_LABEL, DepsLabels
from nox_warpdrive.source import index as source_index
from nox_warpdrive.wheelhouse import probe_cache
from nox_warpdrive.wheelhouse.build import manifest_path, requirements_for
from nox_warpdrive.wheelhouse.wheels import Wheel, wheel_ids

BUILDER = dataclasses.replace(BASE, id="sha256:builder")
#: a probe's key: the probe cache keeps only keys with the image's marker values
PKEY = dataclasses.replace(
    BARE_KEY,
    markers=(
        ("implementation_name", "cpython"),
        ("os_name", "posix"),
        ("platform_machine", "x86_64"),
        ("platform_system", "Linux"),
        ("python_full_version", "3.12.4"),
        ("python_version", "3.12"),
        ("sys_platform", "linux"),
    ),
)
SHA = "a" * 64


def project(tmp_path: Path, extra: str = "") -> Config:
    """The app, in tmp_path/app (the unit tests' caches are in tmp_path too)."""
    root = tmp_path / "app"
    write(
        root,
        "pyproject.toml",
        '[project]\nname = "shop"\nversion = "0"\n\n[tool.warpdrive]\nimage = "shop:latest"\n'
        'base-image = "base:1"\nbuilder-image = "builder:1"\nvolume = "shopvol"\n' + extra,
    )
    write(root, "wsgi.py", "def application(environ, start_response):\n    return []\n")
    write(root, "requirements.txt", "wd-pure-demo\nwd-extra-demo\n")
    return load_config(root)


def engine_for(**kw: Any) -> FakeEngine:
    probe_cache.store(BASE.id, "python3", PKEY)
    probe_cache.store(BUILDER.id, "python3", PKEY)
    return FakeEngine(images={"base:1": BASE, "builder:1": BUILDER}, **kw)


def no_pull(engine: Engine) -> Any:
    return lambda ref: "the registry has no such image"


def entry(filename: str) -> dict[str, Any]:
    name, version = filename.split("-")[:2]
    return {"file": filename, "name": name, "version": version, "sha256": SHA, "size": 10}


WHEELS = ["wd_pure_demo-0.1.0-py3-none-any.whl", "gunicorn-23.0.0-py3-none-any.whl"]


def with_manifest(engine: FakeEngine, cfg: Config, files: list[str], digest: str = "") -> None:
    sets = {digest: {"resolved": [entry(f) for f in files], "built_at": "2026-12-01T10:00:00Z"}}
    data = {
        "wheels": {f: SHA for f in files},
        "sets": sets if digest else {},
        "tools": {"uv": {"path": "tools/uv-0.5.0/uv", "version": "0.5.0"}},
    }
    engine.volumes.add(cfg.volume)
    engine.volume_files[(cfg.volume, manifest_path(PKEY))] = json.dumps(data).encode()


def acted(engine: FakeEngine) -> list[Any]:
    """Everything the fake engine records that changes something."""
    return [
        engine.steps,
        engine.tags,
        engine.ensured,
        engine.appended,
        engine.removed,
        engine.pushed,
        engine.loaded,
        engine.secrets,
    ]


# ----------------------------------------------------------------------------- doctor


def test_doctor_fails_without_an_engine_and_says_how_to_start_one(tmp_path: Path) -> None:
    project(tmp_path)

    def connect() -> Engine:
        raise EngineError("no Docker engine answers", fix="start one")

    report = doctor.diagnose(tmp_path / "app", connect)
    assert [c.name for c in report.failed] == ["engine"]
    assert report.failed[0].fix == "start one"
    assert json.loads(report.to_json())["ok"] is False


def test_doctor_on_a_healthy_setup_passes_and_changes_nothing(tmp_path: Path) -> None:
    cfg = project(tmp_path)
    engine = engine_for()
    with_manifest(engine, cfg, WHEELS, "d1")
    labels = DepsLabels("k", DEPS_FORMAT, cfg.name, BASE.id, "pip", ()).to_labels()
    deps = dataclasses.replace(BASE, id="sha256:d", labels=labels, size=BASE.size + 33_000_000)
    engine.images["warpdrive-deps/shop:k"] = deps
    engine.usage = DiskUsage({cfg.volume: 42_000_000}, {"sha256:d": (200_000_000, 170_000_000)})
    report = doctor.diagnose(tmp_path / "app", lambda: engine, pull=no_pull)
    assert not report.failed, [c.line() for c in report.checks]
    text = "\n".join(c.line() for c in report.checks)
    assert "Docker 20.10 (API 1.41), overlay2, linux/amd64" in text
    assert "base-image: base:1" in text and PKEY.slug in text
    assert "fit: the builder's wheels fit" in text
    assert "shopvol (42.0 MB): 2 wheels, 1 requirement sets" in text
    assert "last built 2026-12-01T10:00:00Z" in text
    assert "uv 0.5.0 in the volume" in text
    assert (
        "deps images: 1 of shop (largest 33.0 MB over the base image; 30.0 MB held by no "
        "other image); 1 of all apps (30.0 MB)"
    ) in text
    assert acted(engine) == [[], [], [], [], [], [], [], []]


def test_doctor_names_a_missing_builder_image_and_fails(tmp_path: Path) -> None:
    project(tmp_path)
    engine = engine_for()
    del engine.images["builder:1"]
    report = doctor.diagnose(tmp_path / "app", lambda: engine, pull=no_pull)
    assert [c.name for c in report.failed] == ["builder-image"]
    failed = report.failed[0]
    assert "builder:1 is not on the engine; the registry has no such image" in failed.detail
    assert "builder-image" in failed.fix


def test_a_pullable_missing_image_still_fails_a_build_and_says_pull(tmp_path: Path) -> None:
    project(tmp_path)
    engine = engine_for()
    del engine.images["base:1"]
    report = doctor.diagnose(
        tmp_path / "app", lambda: engine, pull=lambda e: lambda r: "pullable from x"
    )
    assert [c.name for c in report.failed] == ["base-image"]
    assert report.failed[0].fix == "`docker pull base:1`"


def test_a_builder_that_does_not_fit_fails(tmp_path: Path) -> None:
    project(tmp_path)
    engine = engine_for()
    probe_cache.store(BUILDER.id, "python3", dataclasses.replace(PKEY, libc_version="2.39"))
    report = doctor.diagnose(tmp_path / "app", lambda: engine, pull=no_pull)
    assert [c.name for c in report.failed] == ["fit"]
    assert "libc_version" in report.failed[0].detail


def test_installer_uv_without_uv_in_the_volume_fails(tmp_path: Path) -> None:
    cfg = project(tmp_path, 'installer = "uv"\n')
    check = doctor.uv_check(cfg, {"wheels": {}}, PKEY.slug)
    assert check.status == doctor.FAIL and "nox -s wheelhouse" in check.fix
    auto = dataclasses.replace(cfg, installer="auto")
    assert doctor.uv_check(auto, {"wheels": {}}, PKEY.slug).status == doctor.WARN


def test_logins_name_their_helper_and_never_the_secret(tmp_path: Path) -> None:
    project(tmp_path, 'wheelhouse-image = "ghcr.io/me/wh"\n')
    engine = engine_for()
    engine.logins["ghcr.io"] = ("me", "s3cret-token")
    engine.helpers["ghcr.io"] = "desktop"
    report = doctor.diagnose(tmp_path / "app", lambda: engine, "registry.example/app:c", no_pull)
    logins = {c.name: c for c in report.checks if c.name.startswith("login")}
    assert logins["login for wheelhouse-image"].detail == "ghcr.io: login found (helper desktop)"
    assert logins["login for cache-from"].status == doctor.WARN
    assert logins["login for cache-from"].fix == "`docker login registry.example`"
    assert logins["login for image"].status == doctor.INFO
    assert "s3cret" not in report.to_json()


def test_host_caches_are_sized_by_directory(tmp_path: Path) -> None:
    write(tmp_path, "probes/a.json", "x" * 1500)
    write(tmp_path, "source-index/b.idx", "y" * 500)
    check = doctor.host_caches(tmp_path)
    assert check.detail == f"{tmp_path}: 2.0 kB (probes 1.5 kB, source-index 0.5 kB)"


# ----------------------------------------------------------------------------- plan


def test_missing_wheels_names_requirements_the_volume_lacks() -> None:
    reqs = RequirementSet(
        files=(("requirements.txt", b"wd-pure-demo\nWd_Extra.Demo>=1\n"),),
        top=("requirements.txt",),
        extra=("gunicorn",),
    )
    manifest = {"wheels": {"wd_pure_demo-0.1.0-py3-none-any.whl": SHA}}
    step = missing_wheels(reqs, manifest, "vol", PKEY.slug)
    assert step.fetch == ("gunicorn", "wd-extra-demo") and not step.complete
    assert missing_wheels(reqs, {}, "vol", PKEY.slug).reason.startswith("volume 'vol' has no")


def test_missing_wheels_of_a_lock_split_fetch_and_compile() -> None:
    wheel = LockedFile("wd_pure_demo-0.2.0-py3-none-any.whl", SHA)
    pins = (
        Pin("wd-pure-demo", "0.2.0", wheels=(wheel,)),
        Pin("wd-cext-demo", "0.1.0", sdist=LockedFile("wd_cext_demo-0.1.0.tar.gz", SHA)),
        Pin("kept", "1.0", wheels=(LockedFile("kept-1.0-py3-none-any.whl", SHA),)),
    )
    reqs = RequirementSet((), (), (), locked_from="uv.lock", locked=pins)
    manifest = {"wheels": {"wd_pure_demo-0.1.0-py3-none-any.whl": SHA, "kept-1.0-x.whl": SHA}}
    step = missing_wheels(reqs, manifest, "vol", PKEY.slug)
    assert step.fetch == ("wd-pure-demo 0.2.0",)
    assert step.compile == ("wd-cext-demo 0.1.0",)


def _resolved(cfg: Config) -> tuple[str, list[Wheel]]:
    reqs = requirements_for(cfg, PKEY)
    files = [*WHEELS, "wd_extra_demo-0.1.0-py3-none-any.whl"]
    return reqs.digest, [Wheel(f, *f.split("-")[:2], SHA, 10) for f in files]


def test_plan_of_an_added_package_names_it_and_acts_on_nothing(tmp_path: Path) -> None:
    cfg = project(tmp_path)
    engine = engine_for()
    with_manifest(engine, cfg, WHEELS, "an-older-set")
    plan = plan_image(cfg, engine)
    assert plan.wheels.fetch == ("wd-extra-demo",) and not plan.wheels.complete
    assert plan.deps.action == "after the wheelhouse" and not plan.up_to_date
    assert plan.deps.reason.endswith("an earlier deps image has a subset of them, else rebuilt")
    assert [(layer.role, layer.action) for layer in plan.layers] == [("code", "new")]
    assert "to fetch: wd-extra-demo" in "\n".join(plan.lines())
    assert "installing from requirements.txt" in (plan.installed_from or "")
    assert acted(engine) == [[], [], [], [], [], [], [], []]
    source_index.flush()
    assert not source_index.index_path(cfg.project_dir).exists(), "the plan wrote the index"
    # a build's plan_app does write it: the check above can fail
    plan_app(cfg, BASE, PKEY, "k", "shop")
    source_index.flush()
    assert source_index.index_path(cfg.project_dir).exists()


def test_plan_with_no_index_and_a_lacking_wheelhouse_fails_as_the_build_would(
    tmp_path: Path,
) -> None:
    cfg = project(tmp_path)
    engine = engine_for()
    with pytest.raises(WarpdriveError, match="--no-index forbids fetching"):
        plan_image(cfg, engine, no_index=True)


@pytest.mark.parametrize("have", ["nothing", "subset", "same key"])
def test_plan_says_whether_the_deps_layer_is_rebuilt_extended_or_reused(
    tmp_path: Path, have: str
) -> None:
    cfg = project(tmp_path, 'installer = "pip"\n')
    engine = engine_for()
    digest, resolved = _resolved(cfg)
    with_manifest(engine, cfg, [w.filename for w in resolved], digest)
    first = plan_image(cfg, engine)
    assert first.wheels.complete and first.deps.action == "rebuilt"
    if have == "subset":
        labels = DepsLabels(
            "old", DEPS_FORMAT, cfg.name, BASE.id, "pip", tuple(wheel_ids(resolved[:2]))
        )
        engine.candidates.append(
            dataclasses.replace(BASE, id="sha256:old", labels=labels.to_labels())
        )
    if have == "same key":
        found = dataclasses.replace(BASE, id="sha256:deps", labels={DEPS_KEY_LABEL: first.deps.key})
        engine.images[deps_ref(cfg, first.deps.key)] = found
    plan = plan_image(cfg, engine)
    expected = {"nothing": "rebuilt", "subset": "extended", "same key": "reused"}[have]
    assert plan.deps.action == expected
    assert plan.deps.key == first.deps.key
    if have == "subset":
        assert plan.deps.adds == ("wd_extra_demo 0.1.0",)
    assert acted(engine) == [[], [], [], [], [], [], [], []]


def test_plan_of_an_unchanged_image_is_up_to_date(tmp_path: Path) -> None:
    cfg = project(tmp_path, 'installer = "pip"\n')
    engine = engine_for()
    digest, resolved = _resolved(cfg)
    with_manifest(engine, cfg, [w.filename for w in resolved], digest)
    deps_key = plan_image(cfg, engine).deps.key
    app = plan_app(cfg, BASE, PKEY, deps_key, "shop", digest)
    current: ImageInfo = dataclasses.replace(BASE, id="sha256:app", labels=app.commit.labels)
    engine.images["shop:latest"] = current
    engine.images[deps_ref(cfg, deps_key)] = dataclasses.replace(
        BASE, id="sha256:deps", labels={DEPS_KEY_LABEL: deps_key}
    )
    plan = plan_image(cfg, engine)
    assert plan.up_to_date and plan.deps.action == "reused"
    assert plan.lines()[-1] == "  image: up to date, nothing rebuilt"


# ----------------------------------------------------------------------------- sessions


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--json"], "--json goes with --plan"),
        (["--plan", "--push"], "drop --push"),
        (["--plan", "--cache-from", "r.example/app:1"], "drop --cache-from"),
    ],
)
def test_plan_arguments_that_would_act_are_refused_before_the_engine(
    tmp_path: Path, args: list[str], said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = importlib.import_module("nox_warpdrive.sessions")  # the package exports a function
    project(tmp_path)
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # nothing is contacted
    with pytest.raises(sessions._ArgError, match=said):
        sessions.run_image(tmp_path / "app", args, lambda line: None)
