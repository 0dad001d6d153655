#!/usr/bin/env bash
# Cross-build a static riscv64 busybox from Debian bookworm's own source package
# (`apt-get source busybox`, Debian's patches applied), unmodified: `make defconfig`,
# CONFIG_STATIC=y, CROSS_COMPILE=riscv64-linux-gnu-.
#
# Usage: guest/linux/thirdparty/build-busybox.sh [--force] [OUTFILE]
#   OUTFILE     where to copy the binary (default: <repo>/target/guest/thirdparty/busybox)
#   FTVM_CACHE  cache root (default: ~/.cache/ftvm); work lives in $FTVM_CACHE/thirdparty
#   --force     ignore the cache key
# Adds a deb-src entry (/etc/apt/sources.list.d/ftvm-src.list) for the mirror the
# machine's deb entries already use, if no busybox source package is known to apt.
set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SRC_DIR/../../.." && pwd)"
SCRIPT="$SRC_DIR/$(basename "${BASH_SOURCE[0]}")"
CACHE="${FTVM_CACHE:-$HOME/.cache/ftvm}/thirdparty"
CROSS=riscv64-linux-gnu-
JOBS="${JOBS:-2}"
FORCE=0
OUTFILE=

for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,11p' "$SCRIPT" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "error: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
        *) OUTFILE="$arg" ;;
    esac
done
OUTFILE="${OUTFILE:-target/guest/thirdparty/busybox}"
[[ "$OUTFILE" == /* ]] || OUTFILE="$REPO_DIR/$OUTFILE"

log() { echo "[busybox] $*"; }
die() { echo "[busybox] error: $*" >&2; exit 1; }
hash_of() { sha256sum | cut -c1-16; }
SUDO=(); (( EUID == 0 )) || SUDO=(sudo)

# --- packages: the cross compiler and dpkg-source (apt-get source unpacks with it) ---
missing=()
for p in gcc-riscv64-linux-gnu libc6-dev-riscv64-cross dpkg-dev make gcc; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if (( ${#missing[@]} )); then
    log "installing missing packages: ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" ||
        { "${SUDO[@]}" apt-get update &&
          "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; }
fi

# --- deb-src: same mirror host and suites as the binary entries ---
# The version is the one `apt-get source` would fetch (its .dsc name), so the cache key
# follows Debian's package without downloading anything when nothing changed.
src_version() {
    apt-get source --print-uris busybox 2>/dev/null |
        sed -n "s/^'[^']*' busybox_\([^ ]*\)\.dsc .*/\1/p" | head -n1 || true
}
VERSION="$(src_version)"
if [[ -z "$VERSION" ]]; then
    list=/etc/apt/sources.list.d/ftvm-src.list
    mirror="$(grep -rhoE 'https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list \
                /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
              grep -v security | head -n1 | tr -d ' ' || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    # apt refuses two entries for one source with different Signed-By: reuse theirs.
    keyring="$(grep -rhoiE '(Signed-By: *|signed-by=)[^] ]+' /etc/apt/sources.list \
                 /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
               head -n1 | sed 's/^[^:=]*[:=] *//' || true)"
    opts=; [[ -n "$keyring" ]] && opts="[signed-by=$keyring] "
    log "no busybox source package known to apt: adding $list (deb-src $mirror bookworm)"
    printf 'deb-src %s%s bookworm main\ndeb-src %s%s bookworm-updates main\n' \
        "$opts" "${mirror%/}" "$opts" "${mirror%/}" | "${SUDO[@]}" tee "$list" >/dev/null
    if ! "${SUDO[@]}" apt-get update -qq; then
        "${SUDO[@]}" rm -f "$list"   # never leave apt with a list it cannot read
        die "apt-get update failed with the deb-src entry; removed $list"
    fi
    VERSION="$(src_version)"
    [[ -n "$VERSION" ]] || die "apt still knows no busybox source package (see $list)"
fi

# --- busybox build begin (this section's text is part of the cache key) ---
# defconfig plus a static link. Nothing else is switched off: Debian bookworm's busybox
# (1.35) cross-builds with defconfig against the riscv64 glibc 2.36 headers; the link
# only warns that getpwnam & co. would need the same glibc's NSS modules at run time.
# The banner's build date is the Debian changelog's (reproducible, as Debian builds it).
configure_busybox() {
    SOURCE_DATE_EPOCH="$(dpkg-parsechangelog -S Timestamp)"
    export SOURCE_DATE_EPOCH
    make -s defconfig >/dev/null
    sed -i -e 's/^# CONFIG_STATIC is not set$/CONFIG_STATIC=y/' .config
    make -s oldconfig </dev/null >/dev/null
    grep -qx 'CONFIG_STATIC=y' .config || die "CONFIG_STATIC=y did not stick"
}
build_busybox() {
    make -s -j"$JOBS" CROSS_COMPILE="$CROSS" SKIP_STRIP=n \
        busybox >build.log 2>&1 ||
        { tail -n 40 build.log >&2; die "make failed (log: $PWD/build.log)"; }
}
# --- busybox build end ---

section="$(sed -n '/^# --- busybox build begin/,/^# --- busybox build end/p' "$SCRIPT")"
key="$( { echo "$VERSION"; echo "$section"; "${CROSS}gcc" --version | head -n1;
          dpkg-query -W -f='${Version}' libc6-dev-riscv64-cross; } | hash_of)"
BUILD="$CACHE/busybox-$VERSION"
mkdir -p "$CACHE" "$(dirname "$OUTFILE")"

start=$SECONDS
if (( !FORCE )) && [[ -f "$BUILD/busybox" && "$(cat "$BUILD/.ftvm-key" 2>/dev/null)" == "$key" ]]; then
    log "up to date (busybox $VERSION, cache key $key)"
else
    DL="$CACHE/src-busybox-$VERSION"
    if [[ ! -f "$DL/.ftvm-extracted" ]]; then
        log "fetching Debian source package busybox $VERSION into $DL"
        rm -rf "$DL"; mkdir -p "$DL"
        # apt drops privileges to _apt for downloads: let it write into the directory.
        (cd "$DL" && chmod 777 . && apt-get source -qq busybox >fetch.log 2>&1) ||
            { cat "$DL/fetch.log" >&2; die "apt-get source busybox failed"; }
        chmod 755 "$DL"
        touch "$DL/.ftvm-extracted"
    fi
    srcdir="$(find "$DL" -mindepth 1 -maxdepth 1 -type d -name 'busybox-*' | head -n1)"
    [[ -n "$srcdir" ]] || die "no busybox-* directory in $DL"
    log "building static riscv64 busybox $VERSION (about 35 s on 2 cores)..."
    rm -rf "$BUILD"
    cp -a "$srcdir" "$BUILD"
    (cd "$BUILD" && configure_busybox && build_busybox)
    echo "$key" > "$BUILD/.ftvm-key"
    log "built in $((SECONDS - start)) s (cache key $key)"
fi
cp "$BUILD/busybox" "$OUTFILE"
file -b "$OUTFILE" 2>/dev/null | grep -q 'RISC-V.*statically linked' ||
    { file "$OUTFILE" >&2 || true; die "$OUTFILE is not a static RISC-V executable"; }
log "done: ${OUTFILE#"$REPO_DIR"/} ($(stat -c %s "$OUTFILE") bytes)"
