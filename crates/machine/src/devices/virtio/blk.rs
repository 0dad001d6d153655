//! virtio block device (virtio 1.2 §5.2), a pure model.
//!
//! The device never touches a disk. A read, write or flush the guest makes available
//! becomes a [`BlkRequest`] the host collects with [`VirtioMmio::take_requests`]
//! (writes carry their data, read from guest memory when the request is taken off the
//! queue); the host answers with [`VirtioMmio::complete`], which fills the guest's
//! buffers, returns the chain and raises the interrupt. Requests the device can answer
//! alone (out of range, writes to a read-only disk, GET_ID, unknown types) never reach
//! the host. Request ids come from a counter, so they are deterministic.

use super::mmio::{Transport, VirtioDevice, VirtioMmio};
use super::queue::{Chain, QueueError};
use crate::ram::Ram;
use serde::{Deserialize, Serialize};

/// Feature bit: `size_max` is valid (§5.2.3).
pub const F_SIZE_MAX: u64 = 1 << 1;
/// Feature bit: `seg_max` is valid.
pub const F_SEG_MAX: u64 = 1 << 2;
/// Feature bit: the device is read-only.
pub const F_RO: u64 = 1 << 5;
/// Feature bit: the device takes flush requests.
pub const F_FLUSH: u64 = 1 << 9;

/// Sector size: offsets and lengths in requests are in 512-byte units (§5.2.6).
pub const SECTOR: u64 = 512;
/// Largest segment the driver may use (`size_max`).
pub const SIZE_MAX: u32 = 64 * 1024;
/// Most data segments per request (`seg_max`): a full 256-entry queue or indirect
/// table less the header and status descriptors.
pub const SEG_MAX: u32 = 254;
/// Largest data transfer a request may ask for.
pub const MAX_REQUEST_BYTES: u64 = SEG_MAX as u64 * SIZE_MAX as u64;
/// The identification string GET_ID returns (at most 20 bytes, §5.2.6).
pub const ID: &[u8] = b"ftvm-virtio-blk";

const ID_BYTES: usize = 20;
const HEADER: u64 = 16;
// Request types (§5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
// Status values.
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

/// What a request asks the host to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlkRequestKind {
    /// Read `len` bytes (a multiple of 512) from `sector` on.
    Read {
        /// First sector.
        sector: u64,
        /// Bytes to read.
        len: u32,
    },
    /// Write `data` (a multiple of 512 bytes) from `sector` on.
    Write {
        /// First sector.
        sector: u64,
        /// The bytes to write.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Make every completed write durable.
    Flush,
}

/// A request for the host; answer it with [`VirtioMmio::complete`] and the same id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkRequest {
    /// Request id, unique for the life of the device.
    pub id: u64,
    /// What to do.
    pub kind: BlkRequestKind,
}

/// Why the host could not carry out a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum BlkError {
    /// The disk failed the request (the guest sees VIRTIO_BLK_S_IOERR).
    #[error("the disk could not carry out the request")]
    Io,
    /// The disk does not do this kind of request (VIRTIO_BLK_S_UNSUPP).
    #[error("the disk does not support the request")]
    Unsupported,
}

/// A request the host holds: the chain to answer into.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct InFlight {
    id: u64,
    chain: Chain,
    /// For a read, the bytes the host must return.
    read_len: Option<u32>,
}

/// The block device's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blk {
    /// Size in 512-byte sectors.
    capacity: u64,
    read_only: bool,
    next_id: u64,
    /// Requests not yet taken by the host.
    requests: Vec<BlkRequest>,
    /// Requests taken off the queue and not yet completed, in id order.
    in_flight: Vec<InFlight>,
}

/// A virtio-mmio slot holding a block device.
pub type VirtioBlk = VirtioMmio<Blk>;

impl Blk {
    /// A disk of `capacity` 512-byte sectors.
    pub fn new(capacity: u64, read_only: bool) -> Blk {
        Blk {
            capacity,
            read_only,
            next_id: 0,
            requests: Vec::new(),
            in_flight: Vec::new(),
        }
    }

    /// Size in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Requests handed out (or waiting to be) and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// `len` bytes from `sector` on, if a valid transfer inside the disk.
    fn transfer(&self, sector: u64, len: u64) -> Result<u32, u8> {
        let end = sector.checked_add(len / SECTOR);
        if end.is_none_or(|e| e > self.capacity) {
            return Err(S_IOERR);
        }
        Ok(len as u32)
    }

