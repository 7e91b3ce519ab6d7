#!/usr/bin/env bash
# Issue 7's benchmark: JavaScript functions through the whole path (HTTP -> Core -> cluster ->
# Worker -> QuickJS in Wasmtime and back), with the engine snapshot (the default) and without
# it (`--js-snapshot false`: every invocation builds QuickJS's runtime and context itself):
#   - matrix_mult.js (100x100), 4 threads x 200 sequential invocations, the paper's parameters:
#     the latency distribution and p90/p50 (no "step": p90 within 1.3x of the median);
#   - warm hellojs, 1 thread x N sequential invocations (target: median under 1 ms);
# and the size of what is stored per function. Starts its own Core and Worker (release builds)
# on free local ports and stops them at the end.
# Usage: bench/javascript.sh [hello requests, default 1000]
#   (needs: cargo build --release --workspace --bins)
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-1000}
BIN=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss() { awk '/VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$1/status"; }

# run <label> <worker flags...>: one Core and one Worker, the two workloads, then both stopped.
run() {
  local label=$1; shift
  local dir="$work/$label" api cluster
  mkdir -p "$dir"
  api=$(port); cluster=$(port)
  "$BIN/funless-core" --data-dir "$dir/core" --listen "127.0.0.1:$api" --cluster-listen 127.0.0.1 \
    --cluster-port "$cluster" --cookie bench >"$dir/core.log" 2>&1 &
  local core_pid=$!; pids+=("$core_pid")
  for _ in $(seq 100); do grep -q "api listening" "$dir/core.log" && break; sleep 0.1; done
  "$BIN/funless-worker" --core "127.0.0.1:$cluster" --cookie bench --name w1 \
    --cluster-listen 127.0.0.1 --cache-dir "$dir/cache" "$@" >"$dir/worker.log" 2>&1 &
  local worker_pid=$!; pids+=("$worker_pid")
  export FL_CONFIG="$dir/core/fl-config.toml" FL_HOST="http://127.0.0.1:$api"
  local token
  token=$(sed -n 's/^token = "\(.*\)"/\1/p' "$FL_CONFIG")
  for _ in $(seq 100); do grep -q "worker gateway ready" "$dir/worker.log" && break; sleep 0.1; done
  sleep 1
  echo "=== $label"
  "$BIN/fl" fn upload hellojs examples/js/hello.js >/dev/null
  "$BIN/fl" fn upload matrix_mult_js examples/js/matrix_mult.js >/dev/null
  grep -m1 "JavaScript engine ready" "$dir/worker.log" | sed 's/.*INFO [^ ]* //' || true
  echo "-- matrix_mult.js, 4 threads x 200 (n=100)"
  "$BIN/funless-bench" --host "$FL_HOST" --token "$token" --function matrix_mult_js \
    --args '{"n":100}' --threads 4 --requests 200 --warmup 5 | tee "$dir/mm.txt"
  awk '/^p50/ { printf "p90/p50 = %.2f\n", $5 / $2 }' "$dir/mm.txt"
  echo "-- hellojs, 1 thread x $REQUESTS"
  "$BIN/funless-bench" --host "$FL_HOST" --token "$token" --function hellojs \
    --args '{"name":"bench"}' --threads 1 --requests "$REQUESTS"
  echo "RSS after load: core $(rss "$core_pid"), worker $(rss "$worker_pid")"
  kill "$core_pid" "$worker_pid"; wait "$core_pid" "$worker_pid" 2>/dev/null || true
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m)"
echo "stored per function: hellojs $(wc -c < examples/js/hello.js) bytes (its source), matrix_mult.js $(wc -c < examples/js/matrix_mult.js) bytes"
run snapshot
run no-snapshot --js-snapshot false
