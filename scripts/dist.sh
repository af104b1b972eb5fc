#!/usr/bin/env bash
# dist.sh ARCH BINARY writes dist/tracr-<version>-linux-<ARCH>.tar.gz: one
# file a user copies to a machine of that architecture (a Raspberry Pi 4/5 or
# a Jetson for arm64) and unpacks. It holds the tracr binary, the matching
# ONNX Runtime library beside it (where the binary looks first when
# TRACR_ORT_LIB is not set), the example configs, the sample images they
# name, and INSTALL. `make dist` runs it for amd64 and arm64.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "dist: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: scripts/dist.sh amd64|arm64 BINARY"
arch=$1 bin=$2
case "$arch" in
amd64) want="x86-64" ;;
arm64) want="aarch64" ;;
*) die "unknown architecture \"$arch\": want amd64 or arm64" ;;
esac
[ -f "$bin" ] || die "$bin does not exist (make build, or make build-arm64)"
# The ELF header's machine field (bytes 18-19, little endian): 0x3e x86-64,
# 0xb7 aarch64. A binary of the wrong architecture would be packed with the
# wrong library.
machine=$(od -An -tx1 -j18 -N2 "$bin" | tr -d ' \n')
case "$machine" in
3e00) got=x86-64 ;;
b700) got=aarch64 ;;
*) got="unknown ($machine)" ;;
esac
[ "$got" = "$want" ] || die "$bin is built for $got, not $want"

bash scripts/setup-ort.sh "$arch" >&2
lib=$(bash scripts/setup-ort.sh --print-path "$arch")
version=$(git describe --always --dirty 2>/dev/null || echo dev)
name="tracr-${version}-linux-${arch}"

stage=$(mktemp -d)
part=""
trap 'rm -rf "$stage"; [ -z "$part" ] || rm -f "$part"' EXIT
root="$stage/$name"
mkdir -p "$root/config" "$root/data"
cp "$bin" "$root/tracr"
cp "$lib" "$root/libonnxruntime.so.1"
cp config/*.toml config/*.csv "$root/config/"
cp -r data/samples "$root/data/"
cat >"$root/INSTALL" <<NOTE
tracr ${version} for linux/${arch}, with ONNX Runtime 1.30.0 beside it.

1. Unpack anywhere and stay in the folder:
     tar -xzf ${name}.tar.gz && cd ${name}
     ./tracr version        # prints tracr's and ONNX Runtime's versions
   The binary loads libonnxruntime.so.1 from its own folder (or from
   TRACR_ORT_LIB when that is set).
2. Keys, made once on either machine (SERVER is the server's address as the
   edge reaches it):
     ./tracr keys init --host SERVER:2222
   Copy config/keys to the other machine's tracr folder. The private keys
   stay in config/keys: keep them out of version control.
3. On the server, run what keys init printed, e.g.
     ./tracr serve --listen 0.0.0.0:2222
4. On the edge (the board):
     ./tracr probe --server SERVER:2222
     ./tracr plan --model alexnet --server SERVER:2222
     ./tracr run --config config/alexnet.toml --server SERVER:2222
   The configs read images from data/samples and write to results/.
NOTE

mkdir -p dist
part=$(mktemp "dist/.${name}.XXXXXX")
tar -czf "$part" -C "$stage" "$name"
chmod 0644 "$part"
mv -f "$part" "dist/${name}.tar.gz"
part=""
echo "dist: wrote dist/${name}.tar.gz"
