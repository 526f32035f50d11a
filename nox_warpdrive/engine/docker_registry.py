"""The docker-py backend's registry side and the engine itself: pull and push (with the
registry's refusals told apart from the engine's), the login docker-py resolves, loads of
built bundles, and DockerEngine, the whole backend (dockerpy.py holds the parts below it)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .. import assembly
from ..errors import (
    EngineError,
)
from ..plan import VOLUME_DIR, Step
from ..refs import named_registry
from ..tars import tar_files
from . import (
    dockerpy,  # dockerpy.docker: docker-py, once _import_docker() ran
)
from .about import AboutMixin
from .apps import _Apps
from .base import (
    START_ENGINE,
    TOKEN_USER,
    ArchivePut,
    ArchiveRead,
    ImageInfo,
    Output,
    RunResult,
    host_shown,
    short,
    step_image_missing,
    translated,
)
from .checked import verified
from .dockerpy import (
    _container_args,
    _import_docker,
    _mount,
    _quiet_loggers,
    _split_tag,
)
from .podman_mixin import PodmanMixin
from .progress import Progress


@translated
class _Registry(_Apps):
    """Pushes and pulls, with the credentials Docker users already have (docker-py reads
    the Docker config file and its credential helpers); never printed."""

    def pull(
        self, ref: str, out: Output | None = None, platform: str | None = None
    ) -> ImageInfo | None:
        """Pull ``ref``; None when the registry has no such image. A registry that cannot
        be reached or refuses is an EngineError naming the ref (callers decide whether
        that ends the build). A long pull says how far it is, with ``out``. ``platform``
        (``os/arch[/variant]``): that platform's image of an index, the local tag then
        naming it (``docker pull --platform``)."""
        repo, tag = _split_tag(ref)
        progress = Progress("pull", ref, out)
        try:
            api = self.client.api

            def stream() -> Any:
                if platform:
                    return api.pull(repo, tag, stream=True, decode=True, platform=platform)
                return api.pull(repo, tag, stream=True, decode=True)

            for item in _watched(stream, self._timeout, f"pulling {ref}"):
                if not isinstance(item, dict):
                    continue
                if item.get("error"):
                    raise _RegistryRefusal(str(item["error"]))
                progress.feed(item)
        except (dockerpy.docker.errors.DockerException, _RegistryRefusal) as exc:
            refused = (dockerpy.docker.errors.APIError, _RegistryRefusal)
            if isinstance(exc, refused) and _not_found(str(exc)):
                return None
            failure = _registry_failure(ref, exc)
            if failure is None:
                raise  # the engine itself failed: base.translated says so
            why, fix = failure
            raise EngineError(f"cannot pull {ref}: {why}", fix=fix) from exc
        return self.image(ref)

    def push(self, ref: str, out: Output) -> str:
        """Push ``ref``; its digest. A failed push raises (docker-py does not: every
        streamed item is checked for an error)."""
        repo, tag = _split_tag(ref)
        digest = ""
        progress = Progress("push", ref, out)
        try:
            api = self.client.api

            def stream() -> Any:
                return api.push(repo, tag, stream=True, decode=True)

            for item in _watched(stream, self._timeout, f"pushing {ref}"):
                if not isinstance(item, dict):
                    continue
                if item.get("error"):
                    raise _RegistryRefusal(str(item["error"]))
                progress.feed(item)
                aux = item.get("aux") or {}
                digest = str(aux.get("Digest") or digest)
        except (dockerpy.docker.errors.DockerException, _RegistryRefusal) as exc:
            failure = _registry_failure(ref, exc)
            if failure is None:
                raise  # the engine itself failed: base.translated says so
            why, fix = failure
            raise EngineError(
                f"pushing {ref} failed: {why}; the image is built and tagged here", fix=fix
            ) from exc
        out(f"warpdrive: pushed {ref}" + (f" ({digest})" if digest else ""))
        return digest

    def registry_login(self, registry: str) -> tuple[str, str] | None:
        """The (user, password) the Docker config file holds for ``registry`` (its
        ``auths``, or its ``credsStore``/``credHelpers`` helper), resolved as docker-py
        resolves them for a push; None when there is none. For registry_api.py, which
        speaks to the registry itself: never printed, never stored."""
        _import_docker()
        _quiet_loggers()
        import docker.auth

        try:
            found = docker.auth.resolve_authconfig(docker.auth.load_config(), registry)
        except docker.errors.DockerException as exc:
            helper = _helper_failure(exc)
            if helper is None:
                raise
            raise EngineError(
                f"the credential helper for {registry} failed ({helper})",
                fix=f"install that helper (on PATH), or remove `credsStore`/`credHelpers` "
                f"from {config_file()} and log in with `docker login {registry}`",
            ) from exc
        if not found:
            return None
        fields = {str(k).lower(): v for k, v in dict(found).items()}
        user, password = fields.get("username"), fields.get("password")
        if fields.get("identitytoken"):  # registry_api trades it for a token (OAuth2)
            return TOKEN_USER, str(fields["identitytoken"])
        if not user or not password:
            return None
        return str(user), str(password)

    def load_bundle(self, members: Mapping[str, bytes], what: str) -> None:
        """`docker load` of an image tarball made of these members (a manifest naming
        layers the engine has, and a config): an image from layers already here."""
        with tempfile.TemporaryFile() as fh:
            fh.write(tar_files(members))
            fh.seek(0)
            self._load(fh, what)

    def load_image(self, bundle: assembly.Bundle, what: str) -> str:
        """`docker load` of a bundle whose layers are files or named by diff ID (streamed,
        a layer file a piece at a time: a wheelhouse layer may be large); the image id.
        An image with no parent at all (a wheelhouse image) is made this way too."""
        self._load(bundle, what)
        return verified(self, bundle.image_id, json.loads(bundle.config).get("config") or {}, what)

    @contextlib.contextmanager
    def archive_reader(
        self, image: str, volume: str | None = None, at: str = VOLUME_DIR
    ) -> Iterator[ArchiveRead]:
        """Read paths of ``image`` (and of ``volume``, mounted read-only at ``at``) as tar
        streams, through one created, never started container: an image with no shell
        (a wheelhouse image) can be read, and nothing is ever whole in memory."""
        mounts = [_mount(at, volume, read_only=True)] if volume else []
        kwargs: dict[str, Any] = {"command": ["true"], "entrypoint": [], "mounts": mounts}
        with self._temp_container(image, "read", **kwargs) as container:

            def read(path: str) -> Iterator[bytes] | None:
                try:
                    stream, _ = container.get_archive(path)
                except dockerpy.docker.errors.NotFound:
                    return None
                chunks: Iterator[bytes] = iter(stream)
                return chunks

            yield read

    def run_with_archives(
        self, step: Step, archives: Sequence[ArchivePut], out: Output
    ) -> RunResult:
        """Run ``step`` with more files than fit in memory: after its own files, each
        archive is opened when its turn comes and streamed into the created container
        (e.g. straight from another container's ``get_archive``), then the step starts.
        The container is removed however it ends."""
        start = time.monotonic()
        tail: deque[str] = deque(maxlen=60)
        kwargs = _container_args(step, None)
        try:
            with self._temp_container(step.image, step.name, **kwargs) as container:
                self.put_files(container.id, step.files)
                for directory, source in archives:
                    stream = source()
                    if stream is not None and not container.put_archive(directory, stream):
                        raise EngineError(f"the engine refused files for {directory}")
                bare = dataclasses.replace(step, files=())
                exit_code, _ = self._drive(container, bare, out, tail)
        except dockerpy.docker.errors.ImageNotFound as exc:
            raise step_image_missing(step) from exc
        return RunResult(exit_code, "\n".join(tail), None, time.monotonic() - start)


class _RegistryRefusal(Exception):
    """An error item in a push or pull stream."""


def _watched(make: Any, quiet: float, what: str) -> Iterator[Any]:
    """The items of a docker-py stream, read in a thread so that an engine that stops
    answering is noticed: docker-py makes pull and push requests with no timeout at all
    (a long pull is fine, silence for ``quiet`` seconds is not). ``make`` is the stream,
    or a call that returns it (the request itself may hang)."""
    import queue

    items: queue.Queue[tuple[str, Any]] = queue.Queue()

    def pump() -> None:
        try:
            for item in make() if callable(make) else make:
                items.put(("item", item))
        except BaseException as exc:  # handed to the caller's thread
            items.put(("error", exc))
        items.put(("end", None))

    threading.Thread(target=pump, daemon=True, name="warpdrive-stream").start()
    while True:
        try:
            kind, value = items.get(timeout=quiet)
        except queue.Empty as exc:
            raise EngineError(f"the engine sent nothing for {quiet:.0f} s while {what}") from exc
        if kind == "end":
            return
        if kind == "error":
            raise value
        yield value


def _not_found(text: str) -> bool:
    """Whether the engine relays a registry's "no such image". A body the engine could
    not parse is not one, even when it reads "404 page not found": that is a token
    server or proxy answering 404, which registry_check.py asks the registry about."""
    lowered = text.lower()
    if "error parsing http" in lowered:
        return False
    return any(
        s in lowered
        for s in ("manifest unknown", "not found", "does not exist", "repository name not known")
    )


def _registry_fix(ref: str) -> str:
    registry = registry_of(ref)
    return (
        f"check that {registry} is reachable from the engine and that you may push/pull "
        f"there (`docker login {registry}`; a plain-HTTP registry other than on loopback "
        "must be in the engine's insecure-registries)"
    )


def registry_of(ref: str) -> str:
    """The registry of an image reference, as Docker reads it: the first component when
    it names a host (a dot, a port, localhost), else Docker Hub."""
    return named_registry(ref) or "docker.io"


#: what an engine relays when a registry wanted a login and none was sent, and when it
#: refused the one sent (a wrong password, or a user who may not push or pull there)
_NO_LOGIN = ("no basic auth credentials",)
_REFUSED = ("unauthorized", "authentication required", "denied", "forbidden")


def _registry_failure(ref: str, exc: BaseException) -> tuple[str, str] | None:
    """(why, fix) of a push or pull of ``ref`` that the registry (through the engine) or
    a credential helper refused; None when the engine itself failed. The credentials
    are never in it: docker-py sends them in a header the engine does not echo."""
    registry = registry_of(ref)
    login = f"`docker login {registry}`"
    helper = _helper_failure(exc)
    if helper is not None:
        return (
            f"the credential helper for {registry} failed ({helper})",
            f"install that helper (on PATH), or remove `credsStore`/`credHelpers` from "
            f"{config_file()} and log in with {login}; then run again",
        )
    if isinstance(exc, _RegistryRefusal):
        said = str(exc)
    elif isinstance(exc, dockerpy.docker.errors.APIError):
        said = short(exc)
    else:
        return None
    lowered = said.lower()
    if any(s in lowered for s in _NO_LOGIN + _REFUSED):
        # the registry's own words, without the engine's 'HTTP 500: Head "URL": '
        said = re.sub(r'^(HTTP \d+: )?([A-Za-z]+ "[^"]*": )?', "", said)
    if any(s in lowered for s in _NO_LOGIN):
        return (
            f"{registry} wants a login and there are no credentials for it in "
            f"{config_file()} ({said})",
            f"log in with {login} (nox-warpdrive reads the Docker config file and its "
            "credential helpers, as docker does), then run again",
        )
    if any(s in lowered for s in _REFUSED):
        return (
            f"{registry} refused the credentials in {config_file()} ({said})",
            f"log in again with {login}, as a user who may push to and pull from "
            f"{_split_tag(ref)[0]}, then run again",
        )
    return said, _registry_fix(ref)


def _helper_failure(exc: BaseException) -> str | None:
    """What a credential helper's failure says (docker-py wraps it in a bare
    DockerException): a helper not on PATH, one that exited with an error."""
    if isinstance(exc, dockerpy.docker.errors.APIError) or not isinstance(
        exc, dockerpy.docker.errors.DockerException
    ):
        return None
    if not str(exc).startswith("Credentials store error"):
        return None
    cause = exc.__cause__
    return str(cause).strip() if cause is not None else str(exc)


def config_file() -> str:
    """The Docker config file docker-py reads the credentials from, for messages."""
    import docker.utils.config

    found = docker.utils.config.find_config_file()
    if found:
        return str(found)
    where = os.environ.get("DOCKER_CONFIG") or os.path.join("~", ".docker")
    return f"{os.path.join(where, 'config.json')} (there is none)"


@translated
class DockerEngine(_Registry, PodmanMixin, AboutMixin):
    """A connected Docker engine, through docker-py."""

    @classmethod
    def _connect(cls, timeout: float = 600, host: str | None = None) -> DockerEngine:
        """``host``: a DOCKER_HOST URL instead of the environment's (the TLS settings,
        DOCKER_CERT_PATH and DOCKER_TLS_VERIFY, still come from the environment)."""
        _import_docker()
        _quiet_loggers()
        environment = {**os.environ, "DOCKER_HOST": host} if host else None
        try:
            client = dockerpy.docker.from_env(timeout=timeout, environment=environment)
            client.ping()
        except Exception as exc:  # DockerException, requests/urllib3 connection errors
            raise EngineError(
                f"no Docker engine answers at {host_shown(host)} ({short(exc)})",
                fix=START_ENGINE,
            ) from exc
        return cls(client, timeout)

    def memory_total(self) -> int:
        """The engine's memory in bytes (0 when it does not say)."""
        if self._memory is None:
            try:
                self._memory = int(self._info().get("MemTotal") or 0)
            except (ValueError, TypeError, AttributeError):
                self._memory = 0
        return self._memory

    def _info(self) -> Any:
        return self.client.info()
