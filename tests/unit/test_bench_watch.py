"""`nox -s bench -- --watch` without Docker: its options, the view edit it times, the
percentiles and the table row. No builds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # plain `pytest` puts tests/unit first, not the checkout
    sys.path.insert(0, str(REPO))

from bench import cli  # noqa: E402
from bench.common import EXAMPLE  # noqa: E402
from bench.watchbench import VIEW_FILE, LoopResult, edit_view, fetch, percentile  # noqa: E402


def test_watch_takes_a_number_of_edits_and_refuses_other_modes() -> None:
    args = cli.parse_args(["--watch"])
    assert (args.watch, args.edits) == (True, 20)
    assert cli.parse_args(["--watch", "--edits", "5"]).edits == 5


@pytest.mark.parametrize(
    "argv",
    [["--watch", "--edits", "0"], ["--watch", "--fresh-runner"], ["--watch", "--app", "x"]],
)
def test_watch_refuses_what_it_does_not_measure(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(argv)


def test_an_edit_changes_only_the_health_views_text(tmp_path: Path) -> None:
    (tmp_path / "mysite").mkdir()
    original = (EXAMPLE / VIEW_FILE).read_text()
    (tmp_path / VIEW_FILE).write_text(original)
    edit_view(tmp_path, "ok-abc-1")
    edited = (tmp_path / VIEW_FILE).read_text()
    assert 'HttpResponse("ok-abc-1", content_type="text/plain")' in edited
    assert edited.replace("ok-abc-1", "ok") == original


def test_percentiles_are_nearest_rank_and_the_row_counts_failed_polls() -> None:
    values = [float(n) for n in range(1, 21)]
    assert (percentile(values, 50), percentile(values, 95)) == (10.0, 19.0)
    result = LoopResult("uv peer", [0.5, 1.5], polls_ok=98, polls_failed=2)
    assert result.row() == "| uv peer | 2 | 0.50 | 1.50 | 1.50 | – | 2 of 100 |"
    result.static_seconds = [1.25, 2.5]
    assert "| 2.50 (2) |" in result.row()


def test_nothing_listening_is_no_answer() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert fetch(f"http://127.0.0.1:{port}/", timeout=1) is None
