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
stop_podman=""
if ! curl -sf --unix-socket "${WARPDRIVE_PODMAN_DIR:-/run/warpdrive-podman}/podman.sock" http://d/_ping >/dev/null 2>&1; then
    stop_podman=1
fi
arm64_job=""
cleanup() {
    [ -z "$stop_podman" ] || bash scripts/podman-up.sh --stop >/dev/null 2>&1 || true
    [ -z "$arm64_job" ] || kill "$arm64_job" 2>/dev/null || true
}
trap cleanup EXIT
bash scripts/podman-up.sh >/dev/null
bash scripts/podman-rootless-up.sh --prepare  # its rootless user; the tests start its service
# multi-platform tests: QEMU's binfmt_misc handlers, and the arm64 base images, which take
# about ten minutes under QEMU on a fresh machine: made in the background while the rest
# runs; tests/integration/test_platforms_engine.py waits for WARPDRIVE_ARM64_IMAGES (the
# file gets the job's exit status) before it fails on a missing image
bash scripts/emulation.sh
export WARPDRIVE_ARM64_IMAGES=/tmp/warpdrive-arm64-images.status
rm -f "$WARPDRIVE_ARM64_IMAGES"
( set +e; WARPDRIVE_ARCH=arm64 bash scripts/base-images.sh >"${WARPDRIVE_ARM64_IMAGES%.status}.log" 2>&1
  echo $? >"$WARPDRIVE_ARM64_IMAGES" ) &
arm64_job=$!
bash scripts/dev-env.sh
echo "== ruff"; .venv/bin/ruff check nox_warpdrive tests bench
echo "== mypy"; .venv/bin/mypy
echo "== mypy bench"; .venv/bin/mypy --strict bench
echo "== import layers"; .venv/bin/lint-imports
echo "== pytest"
.venv/bin/python -m pytest -p no:cacheprovider --durations=30 "$@"
