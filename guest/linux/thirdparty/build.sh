#!/usr/bin/env bash
# Build the third-party programs the guest runs in mode=thirdparty and pack them into a
# second initramfs archive, thirdparty.cpio (newc), holding /opt/thirdparty/bin/:
#   busybox  Debian bookworm's busybox source package, static riscv64 (build-busybox.sh)
#   goprobe  goprobe/main.go, cross-compiled by Debian's golang-go (GOARCH=riscv64, static)
# Linux takes concatenated cpio archives as one initrd: `guest/linux/build.sh --thirdparty`
# appends this one to initramfs.cpio as initramfs-full.cpio.
#
# Usage: guest/linux/thirdparty/build.sh [--force]
#   OUT         output directory (default: <repo>/target/guest; relative = from repo root):
#               thirdparty.cpio, and the binaries in thirdparty/
#   FTVM_CACHE  cache root (default: ~/.cache/ftvm); work lives in $FTVM_CACHE/thirdparty
#   --force     ignore the cache keys
set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SRC_DIR/../../.." && pwd)"
SCRIPT="$SRC_DIR/$(basename "${BASH_SOURCE[0]}")"
OUT="${OUT:-target/guest}"
[[ "$OUT" == /* ]] || OUT="$REPO_DIR/$OUT"
ROOT_CACHE="${FTVM_CACHE:-$HOME/.cache/ftvm}"
CACHE="$ROOT_CACHE/thirdparty"
FORCE=0
FORCE_ARGS=()

for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1; FORCE_ARGS=(--force) ;;
        -h|--help) sed -n '2,13p' "$SCRIPT" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

log() { echo "[thirdparty] $*"; }
die() { echo "[thirdparty] error: $*" >&2; exit 1; }
hash_of() { sha256sum | cut -c1-16; }
SUDO=(); (( EUID == 0 )) || SUDO=(sudo)
mkdir -p "$CACHE" "$OUT/thirdparty"

# --- busybox ---
"$SRC_DIR/build-busybox.sh" "${FORCE_ARGS[@]}" "$OUT/thirdparty/busybox"

# --- goprobe ---
if ! command -v go >/dev/null 2>&1 && [[ ! -x /usr/lib/go/bin/go ]]; then
    log "installing golang-go"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y golang-go ||
        { "${SUDO[@]}" apt-get update &&
          "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y golang-go; }
fi
GO="$(command -v go || echo /usr/lib/go/bin/go)"
# Standard library only: no module download (GOPROXY=off), no cgo, no paths of this
# machine in the binary (-trimpath), no symbol table (-s -w; panics still name functions).
GO_ENV=(GOOS=linux GOARCH=riscv64 CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=mod
        GOCACHE="$CACHE/go-build" GOPATH="$CACHE/gopath")
GO_FLAGS=(-trimpath -ldflags=-s\ -w)
go_key="$( { cat "$SRC_DIR"/goprobe/go.mod "$SRC_DIR"/goprobe/*.go; "$GO" version;
             echo "${GO_ENV[*]} ${GO_FLAGS[*]}"; } | hash_of)"
GOBIN_DIR="$CACHE/goprobe"
start=$SECONDS
if (( !FORCE )) && [[ -f "$GOBIN_DIR/goprobe" && "$(cat "$GOBIN_DIR/.ftvm-key" 2>/dev/null)" == "$go_key" ]]; then
    log "goprobe: up to date ($("$GO" version | cut -d' ' -f3), cache key $go_key)"
else
    rm -rf "$GOBIN_DIR"; mkdir -p "$GOBIN_DIR"
    log "building goprobe with $("$GO" version | cut -d' ' -f3) for linux/riscv64..."
    (cd "$SRC_DIR/goprobe" && env "${GO_ENV[@]}" "$GO" build "${GO_FLAGS[@]}" -o "$GOBIN_DIR/goprobe" .)
    echo "$go_key" > "$GOBIN_DIR/.ftvm-key"
    log "goprobe: built in $((SECONDS - start)) s (cache key $go_key)"
fi
cp "$GOBIN_DIR/goprobe" "$OUT/thirdparty/goprobe"
file -b "$OUT/thirdparty/goprobe" | grep -q 'RISC-V.*statically linked' ||
    die "goprobe is not a static RISC-V executable: $(file -b "$OUT/thirdparty/goprobe")"

# --- archive ---
# gen_init_cpio from the kernel source the guest build uses (already extracted there, or
# taken out of Debian's tarball), fixed timestamps: same binaries, same archive.
GEN="$CACHE/gen_init_cpio"
if [[ ! -x "$GEN" ]]; then
    gen_src="$(ls "$ROOT_CACHE"/linux/src-*/linux-source-6.1/usr/gen_init_cpio.c 2>/dev/null | head -n1 || true)"
    if [[ -z "$gen_src" ]]; then
        [[ -f /usr/src/linux-source-6.1.tar.xz ]] || die "no gen_init_cpio.c: run guest/linux/build.sh first"
        gen_src="$CACHE/gen_init_cpio.c"
        tar -xOf /usr/src/linux-source-6.1.tar.xz linux-source-6.1/usr/gen_init_cpio.c > "$gen_src"
    fi
    gcc -O2 -o "$GEN" "$gen_src"
fi
ROOT="$CACHE/root"
rm -rf "$ROOT"; mkdir -p "$ROOT"
cp "$OUT/thirdparty/busybox" "$OUT/thirdparty/goprobe" "$ROOT/"
touch -d @0 "$ROOT"/*
cat > "$CACHE/thirdparty.list" <<EOF
dir /opt 0755 0 0
dir /opt/thirdparty 0755 0 0
dir /opt/thirdparty/bin 0755 0 0
file /opt/thirdparty/bin/busybox $ROOT/busybox 0755 0 0
file /opt/thirdparty/bin/goprobe $ROOT/goprobe 0755 0 0
EOF
"$GEN" -t 0 "$CACHE/thirdparty.list" > "$OUT/thirdparty.cpio"
log "done: ${OUT#"$REPO_DIR"/}/thirdparty.cpio ($(stat -c %s "$OUT/thirdparty.cpio") bytes:" \
    "busybox $(stat -c %s "$OUT/thirdparty/busybox"), goprobe $(stat -c %s "$OUT/thirdparty/goprobe"))"
