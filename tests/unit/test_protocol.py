"""The machine-read lines (runtime/protocol.py): written by the containers, read by the
host with one parser."""

from __future__ import annotations

import pytest

from nox_warpdrive.plan import EXPORT_READY
from nox_warpdrive.runtime import protocol


@pytest.mark.parametrize("kind", sorted(protocol.KINDS))
def test_every_kind_reads_back_what_was_written(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = {"stage": "disk", "files": ["a.whl"], "n": 1}
    protocol.emit(protocol.KINDS[kind], data)
    (written,) = capsys.readouterr().out.splitlines()
    assert protocol.parse(written) == (kind, data)
    assert protocol.parse(protocol.line(protocol.KINDS[kind], [1], compact=False)) == (kind, [1])


def test_the_formats_are_the_ones_the_scripts_always_wrote() -> None:
    data = {"b": [1, 2], "a": None}
    assert protocol.line(protocol.SUMMARY_PREFIX, data) == 'warpdrive: SUMMARY {"b":[1,2],"a":null}'
    loose = protocol.line(protocol.LIBRARIES_LINE, data, compact=False, sort_keys=True)
    assert loose == 'warpdrive: MISSING-LIBRARIES {"a": null, "b": [1, 2]}'


def test_other_lines_are_none_and_unreadable_json_is_still_a_machine_line() -> None:
    assert protocol.parse("Collecting flask") is None
    assert protocol.parse("warpdrive: [  1.0s] resolving with uv") is None
    assert protocol.parse(protocol.FAILURE_PREFIX + "{cut off") == ("failure", None)
    # two kinds that share a beginning are told apart
    assert protocol.parse(protocol.MISSING_LINE + "[]") == ("missing", [])
    assert protocol.parse(protocol.LIBRARIES_LINE + "{}") == ("libraries", {})


def test_last_gives_the_last_line_of_a_kind() -> None:
    lines = [
        protocol.line(protocol.SUMMARY_PREFIX, {"n": 1}),
        "noise",
        protocol.line(protocol.FAILURE_PREFIX, {"stage": "x"}),
        protocol.line(protocol.SUMMARY_PREFIX, {"n": 2}),
    ]
    assert protocol.last(lines, "summary") == {"n": 2}
    assert protocol.last(lines, "imported") is None
    assert protocol.last([*lines, protocol.SUMMARY_PREFIX + "oops"], "summary") is None


def test_the_export_marker_is_one_and_bare() -> None:
    assert EXPORT_READY == protocol.EXPORT_READY
    assert protocol.parse(EXPORT_READY) is None  # the engine stops there; not a JSON line
