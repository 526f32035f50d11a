#!/usr/bin/env bash
# Create (or refresh) the project's virtualenv at .venv with nox-warpdrive installed
# editable (with its bytecode), plus the test tools. Quiet and idempotent: a no-op when
# nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=".venv/.warpdrive-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
    echo "$want" > "$stamp"
fi
# bytecode for the editable source: with PYTHONDONTWRITEBYTECODE set (as on this machine)
# Python would compile every module again at each `nox` start (~0.1 s of a 0.6 s rebuild);
# a no-op when nothing changed
.venv/bin/python -m compileall -q nox_warpdrive >/dev/null
