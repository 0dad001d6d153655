#!/usr/bin/env bash
# Build an ext4 disk image of a Debian trixie riscv64 system from Debian's binary packages
# (mmdebstrap through qemu-user-static), with Debian's kernel and an initramfs beside it.
# No package is modified: the script only adds configuration files (network, console
# login, servers listening on the guest network) and a minimal init script.
#
# Usage: guest/debian/build-image.sh [--packages LIST] [--add LIST] [--size MIB] [--force]
#                                    [--print-dir]
#   --packages LIST  comma-separated packages on top of the minimal system, replacing the
#                    default set (redis-server,postgresql-17,nginx-light)
#   --add LIST       comma-separated packages added to the set
#   --size MIB       image size [default: the files plus 1 GiB]
#   --force          rebuild even if the cache holds this image
#   --print-dir      only print where the image for these options lives (no build)
#   OUT              also link the results into this directory [default: <repo>/target/debian]
#   FTVM_CACHE       cache root [default: ~/.cache/ftvm]; images live in $FTVM_CACHE/debian/KEY
#   FTVM_DEBIAN_MIRROR  the mirror [default: http://deb.debian.org/debian]
# Results in the cache directory: disk.img (ext4, root of the system), vmlinuz (Debian's
# kernel, an uncompressed RISC-V Image), initrd.img, packages.txt (name and version of
# every installed package), cmdline-* (kernel command lines for each init).
set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SRC_DIR/../.." && pwd)"
SCRIPT="$SRC_DIR/$(basename "${BASH_SOURCE[0]}")"
CACHE_ROOT="${FTVM_CACHE:-$HOME/.cache/ftvm}/debian"
OUT="${OUT:-target/debian}"
[[ "$OUT" == /* ]] || OUT="$REPO_DIR/$OUT"
MIRROR="${FTVM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=trixie

# The minimal system: systemd as init, iproute2 to bring up the network without it,
# a console login, and what update-initramfs needs for Debian's kernel.
BASE=(systemd systemd-sysv udev iproute2 procps less netbase ca-certificates
      linux-image-riscv64 initramfs-tools zstd)
SERVICES=(redis-server postgresql-17 nginx-light)
SIZE=""
FORCE=0
PRINT_DIR=0

log() { echo "[debian] $*"; }
die() { echo "[debian] error: $*" >&2; exit 1; }

while (( $# )); do
    case "$1" in
        --packages) [[ $# -ge 2 ]] || die "--packages needs a list"
                    IFS=, read -r -a SERVICES <<< "$2"; shift ;;
        --add) [[ $# -ge 2 ]] || die "--add needs a list"
               IFS=, read -r -a extra <<< "$2"; SERVICES+=("${extra[@]}"); shift ;;
        --size) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--size needs a number of MiB"
                SIZE="$2"; shift ;;
        --force) FORCE=1 ;;
        --print-dir) PRINT_DIR=1 ;;
        -h|--help) sed -n '2,21p' "$SCRIPT" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (try --help)" ;;
    esac
    shift
done
for p in "${SERVICES[@]}"; do
    [[ "$p" =~ ^[a-z0-9][a-z0-9+.-]+$ ]] || die "'$p' is not a Debian package name"
done
PACKAGES=("${BASE[@]}" "${SERVICES[@]}")

# Cache key: these scripts, the package list and the options.
key="$( { cat "$SCRIPT" "$SRC_DIR/ftvm-init" "$SRC_DIR/customize.sh"; printf '%s\n' "${PACKAGES[@]}" | sort -u;
          echo "size=$SIZE mirror=$MIRROR suite=$SUITE"; } | sha256sum | cut -c1-16)"
DIR="$CACHE_ROOT/$key"
if (( PRINT_DIR )); then echo "$DIR"; exit 0; fi

link_out() {
    mkdir -p "$OUT"
    local f
    for f in disk.img vmlinuz initrd.img packages.txt cmdline-minimal cmdline-systemd; do
        ln -sfn "$DIR/$f" "$OUT/$f"
    done
    log "done: $DIR (linked into ${OUT#"$REPO_DIR"/})"
}
if (( !FORCE )) && [[ -f "$DIR/.complete" ]]; then
    log "image: up to date (cache key $key), using $DIR"
    link_out
    exit 0
fi

# --- host tools ---
(( EUID == 0 )) || die "building the image needs root (mmdebstrap, binfmt_misc); run it with sudo"
need=(mmdebstrap qemu-user-static binfmt-support e2fsprogs apt)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if (( ${#missing[@]} )); then
    log "installing missing host packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null ||
        { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
# Foreign binaries (the packages' maintainer scripts) run through qemu-riscv64.
if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
        die "cannot mount binfmt_misc (needed to run riscv64 maintainer scripts)"
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-riscv64 ]]; then
    update-binfmts --enable qemu-riscv64 >/dev/null 2>&1 ||
        die "cannot register qemu-riscv64 with binfmt_misc (update-binfmts --enable qemu-riscv64)"
fi

mkdir -p "$CACHE_ROOT"
TMP="$(mktemp -d "$CACHE_ROOT/.build-$key.XXXXXX")"
# On any failure the temporary directory goes (FTVM_DEBIAN_KEEP=1 keeps it to look into).
cleanup() { [[ "${FTVM_DEBIAN_KEEP:-0}" == 1 ]] && [[ -d "$TMP" ]] && log "kept $TMP" || rm -rf "$TMP"; }
trap cleanup EXIT
trap 'echo "[debian] error: line $LINENO failed: $BASH_COMMAND" >&2' ERR
trap 'log "interrupted; nothing was left in the cache"; exit 130' INT TERM

# --- every package name must exist in trixie for riscv64 (a one-line error otherwise) ---
log "checking ${#PACKAGES[@]} package names against $SUITE riscv64 ($MIRROR)"
APT="$TMP/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/etc/preferences.d"
echo "deb [arch=riscv64 trusted=yes] $MIRROR $SUITE main" > "$APT/sources.list"
apt_opts=(-o "Dir::State=$APT" -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache"
          -o "Dir::Etc::SourceList=$APT/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
          -o "Dir::Etc::Preferences=/nonexistent" -o "Dir::Etc::PreferencesParts=$APT/etc/preferences.d"
          -o "APT::Architecture=riscv64" -o "APT::Architectures::=riscv64"
          -o "Debug::NoLocking=1")
touch "$APT/status"
apt_opts+=(-o "Dir::State::status=$APT/status")
apt-get "${apt_opts[@]}" -qq update >"$TMP/apt-update.log" 2>&1 ||
    die "cannot read the $SUITE riscv64 package lists from $MIRROR: $(tail -n1 "$TMP/apt-update.log")"
unknown=()
for p in "${PACKAGES[@]}"; do
    # A real package has a candidate version; a virtual one (e.g. provided only) too little.
    cand="$(apt-cache "${apt_opts[@]}" policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    [[ -n "$cand" && "$cand" != "(none)" ]] || unknown+=("$p")
done
(( ${#unknown[@]} == 0 )) ||
    die "Debian $SUITE has no riscv64 package named: ${unknown[*]}"

# --- the root file system ---
log "mmdebstrap: $SUITE riscv64 with ${PACKAGES[*]} (a cold build takes ~5 min)"
ROOT="$TMP/root"
include="$(IFS=,; echo "${PACKAGES[*]}")"
start=$SECONDS
mmdebstrap --architectures=riscv64 --variant=minbase --include="$include" \
    --aptopt='Acquire::Retries "3"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --essential-hook='mkdir -p "$1/etc/initramfs-tools"' \
    --customize-hook="$SRC_DIR/customize.sh \"\$1\" $SRC_DIR" \
    "$SUITE" "$ROOT" "$MIRROR" > "$TMP/mmdebstrap.log" 2>&1 &
mm=$!
# Progress: mmdebstrap's own step lines, as they come.
tail -n +1 -f --pid=$mm "$TMP/mmdebstrap.log" 2>/dev/null | grep --line-buffered -E '^I: (running|downloading|extracting|installing|cleaning|success)' |
    sed -u 's/^I: /[debian]   /' &
if ! wait $mm || [[ ! -x "$ROOT/usr/bin/bash" ]]; then
    sleep 0.2
    tail -n 15 "$TMP/mmdebstrap.log" | sed 's/^/[debian]   | /' >&2
    die "mmdebstrap failed (its last lines above)"
fi
sleep 0.2
log "root file system: $(du -sm "$ROOT" | cut -f1) MiB in $((SECONDS - start)) s"

# --- Debian's kernel and initramfs, for --kernel debian ---
kernel="$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinu[xz]-*' | sort -V | tail -n1)"
initrd="$(find "$ROOT/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n1)"
[[ -n "$kernel" && -n "$initrd" ]] || die "the image has no /boot/vmlinu[xz]-* and initrd.img-*"
# Debian installs the RISC-V Image as /boot/vmlinux-VERSION (an EFI-stub Image with the
# 'RSC\x05' header ftvm's loader reads); a gzip-compressed one is unpacked.
if gzip -t "$kernel" 2>/dev/null; then
    zcat "$kernel" > "$TMP/vmlinuz"
else
    cp "$kernel" "$TMP/vmlinuz"
fi
cp "$initrd" "$TMP/initrd.img"
chroot "$ROOT" dpkg-query -W -f='${Package} ${Version}\n' > "$TMP/packages.txt"

# --- the ext4 image ---
used=$(du -sm "$ROOT" | cut -f1)
size="${SIZE:-$((used + 1024))}"
(( size > used + 64 )) || die "--size $size MiB is too small for $used MiB of files"
log "ext4 image: $size MiB"
mke2fs -q -t ext4 -L debian -E root_owner=0:0 -d "$ROOT" "$TMP/disk.img" "${size}M" ||
    die "mke2fs failed"
kver="${kernel##*/vmlinu?-}"
echo "root=/dev/vda rw console=ttyS0 init=/usr/local/sbin/ftvm-init" > "$TMP/cmdline-minimal"
echo "root=/dev/vda rw console=ttyS0" > "$TMP/cmdline-systemd"
rm -rf "$ROOT" "$APT"

# --- publish atomically ---
echo "$key $kver" > "$TMP/.complete"
rm -rf "$DIR"
mv "$TMP" "$DIR"
trap - EXIT INT TERM
log "image built in $SECONDS s: $(wc -l < "$DIR/packages.txt") packages, kernel $kver"
link_out
