"""The daemons integration tests start (local registries, a second Docker engine), each of
its own: a port free at run time (never 5000, a developer's own registry's), storage,
bridge and subnet of its own, started with the scripts a human uses
(scripts/registry-up.sh, scripts/second-engine.sh) and stopped with their ``--stop`` at
the end of the test session, whatever happened.

A session killed outright (SIGKILL, a lost runner) cannot stop anything; the next session
does (:func:`sweep`): every daemon lives under :data:`STATE`, in a directory named after
the session's process, and a directory whose process is gone is stopped and removed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
#: where the daemons of test sessions keep their storage, one directory per daemon
STATE = Path(os.environ.get("WARPDRIVE_TEST_DAEMONS", "/var/tmp/warpdrive-test-daemons"))
#: the subnets second engines' bridges may take (the scripts' defaults are 250 and 251)
_SUBNETS = ipaddress.ip_network("172.31.0.0/16")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_script(name: str, *args: str, env: Mapping[str, str], check: bool = True) -> str:
    """Run scripts/NAME; the last line it printed (an address). A failure fails the test
    with the script's own words."""
    proc = subprocess.run(
        ["bash", str(SCRIPTS / name), *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(env),
    )
    if proc.returncode != 0 and check:
        pytest.fail(f"{name} {' '.join(args)} failed:\n{proc.stderr}", pytrace=False)
    lines = proc.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def _home(kind: str) -> Path:
    """A new directory under :data:`STATE` for one daemon of this session."""
    home = STATE / f"{os.getpid()}-{kind}-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    return home


def _stop(home: Path) -> None:
    """Stop the daemon ``home`` holds (its start.json says with which script and
    variables) and remove its directory."""
    try:
        record = json.loads((home / "start.json").read_text())
    except (OSError, ValueError):
        record = None
    if record is not None:
        run_script(record["script"], "--stop", env={**os.environ, **record["env"]}, check=False)
        for extra in record.get("remove", []):
            shutil.rmtree(extra, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def _daemon(
    home: Path, script: str, env: dict[str, str], *args: str, remove: tuple[str, ...] = ()
) -> Iterator[str]:
    """Start a daemon with ``script`` and ``env`` (recorded first, for :func:`sweep`),
    yield what the script printed, and stop it, whatever happened; ``remove``: more
    directories of it to remove then."""
    record = {"script": script, "env": env, "remove": list(remove)}
    (home / "start.json").write_text(json.dumps(record))
    try:
        yield run_script(script, *args, env={**os.environ, **env})
    finally:
        _stop(home)


@contextlib.contextmanager
def registry(htpasswd: Path | None = None) -> Iterator[str]:
    """A registry of this session on a free port of 127.0.0.1 (with basic auth from
    ``htpasswd``); yields its address."""
    home = _home("registry")
    env = {
        "WARPDRIVE_REGISTRY_PORT": str(free_port()),
        "WARPDRIVE_REGISTRY_DIR": str(home / "storage"),
        "WARPDRIVE_REGISTRY_LOG": str(home / "registry.log"),
    }
    if htpasswd is not None:
        env["WARPDRIVE_REGISTRY_HTPASSWD"] = str(htpasswd)
    with _daemon(home, "registry-up.sh", env) as address:
        yield address


def _free_subnet() -> str:
    """A /24 of 172.31.0.0/16 that no interface of this host has (for the bridge)."""
    out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    taken = {
        ipaddress.ip_interface(word).network
        for line in out.splitlines()
        for word in line.split()
        if "/" in word and word[0].isdigit()
    }
    choices = [n for n in _SUBNETS.subnets(new_prefix=24) if 100 <= n[0].packed[2] < 250]
    random.shuffle(choices)
    for net in choices:
        if not any(net.overlaps(t) for t in taken):
            return f"{net[1]}/24"
    raise AssertionError("no free /24 in 172.31.100-249 for a second engine's bridge")


@contextlib.contextmanager
def engine(*images: str) -> Iterator[str]:
    """A second Docker engine of this session on a free TCP port of 127.0.0.1, with
    ``images`` copied in; yields its DOCKER_HOST."""
    home = _home("engine")
    tag = home.name.rpartition("-")[2]
    exec_root = Path("/run") / f"wdt-{tag}"  # short: containerd's sockets live there
    env = {
        "WARPDRIVE_ENGINE2_PORT": str(free_port()),
        "WARPDRIVE_ENGINE2_DIR": str(home / "engine"),
        "WARPDRIVE_ENGINE2_EXEC_ROOT": str(exec_root),
        "WARPDRIVE_ENGINE2_BRIDGE": f"wdt{tag[:8]}",
        "WARPDRIVE_ENGINE2_SUBNET": _free_subnet(),
        "WARPDRIVE_ENGINE2_LOG": str(home / "dockerd.log"),
    }
    with _daemon(home, "second-engine.sh", env, *images, remove=(str(exec_root),)) as host:
        yield host


def _alive(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


def sweep() -> None:
    """Stop and remove the daemons of test sessions that ended without stopping them."""
    if not STATE.is_dir():
        return
    for home in sorted(STATE.iterdir()):
        owner = home.name.partition("-")[0]
        if owner.isdigit() and not _alive(int(owner)) and home.is_dir():
            _stop(home)
