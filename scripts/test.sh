#!/usr/bin/env bash
# The test command (README, .ci/run): set up everything a fresh machine lacks, then run
# lint, type checks and the whole test suite, integration tests on the real engine included.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/engine-up.sh
bash scripts/base-images.sh
# multi-platform tests: QEMU's binfmt_misc handlers and the arm64 base images (emulated)
bash scripts/emulation.sh
WARPDRIVE_ARCH=arm64 bash scripts/base-images.sh
bash scripts/dev-env.sh
echo "== ruff"; .venv/bin/ruff check nox_warpdrive tests bench
echo "== mypy"; .venv/bin/mypy
echo "== mypy bench"; .venv/bin/mypy --strict bench
echo "== import layers"; .venv/bin/lint-imports
echo "== pytest"
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
