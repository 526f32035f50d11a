"""The unit tests' fake engine implements the whole Engine Protocol, with the same
parameter names, so a test can hand it to any code that takes an Engine."""

from __future__ import annotations

import inspect

from fake_engine import FakeEngine

from nox_warpdrive.engine import Engine


def test_the_fake_engine_implements_the_protocol() -> None:
    for name, member in vars(Engine).items():
        if name.startswith("_") or not callable(member):
            continue
        fake = getattr(FakeEngine, name, None)
        assert fake is not None, f"FakeEngine lacks {name}"
        want = list(inspect.signature(member).parameters)
        have = list(inspect.signature(fake).parameters)
        assert have == want, f"{name}: {have} != {want}"


def test_the_fake_engine_is_an_engine_for_mypy() -> None:
    """For mypy (`mypy --strict tests/unit/test_fake_engine.py`): no cast needed."""
    engine: Engine = FakeEngine()
    assert engine.describe() == "fake://engine"
