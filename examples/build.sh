#!/usr/bin/env bash
# Builds the example guest functions for wasm32-wasip1 (release) and collects the modules in
# examples/target/wasm/<crate>.wasm, the stable path tests use. Works from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

MODULES=(
    hello_fl hello_wasi
    sleep_fl sleep_wasi
    matrix_mult_fl matrix_mult_wasi
    fail_fl fail_wasi
    regex_fl
    network_benchmark_fl
)
TARGET=wasm32-wasip1

# The guest target, added once if this toolchain lacks it.
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi

# Always build into examples/target, even when the caller points CARGO_TARGET_DIR elsewhere.
export CARGO_TARGET_DIR="$(pwd)/target"
cargo build --release --target "$TARGET"

target_dir=$(pwd)/target
out_dir=$target_dir/wasm
mkdir -p "$out_dir"
for module in "${MODULES[@]}"; do
    src=$target_dir/$TARGET/release/$module.wasm
    if [[ ! -f $src ]]; then
        echo "error: $src was not built" >&2
        exit 1
    fi
    cp "$src" "$out_dir/$module.wasm"
    printf '%8d bytes  %s\n' "$(wc -c < "$out_dir/$module.wasm")" "$out_dir/$module.wasm"
done
