"""Never a silent wrong image: every image a backend makes (a ``docker load`` of a
bundle, a ``commit``) is read back and its config compared with the plan before its id
is handed on. Engines differ in what they keep (Podman 4.3 ignores the config sent with
``/commit``, containers/podman#13770); a difference is WrongImage naming the field, the
image is removed, and since callers move tags only after success, no tag moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..assembly import config_mismatch
from ..errors import LayerRefused, WarpdriveError, WrongImage


class _Inspects(Protocol):
    def _inspect(self, ref: str) -> dict[str, Any] | None: ...
    def remove_image(self, image_id: str) -> None: ...


def verified(engine: _Inspects, image_id: str, wanted: Mapping[str, Any], what: str) -> str:
    """``image_id``, once the engine shows it with every field of ``wanted`` (an image
    config in the Engine API's names); LayerRefused when it does not show it at all."""
    attrs = engine._inspect(image_id)
    if attrs is None:
        raise LayerRefused(f"the engine made the {what} but does not show the image")
    wrong = config_mismatch(wanted, attrs.get("Config") or {})
    if wrong is None:
        return str(attrs.get("Id") or image_id)  # as the engine names it ("sha256:...")
    try:
        engine.remove_image(image_id)
        gone = "the image was removed"
    except WarpdriveError as exc:  # said, not raised instead: the wrong config is the news
        gone = f"the image {image_id[:19]} could not be removed ({exc.message})"
    raise WrongImage(
        f"the engine made the {what} with a config that is not the plan's ({wrong}); "
        f"{gone} and no tag moved",
        fix="run `nox -s doctor` to see which engine this is; on Podman, use 4.3 or later "
        "through its Docker API (docs/podman.md); else report this with the output above",
    )
