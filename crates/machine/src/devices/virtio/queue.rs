//! Split virtqueues (virtio 1.2 §2.7) walked over guest RAM.
//!
//! The driver places a descriptor table, an available ring and a used ring in guest
//! memory; [`Queue::pop`] takes the next available descriptor chain and checks all of
//! it before a device sees it, and [`Queue::push`] returns a chain through the used ring.
//! Every guest-supplied number is checked: a malformed chain is an error value, never a
//! panic, and the work per chain is bounded by the queue size.

use crate::ram::Ram;
use serde::{Deserialize, Serialize};

/// Largest queue size a device offers (QueueNumMax), and the largest indirect table.
pub const MAX_QUEUE_SIZE: u16 = 256;

/// Size of one descriptor (§2.7.5).
const DESC_SIZE: u64 = 16;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;
/// Avail ring flag: the driver asks for no used-buffer notifications (§2.7.7).
const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Why a chain or a queue was rejected. Caused by the guest: counted, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum QueueError {
    /// The available ring is not in guest RAM.
    #[error("the available ring at {0:#x} is outside guest RAM")]
    AvailOutsideRam(u64),
    /// The used ring is not in guest RAM.
    #[error("the used ring at {0:#x} is outside guest RAM")]
    UsedOutsideRam(u64),
    /// The driver published more chains than the queue holds.
    #[error("the driver made {pending} chains available on a queue of {size}")]
    AvailOverrun {
        /// Chains the available index claims.
        pending: u16,
        /// Queue size.
        size: u16,
    },
    /// A descriptor index is past the end of its table.
    #[error("descriptor index {index} is past the end of a table of {size}")]
    IndexOutOfRange {
        /// The index.
        index: u16,
        /// Entries in the table.
        size: u16,
    },
    /// A chain has more descriptors than its table (so it loops).
    #[error("a descriptor chain is longer than its table of {0}")]
    ChainTooLong(u16),
    /// A descriptor table or buffer is not wholly in guest RAM.
    #[error("{len} bytes at {addr:#x} are outside guest RAM")]
    OutsideRam {
        /// Guest physical address.
        addr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// A device-readable buffer follows a device-writable one (§2.7.4.2).
    #[error("a device-readable buffer follows a device-writable one")]
    ReadableAfterWritable,
    /// An indirect table's length is zero, not a multiple of 16 or too large.
    #[error("an indirect descriptor table of {0} bytes")]
    BadIndirectTable(u32),
    /// An indirect descriptor also has NEXT set, or sits inside an indirect table.
    #[error("an indirect descriptor is chained or nested")]
    BadIndirect,
    /// The buffers of a chain add up to more than 4 GiB (§2.7.5.2).
    #[error("a descriptor chain holds more than 4 GiB")]
    TooLarge,
    /// A request that does not follow the device type's format.
    #[error("malformed request: {0}")]
    BadRequest(String),
}

/// One guest buffer, wholly inside RAM when it comes out of [`Queue::pop`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Guest physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
}

/// A descriptor chain: device-readable buffers, then device-writable ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// Index of the head descriptor: the id returned through the used ring.
    pub head: u16,
    /// Buffers the device reads, in order.
    pub readable: Vec<Segment>,
    /// Buffers the device writes, in order.
    pub writable: Vec<Segment>,
}

/// A chain that failed the checks. `head` is set when the chain can be returned to the
/// driver through the used ring (its head index is valid).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadChain {
    /// Head index, if it is within the queue.
    pub head: Option<u16>,
    /// What was wrong.
    pub error: QueueError,
}

/// One split virtqueue as the device sees it (its part of the transport state).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    /// Queue size chosen by the driver (QueueNum); 0 until set.
    pub(crate) size: u16,
    /// QueueReady.
    pub(crate) ready: bool,
    /// Descriptor table address.
    pub(crate) desc: u64,
    /// Available ring ("driver area") address.
    pub(crate) driver: u64,
    /// Used ring ("device area") address.
    pub(crate) device: u64,
    /// Next available-ring entry to take.
    next_avail: u16,
    /// Next used-ring entry to fill.
    next_used: u16,
    /// A ring-level error happened; the queue does nothing until reset (§2.1.2).
    broken: bool,
}

fn read_u16(ram: &Ram, addr: u64) -> Option<u16> {
    let mut b = [0; 2];
    ram.read(addr, &mut b).then(|| u16::from_le_bytes(b))
}

