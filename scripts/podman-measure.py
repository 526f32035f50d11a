"""Side by side, in one run: the same Flask app built with `nox -s image -- --no-index` on
the Docker engine and on Podman (rootful; rootless too when its socket answers), then
three unchanged builds and three code changes on each, timed from the outside (the whole
nox process). Prints each time, the medians and the ratios to Docker; removes what it
made. No assertion: the numbers are for docs/podman.md and the issue.

    bash scripts/podman-up.sh; bash scripts/podman-rootless-up.sh   # (as root)
    .venv/bin/python scripts/podman-measure.py
    bash scripts/podman-rootless-up.sh --stop
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from pkgindex import build_index, serve  # noqa: E402

ENGINES = {
    "docker": "unix:///var/run/docker.sock",
    "podman": os.environ.get("WARPDRIVE_PODMAN_HOST", "unix:///run/warpdrive-podman/podman.sock"),
    "rootless": "unix:///run/user/%d/podman/podman.sock",
}
APP = """import os

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "{message} uid=%d" % os.getuid()
"""


def answers(host: str) -> bool:
    path = host[len("unix://") :]
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def nox(root: Path, env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "nox", "--no-color", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - started
    if done.returncode:
        sys.exit(f"nox {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return took


def clean(host: str, name: str) -> None:
    """Remove the app's images (its deps images too) and volume from that engine."""
    env = dict(os.environ, DOCKER_HOST=host)
    listed = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.split()
    refs = [r for r in listed if f"{name}:" in r]
    if refs:
        subprocess.run(["docker", "rmi", "-f", *refs], env=env, capture_output=True)
    subprocess.run(["docker", "volume", "rm", name], env=env, capture_output=True)


def measure(kind: str, host: str, work: Path, index_url: str) -> tuple[list[float], list[float]]:
    name = f"wdmeasure-{uuid.uuid4().hex[:8]}"
    root = work / kind
    root.mkdir()
    (root / "wsgi.py").write_text(APP.format(message="v0"))
    (root / "requirements.txt").write_text("flask\n")
    (root / "noxfile.py").write_text("import nox_warpdrive\n\nnox_warpdrive.sessions()\n")
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "0"\n\n[tool.warpdrive]\n'
        f'image = "{name}:latest"\nvolume = "{name}"\nnetwork = "host"\n'
        'base-image = "warpdrive/python:3.11-bookworm"\n'
        'builder-image = "warpdrive/python-builder:3.11-bookworm"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    cache = str(work / f"{kind}-cache")  # outside the project: its files are the app's
    env.update(DOCKER_HOST=host, PIP_INDEX_URL=index_url, XDG_CACHE_HOME=cache)
    try:
        nox(root, env, "-s", "wheelhouse")
        first = nox(root, env, "-s", "image", "--", "--no-index")
        unchanged = [nox(root, env, "-s", "image", "--", "--no-index") for _ in range(3)]
        changes = []
        for i in range(3):
            (root / "wsgi.py").write_text(APP.format(message=f"v{i + 1}"))
            changes.append(nox(root, env, "-s", "image", "--", "--no-index"))
    finally:
        clean(host, name)
    shown = ", ".join(f"{t:.2f}" for t in unchanged)
    print(
        f"{kind}: first {first:.2f} s; unchanged {shown}; code change "
        + ", ".join(f"{t:.2f}" for t in changes),
        flush=True,
    )
    return unchanged, changes


def main() -> None:
    engines = dict(ENGINES)
    user = os.environ.get("WARPDRIVE_PODMAN_USER", "wdpodman")
    try:
        import pwd

        engines["rootless"] = engines["rootless"] % pwd.getpwnam(user).pw_uid
    except KeyError:
        del engines["rootless"]
    engines = {k: h for k, h in engines.items() if answers(h)}
    print("engines: " + ", ".join(f"{k} ({h})" for k, h in engines.items()), flush=True)
    with tempfile.TemporaryDirectory(prefix="wdmeasure-") as tmp:
        work = Path(tmp)
        simple = build_index(work / "index")
        with serve(simple.parent) as index:
            times = {k: measure(k, h, work, index.url) for k, h in engines.items()}
    median = statistics.median
    docker_same, docker_change = (median(t) for t in times["docker"])
    for kind, (same, change) in times.items():
        print(
            f"{kind}: median unchanged {median(same):.2f} s ({median(same) / docker_same:.2f}x"
            f" Docker), code change {median(change):.2f} s"
            f" ({median(change) / docker_change:.2f}x Docker)"
        )


if __name__ == "__main__":
    main()
