#!/usr/bin/env bash
# Runs the aarch64 binaries under qemu-user and drives the quick start against them:
#  a) single node: the aarch64 `funless-core --embedded-worker`, driven by the native `fl`;
#  b) mixed architectures: the native x86_64 Core with an aarch64 `funless-worker` joined by
#     cookie, which must compile and run the functions itself.
# Each part uploads and invokes a Rust (FunLess ABI), a WASI command and a JavaScript function
# and checks the answers, and prints its timings (start-up, upload, first call, warm call).
#
# Usage: .ci/arm-qemu.sh AARCH64_BIN_DIR NATIVE_BIN_DIR
#   AARCH64_BIN_DIR holds funless-core and funless-worker built for aarch64: static
#   (aarch64-unknown-linux-musl, deploy/oci/build.sh; what .ci/run passes) or dynamic
#   (aarch64-unknown-linux-gnu, which also needs the aarch64 C library: libc6-arm64-cross);
#   NATIVE_BIN_DIR holds the host's funless-core and fl. Needs qemu-aarch64 (Debian's qemu-user),
#   readelf, curl and jq, and the examples built by examples/build.sh (built here when missing).
#
# Both binaries compile guest code in a child process of themselves (`/proc/self/exe`); under
# qemu-user that exec needs the kernel to hand aarch64 ELF files to qemu. Unless binfmt_misc
# already does so, the script re-runs itself in a user namespace with a binfmt_misc instance of
# its own (Linux 6.7 and later) and registers qemu-aarch64 there: nothing of the host changes.
set -euo pipefail

usage="usage: $0 AARCH64_BIN_DIR NATIVE_BIN_DIR"
arm_dir=$(realpath "${1:?$usage}")
native_dir=$(realpath "${2:?$usage}")
repo=$(cd "$(dirname "$0")/.." && pwd)
script="$repo/.ci/arm-qemu.sh"

export NO_COLOR=1
for binary in "$arm_dir/funless-core" "$arm_dir/funless-worker" "$native_dir/funless-core" "$native_dir/fl"; do
  [ -x "$binary" ] || { echo "error: $binary is missing" >&2; exit 1; }
done
for tool in qemu-aarch64 readelf curl jq; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing" >&2; exit 1; }
done
# A dynamic build runs against the cross C library (qemu's -L); a static one needs nothing.
qemu_args=()
if LC_ALL=C readelf -l "$arm_dir/funless-core" | grep -q 'Requesting program interpreter'; then
  sysroot=/usr/aarch64-linux-gnu
  export QEMU_LD_PREFIX="$sysroot"
  qemu_args=(-L "$sysroot")
  [ -e "$sysroot/lib/ld-linux-aarch64.so.1" ] || {
    echo "error: no aarch64 C library under $sysroot (apt-get install libc6-arm64-cross)" >&2
    exit 1
  }
  echo "== aarch64 binaries: dynamic, run against $sysroot"
else
  echo "== aarch64 binaries: static"
fi

# aarch64 ELF executables (e_ident, e_type EXEC or DYN, e_machine 183), for binfmt_misc.
binfmt_rule=':funless-qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:'"$(command -v qemu-aarch64)"':'
if ! "$arm_dir/funless-core" --version >/dev/null 2>&1; then
  if [ -z "${FUNLESS_ARM_QEMU_NS:-}" ]; then
    echo "== aarch64 executables do not run directly: re-running in a user namespace with its own binfmt_misc"
    exec env FUNLESS_ARM_QEMU_NS=1 unshare --user --map-root-user --mount bash "$script" "$arm_dir" "$native_dir"
  fi
  binfmt=$(mktemp -d)
  mount -t binfmt_misc binfmt_misc "$binfmt"
  printf '%s' "$binfmt_rule" >"$binfmt/register"
  "$arm_dir/funless-core" --version >/dev/null || {
    echo "error: aarch64 executables still do not run (binfmt_misc in a user namespace needs Linux 6.7)" >&2
    exit 1
  }
fi

wasm="$repo/examples/target/wasm"
if [ ! -f "$wasm/hello_fl.wasm" ] || [ ! -f "$wasm/hello_wasi.wasm" ]; then
  "$repo/examples/build.sh"
