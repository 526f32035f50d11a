"""A grow's container started before its wheels are known (build/prestart.py): used only
for the very container the grow decided on, given its files and then the go file;
removed otherwise, and whenever it was not used. The engine is a fake here;
tests/integration/test_prestart_engine.py runs the real one (and compares image IDs)."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from unit_support import BASE

from nox_warpdrive.build.prestart import GO, WAITING, Prestart, same_container, with_go
from nox_warpdrive.plan import CommitSpec, Step
from nox_warpdrive.tars import tar_files

STEP = Step(
    name="deps",
    image="sha256:parent",
    command=("python3", "/tmp/warpdrive-build/assemble.py", "deps"),
    files=(("/tmp", b"provisional"),),
    export=("python3", "assemble.py", "export", "@list"),
    cpu_shares=256,
    commit=CommitSpec(labels={"k": "provisional"}),
)
PLAN = tar_files({"warpdrive-build/plan.json": b"{}"})
REAL = dataclasses.replace(STEP, files=(("/tmp", PLAN),), commit=CommitSpec(labels={"k": "v"}))


def test_same_container_ignores_only_the_files_and_the_commit() -> None:
    assert same_container(STEP, REAL)
    assert not same_container(STEP, dataclasses.replace(REAL, image="sha256:other"))
    assert not same_container(STEP, dataclasses.replace(REAL, cpu_shares=None))
    assert not same_container(STEP, dataclasses.replace(REAL, tmpfs=("/x",)))


def test_the_go_file_is_put_after_the_real_files() -> None:
    with tarfile.open(fileobj=io.BytesIO(GO)) as tar:
        assert "warpdrive-build/go" in tar.getnames()
    assert with_go((("/app", b"x"),)) == [("/app", b"x"), ("/tmp", GO)]


def test_used_for_its_own_container_with_the_real_files_then_go() -> None:
    engine = FakeEngine(base=BASE, output=[WAITING, "warpdrive: $ uv pip install ..."])
    engine.exported = b"layer"
    started = Prestart(engine, STEP)
    shown: list[str] = []
    made = started.use(REAL, shown.append)
    assert made is not None
    [(name, [(where, data)])] = engine.put  # one archive: the plan, then go
    assert (name, where) == (started.name, "/tmp")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert names[-1] == "warpdrive-build/go" and "warpdrive-build/plan.json" in names
    assert shown == ["warpdrive: $ uv pip install ..."]  # not the waiting line
    assert engine.steps[0].files == STEP.files  # it started with the provisional plan
    # its layer on the step's image, with the real step's labels, as engine.run puts it
    assert engine.appended[0][:2] == ("sha256:parent", REAL.commit)
    assert engine.appended_data[0][0] == b"layer"
    started.cancel()  # used: nothing to remove
    assert engine.removed_temp == []


def test_removed_when_the_grow_is_another_container() -> None:
    engine = FakeEngine(base=BASE, output=[WAITING], gate=threading.Event())  # it waits
    started = Prestart(engine, STEP)
    assert started.use(dataclasses.replace(REAL, image="sha256:other"), print) is None
    assert engine.put == [] and started.name in engine.removed_temp


def test_removed_when_never_used() -> None:
    engine = FakeEngine(base=BASE, output=[WAITING], gate=threading.Event())  # it waits
    started = Prestart(engine, STEP)
    started.cancel()
    assert engine.put == [] and started.name in engine.removed_temp


def _waiting_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wait: float) -> Path:
    from nox_warpdrive.runtime import assemble

    helpers, app = tmp_path / "helpers", tmp_path / "app"
    helpers.mkdir()
    (app / "venv").mkdir(parents=True)
    (app / "venv" / "a.py").write_text("x = 1\n")
    plan = {"wait": wait, "incremental": True, "app_root": str(app)}
    (helpers / "plan.json").write_text(json.dumps(plan))
    monkeypatch.setattr(assemble, "HELPERS", str(helpers))
    monkeypatch.setattr(assemble, "GO", str(helpers / "go"))
    monkeypatch.setattr(sys, "argv", ["assemble.py", "deps"])
    return helpers


def test_a_started_step_snapshots_then_runs_the_plan_put_before_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nox_warpdrive.runtime import assemble

    helpers = _waiting_plan(tmp_path, monkeypatch, 10)
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(assemble, "deps", seen.append)

    def host() -> None:
        time.sleep(0.2)
        real = {"files": ["w.whl"], "incremental": True, "app_root": str(tmp_path / "app")}
        (helpers / "plan.json").write_text(json.dumps(real))
        (helpers / "go").write_text("")

    threading.Thread(target=host).start()
    assert assemble.main() == 0
    assert seen[0]["files"] == ["w.whl"] and "wait" not in seen[0]
    assert str(tmp_path / "app" / "venv" / "a.py") in seen[0]["before"]  # taken while waiting
    assert WAITING in capsys.readouterr().out


def test_a_started_step_nobody_comes_for_ends_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nox_warpdrive.runtime import assemble

    _waiting_plan(tmp_path, monkeypatch, 0.05)
    monkeypatch.setattr(assemble, "deps", lambda plan: pytest.fail("ran without a plan"))
    assert assemble.main() == 3
