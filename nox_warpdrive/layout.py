"""Where things live in an app image, and the small helpers every layer plan shares:
the paths, the app user, the label prefix, the directory skeleton above the app files
and the runtime environment."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

# the labels' keys and records live in labels.py; the prefix stays importable here
from .labels import LABEL_PREFIX as LABEL_PREFIX
from .tars import dir_tar

if TYPE_CHECKING:  # a type only: the core does not import the engine
    from .engine import ImageInfo

APP_ROOT = "/opt/app-root"


APP_SRC = f"{APP_ROOT}/src"


VENV = f"{APP_ROOT}/venv"


APP_UID = 1001


PORT = 8080


#: where the app step records Django's STATIC_ROOT inside the image
STATIC_ROOT_RECORD = f"{APP_ROOT}/.warpdrive/static-root"


def key_digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\0")
    return h.hexdigest()


def skeleton_tar() -> bytes:
    """The directories above the app files, with the owner and mode the deps layer gave
    them. A layer tar must carry its parents: a directory the engine has to invent while
    applying a layer gets root:root 0755 in that layer and would hide the app user's
    write access to APP_SRC."""
    return dir_tar(
        [
            ("opt", 0, 0o755),
            (APP_ROOT[1:], 0, 0o755),
            (APP_ROOT[1:] + "/.warpdrive", 0, 0o755),
            (APP_ROOT[1:] + "/bin", 0, 0o755),
            (APP_ROOT[1:] + "/lib", 0, 0o755),
            (APP_SRC[1:], APP_UID, 0o2775),
        ]
    )


def image_env(base: ImageInfo) -> tuple[tuple[str, str], ...]:
    base_env = dict(e.split("=", 1) for e in base.env if "=" in e)
    path = base_env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return (
        ("PATH", f"{VENV}/bin:{APP_ROOT}/bin:{path}"),
        ("VIRTUAL_ENV", VENV),
        ("APP_ROOT", APP_ROOT),
        ("HOME", APP_SRC),
        ("PYTHONUNBUFFERED", "1"),
        ("PORT", str(PORT)),
    )