fi
js="$repo/examples/js/hello.js"
fl="$native_dir/fl"

work=$(mktemp -d)
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # qemu processes stop within seconds; anything left after 10 s is killed.
  for _ in $(seq 1 20); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$status" != 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] || continue
      echo "--- last lines of $(basename "$log")" >&2
      tail -n 30 "$log" >&2
    done
  fi
  rm -rf "$work"
  if [ -n "${binfmt:-}" ]; then umount "$binfmt" 2>/dev/null || true; rmdir "$binfmt" 2>/dev/null || true; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Address space of each process under qemu (RLIMIT_AS, KiB). The worker tries Wasmtime's pooling
# allocator at start-up in a child that reserves terabytes of address space; qemu-user keeps
# state for every reserved guest page (24 GB resident for that probe, until the kernel's OOM
# killer ends it, or something else). Under 16 GiB the reservation fails at once and the worker
# falls back to the on-demand allocator; one on-demand instance reserves ~8 GiB.
arm_address_space_kib=$((16 * 1024 * 1024))
# Starts an aarch64 program under qemu in the background (its pid is the qemu process's).
run_arm() {
  local log=$1
  shift
  (ulimit -v "$arm_address_space_kib" && exec qemu-aarch64 "${qemu_args[@]}" "$@") >"$log" 2>&1 &
}

now_ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
fail() { echo "FAIL: $*" >&2; exit 1; }
token_of() { sed -n "s/^$2 = \"\(.*\)\"\$/\1/p" "$1/fl-config.toml" 2>/dev/null; }

# Waits (at most $4 seconds) until the Core at $1 (data dir $2) lists worker $3 as ready;
# fails early when process $5 ends.
wait_worker_ready() {
  local url=$1 data=$2 worker=$3 deadline=$(($(date +%s) + $4)) pid=$5 token
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || fail "process $pid ended while waiting for worker $worker"
    token=$(token_of "$data" admin_token)
    if [ -n "$token" ] && curl -sf -m 5 -H "Authorization: Bearer $token" "$url/v1/workers" \
      | jq -e --arg w "$worker" '.data[] | select(.name == $w and .state == "ready")' >/dev/null 2>&1; then
      return 0
    fi
    sleep 1
  done
  fail "worker $worker not ready within $4 s"
}

# The allocator worker $3 reports to the Core at $1 (data dir $2).
allocator_of() {
  curl -sf -m 5 -H "Authorization: Bearer $(token_of "$2" admin_token)" "$1/v1/workers" \
    | jq -r --arg w "$3" '.data[] | select(.name == $w) | .allocator'
}

# Waits (at most $2 seconds) until $1/health answers; fails early when process $3 ends.
wait_health() {
  local deadline=$(($(date +%s) + $2))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$3" 2>/dev/null || fail "process $3 ended before answering /health"
    curl -sf -m 5 "$1/health" >/dev/null 2>&1 && return 0
    sleep 1
  done
  fail "$1/health did not answer within $2 s"
}

# Uploads the three functions to the Core of data dir $1, invokes each twice and checks that
# worker $2 answered "Hello arm!"; prints one timing line per function.
quick_start() {
  local data=$1 worker=$2 name file started answer uploaded first warm ran_on
  export FL_CONFIG="$data/fl-config.toml"
  printf '  %-11s %12s %12s %12s\n' function upload first-call warm-call
  for name in hello_fl hello_wasi hello_js; do
    case $name in
      hello_js) file=$js ;;
      *) file="$wasm/$name.wasm" ;;
    esac
    started=$(now_ms)
    # The upload waits for the worker to compile the code (the JavaScript engine first).
    answer=$(timeout 600 "$fl" --json fn create "$name" "$file") || fail "upload of $name: $answer"
    uploaded=$(($(now_ms) - started))
    echo "$answer" | jq -e --arg w "$worker" '.data.workers.cached | index($w)' >/dev/null \
      || fail "upload of $name: $worker did not cache it: $answer"
    for call in first warm; do
      started=$(now_ms)
      answer=$(timeout 300 "$fl" --json fn invoke "$name" --args name=arm) || fail "invoke $name: $answer"
      printf -v "$call" '%s' $(($(now_ms) - started))
      [ "$(echo "$answer" | jq -r '.data.payload')" = "Hello arm!" ] \
        || fail "invoke $name answered $answer, not {\"payload\": \"Hello arm!\"}"
    done
    ran_on=$("$fl" --json activation list "$name" | jq -r '[.data[].worker] | unique | join(",")')
    [ "$ran_on" = "$worker" ] || fail "$name ran on '$ran_on', not on $worker"
    printf '  %-11s %9d ms %9d ms %9d ms   (ran on %s)\n' "$name" "$uploaded" "$first" "$warm" "$ran_on"
  done
}

