"""`nox -s bench -- --watch` without Docker: its options, the view edit it times, the
percentiles and the table row. No builds."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # plain `pytest` puts tests/unit first, not the checkout
    sys.path.insert(0, str(REPO))

from bench import cli, watchbench  # noqa: E402
from bench.common import EXAMPLE, interrupt  # noqa: E402
from bench.watchbench import (  # noqa: E402
    VIEW_FILE,
    LoopResult,
    edit_view,
    fetch,
    percentile,
    polled,
)


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


def test_interrupt_ends_a_process_as_ctrl_c_and_kills_one_that_ignores_it() -> None:
    """What the watch loop and a timed build stop their process with (bench/common.py)."""
    ready = "import signal, sys, time; signal.signal(signal.SIGINT, {}); print(1, flush=True)\n"
    polite = subprocess.Popen(
        [sys.executable, "-c", ready.format("signal.default_int_handler") + "time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    stubborn = subprocess.Popen(
        [sys.executable, "-c", ready.format("signal.SIG_IGN") + "time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    for proc in (polite, stubborn):
        assert proc.stdout is not None and proc.stdout.readline()
    interrupt(polite, 30)
    interrupt(stubborn, 0.5)
    assert polite.returncode == -signal.SIGINT  # a KeyboardInterrupt's exit, not a kill
    assert stubborn.returncode == -9
    for proc in (polite, stubborn):
        assert proc.stdout is not None
        proc.stdout.close()


def test_polled_puts_what_the_poller_saw_into_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    class Seen:
        ok, failed, reasons = 3, 1, ["refused"]

        def __init__(self, url: str) -> None:
            self.stopped = False

        def start(self) -> Seen:
            return self

        def stop(self) -> None:
            self.stopped = True

    monkeypatch.setattr(watchbench, "Poller", Seen)
    result = LoopResult("t")
    with polled("http://127.0.0.1:9/", result):
        assert result.polls_ok == 0  # filled once the block has ended
    assert (result.polls_ok, result.polls_failed, result.failures) == (3, 1, ["refused"])
