"""The launcher as PID 1 (start.run_as_init): signals passed on, children reaped, the
app's exit status returned. Each case runs the init in a child process of its own (it
forks and blocks signals), which makes itself a child subreaper so that orphans come
to it as they would to a container's PID 1."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nox_warpdrive.runtime import start, warpdrive_init

RUNTIME = Path(start.__file__).parent

#: the init, as the image runs it, around ``sys.argv[2:]`` (exec'd); argv[1]: "group"
#: or "child", where signals go
INIT = """\
import ctypes, os, sys
sys.path.insert(0, {runtime!r})
import start
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come here
cmd = sys.argv[2:]
sys.exit(start.run_as_init(lambda: start._exec(cmd, os.environ), sys.argv[1] == "group"))
"""


def run_init(tmp_path: Path, *cmd: str, group: bool = True) -> subprocess.Popen[str]:
    script = tmp_path / "init.py"
    script.write_text(INIT.format(runtime=str(RUNTIME)))
    return subprocess.Popen(
        [sys.executable, str(script), "group" if group else "child", *cmd],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written")


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_exit_status() -> None:
    assert warpdrive_init.exit_status(0) == 0
    assert warpdrive_init.exit_status(3 << 8) == 3
    assert warpdrive_init.exit_status(signal.SIGTERM) == 143
    assert warpdrive_init.exit_status(signal.SIGKILL) == 137


def test_app_exit_code_is_the_init_exit_code(tmp_path: Path) -> None:
    proc = run_init(tmp_path, *python("import sys; sys.exit(7)"))
    assert proc.wait(timeout=30) == 7


def test_sigterm_ends_an_app_without_a_handler_143(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = f"import time; open({str(ready)!r}, 'w').write('up\\n'); time.sleep(60)"
    proc = run_init(tmp_path, *python(code))
    wait_for(ready)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("group", [True, False])
def test_signals_are_passed_on_and_a_handler_decides(tmp_path: Path, group: bool) -> None:
    seen, ready = tmp_path / "seen", tmp_path / "ready"
    code = (
        "import signal, sys, time\n"
        f"log = open({str(seen)!r}, 'a', buffering=1)\n"
        "def note(n, f):\n"
        "    log.write(signal.Signals(n).name + '\\n')\n"
        "    if n == signal.SIGTERM: sys.exit(0)\n"
        "for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH,\n"
        "          signal.SIGQUIT, signal.SIGINT, signal.SIGTERM):\n"
        "    signal.signal(s, note)\n"
        f"open({str(ready)!r}, 'w').write('up\\n')\n"
        "while True: time.sleep(1)\n"
    )
    proc = run_init(tmp_path, *python(code), group=group)
    wait_for(ready)
    names = ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGQUIT", "SIGINT"]
    for name in names:
        proc.send_signal(getattr(signal, name))
        deadline = time.monotonic() + 20
        while name not in (seen.read_text() if seen.exists() else ""):
            assert time.monotonic() < deadline, f"{name} was not passed on"
            time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0  # the app's own handler: a clean exit
    assert seen.read_text().split() == [*names, "SIGTERM"]


def test_a_shell_command_gets_the_signal_as_a_group(tmp_path: Path) -> None:
    """`sh -c` that is not one exec: the shell and its background job both end."""
    pids = tmp_path / "pids"
    proc = run_init(tmp_path, "sh", "-c", f"sleep 60 & echo $! > {pids}; wait")
    job = int(wait_for(pids))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    deadline = time.monotonic() + 10
    while state(job) not in ("", "Z"):
        assert time.monotonic() < deadline, "the background job did not get SIGTERM"
        time.sleep(0.02)


def state(pid: int) -> str:
    """A process's state letter from /proc ('' when it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return ""


def test_orphans_are_reaped(tmp_path: Path) -> None:
    """A double fork leaves an orphan to the init (here a subreaper): when it ends, it is
    reaped, not left a zombie, while the app runs on."""
    pids, ready = tmp_path / "pids", tmp_path / "ready"
    code = (
        "import subprocess, time\n"
        f"subprocess.run(['sh', '-c', 'sleep 0.2 & echo $! > {pids}'])\n"
        f"open({str(ready)!r}, 'w').write('up\\n')\n"
        "time.sleep(60)\n"
    )
    proc = run_init(tmp_path, *python(code))
    wait_for(ready)
    orphan = int(wait_for(pids))
    deadline = time.monotonic() + 20
    while state(orphan) != "":
        assert time.monotonic() < deadline, f"orphan {orphan} is {state(orphan)!r}"
        time.sleep(0.05)
    assert proc.poll() is None  # the app still runs
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143


def test_to_group_for_commands_only() -> None:
    assert start.to_group(start.App("command", "app.sh", "", command=["./app.sh"]))
    assert start.to_group(start.App("python", "app.py", "", command=["python", "app.py"]))
    assert not start.to_group(start.App("wsgi", "wsgi:application", "", interface="wsgi"))
    assert not start.to_group(start.App("django", "s.wsgi:application", "", "s.settings"))


def test_exec_restores_sigpipe(tmp_path: Path) -> None:
    """Python ignores SIGPIPE; the exec'd app gets the default back."""
    out = tmp_path / "out"
    code = (
        f"import os, sys\nsys.path.insert(0, {str(RUNTIME)!r})\nimport start\n"
        f"start._exec(['sh', '-c', 'grep SigIgn /proc/self/status > {out}'], os.environ)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    ignored = int(out.read_text().split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
