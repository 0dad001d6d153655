#!/usr/bin/env bash
# Build the bare-metal guest programs and run each on QEMU virt (the reference),
# printing a pass/fail table. Exit status 0 only if every program passes.
# Usage: scripts/qemu-check.sh [OUT_DIR]   (default: target/guest/baremetal)
# Set QEMU_EXTRA (e.g. "-icount shift=0") to add QEMU options; with shift=0 the
# instret that bench prints is the exact guest instruction count.
set -uo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO_DIR/target/guest/baremetal}"
QEMU="${QEMU:-qemu-system-riscv64}"
PROGRAMS=(hello rv64i rv64m rv64a rvc fp csr_trap smode bench)

if ! command -v "$QEMU" >/dev/null 2>&1; then
    echo "error: $QEMU not found; install it with: apt-get install qemu-system-misc" >&2
    exit 1
fi
"$REPO_DIR/guest/baremetal/build.sh" "$OUT" || exit 1

failed=0
printf '%-10s %-7s %6s %8s  %s\n' PROGRAM RESULT STATUS SECONDS "LAST LINE"
for p in "${PROGRAMS[@]}"; do
    log="$OUT/$p.qemu.log"
    start_ms=$(( $(date +%s%N) / 1000000 ))
    # shellcheck disable=SC2086
    timeout 60 "$QEMU" -M virt -bios none -nographic -m 128M ${QEMU_EXTRA:-} \
        -kernel "$OUT/$p.elf" </dev/null >"$log" 2>&1
    status=$?
    ms=$(( $(date +%s%N) / 1000000 - start_ms ))
    result=PASS
    if (( status != 0 )); then result=FAIL; failed=1; fi
    (( status == 124 )) && result=TIMEOUT
    last=$(tr -d '\r' <"$log" | grep -v '^$' | grep -v '^PASS$' | tail -n1)
    printf '%-10s %-7s %6d %4d.%03d  %s\n' "$p" "$result" "$status" $((ms / 1000)) $((ms % 1000)) "$last"
done
if (( failed )); then
    echo "qemu-check: FAILED (logs in $OUT/*.qemu.log)"
    exit 1
fi
echo "qemu-check: all ${#PROGRAMS[@]} programs pass"
