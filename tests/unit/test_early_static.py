"""collectstatic in the early deps step's container while its layer loads
(build/early_static.py): what runs there and in which order, what is kept, and that a
failure or no offer leaves the app step to collect. The engine is a fake here;
tests/integration/test_early_static_engine.py runs the real one (and compares the
image with the app step's)."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from test_plans import django_project
from unit_support import BASE, PKEY

from nox_warpdrive.build import app_layer
from nox_warpdrive.build.early_static import UNPACK, CollectJob, EarlyStatic, collect_in
from nox_warpdrive.build.prestart import WAITING, Prestart
from nox_warpdrive.plan import EXPORT_READY, CommitSpec, Step
from nox_warpdrive.supply import gather
from nox_warpdrive.wheelhouse.wheels import Wheel

ROOT = "opt/app-root/src/collected"
RECORD = "opt/app-root/.warpdrive/static-root"


def made_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def job(tmp_path: Path, reads: tuple[str, ...] = ()) -> CollectJob:
    cfg = django_project(tmp_path / "site1")
    app = app_layer.plan_app(cfg, BASE, PKEY, "depskey", "site1")
    plan = {"files": ["late-1.0-cp311-cp311-linux_x86_64.whl"], "venv": "/opt/app-root/venv"}
    return CollectJob(app, plan, "python3", reads)


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else b"") for m in tar}  # type: ignore[union-attr]


def test_collect_installs_the_late_wheels_then_runs_the_app_step_and_reads_it_back(
    tmp_path: Path,
) -> None:
    engine = FakeEngine(base=BASE)
    engine.read = made_tar({RECORD: f"/{ROOT}\n".encode(), f"{ROOT}/shop/site.css": b"body {}"})
    the_job = job(tmp_path)
    found = collect_in(engine, "box", the_job, lambda line: None)
    assert found is not None and found.root == f"/{ROOT}"
    assert f"{ROOT}/shop/site.css" in members(found.layer.data())
    # install (its plan names the tree to unpack), the app step, the read, in that order
    assert [cmd[2:3] for _, cmd in engine.execs] == [("install",), ("app",), ("export",)]
    assert all(name == "box" for name, _ in engine.execs)
    (_, first), (_, second) = engine.put
    plan = json.loads(members(first[0][1])["warpdrive-build/plan.json"])
    assert plan["unpack"] == [UNPACK] and plan["files"] == the_job.install["files"]
    assert members(first[1][1])[UNPACK.removeprefix("/tmp/")] == the_job.app.layer
    app_plan = json.loads(members(second[0][1])["warpdrive-build/plan.json"])
    assert app_plan["collectstatic"] is True and app_plan["export"] is True


def test_a_failed_step_is_kept_and_the_app_step_collects(tmp_path: Path) -> None:
    engine = FakeEngine(base=BASE)
    engine.exec_output = [[], ["Traceback ...", "ImproperlyConfigured: no network"]]
    engine.exec_codes = [0, 1]
    static = EarlyStatic(lambda full, installer: None)
    the_job = job(tmp_path)
    static.offer(lambda: the_job)
    static.run(engine, "box")
    assert static.for_app(the_job.app) is None
    shown: list[str] = []
    static.report(shown.append)
    assert shown == [
        "warpdrive: collectstatic beside the deps layer's load failed (the app step failed "
        "(exit code 1): ImproperlyConfigured: no network); the app step runs it"
    ]


def test_collected_files_are_only_for_the_app_plan_they_were_made_for(tmp_path: Path) -> None:
    engine = FakeEngine(base=BASE)
    engine.read = made_tar({RECORD: f"/{ROOT}\n".encode(), f"{ROOT}/a.css": b"a"})
    static = EarlyStatic(lambda full, installer: None)
    the_job = job(tmp_path)
    static.offer(lambda: the_job)
    static.run(engine, "box")
    assert static.for_app(the_job.app) is not None
    other = dataclasses.replace(the_job.app, static_key="another")
    assert static.for_app(other) is None
    shown: list[str] = []
    static.report(shown.append)
    assert shown[-1].startswith("warpdrive: collectstatic ran in the deps step's container")


def test_no_job_offered_runs_nothing_and_offers_are_made_once(tmp_path: Path) -> None:
    engine = FakeEngine(base=BASE)
    static = EarlyStatic(lambda full, installer: None)
    static.offer(None)
    static.offer(lambda: job(tmp_path))  # too late: the first offer stands
    static.run(engine, "box")
    assert engine.execs == [] and static.for_app(job(tmp_path).app) is None
    shown: list[str] = []
    static.report(shown.append)
    assert shown == []


def test_the_metadata_read_back_is_kept_by_path(tmp_path: Path) -> None:
    path = "/opt/app-root/venv/lib/python3.11/site-packages/late-1.0.dist-info/METADATA"
    engine = FakeEngine(base=BASE)
    engine.read = made_tar({path[1:]: b"Name: late\nLicense: MIT\n"})
    static = EarlyStatic(lambda full, installer: None)
    the_job = job(tmp_path, reads=(path,))
    engine.exec_codes = [0, 1]  # the collect fails: the metadata is read all the same
    static.offer(lambda: the_job)
    static.run(engine, "box")
    assert static.read == {path: b"Name: late\nLicense: MIT\n"}
    assert engine.execs[-1][1][2:] == ("export", path[1:])


def test_remembered_metadata_spares_the_image_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    wheel = Wheel("late-1.0-py3-none-any.whl", "late", "1.0", "a" * 64)
    [path] = gather.metadata_paths([wheel], "3.11.2")
    assert path.endswith("/python3.11/site-packages/late-1.0.dist-info/METADATA")
    gather.remember_metadata([wheel], "3.11.2", {path: b"Name: Late\nLicense: MIT\n"})
    assert gather._load_dists() == {"a" * 64: ("Late", "MIT")}


def test_the_started_container_is_used_while_its_layer_loads() -> None:
    """``after`` runs in the container (its name given) once the layer is read, and the
    layer is loaded meanwhile: the load does not wait for it."""
    step = Step(
        name="deps",
        image="sha256:base",
        command=("python3", "assemble.py", "deps"),
        export=("python3", "assemble.py", "export", "opt/app-root"),
        commit=CommitSpec(labels={"k": "v"}),
    )
    engine = FakeEngine(base=BASE, output=[WAITING])
    engine.exported = b"layer"
    loaded = threading.Event()
    seen: list[tuple[str, bool]] = []

    def after(name: str) -> None:
        seen.append((name, loaded.wait(5)))

    real_append = engine.append_layer

    def append_layer(*args: object, **kwargs: object) -> str:
        made = real_append(*args, **kwargs)  # type: ignore[arg-type]
        loaded.set()
        return made

    engine.append_layer = append_layer  # type: ignore[method-assign]
    started = Prestart(engine, step, after)
    made = started.use(step, lambda line: None)
    assert made is not None
    assert seen == [(started.name, True)]
    assert EXPORT_READY  # the protocol line the app step's exec waits for
