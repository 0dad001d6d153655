//! The messages of the arbiter protocol, sent as postcard inside authenticated frames
//! (see the crate docs for the framing and the handshake).

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::ArbiterError;

use crate::state::{Outcome, Winner};

/// Protocol version, the last byte of the server's greeting.
pub const PROTOCOL_VERSION: u8 = 1;
/// Largest frame payload accepted in either direction.
pub const MAX_MESSAGE_LEN: u32 = 64 << 10;
/// Longest VM name or node id, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Atomically: if (`vm`, `generation`) has no winner, make `node` the winner.
    TestAndSet {
        /// VM name.
        vm: String,
        /// FT pair generation.
        generation: u64,
        /// Node id of the side asking to go live.
        node: String,
    },
    /// Who won (`vm`, `generation`), if anyone.
    Query {
        /// VM name.
        vm: String,
        /// FT pair generation.
        generation: u64,
    },
    /// The highest generation of `vm` that has a winner.
    Current {
        /// VM name.
        vm: String,
    },
}

/// The server's reply to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Answer to [`Request::TestAndSet`], given only once it is durable.
    TestAndSet(Outcome),
    /// Answer to [`Request::Query`].
    Winner(Option<Winner>),
    /// Answer to [`Request::Current`].
    Current(Option<u64>),
    /// The request was not served (invalid name, or the state could not be persisted).
    Refused(String),
    /// Over TLS: a test-and-set for another node than the client's certificate names.
    NotYours(String),
    /// A test-and-set for an undecided generation other than `next`, the only one that
    /// may be claimed (generations are decided in order).
    OutOfOrder {
        /// The generation asked for.
        generation: u64,
        /// The next generation of the VM.
        next: u64,
    },
}

/// Decodes one frame's payload (a [`Request`] on the server, a [`Reply`] on the client),
/// after the frame's length and tag were checked.
pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ArbiterError> {
    postcard::from_bytes(payload).map_err(ArbiterError::Decode)
}
