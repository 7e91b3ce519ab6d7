#!/usr/bin/env bash
# Idle memory of a Core and a Worker, split by smaps_rollup into the binary's (file-backed) pages
# and anonymous memory, for the default (pooling) and the on-demand instance allocator.
# Starts release binaries on free 127.0.0.1 ports and stops them at the end.
# Usage: bench/footprint.sh   (needs: cargo build --release --workspace --bins)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
breakdown() {
  awk '/^Rss:/ {r=$2} /^Anonymous:/ {a=$2}
       END {printf "RSS %5.1f MB  file-backed %5.1f MB  anonymous %4.1f MB\n", r/1024, (r-a)/1024, a/1024}' \
    "/proc/$1/smaps_rollup"
}
measure() { # <label> <worker flags...>
  local label=$1; shift
  local work api cluster core worker
  work=$(mktemp -d); api=$(port); cluster=$(port)
  "$BIN/funless-core" --data-dir "$work/core" --listen "127.0.0.1:$api" --cluster-listen 127.0.0.1 \
    --cluster-port "$cluster" --cookie footprint >"$work/core.log" 2>&1 & core=$!
  sleep 1
  "$BIN/funless-worker" --core "127.0.0.1:$cluster" --cookie footprint --name w1 \
    --cluster-listen 127.0.0.1 --cache-dir "$work/cache" "$@" >"$work/worker.log" 2>&1 & worker=$!
  sleep 4
  echo "== $label"
  echo "core:   $(breakdown "$core")"
  echo "worker: $(breakdown "$worker")"
  kill "$core" "$worker"; wait "$core" "$worker" 2>/dev/null || true; rm -rf "$work"
}
measure "pooling allocator (default)"
measure "on-demand allocator" --allocator on-demand
