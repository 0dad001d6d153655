//! ftvm's embedded arbiter (DESIGN.md §4 "Split brain", §5 "Arbiter"): an atomic
//! test-and-set per (VM name, generation) that decides which side of an FT pair may go
//! live, durable across the arbiter's own restarts.
//!
//! A side that wants to go live calls [`ArbiterClient::test_and_set`] for its VM's
//! current generation: the first node wins, and asking again with the same node still
//! wins (a retry after a lost reply); every other node loses and is told the winner.
//! After a failover the survivor runs unprotected in generation `g`; once a new backup
//! joins, the pair moves to `g + 1`. Generations are decided in order: a VM's first
//! claim is generation 0 (its boot), and a generation without a winner can be claimed
//! only if it is the one after the newest decided; anything else is refused
//! ([`ArbiterError::OutOfOrder`]), so nobody wins a stale or a far-future generation.
//!
//! # State file (version [`STATE_VERSION`])
//!
//! Little-endian: magic [`STATE_MAGIC`] (8 bytes), version (u32), body length (u32),
//! CRC32C of the preceding 16 bytes and the body (u32), then the body: postcard of the
//! records `(vm, generation, winner node, set at unix ms)` in strictly increasing
//! (vm, generation) order. A winner is written to `file.tmp`, fsynced, renamed over
//! `file` and the directory fsynced before the client is answered; a leftover `.tmp` is
//! removed at open, and a corrupt file is an error. `file.lock` keeps a second arbiter
//! off the same state.
//!
//! # Protocol (version [`PROTOCOL_VERSION`]), over TCP
//!
//! 1. Server: `b"FTVMARB"`, the version byte, a 32-byte nonce `sn` from `/dev/urandom`.
//! 2. Client: its own 32-byte nonce `cn`, then `HMAC-SHA256(secret, sn || cn || "client")`.
//! 3. Server: byte 0 and close if that proof is wrong, else byte 1 and
//!    `HMAC-SHA256(secret, sn || cn || "server")`, which the client checks.
//! 4. Then requests and replies alternate, each a frame `len: u32 LE | payload | tag`:
//!    `payload` is a postcard [`Request`] or [`Reply`] of at most [`MAX_MESSAGE_LEN`]
//!    bytes, and `tag = HMAC-SHA256(key, sender || seq: u64 LE || len || payload)` with
//!    `key = HMAC-SHA256(secret, "session" || sn || cn)`, `sender` "client" or "server",
//!    `seq` counting that sender's frames from 0.
//!
//! Steps 1–3 are [`client_handshake`] and [`server_handshake`], which ftvm's logging
//! channel reuses with a greeting of its own.
//!
//! # Over TLS ([`Arbiter::open_tls`], [`ArbiterClient::connect_tls`])
//!
//! Instead of steps 1–3, a TLS 1.3 handshake (RFC 8446) with both sides' certificates
//! from the cluster CA and ALPN [`ARBITER_ALPN`]; then frames `len: u32 LE | payload`.
//! The client checks that the server's certificate is the arbiter's node name; the
//! arbiter lets a client win only as the node its certificate names (or an
//! incarnation of it, `NAME#…`) and answers anything else with [`Reply::NotYours`].
//!
//! Every socket operation has a timeout; the server runs one thread per connection, up
//! to [`ServerConfig::max_connections`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod channel;
mod client;
mod error;
mod proto;
mod server;
mod state;

pub use channel::{client_handshake, server_handshake, Frames, ARBITER_ALPN};
pub use client::{ArbiterClient, RemoteArbiter, DEFAULT_TIMEOUT};
pub use error::{ArbiterError, AuthFailure};
pub use proto::{decode_message, Reply, Request, MAX_MESSAGE_LEN, MAX_NAME_LEN, PROTOCOL_VERSION};
pub use server::{Arbiter, ArbiterHandle, ServerConfig};
pub use state::{Corruption, Outcome, StateError, Winner, STATE_MAGIC, STATE_VERSION};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hostile;
#[cfg(test)]
mod tests_state;
