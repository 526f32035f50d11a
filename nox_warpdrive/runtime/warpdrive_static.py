"""Serves a Django app's collected static files in front of the app (stdlib + WhiteNoise).

Shipped into images at /opt/app-root/lib and used by warpdrive-start for servers with no
static file mapping of their own: `application` (WSGI) wraps the app in WhiteNoise, as
warpdrive does; `asgi_application` (ASGI, uvicorn) serves the files itself, since
WhiteNoise speaks only WSGI. The app is named by WARPDRIVE_APPLICATION ("mod:callable");
the files by WARPDRIVE_STATIC_ROOT and WARPDRIVE_STATIC_URL.

Files Django's manifest storage named by their content (a 12-hex hash before the
extension, listed in staticfiles.json) never change under that name: they are sent
cacheable for a year and immutable; the others for 60 seconds, as WhiteNoise does.
"""

import importlib
import json
import mimetypes
import os
import re
from typing import Any, Dict, FrozenSet

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


#: how long a hashed file may be cached: a year
YEAR = 31536000
HASHED = re.compile(r"\.[0-9a-f]{12}\.[^./]+$")
MANIFEST = "staticfiles.json"


def _hashed() -> FrozenSet[str]:
    """The hashed names in Django's manifest (relative to the root): read once."""
    if "hashed" not in _cache:
        try:
            with open(os.path.join(_root(), MANIFEST), encoding="utf-8") as fh:
                paths = json.load(fh).get("paths") or {}
        except (OSError, ValueError, AttributeError):
            paths = {}
        names = paths.values() if isinstance(paths, dict) else []
        _cache["hashed"] = frozenset(n for n in names if isinstance(n, str) and HASHED.search(n))
    return _cache["hashed"]  # type: ignore[no-any-return]


def immutable(url: str) -> bool:
    """Whether a URL path names a hashed file of the manifest."""
    prefix = _prefix()
    return url.startswith(prefix) and url[len(prefix) :] in _hashed()


def _cache_control(url: str) -> bytes:
    if immutable(url):
        return b"max-age=%d, public, immutable" % YEAR
    return b"max-age=60, public"


def _wsgi() -> Any:
    from whitenoise import WhiteNoise  # type: ignore[import-not-found]

    class YearWhiteNoise(WhiteNoise):  # type: ignore[misc]
        FOREVER = YEAR  # WhiteNoise's own is ten years

    def immutable_file_test(path: str, url: str) -> bool:
        return immutable(url)

    return YearWhiteNoise(
        _target(), root=_root(), prefix=_prefix(), immutable_file_test=immutable_file_test
    )


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
                            (b"cache-control", _cache_control(scope["path"])),
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
