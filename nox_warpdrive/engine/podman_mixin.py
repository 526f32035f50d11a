"""Podman as the engine, through its Docker-compatible API: the right image, never a
silent wrong one. Which engine it is comes from ``/version`` (its Components), read once,
never guessed from an error.

Podman 4.3 (Debian 12) refuses a ``docker load`` archive that names parent layers it does
not carry ("Some layer tarfiles are missing in the tarball", containers/podman#8132), the
container-free path's whole point, and ignores the config sent with ``/commit``
(containers/podman#13770). So on Podman a new image is made as Podman takes it: a
container of the parent is created (never started), the layers are put into it as
archives, and it is committed with the ``changes`` parameter carrying the whole config
(podman.commit_changes); the result is read back and compared with the plan
(checked.verified) like every image on every engine. A build step's container is
committed the same way. The app layers then arrive as one layer (Podman writes the
commit's layer itself), so the next build names none of them and makes them from the
tree again: a small write, no rebuild of the deps layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import assembly
from ..errors import LayerRefused
from ..plan import CommitSpec, Step
from .apps import _Apps
from .base import Output, RunResult, translated
from .checked import verified
from .podman import commit_changes, is_podman


@translated
class PodmanMixin(_Apps):
    """``append_layer`` and the commit of a step, the Podman way when the engine is
    Podman, else the backend's own (docker load, commit with a config)."""

    _podman: bool | None = None

    if TYPE_CHECKING:

        def _version(self) -> Any: ...  # AboutMixin's, or the local socket's

    def is_podman(self) -> bool:
        """Whether the engine is Podman, as its ``/version`` Components say (read once)."""
        if self._podman is None:
            self._podman = is_podman(dict(self._version()))
        return self._podman

    def _run(
        self,
        step: Step,
        out: Output,
        secrets: str | None,
        into: Path | None = None,
        name: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> RunResult:
        """A step's CPU weight is left out on Podman: rootless Podman often has no cpu
        controller delegated to it, and would refuse the container."""
        if step.cpu_shares is not None and self.is_podman():
            step = dataclasses.replace(step, cpu_shares=None)
        return super()._run(step, out, secrets, into, name, then)

    def append_layer(
        self,
        parent: str,
        layer: bytes | Path | str,
        spec: CommitSpec,
        created_by: str = "nox-warpdrive app layer",
        under: Sequence[tuple[str, bytes | str | Path]] = (),
    ) -> str:
        """``parent`` plus the layers (``under``, then ``layer``) with ``spec`` applied
        to its config (see _Images.append_layer); on Podman through a created container
        and a commit with ``changes``. LayerRefused for a layer named by its diff ID
        (Podman can put only what it is sent)."""
        if not self.is_podman():
            return super().append_layer(parent, layer, spec, created_by, under)
        what = created_by.replace("nox-warpdrive ", "")
        layers = [data for _, data in under] + [layer]
        if any(isinstance(data, str) for data in layers):
            raise LayerRefused(f"Podman cannot take the {what} with layers named by diff ID")
        conf = assembly.merge_config(self.inspect_raw(parent).get("Config") or {}, spec)
        with self._temp_container(parent, "assemble", command=["true"], entrypoint=[]) as box:
            for data in layers:
                assert not isinstance(data, str)
                _put_layer(box, data, what)
            image_id = self._commit_changes(box.id, conf, spec.message)
        return verified(self, image_id, conf, what)

    def _commit(self, container: Any, step: Step) -> str:
        if not self.is_podman():
            return super()._commit(container, step)
        spec = step.commit
        assert spec is not None
        conf = assembly.config_changes(spec)
        if "Cmd" not in conf and step.command:  # the step's, never the watchdog's
            conf["Cmd"] = list(step.command)
        image_id = self._commit_changes(container.id, conf, spec.message)
        return verified(self, image_id, conf, f"{step.name} image")

    def _commit_changes(self, container_id: str, conf: Mapping[str, Any], message: str) -> str:
        """``POST /commit`` with the config as ``changes`` (and the empty JSON body
        Podman wants even though it ignores it); the new image's id."""
        api = self.client.api
        params = {"container": container_id, "changes": commit_changes(conf)}
        if message:
            params["comment"] = message
        result = api._result(api._post_json(api._url("/commit"), data={}, params=params), True)
        return str(result["Id"])


def _put_layer(container: Any, data: bytes | Path, what: str) -> None:
    """Put a layer tar (in memory, or a file streamed from disk) at / of ``container``."""
    if isinstance(data, bytes):
        ok = container.put_archive("/", data)
    else:
        with data.open("rb") as fh:
            ok = container.put_archive("/", fh)
    if not ok:
        raise LayerRefused(f"the engine refused the files of the {what}")
