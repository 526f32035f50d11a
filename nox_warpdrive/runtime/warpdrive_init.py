"""The launcher's init: what it does as a container's PID 1 (a small init like tini or
Docker's --init), apart from the launcher so that each stays readable. Shipped beside
warpdrive_static.py in the image's lib/ directory; standard library only.
"""

import os
import signal
import sys
import traceback
from typing import Callable, Optional

#: what the init passes on to the app: tini's list, less job control
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)


def exit_status(status: int) -> int:
    """A shell's exit status for a wait status: the exit code, or 128 + the signal that
    ended the process (143 for SIGTERM, what `docker stop` counts as a clean stop)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def run_as_init(launch: Callable[[], int], group: bool) -> int:
    """Run ``launch`` (it starts the app: an exec, or a server in-process) in a forked
    child with its own process group, and be its init: each of :data:`FORWARDED` is
    passed on (to the group when ``group``), every child that ends is reaped (orphans are
    PID 1's), and the app's exit status is returned once it ends.

    The signals are blocked and waited for (sigwaitinfo), as tini does: no handler runs
    between a signal and the wait, and a blocked signal is queued even for PID 1, which
    the kernel spares the default actions of."""
    watched = set(FORWARDED) | {signal.SIGCHLD}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (tested through subprocesses)
        _child(launch, mask)
    try:
        os.setpgid(pid, pid)  # also here: a signal may come before the child's own call
    except OSError:
        pass
    while True:
        signum = signal.sigwaitinfo(watched).si_signo
        if signum != signal.SIGCHLD:
            _forward(pid, signum, group)
            continue
        status = _reap(pid)
        if status is not None:
            return exit_status(status)


def _child(launch: Callable[[], int], mask: object) -> None:
    """The app's side of the fork: its own process group (the terminal's, if any), the
    signal mask it had, then ``launch``; never returns to the caller."""
    code = 1
    try:
        os.setpgid(0, 0)
        _take_terminal()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # type: ignore[arg-type]
        code = launch()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _take_terminal() -> None:
    """With a terminal (`docker run -it`), make the app's group its foreground group, as
    a shell does: Ctrl-C reaches the app, and it may read the terminal."""
    try:
        if not os.isatty(0):
            return
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(0, os.getpgrp())
        finally:
            signal.signal(signal.SIGTTOU, old)
    except OSError:
        pass


def _forward(pid: int, signum: int, group: bool) -> None:
    try:
        if group:
            try:
                os.killpg(pid, signum)
                return
            except ProcessLookupError:  # the app left its group (setsid): itself
                pass
        os.kill(pid, signum)
    except OSError:
        pass  # gone already: its SIGCHLD is on the way


def _reap(pid: int) -> Optional[int]:
    """Reap every child that has ended (one SIGCHLD may stand for several); the wait
    status of ``pid`` if it was one of them."""
    found = None
    while True:
        try:
            done, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if done == 0:
            return found
        if done == pid:
            found = status
