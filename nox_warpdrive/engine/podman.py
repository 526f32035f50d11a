"""What Podman serving the Docker API (`podman system service`) reads differently from
Docker, as pure functions: which engine a ``/version`` answer names, the ``changes`` a
commit takes, and label filters in the form every engine reads. The backend part that
uses them is podman_mixin.py.

- ``GET /images/json`` with two or more label filters in the list form
  (``{"label": ["a=b", "c=d"]}``, what docker-py sends) answers ``[]`` on Podman 4.x
  (containers/podman#18092); the map form (``{"label": {"a=b": true}}``, what the docker
  CLI sends) works on Podman and Docker alike.
- ``POST /commit`` ignores its config body on Podman 4.3 (containers/podman#13770);
  the ``changes`` parameter (Dockerfile instructions, one per line) works.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import BuildError

#: the Components entry of ``/version`` by which Podman names itself
PODMAN_COMPONENT = "Podman Engine"


def is_podman(version: Mapping[str, Any]) -> bool:
    """Whether a ``/version`` answer is Podman's (its Components name it; Docker's
    name "Engine", "containerd", "runc")."""
    components = version.get("Components") or ()
    return any(
        isinstance(c, Mapping) and str(c.get("Name") or "").startswith("Podman") for c in components
    )


def label_filters(labels: Mapping[str, str]) -> str:
    """The ``filters`` query of ``/images/json`` for images with all these labels, in
    the map form both Docker and Podman read."""
    return json.dumps({"label": {f"{k}={v}": True for k, v in labels.items()}})


def has_labels(have: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Whether ``have`` holds every wanted label with its value (an engine's filter is
    checked, never trusted)."""
    return all(have.get(k) == v for k, v in wanted.items())


def commit_changes(conf: Mapping[str, Any]) -> str:
    """``conf`` (an image config in the Engine API's names, as assembly.config_changes
    or merge_config make it) as the ``changes`` of a commit: Dockerfile instructions,
    one per line, LABEL and ENV one per line (Podman takes the rest of a line as the
    value, unquoted). A value holding a line break cannot be said this way: BuildError,
    never a line that would be read as another instruction."""
    lines: list[str] = []
    if "Entrypoint" in conf:
        lines.append("ENTRYPOINT " + json.dumps(list(conf["Entrypoint"] or [])))
    if conf.get("Cmd") is not None:
        lines.append("CMD " + json.dumps(list(conf["Cmd"])))
    if conf.get("User"):
        lines.append(f"USER {conf['User']}")
    if conf.get("WorkingDir"):
        lines.append(f"WORKDIR {conf['WorkingDir']}")
    lines += [f"ENV {item}" for item in conf.get("Env") or ()]
    lines += [f"EXPOSE {port}" for port in conf.get("ExposedPorts") or {}]
    lines += [f"LABEL {k}={v}" for k, v in (conf.get("Labels") or {}).items()]
    for line in lines:
        if "\n" in line or "\r" in line:
            raise BuildError(
                f"an image setting holds a line break, which Podman's commit cannot take: "
                f"{line.split(chr(10))[0]!r}...",
                fix="remove the line break from that label or variable",
            )
    return "\n".join(lines)
