#!/usr/bin/env bash
# Builds the example guest functions (release) and collects them at the stable paths tests use:
# core modules for wasm32-wasip1 in examples/target/wasm/<crate>.wasm, and WASI 0.2 components
# for wasm32-wasip2 in examples/target/wasm/<name>_p2.wasm (crate `x_wasi` → `x_p2.wasm`).
# Works from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

MODULES=(
    hello_fl hello_wasi
    sleep_fl sleep_wasi
    matrix_mult_fl matrix_mult_wasi
    fail_fl fail_wasi
    regex_fl
    network_benchmark_fl
    sdk_http_fl
    ticker_service
)
# WASI 0.2 components: the WASI commands again, the functions that need wasi:sockets or
# wasi:http, hello_http, a wasi:http/proxy server component (for `wasmtime serve`), and the
# component services.
COMPONENTS=(
    hello_wasi sleep_wasi matrix_mult_wasi fail_wasi
    server_reply_wasi network_benchmark_wasi
    hello_http
    poller_service line_bridge_service
)

# The guest targets, added once if this toolchain lacks them.
for target in wasm32-wasip1 wasm32-wasip2; do
    if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
        rustup target add "$target"
    fi
done

# Always build into examples/target, even when the caller points CARGO_TARGET_DIR elsewhere.
export CARGO_TARGET_DIR="$(pwd)/target"
packages() { for p in "$@"; do printf -- '-p %s ' "$p"; done; }
# shellcheck disable=SC2046
cargo build --release --target wasm32-wasip1 $(packages "${MODULES[@]}")
# shellcheck disable=SC2046
cargo build --release --target wasm32-wasip2 $(packages "${COMPONENTS[@]}")

target_dir=$(pwd)/target
out_dir=$target_dir/wasm
mkdir -p "$out_dir"
collect() { # <target> <crate> <name>
    local src=$target_dir/$1/release/$2.wasm
    if [[ ! -f $src ]]; then
        echo "error: $src was not built" >&2
        exit 1
    fi
    cp "$src" "$out_dir/$3.wasm"
    printf '%8d bytes  %s\n' "$(wc -c < "$out_dir/$3.wasm")" "$out_dir/$3.wasm"
}
for module in "${MODULES[@]}"; do
    collect wasm32-wasip1 "$module" "$module"
done
for component in "${COMPONENTS[@]}"; do
    collect wasm32-wasip2 "$component" "${component%_wasi}_p2"
done
