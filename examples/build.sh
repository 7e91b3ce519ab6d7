#!/usr/bin/env bash
# Builds the example guest functions (release) and collects them at the stable paths tests use:
# core modules for wasm32-wasip1 in examples/target/wasm/<crate>.wasm, WASI 0.2 components
# for wasm32-wasip2 in examples/target/wasm/<name>_p2.wasm (crate `x_wasi` → `x_p2.wasm`), and
# the Python functions of python/ in examples/target/wasm/<name>_py.wasm, built by `fl fn
# build` with componentize-py when it is installed (FUNLESS_REQUIRE_PYTHON=1: an error when
# it is not). Works from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
# fl (for the Python functions) is the workspace's, built in the caller's target folder.
workspace_target=${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}

MODULES=(
    hello_fl hello_wasi
    env_fl env_wasi
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
    hello_wasi env_wasi sleep_wasi matrix_mult_wasi fail_wasi
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

# Python functions: the folders of python/ (app.py with main(args)) and its single files. The
# build takes ~15 s each, so an output newer than its sources and fl's Python files is kept.
PYTHON_FUNCTIONS=(hello sleep matrix_mult network_benchmark fail)
componentize_py_version=0.25.1
if ! command -v componentize-py >/dev/null; then
    if [[ ${FUNLESS_REQUIRE_PYTHON:-} == 1 ]]; then
        echo "error: FUNLESS_REQUIRE_PYTHON=1 and componentize-py is not installed: pip install componentize-py==$componentize_py_version" >&2
        exit 1
    fi
    echo "note: the Python examples are not built: componentize-py is not installed (pip install componentize-py==$componentize_py_version)" >&2
    exit 0
fi
fl_python=$(cd .. && pwd)/cli/templates/python/shim
fl=""
for function in "${PYTHON_FUNCTIONS[@]}"; do
    src=python/$function
    [[ -d $src ]] || src=$src.py
    out=$out_dir/${function}_py.wasm
    if [[ -f $out && -z $(find "$src" "$fl_python" -newer "$out" -not -path '*/build/*' -print -quit) ]]; then
        printf '%8d bytes  %s (up to date)\n' "$(wc -c < "$out")" "$out"
        continue
    fi
    if [[ -z $fl ]]; then
        # From the workspace's folder: this one's cargo config builds for WebAssembly.
        (cd .. && CARGO_TARGET_DIR=$workspace_target cargo build --quiet -p fl)
        fl=$workspace_target/debug/fl
    fi
    "$fl" fn build "${function}_py" "$src" -d "$out_dir" >/dev/null
    printf '%8d bytes  %s\n' "$(wc -c < "$out")" "$out"
done
