//! Record, replay and the primary/backup pair (DESIGN.md §3–4): the only code that
//! knows a run is being logged or re-executed. A recording is one log (crates/log): a
//! header embedding the boot configuration and the initial state's digest, then every
//! input event at its instruction count, a digest of every output, and the state hash
//! at checkpoints. The logging channel between a primary and its backup carries the
//! same log, starting from the state the backup received by live transfer.

pub mod recorder;
pub mod replayer;

use anyhow::Result;
use ftvm_machine::{BootConfig, Event, Machine, Output, OutputKind};
use std::time::Instant;

/// The 32-byte digest of an encoded boot configuration in a log header.
pub fn config_digest(config: &[u8]) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..16].copy_from_slice(&xxhash_rust::xxh3::xxh3_128_with_seed(config, 0).to_le_bytes());
    d[16..].copy_from_slice(&xxhash_rust::xxh3::xxh3_128_with_seed(config, 1).to_le_bytes());
    d
}

/// The boot configuration as the log header stores it.
pub fn encode_config(cfg: &BootConfig) -> Vec<u8> {
    postcard::to_stdvec(cfg).expect("boot configuration encodes")
}

/// An output's log payload: a digest of its encoding.
pub fn output_digest(out: &Output) -> Vec<u8> {
    let bytes = postcard::to_stdvec(&out.kind).expect("output encodes");
    xxhash_rust::xxh3::xxh3_128(&bytes).to_le_bytes().to_vec()
}

/// Where the live side's inputs and outputs are logged: a recording file or the
/// logging channel to a backup. The driver calls it at the input door, for every
/// output, and between slices; outputs leave only through [`Journal::released`].
pub trait Journal {
    /// Log an input event delivered at `icount`.
    fn event(&mut self, icount: u64, ev: &Event) -> Result<()>;
    /// Log an output and keep it until it may leave (the Output Rule, DESIGN.md §4).
    fn output(&mut self, out: Output) -> Result<()>;
    /// The outputs that may leave now, in the order the guest produced them.
    fn released(&mut self) -> Vec<OutputKind>;
    /// Keep a released disk write the driver could not send (the node's write permit
    /// ran out): give it back with [`Journal::released`] once the permit returns.
    /// False if the journal cannot (the write then fails as an I/O error).
    fn hold(&mut self, _out: OutputKind) -> bool {
        false
    }
    /// The journal needs the disk quiet: no request under way on the driver's disk
    /// thread when it is next serviced (a state transfer reads the guest's state and
    /// its disk image). The driver waits for their answers first.
    fn disk_quiet(&self) -> bool {
        false
    }
    /// The next instruction count at which a state hash is due.
    fn next_checkpoint(&self) -> u64;
    /// Log the state hash at a checkpoint.
    fn checkpoint(&mut self, icount: u64, hash: u128) -> Result<()>;
    /// Between slices and while the guest idles: flush, send heartbeats, take the
    /// peer's acks and the arbiter's answers.
    fn service(&mut self, _machine: &mut Machine) -> Result<()> {
        Ok(())
    }
    /// Whether the guest may execute at `icount` now (not before this node may boot
    /// it, not while the backup lags too far behind, not once the run ends).
    fn may_run(&self, _icount: u64) -> bool {
        true
    }
    /// Whether inputs may be delivered (and logged) now, even while [`Journal::may_run`]
    /// says the guest must wait: a primary throttled behind a lagging backup still
    /// takes the network's frames at once, so that each is in the log within moments of
    /// arriving — a frame left unread in the socket for longer than the switch's
    /// re-delivery window would be lost with this node, and only the sender's
    /// retransmission (a second or more) would bring it back.
    fn takes_input(&self) -> bool {
        true
    }
    /// Whether outputs wait for something (the driver then runs shorter slices).
    fn holding(&self) -> bool {
        false
    }
    /// When [`Journal::service`] must run next even if no news arrives (a heartbeat,
    /// a peer's silence, an arbiter retry); `None`: only on news. News (an ack, an
    /// arbiter answer) rings the driver's [`Driver::waker`](crate::driver::Driver::waker).
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// The run ends (a signal, power-off, reset): the guest runs no more; outputs
    /// that may leave still do, the rest never will.
    fn shutdown(&mut self) {}
    /// Whether the shutdown is complete.
    fn stopped(&self) -> bool {
        true
    }
    /// End the log at the machine's final state; returns a line for the user.
    fn finish(self: Box<Self>, icount: u64, hash: u128) -> Result<String>;
}
