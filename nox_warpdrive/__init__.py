"""nox-warpdrive: nox sessions that build and run container images for Python web apps.

In a noxfile::

    import nox_warpdrive
    nox_warpdrive.sessions()
"""

from __future__ import annotations

from .config import Config, load_config
from .errors import WarpdriveError
from .sessions import sessions

__all__ = ["Config", "WarpdriveError", "load_config", "sessions"]
__version__ = "0.1.0"
