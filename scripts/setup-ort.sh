#!/usr/bin/env bash
# setup-ort.sh fetches the ONNX Runtime shared library tracr is built and
# tested against and caches it outside the repository.
#
#   scripts/setup-ort.sh [ARCH]              fetch it for ARCH (amd64 or arm64;
#                                            default: this machine's)
#   scripts/setup-ort.sh --print-path [ARCH] print where it is cached for ARCH
#
# The library comes from the npm package onnxruntime-node, fetched with
# `npm pack --ignore-scripts` (never `npm install`: its postinstall script
# downloads from hosts we cannot reach). The package holds the x86_64 and the
# arm64 Linux libraries; only ARCH's is extracted, its sha256 is checked, and
# it is moved into place atomically, so an interrupted or corrupted download
# never leaves a half-written file. On x86_64, `scripts/setup-ort.sh arm64`
# fetches the board's library for `make dist`.
#
# Set TRACR_ORT_LIB to an existing library to skip fetching the native one.
set -euo pipefail

ORT_VERSION=1.30.0
NPM_PKG="onnxruntime-node@${ORT_VERSION}"

die() { echo "setup-ort: $*" >&2; exit 1; }

print_path=""
if [ "${1:-}" = --print-path ]; then
	print_path=1
	shift
fi

native() {
	case "$(uname -s) $(uname -m)" in
	"Linux x86_64") echo amd64 ;;
	"Linux aarch64" | "Linux arm64") echo arm64 ;;
	*) die "only Linux on x86_64 and arm64 is supported (this is $(uname -s) $(uname -m)); build ONNX Runtime ${ORT_VERSION} yourself and set TRACR_ORT_LIB to its shared library" ;;
	esac
}
ARCH="${1:-$(native)}"
case "$ARCH" in
amd64)
	TAR_MEMBER="package/bin/napi-v6/linux/x64/libonnxruntime.so.1"
	WANT_SHA256=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
	;;
arm64)
	TAR_MEMBER="package/bin/napi-v6/linux/arm64/libonnxruntime.so.1"
	WANT_SHA256=1f549d46250b005580b597f4164984aaf75b3bcb9f3aeb07c7f8a8fe60b23c76
	;;
*) die "unknown architecture \"$ARCH\": want amd64 or arm64" ;;
esac

# The same directory Go's os.UserCacheDir gives the engine package on Linux
# (engine.CachedLibraryPath).
case "${XDG_CACHE_HOME:-}" in
"") [ -n "${HOME:-}" ] || die "neither \$XDG_CACHE_HOME nor \$HOME is set" ;;
/*) ;;
*) die "XDG_CACHE_HOME=$XDG_CACHE_HOME is relative; it must be an absolute path" ;;
esac
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tracr/onnxruntime-${ORT_VERSION}-${ARCH}"
LIB="${CACHE_DIR}/libonnxruntime.so.1"
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -n "$print_path" ]; then
	echo "$LIB"
	exit 0
fi

if [ -n "${TRACR_ORT_LIB:-}" ] && [ -z "${1:-}" ]; then
	if [ -f "$TRACR_ORT_LIB" ]; then
		echo "setup-ort: using TRACR_ORT_LIB=$TRACR_ORT_LIB; nothing to fetch"
		exit 0
	fi
	die "TRACR_ORT_LIB=$TRACR_ORT_LIB does not exist; unset it to fetch ONNX Runtime ${ORT_VERSION} into $LIB"
fi

if [ -f "$LIB" ]; then
	if [ "$(sha256_of "$LIB")" = "$WANT_SHA256" ]; then
		echo "setup-ort: ONNX Runtime ${ORT_VERSION} (linux/${ARCH}) already present at $LIB"
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
