#!/usr/bin/env bash
# setup-ort.sh fetches the ONNX Runtime shared library tracr is built and
# tested against and caches it outside the repository.
#
# The library comes from the npm package onnxruntime-node, fetched with
# `npm pack --ignore-scripts` (never `npm install`: its postinstall script
# downloads from hosts we cannot reach). Only the x86_64 Linux library is
# extracted, its sha256 is checked, and it is moved into place atomically, so
# an interrupted or corrupted download never leaves a half-written file.
#
# Set TRACR_ORT_LIB to an existing library to skip all of this.
set -euo pipefail

ORT_VERSION=1.30.0
NPM_PKG="onnxruntime-node@${ORT_VERSION}"
TAR_MEMBER="package/bin/napi-v6/linux/x64/libonnxruntime.so.1"
WANT_SHA256=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23

die() { echo "setup-ort: $*" >&2; exit 1; }

# The same directory Go's os.UserCacheDir gives the engine package on Linux.
case "${XDG_CACHE_HOME:-}" in
"") [ -n "${HOME:-}" ] || die "neither \$XDG_CACHE_HOME nor \$HOME is set" ;;
/*) ;;
*) die "XDG_CACHE_HOME=$XDG_CACHE_HOME is relative; it must be an absolute path" ;;
esac
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tracr/onnxruntime-${ORT_VERSION}"
LIB="${CACHE_DIR}/libonnxruntime.so.1"
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -n "${TRACR_ORT_LIB:-}" ]; then
	if [ -f "$TRACR_ORT_LIB" ]; then
		echo "setup-ort: using TRACR_ORT_LIB=$TRACR_ORT_LIB; nothing to fetch"
		exit 0
	fi
	die "TRACR_ORT_LIB=$TRACR_ORT_LIB does not exist; unset it to fetch ONNX Runtime ${ORT_VERSION} into $LIB"
fi

os=$(uname -s)
arch=$(uname -m)
if [ "$os" != Linux ] || [ "$arch" != x86_64 ]; then
	die "only x86_64 Linux is supported (this is $os $arch); build ONNX Runtime ${ORT_VERSION} yourself and set TRACR_ORT_LIB to its shared library"
fi

if [ -f "$LIB" ]; then
	if [ "$(sha256_of "$LIB")" = "$WANT_SHA256" ]; then
		echo "setup-ort: ONNX Runtime ${ORT_VERSION} already present at $LIB"
		exit 0
	fi
	echo "setup-ort: $LIB has the wrong sha256; fetching it again"
fi

command -v npm >/dev/null || die "npm is needed to fetch ${NPM_PKG}; install Node.js/npm"
command -v tar >/dev/null || die "tar is needed to unpack ${NPM_PKG}"
command -v sha256sum >/dev/null || die "sha256sum is needed to verify ${NPM_PKG}"

tmp=$(mktemp -d)
part=""
trap 'rm -rf "$tmp"; [ -z "$part" ] || rm -f "$part"' EXIT

echo "setup-ort: fetching ${NPM_PKG} from the npm registry (npm pack --ignore-scripts)"
tgz=$(cd "$tmp" && npm pack "$NPM_PKG" --ignore-scripts --silent | tail -n 1)
[ -n "$tgz" ] && [ -f "$tmp/$tgz" ] || die "npm pack ${NPM_PKG} produced no tarball"

echo "setup-ort: extracting $TAR_MEMBER"
tar -xzf "$tmp/$tgz" -C "$tmp" "$TAR_MEMBER" || die "${NPM_PKG} has no $TAR_MEMBER"

got=$(sha256_of "$tmp/$TAR_MEMBER")
if [ "$got" != "$WANT_SHA256" ]; then
	die "sha256 mismatch for $TAR_MEMBER from ${NPM_PKG}: got $got, want $WANT_SHA256; nothing installed"
fi

mkdir -p "$CACHE_DIR"
# Copy into the destination directory first so the final rename is atomic
# (same file system), then move it over any stale file.
part=$(mktemp "$CACHE_DIR/.libonnxruntime.so.1.XXXXXX")
cp "$tmp/$TAR_MEMBER" "$part"
chmod 0644 "$part"
mv -f "$part" "$LIB"
part=""
echo "setup-ort: installed ONNX Runtime ${ORT_VERSION} at $LIB"
