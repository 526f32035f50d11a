"""The ignore rules compiled for a walk (RuleSet) give exactly is_excluded's answers:
is_excluded is Docker's rule as stated (and tests/unit/test_context.py its spec); the
compiled form only finds the matching rules faster."""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path

import pytest

from nox_warpdrive.source.context import collect
from nox_warpdrive.source.ignore import (
    DEFAULT_EXCLUDES,
    SECRET_EXCLUDES,
    IgnoreRules,
    RuleSet,
    is_excluded,
    parse_dockerignore,
)

#: every pattern shape the matcher knows: exact, prefix, suffix (moby's fast paths),
#: "**/" name rules, fixed-depth rules, "**" in the middle, classes, escapes, negations
PATTERNS = [
    "foo",
    "build",
    "a/b",
    "[ab].txt",
    "n[0-9]",
    "[^x]y",
    "[\\]]z",
    "\\*.txt",
    "a+b(c).txt",
    "**/*.pyc",
    "a/**/z",
    "a/**",
    "**foo",
    "*.md",
    "!README*.md",
    "README-secret.md",
    "docs",
    "!docs/index.md",
    "*/*.log",
    "file?.txt",
    "a?b",
    "**",
    "foo**",
    "**/x/**",
    "**/.env.*",
    "!**/keep",
    "*",
    "!a/*",
    "a\\/b",
    "**/[ab]",
    "x/*/y",
    "!**/*.md",
    "**/a?",
    "**/a*b",
    "**/ab*ab",
    "**/.env*",
    "!**/*b",
]

NAMES = ["a", "b", "z", "x", "y", "foo", "xfoo", "foobar", "build", "docs", "keep", "a.txt"]
NAMES += ["n7", "ay", "]z", "*.txt", "x.pyc", "README.md", "README-secret.md", "x.log"]
NAMES += ["index.md", "file1.txt", ".env.prod", ".env", ".git", "__pycache__", "venv", "ab"]
NAMES += ["abab", "aXb", "aab", ".envrc"]


def random_paths(rng: random.Random, count: int) -> list[str]:
    return ["/".join(rng.choices(NAMES, k=rng.randint(1, 5))) for _ in range(count)]


@pytest.mark.parametrize("seed", range(40))
def test_compiled_rules_answer_like_is_excluded(seed: int) -> None:
    rng = random.Random(seed)
    lines = rng.sample(PATTERNS, rng.randint(1, 8))
    rules = IgnoreRules(
        tuple((False, p) for p in DEFAULT_EXCLUDES + SECRET_EXCLUDES)
        + parse_dockerignore("\n".join(lines)).patterns
    )
    compiled = RuleSet.compile(rules)
    for path in random_paths(rng, 400):
        assert compiled.excluded(path) == is_excluded(rules, path), (lines, path)


@pytest.mark.parametrize("line", [p for p in PATTERNS if not p.startswith("!")])
def test_each_pattern_alone_and_negated(line: str) -> None:
    rng = random.Random(line)
    paths = [*random_paths(rng, 300), "a/b/c/z", "a/z", "d/xfoo", "logs/x.log", "a/b"]
    for lines in ([line], [line, "!" + line], ["*", "!" + line], [line, "!*"]):
        rules = parse_dockerignore("\n".join(lines))
        compiled = RuleSet.compile(rules)
        for path in paths:
            assert compiled.excluded(path) == is_excluded(rules, path), (lines, path)


def test_the_root_is_never_excluded_and_paths_are_cleaned() -> None:
    compiled = RuleSet.compile(parse_dockerignore("**\na/b"))
    assert not compiled.excluded(".")
    assert compiled.excluded("./a//b")


def test_a_walk_costs_a_few_microseconds_a_file(tmp_path: Path) -> None:
    """The issue's profile: ~120 us a file to match the defaults; the walk must not
    come near that (a generous bound: shared CI machines are slow)."""
    for d, f in itertools.product(range(20), range(100)):
        path = tmp_path / f"d{d}" / f"f{f}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    rules = IgnoreRules(tuple((False, p) for p in DEFAULT_EXCLUDES + SECRET_EXCLUDES))
    times = []
    for _ in range(3):  # the best of three: a busy machine only ever adds time
        began = time.perf_counter()
        entries = collect(tmp_path, rules)
        times.append(time.perf_counter() - began)
    per_file = min(times) / len(entries)
    assert len(entries) == 2020
    assert per_file < 60e-6, f"{per_file * 1e6:.0f} us a file"
