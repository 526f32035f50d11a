#!/usr/bin/env bash
# The whole job on the example app, from a fresh machine: engine, base images, the tool,
# `nox -s wheelhouse`, `nox -s image -- --no-index`, then start the image and show it
# answering HTTP. Leaves the container running (its name and how to stop it are printed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/engine-up.sh
bash scripts/base-images.sh
bash scripts/dev-env.sh
NOX="$PWD/.venv/bin/nox"
APP=examples/wagtail-site
NAME=wagtail-site-demo
PORT="${PORT:-8080}"

cd "$APP"
"$NOX" -s wheelhouse
"$NOX" -s image -- --no-index

docker rm -f "$NAME" >/dev/null 2>&1 || true
if ! docker run -d --name "$NAME" -p "127.0.0.1:$PORT:8080" wagtail-site:latest >/dev/null; then
    echo "quickstart: could not start the image on port $PORT; try PORT=18080 bash $0" >&2
    exit 1
fi
for _ in $(seq 1 60); do
    if curl -fsS "http://127.0.0.1:$PORT/health/" >/dev/null 2>&1; then break; fi
    sleep 0.5
done
printf 'GET http://127.0.0.1:%s/health/ -> ' "$PORT"
curl -sS -w ' (HTTP %{http_code})\n' "http://127.0.0.1:$PORT/health/"
printf 'runs as: '; docker exec "$NAME" id
echo "the app is running at http://127.0.0.1:$PORT/ (stop it: docker rm -f $NAME)"
