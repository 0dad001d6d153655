//! The virtio-mmio transport, version 2 (virtio 1.2 §4.2), generic over a device.
//!
//! [`VirtioMmio`] holds the registers every device shares ([`Transport`]: status,
//! features, queues, interrupt status) and one [`VirtioDevice`], which sees its queues
//! only through the transport. Control registers are 32 bits wide (§4.2.2.2); other
//! accesses below the configuration space read as zero and are ignored.

use super::queue::{Chain, Queue, QueueError, MAX_QUEUE_SIZE};
use crate::ram::Ram;
use serde::{Deserialize, Serialize};

/// "virt" in little-endian (§4.2.2).
pub const MAGIC: u32 = 0x7472_6976;
/// The modern (non-legacy) register layout.
pub const VERSION: u32 = 2;
/// Vendor ID reported to the driver (QEMU's "QEMU", which Linux treats like any other).
pub const VENDOR_ID: u32 = 0x554d_4551;

/// Feature bit: indirect descriptors (§6).
pub const F_INDIRECT_DESC: u64 = 1 << 28;
/// Feature bit: the device conforms to virtio 1.x (§6).
pub const F_VERSION_1: u64 = 1 << 32;

/// Device status bits (§2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready: the device may use its queues.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error and needs a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 0x80;
}

/// InterruptStatus bit: a used buffer notification (§4.2.2).
pub const INT_USED_BUFFER: u32 = 1;
/// InterruptStatus bit: a configuration change notification.
pub const INT_CONFIG: u32 = 2;

// Register offsets (§4.2.2, Table "MMIO Device Register Layout").
const MAGIC_VALUE: u64 = 0x000;
const VERSION_REG: u64 = 0x004;
const DEVICE_ID: u64 = 0x008;
const VENDOR_ID_REG: u64 = 0x00c;
const DEVICE_FEATURES: u64 = 0x010;
const DEVICE_FEATURES_SEL: u64 = 0x014;
const DRIVER_FEATURES: u64 = 0x020;
const DRIVER_FEATURES_SEL: u64 = 0x024;
const QUEUE_SEL: u64 = 0x030;
const QUEUE_NUM_MAX: u64 = 0x034;
const QUEUE_NUM: u64 = 0x038;
const QUEUE_READY: u64 = 0x044;
const QUEUE_NOTIFY: u64 = 0x050;
const INTERRUPT_STATUS: u64 = 0x060;
const INTERRUPT_ACK: u64 = 0x064;
const STATUS: u64 = 0x070;
const QUEUE_DESC_LOW: u64 = 0x080;
const QUEUE_DESC_HIGH: u64 = 0x084;
const QUEUE_DRIVER_LOW: u64 = 0x090;
const QUEUE_DRIVER_HIGH: u64 = 0x094;
const QUEUE_DEVICE_LOW: u64 = 0x0a0;
const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const SHM_LEN_LOW: u64 = 0x0b0;
const SHM_LEN_HIGH: u64 = 0x0b4;
const CONFIG_GENERATION: u64 = 0x0fc;
/// Start of the device-specific configuration space.
pub const CONFIG: u64 = 0x100;

/// A device type behind the transport (virtio 1.2 §5).
pub trait VirtioDevice {
    /// Device ID (§5: 1 network, 2 block, 4 entropy).
    const DEVICE_ID: u32;
    /// Number of virtqueues.
    const NUM_QUEUES: usize;
    /// Device-specific feature bits offered; the transport adds VERSION_1 and
    /// INDIRECT_DESC.
    fn features(&self) -> u64;
    /// The device-specific configuration space, read-only to the driver.
    fn config(&self) -> Vec<u8>;
    /// Buffers may be available on `queue` (the driver kicked it, or set DRIVER_OK):
    /// take what the device can take now.
    fn notify(&mut self, queue: usize, t: &mut Transport, ram: &mut Ram);
    /// The driver reset the device: forget all in-flight work.
    fn reset(&mut self);
}

/// Transport state shared by every device type; devices reach their queues through it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transport {
    status: u32,
    device_features_sel: u32,
    driver_features: u64,
    driver_features_sel: u32,
    queue_sel: u32,
    queues: Vec<Queue>,
    interrupt_status: u32,
    /// Guest errors so far (malformed chains, rings and requests).
    errors: u64,
    /// The most recent of those errors.
    last_error: Option<QueueError>,
}

impl Transport {
    fn new(num_queues: usize) -> Transport {
        Transport {
            queues: vec![Queue::default(); num_queues],
            ..Transport::default()
        }
    }

