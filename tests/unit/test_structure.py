"""The package's shape (issue 21), checked on the source by scripts/check_structure.py:
at most 16 modules at the top level, no module over 800 lines, no function over 60, no
import cycle (deferred imports count). The layers themselves: import-linter's contracts in
pyproject.toml (`lint-imports`, run by `nox -s lint` and scripts/test.sh)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_structure.py"


def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_structure", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_structure", module)
    spec.loader.exec_module(module)
    return module


def test_modules_and_functions_are_small_and_the_top_level_is_short() -> None:
    assert checker().size_offences() == []


def test_no_import_cycle_deferred_imports_included() -> None:
    assert checker().import_cycles() == []


def test_the_checks_see_what_they_check(tmp_path: Path) -> None:
    """A long function and a cycle are found: the checks above are not vacuous."""
    check = checker()
    long = tmp_path / "long.py"
    long.write_text("def f():\n" + "    x = 1\n" * 61)
    assert [n for n, lines in check.function_lengths(long) if lines > 60] == ["f"]
    assert len(check.top_level_modules()) <= check.MAX_TOP_LEVEL


def test_unit_and_integration_test_files_have_their_own_basenames() -> None:
    """pytest imports test files by basename (rootdir-relative without packages): a unit
    and an integration file of one name stop the whole suite at collection, which a run
    of the unit tests alone never shows. Integration twins are named *_engine.py."""
    tests = Path(__file__).resolve().parents[1]
    unit = {p.name for p in (tests / "unit").glob("test_*.py")}
    integration = {p.name for p in (tests / "integration").glob("test_*.py")}
    assert unit & integration == set()
