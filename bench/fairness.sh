#!/usr/bin/env bash
# CPU fairness (issue 24): the latency of another function's hello beside busy guests. One Core
# and two Workers; BUSY CPU-bound JavaScript loops (12 s each, spread over the workers by the
# scheduler) run while 40 sequential hello_fl calls are timed; the same without the loops for
# the baseline. Each build given is measured ROUNDS times, the builds taking turns, so that
# they are compared within one run on one machine.
# Prints per run: hello's p50, p90 and max (ms, curl's total time), and the busy loops'
# iteration counts (how evenly they shared the CPU: max/min).
# Usage: bench/fairness.sh [--busy N] [--rounds R] LABEL=BIN_DIR [LABEL=BIN_DIR ...]
#   BIN_DIR holds funless-core, funless-worker and fl (e.g. target/release); needs
#   examples/build.sh run (hello_fl.wasm), curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
BUSY=8
ROUNDS=2
builds=()
while [ $# -gt 0 ]; do
  case $1 in
    --busy) BUSY=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *=*) builds+=("$1"); shift ;;
    *) echo "usage: $0 [--busy N] [--rounds R] LABEL=BIN_DIR..." >&2; exit 2 ;;
  esac
done
[ ${#builds[@]} -gt 0 ] || { echo "usage: $0 [--busy N] [--rounds R] LABEL=BIN_DIR..." >&2; exit 2; }
HELLO=$(pwd)/examples/target/wasm/hello_fl.wasm
[ -f "$HELLO" ] || { echo "error: $HELLO is missing: run examples/build.sh" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cat >"$work/busy.js" <<'JS'
function fl_main(input) {
  const end = Date.now() + (input.ms || 12000);
  let n = 0;
  while (Date.now() < end) { n++; }
  return { n };
}
JS

# measure <label> <bin dir> <busy loops>
measure() {
  local label=$1 bin=$2 busy=$3
  local dir="$work/$label-$RANDOM" api cluster token
  mkdir -p "$dir"
  api=$(port); cluster=$(port)
  "$bin/funless-core" --data-dir "$dir/core" --listen "127.0.0.1:$api" --cluster-listen 127.0.0.1 \
    --cluster-port "$cluster" --cookie bench >"$dir/core.log" 2>&1 &
  local run_pids=($!)
  for _ in $(seq 100); do grep -q "api listening" "$dir/core.log" && break; sleep 0.1; done
  for w in w1 w2; do
    "$bin/funless-worker" --core "127.0.0.1:$cluster" --cookie bench --name "$w" \
      --cluster-listen 127.0.0.1 --cache-dir "$dir/$w" >"$dir/$w.log" 2>&1 &
    run_pids+=($!)
  done
  pids+=("${run_pids[@]}")
  for w in w1 w2; do
    for _ in $(seq 100); do grep -q "worker gateway ready" "$dir/$w.log" && break; sleep 0.1; done
  done
  export FL_CONFIG="$dir/core/fl-config.toml"
  token=$(sed -n 's/^token = "\(.*\)"/\1/p' "$FL_CONFIG")
  local admin
  admin=$(sed -n 's/^admin_token = "\(.*\)"/\1/p' "$FL_CONFIG")
  for _ in $(seq 100); do
    [ "$(curl -s -H "Authorization: Bearer $admin" "http://127.0.0.1:$api/v1/workers" \
      | grep -o '"state":"ready"' | wc -l)" -ge 2 ] && break
    sleep 0.1
  done
  "$bin/fl" fn upload busy "$work/busy.js" --timeout-ms 60000 >/dev/null
  "$bin/fl" fn upload hello "$HELLO" >/dev/null
  call() {
    curl -s -o "$2" -w '%{http_code} %{time_total}\n' -H "Authorization: Bearer $token" \
      -H 'content-type: application/json' -d "$3" "http://127.0.0.1:$api/v1/fn/_/$1"
  }
  for _ in $(seq 20); do call hello /dev/null '{"args":{"name":"warm"}}' >/dev/null; done
  local loops=()
  for i in $(seq "$busy"); do
    call busy "$dir/busy.$i" '{"args":{"ms":12000}}' >/dev/null &
    loops+=($!)
  done
  # Let the loops start (each is placed and running well before this).
  [ "$busy" -gt 0 ] && sleep 2
  for _ in $(seq 40); do call hello /dev/null '{"args":{"name":"bench"}}'; done >"$dir/hello"
  for l in "${loops[@]}"; do wait "$l" || true; done
  local counts=""
  [ "$busy" -gt 0 ] && counts=$(cat "$dir"/busy.* | grep -o '"n":[0-9]*' | cut -d: -f2 | sort -n | tr '\n' ' ')
  python3 - "$label" "$busy" "$dir/hello" "$counts" <<'PY'
import sys
label, busy, path, counts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split()
rows = [line.split() for line in open(path)]
ok = sorted(float(t) * 1000 for code, t in rows if code == "200")
pick = lambda q: ok[min(len(ok) - 1, int(q * len(ok)))]
share = ""
if counts:
    n = [int(c) for c in counts]
    share = f"  busy loops {len(n)}/{busy} answered, iterations max/min {max(n) / min(n):.2f}"
print(f"{label:12} beside {busy} busy: hello {len(ok)}/{len(rows)} ok, p50 {pick(0.5):.1f} ms, "
      f"p90 {pick(0.9):.1f} ms, max {ok[-1]:.1f} ms{share}")
PY
  kill "${run_pids[@]}" 2>/dev/null || true
  wait "${run_pids[@]}" 2>/dev/null || true
}

for build in "${builds[@]}"; do measure "${build%%=*}" "${build#*=}" 0; done
for round in $(seq "$ROUNDS"); do
  for build in "${builds[@]}"; do measure "${build%%=*}" "${build#*=}" "$BUSY"; done
done
