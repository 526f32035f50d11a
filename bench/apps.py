"""The app every tool builds a copy of (``examples/wagtail-site`` or ``--app``), and the
pyproject.toml the bench writes into nox-warpdrive's copy of it."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .common import (
    BASE_IMAGE,
    BUILDER_IMAGE,
    EXAMPLE,
    EXAMPLE_CODE_FILE,
    EXAMPLE_DESCRIPTION,
    EXAMPLE_PEER_CMD,
    NOT_APP_CODE,
    PROJECT_NAME,
    WD_IMAGE,
    WD_VOLUME,
    BenchError,
)


@dataclass(frozen=True)
class App:
    """The app every tool builds a copy of, and how the scenarios change it."""

    source: Path
    code_file: str  # relative POSIX path of the .py file the code change edits
    peer_cmd: tuple[str, ...]  # the peers' CMD
    #: generated files added to every copy (``--files``, ``--assets-mb``): see gentree
    files: int = 0
    assets_mb: int = 0

    def describe(self) -> str:
        """The app as RESULTS.md names it."""
        name = EXAMPLE_DESCRIPTION if self.source == EXAMPLE else f"a copy of `{self.source}`"
        if self.files or self.assets_mb:
            name += (
                f", plus {self.files:,} generated small files and {self.assets_mb} MB of "
                "generated assets (bench/gentree.py)"
            )
        return name

    @property
    def is_example(self) -> bool:
        """Whether this is the README's app: the example, as it is."""
        return self.source == EXAMPLE and not (self.files or self.assets_mb)


def default_code_file(app: Path) -> str:
    """The .py file the code change edits when none is named: the app's first module (by
    path) that is not a launcher or a test; appending a constant to it changes no
    behaviour."""
    ignore = {"__pycache__", ".nox", ".venv", "venv", "node_modules", ".git"}
    found = sorted(
        p.relative_to(app).as_posix()
        for p in app.rglob("*.py")
        if not ignore.intersection(p.relative_to(app).parts)
        and p.name not in NOT_APP_CODE
        and not p.name.startswith("test")
    )
    if not found:
        raise BenchError(f"{app} has no .py file for the code-change scenario: pass --code-file")
    return found[0]


def make_app(
    source: Path | None,
    code_file: str | None,
    peer_cmd: str | None,
    files: int = 0,
    assets_mb: int = 0,
) -> App:
    """The bench's app: EXAMPLE unless --app names another one (a directory with a
    requirements.txt, what `nox -s image` builds), with ``files`` generated small files
    and ``assets_mb`` MB of generated assets added to every copy."""
    src = (source or EXAMPLE).resolve()
    if not (src / "requirements.txt").is_file():
        raise BenchError(f"{src} has no requirements.txt: --app takes an app's directory")
    if code_file is None:
        code_file = EXAMPLE_CODE_FILE if src == EXAMPLE else default_code_file(src)
    if not (src / code_file).is_file():
        raise BenchError(f"--code-file {code_file}: no such file in {src}")
    if peer_cmd is not None:
        cmd = tuple(shlex.split(peer_cmd))
    elif src == EXAMPLE:
        cmd = EXAMPLE_PEER_CMD
    else:
        raise BenchError(
            "--app needs --peer-cmd: the command the Dockerfile peers' images start, "
            'e.g. --peer-cmd "gunicorn --bind 0.0.0.0:8080 myapp.wsgi:application"'
        )
    if not cmd:
        raise BenchError("--peer-cmd is empty")
    return App(src, code_file, cmd, files, assets_mb)


def toml_value(value: object) -> str:
    """A [tool.warpdrive] value written back as TOML (strings, booleans, numbers, lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise BenchError(f"cannot copy the [tool.warpdrive] value {value!r} into the bench's app")


def bench_pyproject(existing: Path, extra: Mapping[str, object] | None = None) -> str:
    """The app copy's pyproject.toml: the bench's own name, image, volume and base images
    (so it removes only what it made), and the app's other [tool.warpdrive] settings
    (server, module, collectstatic, ...) as they are; ``extra`` settings last (the fresh
    runner's registry image and host network)."""
    settings: dict[str, object] = {}
    if existing.is_file():
        import tomllib  # here, not at the top: only this path needs Python 3.11

        data = tomllib.loads(existing.read_text())
        table = data.get("tool", {}).get("warpdrive", {})
        settings = {k: v for k, v in table.items() if not isinstance(v, dict)}
    settings |= {
        "image": WD_IMAGE,
        "volume": WD_VOLUME,
        "base-image": BASE_IMAGE,
        "builder-image": BUILDER_IMAGE,
        **(extra or {}),
    }
    lines = [
        "[project]",
        f'name = "{PROJECT_NAME}"',
        'version = "0.1.0"',
        'requires-python = ">=3.11"',
        "",
        "[tool.warpdrive]",
        *(f"{key} = {toml_value(value)}" for key, value in settings.items()),
    ]
    return "\n".join(lines) + "\n"
