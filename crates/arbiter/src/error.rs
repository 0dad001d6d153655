//! The crate's error type.

use std::io;

use crate::state::StateError;

/// Why authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The server did not accept our proof: the secrets differ.
    #[error("the arbiter refused our proof of the cluster secret")]
    RefusedByServer,
    /// The server's proof is wrong: it does not hold the cluster secret.
    #[error("the arbiter could not prove it holds the cluster secret")]
    ServerProofInvalid,
    /// The client's proof is wrong (seen by the server).
    #[error("the client could not prove it holds the cluster secret")]
    ClientProofInvalid,
}

/// Errors of the arbiter, its client and their protocol.
#[derive(Debug, thiserror::Error)]
pub enum ArbiterError {
    /// The cluster secret is empty.
    #[error("the cluster secret is empty")]
    EmptySecret,
    /// A VM name or node id is empty or longer than [`crate::MAX_NAME_LEN`] bytes.
    #[error("invalid {what} {name:?}: must be 1 to 255 bytes")]
    InvalidName {
        /// "VM name" or "node id".
        what: &'static str,
        /// The offending name.
        name: String,
    },
    /// The state file could not be loaded or persisted.
    #[error(transparent)]
    State(#[from] StateError),
    /// A socket operation failed.
    #[error("arbiter connection failed: {0}")]
    Io(#[source] io::Error),
    /// A socket operation exceeded its timeout.
    #[error("arbiter connection timed out")]
    TimedOut,
    /// The peer closed the connection.
    #[error("the arbiter connection was closed by the peer")]
    Closed,
    /// An earlier error left this connection unusable; connect again.
    #[error("the arbiter connection is broken by an earlier error; reconnect")]
    Broken,
    /// The peer does not speak this protocol (or this version of it).
    #[error(
        "the peer is not an ftvm arbiter (protocol v{})",
        crate::PROTOCOL_VERSION
    )]
    BadGreeting,
    /// Mutual authentication with the cluster secret failed.
    #[error("unauthenticated: {0}")]
    Unauthenticated(AuthFailure),
    /// A frame announced a payload over [`crate::MAX_MESSAGE_LEN`].
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(u32),
    /// A frame's MAC does not verify: tampered, replayed or reordered.
    #[error("a message failed its integrity check")]
    BadMac,
    /// A payload does not decode.
    #[error("message does not decode: {0}")]
    Decode(postcard::Error),
    /// The reply does not answer the request sent.
    #[error("reply {0:?} does not answer the request")]
    UnexpectedReply(crate::Reply),
    /// The arbiter refused the request.
    #[error("the arbiter refused the request: {0}")]
    Refused(String),
    /// One side did not accept the other's TLS credentials.
    #[error("TLS: {0}")]
    TlsRefused(String),
    /// The server's certificate is another node's than the arbiter's.
    #[error("the arbiter's address is served by {got}, not by {expected}")]
    WrongPeer {
        /// The arbiter's node name.
        expected: String,
        /// The name in the server's certificate.
        got: String,
    },
    /// A claim for a generation that is not the next one of its VM: stale (older and
    /// undecided) or far-future.
    #[error("generation {generation} of VM {vm:?} cannot be claimed: the next is {next}")]
    OutOfOrder {
        /// The VM.
        vm: String,
        /// The generation asked for.
        generation: u64,
        /// The only generation without a winner that may be claimed.
        next: u64,
    },
    /// The request claimed for a node that the client's certificate is not.
    #[error("the arbiter refused a claim: {0}")]
    NotYours(String),
}

impl From<io::Error> for ArbiterError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ArbiterError::TimedOut,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ArbiterError::Closed,
            _ => ArbiterError::Io(e),
        }
    }
}
