//! Record and replay (DESIGN.md §3): the only code that knows a run is being logged
//! or re-executed. A recording is one log (crates/log): a header embedding the boot
//! configuration and the initial state's digest, then every input event at its
//! instruction count, a digest of every output, and the state hash at checkpoints.

pub mod recorder;
pub mod replayer;

use ftvm_machine::{BootConfig, Output};

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

/// An output's log payload: a digest of its encoding (the Output Rule will attach here).
pub fn output_digest(out: &Output) -> Vec<u8> {
    let bytes = postcard::to_stdvec(&out.kind).expect("output encodes");
    xxhash_rust::xxh3::xxh3_128(&bytes).to_le_bytes().to_vec()
}
