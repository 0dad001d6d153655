//! Record, replay and the primary/backup pair (DESIGN.md §3–4): the only code that
//! knows a run is being logged or re-executed. A recording is one log (crates/log): a
//! header embedding the boot configuration and the initial state's digest, then every
//! input event at its instruction count, a digest of every output, and the state hash
//! at checkpoints. The logging channel between a primary and its backup carries the
//! same log, starting from the state the backup received by live transfer.

pub mod recorder;
pub mod replayer;

use anyhow::Result;
use ftvm_machine::{BootConfig, Event, Machine, Output};

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

/// When an output may leave for the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// At once (nothing to wait for).
    Now,
    /// Once the backup acknowledged the log entry with this sequence number (the
    /// Output Rule, DESIGN.md §4).
    AfterAck(u64),
}

/// Where the live side's inputs and outputs are logged: a recording file or the
/// logging channel to a backup. The driver calls it at the input door, for every
/// output, and between slices.
pub trait Journal {
    /// Log an input event delivered at `icount`.
    fn event(&mut self, icount: u64, ev: &Event) -> Result<()>;
    /// Log an output; says when it may leave.
    fn output(&mut self, out: &Output) -> Result<Release>;
    /// The next instruction count at which a state hash is due.
    fn next_checkpoint(&self) -> u64;
    /// Log the state hash at a checkpoint.
    fn checkpoint(&mut self, icount: u64, hash: u128) -> Result<()>;
    /// Outputs logged with a sequence number up to this one may leave.
    fn released_through(&self) -> u64 {
        u64::MAX
    }
    /// Between slices and while the guest idles: flush, send heartbeats, watch the
    /// peer. `waiting` is the number of outputs held by the Output Rule.
    fn service(&mut self, _machine: &mut Machine, _waiting: usize) -> Result<()> {
        Ok(())
    }
    /// Whether the journal wants to be serviced often (a peer to keep informed).
    fn is_live(&self) -> bool {
        false
    }
    /// End the log at the machine's final state; returns a line for the user.
    fn finish(self: Box<Self>, icount: u64, hash: u128) -> Result<String>;
}
