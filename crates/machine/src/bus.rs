//! The physical address space: RAM plus the devices at their QEMU `virt` addresses.
//!
//! The bus also owns the guest clock (device time is a function of the instruction
//! count) and the interrupt wiring between devices and the PLIC.

use crate::clock::Clock;
use crate::devices::clint::Clint;
use crate::devices::layout::*;
use crate::devices::plic::Plic;
use crate::devices::sifive_test::{PowerRequest, SifiveTest};
use crate::devices::uart::Uart16550;
use crate::devices::virtio::{VirtioBlk, VirtioNet, VirtioRng};
use crate::devices::Mmio;
use crate::ram::Ram;

/// RAM and devices.
pub struct Bus {
    /// Guest RAM.
    pub ram: Ram,
    /// Core-local interruptor.
    pub clint: Clint,
    /// Platform-level interrupt controller.
    pub plic: Plic,
    /// Console UART.
    pub uart: Uart16550,
    /// Power-off / reset device.
    pub test: SifiveTest,
    /// virtio-blk (slot 0), if present.
    pub blk: Option<VirtioBlk>,
    /// virtio-net (slot 1), if present.
    pub net: Option<VirtioNet>,
    /// virtio-rng (slot 2), if present.
    pub rng: Option<VirtioRng>,
    /// Guest time.
    pub clock: Clock,
    /// Set when a device access may have changed interrupt lines, timer deadlines,
    /// power state or pending output: the CPU leaves its inner loop so the machine
    /// can look.
    pub attention: bool,
    /// A power request (from the test device or SBI SRST) not yet handled.
    pub power: Option<PowerRequest>,
}

impl Bus {
    /// A bus with `ram` and devices at reset.
    pub fn new(ram: Ram, insns_per_tick: u64) -> Bus {
        Bus {
            ram,
            clint: Clint::new(1),
            plic: Plic::new(2),
            uart: Uart16550::new(),
            test: SifiveTest::new(),
            blk: None,
            net: None,
            rng: None,
            clock: Clock::new(insns_per_tick),
            attention: false,
            power: None,
        }
    }

    /// Read `size` bytes from a device register at `paddr`; `None` if nothing is
    /// mapped there (an access fault). RAM is handled by the caller's fast path.
    pub fn mmio_read(&mut self, paddr: u64, size: u8, icount: u64) -> Option<u64> {
        let v = if in_window(paddr, size, UART_BASE, UART_SIZE) {
            self.attention = true;
            self.uart.read(paddr - UART_BASE, size)
        } else if in_window(paddr, size, CLINT_BASE, CLINT_SIZE) {
            let now = self.clock.mtime(icount);
            self.clint.read(paddr - CLINT_BASE, size, now)
        } else if in_window(paddr, size, PLIC_BASE, PLIC_SIZE) {
            self.attention = true;
            self.plic.read(paddr - PLIC_BASE, size)
        } else if in_window(paddr, size, TEST_BASE, TEST_SIZE) {
            self.test.read(paddr - TEST_BASE, size)
        } else if in_window(paddr, size, VIRTIO_BASE, VIRTIO_STRIDE * VIRTIO_SLOTS) {
            let (slot, off) = virtio_slot(paddr);
            match slot {
                0 => self.blk.as_mut().map_or(0, |d| d.read(off, size)),
                1 => self.net.as_mut().map_or(0, |d| d.read(off, size)),
                2 => self.rng.as_mut().map_or(0, |d| d.read(off, size)),
                // Empty slots read as zero (magic 0: no device), like unknown registers.
                _ => 0,
            }
        } else {
            return None;
        };
        Some(v)
    }

    /// Write `size` bytes to a device register at `paddr`; false if nothing is mapped.
    /// RAM is handled by the caller's fast path.
    pub fn mmio_write(&mut self, paddr: u64, size: u8, value: u64, icount: u64) -> bool {
        if in_window(paddr, size, UART_BASE, UART_SIZE) {
            self.uart.write(paddr - UART_BASE, size, value);
        } else if in_window(paddr, size, CLINT_BASE, CLINT_SIZE) {
            let now = self.clock.mtime(icount);
            self.clint.write(paddr - CLINT_BASE, size, value, now);
        } else if in_window(paddr, size, PLIC_BASE, PLIC_SIZE) {
            self.plic.write(paddr - PLIC_BASE, size, value);
        } else if in_window(paddr, size, TEST_BASE, TEST_SIZE) {
            self.test.write(paddr - TEST_BASE, size, value);
            if let Some(req) = self.test.take_request() {
                self.power = Some(req);
            }
        } else if in_window(paddr, size, VIRTIO_BASE, VIRTIO_STRIDE * VIRTIO_SLOTS) {
            let (slot, off) = virtio_slot(paddr);
            let ram = &mut self.ram;
            match slot {
                0 => self.blk.as_mut().map(|d| d.write(off, size, value, ram)),
                1 => self.net.as_mut().map(|d| d.write(off, size, value, ram)),
                2 => self.rng.as_mut().map(|d| d.write(off, size, value, ram)),
                _ => None,
            };
        } else {
            return false;
        }
        self.attention = true;
        true
    }

    /// Route device interrupt levels into the PLIC (level-triggered sources).
    pub fn update_irq_lines(&mut self) {
        let uart = self.uart.irq();
        self.plic.set_level(UART_IRQ, uart);
        // virtio slot i raises PLIC source i + 1.
        let blk = self.blk.as_ref().is_some_and(|d| d.irq());
        let net = self.net.as_ref().is_some_and(|d| d.irq());
        let rng = self.rng.as_ref().is_some_and(|d| d.irq());
        self.plic.set_level(1, blk);
        self.plic.set_level(2, net);
        self.plic.set_level(3, rng);
    }
}

/// The virtio-mmio slot and register offset of an address in the virtio window.
fn virtio_slot(paddr: u64) -> (u64, u64) {
    let rel = paddr - VIRTIO_BASE;
    (rel / VIRTIO_STRIDE, rel % VIRTIO_STRIDE)
}

#[inline]
fn in_window(paddr: u64, size: u8, base: u64, len: u64) -> bool {
    paddr >= base && paddr - base < len && len - (paddr - base) >= size as u64
}
