"""The bench's results: medians and ratios, the markdown tables, RESULTS.md, and
RESULTS.md again from a saved latest.json. No engine, no builds."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # plain `pytest` puts tests/unit first, not the checkout
    sys.path.insert(0, str(REPO))

from bench.common import EXAMPLE_DESCRIPTION, REFERENCE, WARPDRIVE  # noqa: E402
from bench.report import (  # noqa: E402
    BestPeer,
    Cell,
    Conditions,
    Report,
    Sample,
    best_peers,
    markdown_tables,
    median,
    report_from_json,
    results_markdown,
    seconds,
    summarize,
)


def sample(
    tool: str, scenario: str, secs: float, size: int = 100_000_000, **parts: float
) -> Sample:
    return Sample(1, scenario, tool, secs, size, dict(parts))


def test_median_of_nothing_is_nan_not_an_error() -> None:
    assert math.isnan(median([]))
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([1.0, 2.0]) == 1.5


def test_summarize_takes_medians_and_the_ratio_to_the_reference() -> None:
    samples = [
        sample(REFERENCE, "cold", 10.0),
        sample(REFERENCE, "cold", 30.0),
        sample(REFERENCE, "cold", 20.0),
        sample(WARPDRIVE, "cold", 5.0, 200_000_000, image=5.0, deps=3.0),
        sample(WARPDRIVE, "cold", 7.0, 100_000_000, image=7.0),
        sample(WARPDRIVE, "no-change", 1.0),
    ]
    table = summarize(samples)
    assert table[REFERENCE]["cold"] == Cell(20.0, 100_000_000, {}, 3, 1.0)
    cell = table[WARPDRIVE]["cold"]
    assert (cell.seconds, cell.size, cell.runs, cell.ratio) == (6.0, 150_000_000, 2, 0.3)
    # a part only over the samples that report it
    assert cell.parts == {"deps": 3.0, "image": 6.0}
    # no reference for this scenario: no ratio
    assert table[WARPDRIVE]["no-change"].ratio is None
    assert set(table) == {REFERENCE, WARPDRIVE}


def test_a_zero_second_reference_gives_no_ratio() -> None:
    table = summarize([sample(REFERENCE, "cold", 0.0), sample("layered", "cold", 1.0)])
    assert table["layered"]["cold"].ratio is None


def test_seconds_keep_two_decimals_below_one_second() -> None:
    assert (seconds(0.456), seconds(1.0), seconds(12.34)) == ("0.46", "1.0", "12.3")


def test_the_tables_show_every_tool_measured_in_a_fixed_order() -> None:
    samples = [
        sample(REFERENCE, "cold", 20.0, 900_000_000),
        sample(REFERENCE, "no-change", 0.5),
        sample(WARPDRIVE, "cold", 10.0, 300_000_000, image=10.0, wheelhouse=4.0, deps=5.0),
        sample("layered", "no-change", 0.25, 800_000_000),
    ]
    text = markdown_tables(summarize(samples))
    lines = text.splitlines()
    assert lines[0] == "| tool | cold | no change | code change | add package | image size |"
    assert lines[2] == "| **nox-warpdrive** | 10.0 (0.50×) | – | – | – | 300 MB |"
    # no cold build: the size of the first scenario measured
    assert lines[3] == "| layered | – | 0.25 (0.50×) | – | – | 800 MB |"
    assert lines[4] == "| buildkit-cache | 20.0 (1.00×) | 0.50 (1.00×) | – | – | 900 MB |"
    assert f"{WARPDRIVE}, split (seconds):" in lines
    assert lines[-1] == "| cold | 10.0 | 4.0 | 5.0 | – |"


def test_the_best_peer_is_the_fastest_peer_of_each_scenario() -> None:
    samples = [
        sample(REFERENCE, "cold", 20.0),
        sample("uv", "cold", 14.0),
        sample("layered", "cold", 30.0),
        sample(WARPDRIVE, "cold", 7.0),
        # nox-warpdrive faster than every peer is not the best *peer*
        sample(WARPDRIVE, "no-change", 0.1),
        sample("layered", "no-change", 0.4),
        sample("uv", "no-change", 0.4),
        # no nox-warpdrive here: a best peer, no ratio
        sample("multistage", "code-change", 2.0),
        sample("uv", "code-change", 1.0),
        # a peer that took no time gives no ratio
        sample("uv", "add-package", 0.0),
        sample(WARPDRIVE, "add-package", 1.0),
    ]
    assert best_peers(summarize(samples)) == {
        "cold": BestPeer("uv", 14.0, 0.5),
        # a tie goes to the first in PEERS
        "no-change": BestPeer("layered", 0.4, 0.25),
        "code-change": BestPeer("uv", 1.0, None),
        "add-package": BestPeer("uv", 0.0, None),
    }
    assert best_peers(summarize([sample(WARPDRIVE, "cold", 1.0)])) == {}


def test_the_tables_show_the_ratio_to_the_best_peer() -> None:
    samples = [
        sample(REFERENCE, "cold", 20.0),
        sample("uv", "cold", 12.5),
        sample(WARPDRIVE, "cold", 10.0),
        sample("uv", "no-change", 0.5),
    ]
    lines = markdown_tables(summarize(samples)).splitlines()
    at = lines.index(f"{WARPDRIVE} against the fastest peer of each scenario:")
    assert lines[at + 2 :][:4] == [
        "| scenario | fastest peer | its seconds | ratio |",
        "| --- | --- | ---: | ---: |",
        "| cold | uv | 12.5 | 0.80× |",
        "| no change | uv | 0.50 | – |",
    ]
    # the reference column stays as it was
    assert "| **nox-warpdrive** | 10.0 (0.50×) | – | – | – | 100 MB |" in lines
    assert "| uv | 12.5 (0.62×) | 0.50 | – | – | 100 MB |" in lines


def test_without_nox_warpdrive_there_is_no_split_table() -> None:
    text = markdown_tables(summarize([sample("layered", "cold", 3.0)]))
    assert "split" not in text
    assert text.splitlines()[-1] == "| layered | 3.0 | – | – | – | 100 MB |"


def test_conditions_describe_the_load_and_other_containers() -> None:
    assert Conditions().describe(2) == "not sampled"
    conditions = Conditions(load1=[0.5, 2.0, 1.0], foreign_containers=[0, 3, 0])
    text = conditions.describe(4)
    assert "median 1.0, max 2.0, on 4 CPUs" in text
    assert "at 1 of 3 build starts" in text


def test_results_markdown_names_the_command_the_app_and_the_reference() -> None:
    report = Report("2024-01-01 10:00 UTC", "nox -s bench", "2 CPUs", "abc", 3, "httpx", 600.0)
    text = results_markdown(report, "TABLES", "CONDITIONS")
    assert text.startswith("# Build-time benchmark\n")
    assert "- command: `nox -s bench`" in text
    assert "- runs: 3 per cell (medians shown); total wall time 10.0 min" in text
    assert "- conditions: CONDITIONS" in text
    assert f"The app is {EXAMPLE_DESCRIPTION}; `code change` edits `mysite/urls.py`" in text
    assert "`httpx` to requirements.txt" in text
    assert f"ratio to the `{REFERENCE}` peer" in text
    assert "\n\nTABLES\n\n" in text


def saved(tmp_path: Path, host: str) -> tuple[Path, Report, list[Sample], Conditions]:
    """A latest.json as main writes it."""
    report = Report("d", "c", host, "r", 1, "p", 61.0, "a copy of `/x`", "x.py")
    samples = [
        Sample(1, "cold", WARPDRIVE, 9.0, 10, {"image": 9.0}, ("note",), "log"),
        Sample(1, "cold", REFERENCE, 3.0, 20),
    ]
    conditions = Conditions([0.5], [0])
    data = {
        "complete": True,
        **asdict(report),
        "samples": [asdict(s) for s in samples],
        "conditions": asdict(conditions),
    }
    path = tmp_path / "latest.json"
    path.write_text(json.dumps(data))
    return path, report, samples, conditions


def test_report_from_json_gives_the_same_results_markdown(tmp_path: Path) -> None:
    path, report, samples, conditions = saved(tmp_path, "4 CPUs, Linux x86_64")
    expected = results_markdown(report, markdown_tables(summarize(samples)), conditions.describe(4))
    assert report_from_json(path) == expected


def test_report_from_json_reads_no_cpus_from_an_odd_host_line(tmp_path: Path) -> None:
    path, _, _, _ = saved(tmp_path, "a machine")
    assert "on 0 CPUs" in report_from_json(path)
