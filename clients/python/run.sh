#!/usr/bin/env bash
# Generates a Python client from the OpenAPI document a running `ordo serve`
# serves, and runs a short scenario with it (clients/python/scenario.py).
# Usage: clients/python/run.sh [path/to/ordo]   (default: target/debug/ordo,
# built with `cargo build` first). Needs python3 with venv (Debian: python3-venv)
# and PyPI; the virtual environment is kept in target/python-client/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ORDO="${1:-target/debug/ordo}"
[ -x "$ORDO" ] || cargo build -q -p ordo
WORK="target/python-client"
mkdir -p "$WORK"
VENV="$WORK/venv"
if [ ! -x "$VENV/bin/openapi-python-client" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "openapi-python-client==0.29.*"
fi

RUN="$(mktemp -d)"
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$RUN"
}
trap cleanup EXIT

DB="$RUN/ordo.db"
mkdir -p "$RUN/none"
"$ORDO" user add ada --role admin --role designer --db "$DB" >/dev/null
TOKEN="$("$ORDO" token create --user ada --db "$DB")"
# A free loopback port: the kernel's choice, released just before the server takes it.
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
"$ORDO" serve --db "$DB" --addr "127.0.0.1:$PORT" --deploy "$RUN/none" --backups "$RUN/backups" \
  >"$RUN/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('$BASE/health', timeout=1)" 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$RUN/server.log"; exit 1; }
  sleep 0.1
done

# The client comes from the served document, as an integrator's would.
python3 -c "import urllib.request, sys; sys.stdout.write(urllib.request.urlopen('$BASE/api/openapi.json').read().decode())" \
  >"$RUN/openapi.json"
"$VENV/bin/openapi-python-client" generate --path "$RUN/openapi.json" \
  --config clients/python/config.yaml --output-path "$RUN/ordo-api-client" --meta none >"$RUN/generate.log" 2>&1 \
  || { cat "$RUN/generate.log"; exit 1; }
if grep -q "will not be generated" "$RUN/generate.log"; then
  cat "$RUN/generate.log"
  echo "openapi-python-client skipped an endpoint" >&2
  exit 1
fi
mkdir -p "$RUN/pkg" && mv "$RUN/ordo-api-client" "$RUN/pkg/ordo_api_client"
PYTHONPATH="$RUN/pkg" "$VENV/bin/python" clients/python/scenario.py "$BASE" "$TOKEN"
