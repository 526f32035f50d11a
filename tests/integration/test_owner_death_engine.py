"""A run that ends leaves nothing running, on the real engine: SIGQUIT (Ctrl-\\, and what
some CI runners send) cleans up like SIGTERM; a ``kill -9`` of the owner, which no
handler sees, still stops its build containers and removes its secrets volume soon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from conftest import App
from pkgindex import Index
from test_reliability import CANARY, leftovers, run_nox, start_nox

from nox_warpdrive.engine import Engine
from nox_warpdrive.engine.owner import TEMP_PREFIX, owner_of_name


def running_or_secret(engine: Engine, pid: int) -> list[str]:
    """The temporary containers of ``pid`` that still run, and its secrets volumes."""
    api = engine.client.api
    running = {row["Names"][0] for row in api.containers(filters={"status": "running"})}
    return [name for name in leftovers(engine, pid) if name in running or "secrets" in name]


def wait_until_clean(engine: Engine, pid: int, bound: float) -> float:
    """Seconds until nothing of ``pid`` runs and no secrets volume of it is left."""
    start = time.monotonic()
    while running_or_secret(engine, pid):
        if time.monotonic() - start > bound:
            pytest.fail(f"after {bound} s still there: {running_or_secret(engine, pid)}")
        time.sleep(0.1)
    return time.monotonic() - start


def reapers_of(pid: int) -> list[int]:
    """The reaper processes (engine/reaper.py) that ``pid`` started and that still run
    (``pid`` 1: those whose owner died, handed to init)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z" and b".sweep()" in cmdline:
            found.append(int(entry))
    return found


def wait_reapers_done(pids: list[int], bound: float = 20.0) -> None:
    """Wait until these reapers have exited: a reaper sweeps the engine twice (the
    second sweep 3 s after its owner died), and it removes what *any* dead owner left,
    so one still running would take the next test's killed run's secrets volume."""
    start = time.monotonic()
    while True:
        alive = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
        if not alive:
            return
        assert time.monotonic() - start < bound, f"reapers {alive} still run"
        time.sleep(0.1)


def _during_compile(app: App, index: Index) -> Any:
    proc = start_nox(app, "wheelhouse", index)
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line)
        if "building wd-cext-demo" in line:
            return proc, seen
    pytest.fail("the build ended before the compile:\n" + "".join(seen))


