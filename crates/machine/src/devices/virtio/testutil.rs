//! Test fixture: a tiny virtio driver. It lays out split virtqueues in a [`Ram`],
//! publishes descriptor chains, drives the virtio-mmio registers and reads the used
//! rings back, so device tests read like a guest using the device.
#![allow(dead_code)]

use super::mmio::{status, VirtioDevice, VirtioMmio};
use crate::devices::layout::RAM_BASE;
use crate::ram::Ram;

/// RAM size used by the virtio tests.
pub const RAM_SIZE: u64 = 1 << 20;
/// Where test data buffers start (queues live below).
pub const DATA: u64 = RAM_BASE + 0x8_0000;

/// A buffer in a chain: guest address, length, device-writable.
#[derive(Clone, Copy, Debug)]
pub struct Buf {
    /// Guest physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable.
    pub write: bool,
}

/// A device-readable buffer.
pub fn rbuf(addr: u64, len: u32) -> Buf {
    Buf {
        addr,
        len,
        write: false,
    }
}

/// A device-writable buffer.
pub fn wbuf(addr: u64, len: u32) -> Buf {
    Buf {
        addr,
        len,
        write: true,
    }
}

/// Descriptor flags.
pub const NEXT: u16 = 1;
/// Device-writable descriptor.
pub const WRITE: u16 = 2;
/// Indirect descriptor.
pub const INDIRECT: u16 = 4;

