#!/usr/bin/env bash
# Build the bare-metal guest test programs into an output directory.
# Usage: guest/baremetal/build.sh [OUT_DIR]   (default: target/guest/baremetal)
# Rebuilds only when the sources, flags or compiler change (hash stamped in OUT_DIR).
set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SRC_DIR/../.." && pwd)"
OUT="${1:-$REPO_DIR/target/guest/baremetal}"
CC="${CROSS_COMPILE:-riscv64-linux-gnu-}gcc"
PROGRAMS=(hello rv64i rv64m rv64a rvc fp csr_trap smode bench exit_code)
CFLAGS=(-march=rv64gc -mabi=lp64d -mcmodel=medany -nostdlib -ffreestanding -O2 -static
        -fno-pic -no-pie -Wall -Wextra -Werror -g -T "$SRC_DIR/link.ld" -Wl,--build-id=none,--no-warn-rwx-segments
        ${BENCH_ITERS:+-DBENCH_ITERS=$BENCH_ITERS})
RUNTIME=("$SRC_DIR/start.S" "$SRC_DIR/lib.c")

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "error: $CC not found; install it with: apt-get install gcc-riscv64-linux-gnu" >&2
    exit 1
fi

mkdir -p "$OUT"
stamp="$OUT/.build-stamp"
hash="$( { "$CC" --version | head -n1; echo "${CFLAGS[*]}"; echo "${PROGRAMS[*]}";
           cat "$SRC_DIR"/*.S "$SRC_DIR"/*.c "$SRC_DIR"/*.h "$SRC_DIR"/link.ld "$0"; } \
         | sha256sum | cut -d' ' -f1)"

up_to_date=1
[[ -f "$stamp" && "$(cat "$stamp")" == "$hash" ]] || up_to_date=0
for p in "${PROGRAMS[@]}"; do [[ -f "$OUT/$p.elf" ]] || up_to_date=0; done
if (( up_to_date )); then
    echo "guest/baremetal: up to date in $OUT"
    exit 0
fi

rm -f "$stamp"
for p in "${PROGRAMS[@]}"; do
    echo "  CC  $p.elf"
    "$CC" "${CFLAGS[@]}" -I "$SRC_DIR" -o "$OUT/$p.elf" "${RUNTIME[@]}" "$SRC_DIR/$p.c"
done
echo "$hash" > "$stamp"
echo "guest/baremetal: built ${#PROGRAMS[@]} programs in $OUT"
