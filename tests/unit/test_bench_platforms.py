"""The pure parts of ``nox -s bench -- --platforms``: its options, the app variant, the
FROM rewrite of the emulated peers, the medians with timeouts, the ratios and targets,
the tables and the RESULTS.md section."""

from __future__ import annotations

import math

import pytest

from bench.cli import parse_args
from bench.common import RUN_ID
from bench.fresh_report import kept_sections
from bench.platforms import EmulatedPeer, foreign_image, rewrite_from
from bench.platforms_report import (
    BEGIN,
    END,
    PlatformSample,
    Ratio,
    Value,
    binary_requirements,
    parse_platform_list,
    platforms_section,
    ratio_table,
    ratios,
    replace_section,
    section,
    step_parts,
    summarize,
    time_table,
)

AMD, ARM = "linux/amd64", "linux/arm64"


def sample(tool: str, scenario: str, platforms: tuple[str, ...], seconds: float, **kw: object):
    return PlatformSample(kw.pop("variant", "binary"), tool, scenario, platforms, seconds, **kw)  # type: ignore[arg-type]


# -------------------------------------------------------------------------- options


def test_platforms_option_defaults_to_the_three_tools_and_both_variants() -> None:
    args = parse_args(["--platforms", "linux/amd64,linux/aarch64"])
    assert args.platforms == (AMD, ARM)
    assert args.variants == ("as-is", "binary")
    assert args.tools == "nox-warpdrive,buildkit-cache,uv"
    assert args.timeout == 2400
    assert args.runs == 1


def test_platforms_options_are_read() -> None:
    args = parse_args(
        [
            "--platforms",
            "linux/amd64,linux/arm64",
            "--variants",
            "binary",
            "--tools",
            "nox-warpdrive,uv",
            "--timeout",
            "600",
        ]
    )
    assert args.variants == ("binary",)
    assert args.tools == "nox-warpdrive,uv"
    assert args.timeout == 600


