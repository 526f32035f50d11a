"""A run that ends leaves nothing running, on the real engine: SIGQUIT (Ctrl-\\, and what
some CI runners send) cleans up like SIGTERM; a ``kill -9`` of the owner, which no
handler sees, still stops its build containers and removes its secrets volume soon."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from conftest import App
from pkgindex import Index
from test_reliability import CANARY, leftovers, start_nox

from nox_warpdrive.engine import Engine


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
    proc.send_signal(signal.SIGQUIT)
    took = wait_until_clean(engine, proc.pid, 5.0)
    rest, _ = proc.communicate(timeout=60)
    text = "".join(seen) + rest
    assert proc.returncode == -signal.SIGQUIT, f"exit {proc.returncode} after {took:.1f} s\n{text}"
    assert "interrupted by SIGQUIT" in text, text
    assert not leftovers(engine, proc.pid)
    assert CANARY not in text
