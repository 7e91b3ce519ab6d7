#!/usr/bin/env bash
# The paper's evaluation in one command: builds the example functions and the release binaries,
# then runs `funless-bench eval`, which starts its own Core and Worker (SQLite in a temporary
# directory) on free 127.0.0.1 ports, runs the workloads, the floors and the `wasmtime serve`
# peer (when the Wasmtime CLI is installed, see docs/BENCHMARKS.md), and writes report.md and
# PNG plots to docs/bench/ (or --out). Stops everything it started, also on error or Ctrl-C.
# Usage: bench/eval.sh [eval options: --repeat 5 --memory-secs 300 --short --only hello,... ]
set -euo pipefail
cd "$(dirname "$0")/.."
examples/build.sh >/dev/null
cargo build --release -p funless-core -p funless-worker -p funless-bench
BIN=${CARGO_TARGET_DIR:-target}/release
exec "$BIN/funless-bench" eval --bin-dir "$BIN" "$@"
