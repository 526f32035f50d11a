"""The README's recipes are what users paste into their pipelines: every YAML block must
parse, and every `nox -s <session> -- <args>` line in a code block must be accepted by
that session's own argument parser (so a renamed flag cannot leave the README behind)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from nox_warpdrive.sessions import (
    doctor_parser,
    image_parser,
    run_parser,
    serve_parser,
    wheelhouse_parser,
)

README = Path(__file__).resolve().parents[2] / "README.md"

PARSERS = {
    "wheelhouse": wheelhouse_parser,
    "image": image_parser,
    "run": run_parser,
    "serve": serve_parser,
    "doctor": doctor_parser,
}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def session_lines(text: str) -> list[str]:
    """The `nox -s ...` commands in the code blocks (YAML `run:` and list items too)."""
    found = []
    for _, body in fenced_blocks(text):
        for line in body.splitlines():
            m = re.search(r"\bnox -s (\w+)(?: -- (.*?))?(?:\s+#.*)?$", line)
            if m and m.group(1) in PARSERS:
                found.append(m.group(0))
    return found


def placeholders(args: str) -> str:
    """CI expressions and shell variables as plain words (the parser sees values)."""
    args = re.sub(r"\$\{\{[^}]*\}\}", "X", args)
    return re.sub(r"\$\{?\w+\}?", "X", args)


def test_the_readme_has_recipes() -> None:
    text = README.read_text()
    assert sum(1 for lang, _ in fenced_blocks(text) if lang == "yaml") >= 4
    assert len(session_lines(text)) >= 10


@pytest.mark.parametrize(
    "body", [b for lang, b in fenced_blocks(README.read_text()) if lang == "yaml"]
)
def test_every_yaml_recipe_parses(body: str) -> None:
    assert yaml.safe_load(body)


@pytest.mark.parametrize("line", session_lines(README.read_text()))
def test_every_session_command_is_accepted(line: str) -> None:
    m = re.match(r"nox -s (\w+)(?: -- (.*?))?(?:\s+#.*)?$", line)
    assert m, line
    args = shlex.split(placeholders(m.group(2) or ""))
    PARSERS[m.group(1)]().parse_args(args)  # raises on a flag the session does not know


def test_a_wrong_flag_is_caught() -> None:
    with pytest.raises(Exception, match="unrecognized arguments"):
        PARSERS["image"]().parse_args(["--cache-to", "X"])
