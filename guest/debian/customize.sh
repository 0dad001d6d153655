#!/usr/bin/env bash
# mmdebstrap --customize-hook for build-image.sh: configuration added to the installed
# system (no package is changed). Usage: customize.sh ROOT SRC_DIR
set -euo pipefail
ROOT="$1"
SRC="$2"
in_root() { chroot "$ROOT" "$@"; }

echo ftvm-debian > "$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 ftvm-debian\n::1 localhost ip6-localhost\n' > "$ROOT/etc/hosts"
# The root is mounted read-write by the kernel (root=/dev/vda rw); no fsck at boot.
echo '/dev/vda / ext4 rw,relatime 0 0' > "$ROOT/etc/fstab"
# Console login as root without a password (a lab machine on a private network).
in_root passwd -d root >/dev/null

# The network of QEMU user networking, which ftvm follows: 10.0.2.15/24 via 10.0.2.2.
mkdir -p "$ROOT/etc/systemd/network"
cat > "$ROOT/etc/systemd/network/10-ftvm.network" <<NET
[Match]
Type=ether

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
DNS=10.0.2.3
LinkLocalAddressing=no
IPv6AcceptRA=no
NET
in_root systemctl enable systemd-networkd.service >/dev/null 2>&1
in_root systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1
echo 'nameserver 10.0.2.3' > "$ROOT/etc/resolv.conf"

# The minimal init (init=/usr/local/sbin/ftvm-init).
install -m 0755 "$SRC/ftvm-init" "$ROOT/usr/local/sbin/ftvm-init"

# Servers listen on the guest network, so host clients reach them through hostfwd.
if [[ -f "$ROOT/etc/redis/redis.conf" ]]; then
    sed -i -e 's/^bind .*/bind 0.0.0.0/' -e 's/^protected-mode .*/protected-mode no/' \
        "$ROOT/etc/redis/redis.conf"
fi
for conf in "$ROOT"/etc/postgresql/*/main/postgresql.conf; do
    [[ -f "$conf" ]] || continue
    echo "listen_addresses = '*'" >> "$conf"
    echo 'host all all 0.0.0.0/0 trust' >> "$(dirname "$conf")/pg_hba.conf"
done

# Debian's kernel: its initramfs carries the virtio-mmio transport and devices.
if ls "$ROOT"/boot/vmlinuz-* >/dev/null 2>&1; then
    printf '%s\n' virtio_mmio virtio_blk virtio_net virtio_rng ext4 >> "$ROOT/etc/initramfs-tools/modules"
    in_root update-initramfs -u -k all >/dev/null
fi
