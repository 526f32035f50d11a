"""The local-socket backend: on a local engine (``DOCKER_HOST`` unset or ``unix://``) the
calls a container-free build makes (ping, inspect, history, load, tag, info, remove, the
leftover sweep) go over the socket with the standard library, one connection per call;
docker-py (~0.15 s to import with requests and urllib3) is imported only when a container
must run. Chosen once, in ``connect()``; remote engines get the docker-py backend.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, cast

from ..assembly import Bundle
from ..errors import EngineError, LayerRefused
from ..tars import ChunkFile
from .base import OWNER_LABEL, START_ENGINE, ImageInfo, listed_images, short, translated
from .docker_registry import DockerEngine
from .dockerpy import _split_tag, image_info
from .owner import TEMP_PREFIX
from .podman import label_filters


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout, blocksize=1 << 20)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class ApiError(Exception):
    """The engine could not be reached, or answered with an error."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.explanation = message  # what base.short() shows


class LocalApi:
    """The few Engine API calls a build with no container makes, over a local unix
    socket with http.client (one connection per call: threads share the engine)."""

    def __init__(self, path: str, timeout: float = 600) -> None:
        self.path = path
        self.timeout = timeout
        self.prefix = ""
        self.libpod = ""

    def call(
        self,
        method: str,
        path: str,
        body: bytes | IO[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, bytes, http.client.HTTPResponse]:
        """(status, body, response); raises ApiError for a status not in ``ok`` (404
        keeps its status) or no answer."""
        conn = _UnixConnection(self.path, self.timeout)
        try:
            conn.request(method, self.prefix + path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(f"no answer from unix://{self.path}: {short(exc)}") from exc
        finally:
            conn.close()
        if resp.status not in ok:
            try:
                message = str(json.loads(data).get("message") or "")
            except (ValueError, AttributeError):
                message = data.decode("utf-8", "replace").strip()
            raise ApiError(message or f"HTTP {resp.status}", resp.status)
        return resp.status, data, resp

    def json(self, path: str) -> Any:
        return json.loads(self.call("GET", path)[1])

    def ping(self) -> None:
        """Check that the engine answers, and speak its API version from now on (as
        docker-py does), not some later one's."""
        _, _, resp = self.call("GET", "/_ping")
        version = resp.getheader("API-Version") or ""
        #: Podman names itself here too (what its /version Components say, which take
        #: it ~0.2 s to gather): engine kind for free
        self.libpod = resp.getheader("Libpod-API-Version") or ""
        if version and all(p.isdigit() for p in version.split(".")):
            self.prefix = f"/v{version}"

    @staticmethod
    def quote(ref: str) -> str:
        return urllib.parse.quote(ref, safe="/:")


@translated
class LocalEngine(DockerEngine):
    """A local engine: the calls above over the socket, the rest through docker-py."""

    def __init__(self, api: LocalApi, timeout: float = 600) -> None:
        super().__init__(None, timeout)
        self._api = api
        if api.libpod:  # Podman said so in its ping; else /version tells, when asked
            self._podman = True
        # docker-py then asks no /version (~0.2 s on Podman) when it is first needed
        self._api_version = api.prefix[2:] or None

    @classmethod
    def _connect_local(cls, path: str, timeout: float = 600) -> LocalEngine:
        api = LocalApi(path, timeout)
        try:
            api.ping()
        except ApiError as exc:
            raise EngineError(f"no Docker engine answers ({exc})", fix=START_ENGINE) from exc
        return cls(api, timeout)

    def describe(self) -> str:
        return f"unix://{self._api.path}"

    def _info(self) -> Any:
        return self._api.json("/info")

    def _version(self) -> Any:
        return self._api.json("/version")

    def _system_df(self) -> Any:
        return self._api.json("/system/df")

    def _inspect(self, ref: str) -> dict[str, Any] | None:
        try:
            return dict(self._api.json(f"/images/{self._api.quote(ref)}/json"))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def images_with_labels(
        self, labels: Mapping[str, str], where: Callable[[Mapping[str, str]], bool] | None = None
    ) -> list[ImageInfo]:
        """Images with all these labels; ``where``: of those, the ones whose labels it
        takes (checked on the listing, before any inspect)."""
        query = urllib.parse.urlencode({"filters": label_filters(labels)})
        rows = self._api.json("/images/json?" + query)
        return listed_images(rows, self.image, labels, where)

    def image(self, ref: str) -> ImageInfo | None:
        attrs = self._inspect(ref)
        return image_info(attrs) if attrs is not None else None

    def tag(self, image_id: str, ref: str) -> None:
        repo, tag = _split_tag(ref)
        query = urllib.parse.urlencode({"repo": repo, "tag": tag})
        self._api.call("POST", f"/images/{self._api.quote(image_id)}/tag?{query}", ok=(201,))

    def remove_image(self, image_id: str) -> None:
        with contextlib.suppress(ApiError):
            self._api.call("DELETE", f"/images/{self._api.quote(image_id)}?noprune=1")

    def history(self, ref: str) -> list[dict[str, Any]]:
        return list(self._api.json(f"/images/{self._api.quote(ref)}/history"))

    def _load(self, bundle: Bundle | IO[bytes], what: str) -> None:
        """`docker load` of an image tarball over the local socket: a bundle is streamed
        (its length is known before a layer is read), a file sent as it is."""
        if isinstance(bundle, Bundle):
            size = bundle.size()
            body = cast(IO[bytes], ChunkFile(bundle.chunks()))
        else:
            size = bundle.seek(0, os.SEEK_END)
            bundle.seek(0)
            body = bundle
        headers = {"Content-Type": "application/x-tar", "Content-Length": str(size)}
        try:
            _, data, _ = self._api.call("POST", "/images/load?quiet=1", body, headers)
        except ApiError as exc:
            raise LayerRefused(f"the engine refused the {what}: {exc}") from exc
        for message in _json_stream(data):
            if message.get("error") or message.get("errorDetail"):
                error = message.get("error") or message["errorDetail"]
                raise LayerRefused(f"the engine refused the {what}: {error}")

    def _list_temp_containers(self) -> list[dict[str, Any]]:
        filters = json.dumps({"name": [TEMP_PREFIX]})
        query = urllib.parse.urlencode({"all": "1", "filters": filters})
        return list(self._api.json(f"/containers/json?{query}"))

    def _list_secret_volumes(self) -> list[dict[str, Any]]:
        label = f"{OWNER_LABEL}=nox-warpdrive-secrets"
        query = urllib.parse.urlencode({"filters": json.dumps({"label": [label]})})
        return list(self._api.json(f"/volumes?{query}").get("Volumes") or [])

    def _delete(self, path: str) -> None:
        with contextlib.suppress(ApiError):
            self._api.call("DELETE", path, ok=(200, 204, 404, 409))


def _json_stream(data: bytes) -> Iterator[dict[str, Any]]:
    """The objects of a JSON stream as the engine writes them (one or more per line)."""
    decoder = json.JSONDecoder()
    text = data.decode("utf-8", "replace")
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return
        if isinstance(obj, dict):
            yield obj