    /// The driver set DRIVER_OK and has not reset the device since (§3.1.1).
    pub fn driver_ok(&self) -> bool {
        self.status & status::DRIVER_OK != 0
    }

    /// Whether the driver accepted feature `bit` (a mask).
    pub fn negotiated(&self, bit: u64) -> bool {
        self.driver_features & bit == bit
    }

    /// Count a guest error (the chain concerned is returned or dropped by the caller).
    pub fn count_error(&mut self, error: QueueError) {
        self.errors += 1;
        self.last_error = Some(error);
    }

    /// The next valid chain on `queue`, before which malformed chains are counted and
    /// returned to the driver unused. `None` if there is none or before DRIVER_OK.
    pub fn pop(&mut self, queue: usize, ram: &mut Ram) -> Option<Chain> {
        if !self.driver_ok() {
            return None;
        }
        loop {
            // Each turn consumes an available entry or breaks the queue: at most
            // queue-size turns.
            let bad = match self.queues.get_mut(queue)?.pop(ram)? {
                Ok(chain) => return Some(chain),
                Err(bad) => bad,
            };
            self.count_error(bad.error);
            if let Some(head) = bad.head {
                self.push(queue, ram, head, 0);
            }
            self.check_broken(queue);
        }
    }

    /// Give back the chain the last [`Transport::pop`] on `queue` returned.
    pub fn undo_pop(&mut self, queue: usize) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.undo_pop();
        }
    }

    /// Return chain `head` on `queue` to the driver with `len` bytes written, and
    /// raise the used-buffer interrupt unless the driver suppressed it.
    pub fn push(&mut self, queue: usize, ram: &mut Ram, head: u16, len: u32) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        match q.push(ram, head, len) {
            Ok(true) => self.interrupt_status |= INT_USED_BUFFER,
            Ok(false) => {}
            Err(e) => {
                self.count_error(e);
                self.check_broken(queue);
            }
        }
    }

    /// A broken queue puts the device in DEVICE_NEEDS_RESET and tells the driver
    /// with a configuration change notification (§2.1.2).
    fn check_broken(&mut self, queue: usize) {
        if self.queues.get(queue).is_some_and(Queue::is_broken)
            && self.status & status::DEVICE_NEEDS_RESET == 0
        {
            self.status |= status::DEVICE_NEEDS_RESET;
            self.interrupt_status |= INT_CONFIG;
        }
    }

    fn queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// Set the low or high half of a queue address; only while the queue is not ready.
    fn set_addr(&mut self, which: fn(&mut Queue) -> &mut u64, high: bool, value: u32) {
        if let Some(q) = self.queue().filter(|q| !q.ready) {
            let a = which(q);
            *a = if high {
                (*a & 0xffff_ffff) | (u64::from(value) << 32)
            } else {
                (*a & !0xffff_ffff) | u64::from(value)
            };
        }
    }
}

/// A virtio-mmio device slot: the transport and one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioMmio<D> {
    pub(crate) transport: Transport,
    pub(crate) device: D,
}

impl<D: VirtioDevice> VirtioMmio<D> {
    /// A device in its reset state.
    pub fn new(device: D) -> VirtioMmio<D> {
        VirtioMmio {
            transport: Transport::new(D::NUM_QUEUES),
            device,
        }
    }

    /// The device model.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// Guest errors counted so far (malformed chains, rings and requests).
    pub fn errors(&self) -> u64 {
        self.transport.errors
    }

    /// The most recent guest error, if any.
    pub fn last_error(&self) -> Option<&QueueError> {
        self.transport.last_error.as_ref()
    }

    /// The interrupt line (level): InterruptStatus is not zero.
    pub fn irq(&self) -> bool {
        self.transport.interrupt_status != 0
    }

    fn offered(&self) -> u64 {
        self.device.features() | F_VERSION_1 | F_INDIRECT_DESC
    }

