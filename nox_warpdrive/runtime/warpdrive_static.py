"""Serves a Django app's collected static files in front of the app (stdlib + WhiteNoise).

Shipped into images at /opt/app-root/lib and used by warpdrive-start for servers with no
static file mapping of their own: `application` (WSGI) wraps the app in WhiteNoise, as
warpdrive does; `asgi_application` (ASGI, uvicorn) serves the files itself, since
WhiteNoise speaks only WSGI. The app is named by WARPDRIVE_APPLICATION ("mod:callable");
the files by WARPDRIVE_STATIC_ROOT and WARPDRIVE_STATIC_URL.
"""

import importlib
import mimetypes
import os
from typing import Any, Dict

_cache = {}  # type: Dict[str, Any]


def _target() -> Any:
    mod, _, attr = os.environ["WARPDRIVE_APPLICATION"].partition(":")
    return getattr(importlib.import_module(mod), attr or "application")


def _root() -> str:
    root = os.environ.get("WARPDRIVE_STATIC_ROOT", "")
    if not root or not os.path.isabs(root):
        # never the working directory: that would serve the app's source
        raise RuntimeError("WARPDRIVE_STATIC_ROOT must name the collected static files")
    return root


def _prefix() -> str:
    url = os.environ.get("WARPDRIVE_STATIC_URL") or "/static/"
    return "/" + url.strip("/") + "/"


def _wsgi() -> Any:
    from whitenoise import WhiteNoise  # type: ignore[import-not-found]

    return WhiteNoise(_target(), root=_root(), prefix=_prefix())


def _resolve(path: str) -> str:
    """The file for a URL path under the prefix, or "" (never outside the root)."""
    root = os.path.realpath(_root())
    rel = path[len(_prefix()) :]
    full = os.path.realpath(os.path.join(root, rel))
    if not full.startswith(root + os.sep) or not os.path.isfile(full):
        return ""
    return full


def _asgi() -> Any:
    app = _target()
    prefix = _prefix()

    async def application(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope.get("type") == "http"
            and scope.get("method") in ("GET", "HEAD")
            and str(scope.get("path", "")).startswith(prefix)
        ):
            full = _resolve(scope["path"])
            if full:
                ctype = mimetypes.guess_type(full)[0] or "application/octet-stream"
                size = os.path.getsize(full)
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", ctype.encode()),
                            (b"content-length", str(size).encode()),
                            (b"cache-control", b"max-age=60, public"),
                        ],
                    }
                )
                if scope["method"] == "HEAD":
                    await send({"type": "http.response.body", "body": b""})
                    return
                with open(full, "rb") as fh:
                    while True:
                        chunk = fh.read(1 << 16)
                        more = len(chunk) == 1 << 16
                        await send({"type": "http.response.body", "body": chunk, "more_body": more})
                        if not more:
                            return
        await app(scope, receive, send)

    return application


def __getattr__(name: str) -> Any:
    if name not in ("application", "asgi_application"):
        raise AttributeError(name)
    if name not in _cache:
        _cache[name] = _wsgi() if name == "application" else _asgi()
    return _cache[name]
