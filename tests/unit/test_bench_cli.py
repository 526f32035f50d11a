"""The bench's command line: its options, the command RESULTS.md names, where
``--report-only`` writes, latest.json, and ``python -m bench``'s exit status. No builds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # plain `pytest` puts tests/unit first, not the checkout
    sys.path.insert(0, str(REPO))

from bench import __main__ as entry  # noqa: E402
from bench import cli  # noqa: E402
from bench.common import DEFAULT_PACKAGE, EXAMPLE_DESCRIPTION, TOOLS, BenchError  # noqa: E402
from bench.report import Conditions, Report, Sample  # noqa: E402


def test_the_defaults_run_everything_once_on_the_example() -> None:
    args = cli.parse_args([])
    assert (args.runs, args.tools, args.package) == (1, ",".join(TOOLS), DEFAULT_PACKAGE)
    assert (args.app, args.code_file, args.peer_cmd, args.report_only) == (
        None,
        None,
        None,
        False,
    )
    args = cli.parse_args(["--app", "../shop", "--peer-cmd", "gunicorn app:app", "--runs", "3"])
    assert (args.app, args.peer_cmd, args.runs) == (Path("../shop"), "gunicorn app:app", 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--runs", "0"], "--runs must be at least 1"),
        (["--tools", "layered,kaniko"], "unknown tool(s) kaniko; known: nox-warpdrive"),
    ],
)
def test_bad_options_stop_the_bench_before_any_build(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_the_command_line_is_the_one_the_user_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOX_CURRENT_SESSION", "bench")
    assert cli.command_line([]) == "nox -s bench"
    assert cli.command_line(["--runs", "3", "--peer-cmd", "a b"]) == (
        "nox -s bench -- --runs 3 --peer-cmd 'a b'"
    )
    monkeypatch.delenv("NOX_CURRENT_SESSION")
    assert cli.command_line([]) == "python bench/run.py"
    assert cli.command_line(["--runs", "3"]) == "python bench/run.py --runs 3"


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """bench/ and bench/results/ in a temporary checkout."""
    bench = tmp_path / "bench"
    monkeypatch.setattr(cli, "REPO", tmp_path)
    monkeypatch.setattr(cli, "BENCH_DIR", bench)
    monkeypatch.setattr(cli, "RESULTS_DIR", bench / "results")
    return bench / "results"


def save(app: str = EXAMPLE_DESCRIPTION, error: str | None = None) -> str:
    report = Report("d", "c", "2 CPUs, Linux", "r", 1, "p", 75.04, app, "x.py")
    samples = [Sample(1, "cold", "layered", 3.0, 10)]
    return cli.save_results(report, samples, error, ["layered"], Conditions([1.0], [0]))


def test_latest_json_says_whether_the_bench_completed(results: Path) -> None:
    tables = save(error="boom")
    data = json.loads((results / "latest.json").read_text())
    assert (data["complete"], data["error"], data["total_seconds"]) == (False, "boom", 75.0)
    assert data["tools"] == ["layered"] and data["reference"] == "buildkit-cache"
    assert data["medians"]["layered"]["cold"]["seconds"] == 3.0
    assert data["samples"][0]["log"] == "" and data["conditions"]["load1"] == [1.0]
    assert "| layered | 3.0 |" in tables


def test_report_only_writes_the_examples_results_in_bench(
    results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save()
    assert cli.main(["--report-only"]) == 0
    assert (results.parent / "RESULTS.md").read_text().startswith("# Build-time benchmark")
    assert not (results / "RESULTS.md").exists()
    assert capsys.readouterr().out == "wrote bench/RESULTS.md\n"


def test_report_only_keeps_the_measurement_history(results: Path) -> None:
    history = "<!-- history: by hand -->\n## Measurement history\n27.5 (0.62×)\n<!-- /history -->\n"
    results.mkdir(parents=True)
    (results.parent / "RESULTS.md").write_text("# old\n\n" + history)
    save()
    assert cli.main(["--report-only"]) == 0
    text = (results.parent / "RESULTS.md").read_text()
    assert text.startswith("# Build-time benchmark") and text.endswith("\n" + history)


def test_report_only_writes_another_apps_results_next_to_its_numbers(results: Path) -> None:
    save(app="a copy of `/shop`")
    assert cli.main(["--report-only"]) == 0
    assert "a copy of `/shop`" in (results / "RESULTS.md").read_text()
    assert not (results.parent / "RESULTS.md").exists()


def test_a_bench_error_is_one_line_and_exit_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(argv: object) -> int:
        raise BenchError("no docker")

    monkeypatch.setattr(entry, "main", fail)
    monkeypatch.setattr(entry.signal, "signal", lambda *args: None)
    assert entry.run([]) == 1
    assert capsys.readouterr().err == "bench: no docker\n"


@pytest.mark.parametrize("command", [["bench/run.py"], ["-m", "bench"]])
def test_both_entry_points_show_the_help(command: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, *command, "--help"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: nox -s bench -- ")
    assert cli.DESCRIPTION in proc.stdout


def test_generated_files_are_options_and_never_negative(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = cli.parse_args(["--files", "30000", "--assets-mb", "300"])
    assert (args.files, args.assets_mb) == (30000, 300)
    assert (cli.parse_args([]).files, cli.parse_args([]).assets_mb) == (0, 0)
    with pytest.raises(SystemExit):
        cli.parse_args(["--files", "-1"])
    assert "cannot be negative" in capsys.readouterr().err