    /// Read `size` bytes at `offset` in the slot.
    pub fn read(&mut self, offset: u64, size: u8) -> u64 {
        if offset >= CONFIG {
            let config = self.device.config();
            let mut b = [0u8; 8];
            let start = (offset - CONFIG) as usize;
            for (i, byte) in b.iter_mut().take(usize::from(size.min(8))).enumerate() {
                *byte = config.get(start + i).copied().unwrap_or(0);
            }
            return u64::from_le_bytes(b);
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return 0;
        }
        let t = &self.transport;
        let queue = t.queues.get(t.queue_sel as usize);
        u64::from(match offset {
            MAGIC_VALUE => MAGIC,
            VERSION_REG => VERSION,
            DEVICE_ID => D::DEVICE_ID,
            VENDOR_ID_REG => VENDOR_ID,
            DEVICE_FEATURES => match t.device_features_sel {
                0 => self.offered() as u32,
                1 => (self.offered() >> 32) as u32,
                _ => 0,
            },
            QUEUE_NUM_MAX => queue.map_or(0, |_| u32::from(MAX_QUEUE_SIZE)),
            QUEUE_READY => queue.map_or(0, |q| u32::from(q.ready)),
            INTERRUPT_STATUS => t.interrupt_status,
            STATUS => t.status,
            // No shared memory regions: length -1 (§4.2.2).
            SHM_LEN_LOW | SHM_LEN_HIGH => u32::MAX,
            CONFIG_GENERATION => 0,
            _ => 0,
        })
    }

    /// Write the low `size` bytes of `value` at `offset`; a queue notification runs
    /// the device, which may read and write guest memory.
    pub fn write(&mut self, offset: u64, size: u8, value: u64, ram: &mut Ram) {
        // The configuration spaces of these devices are read-only.
        if size != 4 || !offset.is_multiple_of(4) || offset >= CONFIG {
            return;
        }
        let v = value as u32;
        let t = &mut self.transport;
        match offset {
            DEVICE_FEATURES_SEL => t.device_features_sel = v,
            DRIVER_FEATURES_SEL => t.driver_features_sel = v,
            // Features are fixed once FEATURES_OK is set (§2.2.1).
            DRIVER_FEATURES if t.status & status::FEATURES_OK == 0 => match t.driver_features_sel {
                0 => t.driver_features = (t.driver_features & !0xffff_ffff) | u64::from(v),
                1 => t.driver_features = (t.driver_features & 0xffff_ffff) | (u64::from(v) << 32),
                _ => {}
            },
            QUEUE_SEL => t.queue_sel = v,
            QUEUE_NUM => {
                if let Some(q) = t.queue().filter(|q| !q.ready) {
                    if v <= u32::from(MAX_QUEUE_SIZE) {
                        q.size = v as u16;
                    }
                }
            }
            QUEUE_READY => {
                if let Some(q) = t.queue() {
                    q.ready = v & 1 != 0;
                }
            }
            QUEUE_DESC_LOW => t.set_addr(|q| &mut q.desc, false, v),
            QUEUE_DESC_HIGH => t.set_addr(|q| &mut q.desc, true, v),
            QUEUE_DRIVER_LOW => t.set_addr(|q| &mut q.driver, false, v),
            QUEUE_DRIVER_HIGH => t.set_addr(|q| &mut q.driver, true, v),
            QUEUE_DEVICE_LOW => t.set_addr(|q| &mut q.device, false, v),
            QUEUE_DEVICE_HIGH => t.set_addr(|q| &mut q.device, true, v),
            QUEUE_NOTIFY => {
                let q = v as usize;
                if t.driver_ok() && t.queues.get(q).is_some_and(|q| q.ready) {
                    self.device.notify(q, &mut self.transport, ram);
                }
            }
            INTERRUPT_ACK => t.interrupt_status &= !v,
            STATUS => self.write_status(v, ram),
            _ => {}
        }
    }

    /// A Status write (§2.1, §3.1.1): 0 resets the device; FEATURES_OK sticks only
    /// for an acceptable feature set; DRIVER_OK starts the queues.
    fn write_status(&mut self, v: u32, ram: &mut Ram) {
        if v == 0 {
            let errors = self.transport.errors;
            let last_error = self.transport.last_error.take();
            self.transport = Transport {
                errors,
                last_error,
                ..Transport::new(D::NUM_QUEUES)
            };
            self.device.reset();
            return;
        }
        let offered = self.offered();
        let t = &mut self.transport;
        let old = t.status;
        let mut new = (v & 0xff) | (old & status::DEVICE_NEEDS_RESET);
        if new & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 {
            let f = t.driver_features;
            if f & !offered != 0 || f & F_VERSION_1 == 0 {
                new &= !status::FEATURES_OK;
            }
        }
        t.status = new;
        if new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
            for q in 0..D::NUM_QUEUES {
                if self.transport.queues.get(q).is_some_and(|q| q.ready) {
                    self.device.notify(q, &mut self.transport, ram);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "mmio_tests.rs"]
mod tests;
