#!/usr/bin/env bash
# The `hello` comparison driven by Debian's wrk (docs/BENCHMARKS.md, "wrk comparison"): builds
# the example functions and the release binaries, then runs `funless-bench wrk`, which starts
# the HTTP floor, `wasmtime serve`, the Core with one Worker and the Core with its worker
# embedded on free 127.0.0.1 ports, runs wrk at 1, 4 and 64 connections against each, prints
# the table and stops everything it started.
# Usage: bench/wrk.sh [--secs 8] [--also before=/path/to/other/release] [--out table.md]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
examples/build.sh >/dev/null
cargo build --release -p funless-core -p funless-worker -p funless-bench
BIN=${CARGO_TARGET_DIR:-target}/release
exec "$BIN/funless-bench" wrk --bin-dir "$BIN" "$@"
