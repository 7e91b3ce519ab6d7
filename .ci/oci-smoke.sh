#!/usr/bin/env bash
# Runs the x86_64 images that deploy/oci/build.sh saved, as a container runtime would (their
# user, working directory, environment and health checks), with buildah's chroot isolation on
# the host's network: a Core container and a Worker container joined by cookie, then the
# quick start through them with the native fl (a FunLess-ABI and a JavaScript function).
# Checks that the health checks fail before the processes answer and pass after, and that both
# processes run as the image's non-root user.
#
# Usage: .ci/oci-smoke.sh OCI_DIR NATIVE_BIN_DIR
#   OCI_DIR holds funless-core-amd64.tar and funless-worker-amd64.tar (deploy/oci/build.sh);
#   NATIVE_BIN_DIR holds the host's fl. Needs root, buildah, curl and jq, and the examples
#   built by examples/build.sh (built here when missing).
set -euo pipefail

usage="usage: $0 OCI_DIR NATIVE_BIN_DIR"
oci=$(realpath "${1:?$usage}")
fl="$(realpath "${2:?$usage}")/fl"
repo=$(cd "$(dirname "$0")/.." && pwd)
b=(buildah --storage-driver vfs)
for tool in buildah curl jq; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing" >&2; exit 1; }
done
[ -x "$fl" ] || { echo "error: $fl is missing" >&2; exit 1; }
[ -f "$repo/examples/target/wasm/hello_fl.wasm" ] || "$repo/examples/build.sh"

work=$(mktemp -d)
containers=()
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$status" != 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] || continue
      echo "--- last lines of $(basename "$log")" >&2
      tail -n 30 "$log" >&2
    done
  fi
  for c in "${containers[@]}"; do "${b[@]}" rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A container of the image in docker-archive $1; prints its name.
container_of() {
  local c
  c=$("${b[@]}" from --quiet "docker-archive:$1")
  containers+=("$c")
  echo "$c"
}

# Runs the image's HEALTHCHECK command inside container $1 with the options "${@:2}" (its
# environment); the exit code is the check's.
health_check() {
  local c=$1 test
  shift
  mapfile -t test < <("${b[@]}" inspect "$c" | jq -r '.Docker.config.Healthcheck.Test // [] | .[]')
  [ "${test[0]:-}" = CMD ] || fail "the health check of $c is not an exec-form CMD: ${test[*]:-none}"
  "${b[@]}" run --isolation chroot "$@" "$c" -- "${test[@]:1}" >/dev/null 2>&1
}

# Waits (at most $2 seconds) until container $1's health check passes with env "${@:4}";
# fails early when process $3 ends.
wait_healthy() {
  local c=$1 deadline=$(($(date +%s) + $2)) pid=$3
  shift 3
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || fail "the process of $c ended before it was healthy"
    health_check "$c" "$@" && return 0
    sleep 1
  done
  fail "$c not healthy within the deadline"
}

# The processes below process $1, depth first.
descendants() {
  local child
  for child in $(pgrep -P "$1"); do
    echo "$child"
    descendants "$child"
  done
}

# The uid of the process named $1 that container run $2 started (other runs on the machine,
# a CI run's tests or another CI run, may have processes of that name too).
uid_of() {
  local pid
  for pid in $(descendants "$2"); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && ps -o uid= -p "$pid" | tr -d ' '
  done | sort -u
}

api=$(free_port)
cluster=$(free_port)
metrics=$(free_port)
core_env=(--env "FUNLESS_LISTEN=127.0.0.1:$api" --env FUNLESS_CLUSTER_LISTEN=127.0.0.1
  --env "FUNLESS_CLUSTER_PORT=$cluster")
worker_env=(--env "FUNLESS_METRICS_LISTEN=127.0.0.1:$metrics")

echo "== the Core's image"
core=$(container_of "$oci/funless-core-amd64.tar")
# Before the Core runs, its health check must fail (so a pass later means something).
if health_check "$core" "${core_env[@]}"; then fail "the Core's health check passed with no Core running"; fi
# The data volume is a host folder owned by the image's user, as a volume mount would be.
data="$work/core-data"
mkdir -p "$data" && chown 10001:10001 "$data"
"${b[@]}" run --isolation chroot "${core_env[@]}" -v "$data:/var/lib/funless:rw" "$core" -- /usr/local/bin/funless-core \
  >"$work/core.log" 2>&1 &
pids+=($!)
wait_healthy "$core" 60 "${pids[-1]}" "${core_env[@]}"
core_pid=${pids[-1]}
[ "$(uid_of funless-core "$core_pid")" = 10001 ] \
  || fail "funless-core runs as uid $(uid_of funless-core "$core_pid"), not 10001"
[ -s "$data/cookie" ] && [ -s "$data/fl-config.toml" ] || fail "the Core wrote no cookie or fl-config.toml to its data volume"
echo "  healthy, as uid 10001, with its cookie and tokens in /var/lib/funless"

echo "== the Worker's image, joined to the Core by cookie"
worker=$(container_of "$oci/funless-worker-amd64.tar")
worker_env+=(--env "FUNLESS_CORE=127.0.0.1:$cluster" --env "FUNLESS_COOKIE=$(head -n1 "$data/cookie")"
  --env FUNLESS_CLUSTER_LISTEN=127.0.0.1 --env FUNLESS_WORKER_NAME=oci1)
if health_check "$worker" "${worker_env[@]}"; then fail "the Worker's health check passed with no Worker running"; fi
"${b[@]}" run --isolation chroot "${worker_env[@]}" "$worker" -- /usr/local/bin/funless-worker \
  >"$work/worker.log" 2>&1 &
pids+=($!)
wait_healthy "$worker" 60 "${pids[-1]}" "${worker_env[@]}"
worker_pid=${pids[-1]}
[ "$(uid_of funless-worker "$worker_pid")" = 10001 ] \
  || fail "funless-worker runs as uid $(uid_of funless-worker "$worker_pid"), not 10001"
token=$(sed -n 's/^admin_token = "\(.*\)"$/\1/p' "$data/fl-config.toml")
deadline=$(($(date +%s) + 60))
until curl -sf -m 5 -H "Authorization: Bearer $token" "http://127.0.0.1:$api/v1/workers" \
  | jq -e '.data[] | select(.name == "oci1" and .state == "ready")' >/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "worker oci1 not ready in the Core within 60 s"
  sleep 1
done
echo "  healthy, as uid 10001, ready in the Core"

echo "== the quick start through both containers"
export FL_CONFIG="$data/fl-config.toml"
for name in hello_fl hello_js; do
  case $name in
    hello_js) file="$repo/examples/js/hello.js" ;;
    *) file="$repo/examples/target/wasm/$name.wasm" ;;
  esac
  answer=$(timeout 300 "$fl" --json fn create "$name" "$file") || fail "upload of $name: $answer"
  answer=$(timeout 60 "$fl" --json fn invoke "$name" --args name=oci) || fail "invoke $name: $answer"
  [ "$(echo "$answer" | jq -r '.data.payload')" = "Hello oci!" ] || fail "invoke $name answered $answer"
  ran_on=$("$fl" --json activation list "$name" | jq -r '[.data[].worker] | unique | join(",")')
  [ "$ran_on" = oci1 ] || fail "$name ran on '$ran_on', not on oci1"
  echo "  $name: Hello oci! (ran on oci1)"
done
echo "== the images ran: health checks, non-root user, Core and Worker joined, functions answered"
