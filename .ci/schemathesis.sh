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
"$core" --data-dir "$data" --listen "127.0.0.1:$api_port" --cluster-listen 127.0.0.1 \
  --cluster-port "$cluster_port" --embedded-worker >"$log" 2>&1 &
core_pid=$!
cleanup() {
  kill "$core_pid" 2>/dev/null || true
  wait "$core_pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

url="http://127.0.0.1:$api_port"
for _ in $(seq 1 120); do
  if grep -q "api listening on" "$log" && grep -q "embedded worker started" "$log"; then break; fi
  if ! kill -0 "$core_pid" 2>/dev/null; then cat "$log" >&2; exit 1; fi
  sleep 0.5
done
admin_token=$(sed -n 's/^admin_token = "\(.*\)"$/\1/p' "$data/fl-config.toml")
[ -n "$admin_token" ] || { echo "no admin token in $data/fl-config.toml" >&2; exit 1; }

# POST /v1/admin/nodes makes the Core dial the address it is given: generated addresses would
# reach outside 127.0.0.0/8, so that operation is left out.
status=0
"$venv/bin/schemathesis" run "$url/v1/openapi.json" \
  --header "Authorization: Bearer $admin_token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --exclude-path /v1/admin/nodes \
  --request-timeout 30 \
  "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "---- core log (last 50 lines) ----" >&2
  tail -n 50 "$log" >&2
fi
exit "$status"
