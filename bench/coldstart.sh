#!/usr/bin/env bash
# Cold-start benchmark of the code lifecycle: for one function (default examples' hello_fl),
# the whole-path latency (curl, one request each) of
#   warm                 invocations with the code in the worker's memory (funless-bench)
#   first after create   the first invocation after an upload with wait_for_workers (fresh hash each time)
#   first after restart  the first invocation after the worker restarts with its disk cache
#   never saw the code   the first invocation on a fresh worker (no code: Core sends it, worker compiles)
# Starts its own Core and Worker (release builds) on free local ports; stops them at the end.
# Usage: bench/coldstart.sh [module.wasm] [repetitions]
set -euo pipefail
cd "$(dirname "$0")/.."
WASM=${1:-examples/target/wasm/hello_fl.wasm}
K=${2:-20}
BIN=${CARGO_TARGET_DIR:-target}/release
[[ $WASM == examples/target/wasm/* ]] && examples/build.sh >/dev/null 2>&1
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
[[ -n ${KEEP_LOGS:-} ]] && trap "cp $work/*.log /tmp/; cleanup" EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=$(port); CLUSTER=$(port)
"$BIN/funless-core" --data-dir "$work/core" --listen "127.0.0.1:$API" --cluster-listen 127.0.0.1 \
  --cluster-port "$CLUSTER" --cookie bench >"$work/core.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do grep -q "api listening" "$work/core.log" && break; sleep 0.1; done
HOST="http://127.0.0.1:$API"
TOKEN=$(sed -n 's/^token = "\(.*\)"/\1/p' "$work/core/fl-config.toml")
ADMIN=$(sed -n 's/^admin_token = "\(.*\)"/\1/p' "$work/core/fl-config.toml")

WORKER_PID=
start_worker() { # $1: cache dir
  "$BIN/funless-worker" --core "127.0.0.1:$CLUSTER" --cookie bench --name w1 \
    --cluster-listen 127.0.0.1 --report-ms 100 --cache-dir "$1" >>"$work/worker.log" 2>&1 &
  WORKER_PID=$!; pids+=($WORKER_PID)
  for _ in $(seq 200); do
    curl -sf -H "Authorization: Bearer $ADMIN" "$HOST/v1/workers" | grep -q '"name":"w1"' && return
    sleep 0.05
  done
  echo "worker did not join" >&2; exit 1
}
stop_worker() {
  kill "$WORKER_PID" 2>/dev/null || true; wait "$WORKER_PID" 2>/dev/null || true
  for _ in $(seq 200); do
    curl -sf -H "Authorization: Bearer $ADMIN" "$HOST/v1/workers" | grep -q '"name":"w1"' || return 0
    sleep 0.05
  done
}
upload() { # $1 name, $2 file
  curl -sf -H "Authorization: Bearer $TOKEN" -F "name=$1" -F "code=@$2" "$HOST/v1/fn/_" >/dev/null
}
invoke_ms() { # $1 name -> milliseconds of one invocation
  curl -sf -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d '{"args":{"name":"bench"}}' "$HOST/v1/fn/_/$1" |
    awk '{printf "%.3f\n", $1*1000}'
}
summary() { # stdin: ms values
  sort -n | awk '{v[NR]=$1} END {
    p50=v[int((NR*50+99)/100)]; p99=v[int((NR*99+99)/100)];
    printf "median %.3f ms  p99 %.3f ms  (n=%d)\n", p50, p99, NR }'
}
variant() { # $1 index -> copy of the module with a custom section, so its hash is new
  cp "$WASM" "$work/v$1.wasm"
  printf '\x00\x06\x05v%04d' "$1" >>"$work/v$1.wasm"
}

start_worker "$work/cache"
echo "module: $WASM ($(wc -c <"$WASM") bytes); $(nproc) cores; $K repetitions"
upload fn "$WASM"
# Every figure below is one curl request per invocation (a new connection each), so they
# compare with one another; funless-bench's keep-alive figure is given for reference.
for i in $(seq 200); do invoke_ms fn; done >"$work/warm"
echo -n "warm:                "; summary <"$work/warm"
echo -n "warm, keep-alive:    "
"$BIN/funless-bench" --host "$HOST" --token "$TOKEN" --function fn --args '{"name":"bench"}' \
  --requests 1000 | sed -n 's/^p50 \([0-9.]*\) ms  p90 [0-9.]* ms  p99 \([0-9.]*\) ms.*/median \1 ms  p99 \2 ms  (n=1000)/p'

for i in $(seq "$K"); do variant "$i"; upload "c$i" "$work/v$i.wasm"; invoke_ms "c$i" >>"$work/create"; done
echo -n "first after create:  "; summary <"$work/create"

for i in $(seq "$K"); do stop_worker; start_worker "$work/cache"; invoke_ms fn >>"$work/restart"; done
echo -n "first after restart: "; summary <"$work/restart"

for i in $(seq "$K"); do stop_worker; start_worker "$work/fresh$i"; invoke_ms fn >>"$work/fresh"; done
echo -n "never saw the code:  "; summary <"$work/fresh"
