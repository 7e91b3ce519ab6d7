#!/usr/bin/env bash
# Runs schemathesis (PyPI) against a real Core (embedded worker, SQLite, ports chosen now)
# with the Core's own OpenAPI document (/v1/openapi.json): no 5xx, and every status, content
# type, header and body must be the document's. Usage: .ci/schemathesis.sh CORE_BINARY
# [extra schemathesis arguments]. Installs schemathesis into a venv under ~/.cache once.
set -euo pipefail

core=${1:?usage: $0 CORE_BINARY [schemathesis args]}
shift

# A pinned schemathesis in a venv of its own (Debian's Python refuses system-wide pip).
venv="${SCHEMATHESIS_VENV:-${HOME}/.cache/funless-schemathesis}"
version=4.32.5
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q "schemathesis==$version"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
data=$(mktemp -d)
api_port=$(free_port)
cluster_port=$(free_port)
log="$data/core.log"
# A secrets key, so the secrets routes are exercised for real (without one they answer 503).
openssl rand -hex 32 >"$data/secrets.key"
"$core" --data-dir "$data" --listen "127.0.0.1:$api_port" --cluster-listen 127.0.0.1 \
  --cluster-port "$cluster_port" --embedded-worker --secrets-key-file "$data/secrets.key" \
  >"$log" 2>&1 &
core_pid=$!
cleanup() {
  kill "$core_pid" 2>/dev/null || true
  wait "$core_pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

url="http://127.0.0.1:$api_port"
token_of() { sed -n "s/^$1 = \"\(.*\)\"\$/\1/p" "$data/fl-config.toml" 2>/dev/null; }
# Ready when the API answers and lists the embedded worker as ready.
worker_ready() {
  python3 - "$url" "$(token_of admin_token)" <<'PY'
import json, sys, urllib.request
request = urllib.request.Request(sys.argv[1] + "/v1/workers", headers={"Authorization": "Bearer " + sys.argv[2]})
try:
    workers = json.load(urllib.request.urlopen(request, timeout=2))["data"]
except Exception:
    sys.exit(1)
sys.exit(0 if any(w["state"] == "ready" for w in workers) else 1)
PY
}
for _ in $(seq 1 120); do
  if worker_ready; then break; fi
  if ! kill -0 "$core_pid" 2>/dev/null; then cat "$log" >&2; exit 1; fi
  sleep 0.5
done
worker_ready || { echo "the Core's embedded worker is not ready" >&2; tail -n 50 "$log" >&2; exit 1; }
admin_token=$(token_of admin_token)

# Left out: POST /v1/admin/nodes makes the Core dial the address it is given (generated
# addresses would reach outside 127.0.0.0/8); DELETE /v1/admin/subjects/{name} would revoke
# the run's own admin token and turn the rest of the run into 401s.
status=0
# From the temporary folder: schemathesis keeps a cache in its working directory.
(cd "$data" && "$venv/bin/schemathesis" run "$url/v1/openapi.json" \
  --header "Authorization: Bearer $admin_token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --exclude-path /v1/admin/nodes \
  --exclude-path '/v1/admin/subjects/{name}' \
  --request-timeout 30 \
  "$@") || status=$?
if [ "$status" -ne 0 ]; then
  echo "---- core log (last 50 lines) ----" >&2
  tail -n 50 "$log" >&2
fi
exit "$status"
