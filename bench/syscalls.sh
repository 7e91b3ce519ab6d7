#!/usr/bin/env bash
# What one warm hello_fl invocation costs each process, counted rather than timed: a Core and
# one Worker (two processes, SQLite) from BIN_DIR on free ports, then `wrk -t1 -c1` for 4 s
# twice, once under `strace -c -f` (system calls per request, by call) and once under
# `perf stat -e task-clock,context-switches` (CPU time and switches per request). Counts hold
# on a busy machine; the CPU times move with it (compare builds in one run, interleaved).
# Usage: bench/syscalls.sh BIN_DIR [ROUNDS]
#   BIN_DIR holds funless-core and funless-worker (e.g. "$CARGO_TARGET_DIR/release"); needs
#   examples/build.sh run, wrk, curl, strace and perf (Debian: strace, linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:?usage: bench/syscalls.sh BIN_DIR [ROUNDS]}")
ROUNDS=${2:-3}
WASM=examples/target/wasm/hello_fl.wasm
[ -f "$WASM" ] || examples/build.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d)
core='' worker=''
stop() {
  kill $core $worker 2>/dev/null || true
  wait $core $worker 2>/dev/null || true
  rm -rf "$dir"
}
trap stop EXIT

api=$(free_port) cluster=$(free_port) metrics=$(free_port)
"$BIN/funless-core" --data-dir "$dir/core" --listen "127.0.0.1:$api" \
  --cluster-listen 127.0.0.1 --cluster-port "$cluster" >"$dir/core.log" 2>&1 &
core=$!
for _ in $(seq 100); do [ -s "$dir/core/fl-config.toml" ] && curl -sf "127.0.0.1:$api/health" >/dev/null && break; sleep 0.1; done
token=$(sed -n 's/^token = "\(.*\)"$/\1/p' "$dir/core/fl-config.toml")
"$BIN/funless-worker" --core "127.0.0.1:$cluster" --cookie "$(cat "$dir/core/cookie")" --name w1 \
  --cluster-listen 127.0.0.1 --metrics-listen "127.0.0.1:$metrics" --cache-dir "$dir/worker" \
  >"$dir/worker.log" 2>&1 &
worker=$!
for _ in $(seq 100); do
  curl -sf -H "Authorization: Bearer $token" "127.0.0.1:$api/v1/workers" | grep -q '"ready"' && break
  sleep 0.1
done
curl -sf -H "Authorization: Bearer $token" -F name=hello -F "code=@$WASM" "127.0.0.1:$api/v1/fn/_" >/dev/null
cat >"$dir/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"args":{"name":"bench"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
load() { wrk -t1 -c1 -d4s -s "$dir/post.lua" "http://127.0.0.1:$api/v1/fn/_/hello" | sed -n 's/^ *\([0-9]*\) requests in.*/\1/p'; }
load >/dev/null # warm

strace -c -f -p "$core" -o "$dir/core.strace" 2>/dev/null &
s1=$!
strace -c -f -p "$worker" -o "$dir/worker.strace" 2>/dev/null &
s2=$!
sleep 1
n=$(load)
kill -INT $s1 $s2
wait $s1 $s2 2>/dev/null || true
for role in core worker; do
  echo "$role: system calls per request ($n requests under strace)"
  awk -v n="$n" '/^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ {
      if (NF == 6) printf "  %-16s %.2f (%.2f failed)\n", $6, $4 / n, $5 / n
      else if (NF == 5) printf "  %-16s %.2f\n", $5, $4 / n
    }' "$dir/$role.strace" | sort -k2 -rn | head -8
done

for round in $(seq "$ROUNDS"); do
  perf stat -e task-clock,context-switches -p "$core" -o "$dir/core.stat" -- sleep 4.6 &
  p1=$!
  perf stat -e task-clock,context-switches -p "$worker" -o "$dir/worker.stat" -- sleep 4.6 &
  p2=$!
  sleep 0.3
  n=$(load)
  wait $p1 $p2
  line="round $round: $n requests;"
  for role in core worker; do
    ms=$(awk '/task-clock/ { gsub(",", "", $1); print $1 }' "$dir/$role.stat")
    cs=$(awk '/context-switches/ { gsub(",", "", $1); print $1 }' "$dir/$role.stat")
    line+=$(python3 -c "print(' $role %.1f us CPU, %.2f switches per request;' % ($ms * 1000 / $n, $cs / $n))")
  done
  echo "$line"
done
