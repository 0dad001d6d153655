//! virtio entropy device (virtio 1.2 §5.4), a pure model.
//!
//! Each chain on the request queue asks for as many random bytes as its writable
//! buffers hold. The request goes to the host ([`VirtioMmio::take_requests`]), which
//! answers with bytes from its own source ([`VirtioMmio::complete`]): entropy is an
//! input event like any other.

use super::mmio::{Transport, VirtioDevice, VirtioMmio};
use super::queue::{Chain, QueueError};
use crate::ram::Ram;
use serde::{Deserialize, Serialize};

/// Most bytes one request asks the host for; larger buffers are partly filled.
pub const MAX_REQUEST_LEN: u32 = 64 * 1024;

/// The entropy device's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng {
    next_id: u64,
    /// `(id, len)` requests not yet taken by the host.
    requests: Vec<(u64, u32)>,
    /// Requests not yet completed, in id order.
    in_flight: Vec<(u64, Chain)>,
}

/// A virtio-mmio slot holding an entropy device.
pub type VirtioRng = VirtioMmio<Rng>;

impl Rng {
    /// An entropy device with nothing in flight.
    pub fn new() -> Rng {
        Rng::default()
    }

    /// Requests handed out (or waiting to be) and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

impl VirtioDevice for Rng {
    const DEVICE_ID: u32 = 4;
    const NUM_QUEUES: usize = 1;

    fn features(&self) -> u64 {
        0
    }

    /// The entropy device has no configuration (§5.4.4).
    fn config(&self) -> Vec<u8> {
        Vec::new()
    }

    fn notify(&mut self, queue: usize, t: &mut Transport, ram: &mut Ram) {
        if queue != 0 {
            return;
        }
        while let Some(chain) = t.pop(0, ram) {
            let len = chain.writable_len().min(u64::from(MAX_REQUEST_LEN)) as u32;
            if len == 0 {
                t.count_error(QueueError::BadRequest(
                    "an entropy request without a writable buffer".into(),
                ));
                t.push(0, ram, chain.head, 0);
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            self.requests.push((id, len));
            self.in_flight.push((id, chain));
        }
    }

    fn reset(&mut self) {
        // Ids keep counting, so a late completion for a dropped request is ignored.
        self.requests.clear();
        self.in_flight.clear();
    }
}

impl VirtioMmio<Rng> {
    /// The `(id, len)` requests started since the last call, in id order.
    pub fn take_requests(&mut self) -> Vec<(u64, u32)> {
        std::mem::take(&mut self.device.requests)
    }

    /// Complete request `id` with `bytes` (at most the length asked for is used;
    /// fewer is allowed). Returns false if `id` is not in flight.
    pub fn complete(&mut self, id: u64, bytes: &[u8], ram: &mut Ram) -> bool {
        let in_flight = &mut self.device.in_flight;
        let Ok(pos) = in_flight.binary_search_by_key(&id, |f| f.0) else {
            return false;
        };
        let (_, chain) = in_flight.remove(pos);
        let n = bytes.len().min(MAX_REQUEST_LEN as usize);
        let n = n.min(chain.writable_len() as usize);
        let len = if chain.write(ram, 0, &bytes[..n]) {
            n as u32
        } else {
            0
        };
        self.transport.push(0, ram, chain.head, len);
        true
    }
}

#[cfg(test)]
#[path = "rng_tests.rs"]
mod tests;
