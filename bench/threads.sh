#!/usr/bin/env bash
# Worker thread layouts: a Core (--io-threads 1) and one Worker started with each layout's
# flags on free-by-convention ports 4300/4301; hello_fl at wrk -c1 (median) and -c64 (req/s),
# matrix_mult_fl (n = 100, ~3 ms of compute per call) at -c4 (req/s); 5 s per wrk run.
# Prints a Markdown table (docs/BENCHMARKS.md, "Runtime threads").
# Usage: bench/threads.sh BIN_DIR
#   BIN_DIR holds funless-core and funless-worker (e.g. "$CARGO_TARGET_DIR/release"); needs
#   examples/build.sh run, wrk and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: bench/threads.sh BIN_DIR}
WASM=examples/target/wasm
API=http://127.0.0.1:4300

wait_for() { # FILE PATTERN: up to 10 s for PATTERN to appear in FILE
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "error: '$2' never appeared in $1" >&2
  return 1
}

core='' worker='' dir=''
stop() {
  kill $core $worker 2>/dev/null || true
  wait $core $worker 2>/dev/null || true
  rm -rf "$dir"
  core="" worker="" dir=""
}
trap stop EXIT

run() { # LABEL WORKER_FLAGS...
  local label=$1; shift
  dir=$(mktemp -d)
  "$BIN/funless-core" --listen 127.0.0.1:4300 --cluster-listen 127.0.0.1 --cluster-port 4301 \
    --io-threads 1 --data-dir "$dir" >"$dir/core.log" 2>&1 &
  core=$!
  wait_for "$dir/core.log" "api listening"
  "$BIN/funless-worker" --name w1 --core 127.0.0.1:4301 --cookie "$(cat "$dir/cookie")" \
    --cache-dir "$dir/w" "$@" >"$dir/worker.log" 2>&1 &
  worker=$!
  wait_for "$dir/core.log" "worker joined"
  local token; token=$(grep -o 'token[^ ]*fl_[0-9a-f]*' "$dir/core.log" | grep -o 'fl_[0-9a-f]*' | tail -n1)
  for f in hello:hello_fl:'{"args":{"name":"bench"}}' mm:matrix_mult_fl:'{"args":{"n":100}}'; do
    IFS=: read -r name file body <<<"$f"
    curl -sf -H "Authorization: Bearer $token" -F "code=@$WASM/$file.wasm" -F "name=$name" \
      "$API/v1/fn/_" >/dev/null
    curl -sf -H "Authorization: Bearer $token" -H 'content-type: application/json' -d "$body" \
      "$API/v1/fn/_/$name" >/dev/null
    printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer %s"\n' \
      "'$body'" "$token" >"$dir/$name.lua"
  done
  local p50 c64 mm
  p50=$(wrk -t1 -c1 -d5s --latency -s "$dir/hello.lua" "$API/v1/fn/_/hello" | awk '/ 50%/ {print $2}')
  c64=$(wrk -t2 -c64 -d5s -s "$dir/hello.lua" "$API/v1/fn/_/hello" | awk '/Requests\/sec/ {print $2}')
  mm=$(wrk -t2 -c4 -d5s -s "$dir/mm.lua" "$API/v1/fn/_/mm" | awk '/Requests\/sec/ {print $2}')
  echo "| $label | $p50 | $c64 | $mm |"
  stop
}

echo "| worker | hello c=1 p50 | hello c=64 req/s | matrix_mult c=4 req/s |"
echo "|---|---|---|---|"
run "defaults (one node thread, pool of one per core)"
run "one node thread, no pool" --compute-threads 0
run "two node threads, no pool" --io-threads 2 --compute-threads 0