def test_sigquit_during_a_compile_leaves_nothing_within_5_s(
    make_app: Any, engine: Engine, index: Index
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    proc, seen = _during_compile(app, index)
    assert running_or_secret(engine, proc.pid), "the builder should run during the compile"
    reapers = reapers_of(proc.pid)
    proc.send_signal(signal.SIGQUIT)
    took = wait_until_clean(engine, proc.pid, 5.0)
    rest, _ = proc.communicate(timeout=60)
    text = "".join(seen) + rest
    assert proc.returncode == -signal.SIGQUIT, f"exit {proc.returncode} after {took:.1f} s\n{text}"
    assert "interrupted by SIGQUIT" in text, text
    assert not leftovers(engine, proc.pid)
    assert CANARY not in text
    print(f"SIGQUIT: nothing running and no secrets volume after {took:.1f} s")
    wait_reapers_done(reapers)


#: how long a ``kill -9`` may leave this run's things on the engine: the reaper (a
#: bare interpreter already running) wakes at once, imports the engine client (~0.3 s)
#: and removes the container (force) and the volume: about 1 s here, given 10 s on a
#: shared 2-CPU engine that other builds keep busy
KILL_BOUND = 10.0
#: the watchdog alone: the engine closes the container's stdin as the owner's socket
#: closes, PID 1 exits, the kernel kills the rest (measured 0.3 s)
WATCHDOG_BOUND = 5.0


def test_kill_9_during_a_compile_leaves_nothing_soon(
    make_app: Any, engine: Engine, index: Index
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    proc, _ = _during_compile(app, index)
    assert running_or_secret(engine, proc.pid)
    reapers = reapers_of(proc.pid)
    assert reapers, "the run should have started its reaper"
    proc.kill()
    proc.communicate(timeout=60)
    took = wait_until_clean(engine, proc.pid, KILL_BOUND)
    start = time.monotonic()
    while leftovers(engine, proc.pid) and time.monotonic() - start < KILL_BOUND:
        time.sleep(0.1)  # not even a stopped container
    assert not leftovers(engine, proc.pid), leftovers(engine, proc.pid)
    print(f"kill -9: nothing running and no secrets volume after {took:.1f} s")
    wait_reapers_done(reapers)


def test_kill_9_with_no_reaper_the_container_still_ends(
    make_app: Any, engine: Engine, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reaper gone too (the host torn down): the builder's watchdog ends it."""
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    monkeypatch.setenv("WARPDRIVE_REAPER", "0")
    wait_reapers_done(reapers_of(1))  # of runs killed before: their owners are gone
    proc, _ = _during_compile(app, index)
    proc.kill()
    proc.communicate(timeout=60)
    api = engine.client.api
    start = time.monotonic()
    while True:
        running = {row["Names"][0] for row in api.containers(filters={"status": "running"})}
        mine = [name for name in leftovers(engine, proc.pid) if name in running]
        if not mine:
            break
        assert time.monotonic() - start < WATCHDOG_BOUND, mine
        time.sleep(0.1)
    print(f"kill -9, no reaper: nothing running after {time.monotonic() - start:.1f} s")
    # what only the reaper removes at once: the secrets volume (and the stopped container)
    assert any("secrets" in name for name in leftovers(engine, proc.pid))
    engine.sweep()  # the next run's sweep
    assert not leftovers(engine, proc.pid)


def test_images_carry_no_watchdog(make_app: Any, engine: Engine, index: Index) -> None:
    """The watchdog is the containers' PID 1, never a committed image's command, and no
    image keeps the open stdin it needs."""
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    code, text = run_nox(app, "image", index)
    assert code == 0, text
    refs = [app.image] + [
        tag
        for image in engine.client.images.list()
        for tag in image.tags
        if tag.startswith(f"warpdrive-deps/{app.name}:")
    ]
    assert len(refs) >= 2, refs
    for ref in refs:
        config = engine.inspect_raw(ref)["Config"]
        assert not config.get("OpenStdin") and not config.get("StdinOnce"), config
        assert "os._exit(137)" not in json.dumps(config), config["Cmd"]


RUN_A_STEP = """
from nox_warpdrive.engine import connect
from nox_warpdrive.plan import Step
step = Step(name="watched", image="warpdrive/python:3.11-bookworm",
            command=("python3", "-c", "import time; print('up', flush=True); time.sleep(300)"))
connect().run(step, print)
"""


def test_kill_9_on_a_remote_engine_ends_the_container(runner: str) -> None:
    """Over tcp:// the owner's host cannot be seen from the container: the engine closing
    the watchdog's stdin is what ends it (the reaper off: the host is gone too)."""
    env = {**os.environ, "DOCKER_HOST": runner, "WARPDRIVE_REAPER": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_A_STEP], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "up"
    client = docker.DockerClient(base_url=runner)
    try:

        def mine(running: bool) -> list[str]:
            rows = client.api.containers(all=not running, filters={"name": TEMP_PREFIX})
            return [
                r["Names"][0]
                for r in rows
                if (o := owner_of_name(r["Names"][0])) is not None and o.pid == proc.pid
            ]

        assert mine(running=True)
        proc.kill()
        proc.wait(timeout=30)
        start = time.monotonic()
        while mine(running=True):
            assert time.monotonic() - start < WATCHDOG_BOUND, mine(running=True)
            time.sleep(0.1)
        print(f"remote engine, kill -9: nothing running after {time.monotonic() - start:.1f} s")
        for name in mine(running=False):
            client.api.remove_container(name, force=True)
    finally:
        client.close()
