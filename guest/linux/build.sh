#!/usr/bin/env bash
# Build the riscv64 Linux guest from Debian packages: a kernel Image (tinyconfig plus
# guest/linux/kernel.config) and an initramfs.cpio holding a static /init
# (guest/linux/init/*.c). Boot them with `-kernel Image -initrd initramfs.cpio`.
#
# Usage: guest/linux/build.sh [--force] [--thirdparty]
#   OUT          output directory (default: <repo>/target/guest; relative = from repo root)
#   FTVM_CACHE   cache root (default: ~/.cache/ftvm); work lives in $FTVM_CACHE/linux
#   --force      ignore the cache keys (the kernel rebuild is still incremental)
#   --thirdparty also build thirdparty.cpio (busybox, a Go program: thirdparty/build.sh)
#                and initramfs-full.cpio = initramfs.cpio + thirdparty.cpio (mode=thirdparty)
set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SRC_DIR/../.." && pwd)"
SCRIPT="$SRC_DIR/$(basename "${BASH_SOURCE[0]}")"
OUT="${OUT:-target/guest}"
[[ "$OUT" == /* ]] || OUT="$REPO_DIR/$OUT"
CACHE="${FTVM_CACHE:-$HOME/.cache/ftvm}/linux"
FRAGMENT="$SRC_DIR/kernel.config"
CROSS=riscv64-linux-gnu-
JOBS="${JOBS:-2}"
FORCE=0
THIRDPARTY=0

for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --thirdparty) THIRDPARTY=1 ;;
        -h|--help) sed -n '2,11p' "$SCRIPT" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

log() { echo "[guest] $*"; }
die() { echo "[guest] error: $*" >&2; exit 1; }
hash_of() { sha256sum | cut -c1-16; }

# --- packages ---
PACKAGES=(gcc-riscv64-linux-gnu libc6-dev-riscv64-cross linux-source-6.1 bc flex bison
          libssl-dev cpio xz-utils make gcc)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if (( ${#missing[@]} )); then
    log "installing missing packages: ${missing[*]}"
    SUDO=(); (( EUID == 0 )) || SUDO=(sudo)
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; then
        log "apt-get install failed; refreshing the package lists and retrying"
        "${SUDO[@]}" apt-get update
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
fi

LINUX_TARBALL=/usr/src/linux-source-6.1.tar.xz
[[ -f "$LINUX_TARBALL" ]] || die "$LINUX_TARBALL missing (is linux-source-6.1 installed?)"
LINUX_PKG_VERSION="$(dpkg-query -W -f='${Version}' linux-source-6.1)"
KSRC="$CACHE/src-$LINUX_PKG_VERSION/linux-source-6.1"
mkdir -p "$CACHE" "$OUT"

# --- kernel build begin (this section's text is part of the kernel cache key) ---
# Fixed build stamps (uname -v) so the same inputs give the same Image.
kmake() {
    make -s -C "$KSRC" O="$KOBJ" ARCH=riscv CROSS_COMPILE="$CROSS" \
        KBUILD_BUILD_TIMESTAMP=1970-01-01 KBUILD_BUILD_VERSION=1 \
        KBUILD_BUILD_USER=ftvm KBUILD_BUILD_HOST=ftvm "$@"
}

# Every `CONFIG_X=y` of the fragment must be `=y` in .config, every `# CONFIG_X is not
# set` must not be: olddefconfig silently drops options whose dependencies are off.
check_config() {
    local bad=() line sym
    while IFS= read -r line; do
        if [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=y$ ]]; then
            sym="${BASH_REMATCH[1]}"
            grep -qx "$sym=y" "$KOBJ/.config" || bad+=("$sym=y is missing")
        elif [[ "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
            sym="${BASH_REMATCH[1]}"
            grep -q "^$sym=" "$KOBJ/.config" && bad+=("$sym should be off but is on")
        fi
    done < "$FRAGMENT"
    if (( ${#bad[@]} )); then
        printf '[guest] error: %s did not survive olddefconfig:\n' "${FRAGMENT#"$REPO_DIR"/}" >&2
        printf '[guest]   %s (a dependency is off or something selects it)\n' "${bad[@]}" >&2
        exit 1
    fi
}

build_kernel() {
    if [[ ! -f "$KSRC/.ftvm-extracted" ]]; then
        log "extracting $LINUX_TARBALL ($LINUX_PKG_VERSION) into $(dirname "$KSRC")"
        rm -rf "$(dirname "$KSRC")"
        mkdir -p "$(dirname "$KSRC")"
        tar -xf "$LINUX_TARBALL" -C "$(dirname "$KSRC")"
        touch "$KSRC/.ftvm-extracted"
    fi
    mkdir -p "$KOBJ"
    kmake tinyconfig >/dev/null
    (cd "$KSRC" && ARCH=riscv CROSS_COMPILE="$CROSS" \
        scripts/kconfig/merge_config.sh -m -O "$KOBJ" "$KOBJ/.config" "$FRAGMENT" >/dev/null)
    kmake olddefconfig 2>&1 | { grep -v 'changes choice state' || true; }
    check_config
    if [[ -f "$KOBJ/vmlinux" ]]; then
        log "rebuilding kernel incrementally in $KOBJ..."
    else
        log "building kernel (takes ~3 min on 2 cores)..."
    fi
    kmake -j"$JOBS" Image
}
# --- kernel build end ---

# Cache keys: the kernel by the fragment, the package version, the section above and
# the cross compiler's version; the initramfs by the init sources (*.c, *.h), the initramfs
# section below, the compiler version and the package version (gen_init_cpio).
kernel_section="$(sed -n '/^# --- kernel build begin/,/^# --- kernel build end/p' "$SCRIPT")"
kernel_key="$( { cat "$FRAGMENT"; echo "$LINUX_PKG_VERSION"; echo "$kernel_section";
                 "${CROSS}gcc" --version | head -n1; } | hash_of)"

# One build directory per key: checkouts with different fragments (worktrees, branches)
# share the cache without rebuilding over each other.
KOBJ="$CACHE/build-$LINUX_PKG_VERSION-$kernel_key"

start=$SECONDS
if (( !FORCE )) && [[ -f "$KOBJ/arch/riscv/boot/Image" &&
                      "$(cat "$KOBJ/.ftvm-key" 2>/dev/null)" == "$kernel_key" ]]; then
    log "kernel: up to date (cache key $kernel_key), using $KOBJ"
else
    rm -f "$KOBJ/.ftvm-key"
    build_kernel
    echo "$kernel_key" > "$KOBJ/.ftvm-key"
    log "kernel: built in $((SECONDS - start)) s (cache key $kernel_key)"
fi
cp "$KOBJ/arch/riscv/boot/Image" "$OUT/Image"

# --- initramfs ---
INIT_SRC="$SRC_DIR/init"
IRD="$CACHE/initramfs"
CC="${CROSS}gcc"
INIT_CFLAGS=(-static -O2 -Wall -Wextra -Werror)
initramfs_section="$(sed -n '/^# --- initramfs/,/^# --- initramfs end/p' "$SCRIPT")"
initramfs_key="$( { "$CC" --version | head -n1; echo "$LINUX_PKG_VERSION"; cat "$INIT_SRC"/*.[ch];
                    echo "${INIT_CFLAGS[*]}"; echo "$initramfs_section"; } | hash_of)"
start=$SECONDS
if (( !FORCE )) && [[ -f "$IRD/initramfs.cpio" &&
                      "$(cat "$IRD/.ftvm-key" 2>/dev/null)" == "$initramfs_key" ]]; then
    log "initramfs: up to date (cache key $initramfs_key), using $IRD"
else
    rm -rf "$IRD"
    mkdir -p "$IRD"
    log "building initramfs (/init from ${INIT_SRC#"$REPO_DIR"/})"
    "$CC" "${INIT_CFLAGS[@]}" -o "$IRD/init" "$INIT_SRC"/*.c
    # gen_init_cpio comes from the same kernel source; file lines take absolute paths.
    gcc -O2 -o "$IRD/gen_init_cpio" "$KSRC/usr/gen_init_cpio.c"
    cat > "$IRD/initramfs.list" <<EOF
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /proc 0755 0 0
dir /sys 0755 0 0
dir /tmp 1777 0 0
file /init $IRD/init 0755 0 0
EOF
    # Fixed timestamps (-t 0 for dirs and nodes, the files' own mtime for files), so
    # the archive is a function of its inputs.
    touch -d @0 "$IRD/init"
    "$IRD/gen_init_cpio" -t 0 "$IRD/initramfs.list" > "$IRD/initramfs.cpio"
    echo "$initramfs_key" > "$IRD/.ftvm-key"
    log "initramfs: built in $((SECONDS - start)) s (cache key $initramfs_key)"
fi
cp "$IRD/initramfs.cpio" "$OUT/initramfs.cpio"

log "done: ${OUT#"$REPO_DIR"/}/Image ($(stat -c %s "$OUT/Image") bytes)," \
    "${OUT#"$REPO_DIR"/}/initramfs.cpio ($(stat -c %s "$OUT/initramfs.cpio") bytes)"
# --- initramfs end ---

# --- third-party programs: a second archive appended to the first (Linux unpacks
# concatenated newc archives in turn into one root file system) ---
if (( THIRDPARTY )); then
    OUT="$OUT" "$SRC_DIR/thirdparty/build.sh" $( (( FORCE )) && echo --force )
    cat "$OUT/initramfs.cpio" "$OUT/thirdparty.cpio" > "$OUT/initramfs-full.cpio"
    log "done: ${OUT#"$REPO_DIR"/}/initramfs-full.cpio ($(stat -c %s "$OUT/initramfs-full.cpio") bytes)"
fi
