//! The smoltcp device: two bounded in-memory frame queues.

use std::collections::VecDeque;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Largest Ethernet frame exchanged with the guest: 1500 bytes of IP plus the header.
pub(crate) const MAX_FRAME: usize = 1514;

/// A smoltcp device whose wire is a pair of queues: frames from the guest wait in `rx`,
/// frames for the guest collect in `tx`. Both are bounded; when `tx` is full, smoltcp
/// is told there is no room and retries later.
#[derive(Debug)]
pub(crate) struct QueueDevice {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: VecDeque<Vec<u8>>,
    pub rx_cap: usize,
    pub tx_cap: usize,
}

impl QueueDevice {
    pub fn new(rx_cap: usize, tx_cap: usize) -> Self {
        QueueDevice {
            rx: VecDeque::with_capacity(rx_cap),
            tx: VecDeque::with_capacity(tx_cap),
            rx_cap,
            tx_cap,
        }
    }

    /// Queues a frame from the guest; false if the queue is full.
    pub fn push_rx(&mut self, frame: &[u8]) -> bool {
        if self.rx.len() >= self.rx_cap {
            return false;
        }
        self.rx.push_back(frame.to_vec());
        true
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        if self.tx.len() >= self.tx_cap {
            // No room for a reply: leave the frame queued until the guest drains `tx`.
            return None;
        }
        let frame = self.rx.pop_front()?;
        Some((
            RxToken(frame),
            TxToken {
                queue: &mut self.tx,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        (self.tx.len() < self.tx_cap).then_some(TxToken {
            queue: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = None;
        caps
    }
}

/// One frame from the guest.
pub(crate) struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// Room for one frame to the guest.
pub(crate) struct TxToken<'a> {
    queue: &'a mut VecDeque<Vec<u8>>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.queue.push_back(frame);
        r
    }
}
