"""Progress lines of a long pull or push, from the engine's status items."""

from __future__ import annotations

from nox_warpdrive.engine.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pull_items(layer: str, size: int) -> list[dict[str, object]]:
    return [
        {"status": "Pulling fs layer", "id": layer},
        {
            "status": "Downloading",
            "id": layer,
            "progressDetail": {"current": size // 2, "total": size},
        },
        {"status": "Downloading", "id": layer, "progressDetail": {"current": size, "total": size}},
        {"status": "Download complete", "id": layer},
        {"status": "Extracting", "id": layer, "progressDetail": {"current": 1, "total": 2 * size}},
        {"status": "Pull complete", "id": layer},
    ]


def test_a_short_pull_says_nothing() -> None:
    lines: list[str] = []
    clock = Clock()
    p = Progress("pull", "r/app:latest", lines.append, clock=clock)
    for item in pull_items("a", 10_000_000):
        p.feed(item)
    assert lines == []


def test_a_long_pull_says_how_far_it_is_every_few_seconds() -> None:
    lines: list[str] = []
    clock = Clock()
    p = Progress("pull", "r/app:latest", lines.append, every=5, clock=clock)
    p.feed({"status": "Pulling from r/app", "id": "latest"})
    p.feed({"status": "Already exists", "id": "base"})
    p.feed({"status": "Pulling fs layer", "id": "b"})  # the engine names every layer first
    items = pull_items("a", 40_000_000) + pull_items("b", 60_000_000)
    for item in items:
        clock.now += 1.0
        p.feed(item)
    # 12 items a second apart: a line at 5 s and at 10 s, not more
    assert len(lines) == 2, lines
    assert lines[0].startswith("warpdrive: pulling r/app:latest: 1 of 3 layers, 40 of 40 MB")
    assert lines[0].endswith("(5 s)")
    assert "2 of 3 layers, 100 of 100 MB downloaded (10 s)" in lines[1]


def test_a_push_counts_what_is_sent_and_what_the_registry_had() -> None:
    lines: list[str] = []
    clock = Clock()
    p = Progress("push", "r/app:latest", lines.append, every=5, clock=clock)
    p.feed({"status": "Preparing", "id": "a"})
    p.feed({"status": "Preparing", "id": "b"})
    p.feed({"status": "Layer already exists", "id": "a"})
    p.feed(
        {
            "status": "Pushing",
            "id": "b",
            "progressDetail": {"current": 3_000_000, "total": 9_000_000},
        }
    )
    clock.now += 6
    p.feed(
        {
            "status": "Pushing",
            "id": "b",
            "progressDetail": {"current": 6_000_000, "total": 9_000_000},
        }
    )
    assert lines == ["warpdrive: pushing r/app:latest: 1 of 2 layers, 6 of 9 MB sent (6 s)"]


def test_no_output_no_lines() -> None:
    clock = Clock()
    p = Progress("pull", "r", None, every=0, clock=clock)
    p.feed({"status": "Pull complete", "id": "a"})  # nothing to write with: no error
