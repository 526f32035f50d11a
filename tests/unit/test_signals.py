"""Signals end a build the same way (errors.signals_end_builds, die_of): SIGTERM and
SIGHUP raise like SIGINT, so every ``finally`` runs; a second signal cannot cut the
cleanup short; the process then ends by the signal (exit 128 + N)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nox_warpdrive.errors import END_SIGNALS, Interrupted, signals_end_builds


@pytest.mark.parametrize("sig", END_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_each_signal_raises_and_runs_finally(sig: int) -> None:
    cleaned: list[str] = []
    before = signal.getsignal(sig)
    with pytest.raises(Interrupted) as info, signals_end_builds():
        try:
            os.kill(os.getpid(), sig)
            time.sleep(5)
        finally:
            os.kill(os.getpid(), sig)  # a second signal during cleanup is ignored
            cleaned.append("container removed")
    assert info.value.signum == sig
    assert cleaned == ["container removed"]
    assert signal.getsignal(sig) == before  # handlers restored


def test_keyboard_mode_raises_keyboard_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt), signals_end_builds(keyboard=True):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)


@pytest.mark.parametrize("sig", END_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_the_process_ends_by_the_signal_after_cleanup(sig: int) -> None:
    code = textwrap.dedent(
        f"""
        import os, time
        from nox_warpdrive.errors import Interrupted, die_of, signals_end_builds
        try:
            with signals_end_builds():
                try:
                    os.kill(os.getpid(), {sig})
                    time.sleep(5)
                finally:
                    print("cleaned", flush=True)
        except Interrupted as exc:
            die_of(exc.signum)
        print("not reached", flush=True)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.split() == ["cleaned"]
    assert proc.returncode == -sig  # killed by it: a shell shows 128 + N


def test_sigquit_and_the_other_ending_signals_are_handled() -> None:
    """SIGQUIT (Ctrl-\\, some CI runners) ended the process at once, with no cleanup."""
    for sig in (signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
        assert sig in END_SIGNALS
    assert signal.SIGPIPE not in END_SIGNALS  # Python ignores it: BrokenPipeError unwinds


def test_sigquit_ends_the_process_without_a_core_file(tmp_path: Path) -> None:
    """Ctrl-\\ would write a core file (this process's memory, credentials included) into
    the app's directory, which the next build archives: the signal ends the process,
    but with no core."""
    code = textwrap.dedent(
        """
        import os, resource, signal
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)
        from nox_warpdrive.errors import die_of
        die_of(signal.SIGQUIT)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True)
    assert proc.returncode == -signal.SIGQUIT
    assert not list(tmp_path.iterdir())
