"""The one error root. Every user-facing failure is a WarpdriveError whose message says
what went wrong *and* what to do next; sessions turn it into ``session.error`` so the user
never sees a traceback for their own mistake."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from typing import Any


class WarpdriveError(Exception):
    """Root of every error nox-warpdrive raises on purpose.

    ``fix`` is the next step for the user; it is appended to the message so that no
    caller can forget to show it.
    """

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message if fix is None else f"{message}\n  fix: {fix}")


class ConfigError(WarpdriveError):
    """``[tool.warpdrive]`` or a requirements file is wrong."""


class EngineError(WarpdriveError):
    """The Docker engine is missing, unreachable, or refused an operation."""


class LayerRefused(EngineError):
    """The engine would not load a layer tarball (e.g. the containerd image store):
    callers fall back to run + commit. The engine answered: the fix never says to check
    that it runs."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(
            message,
            fix=fix
            or "the engine runs and answered, but refused the image as it was made; "
            "`nox -s doctor` names the engine: report this with its output",
        )


class WrongImage(WarpdriveError):
    """The engine made an image whose config is not the plan's (a field dropped or
    changed on the way): the image is removed and no tag moves. Not an EngineError, so
    no caller falls back to another way of making it and hides it."""


class PlatformMismatchError(WarpdriveError):
    """Builder and base image would produce wheels that do not fit each other."""


class BuildError(WarpdriveError):
    """A step inside a build container failed (pip, collectstatic, ...)."""


class CommandMissing(BuildError):
    """A step's command is not in its image (runc: "executable file not found"): the
    engine runs and answered, the image or the configured command is wrong. Callers that
    know which setting named the command (``python``) say so."""

    def __init__(self, image: str | None, command: str, said: str) -> None:
        which = f"image {image}" if image else "the image"
        super().__init__(
            f"{which} has no command {command!r} (the engine said: {said})",
            fix=f"use a command that image has, or an image that has {command!r}",
        )
        self.image, self.command, self.said = image, command, said


class ImagePlatformError(WarpdriveError):
    """A base or builder image is not for the platform asked for (a local image of
    another CPU, an index without that platform)."""


class EmulationMissing(BuildError):
    """A container of another CPU could not start (``exec format error``): the engine's
    host has no QEMU binfmt_misc handler for it."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} could not run: `exec format error`, the engine cannot run programs "
            "of that image's CPU",
            fix="install QEMU's binfmt_misc handlers on the engine's host (Debian/Ubuntu: "
            "`apt-get install qemu-user-static`, with binfmt_misc mounted; or `docker run "
            "--privileged --rm tonistiigi/binfmt --install all`; Docker Desktop has them), "
            "or build that platform on an engine of its own CPU (DOCKER_HOST=ssh://...)",
        )


class ContextError(WarpdriveError):
    """The app source cannot be archived safely (bad ignore rule, unsafe path)."""


class RegistryError(WarpdriveError):
    """A registry spoken to directly (registry_api.py) cannot be reached, refused the
    credentials, or answered something that is not the Registry API."""


class TokenServerError(RegistryError):
    """The token server a registry sends clients to (its Bearer realm) failed: it
    answered an error, no token, or could not be reached. Not "no such image": an engine
    relays some of these as a 404 ("error parsing HTTP 404 response body")."""


class RegistryUnreachable(RegistryError):
    """The registry itself could not be reached from here (the engine may still reach
    it: a remote engine's network is not this host's)."""


def cause_of(exc: BaseException) -> BaseException | None:
    """What ``exc`` was raised from: its cause (``raise ... from``), else the exception
    being handled when it was raised (unless ``from None`` hid it). An error told again
    better (a fix added, names found) is raised ``from cause_of(first)``, so the chain
    (``WARPDRIVE_DEBUG=1``) reaches what went wrong without saying the same thing twice."""
    if exc.__cause__ is not None or exc.__suppress_context__:
        return exc.__cause__
    return exc.__context__


def causes(exc: BaseException) -> list[BaseException]:
    """The exceptions under ``exc``, outermost first: its cause (``raise ... from``),
    else the one being handled when it was raised (unless ``from None`` hid it), and so
    on down; each once (a chain can loop)."""
    chain: list[BaseException] = []
    seen = {id(exc)}
    current: BaseException | None = exc
    while current is not None:
        below = cause_of(current)
        if below is None or id(below) in seen:
            break
        seen.add(id(below))
        chain.append(below)
        current = below
    return chain


def _named(exc: BaseException) -> str:
    """``module.Type: message``, the module left out for built-in exceptions."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    text = str(exc).strip()
    return f"{name}: {text}" if text else name


def cause_report(exc: BaseException) -> str:
    """What ``WARPDRIVE_DEBUG=1`` (or ``--debug``) shows under an error's message: each
    cause's type and message, outermost first, then the traceback of the innermost,
    where it went wrong. Without the switch none of this is shown: a user mistake is a
    message and a fix, never a traceback."""
    chain = causes(exc)
    lines = ["warpdrive debug: the chain of causes" if chain else "warpdrive debug: no cause"]
    for cause in chain:
        first, *rest = _named(cause).splitlines() or [""]
        lines.append(f"  caused by {first}")
        lines.extend(f"    {line}" for line in rest)
    inner = chain[-1] if chain else exc
    lines.append(f"  traceback of {type(inner).__qualname__}:")
    formatted = traceback.format_exception(type(inner), inner, inner.__traceback__, chain=False)
    lines.extend(f"    {line}" for chunk in formatted for line in chunk.rstrip("\n").splitlines())
    return "\n".join(lines)


