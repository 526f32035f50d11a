"""The early deps layer: the builder's WHEELS-READY announcement (parsed and hidden from
the user), ensure_deps against a fake engine (found, built, built on a parent) and
EarlyDeps, which builds the deps image in a thread while the wheelhouse still compiles."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any, cast

import pytest
from fake_engine import WAIT, FakeEngine
from unit_support import BASE, PKEY, tar_contents, write, write_wsgi_site

from nox_warpdrive.build import deps as deps_module
from nox_warpdrive.config import Config, load_config
from nox_warpdrive.engine import ImageInfo, RunResult
from nox_warpdrive.engine.dockerpy import _container_args
from nox_warpdrive.errors import BuildError, WarpdriveError
from nox_warpdrive.plan import VOLUME_DIR, Step
from nox_warpdrive.platform import PlatformKey
from nox_warpdrive.runtime.protocol import READY_PREFIX, SUMMARY_PREFIX
from nox_warpdrive.wheelhouse import build as wheelhouse_module
from nox_warpdrive.wheelhouse.build import _ready, build_wheelhouse
from nox_warpdrive.wheelhouse.wheels import Wheel

ENTRIES = [
    {
        "file": "asgiref-3.8.1-py3-none-any.whl",
        "name": "asgiref",
        "version": "3.8.1",
        "sha256": "a" * 64,
    },
    {
        "file": "django-5.0-py3-none-any.whl",
        "name": "django",
        "version": "5.0",
        "sha256": "b" * 64,
    },
    {
        "file": "gunicorn-22.0-py3-none-any.whl",
        "name": "gunicorn",
        "version": "22.0",
        "sha256": "c" * 64,
    },
]
#: the same wheels as the host reads them
RESOLVED = [w for w in map(Wheel.from_manifest, ENTRIES) if w is not None]
UV_TOOLS = {"uv": {"path": "tools/uv", "version": "0.4.1"}}
THREAD_NAME = "warpdrive-early-deps"


# ----------------------------------------------------------------------------- helpers


def wsgi_project(root: Path, installer: str | None = None) -> Config:
    write_wsgi_site(root)
    if installer is not None:
        write(
            root,
            "pyproject.toml",
            f'[project]\nname = "site"\n[tool.warpdrive]\ninstaller = "{installer}"\n',
        )
    return load_config(root)


def ready_line(payload: object) -> str:
    return READY_PREFIX + json.dumps(payload)


def plan_files(step: Step) -> dict[str, Any]:
    archives = [data for dest, data in step.files if dest == "/tmp"]
    assert len(archives) == 1
    plan = json.loads(tar_contents(archives[0])["warpdrive-build/plan.json"])
    assert isinstance(plan, dict)
    return plan


def deps_image(
    image_id: str, wheels: list[str], installer: str = "pip", depth: str = "0"
) -> ImageInfo:
    """An earlier deps image of the project "site", as find_parent looks for them."""
    return dataclasses.replace(
        BASE,
        id=image_id,
        labels={
            "io.warpdrive.kind": "deps",
            "io.warpdrive.deps-format": deps_module.DEPS_FORMAT,
            "io.warpdrive.deps-project": "site",
            "io.warpdrive.deps-base": BASE.id,
            "io.warpdrive.deps-installer": installer,
            "io.warpdrive.deps-wheels": json.dumps(wheels),
            "io.warpdrive.deps-depth": depth,
        },
    )


def ensure_deps(
    engine: FakeEngine,
    cfg: Config,
    out: list[str],
    resolved: list[Wheel] = RESOLVED,
    installer: deps_module.Installer | None = None,
) -> tuple[str, bool, float]:
    return deps_module.ensure_deps(
        engine,
        cfg,
        BASE,
        PKEY,
        resolved,
        installer or deps_module.Installer("pip"),
        out.append,
    )


def early_deps(engine: FakeEngine, cfg: Config) -> deps_module.EarlyDeps:
    return deps_module.EarlyDeps(engine, cfg, BASE, PKEY)


def existing_deps(cfg: Config, resolved: list[Wheel] = RESOLVED) -> FakeEngine:
    """An engine that already has the deps image for these wheels, under its ref."""
    plan = deps_module.plan_deps(cfg, BASE, PKEY, resolved)
    found = dataclasses.replace(
        BASE, id="sha256:existing", labels={"io.warpdrive.deps-key": plan.key}
    )
    return FakeEngine(base=BASE, images={plan.ref: found})


# ----------------------------------------------------------------------------- _ready


def test_ready_parses_resolved_wheels_and_tools() -> None:
    parsed = _ready(ready_line({"resolved": ENTRIES, "tools": UV_TOOLS}))
    assert parsed == (RESOLVED, UV_TOOLS)


def test_ready_accepts_surrounding_whitespace_and_extra_keys() -> None:
    extra = [{**ENTRIES[0], "size": 123}]
    line = READY_PREFIX + " " + json.dumps({"resolved": extra, "tools": {}, "x": 1}) + "\n"
    assert _ready(line) == ([dataclasses.replace(RESOLVED[0], size=123)], {})


@pytest.mark.parametrize("tools", [None, [], "uv", 3, ["uv"]])
def test_ready_tools_that_are_not_a_dict_become_empty(tools: object) -> None:
    parsed = _ready(ready_line({"resolved": ENTRIES, "tools": tools}))
    assert parsed == (RESOLVED, {})


def test_ready_without_tools_gives_empty_tools() -> None:
    assert _ready(ready_line({"resolved": ENTRIES})) == (RESOLVED, {})


@pytest.mark.parametrize(
    "line",
    [
        READY_PREFIX + "{not json",
        READY_PREFIX,
        READY_PREFIX + '{"resolved": [',
        ready_line([ENTRIES]),
        ready_line("resolved"),
        ready_line(None),
        ready_line(42),
    ],
    ids=["broken", "empty", "truncated", "list", "string", "null", "number"],
)
def test_ready_none_for_malformed_json_or_not_a_dict(line: str) -> None:
    assert _ready(line) is None


@pytest.mark.parametrize("key", ["file", "name", "version", "sha256"])
def test_ready_none_when_an_entry_lacks_a_key(key: str) -> None:
    broken = {k: v for k, v in ENTRIES[1].items() if k != key}
    assert _ready(ready_line({"resolved": [ENTRIES[0], broken], "tools": {}})) is None


@pytest.mark.parametrize("value", [None, 5, 1.5, True, ["x"], {"x": "y"}])
@pytest.mark.parametrize("key", ["file", "name", "version", "sha256"])
def test_ready_none_when_an_entry_has_a_non_str_value(key: str, value: object) -> None:
    broken = {**ENTRIES[1], key: value}
    assert _ready(ready_line({"resolved": [ENTRIES[0], broken], "tools": {}})) is None


@pytest.mark.parametrize(
    "resolved",
    [None, "x", {"file": "a"}, [ENTRIES[0], "django-5.0-py3-none-any.whl"], [None]],
    ids=["null", "string", "dict", "str-entry", "null-entry"],
)
def test_ready_none_when_resolved_is_not_a_list_of_dicts(resolved: object) -> None:
    assert _ready(ready_line({"resolved": resolved, "tools": {}})) is None


def test_ready_none_without_resolved() -> None:
    assert _ready(ready_line({"tools": UV_TOOLS})) is None


# ----------------------------------------------------------------------------- build_wheelhouse tee

SECRET = "s3cr3tT0ken"
INDEX_URL = f"https://deploy:{SECRET}@pypi.example.com/simple"
BUILDER = dataclasses.replace(BASE, id="sha256:builder")


class WheelhouseEngine(FakeEngine):
    """The shared fake engine, its steps printing ``lines``; ``events`` records the order
    of what happened (each line fed to the tee build_wheelhouse gives engine.run, and
    what the test's callbacks hear)."""

    def __init__(self, lines: list[str], events: list[str], exit_code: int = 0) -> None:
        super().__init__(output=lines, exit_code=exit_code, base=BUILDER)
        self.events = events

    def run(self, step: Step, out: Any, secrets_volume: str | None = None) -> RunResult:
        def fed(line: str) -> None:
            self.events.append(f"fed {line}")
            out(line)

        return super().run(step, fed, secrets_volume)


def run_wheelhouse(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lines: list[str],
    on_ready: bool = True,
    exit_code: int = 0,
) -> tuple[wheelhouse_module.WheelhouseResult, list[str], list[tuple[Any, ...]], list[str]]:
    """build_wheelhouse on a fake engine: (result, lines shown, callbacks, events)."""
    cfg = wsgi_project(tmp_path / "site")
    events: list[str] = []
    calls: list[tuple[Any, ...]] = []

    def probe(engine: object, ref: str, role: str, cfg: Config) -> tuple[ImageInfo, PlatformKey]:
        return BUILDER, PKEY

    monkeypatch.setattr(wheelhouse_module, "probe_image", probe)
    monkeypatch.setattr(wheelhouse_module, "read_manifest", lambda *a, **k: {})
    secrets = {"pip-env.json": json.dumps({"PIP_INDEX_URL": INDEX_URL}).encode()}
    monkeypatch.setattr(wheelhouse_module.buildenv, "build_secrets", lambda: secrets)
    engine = WheelhouseEngine(lines, events, exit_code)

    def heard(resolved: list[Wheel], tools: dict[str, Any]) -> None:
        events.append("ready")
        calls.append((resolved, tools))

    shown: list[str] = []
    result = build_wheelhouse(
        cfg, engine, shown.append, on_ready=heard if on_ready else None, announce=False
    )
    assert engine.ensured == [cfg.volume]
    assert engine.secrets == [(secrets, BUILDER.id)]
    assert [s.name for s in engine.steps] == ["wheelhouse"]
    assert engine.secrets_used == ["warpdrive-secrets-fake"]
    return result, shown, calls, events


SUMMARY = SUMMARY_PREFIX + json.dumps({"new": ["gunicorn-22.0-py3-none-any.whl"], "resolved": 3})


def test_the_manifest_comes_back_with_the_summary_and_is_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The builder prints the manifest it wrote: the image build installs from it without
    reading the volume a second and a third time (a container each, ~0.1 s)."""
    written = {"format": 1, "sets": {"d": {"resolved": ENTRIES}}, "tools": UV_TOOLS}
    line = SUMMARY_PREFIX + json.dumps({"new": [], "resolved": 3, "manifest": written})
    reads: list[str] = []
    monkeypatch.setattr(
        wheelhouse_module, "read_manifest", lambda *a, **k: reads.append("read") or {}
    )
    cfg = wsgi_project(tmp_path / "site")
    monkeypatch.setattr(wheelhouse_module, "probe_image", lambda *a, **k: (BUILDER, PKEY))
    monkeypatch.setattr(wheelhouse_module.buildenv, "build_secrets", lambda: {})
    engine = WheelhouseEngine([line], [])
    result = build_wheelhouse(cfg, engine, lambda _: None, manifest={})
    assert reads == []  # the caller's manifest was used: same image, same platform
    assert result.manifest == written
    build_wheelhouse(cfg, engine, lambda _: None)
    assert reads == ["read"]  # none given: read


def test_tee_hands_ready_lines_to_the_callback_and_hides_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ready_line({"resolved": ENTRIES[:2], "tools": UV_TOOLS})
    later = ready_line({"resolved": ENTRIES, "tools": "no"})
    lines = [
        "Collecting django",
        first,
        f"Looking in indexes: {INDEX_URL}",
        "Building wheel for somepkg (pyproject.toml)",
        later,
        SUMMARY,
    ]
    result, shown, calls, events = run_wheelhouse(tmp_path, monkeypatch, lines)
    assert calls == [(RESOLVED[:2], UV_TOOLS), (RESOLVED, {})]
    # heard at once, while the builder still runs, not after it
    assert events.index("ready") == events.index(f"fed {first}") + 1
    assert shown == [
        "Collecting django",
        "Looking in indexes: <redacted>",
        "Building wheel for somepkg (pyproject.toml)",
    ]
    assert not any(SECRET in s or "WHEELS-READY" in s or "SUMMARY" in s for s in shown)
    # the SUMMARY line is still read for the result
    assert (result.up_to_date, result.new, result.resolved) == (
        False,
        ("gunicorn-22.0-py3-none-any.whl",),
        3,
    )


def test_tee_hides_a_malformed_ready_line_and_does_not_call_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = {**ENTRIES[0], "sha256": None}
    lines = [
        READY_PREFIX + "{oops",
        ready_line({"resolved": [broken], "tools": {}}),
        "done",
        SUMMARY,
    ]
    _, shown, calls, _ = run_wheelhouse(tmp_path, monkeypatch, lines)
    assert calls == []
    assert shown == ["done"]


def test_tee_without_a_callback_still_hides_ready_and_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = ["one", ready_line({"resolved": ENTRIES, "tools": {}}), SUMMARY, "two"]
    result, shown, calls, _ = run_wheelhouse(tmp_path, monkeypatch, lines, on_ready=False)
    assert calls == []
    assert shown == ["one", "two"]
    assert result.resolved == 3


def test_tee_calls_back_before_a_failing_builder_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early deps thread may already run when the builder fails: build_image joins it
    in a ``finally``; here only that the callback was heard before the error."""
    cfg = wsgi_project(tmp_path / "site")
    heard: list[int] = []
    monkeypatch.setattr(wheelhouse_module, "probe_image", lambda *a: (BUILDER, PKEY))
    monkeypatch.setattr(wheelhouse_module, "read_manifest", lambda *a, **k: {})
    monkeypatch.setattr(wheelhouse_module.buildenv, "build_secrets", lambda: {})
    engine = WheelhouseEngine([ready_line({"resolved": ENTRIES[:1], "tools": {}})], [], exit_code=2)
    with pytest.raises(WarpdriveError, match="code 2"):
        build_wheelhouse(cfg, engine, lambda line: None, on_ready=lambda r, t: heard.append(len(r)))
    assert heard == [1]


# ----------------------------------------------------------------------------- ensure_deps


def test_ensure_deps_finds_the_image_by_its_key(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = existing_deps(cfg)
    out: list[str] = []
    assert ensure_deps(engine, cfg, out) == ("sha256:existing", True, 0.0)
    assert engine.steps == [] and engine.filters == []
    # tagged again under the same ref: its last use, for the deps images' bound
    assert [(i, r.split(":")[0]) for i, r in engine.tags] == [
        ("sha256:existing", f"warpdrive-deps/{cfg.name}")
    ]
    assert out == []


def test_ensure_deps_builds_when_the_ref_holds_another_key(tmp_path: Path) -> None:
    """The ref carries only 20 characters of the key: the label decides."""
    cfg = wsgi_project(tmp_path / "site")
    plan = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED)
    other = dataclasses.replace(BASE, id="sha256:other", labels={"io.warpdrive.deps-key": "x"})
    unlabelled = dataclasses.replace(BASE, id="sha256:unlabelled", labels={})
    for found in (other, unlabelled):
        engine = FakeEngine(base=BASE, images={plan.ref: found})
        image_id, reused, seconds = ensure_deps(engine, cfg, [])
        assert (image_id, reused, seconds) == ("sha256:built1", False, 7.5)
        assert engine.tags == [("sha256:built1", plan.ref)]


def test_ensure_deps_builds_and_tags_a_missing_image(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    # RESOLVED has no wheel sizes: the layer cannot be proven to fit in memory, so commit
    plan = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED, export=False)
    engine = FakeEngine(
        base=BASE, candidates=[deps_image("sha256:same", deps_module.wheel_ids(RESOLVED))]
    )
    out: list[str] = []
    assert ensure_deps(engine, cfg, out) == ("sha256:built1", False, 7.5)
    assert engine.steps == [plan.step]
    assert engine.steps[0].image == BASE.id
    assert engine.tags == [("sha256:built1", plan.ref)]
    assert not any("adding" in line for line in out)
    # tagged: the next call finds it and builds nothing
    assert ensure_deps(engine, cfg, out) == ("sha256:built1", True, 0.0)
    assert len(engine.steps) == 1


def test_ensure_deps_builds_on_a_parent_with_a_subset_of_the_wheels(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    full = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED)
    have = deps_module.wheel_ids(RESOLVED[:2])
    parent = deps_image("sha256:0123456789abcdef0000", have)
    smaller = deps_image("sha256:small", have[:1])
    engine = FakeEngine(base=BASE, candidates=[smaller, parent])
    out: list[str] = []
    assert ensure_deps(engine, cfg, out) == ("sha256:built1", False, 7.5)
    (step,) = engine.steps
    assert step.image == "sha256:0123456789abcdef0000"
    plan = plan_files(step)
    assert plan["files"] == [RESOLVED[2].filename]
    assert plan["incremental"] is True
    assert step.commit is not None
    assert step.commit.labels["io.warpdrive.deps-key"] == full.key
    assert step.commit.labels["io.warpdrive.deps-depth"] == "1"
    assert engine.tags == [("sha256:built1", full.ref)]
    assert out == ["warpdrive: adding 1 wheels on top of the deps layer 0123456789ab"]
    assert engine.filters == [
        {
            "io.warpdrive.kind": "deps",
            "io.warpdrive.deps-format": deps_module.DEPS_FORMAT,
            "io.warpdrive.deps-project": "site",
            "io.warpdrive.deps-base": BASE.id,
        }
    ]


def test_ensure_deps_parent_must_have_the_same_installer(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    uv = deps_module.Installer("uv", f"{VOLUME_DIR}/{PKEY.slug}/tools/uv", "0.4.1")
    have = deps_module.wheel_ids(RESOLVED[:2])
    engine = FakeEngine(
        candidates=[
            deps_image("sha256:pip", have, installer="pip"),
            deps_image("sha256:olduv", have, installer="uv0.3.0"),
            deps_image("sha256:uv", have[:1], installer="uv0.4.1"),
        ]
    )
    out: list[str] = []
    ensure_deps(engine, cfg, out, installer=uv)
    (step,) = engine.steps
    assert step.image == "sha256:uv"
    assert plan_files(step)["files"] == [RESOLVED[1].filename, RESOLVED[2].filename]
    assert out == ["warpdrive: adding 2 wheels on top of the deps layer uv"]


# ----------------------------------------------------------------------------- EarlyDeps


def test_early_deps_builds_in_its_own_thread(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    gate = threading.Event()
    engine = FakeEngine(base=BASE, gate=gate)
    early = early_deps(engine, cfg)
    early.start(RESOLVED, {})
    try:
        # start returned while the step still runs: it runs in the other thread
        assert engine.entered.wait(WAIT)
        assert early.thread is not None and early.thread.is_alive()
        assert early.thread.name == THREAD_NAME
    finally:
        gate.set()
    out: list[str] = []
    seconds = early.join(out.append)
    assert engine.threads == [THREAD_NAME]
    assert early.thread is not None and not early.thread.is_alive()
    assert seconds is not None and seconds == early.seconds and seconds >= 0
    assert engine.tags == [("sha256:built1", deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED).ref)]
    # the sdists the wheelhouse still compiles come first on the CPUs
    assert [s.cpu_shares for s in engine.steps] == [deps_module.BACKGROUND_SHARES]


def test_only_the_early_deps_step_has_a_lower_cpu_weight(tmp_path: Path) -> None:
    """The deps step after the wheelhouse (nothing else runs then) keeps the engine's
    default weight, and docker-py is given the weight only when a step has one."""
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine(base=BASE)
    ensure_deps(engine, cfg, [])
    (step,) = engine.steps
    assert step.cpu_shares is None
    assert "cpu_shares" not in _container_args(step, None)
    weighted = dataclasses.replace(step, cpu_shares=deps_module.BACKGROUND_SHARES)
    assert _container_args(weighted, None)["cpu_shares"] == 256


def test_early_deps_starts_once(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    gate = threading.Event()
    engine = FakeEngine(base=BASE, gate=gate)
    early = early_deps(engine, cfg)
    early.start(RESOLVED[:2], {})
    try:
        assert engine.entered.wait(WAIT)
        thread = early.thread
        early.start(RESOLVED, UV_TOOLS)  # a second announcement: ignored
        assert early.thread is thread
        assert early.count == 2
        assert [t.name for t in threading.enumerate()].count(THREAD_NAME) == 1
    finally:
        gate.set()
    out: list[str] = []
    assert early.join(out.append) is not None
    assert engine.threads == [THREAD_NAME]
    (step,) = engine.steps
    assert plan_files(step)["files"] == [w.filename for w in RESOLVED[:2]]
    assert plan_files(step)["installer"] == "pip"
    assert "first 2 wheels" in out[0]


def test_early_deps_ignores_an_empty_announcement(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine(base=BASE)
    early = early_deps(engine, cfg)
    early.start([], UV_TOOLS)
    assert early.thread is None
    out: list[str] = []
    assert early.join(out.append) is None
    assert out == [] and engine.steps == []
    # nothing was started: a later, real announcement still starts it
    early.start(RESOLVED[:1], {})
    assert early.join(out.append) is not None
    assert len(engine.steps) == 1


def test_early_deps_does_not_start_when_uv_is_required_but_missing(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site", installer="uv")
    assert cfg.installer == "uv"
    engine = FakeEngine(base=BASE)
    early = early_deps(engine, cfg)
    early.start(RESOLVED, {})  # choose_installer raises ConfigError: swallowed
    early.start(RESOLVED, {"uv": {"version": "0.4.1"}})  # no path: no uv either
    assert early.thread is None
    out: list[str] = []
    assert early.join(out.append) is None
    assert out == [] and engine.steps == [] and engine.filters == []


def test_early_deps_uses_uv_from_the_announced_tools(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site", installer="uv")
    engine = FakeEngine(base=BASE)
    early = early_deps(engine, cfg)
    early.start(RESOLVED, UV_TOOLS)
    assert early.join(lambda line: None) is not None
    (step,) = engine.steps
    plan = plan_files(step)
    assert (plan["installer"], plan["uv"]) == ("uv", f"{VOLUME_DIR}/{PKEY.slug}/tools/uv")
    assert step.commit is not None
    assert step.commit.labels["io.warpdrive.deps-installer"] == "uv0.4.1"


def test_early_deps_join_without_start() -> None:
    early = deps_module.EarlyDeps(FakeEngine(base=BASE), cast(Config, None), BASE, PKEY)
    out: list[str] = []
    assert early.join(out.append) is None
    assert out == []


def test_early_deps_join_reports_the_install_time(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    output = (
        "warpdrive: installing 3 wheels",
        "warpdrive: virtualenv ready in 1.0 s",  # an earlier line: the last one counts
        "warpdrive: virtualenv ready in 7.2 s",
        "warpdrive: committed",
    )
    engine = FakeEngine(base=BASE, output=output)
    early = early_deps(engine, cfg)
    early.start(RESOLVED, {})
    out: list[str] = []
    seconds = early.join(out.append)
    assert seconds is not None and seconds == early.seconds
    # the step's own output is collected, not shown
    assert early.lines == list(output)
    assert len(out) == 1
    line = out[0]
    assert line.startswith("warpdrive: deps layer for the first 3 wheels")
    assert "built while the wheelhouse finished" in line
    assert "installed in 7.2 s" in line
    assert line.endswith(f"{seconds:.1f} s in all)")


def test_early_deps_join_without_an_install_time(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine(base=BASE, output=("warpdrive: something else",))
    early = early_deps(engine, cfg)
    early.start(RESOLVED, {})
    out: list[str] = []
    assert early.join(out.append) is not None
    assert len(out) == 1
    assert "built while the wheelhouse finished" in out[0]
    assert "installed in" not in out[0]


@pytest.mark.parametrize(
    "error",
    [
        BuildError("the deps step exited with code 1; its last lines:\nboom", fix="read it"),
        WarpdriveError("the engine went away"),
    ],
    ids=["build-error", "warpdrive-error"],
)
def test_early_deps_join_reports_a_failure(tmp_path: Path, error: WarpdriveError) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine(
        base=BASE, output=("warpdrive: virtualenv ready in 7.2 s",), failures=[error]
    )
    early = early_deps(engine, cfg)
    early.start(RESOLVED, {})
    out: list[str] = []
    assert early.join(out.append) is None
    first = error.message.splitlines()[0]
    assert out == [
        f"warpdrive: installing the first 3 wheels early failed ({first}); "
        "trying again after the wheelhouse"
    ]
    assert engine.threads == [THREAD_NAME]
    assert engine.tags == []


def test_early_deps_join_none_when_the_image_already_existed(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = existing_deps(cfg)
    early = early_deps(engine, cfg)
    early.start(RESOLVED, {})
    out: list[str] = []
    assert early.join(out.append) is None
    assert out == []
    assert early.error is None and early.thread is not None
    # only tagged again under its own ref (its last use)
    assert engine.steps == [] and {r for _, r in engine.tags} == {
        deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED).ref
    }


def test_early_image_is_the_parent_of_the_full_deps_layer(tmp_path: Path) -> None:
    """The point of it all: after the early image for the downloaded wheels, the full deps
    layer installs only the compiled rest on top of it."""
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine(base=BASE)
    early = early_deps(engine, cfg)
    early.start(RESOLVED[:2], {})
    assert early.join(lambda line: None) is not None
    (early_step,) = engine.steps
    assert early_step.commit is not None
    engine.candidates = [
        dataclasses.replace(BASE, id="sha256:built1", labels=dict(early_step.commit.labels))
    ]
    out: list[str] = []
    assert ensure_deps(engine, cfg, out) == ("sha256:built2", False, 7.5)
    assert engine.steps[1].image == "sha256:built1"
    assert plan_files(engine.steps[1])["files"] == [RESOLVED[2].filename]
    assert out == ["warpdrive: adding 1 wheels on top of the deps layer built1"]


def test_a_cancelled_early_deps_step_is_stopped_and_not_reported(tmp_path: Path) -> None:
    """The build ends (the wheelhouse failed, a signal): the early step's container is
    removed at once, and its "killed" is not reported as a failure of its own."""
    cfg = wsgi_project(tmp_path / "site")
    gate = threading.Event()
    killed = BuildError("the deps step was killed (out of memory, or stopped)")
    engine = FakeEngine(base=BASE, gate=gate, failures=[killed])
    early = early_deps(engine, cfg)
    early.start(RESOLVED, {})
    assert engine.entered.wait(WAIT)
    early.cancel()
    out: list[str] = []
    assert early.join(out.append) is None
    assert engine.aborted == 1 and out == []


# ----------------------------------------------------------------------------- names


def test_deps_images_are_named_by_the_image_repository(tmp_path: Path) -> None:
    """Two projects both called "app" that build different images never share deps
    image names (nor the label their parents are found by)."""
    one = dataclasses.replace(wsgi_project(tmp_path / "site"), image="shop/app:latest")
    two = dataclasses.replace(one, image="localhost:5000/blog/app:dev")
    assert deps_module.deps_name(one) == "shop/app"
    assert deps_module.deps_name(two) == "localhost-5000/blog/app"
    plan = deps_module.plan_deps(one, BASE, PKEY, RESOLVED)
    assert plan.ref == f"warpdrive-deps/shop/app:{plan.key[:20]}"
    labels = dict(plan.step.commit.labels) if plan.step.commit else {}
    assert labels["io.warpdrive.deps-project"] == "shop/app"
    assert deps_module.plan_deps(two, BASE, PKEY, RESOLVED).ref.startswith(
        "warpdrive-deps/localhost-5000/blog/app:"
    )


def test_a_deps_image_from_before_per_app_names_is_found_and_tagged(tmp_path: Path) -> None:
    cfg = dataclasses.replace(wsgi_project(tmp_path / "site"), image="shop/site:latest")
    plan = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED)
    old = dataclasses.replace(BASE, id="sha256:old", labels={"io.warpdrive.deps-key": plan.key})
    engine = FakeEngine(base=BASE, images={f"warpdrive-deps/site:{plan.key[:20]}": old})
    assert ensure_deps(engine, cfg, []) == ("sha256:old", True, 0.0)
    assert engine.tags == [("sha256:old", plan.ref)] and engine.steps == []


# ------------------------------------------------------------- the late wheels' layer


def test_the_late_wheels_layer_is_made_beside_the_early_image_and_put_on_it(
    tmp_path: Path,
) -> None:
    """The wheelhouse is done while the early image still installs: the layer of the
    wheels it lacks is made now (a plan_grow step: its own virtualenv on the base, in
    the calling thread), and put on the early image once that is there."""
    cfg = wsgi_project(tmp_path / "site")
    gate = threading.Event()
    engine = FakeEngine(base=BASE, gate=gate)
    engine.exported = b"the late layer"
    early = early_deps(engine, cfg)
    early.start(RESOLVED[:2], {})
    assert engine.entered.wait(WAIT)
    opener = threading.Timer(0.2, gate.set)  # both steps wait for it
    opener.start()
    early.add_late(RESOLVED, lambda line: None)
    out: list[str] = []
    assert early.join(out.append) is not None
    opener.join()
    early_step, late_step = sorted(engine.steps, key=lambda s: s.commit is None)
    assert plan_files(early_step)["files"] == [w.filename for w in RESOLVED[:2]]
    assert plan_files(late_step)["files"] == [RESOLVED[2].filename]
    assert plan_files(late_step)["grow"] and late_step.image == BASE.id
    full = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED)
    ((parent, spec, _),) = engine.appended
    assert parent == early.image_id and parent.startswith("sha256:built")  # the early image
    assert spec.labels["io.warpdrive.deps-key"] == full.key
    assert engine.appended_data[0][0] == b"the late layer"
    assert ("sha256:appended1", full.ref) in engine.tags
    assert "1 wheels the builder made added as a layer of their own" in out[0]
    assert early.late_dir is not None and not Path(early.late_dir).exists()


def test_no_late_layer_once_the_early_image_is_done_or_when_its_step_fails(
    tmp_path: Path,
) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine(base=BASE)
    early = early_deps(engine, cfg)
    early.start(RESOLVED[:2], {})
    assert early.thread is not None
    early.thread.join()
    early.add_late(RESOLVED, lambda line: None)  # done already: the regular path grows it
    assert early.join(lambda line: None) is not None
    assert len(engine.steps) == 1 and engine.appended == []

    class LateFails(FakeEngine):
        def run_export(
            self,
            step: Step,
            out: Any,
            into: Path,
            name: str | None = None,
            then: Any = None,
        ) -> RunResult:
            raise BuildError("the late step failed")

    gate = threading.Event()
    engine = LateFails(base=BASE, gate=gate)
    early = early_deps(engine, cfg)
    early.start(RESOLVED[:2], {})
    assert engine.entered.wait(WAIT)
    early.add_late(RESOLVED, lambda line: None)  # its failure is not the build's
    gate.set()
    out: list[str] = []
    assert early.join(out.append) is not None
    assert engine.appended == [] and not any("layer of their own" in line for line in out)
    assert early.late is None
