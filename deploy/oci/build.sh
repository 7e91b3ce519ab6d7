#!/usr/bin/env bash
# Builds the static binaries and the FROM-scratch images of funless-core and funless-worker for
# x86_64 (amd64) and 64-bit ARM (arm64), with no Docker daemon, no registry and no emulation:
#   1. `cargo zigbuild` links funless-core, funless-worker and fl statically against musl for
#      x86_64-unknown-linux-musl and aarch64-unknown-linux-musl (zig is the C cross compiler of
#      SQLite, aws-lc, ring and mimalloc for both architectures);
#   2. buildah builds deploy/oci/Containerfile.{core,worker} for each architecture (the images
#      only copy files, so nothing foreign runs) and saves each as a docker-archive:
#      OUT/funless-core-amd64.tar, ... (`docker load -i FILE` or `podman load -i FILE`);
#   3. it prints the sizes and writes them to OUT/sizes.tsv (kind, name, arch, bytes), which
#      .ci/artifact-sizes.py compares with the README.
#
# Usage: deploy/oci/build.sh [--out DIR] [--arch amd64|arm64]...  (default: both, OUT=target/oci)
# Needs: root (buildah with vfs storage and chroot isolation), buildah, the rustup targets,
# ziglang (pip) and cargo-zigbuild (cargo install); .ci/run installs them all.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
out="$target_dir/oci"
arches=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --arch) arches+=("$2"); shift 2 ;;
    *) echo "usage: $0 [--out DIR] [--arch amd64|arm64]..." >&2; exit 2 ;;
  esac
done
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)
buildah=(buildah --storage-driver vfs)

triple_of() {
  case "$1" in
    amd64) echo x86_64-unknown-linux-musl ;;
    arm64) echo aarch64-unknown-linux-musl ;;
    *) echo "error: unknown architecture $1 (amd64 or arm64)" >&2; return 1 ;;
  esac
}

for tool in buildah cargo-zigbuild gzip; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing (see .ci/run)" >&2; exit 1; }
done
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca_bundle" ] || { echo "error: no CA bundle at $ca_bundle (apt-get install ca-certificates)" >&2; exit 1; }

mkdir -p "$out"
sizes="$out/sizes.tsv"
: >"$sizes"
for arch in "${arches[@]}"; do
  triple=$(triple_of "$arch")
  echo "== static binaries for $triple"
  # fl on its own: built with the servers, it would get their dependencies' features (cargo
  # unifies them within one build) and grow by half.
  (cd "$repo" && cargo zigbuild --release --locked --target "$triple" -p funless-core -p funless-worker \
    && cargo zigbuild --release --locked --target "$triple" -p fl)
  bin="$target_dir/$triple/release"
  for binary in funless-core funless-worker fl; do
    # Refuse a binary that would need a C library or loader the image does not have.
    if LC_ALL=C readelf -l "$bin/$binary" | grep -q 'Requesting program interpreter'; then
      echo "error: $bin/$binary is dynamically linked" >&2
      exit 1
    fi
    printf 'binary\t%s\t%s\t%d\n' "$binary" "$arch" "$(stat -c %s "$bin/$binary")" >>"$sizes"
  done

  for role in core worker; do
    context=$(mktemp -d)
    trap 'rm -rf "$context"' EXIT
    mkdir -p "$context/rootfs/etc/ssl/certs" "$context/data"
    [ "$role" = worker ] && mkdir -p "$context/data/cache"
    printf 'root:x:0:0:root:/:/sbin/nologin\nfunless:x:10001:10001:FunLess:/var/lib/funless:/sbin/nologin\n' \
      >"$context/rootfs/etc/passwd"
    printf 'root:x:0:\nfunless:x:10001:\n' >"$context/rootfs/etc/group"
    cp "$ca_bundle" "$context/rootfs/etc/ssl/certs/ca-certificates.crt"
    cp "$bin/funless-$role" "$context/"
    image="funless-$role:$version-$arch"
    echo "== image $image"
    # --timestamp 0: the image's bytes depend on its files only, not on when it was built.
    "${buildah[@]}" build --quiet --isolation chroot --format docker --timestamp 0 \
      --platform "linux/$arch" -f "$repo/deploy/oci/Containerfile.$role" -t "$image" "$context" >/dev/null
    archive="$out/funless-$role-$arch.tar"
    rm -f "$archive"
    "${buildah[@]}" push --quiet "$image" "docker-archive:$archive:$image"
    printf 'image\tfunless-%s\t%s\t%d\n' "$role" "$arch" "$(stat -c %s "$archive")" >>"$sizes"
    printf 'image-gzip\tfunless-%s\t%s\t%d\n' "$role" "$arch" "$(gzip -9 -c "$archive" | wc -c)" >>"$sizes"
    rm -rf "$context"
    trap - EXIT
  done
done

echo "== sizes (bytes; image: the docker-archive as loaded, image-gzip: what a registry sends)"
awk -F "\t" '{ printf "%-12s %-16s %-6s %12d\n", $1, $2, $3, $4 }' "$sizes"
