"""Pulls and pushes through the engine, with the registry's own word where the engine's
is not enough.

An engine relays a registry whose token server fails as something else: a token URL
answering 404 reaches docker-py as "error parsing HTTP 404 response body", which read
like "no such image" (so ``--cache-from`` said "a first run" for ever) or, for a push, a
raw parse error with a ``docker login`` fix. The engine backend now calls that a failure,
not "not found"; and whenever a pull or push fails, the registry is asked directly
(registry_api.py, with the login the engine uses): a failed token server is then the
error, named as such, with its URL.
"""

from __future__ import annotations

from ..errors import EngineError, RegistryError, TokenServerError, WarpdriveError
from . import Engine, ImageInfo, Output

#: seconds the registry has to answer this host (only on a path that already failed)
ASK_TIMEOUT = 10.0


def pull(engine: Engine, ref: str, out: Output) -> ImageInfo | None:
    """``engine.pull(ref)``: None when the registry said it has no image at ``ref`` (the
    engine relays its "manifest unknown"; a body it could not parse is a failure, see
    engine/dockerpy.py). A failure is a RegistryError (TokenServerError...) when the
    registry can say what failed, else the engine's EngineError."""
    try:
        return engine.pull(ref, out)
    except EngineError as exc:
        _ask_registry(engine, ref, push=False, engine_error=exc)
        raise


def push(engine: Engine, ref: str, out: Output) -> str:
    """``engine.push(ref)``, its digest; a failure the registry can explain (its token
    server, a refused login) is a RegistryError saying so."""
    try:
        return engine.push(ref, out)
    except EngineError as exc:
        try:
            _ask_registry(engine, ref, push=True, engine_error=exc)
        except RegistryError as said:
            raise RegistryError(
                f"pushing {ref} failed: {said.message}; the image is built and tagged here",
                fix=said.fix,
            ) from exc
        raise


def _ask_registry(engine: Engine, ref: str, push: bool, engine_error: EngineError | None) -> None:
    """Raise the TokenServerError the registry itself gives for ``ref`` (with push rights
    when ``push``), the one failure the engine relays as something else; return for
    anything else (the engine's own answer stands: a refused login, for one, it names
    with the Docker config file it read). A registry this host cannot reach proves
    nothing (a remote engine has another network)."""
    from . import registry_api

    registry = registry_api.parse_ref(ref).registry
    try:
        login = engine.registry_login(registry)
        registry_api.exists(ref, login, push=push, timeout=ASK_TIMEOUT)
    except TokenServerError as exc:
        raise exc from engine_error
    except WarpdriveError:
        return
