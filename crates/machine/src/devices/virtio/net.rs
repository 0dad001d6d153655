//! virtio network device (virtio 1.2 §5.1), a pure model with one queue pair.
//!
//! No offloads and no mergeable receive buffers: every frame travels behind a
//! 12-byte `virtio_net_hdr` (VERSION_1 makes `num_buffers` part of it, §5.1.6) that
//! says nothing. Frames the guest sends are collected when it kicks the transmit queue
//! and taken by the host with [`VirtioMmio::take_tx`]; the host delivers frames with
//! [`VirtioMmio::receive`], each into one receive chain.

use super::mmio::{Transport, VirtioDevice, VirtioMmio};
use super::queue::QueueError;
use crate::ram::Ram;
use serde::{Deserialize, Serialize};

/// Feature bit: the device has a MAC address in its configuration (§5.1.3).
pub const F_MAC: u64 = 1 << 5;
/// Feature bit: the configuration has a link status.
pub const F_STATUS: u64 = 1 << 16;
/// Bytes of `virtio_net_hdr` before every frame.
pub const HEADER_LEN: usize = 12;
/// Largest Ethernet frame (without the header) either way.
pub const MAX_FRAME_LEN: usize = 65_536;

const RX_QUEUE: usize = 0;
const TX_QUEUE: usize = 1;
/// Config `status`: link up.
const S_LINK_UP: u16 = 1;

/// The network device's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Net {
    mac: [u8; 6],
    /// Frames the guest sent, not yet taken by the host.
    tx: Vec<Vec<u8>>,
    /// Frames the host offered that found no room in the guest.
    rx_dropped: u64,
}

/// A virtio-mmio slot holding a network device.
pub type VirtioNet = VirtioMmio<Net>;

impl Net {
    /// A network device with the given MAC address.
    pub fn new(mac: [u8; 6]) -> Net {
        Net {
            mac,
            tx: Vec::new(),
            rx_dropped: 0,
        }
    }

    /// The MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Received frames dropped so far (no receive buffer, or too big for one).
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped
    }
}

impl VirtioDevice for Net {
    const DEVICE_ID: u32 = 1;
    const NUM_QUEUES: usize = 2;

    fn features(&self) -> u64 {
        F_MAC | F_STATUS
    }

    /// `struct virtio_net_config` (§5.1.4): mac, status, max_virtqueue_pairs, mtu.
    fn config(&self) -> Vec<u8> {
        let mut c = Vec::with_capacity(12);
        c.extend_from_slice(&self.mac);
        c.extend_from_slice(&S_LINK_UP.to_le_bytes());
        c.extend_from_slice(&1u16.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        c
    }

    /// A transmit kick sends every available frame (§5.1.6.2); receive buffers wait
    /// for [`VirtioMmio::receive`].
    fn notify(&mut self, queue: usize, t: &mut Transport, ram: &mut Ram) {
        if queue != TX_QUEUE {
            return;
        }
        while let Some(chain) = t.pop(TX_QUEUE, ram) {
            let len = chain.readable_len();
            let frame_len = len.saturating_sub(HEADER_LEN as u64) as usize;
            if len < HEADER_LEN as u64 || frame_len > MAX_FRAME_LEN {
                let what = format!("a transmitted frame of {len} bytes with its header");
                t.count_error(QueueError::BadRequest(what));
            } else {
                let mut frame = vec![0; frame_len];
                if chain.read(ram, HEADER_LEN as u64, &mut frame) {
                    self.tx.push(frame);
                }
            }
            // The device writes nothing into a transmit chain.
            t.push(TX_QUEUE, ram, chain.head, 0);
        }
    }

    fn reset(&mut self) {
        self.tx.clear();
    }
}

impl VirtioMmio<Net> {
    /// The frames the guest sent since the last call, without their headers, in order.
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.device.tx)
    }

    /// Deliver `frame` (an Ethernet frame) into the next receive chain, behind a
    /// header saying nothing (`num_buffers` 1, §5.1.6.4), and raise the interrupt.
    /// Returns false, and counts a drop, if the driver is not running, has no receive
    /// buffer posted, or posted one too small.
    pub fn receive(&mut self, frame: &[u8], ram: &mut Ram) -> bool {
        let t = &mut self.transport;
        let Some(chain) = (frame.len() <= MAX_FRAME_LEN)
            .then(|| t.pop(RX_QUEUE, ram))
            .flatten()
        else {
            self.device.rx_dropped += 1;
            return false;
        };
        if chain.writable_len() < (HEADER_LEN + frame.len()) as u64 {
            // Leave the buffer for a smaller frame.
            t.undo_pop(RX_QUEUE);
            self.device.rx_dropped += 1;
            return false;
        }
        let mut header = [0u8; HEADER_LEN];
        header[10] = 1; // num_buffers
        let ok = chain.write(ram, 0, &header) && chain.write(ram, HEADER_LEN as u64, frame);
        let len = if ok {
            (HEADER_LEN + frame.len()) as u32
        } else {
            0
        };
        t.push(RX_QUEUE, ram, chain.head, len);
        ok
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
