"""What a long pull or push is doing, from the engine's streamed status items: a line
every few seconds (bytes moved, layers done), so that a CI log never sits silent for the
tens of seconds a big image takes, and a short transfer says nothing at all."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

#: a line at most this often (seconds); none before the first period has passed
EVERY = 5.0

#: statuses that end a layer's transfer, by direction
_DONE = {
    "pull": ("Pull complete", "Already exists"),
    "push": ("Pushed", "Layer already exists", "Mounted from"),
}
#: statuses whose progressDetail counts the bytes moved (not those extracted)
_MOVING = {"pull": "Downloading", "push": "Pushing"}
#: statuses that name a layer of the transfer
_LAYER = {
    "pull": ("Pulling fs layer", "Waiting", "Already exists"),
    "push": ("Preparing", "Waiting", "Layer already exists"),
}


class Progress:
    """Feed it every status item of one pull or push (``direction``); it writes a line
    with ``out`` at most every ``every`` seconds."""

    def __init__(
        self,
        direction: str,
        ref: str,
        out: Callable[[str], None] | None,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.direction = direction
        self.ref = ref
        self.out = out
        self.every = every
        self.clock = clock
        self.started = self.last = clock()
        self.layers: set[str] = set()
        self.done: set[str] = set()
        self.moved: dict[str, tuple[int, int]] = {}  # layer -> (bytes moved, its size)

    def feed(self, item: Mapping[str, Any]) -> None:
        layer = str(item.get("id") or "")
        status = str(item.get("status") or "")
        if layer:
            if status.startswith(_LAYER[self.direction]):
                self.layers.add(layer)
            if status.startswith(_DONE[self.direction]):
                self.layers.add(layer)
                self.done.add(layer)
            detail = item.get("progressDetail")
            if status == _MOVING[self.direction] and isinstance(detail, Mapping):
                total = detail.get("total")
                if isinstance(total, int) and total > 0:
                    self.moved[layer] = (int(detail.get("current") or 0), total)
        now = self.clock()
        if self.out is not None and now - self.last >= self.every:
            self.last = now
            self.out(self.line(now))

    def line(self, now: float) -> str:
        verb = "pulling" if self.direction == "pull" else "pushing"
        moved = sum(c for c, _ in self.moved.values()) / 1e6
        total = sum(t for _, t in self.moved.values()) / 1e6
        sized = f", {moved:.0f} of {total:.0f} MB sent" if total else ""
        if self.direction == "pull" and total:
            sized = f", {moved:.0f} of {total:.0f} MB downloaded"
        return (
            f"warpdrive: {verb} {self.ref}: {len(self.done)} of {len(self.layers)} layers"
            f"{sized} ({now - self.started:.0f} s)"
        )
