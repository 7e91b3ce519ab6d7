#!/usr/bin/env bash
# Measures the foundation numbers: warm invoke latency of `hello` through the whole path
# (HTTP -> Core -> cluster -> Worker -> Wasmtime and back; 1,000 sequential calls after 20
# warm-up calls) for both ABIs, and the RSS of an idle Core and Worker. Starts its own Core and
# Worker (release builds) on free local ports and stops them at the end.
# Usage: bench/foundation.sh [requests]   (needs: cargo build --release --workspace; examples/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-1000}
BIN=${CARGO_TARGET_DIR:-target}/release
examples/build.sh >/dev/null
work=$(mktemp -d)
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
pids=()
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=$(port); CLUSTER=$(port)
"$BIN/funless-core" --data-dir "$work/core" --listen "127.0.0.1:$API" --cluster-listen 127.0.0.1 \
  --cluster-port "$CLUSTER" --cookie bench >"$work/core.log" 2>&1 & pids+=($!); CORE_PID=$!
for _ in $(seq 100); do grep -q "api listening" "$work/core.log" && break; sleep 0.1; done
"$BIN/funless-worker" --core "127.0.0.1:$CLUSTER" --cookie bench --name w1 --cluster-listen 127.0.0.1 \
  --cache-dir "$work/cache" >"$work/worker.log" 2>&1 & pids+=($!); WORKER_PID=$!
export FL_CONFIG="$work/core/fl-config.toml" FL_HOST="http://127.0.0.1:$API"
TOKEN=$(sed -n 's/^token = "\(.*\)"/\1/p' "$FL_CONFIG")
for _ in $(seq 100); do grep -q "worker gateway ready" "$work/worker.log" && break; sleep 0.1; done
sleep 2
rss() { awk '/VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$1/status"; }
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m)"
echo "allocator: $(grep -m1 "wasmtime engine ready" "$work/worker.log" | sed "s/.*allocator=//")"
echo "idle RSS: core $(rss $CORE_PID), worker $(rss $WORKER_PID)"
"$BIN/fl" fn upload hello examples/target/wasm/hello_fl.wasm >/dev/null
"$BIN/fl" fn upload hello_wasi examples/target/wasm/hello_wasi.wasm >/dev/null
for f in hello hello_wasi; do
  echo "== $f"
  "$BIN/funless-bench" --host "$FL_HOST" --token "$TOKEN" --function "$f" \
    --args '{"name":"bench"}' --threads 1 --requests "$REQUESTS"
done
echo "RSS after load: core $(rss $CORE_PID), worker $(rss $WORKER_PID)"
