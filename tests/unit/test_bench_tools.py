"""What every tool does to its app copy, the timed command, nox-warpdrive's step times,
and the TOML the copy's pyproject is written in. No engine, no builds."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # plain `pytest` puts tests/unit first, not the checkout
    sys.path.insert(0, str(REPO))

from bench.apps import App, toml_value  # noqa: E402
from bench.common import RUN_ID, BenchError  # noqa: E402
from bench.dockercli import Docker  # noqa: E402
from bench.tools import Warpdrive, step_times, timed  # noqa: E402


@pytest.mark.parametrize(
    ("value", "toml"),
    [
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (1.5, "1.5"),
        ('say "hi"\n', '"say \\"hi\\"\\n"'),
        (["a", 1, [False]], '["a", 1, [false]]'),
    ],
)
def test_toml_value(value: object, toml: str) -> None:
    assert toml_value(value) == toml


def test_a_table_value_cannot_be_copied() -> None:
    with pytest.raises(BenchError, match="cannot copy"):
        toml_value({"a": 1})


@pytest.fixture
def tool(tmp_path: Path) -> Warpdrive:
    """nox-warpdrive's copy of a small app (a pyproject of its own, build outputs)."""
    source = tmp_path / "source"
    (source / "shop" / "__pycache__").mkdir(parents=True)
    (source / "shop" / "__pycache__" / "views.cpython-311.pyc").write_bytes(b"")
    (source / "shop" / "views.py").write_text("X = 1")
    (source / "requirements.txt").write_text("flask")
    (source / "db.sqlite3").write_text("")
    (source / "pyproject.toml").write_text('[tool.warpdrive]\nserver = "uvicorn"\n')
    app = App(source, "shop/views.py", ("gunicorn", "app:app"))
    wd = Warpdrive(Docker("docker"), tmp_path / "work", app)
    wd.fresh_copy()
    return wd


def test_a_fresh_copy_leaves_build_outputs_and_gets_the_benchs_pyproject(
    tool: Warpdrive,
) -> None:
    assert not (tool.app / "shop" / "__pycache__").exists()
    assert not (tool.app / "db.sqlite3").exists()
    pyproject = (tool.app / "pyproject.toml").read_text()
    assert f'name = "bench-site-{RUN_ID}"' in pyproject and 'server = "uvicorn"' in pyproject


def test_the_scenarios_edits(tool: Warpdrive) -> None:
    tool.mark_run("r0")
    tool.add_package("httpx")  # requirements.txt had no final newline
    tool.add_package("humanize")
    assert (tool.app / "requirements.txt").read_text() == "# bench run r0\nflask\nhttpx\nhumanize\n"
    tool.edit_code("n-0")
    assert (tool.app / "shop" / "views.py").read_text() == "X = 1\nBENCH_REVISION = 'n-0'\n"


def test_nox_warpdrive_runs_from_its_snapshot_with_a_private_cache(
    tool: Warpdrive, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = tool.env()
    assert env["PYTHONPATH"] == os.pathsep.join([str(tool.src), "/elsewhere"])
    assert env["XDG_CACHE_HOME"] == str(tool.xdg)
    monkeypatch.delenv("PYTHONPATH")
    assert tool.env()["PYTHONPATH"] == str(tool.src)


def test_step_times_from_the_image_summary() -> None:
    output = (
        "nox > image bench-warpdrive:latest built: deps layer built, app layer built "
        "(wheelhouse 3.1 s, deps 20 s, app 1.25 s; 25.0 s)\n"
    )
    assert step_times(output) == {"wheelhouse": 3.1, "deps": 20.0, "app": 1.25}
    assert step_times("nox > image x up to date, nothing rebuilt (0.4 s)") == {}


def test_timed_appends_to_the_log_and_returns_this_commands_output(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("earlier\n")
    cmd = [sys.executable, "-c", "print('hello')"]
    step = timed(cmd, cwd=tmp_path, env=os.environ, log=log)
    assert step.output.splitlines()[0] == "hello"
    assert step.output.splitlines()[1].startswith("# exit 0 after ")
    assert step.seconds >= 0
    assert log.read_text().startswith("earlier\n$ ")


def test_a_failed_command_names_its_log_and_quotes_its_tail(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    cmd = [sys.executable, "-c", "import sys; print('broken'); sys.exit(3)"]
    with pytest.raises(BenchError, match=r"failed \(exit 3\); log: .*build\.log\n    broken"):
        timed(cmd, cwd=tmp_path, env=os.environ, log=log)
