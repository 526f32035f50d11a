"""What ends a run's containers and secrets volume when the run itself is killed
(``kill -9``): the watchdog each build container runs as PID 1 (runtime/watchdog.py),
the reaper process (reaper.py), and owner.py telling a killed owner from a live one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nox_warpdrive import runtime
from nox_warpdrive.engine import owner, reaper
from nox_warpdrive.engine.dockerpy import _container_args
from nox_warpdrive.engine.ownerwatch import watched_command as _watched_command
from nox_warpdrive.plan import Step

WATCHDOG = runtime.read("watchdog.py").decode()


def test_build_steps_run_under_the_watchdog_with_an_open_stdin() -> None:
    step = Step(name="deps", image="img", command=("python3", "/tmp/assemble.py", "deps"))
    args = _container_args(step, None)
    assert args["command"][:2] == ["python3", "-c"]
    assert args["command"][3:] == ["python3", "/tmp/assemble.py", "deps"]
    assert args["stdin_open"] is True
    assert _watched_command(["/opt/venv/bin/python", "x.py"])[0] == "/opt/venv/bin/python"
    assert _watched_command(["pypy3", "x.py"])[:2] == ["pypy3", "-c"]
    assert _watched_command(["sh", "-c", "true"]) == ["sh", "-c", "true"]  # not a Python
    created_only = Step(name="secrets", image="img", command=None)
    assert _container_args(created_only, None)["stdin_open"] is False


def _watchdog(*command: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )


def test_the_watchdog_passes_the_command_exit_code_and_output() -> None:
    proc = _watchdog(sys.executable, "-c", "print('built'); raise SystemExit(3)")
    assert proc.stdout is not None and proc.stdin is not None
    out = proc.stdout.read()  # stdin stays open (the owner lives) until the command ended
    assert proc.wait(timeout=30) == 3
    proc.stdin.close()
    assert out.split() == [b"built"]


def test_the_watchdog_ends_when_its_stdin_closes(tmp_path: Path) -> None:
    """The owner's connection is gone: it exits at once (in a container the kernel then
    kills the rest of its PID namespace)."""
    proc = _watchdog(sys.executable, "-c", "import time; time.sleep(60)")
    time.sleep(0.5)
    assert proc.poll() is None
    started = time.monotonic()
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=10) == 137
    assert time.monotonic() - started < 5
    os.killpg(proc.pid, 9)  # here, outside a container: its child is ours to end


def test_the_reaper_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARPDRIVE_REAPER", "0")
    monkeypatch.setattr(reaper, "_STARTED", [])
    reaper.start()
    assert reaper._STARTED == []


def test_a_killed_owner_not_yet_reaped_is_gone() -> None:
    """A zombie (killed, its parent has not waited for it yet) owns nothing any more."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.3)
        ticks = owner._start_ticks(proc.pid)
        alive = owner.Owner(owner.me().host, proc.pid, ticks)
        assert alive.alive()
        proc.kill()
        deadline = time.monotonic() + 10
        while owner._start_ticks(proc.pid, live=True) != "0" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive.alive()  # a zombie now: not reaped by us yet
    finally:
        proc.wait()
