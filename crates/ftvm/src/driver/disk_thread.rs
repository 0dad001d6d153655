//! The disk on a thread of its own, for the FT nodes' live runs: a request that blocks (an NBD
//! server gone for a while, crates/world/src/nbd.rs) stops only the guest's I/O, not
//! the driver, whose loop also keeps the FT heartbeats and acks moving (issue 13: a
//! storage host's blip must not look like a dead primary). The driver waits up to
//! [`QUICK`] for each answer, as long as a fast disk takes, and goes on without it
//! after that. Requests are carried out
//! one at a time in the order they came, as on the driver's thread; each answer rings
//! the driver's waker, and the driver delivers it as an input event at the instruction
//! count it has then (logged, so a replay does not depend on when it came).

use ftvm_machine::devices::virtio::{BlkRequest, BlkRequestKind};
use ftvm_world::disk::{DiskError, WritePermit};
use ftvm_world::mio::Waker;
use ftvm_world::Disk;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the driver waits for an answer before it lets the guest run on: a local
/// file or a nearby NBD server answers within it (as fast as on the driver's thread),
/// and it is far below the FT heartbeat's period.
pub const QUICK: Duration = Duration::from_millis(2);

/// Carry out one request on `disk`; a write is sent only while `permit` allows.
pub fn carry_out(
    disk: &mut dyn Disk,
    req: &BlkRequest,
    permit: &WritePermit,
) -> Result<Vec<u8>, DiskError> {
    match &req.kind {
        BlkRequestKind::Read { sector, len } => disk.read(*sector, *len as u64),
        BlkRequestKind::Write { .. } if !permit.allows() => Err(DiskError::Fenced),
        BlkRequestKind::Write { sector, data } => disk.write(*sector, data).map(|()| Vec::new()),
        BlkRequestKind::Flush => disk.flush().map(|()| Vec::new()),
    }
}

/// A request and how it went (the request comes back: a fenced write is held).
pub type Answer = (BlkRequest, Result<Vec<u8>, DiskError>);

/// The disk's thread.
pub struct DiskThread {
    requests: mpsc::Sender<BlkRequest>,
    answers: mpsc::Receiver<Answer>,
    thread: JoinHandle<Box<dyn Disk>>,
    in_flight: usize,
}

impl DiskThread {
    /// Move `disk` to a thread of its own; answers ring `waker`.
    pub fn start(
        mut disk: Box<dyn Disk>,
        permit: WritePermit,
        waker: Arc<Waker>,
    ) -> std::io::Result<DiskThread> {
        let (requests, rx) = mpsc::channel::<BlkRequest>();
        let (tx, answers) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("disk".into())
            .spawn(move || {
                for req in rx {
                    let result = carry_out(disk.as_mut(), &req, &permit);
                    if tx.send((req, result)).is_err() {
                        break;
                    }
                    if let Err(e) = waker.wake() {
                        tracing::warn!("the disk thread cannot wake the driver: {e}");
                    }
                }
                disk
            })?;
        Ok(DiskThread {
            requests,
            answers,
            thread,
            in_flight: 0,
        })
    }

    /// Queue a request.
    pub fn submit(&mut self, req: BlkRequest) {
        // The thread ends only when this side drops its sender, or by a panic there.
        assert!(self.requests.send(req).is_ok(), "the disk thread ended");
        self.in_flight += 1;
    }

    /// The next answer, waiting for it up to `wait` (zero: only one that came;
    /// `Duration::MAX`: until it comes); none when no request is under way.
    pub fn answer(&mut self, wait: Duration) -> Option<Answer> {
        if self.in_flight == 0 {
            return None;
        }
        // recv_timeout takes a wait too long for a deadline as "no deadline".
        let a = self.answers.recv_timeout(wait).ok();
        if a.is_some() {
            self.in_flight -= 1;
        }
        a
    }

    /// Wait until every queued request was carried out, then give the disk back
    /// (answers not taken are dropped).
    pub fn stop(self) -> Box<dyn Disk> {
        drop(self.requests);
        match self.thread.join() {
            Ok(disk) => disk,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}