    /// Start the request in `chain` (§5.2.6): hand it to the host or answer it here.
    fn start(&mut self, chain: Chain, t: &mut Transport, ram: &mut Ram) {
        let writable = chain.writable_len();
        if writable == 0 {
            t.count_error(bad("a block request without a status byte"));
            t.push(0, ram, chain.head, 0);
            return;
        }
        let mut header = [0u8; HEADER as usize];
        if !chain.read(ram, 0, &mut header) {
            t.count_error(bad("a block request header shorter than 16 bytes"));
            return finish(t, ram, &chain, &[], S_IOERR);
        }
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let sector = u64::from_le_bytes(header[8..].try_into().unwrap_or_default());
        let data_in = writable - 1;
        let data_out = chain.readable_len() - HEADER;
        let len = match kind {
            T_IN => data_in,
            T_OUT => data_out,
            _ => 0,
        };
        if !len.is_multiple_of(SECTOR) || len > MAX_REQUEST_BYTES {
            t.count_error(bad("a block transfer of a bad length"));
            return finish(t, ram, &chain, &[], S_IOERR);
        }
        let (kind, read_len) = match kind {
            T_IN => match self.transfer(sector, len) {
                Ok(len) => (BlkRequestKind::Read { sector, len }, Some(len)),
                Err(status) => return finish(t, ram, &chain, &[], status),
            },
            T_OUT if self.read_only => return finish(t, ram, &chain, &[], S_IOERR),
            T_OUT => {
                if let Err(status) = self.transfer(sector, len) {
                    return finish(t, ram, &chain, &[], status);
                }
                let mut data = vec![0; len as usize];
                if !chain.read(ram, HEADER, &mut data) {
                    return finish(t, ram, &chain, &[], S_IOERR);
                }
                (BlkRequestKind::Write { sector, data }, None)
            }
            // Nothing is ever written to a read-only disk: nothing to flush.
            T_FLUSH if self.read_only => return finish(t, ram, &chain, &[], S_OK),
            T_FLUSH => (BlkRequestKind::Flush, None),
            T_GET_ID => {
                let mut id = [0u8; ID_BYTES];
                id[..ID.len()].copy_from_slice(ID);
                let n = ID_BYTES.min(data_in as usize);
                return finish(t, ram, &chain, &id[..n], S_OK);
            }
            _ => return finish(t, ram, &chain, &[], S_UNSUPP),
        };
        let id = self.next_id;
        self.next_id += 1;
        self.requests.push(BlkRequest { id, kind });
        self.in_flight.push(InFlight {
            id,
            chain,
            read_len,
        });
    }
}

fn bad(what: &str) -> QueueError {
    QueueError::BadRequest(what.into())
}

/// Answer a request: `data` at the start of the writable buffers, the status in
/// their last byte, then return the chain.
fn finish(t: &mut Transport, ram: &mut Ram, chain: &Chain, data: &[u8], status: u8) {
    let status_at = chain.writable_len().saturating_sub(1);
    // The lengths were checked when the request started; RAM does not shrink.
    let written = chain.write(ram, 0, data) && chain.write(ram, status_at, &[status]);
    let len = if written { data.len() as u32 + 1 } else { 0 };
    t.push(0, ram, chain.head, len);
}

impl VirtioDevice for Blk {
    const DEVICE_ID: u32 = 2;
    const NUM_QUEUES: usize = 1;

    fn features(&self) -> u64 {
        let ro = if self.read_only { F_RO } else { 0 };
        F_SIZE_MAX | F_SEG_MAX | F_FLUSH | ro
    }

    /// `struct virtio_blk_config` (§5.2.4) up to `blk_size`; the fields after it
    /// belong to features not offered.
    fn config(&self) -> Vec<u8> {
        let mut c = Vec::with_capacity(24);
        c.extend_from_slice(&self.capacity.to_le_bytes());
        c.extend_from_slice(&SIZE_MAX.to_le_bytes());
        c.extend_from_slice(&SEG_MAX.to_le_bytes());
        c.extend_from_slice(&[0; 4]); // geometry
        c.extend_from_slice(&(SECTOR as u32).to_le_bytes()); // blk_size
        c
    }

    fn notify(&mut self, queue: usize, t: &mut Transport, ram: &mut Ram) {
        if queue != 0 {
            return;
        }
        while let Some(chain) = t.pop(0, ram) {
            self.start(chain, t, ram);
        }
    }

    fn reset(&mut self) {
        // Ids keep counting, so a late completion for a dropped request is ignored.
        self.requests.clear();
        self.in_flight.clear();
    }
}

impl VirtioMmio<Blk> {
    /// The requests started since the last call, in id order.
    pub fn take_requests(&mut self) -> Vec<BlkRequest> {
        std::mem::take(&mut self.device.requests)
    }

    /// Complete request `id`: for a read, `Ok` carries exactly the bytes asked for
    /// (anything else fails the request); for a write or flush it is empty. Returns
    /// false if `id` is not in flight (already completed, or dropped by a reset).
    pub fn complete(&mut self, id: u64, result: Result<Vec<u8>, BlkError>, ram: &mut Ram) -> bool {
        let in_flight = &mut self.device.in_flight;
        let Ok(pos) = in_flight.binary_search_by_key(&id, |f| f.id) else {
            return false;
        };
        let f = in_flight.remove(pos);
        let (status, data) = match (result, f.read_len) {
            (Ok(data), Some(len)) if data.len() == len as usize => (S_OK, data),
            (Ok(_), Some(_)) => (S_IOERR, Vec::new()),
            (Ok(_), None) => (S_OK, Vec::new()),
            (Err(BlkError::Io), _) => (S_IOERR, Vec::new()),
            (Err(BlkError::Unsupported), _) => (S_UNSUPP, Vec::new()),
        };
        finish(&mut self.transport, ram, &f.chain, &data, status);
        true
    }
}

#[cfg(test)]
#[path = "blk_tests.rs"]
mod tests;
