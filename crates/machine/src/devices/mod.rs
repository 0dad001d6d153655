//! Device models on the machine's bus. Each device is a pure model: it does no I/O,
//! reads no clock and starts no thread; the machine feeds it time (derived from the
//! instruction count) and input events, and collects its outputs.

pub mod clint;
pub mod plic;
pub mod sifive_test;
pub mod uart;
pub mod virtio;

/// A memory-mapped device. Offsets are relative to the device's base address.
/// Unknown registers read as zero and ignore writes (STYLE.md §3); guest input never
/// panics the host.
pub trait Mmio {
    /// Read `size` bytes (1, 2, 4 or 8) at `offset`.
    fn read(&mut self, offset: u64, size: u8) -> u64;
    /// Write the low `size` bytes (1, 2, 4 or 8) of `value` at `offset`.
    fn write(&mut self, offset: u64, size: u8, value: u64);
}

/// Guest physical memory map, as on QEMU's `virt` machine (GUEST.md).
pub mod layout {
    /// sifive,test0 power-off/reset device.
    pub const TEST_BASE: u64 = 0x10_0000;
    /// Size of the test device window.
    pub const TEST_SIZE: u64 = 0x1000;
    /// CLINT (mtime, mtimecmp, msip).
    pub const CLINT_BASE: u64 = 0x200_0000;
    /// Size of the CLINT window.
    pub const CLINT_SIZE: u64 = 0x1_0000;
    /// PLIC.
    pub const PLIC_BASE: u64 = 0xc00_0000;
    /// Size of the PLIC window.
    pub const PLIC_SIZE: u64 = 0x60_0000;
    /// NS16550A UART.
    pub const UART_BASE: u64 = 0x1000_0000;
    /// Size of the UART window.
    pub const UART_SIZE: u64 = 0x100;
    /// PLIC source of the UART.
    pub const UART_IRQ: u32 = 10;
    /// First virtio-mmio slot; slots are `VIRTIO_STRIDE` apart.
    pub const VIRTIO_BASE: u64 = 0x1000_1000;
    /// Distance between virtio-mmio slots.
    pub const VIRTIO_STRIDE: u64 = 0x1000;
    /// Number of virtio-mmio slots (PLIC sources 1..=8).
    pub const VIRTIO_SLOTS: u64 = 8;
    /// Start of RAM.
    pub const RAM_BASE: u64 = 0x8000_0000;
    /// Guest timebase: `mtime` ticks per second.
    pub const TIMEBASE_HZ: u64 = 10_000_000;
}