/// A descriptor as stored in a table (§2.7.5).
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

impl Desc {
    fn parse(b: &[u8; 16]) -> Desc {
        Desc {
            addr: u64::from_le_bytes(b[0..8].try_into().unwrap_or_default()),
            len: u32::from_le_bytes(b[8..12].try_into().unwrap_or_default()),
            flags: u16::from_le_bytes([b[12], b[13]]),
            next: u16::from_le_bytes([b[14], b[15]]),
        }
    }
}

impl Queue {
    /// True once a ring-level error stopped the queue.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn usable(&self) -> bool {
        self.ready && !self.broken && self.size != 0
    }

    fn fail(&mut self, error: QueueError) -> BadChain {
        self.broken = true;
        BadChain { head: None, error }
    }

    /// The next available chain: `None` when there is none (or the queue is not ready
    /// or broken). A bad chain is consumed; a bad ring breaks the queue.
    pub fn pop(&mut self, ram: &Ram) -> Option<Result<Chain, BadChain>> {
        if !self.usable() {
            return None;
        }
        let idx_addr = self.driver.saturating_add(2);
        let Some(avail_idx) = read_u16(ram, idx_addr) else {
            return Some(Err(self.fail(QueueError::AvailOutsideRam(self.driver))));
        };
        let pending = avail_idx.wrapping_sub(self.next_avail);
        if pending == 0 {
            return None;
        }
        if pending > self.size {
            let size = self.size;
            return Some(Err(self.fail(QueueError::AvailOverrun { pending, size })));
        }
        let slot = 4 + 2 * u64::from(self.next_avail % self.size);
        let head = self.driver.checked_add(slot).and_then(|a| read_u16(ram, a));
        let Some(head) = head else {
            return Some(Err(self.fail(QueueError::AvailOutsideRam(self.driver))));
        };
        self.next_avail = self.next_avail.wrapping_add(1);
        Some(self.walk(ram, head).map_err(|error| BadChain {
            head: (head < self.size).then_some(head),
            error,
        }))
    }

    /// Give back the chain the last [`Queue::pop`] returned, untouched: the next pop
    /// returns it again.
    pub fn undo_pop(&mut self) {
        self.next_avail = self.next_avail.wrapping_sub(1);
    }

    /// Follow the chain at `head` through the descriptor table (§2.7.5.2) and, at its
    /// end, at most one indirect table (§2.7.5.3).
    fn walk(&self, ram: &Ram, head: u16) -> Result<Chain, QueueError> {
        let mut chain = Chain {
            head,
            readable: Vec::new(),
            writable: Vec::new(),
        };
        let mut total = 0u64;
        let mut index = head;
        for _ in 0..self.size {
            if index >= self.size {
                let size = self.size;
                return Err(QueueError::IndexOutOfRange { index, size });
            }
            let addr = self.desc.checked_add(DESC_SIZE * u64::from(index));
            let mut b = [0; 16];
            if !addr.is_some_and(|a| ram.read(a, &mut b)) {
                let addr = self.desc;
                let len = DESC_SIZE * u64::from(self.size);
                return Err(QueueError::OutsideRam { addr, len });
            }
            let d = Desc::parse(&b);
            if d.flags & DESC_F_INDIRECT != 0 {
                if d.flags & DESC_F_NEXT != 0 {
                    return Err(QueueError::BadIndirect);
                }
                walk_indirect(ram, &d, &mut chain, &mut total)?;
                return Ok(chain);
            }
            add_segment(ram, &d, &mut chain, &mut total)?;
            if d.flags & DESC_F_NEXT == 0 {
                return Ok(chain);
            }
            index = d.next;
        }
        Err(QueueError::ChainTooLong(self.size))
    }

    /// Return chain `head` to the driver with `len` bytes written (§2.7.8). Returns
    /// whether the driver wants a used-buffer notification (§2.7.7.2: without
    /// EVENT_IDX, unless it set NO_INTERRUPT). A ring outside RAM breaks the queue.
    pub fn push(&mut self, ram: &mut Ram, head: u16, len: u32) -> Result<bool, QueueError> {
        if !self.usable() {
            return Ok(false);
        }
        let mut elem = [0; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        let slot = 4 + 8 * u64::from(self.next_used % self.size);
        let next = self.next_used.wrapping_add(1);
        let device = self.device;
        let written = device.checked_add(slot).is_some_and(|a| ram.load(a, &elem))
            && device
                .checked_add(2)
                .is_some_and(|a| ram.load(a, &next.to_le_bytes()));
        if !written {
            return Err(self.fail(QueueError::UsedOutsideRam(device)).error);
        }
        self.next_used = next;
        match read_u16(ram, self.driver) {
            Some(flags) => Ok(flags & AVAIL_F_NO_INTERRUPT == 0),
            None => Err(self.fail(QueueError::AvailOutsideRam(self.driver)).error),
        }
    }
}

