#!/usr/bin/env bash
# Runs a Core and a Worker (release builds) inside a cgroup limited to 1 GiB of memory and one
# CPU, like a Raspberry Pi 3B+ board, under the paper's memory-profile load (4 client threads
# invoking `hello` continuously), sampling their RSS once a second. Reports the latency, the
# errors, the peak RSS of each process and whether the cgroup ever hit its memory limit.
# Needs root and cgroup v1 memory and cpu controllers (as on this project's VMs).
# Usage: bench/constrained.sh [requests per thread] [function wasm]
#   (default 10000 and examples/target/wasm/hello_fl.wasm; needs cargo build --release
#   --workspace and examples/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-10000}
WASM=${2:-examples/target/wasm/hello_fl.wasm}
BIN=${CARGO_TARGET_DIR:-target}/release
MEM=/sys/fs/cgroup/memory/funless-bench-$$
CPU=/sys/fs/cgroup/cpu/funless-bench-$$
work=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rmdir "$MEM" "$CPU" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir "$MEM" "$CPU"
echo $((1024 * 1024 * 1024)) > "$MEM/memory.limit_in_bytes"
echo 100000 > "$CPU/cpu.cfs_period_us"
echo 100000 > "$CPU/cpu.cfs_quota_us"   # one CPU's worth of time per period
# Run with `&`: the background subshell moves itself into the cgroups, then becomes the command
# (so `$!` is the command's PID).
contained() { echo $BASHPID > "$MEM/cgroup.procs"; echo $BASHPID > "$CPU/cgroup.procs"; exec "$@"; }

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=$(port); CLUSTER=$(port)
contained "$BIN/funless-core" --data-dir "$work/core" --listen "127.0.0.1:$API" \
  --cluster-listen 127.0.0.1 --cluster-port "$CLUSTER" --cookie bench >"$work/core.log" 2>&1 &
pids+=($!); CORE_PID=$!
for _ in $(seq 100); do grep -q "api listening" "$work/core.log" && break; sleep 0.1; done
contained "$BIN/funless-worker" --core "127.0.0.1:$CLUSTER" --cookie bench --name w1 \
  --cluster-listen 127.0.0.1 --cache-dir "$work/cache" >"$work/worker.log" 2>&1 &
pids+=($!); WORKER_PID=$!
for _ in $(seq 100); do grep -q "worker gateway ready" "$work/worker.log" && break; sleep 0.1; done
sleep 2
export FL_CONFIG="$work/core/fl-config.toml" FL_HOST="http://127.0.0.1:$API"
TOKEN=$(sed -n 's/^token = "\(.*\)"/\1/p' "$FL_CONFIG")
"$BIN/fl" fn upload hello "$WASM" >/dev/null

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
echo "machine: $(nproc) cores, limits: 1 GiB memory, 1 CPU (cgroup v1)"
echo "RSS after the upload: core $(( $(rss_kb $CORE_PID) / 1024 )) MB, worker $(( $(rss_kb $WORKER_PID) / 1024 )) MB"
peak_core=0; peak_worker=0
(
  while kill -0 "$CORE_PID" 2>/dev/null; do
    echo "$(rss_kb $CORE_PID) $(rss_kb $WORKER_PID)"
    sleep 1
  done
) > "$work/rss" &
sampler=$!
"$BIN/funless-bench" --host "$FL_HOST" --token "$TOKEN" --function hello \
  --args '{"name":"bench"}' --threads 4 --requests "$REQUESTS"
kill "$sampler" 2>/dev/null || true
while read -r core worker; do
  [ -n "$core" ] && [ "$core" -gt "$peak_core" ] && peak_core=$core
  [ -n "$worker" ] && [ "$worker" -gt "$peak_worker" ] && peak_worker=$worker
done < "$work/rss"
echo "samples: $(wc -l < "$work/rss") (one a second)"
echo "peak RSS under load: core $((peak_core / 1024)) MB, worker $((peak_worker / 1024)) MB"
echo "cgroup: peak memory $(( $(cat "$MEM/memory.max_usage_in_bytes") / 1048576 )) MB of 1024, limit hits $(cat "$MEM/memory.failcnt"), CPU throttled periods $(awk '/nr_throttled/ {print $2}' "$CPU/cpu.stat")"
