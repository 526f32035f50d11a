#!/usr/bin/env bash
# The test command (README, .ci/run): set up everything a fresh machine lacks, then run
# lint, type checks and the whole test suite, integration tests on the real engine included.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/engine-up.sh
bash scripts/base-images.sh
# Podman serving the Docker API, for tests/integration/test_podman_engine.py; stopped at the
# end when this run started it (a service the developer had running stays)
if ! curl -sf --unix-socket "${WARPDRIVE_PODMAN_DIR:-/run/warpdrive-podman}/podman.sock" http://d/_ping >/dev/null 2>&1; then
    trap 'bash scripts/podman-up.sh --stop >/dev/null 2>&1 || true' EXIT
fi
bash scripts/podman-up.sh >/dev/null
bash scripts/podman-rootless-up.sh --prepare  # its rootless user; the tests start its service
# multi-platform tests: QEMU's binfmt_misc handlers and the arm64 base images (emulated)
bash scripts/emulation.sh
WARPDRIVE_ARCH=arm64 bash scripts/base-images.sh
bash scripts/dev-env.sh
echo "== ruff"; .venv/bin/ruff check nox_warpdrive tests bench
echo "== mypy"; .venv/bin/mypy
echo "== mypy bench"; .venv/bin/mypy --strict bench
echo "== import layers"; .venv/bin/lint-imports
echo "== pytest"
.venv/bin/python -m pytest -p no:cacheprovider "$@"