/// The driver's view of one split virtqueue.
pub struct TestQueue {
    /// Queue index on the device.
    pub index: u32,
    /// Queue size.
    pub size: u16,
    /// Descriptor table address.
    pub desc: u64,
    /// Available ring address.
    pub avail: u64,
    /// Used ring address.
    pub used: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl TestQueue {
    /// Queue `index` of `size` entries laid out in the 16 KiB at `RAM_BASE + 0x4000 *
    /// index`.
    pub fn new(index: u32, size: u16) -> TestQueue {
        let base = RAM_BASE + 0x4000 * u64::from(index);
        TestQueue {
            index,
            size,
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    /// Write descriptor `i` of the table.
    pub fn set_desc(&self, ram: &mut Ram, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        write_desc(ram, self.desc + 16 * u64::from(i), addr, len, flags, next);
    }

    fn take_desc(&mut self) -> u16 {
        let i = self.next_desc;
        self.next_desc = (self.next_desc + 1) % self.size;
        i
    }

    /// Put `bufs` in consecutive descriptors as one chain and publish it; returns the
    /// head index.
    pub fn add(&mut self, ram: &mut Ram, bufs: &[Buf]) -> u16 {
        let ids: Vec<u16> = bufs.iter().map(|_| self.take_desc()).collect();
        for (k, b) in bufs.iter().enumerate() {
            let more = k + 1 < bufs.len();
            let flags = if b.write { WRITE } else { 0 } | if more { NEXT } else { 0 };
            let next = if more { ids[k + 1] } else { 0 };
            self.set_desc(ram, ids[k], b.addr, b.len, flags, next);
        }
        self.publish(ram, ids[0]);
        ids[0]
    }

    /// Put `bufs` in an indirect table at `table` and publish one descriptor pointing
    /// at it; returns the head index.
    pub fn add_indirect(&mut self, ram: &mut Ram, table: u64, bufs: &[Buf]) -> u16 {
        for (k, b) in bufs.iter().enumerate() {
            let more = k + 1 < bufs.len();
            let flags = if b.write { WRITE } else { 0 } | if more { NEXT } else { 0 };
            let addr = table + 16 * k as u64;
            write_desc(ram, addr, b.addr, b.len, flags, (k + 1) as u16);
        }
        let head = self.take_desc();
        self.set_desc(ram, head, table, 16 * bufs.len() as u32, INDIRECT, 0);
        self.publish(ram, head);
        head
    }

    /// Append `head` to the available ring and bump its index.
    pub fn publish(&mut self, ram: &mut Ram, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        assert!(ram.load(slot, &head.to_le_bytes()));
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.set_avail_idx(ram, self.avail_idx);
    }

    /// Write the available ring's index directly.
    pub fn set_avail_idx(&self, ram: &mut Ram, idx: u16) {
        assert!(ram.load(self.avail + 2, &idx.to_le_bytes()));
    }

    /// Write the available ring's flags (1 = no interrupts please).
    pub fn set_avail_flags(&self, ram: &mut Ram, flags: u16) {
        assert!(ram.load(self.avail, &flags.to_le_bytes()));
    }

    /// The used ring's index.
    pub fn used_idx(&self, ram: &Ram) -> u16 {
        u16::from_le_bytes(read(ram, self.used + 2, 2).try_into().unwrap())
    }

    /// Used elements `(id, len)` published since the last call.
    pub fn used(&mut self, ram: &Ram) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        while self.used_seen != self.used_idx(ram) {
            let slot = self.used + 4 + 8 * u64::from(self.used_seen % self.size);
            let e = read(ram, slot, 8);
            out.push((
                u32::from_le_bytes(e[..4].try_into().unwrap()),
                u32::from_le_bytes(e[4..].try_into().unwrap()),
            ));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }
}

/// Write one descriptor at guest address `at`.
pub fn write_desc(ram: &mut Ram, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    d[14..].copy_from_slice(&next.to_le_bytes());
    assert!(ram.load(at, &d));
}

/// `len` bytes of guest memory at `addr`.
pub fn read(ram: &Ram, addr: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0; len];
    assert!(ram.read(addr, &mut b));
    b
}

/// 32-bit register write.
pub fn reg_write<D: VirtioDevice>(dev: &mut VirtioMmio<D>, ram: &mut Ram, off: u64, v: u32) {
    dev.write(off, 4, u64::from(v), ram);
}

/// 32-bit register read.
pub fn reg_read<D: VirtioDevice>(dev: &mut VirtioMmio<D>, off: u64) -> u32 {
    dev.read(off, 4) as u32
}

/// Run the driver initialisation of §3.1.1 as Linux does: reset, ACKNOWLEDGE, DRIVER,
/// accept every offered feature, FEATURES_OK, set up `queues`, DRIVER_OK.
pub fn activate<D: VirtioDevice>(dev: &mut VirtioMmio<D>, ram: &mut Ram, queues: &[TestQueue]) {
    reg_write(dev, ram, 0x70, 0);
    reg_write(dev, ram, 0x70, status::ACKNOWLEDGE);
    reg_write(dev, ram, 0x70, status::ACKNOWLEDGE | status::DRIVER);
    for sel in 0..2 {
        reg_write(dev, ram, 0x14, sel);
        let f = reg_read(dev, 0x10);
        reg_write(dev, ram, 0x24, sel);
        reg_write(dev, ram, 0x20, f);
    }
    let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    reg_write(dev, ram, 0x70, s);
    assert_eq!(reg_read(dev, 0x70), s, "features refused");
    for q in queues {
        reg_write(dev, ram, 0x30, q.index);
        assert!(reg_read(dev, 0x34) >= u32::from(q.size));
        reg_write(dev, ram, 0x38, u32::from(q.size));
        for (off, addr) in [(0x80, q.desc), (0x90, q.avail), (0xa0, q.used)] {
            reg_write(dev, ram, off, addr as u32);
            reg_write(dev, ram, off + 4, (addr >> 32) as u32);
        }
        reg_write(dev, ram, 0x44, 1);
    }
    reg_write(dev, ram, 0x70, s | status::DRIVER_OK);
}

/// Notify queue `q`.
pub fn kick<D: VirtioDevice>(dev: &mut VirtioMmio<D>, ram: &mut Ram, q: u32) {
    reg_write(dev, ram, 0x50, q);
}

/// Read and acknowledge InterruptStatus; returns what was pending.
pub fn ack<D: VirtioDevice>(dev: &mut VirtioMmio<D>, ram: &mut Ram) -> u32 {
    let s = reg_read(dev, 0x60);
    reg_write(dev, ram, 0x64, s);
    assert!(!dev.irq());
    s
}

/// Fresh test RAM.
pub fn ram() -> Ram {
    Ram::new(RAM_SIZE)
}