#: a write failed for want of room (or of quota)
_FULL = (errno.ENOSPC, errno.EDQUOT)


def host_disk_full(
    exc: OSError, directory: str | os.PathLike[str] | None = None
) -> WarpdriveError | None:
    """The error for a host write that found the disk full (None for any other OSError):
    naming the directory written to (``directory``, else the failed file's, else the
    temporary directory, where layers are written) and the room left there."""
    if exc.errno not in _FULL:
        return None
    where = str(
        directory
        or (os.path.dirname(str(exc.filename)) if exc.filename else "")
        or tempfile.gettempdir()
    )
    try:
        st = os.statvfs(where)
        room = f"{st.f_bavail * st.f_frsize / 1e6:.1f} MB free there"
    except OSError:
        room = "its free space unknown"
    return WarpdriveError(
        f"the host disk is full: writing in {where} failed ({room}); what was written "
        "there for this run is removed, and no tag moved",
        fix=f"free space on the disk holding {where} (layers are written under the "
        "temporary directory: TMPDIR can point at a disk with room), then run the same "
        "command again",
    )


@contextlib.contextmanager
def host_writes(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Writes into ``directory`` on the host: a full disk is the error naming it, not a
    traceback."""
    try:
        yield
    except OSError as exc:
        error = host_disk_full(exc, directory)
        if error is None:
            raise
        raise error from exc


def _size(n: object) -> str:
    if not isinstance(n, int):
        return "an unknown amount"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def disk_message(failure: Mapping[str, Any], volume: str, last: str = "") -> tuple[str, str]:
    """(message, fix) for a builder that ran out of space (``failure``: its FAILURE
    report, measured in the container: runtime/disk.py full_filesystem): which
    disk is full, the volume or the engine's storage where sdists unpack and compile,
    and the fix for that one: pruning images cannot help a full volume, nor a bigger
    volume a full engine. ``last``: the builder's last lines, as the message ends."""
    space = f"{_size(failure.get('free'))} free of {_size(failure.get('size'))}"
    cleaned = "; nothing it cut off in the volume's caches is used again"
    name = f"the volume {volume!r}" if volume else "the wheelhouse volume"
    if failure.get("shared"):
        return (
            f"the engine's disk is full ({space}), and {name} lives on it{cleaned}{last}",
            "free space on the engine (`docker system df`, `docker image prune`, "
            "`docker builder prune`, old volumes in `docker volume ls`) or give its disk "
            "room, then run the same command again",
        )
    if failure.get("full") == "volume":
        return (
            f"{name} is full: its filesystem has {space}{cleaned}{last}",
            f"give the volume room (`docker volume inspect {volume or 'NAME'}` shows where it "
            "lives: free space there, or grow that filesystem; a volume made with "
            "`--opt o=size=...` must be made bigger), or set `volume` in [tool.warpdrive] to "
            "another volume; then run the same command again",
        )
    return (
        f"the engine's storage is full ({space} where the builder unpacks and compiles)"
        f"{cleaned}{last}",
        "free space on the engine (`docker system df`, `docker image prune`, "
        "`docker builder prune`) or give its disk room, then run the same command again",
    )


class Interrupted(BaseException):
    """A signal ends the build: raised in the main thread by the handler, so every
    ``finally`` on the way out runs (containers removed, the secrets volume removed, no
    tag moved). A BaseException, so no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: every signal whose default action ends the process and that someone sends: what CI
#: systems and terminals send to end a job (SIGINT, SIGTERM, SIGHUP, SIGQUIT: Ctrl-\
#: and some CI runners), SIGUSR1/2 and SIGALRM (ends the process when nothing handles
#: them), SIGXCPU (a CPU-time limit). SIGPIPE and SIGXFSZ are not here: Python ignores
#: both from its start, so a write to a closed pipe raises BrokenPipeError, which
#: unwinds through every ``finally`` like any error.
END_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGXCPU,
)


@contextlib.contextmanager
def signals_end_builds(keyboard: bool = False) -> Iterator[None]:
    """Every signal of END_SIGNALS ends a build the same way. Python's default for all
    but SIGINT ends the process at once, skipping every ``finally``: a cancelled CI job
    (or a Ctrl-\\) then left its build container running and its credentials in a
    volume. The first signal raises Interrupted; later ones are ignored while it unwinds
    (the cleanup must not be cut short). ``keyboard``: raise KeyboardInterrupt instead
    (the run session stops its container on it and ends normally)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if received:
            return
        received.append(signum)
        if keyboard:
            raise KeyboardInterrupt
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in END_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


#: signals whose default action also writes a core file
CORE_SIGNALS = (signal.SIGQUIT, signal.SIGXCPU)


def _no_core_file() -> None:
    """No core file when the process dies of SIGQUIT: one would land in the app's
    directory (the next build's context) holding this process's memory, index
    credentials included. The signal still ends the process, as the parent expects."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))


def die_of(signum: int) -> None:
    """End this process by the signal itself, once everything is cleaned up: the parent
    (a CI runner, a shell) sees 128 + N, as for any process the signal ended."""
    sys.stdout.flush()
    sys.stderr.flush()
    if signum in CORE_SIGNALS:
        _no_core_file()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    time.sleep(5)  # the signal is delivered before this ends
    os._exit(128 + signum)
