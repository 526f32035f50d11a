"""`nox -s run -- --watch`: the inner loop (loop.py), the host port forwarder that keeps
the port answering through a switch (forward.py), and which saves matter (changes.py).
Above the orchestration layer (it builds with image.py and runs with run.py), below
sessions."""

from __future__ import annotations

from .loop import watch_run

__all__ = ["watch_run"]