# Checks that every precompiled artifact in the worker's disk cache $1 is aarch64 machine code.
# A file is the magic FLCWASM2, a CRC-32, then Wasmtime's artifact: an ELF file whose
# e_machine (offset 18) is 183 for AArch64 (62 would be x86_64). JavaScript functions are kept
# as source; the engine that runs them is one of the ELF artifacts.
check_artifacts_aarch64() {
  local count=0 file machine
  while IFS= read -r -d '' file; do
    [ "$(od -An -c -j 12 -N 4 "$file" | tr -d ' ')" = '177ELF' ] || continue
    machine=$(od -An -t u2 -j 30 -N 2 "$file" | tr -d ' ')
    [ "$machine" = 183 ] || fail "$file is ELF machine $machine, not aarch64 (183)"
    count=$((count + 1))
  done < <(find "$1" -type f -name '*.cwasm' -print0)
  # hello_fl, hello_wasi and the JavaScript engine.
  [ "$count" -ge 3 ] || fail "expected 3 precompiled aarch64 artifacts in $1, found $count"
  echo "  $count precompiled artifacts in arm1's disk cache, all aarch64 machine code (ELF e_machine 183)"
}

echo "== a) single node: aarch64 funless-core --embedded-worker under qemu-aarch64"
data="$work/single"
api=$(free_port)
cluster=$(free_port)
started=$(now_ms)
run_arm "$work/single-core.log" "$arm_dir/funless-core" --embedded-worker --data-dir "$data" \
  --listen "127.0.0.1:$api" --cluster-listen 127.0.0.1 --cluster-port "$cluster"
core_pid=$!
pids+=("$core_pid")
wait_health "http://127.0.0.1:$api" 300 "$core_pid"
wait_worker_ready "http://127.0.0.1:$api" "$data" embedded 300 "$core_pid"
echo "  start-up (process start to embedded worker ready): $(($(now_ms) - started)) ms;" \
  "allocator: $(allocator_of "http://127.0.0.1:$api" "$data" embedded)"
quick_start "$data" embedded
kill "$core_pid"
wait "$core_pid" || true

echo "== b) mixed architectures: x86_64 funless-core, aarch64 funless-worker under qemu-aarch64"
data="$work/mixed"
api=$(free_port)
cluster=$(free_port)
"$native_dir/funless-core" --data-dir "$data" --listen "127.0.0.1:$api" \
  --cluster-listen 127.0.0.1 --cluster-port "$cluster" >"$work/mixed-core.log" 2>&1 &
core_pid=$!
pids+=("$core_pid")
wait_health "http://127.0.0.1:$api" 120 "$core_pid"
[ -s "$data/cookie" ] || fail "the Core wrote no cookie to $data/cookie"
started=$(now_ms)
run_arm "$work/mixed-worker.log" "$arm_dir/funless-worker" --core "127.0.0.1:$cluster" \
  --cookie-file "$data/cookie" --name arm1 --cluster-listen 127.0.0.1 \
  --cache-dir "$work/arm1-cache"
worker_pid=$!
pids+=("$worker_pid")
wait_worker_ready "http://127.0.0.1:$api" "$data" arm1 300 "$worker_pid"
echo "  start-up (worker process start to ready in the Core): $(($(now_ms) - started)) ms;" \
  "allocator: $(allocator_of "http://127.0.0.1:$api" "$data" arm1)"
quick_start "$data" arm1
check_artifacts_aarch64 "$work/arm1-cache"

echo "== aarch64 under qemu: single node and mixed-architecture cluster passed"