@pytest.mark.parametrize(
    "argv",
    [
        ["--platforms", "linux/amd64"],
        ["--platforms", "linux/amd64,linux/amd64"],
        ["--platforms", "amd64,arm64"],
        ["--platforms", "linux/amd64,linux/arm64", "--variants", "wheels"],
        ["--platforms", "linux/amd64,linux/arm64", "--tools", "layered"],
        ["--platforms", "linux/amd64,linux/arm64", "--timeout", "0"],
        ["--platforms", "linux/amd64,linux/arm64", "--watch"],
        ["--platforms", "linux/amd64,linux/arm64", "--fresh-runner"],
    ],
)
def test_bad_platforms_options_stop_the_bench(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_platform_list_takes_variants_and_aliases_in_order() -> None:
    assert parse_platform_list(" linux/arm64, linux/x86_64 ,linux/arm/v7") == (
        ARM,
        AMD,
        "linux/arm/v7",
    )
    with pytest.raises(ValueError, match="not a platform"):
        parse_platform_list("linux/amd64,linux")


# -------------------------------------------------------------------------- the app and peers


def test_binary_variant_swaps_psycopg2_only() -> None:
    text = "# run r1\nDjango>=5.2\npsycopg2==2.9.13\npsycopg2-pool\ngunicorn\n"
    assert binary_requirements(text) == (
        "# run r1\nDjango>=5.2\npsycopg2-binary==2.9.13\npsycopg2-pool\ngunicorn\n"
    )
    assert binary_requirements("psycopg2\n") == "psycopg2-binary\n"
    with pytest.raises(ValueError):
        binary_requirements("psycopg2-binary==2.9\nDjango\n")


def test_rewrite_from_names_the_other_cpus_images_only() -> None:
    images = {
        "warpdrive/python-builder:3.11-bookworm": "warpdrive/python-builder:3.11-bookworm-arm64"
    }
    text = (
        "FROM warpdrive/python-builder:3.11-bookworm AS builder\n"
        "RUN echo FROM warpdrive/python-builder:3.11-bookworm\n"
        "FROM --platform=$TARGETPLATFORM warpdrive/python-builder:3.11-bookworm\n"
        "FROM builder\n"
    )
    assert rewrite_from(text, images) == (
        "FROM warpdrive/python-builder:3.11-bookworm-arm64 AS builder\n"
        "RUN echo FROM warpdrive/python-builder:3.11-bookworm\n"
        "FROM --platform=$TARGETPLATFORM warpdrive/python-builder:3.11-bookworm-arm64\n"
        "FROM builder\n"
    )
    assert (
        foreign_image("warpdrive/python:3.11-bookworm", ARM)
        == "warpdrive/python:3.11-bookworm-arm64"
    )


def test_emulated_peer_builds_for_its_platform_from_local_images(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bench.apps import make_app
    from bench.dockercli import Docker

    peer = EmulatedPeer(
        "uv", Docker("docker"), tmp_path, make_app(None, None, None), tmp_path / "ca", "n1", ARM
    )
    peer.root.mkdir(parents=True)
    peer.render("cid-1")
    text = peer.dockerfile.read_text()
    assert "FROM warpdrive/python-builder:3.11-bookworm-arm64 AS builder" in text
    assert "FROM warpdrive/python:3.11-bookworm-arm64\n" in text
    assert "id=cid-1" in text
    cmd = peer.build_command()
    assert cmd[1:4] == ["build", "--platform", ARM]
    assert peer.tag == f"bench-peer-uv-linux-arm64-{RUN_ID}:latest"


# -------------------------------------------------------------------------- numbers


def test_step_parts_split_the_output_per_platform() -> None:
    output = (
        "nox > Running session image\n"
        "warpdrive: == linux/amd64\n"
        "warpdrive: image bench-warpdrive:latest built: deps layer built, app layer built "
        "(wheelhouse 3.0 s, deps 1.5 s, app 0.2 s; 5.1 s)\n"
        "warpdrive: == linux/arm64 (its containers run under emulation)\n"
        "warpdrive: image bench-warpdrive:latest-linux-arm64 built: deps layer reused, app layer "
        "built (wheelhouse 27.8 s, early deps 11.3 s, app 0.3 s; 30.3 s)\n"
    )
    assert step_parts(output, AMD) == {
        "amd64 wheelhouse": 3.0,
        "amd64 deps": 1.5,
        "amd64 app": 0.2,
        "arm64 wheelhouse": 27.8,
        "arm64 early deps": 11.3,
        "arm64 app": 0.3,
    }
    one = "warpdrive: image x built: deps layer reused, app layer built (app 0.2 s; 0.3 s)\n"
    assert step_parts(one, AMD) == {"amd64 app": 0.2}


def test_summarize_keeps_timeouts_as_lower_bounds_and_failures() -> None:
    values = summarize(
        [
            sample("uv", "cold", (ARM,), 100.0),
            sample("uv", "cold", (ARM,), 600.0, timed_out=True, run=2),
            sample("uv", "cold", (ARM,), 300.0, run=3),
            sample("nox-warpdrive", "cold", (AMD,), 10.0),
            sample("buildkit-cache", "cold", (ARM,), 3.0, error="boom"),
        ]
    )
    assert values[("binary", "uv", "cold", (ARM,))] == Value(300.0, over=True)
    assert values[("binary", "nox-warpdrive", "cold", (AMD,))] == Value(10.0)
    assert values[("binary", "buildkit-cache", "cold", (ARM,))].failed
    assert str(Value(600.0, over=True)) == "> 600 s"
    assert str(Value(12.345)) == "12.3 s"
    assert str(Value()) == "–" and str(Value(failed=True)) == "failed"


def test_ratio_bounds_and_targets() -> None:
    n, d = ("v", "a", "cold", (ARM,)), ("v", "b", "cold", (ARM,))
    r = Ratio("x", n, d, 0.3)
    assert r.value({n: Value(20.0), d: Value(100.0)}) == "0.20"
    assert r.met({n: Value(20.0), d: Value(100.0)}) == "yes"
    assert r.met({n: Value(40.0), d: Value(100.0)}) == "no"
    # the peer ran into the timeout: the ratio is at most this
    assert r.value({n: Value(20.0), d: Value(100.0, over=True)}) == "< 0.20"
    assert r.met({n: Value(20.0), d: Value(100.0, over=True)}) == "yes"
    assert r.met({n: Value(50.0), d: Value(100.0, over=True)}) == "?"  # undecided
    assert r.value({n: Value(50.0, over=True), d: Value(100.0)}) == "> 0.50"
    assert r.met({n: Value(50.0, over=True), d: Value(100.0)}) == "no"
    assert r.value({n: Value(50.0, over=True), d: Value(100.0, over=True)}) == "?"
    assert r.value({n: Value(20.0)}) == "–"
    assert r.value({n: Value(20.0), d: Value(failed=True)}) == "–"
    assert Ratio("y", n, d).met({n: Value(1.0), d: Value(2.0)}) == ""


def test_ratios_carry_the_issues_targets() -> None:
    wheels = {r.title: r.target for r in ratios("binary", AMD, ARM)}
    assert wheels["arm64 cold / amd64 cold"] == 1.5
    assert wheels["arm64 cold / buildkit-cache arm64 cold (emulated)"] == 0.3
    assert wheels["arm64 cold / uv arm64 cold (emulated)"] == 0.3
    assert wheels["amd64+arm64 code change / amd64 code change"] == 1.3
    sdist = {r.title: r.target for r in ratios("as-is", AMD, ARM)}
    assert sdist["arm64 cold / amd64 cold"] is None
    assert sdist["arm64 cold / uv arm64 cold (emulated)"] == 1.0


def full_samples() -> list[PlatformSample]:
    wd = "nox-warpdrive"
    return [
        sample(wd, "cold", (AMD,), 20.0),
        sample(wd, "cold", (ARM,), 25.0, parts={"arm64 wheelhouse": 10.0}),
        sample(wd, "cold", (AMD, ARM), 40.0),
        sample(wd, "code-change", (AMD,), 1.0),
        sample(wd, "code-change", (ARM,), 1.1),
        sample(wd, "code-change", (AMD, ARM), 1.2),
        sample("buildkit-cache", "cold", (ARM,), 200.0),
        sample("buildkit-cache", "code-change", (ARM,), 30.0),
        sample("uv", "cold", (ARM,), 600.0, timed_out=True),
    ]


def test_tables_show_times_ratios_and_targets() -> None:
    values = summarize(full_samples())
    times = time_table(values, ["binary"], AMD, ARM)
    assert (
        "| app | build | nox-warpdrive amd64 | nox-warpdrive arm64 | nox-warpdrive amd64+arm64 |"
        in times
    )
    assert "| cold | 20.0 s | 25.0 s | 40.0 s | 200 s | > 600 s |" in times
    assert "| code change | 1.0 s | 1.1 s | 1.2 s | 30.0 s | – |" in times
    table = ratio_table(values, ["binary"], AMD, ARM)
    assert "| arm64 cold / amd64 cold | 1.25 | ≤ 1.5 | yes |" in table
    assert "| arm64 cold / buildkit-cache arm64 cold (emulated) | 0.12 | ≤ 0.3 | yes |" in table
    assert "| arm64 cold / uv arm64 cold (emulated) | < 0.04 | ≤ 0.3 | yes |" in table
    assert "| amd64+arm64 code change / amd64 code change | 1.20 | ≤ 1.3 | yes |" in table
    assert "| arm64 code change / uv arm64 code change (emulated) | – |  |  |" in table


def test_section_goes_into_results_md_before_the_history_and_is_kept() -> None:
    text = section(full_samples(), ["binary"], AMD, ARM, {"command": "`nox -s bench`"})
    assert text.startswith(BEGIN) and text.rstrip().endswith(END)
    assert "- command: `nox -s bench`" in text
    assert "binary" in text and "arm64 wheelhouse 10.0 s" in text
    results = "# Results\n\nmain tables\n\n<!-- history: x -->\n## History\n<!-- /history -->\n"
    once = replace_section(results, text)
    assert once.index(BEGIN) < once.index("<!-- history: ") and "main tables" in once
    again = replace_section(once, text.replace("`nox -s bench`", "`again`"))
    assert again.count(BEGIN) == 1 and "`again`" in again and "main tables" in again
    assert platforms_section(again).startswith(BEGIN)
    kept = kept_sections(again)
    assert kept.startswith(BEGIN) and "## History" in kept
    assert replace_section("# R\n", text).startswith("# R\n\n" + BEGIN)


def test_section_names_failed_builds() -> None:
    failed = [sample("uv", "cold", (ARM,), 3.0, error="`docker build` failed (exit 1)\ntail")]
    text = section(failed, ["binary"], AMD, ARM, {})
    assert "- failed: uv arm64 cold (binary): `docker build` failed (exit 1)" in text
    assert math.isnan(Value().seconds)


def test_report_only_writes_the_tables_again_from_the_saved_json(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import dataclasses
    import json

    import bench.platforms as platforms
    from bench.common import EXAMPLE_DESCRIPTION

    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n<!-- history: x -->\nold\n<!-- /history -->\n")
    saved = {
        "complete": True,
        "error": None,
        "native": AMD,
        "foreign": ARM,
        "variants": ["binary"],
        # a bench of the first version wrote its meta at the top level
        "command": "`nox -s bench -- --platforms linux/amd64,linux/arm64`",
        "app": EXAMPLE_DESCRIPTION,
        "samples": [dataclasses.asdict(s) for s in full_samples()],
    }
    (tmp_path / "platforms.json").write_text(json.dumps(saved))
    monkeypatch.setattr(platforms, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(platforms, "BENCH_DIR", tmp_path)
    assert platforms.report_only_platforms() == 0
    md = (tmp_path / "platforms.md").read_text()
    assert "| arm64 cold / amd64 cold | 1.25 | ≤ 1.5 | yes |" in md
    assert "- command: `nox -s bench -- --platforms linux/amd64,linux/arm64`" in md
    text = results.read_text()
    assert text.index(BEGIN) < text.index("<!-- history: ") and "old" in text
    again = json.loads((tmp_path / "platforms.json").read_text())
    assert again["meta"]["app"] == EXAMPLE_DESCRIPTION
    assert parse_args(["--platforms", "linux/amd64,linux/arm64", "--report-only"]).report_only


def test_section_says_the_load_at_the_build_starts() -> None:
    loaded = [
        sample("uv", "cold", (ARM,), 3.0, load=2.0),
        sample("uv", "code-change", (ARM,), 1.0, load=6.0),
        sample("nox-warpdrive", "cold", (AMD,), 1.0),
    ]
    text = section(loaded, ["binary"], AMD, ARM, {})
    assert "- conditions: load average (1 min) at the 2 build starts: median 4.0, max 6.0" in text
    assert "conditions" not in section(full_samples(), ["binary"], AMD, ARM, {})
