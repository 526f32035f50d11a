"""The one error root. Every user-facing failure is a WarpdriveError whose message says
what went wrong *and* what to do next; sessions turn it into ``session.error`` so the user
never sees a traceback for their own mistake."""

from __future__ import annotations


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
    callers fall back to run + commit."""


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
