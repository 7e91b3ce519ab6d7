#!/usr/bin/env bash
# Memory of a Core and a Worker, split by smaps into the binary's (file-backed) pages and
# anonymous memory: idle, then after a hellojs load (4 client threads invoking
# examples/js/hello.js, the paper's memory-profile workload; REQUESTS per thread), with the
# largest mappings of the worker. For the default (pooling) and the on-demand instance
# allocator. Starts release binaries on free 127.0.0.1 ports and stops them at the end.
# Usage: bench/footprint.sh [requests per thread, default 4000; 0 = idle only]
#   (needs: cargo build --release --workspace --bins)
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-4000}
BIN=${CARGO_TARGET_DIR:-target}/release
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
breakdown() {
  awk '/^Rss:/ {r=$2} /^Anonymous:/ {a=$2} /^Shmem/ {s+=$2}
       END {printf "RSS %5.1f MB  file-backed %5.1f MB  anonymous %4.1f MB  (shared memory %.1f MB)\n",
            r/1024, (r-a-s)/1024, a/1024, s/1024}' "/proc/$1/smaps_rollup"
}
# The worker's resident memory by kind of mapping: the binary, the heap, Wasm code and images.
largest() {
  awk '
    /^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "" ? "[anonymous]" : $6); next }
    /^Rss:/ { rss[name] += $2 }
    END { for (n in rss) if (rss[n] >= 512) printf "    %7.1f MB  %s\n", rss[n]/1024, n }' \
    "/proc/$1/smaps" | sort -rn | head -8
}
measure() { # <label> <worker flags...>
  local label=$1; shift
  local work api cluster core worker token
  work=$(mktemp -d); api=$(port); cluster=$(port)
  "$BIN/funless-core" --data-dir "$work/core" --listen "127.0.0.1:$api" --cluster-listen 127.0.0.1 \
    --cluster-port "$cluster" --cookie footprint >"$work/core.log" 2>&1 & core=$!
  for _ in $(seq 100); do grep -q "api listening" "$work/core.log" && break; sleep 0.1; done
  "$BIN/funless-worker" --core "127.0.0.1:$cluster" --cookie footprint --name w1 \
    --cluster-listen 127.0.0.1 --cache-dir "$work/cache" "$@" >"$work/worker.log" 2>&1 & worker=$!
  for _ in $(seq 100); do grep -q "worker gateway ready" "$work/worker.log" && break; sleep 0.1; done
  sleep 3
  echo "== $label"
  echo "idle       core:   $(breakdown "$core")"
  echo "idle       worker: $(breakdown "$worker")"
  if [ "$REQUESTS" -gt 0 ]; then
    export FL_CONFIG="$work/core/fl-config.toml" FL_HOST="http://127.0.0.1:$api"
    token=$(sed -n 's/^token = "\(.*\)"/\1/p' "$FL_CONFIG")
    "$BIN/fl" fn upload hellojs examples/js/hello.js >/dev/null
    "$BIN/funless-bench" --host "$FL_HOST" --token "$token" --function hellojs \
      --args '{"name":"footprint"}' --threads 4 --requests "$REQUESTS" | sed -n 's/^/    /; /p50\|errors\|throughput/p'
    echo "after $((4 * REQUESTS)) hellojs calls, 4 at a time:"
    echo "           core:   $(breakdown "$core")"
    echo "           worker: $(breakdown "$worker")"
    echo "  worker's largest resident mappings:"
    largest "$worker"
  fi
  kill "$core" "$worker"; wait "$core" "$worker" 2>/dev/null || true; rm -rf "$work"
}
echo "machine: $(nproc) cores, $(uname -m); binaries: $BIN"
measure "pooling allocator (default)"
measure "on-demand allocator" --allocator on-demand
