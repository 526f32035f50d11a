"""The engine seam: the Protocol the rest of the code depends on, the records it returns,
and the one place where foreign exceptions become EngineError.

No module outside this package imports docker-py (or requests, urllib3, http.client for
the engine): a build talks to ``Engine``; tests give it a fake that implements the same
Protocol. Whatever a backend's library raises (a refused connection, an HTTP 500, a body
that is not JSON, a connection cut mid-stream, a timeout) reaches the user as one line
naming what failed and a ``fix:`` line, never as a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

from ..assembly import Bundle
from ..errors import BuildError, CommandMissing, EngineError, WarpdriveError, cause_of
from ..plan import CommitSpec, Step
from .podman import has_labels

if TYPE_CHECKING:
    from .about import DiskUsage, EngineAbout

Output = Callable[[str], None]

#: a tar archive as it moves between containers and the host: a stream of chunks (what
#: ``get_archive`` gives) or an open file, never a whole wheelhouse in memory
ArchiveStream = Iterable[bytes] | IO[bytes]

#: reads one path of a container as a tar stream (None when it does not exist); the
#: stream must be consumed before the reader's block ends
ArchiveRead = Callable[[str], Iterator[bytes] | None]

#: where an archive goes in a container, and a call that opens it when it is its turn
#: (None: nothing to put)
ArchivePut = tuple[str, Callable[[], ArchiveStream | None]]

#: label on every volume / container this tool creates, to find leftovers
OWNER_LABEL = "io.warpdrive.owner"

#: docker-py's default local socket
DEFAULT_SOCKET = "/var/run/docker.sock"

START_ENGINE = (
    "start one (on Debian as root: `bash scripts/engine-up.sh` from the nox-warpdrive "
    "checkout, or `dockerd &`), or point DOCKER_HOST at a running engine"
)


@dataclass(frozen=True)
class ImageInfo:
    id: str
    env: tuple[str, ...]
    labels: Mapping[str, str]
    size: int
    layers: int
    created: str
    #: the layers' diff IDs, base first
    diff_ids: tuple[str, ...] = ()
    #: the tags that name it
    tags: tuple[str, ...] = ()
    #: when it was last tagged (RFC 3339; "" when never): a deps image is tagged again
    #: each time a build reuses it, so this is its last use
    last_tagged: str = ""
    #: what its config says it runs on, ``os/arch[/variant]`` ("" when unknown)
    platform: str = ""


#: image inspects sent to the engine at once (listed_images)
INSPECTORS = 8


def listed_images(
    rows: Iterable[Mapping[str, Any]],
    image: Callable[[str], ImageInfo | None],
    labels: Mapping[str, str],
    where: Callable[[Mapping[str, str]], bool] | None = None,
) -> list[ImageInfo]:
    """The records of the images an ``/images/json`` listing gave (``image``: one's
    inspect), in its order, those that carry ``labels`` (an engine's filter is checked,
    never trusted). ``where``: only images whose labels, as listed, it takes are
    inspected. An app's deps images, listed on every grow between the resolve and the
    install, can be a hundred (one at a time, 60 ms here): those left are inspected side
    by side."""
    ids = [str(row["Id"]) for row in rows if where is None or where(dict(row.get("Labels") or {}))]
    if len(ids) > 1:
        with ThreadPoolExecutor(INSPECTORS) as pool:
            infos = list(pool.map(image, ids))
    else:
        infos = [image(i) for i in ids]
    return [i for i in infos if i is not None and has_labels(i.labels, labels)]


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    output_tail: str
    image_id: str | None
    seconds: float


#: the user name of a registry login that is an identity token (docker-py's
#: TOKEN_USERNAME, as credential helpers store one): its "password" is an OAuth2 refresh
#: token, which registry_api.py trades for tokens
TOKEN_USER = "<token>"


class Engine(Protocol):
    """A connected Docker engine, as builds use it. Every method raises only
    WarpdriveError (EngineError, BuildError) for anything that goes wrong."""

    def describe(self) -> str: ...
    def memory_total(self) -> int: ...
    def image(self, ref: str) -> ImageInfo | None: ...
    def images_with_labels(
        self, labels: Mapping[str, str], where: Callable[[Mapping[str, str]], bool] | None = None
    ) -> list[ImageInfo]: ...
    def require_image(self, ref: str, role: str) -> ImageInfo: ...
    def tag(self, image_id: str, ref: str) -> None: ...
    def remove_image(self, image_id: str) -> None: ...
    def history(self, ref: str) -> list[dict[str, Any]]: ...
    def inspect_raw(self, ref: str) -> dict[str, Any]: ...
    def image_reader(
        self, image: str
    ) -> contextlib.AbstractContextManager[Callable[[str], bytes | None]]: ...
    def save_image(self, ref: str, into: Path) -> None: ...
    def append_layer(
        self,
        parent: str,
        layer: bytes | Path | str,
        spec: CommitSpec,
        created_by: str = ...,
        under: Sequence[tuple[str, bytes | str | Path]] = ...,
    ) -> str: ...
    def ensure_volume(self, name: str) -> bool: ...
    def volume_exists(self, name: str) -> bool: ...
    def remove_volume(self, name: str) -> None: ...
    def read_volume_file(self, volume: str, path: str, image: str) -> bytes | None: ...
    def secrets_volume(
        self, files: Mapping[str, bytes], image: str
    ) -> contextlib.AbstractContextManager[str | None]: ...
    def run(self, step: Step, out: Output, secrets_volume: str | None = None) -> RunResult: ...
    def run_checked(
        self, step: Step, out: Output, secrets_volume: str | None = None
    ) -> RunResult: ...
    def run_export(
        self,
        step: Step,
        out: Output,
        into: Path,
        name: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> RunResult: ...
    def exec_in(
        self, name: str, command: Sequence[str], out: Output, until: str | None = None
    ) -> int: ...
    def read_out(
        self, name: str, command: Sequence[str], into: Path, what: str, out: Output
    ) -> int: ...
    def put_files(self, name: str, files: Sequence[tuple[str, bytes]]) -> None: ...
    def remove_temp(self, name: str) -> None: ...
    def run_probe(self, image: str, command: list[str], network: str | None = None) -> str: ...
    def abort(self) -> None: ...
    def sweep(self) -> int: ...
    def remove_app(self, name: str) -> None: ...
    def start_app(
        self,
        image: str,
        name: str,
        host_port: int,
        env: Mapping[str, str] | None = None,
        host_ip: str = "127.0.0.1",
    ) -> str: ...
    def container_state(self, container_id: str) -> tuple[bool, int | None]: ...
    def published_port(self, container_id: str) -> int | None: ...
    def follow_logs(self, container_id: str, out: Output) -> None: ...
    def logs_tail(self, container_id: str, lines: int = 40) -> str: ...
    def stop_app(self, container_id: str, timeout: int = 10) -> int | None: ...
    def pull(
        self, ref: str, out: Output | None = None, platform: str | None = None
    ) -> ImageInfo | None: ...
    def push(self, ref: str, out: Output) -> str: ...
    def registry_login(self, registry: str) -> tuple[str, str] | None: ...
    def load_bundle(self, members: Mapping[str, bytes], what: str) -> None: ...
    def load_image(self, bundle: Bundle, what: str) -> str: ...
    def archive_reader(
        self, image: str, volume: str | None = None, at: str = ...
    ) -> contextlib.AbstractContextManager[ArchiveRead]: ...
    def run_with_archives(
        self, step: Step, archives: Sequence[ArchivePut], out: Output
    ) -> RunResult: ...
    # read only, for doctor (about.py)
    def about(self) -> EngineAbout: ...
    def disk_usage(self) -> DiskUsage: ...
    def login_helper(self, registry: str) -> str | None: ...


def step_image_missing(step: Step) -> EngineError:
    return EngineError(
        f"image {step.image!r} is not on the engine",
        fix="build or pull it first, or fix the image name in [tool.warpdrive]",
    )


def check_result(step: Step, result: RunResult) -> RunResult:
    """``result``, or the BuildError of a step that failed."""
    if result.exit_code == 0:
        return result
    if result.exit_code in (137, 143):
        cause = "was killed (out of memory, or stopped by `docker kill`/`docker rm -f`)"
    else:
        cause = f"exited with code {result.exit_code}"
    raise BuildError(
        f"the {step.name} step {cause}; its last lines:\n" + indent(result.output_tail),
        fix="read the output above for the failing command; nothing was tagged or "
        "published, the previous image and wheelhouse are unchanged",
    )


def foreign_cpu(text: str) -> bool:
    """Whether the engine or a container says a program is for another CPU (runc's
    ``exec format error``: no binfmt_misc handler for it on the engine's host)."""
    return "exec format error" in text.lower()


def indent(text: str) -> str:
    return "\n".join("  | " + line for line in text.splitlines())


def local_socket(docker_host: str | None = None) -> str | None:
    """The unix socket of a local engine, as docker-py would find it from DOCKER_HOST
    (unset: the default socket); None for any other kind of host."""
    host = os.environ.get("DOCKER_HOST", "") if docker_host is None else docker_host
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://") :] or DEFAULT_SOCKET
    return None


def host_shown(docker_host: str | None = None) -> str:
    """DOCKER_HOST (or ``docker_host``) without credentials (an ssh:// or tcp:// URL may
    carry a user)."""
    host = docker_host or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    return re.sub(r"(?<=://)[^/@]*@", "", host)


# -- the one place foreign exceptions are translated --------------------------------------

#: the root causes worth naming inside a requests/urllib3 exception's long repr
_ROOT_CAUSES = re.compile(
    r"\[Errno -?\d+\] ([^'\"()\]\\]+)|(Read timed out|Connection aborted|RemoteDisconnected"
    r"|Connection reset by peer|Connection refused|Name or service not known"
    r"|IncompleteRead|timed out)"
)


def short(exc: BaseException) -> str:
    """What went wrong, in a few words: the engine's own explanation for an API error,
    the root OS error ("Connection refused") for a connection failure; never the
    ~250-character repr urllib3 builds around it."""
    explanation = getattr(exc, "explanation", None)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    if isinstance(explanation, str) and explanation.strip():
        return (f"HTTP {status}: " if status else "") + explanation.strip().splitlines()[0][:300]
    text = str(exc)
    found = _ROOT_CAUSES.search(text)
    if found:
        return (found.group(1) or found.group(2)).strip()
    lines = text.strip().splitlines()
    first = lines[0][:300] if lines else ""
    name = type(exc).__name__
    return f"{name}: {first}" if first and name not in first else (first or name)


def engine_fix() -> str:
    return (
        f"check that the engine at {host_shown()} runs and answers (`docker info`, and its "
        "log: /var/log/warpdrive-dockerd.log for scripts/engine-up.sh, else `journalctl -u "
        "docker`) and that DOCKER_HOST points at it, then run again; nothing was tagged or "
        "published"
    )


#: how runc says a container's command is not in its image (a name looked up on PATH, or
#: a path); the engine answered, so this is never an engine that does not run
_EXEC_MISSING = re.compile(
    r'exec: "([^"]+)": (?:executable file not found in \$PATH|stat [^:]*: no such file)'
)


def missing_command(said: str) -> str | None:
    """The command an engine's error says is not in the image, or None."""
    found = _EXEC_MISSING.search(said)
    return found.group(1) if found else None


@contextlib.contextmanager
def foreign_errors(what: str) -> Iterator[None]:
    """Turn anything but our own errors (and interrupts) into one EngineError."""
    try:
        yield
    except EngineError as exc:
        if exc.fix is not None:
            raise
        told = type(exc)(exc.message, fix=engine_fix())  # every error names a fix
        raise told.with_traceback(exc.__traceback__) from cause_of(exc)
    except WarpdriveError:
        raise
    except Exception as exc:
        said = short(exc)
        command = missing_command(said)
        if command is not None:
            raise CommandMissing(None, command, said) from exc
        raise EngineError(
            f"the Docker engine failed while {what}: {said}", fix=engine_fix()
        ) from exc


class _TranslatedContext:
    """A context manager whose enter and exit (the backend's setup and cleanup) have
    their foreign exceptions translated; what the body raises passes unchanged."""

    def __init__(self, inner: contextlib.AbstractContextManager[Any], what: str) -> None:
        self.inner, self.what = inner, what

    def __enter__(self) -> Any:
        with foreign_errors(self.what):
            return self.inner.__enter__()

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            return self.inner.__exit__(et, ev, tb)
        except BaseException as raised:
            if raised is ev:
                raise
            with foreign_errors(self.what):
                raise


_C = TypeVar("_C", bound=type)


#: what a method does, for "the Docker engine failed while ..."
_DOING = {
    "describe": "naming the engine",
    "memory_total": "reading the engine's memory",
    "image": "inspecting image {0!r}",
    "images_with_labels": "listing images",
    "require_image": "inspecting image {0!r}",
    "tag": "tagging {0:.19} as {1}",
    "remove_image": "removing image {0:.19}",
    "history": "reading the history of {0!r}",
    "inspect_raw": "inspecting image {0!r}",
    "image_reader": "reading files from image {0:.19}",
    "append_layer": "loading a layer",
    "save_image": "saving image {0:.19}",
    "ensure_volume": "creating volume {0!r}",
    "volume_exists": "looking for volume {0!r}",
    "remove_volume": "removing volume {0!r}",
    "read_volume_file": "reading the wheelhouse manifest",
    "secrets_volume": "handing the build secrets over",
    "run": "running the {0.name} step",
    "run_checked": "running the {0.name} step",
    "run_probe": "probing an image",
    "abort": "stopping build containers",
    "sweep": "removing leftovers",
    "remove_app": "removing an app container",
    "start_app": "starting {0}",
    "container_state": "inspecting a container",
    "follow_logs": "following the app's output",
    "logs_tail": "reading the app's output",
    "stop_app": "stopping the app",
    "pull": "pulling {0}",
    "push": "pushing {0}",
    "registry_login": "reading the Docker login for {0}",
    "load_bundle": "loading the {1}",
    "load_image": "loading the {1}",
    "archive_reader": "reading files from {0:.19}",
    "run_with_archives": "running the {0.name} step",
    "about": "reading the engine's info and version",
    "disk_usage": "reading the engine's disk usage",
    "login_helper": "reading the Docker config for {0}",
}


def translated(cls: _C) -> _C:
    """Wrap every public method of a backend class so that no foreign exception leaves
    it: the one place translation happens, for every call, including the ones a later
    change adds."""
    for name, fn in list(vars(cls).items()):
        if name.startswith("_") or not callable(fn) or isinstance(fn, (staticmethod, classmethod)):
            continue
        setattr(cls, name, _wrap(fn, _DOING.get(name, name.replace("_", " "))))
    return cls


def _wrap(fn: Callable[..., Any], what: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        doing = _doing(what, args)
        with foreign_errors(doing):
            result = fn(self, *args, **kwargs)
        if isinstance(result, contextlib.AbstractContextManager):
            return _TranslatedContext(result, doing)
        return result

    return method


def _doing(template: str, args: tuple[Any, ...]) -> str:
    """The phrase for a call, with what it was called on when that can be said."""
    try:
        return template.format(*args)
    except (IndexError, AttributeError, KeyError, ValueError, TypeError):
        return template.split(" {", 1)[0]
