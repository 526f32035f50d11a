"""The fresh-runner bench's pure parts: registry references, which images an emptied
engine keeps, the pipelines' commands, the tables and the RESULTS.md section. The bench
itself (engines, registry) is not run here."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # plain `pytest` puts tests/unit first, not the checkout
    sys.path.insert(0, str(REPO))

from bench.apps import make_app  # noqa: E402
from bench.cli import parse_args  # noqa: E402
from bench.common import REFERENCE, WARPDRIVE, BenchError  # noqa: E402
from bench.dockercli import Docker  # noqa: E402
from bench.fresh import FreshPeer, FreshWarpdrive, pushed_size, refs, repositories  # noqa: E402
from bench.fresh_report import (  # noqa: E402
    BEGIN,
    END,
    FIRST,
    HISTORY_BEGIN,
    HISTORY_END,
    fresh_section,
    fresh_tables,
    history_section,
    kept_sections,
    replace_section,
    verdict,
)
from bench.registry import split_ref  # noqa: E402
from bench.report import Sample  # noqa: E402
from bench.runner import BENCH_HOST, empty_engine, removable  # noqa: E402


def test_references_name_the_registry_repository_and_tag() -> None:
    assert split_ref("127.0.0.1:5000/bench-fresh/ab/warpdrive:latest") == (
        "127.0.0.1:5000",
        "bench-fresh/ab/warpdrive",
        "latest",
    )
    assert split_ref("127.0.0.1:5000/bench-fresh/ab/wh") == (
        "127.0.0.1:5000",
        "bench-fresh/ab/wh",
        "",
    )
    with pytest.raises(BenchError, match="does not name a registry"):
        split_ref("bench/warpdrive:latest")


def test_the_bench_pushes_under_its_own_prefix_and_nonce() -> None:
    references = refs("127.0.0.1:5000", "n1")
    assert all(r.startswith("127.0.0.1:5000/bench-fresh/n1/") for r in references.values())
    assert repositories(references) == [
        "bench-fresh/n1/buildkit-cache",
        "bench-fresh/n1/warpdrive",
        "bench-fresh/n1/warpdrive-wheelhouse",
    ]


def test_an_emptied_engine_keeps_the_base_images_only() -> None:
    assert removable(["a", "base", "b", "a", "", "builder"], ["base", "builder"]) == ["a", "b"]


def test_only_the_bench_engine_is_ever_emptied() -> None:
    for host in ("", "tcp://127.0.0.1:23750", "unix:///var/run/docker.sock"):
        with pytest.raises(BenchError, match="refusing to empty"):
            empty_engine(Docker("/usr/bin/docker", host))
    assert BENCH_HOST == "tcp://127.0.0.1:23760"


def test_the_pipelines_are_the_readme_recipes(tmp_path: Path) -> None:
    app = make_app(None, None, None)
    docker = Docker("/usr/bin/docker", BENCH_HOST)
    ours = FreshWarpdrive(docker, tmp_path, app, "r/bench-fresh/x/warpdrive:latest", "r/wh")
    ((_, image),) = ours.commands()  # one command: the wheelhouse travels with the image
    assert image[-5:] == [
        "image",
        "--",
        "--cache-from",
        "r/bench-fresh/x/warpdrive:latest",
        "--push-only",
    ]
    assert ours.env()["DOCKER_HOST"] == BENCH_HOST
    ours.reset(0)
    pyproject = (ours.app / "pyproject.toml").read_text()
    assert 'image = "r/bench-fresh/x/warpdrive:latest"' in pyproject
    assert 'network = "host"' in pyproject
    assert 'wheelhouse-image = "r/wh"' in pyproject

    ca = tmp_path / "ca.pem"
    ca.write_text("")
    peer = FreshPeer(docker, tmp_path, app, ca, "n1", "r/bench-fresh/x/buildkit-cache:latest")
    peer.reset(0)
    cmd = peer.build_command()
    assert cmd[:2] == ["/usr/bin/docker", "build"]
    pairs = list(itertools.pairwise(cmd))
    for pair in (
        ("--cache-from", "r/bench-fresh/x/buildkit-cache:latest"),
        ("--tag", "r/bench-fresh/x/buildkit-cache:latest"),
        ("--build-arg", "BUILDKIT_INLINE_CACHE=1"),
        ("--network", "host"),
    ):
        assert pair in pairs, pair
    assert "--no-cache" not in cmd
    assert cmd[-1] == str(peer.app)
    assert "id=warpdrive-bench-fresh-n1" in peer.dockerfile.read_text()


def sample(scenario: str, tool: str, secs: float, run: int = 1, **parts: float) -> Sample:
    return Sample(run, scenario, tool, secs, 1, dict(parts))


def test_tables_show_medians_ratios_and_whether_each_target_is_met() -> None:
    samples = [
        sample(FIRST, WARPDRIVE, 40.0, 0, image=40.0),
        sample(FIRST, REFERENCE, 80.0, 0, build=70.0, push=10.0),
        *(sample("no-change", WARPDRIVE, s, r) for r, s in enumerate((9.0, 5.0, 6.0))),
        *(sample("no-change", REFERENCE, s, r) for r, s in enumerate((5.0, 5.5, 4.0))),
        sample("code-change", WARPDRIVE, 4.0),
        sample("code-change", REFERENCE, 10.0),
        sample("add-package", WARPDRIVE, 10.0),
        sample("add-package", REFERENCE, 50.0),
    ]
    lines = fresh_tables(samples).splitlines()
    assert lines[2].startswith("| first pipeline | 40.0 | 80.0 | 0.50× | – | – |")
    assert lines[3] == "| nothing changed | 6.0 | 5.0 | 1.20× | ≤ 1.0× | **no** |"
    assert lines[4] == "| code change | 4.0 | 10.0 | 0.40× | ≤ 0.5× | yes |"
    assert lines[5] == "| one package added | 10.0 | 50.0 | 0.20× | ≤ 0.2× | yes |"
    split = [line for line in lines if line.startswith("| first pipeline")][1]
    assert split == "| first pipeline | 40.0 | 70.0 | 10.0 |"
    assert verdict("no-change", None) == "–"


def test_the_fresh_section_is_replaced_and_kept_by_the_main_bench() -> None:
    section = f"{BEGIN}\n## Fresh CI runner\nnew\n{END}\n"
    assert replace_section("", section) == section
    main = "# Build-time benchmark\n\ntable\n"
    once = replace_section(main, section)
    assert once == main + "\n" + section
    again = replace_section(once, section.replace("new", "newer"))
    assert again == main + "\n" + section.replace("new", "newer")
    assert fresh_section(again) == section.replace("new", "newer")
    assert fresh_section(main) == ""


def test_the_history_is_kept_by_both_benches_as_written() -> None:
    """The measurement history moved from the README is written by hand: the fresh-runner
    bench writes its section before it (or in its place) and the main bench keeps both."""
    history = f"{HISTORY_BEGIN}moved -->\n## Measurement history\n0.37 (3.08×)\n{HISTORY_END}\n"
    section = f"{BEGIN}\n## Fresh CI runner\nnew\n{END}\n"
    main = "# Build-time benchmark\n\ntable\n"
    first = replace_section(main + "\n" + history, section)
    assert first == main + "\n" + section + "\n" + history
    again = replace_section(first, section.replace("new", "newer"))
    assert history_section(again) == history
    assert kept_sections(again) == section.replace("new", "newer") + "\n" + history
    assert kept_sections(main + "\n" + history) == history
    assert kept_sections(main) == "" and history_section(main) == ""


def test_fresh_runner_takes_no_tools_or_report_only() -> None:
    assert parse_args(["--fresh-runner", "--runs", "3"]).fresh_runner
    for extra in (["--tools", "nox-warpdrive"], ["--report-only"]):
        with pytest.raises(SystemExit):
            parse_args(["--fresh-runner", *extra])


def test_a_stamped_log_says_when_each_line_came(tmp_path: Path) -> None:
    from bench.tools import timed

    log = tmp_path / "log"
    cmd = [sys.executable, "-c", "print('one'); print('two')"]
    step = timed(cmd, cwd=tmp_path, env={}, log=log, stamp=True)
    assert step.output == "one\ntwo\n"
    lines = log.read_text().splitlines()
    assert lines[0].startswith("$ ")
    assert [line.split("] ", 1)[1] for line in lines[1:3]] == ["one", "two"]
    assert all(line.startswith("[") and "s] " in line for line in lines[1:3])
    assert lines[3].startswith("# exit 0 after ")


def test_an_image_built_in_the_registry_is_pulled_for_its_size() -> None:
    """--push-only leaves nothing on the engine: the size is read after a pull, untimed."""
    calls: list[tuple[str, ...]] = []

    class Engine:
        here = False

        def image_id(self, ref: str) -> str | None:
            return "sha256:x" if self.here else None

        def run(self, *args: str, check: bool = True) -> None:
            calls.append(args)
            self.here = True

        def image_size(self, ref: str) -> int:
            return 42 if self.here else 0

    engine = Engine()
    assert pushed_size(engine, "r/app:latest") == 42  # type: ignore[arg-type]
    assert calls == [("pull", "r/app:latest")]
    assert pushed_size(engine, "r/app:latest") == 42  # type: ignore[arg-type]
    assert len(calls) == 1  # there already: no pull
