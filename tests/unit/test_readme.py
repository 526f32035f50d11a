"""The README and docs/ are what users paste into their pipelines: every YAML block must
parse, and every `nox -s <session> -- <args>` line in a code block must be accepted by
that session's own argument parser (so a renamed flag cannot leave the docs behind).
The README stays a page for users (at most 250 lines), names the test command CI runs,
and its configuration table lists exactly the keys the config accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from nox_warpdrive import config
from nox_warpdrive.sessions import (
    doctor_parser,
    image_parser,
    run_parser,
    sbom_parser,
    serve_parser,
    wheelhouse_parser,
)

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
#: the README and the guides it links to, where the recipes moved
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]

PARSERS = {
    "wheelhouse": wheelhouse_parser,
    "image": image_parser,
    "run": run_parser,
    "serve": serve_parser,
    "doctor": doctor_parser,
    "sbom": sbom_parser,
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
    assert sum(1 for lang, _ in fenced_blocks(text) if lang == "yaml") >= 1
    assert len(session_lines(text)) >= 10
    every = [b for p in PAGES for b in fenced_blocks(p.read_text())]
    assert sum(1 for lang, _ in every if lang == "yaml") >= 5


def pages_blocks(lang: str) -> list[tuple[str, str]]:
    return [(p.name, b) for p in PAGES for lg, b in fenced_blocks(p.read_text()) if lg == lang]


def pages_lines() -> list[tuple[str, str]]:
    return [(p.name, line) for p in PAGES for line in session_lines(p.read_text())]


@pytest.mark.parametrize(("page", "body"), pages_blocks("yaml"))
def test_every_yaml_recipe_parses(page: str, body: str) -> None:
    assert yaml.safe_load(body)


@pytest.mark.parametrize(("page", "line"), pages_lines())
def test_every_session_command_is_accepted(page: str, line: str) -> None:
    m = re.match(r"nox -s (\w+)(?: -- (.*?))?(?:\s+#.*)?$", line)
    assert m, line
    args = shlex.split(placeholders(m.group(2) or ""))
    PARSERS[m.group(1)]().parse_args(args)  # raises on a flag the session does not know


def test_a_wrong_flag_is_caught() -> None:
    with pytest.raises(Exception, match="unrecognized arguments"):
        PARSERS["image"]().parse_args(["--cache-to", "X"])


def test_the_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= 250


def test_the_readme_names_the_test_command_ci_runs() -> None:
    """`.ci/run` runs the README's test command, and the README says it is the one."""
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert ci[-1].strip() == "bash scripts/test.sh"
    text = README.read_text()
    assert "The test command is `bash scripts/test.sh`: it is what CI runs (`.ci/run`)" in (
        " ".join(text.split())
    )


def test_every_script_the_pages_name_exists() -> None:
    """`bash scripts/x.sh` in the README or docs/: the quickstart, the test command, the
    registry and second-engine helpers."""
    named = {s for p in PAGES for s in re.findall(r"\bscripts/[\w.-]+\.sh\b", p.read_text())}
    assert {"scripts/quickstart.sh", "scripts/test.sh"} <= named
    assert [s for s in sorted(named) if not (REPO / s).is_file()] == []


def config_table_keys(text: str) -> list[str]:
    """The keys of the README's configuration table, in order."""
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z-]+)` \|", section, flags=re.M)


def test_the_configuration_table_lists_every_key_the_config_accepts() -> None:
    keys = config_table_keys(README.read_text())
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(config._KEYS)


def test_every_session_argument_is_documented() -> None:
    """docs/commands.md has a row for every argument of every session's parser, under
    that session's heading."""
    text = (REPO / "docs" / "commands.md").read_text()
    for name, parser in PARSERS.items():
        section = text.split(f"### `nox -s {name}`", 1)[1].split("\n### ", 1)[0]
        rows = set(re.findall(r"^\| `(--[\w-]+)", section, flags=re.M))
        options = {o for a in parser()._actions for o in a.option_strings if o.startswith("--")}
        assert rows == options - {"--help"}, name