/// Walk an indirect table: its own chain starting at entry 0.
fn walk_indirect(
    ram: &Ram,
    d: &Desc,
    chain: &mut Chain,
    total: &mut u64,
) -> Result<(), QueueError> {
    let entries = d.len / DESC_SIZE as u32;
    if d.len == 0 || !d.len.is_multiple_of(DESC_SIZE as u32) || entries > u32::from(MAX_QUEUE_SIZE)
    {
        return Err(QueueError::BadIndirectTable(d.len));
    }
    let mut table = vec![0; d.len as usize];
    if !ram.read(d.addr, &mut table) {
        let (addr, len) = (d.addr, u64::from(d.len));
        return Err(QueueError::OutsideRam { addr, len });
    }
    let size = entries as u16;
    let mut index = 0u16;
    for _ in 0..size {
        let Some(b) = table
            .get(usize::from(index) * 16..)
            .and_then(|t| t.first_chunk::<16>())
        else {
            return Err(QueueError::IndexOutOfRange { index, size });
        };
        let e = Desc::parse(b);
        if e.flags & DESC_F_INDIRECT != 0 {
            return Err(QueueError::BadIndirect);
        }
        add_segment(ram, &e, chain, total)?;
        if e.flags & DESC_F_NEXT == 0 {
            return Ok(());
        }
        index = e.next;
    }
    Err(QueueError::ChainTooLong(size))
}

fn add_segment(ram: &Ram, d: &Desc, chain: &mut Chain, total: &mut u64) -> Result<(), QueueError> {
    let (addr, len) = (d.addr, u64::from(d.len));
    if ram.offset(addr, len).is_none() {
        return Err(QueueError::OutsideRam { addr, len });
    }
    *total += len;
    if *total > u64::from(u32::MAX) {
        return Err(QueueError::TooLarge);
    }
    let seg = Segment { addr, len: d.len };
    if d.flags & DESC_F_WRITE != 0 {
        chain.writable.push(seg);
    } else if chain.writable.is_empty() {
        chain.readable.push(seg);
    } else {
        return Err(QueueError::ReadableAfterWritable);
    }
    Ok(())
}

/// Visit the pieces of `len` bytes starting `skip` bytes into `segs`: `f(addr, start,
/// end)` for each piece, with `start..end` its place in those `len` bytes. False if
/// the segments are too short or `f` fails.
fn pieces(
    segs: &[Segment],
    mut skip: u64,
    len: usize,
    mut f: impl FnMut(u64, usize, usize) -> bool,
) -> bool {
    let mut done = 0usize;
    for s in segs {
        if done == len {
            break;
        }
        let seg_len = u64::from(s.len);
        if skip >= seg_len {
            skip -= seg_len;
            continue;
        }
        let n = ((seg_len - skip) as usize).min(len - done);
        let Some(addr) = s.addr.checked_add(skip) else {
            return false;
        };
        if !f(addr, done, done + n) {
            return false;
        }
        done += n;
        skip = 0;
    }
    done == len
}

impl Chain {
    /// Total bytes of the device-readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|s| u64::from(s.len)).sum()
    }

    /// Total bytes of the device-writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|s| u64::from(s.len)).sum()
    }

    /// Fill `buf` from the readable buffers, starting `skip` bytes in. False if they
    /// hold fewer bytes.
    pub fn read(&self, ram: &Ram, skip: u64, buf: &mut [u8]) -> bool {
        let len = buf.len();
        pieces(&self.readable, skip, len, |addr, a, b| {
            ram.read(addr, &mut buf[a..b])
        })
    }

    /// Copy `data` into the writable buffers, starting `skip` bytes in. False if they
    /// hold fewer bytes (what fits may have been written).
    pub fn write(&self, ram: &mut Ram, skip: u64, data: &[u8]) -> bool {
        pieces(&self.writable, skip, data.len(), |addr, a, b| {
            ram.load(addr, &data[a..b])
        })
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
