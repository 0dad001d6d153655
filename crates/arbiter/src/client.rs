//! The client side of the arbiter: one authenticated connection, one request at a time.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use ftvm_world::tls::Credentials;
use ftvm_world::{ArbiterFailure, Decision};
use std::sync::Arc;

use crate::channel::Channel;
use crate::error::ArbiterError;
use crate::proto::{Reply, Request};
use crate::server::check_name;
use crate::state::{Outcome, Winner};

/// Timeout of every socket operation unless the caller picks another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection to an arbiter, mutually authenticated with the cluster secret.
///
/// After any transport error the connection is unusable ([`ArbiterError::Broken`]): a
/// reply may have been lost, so connect again and retry; `test_and_set` is idempotent
/// for the same node.
pub struct ArbiterClient {
    chan: Option<Channel>,
}

impl ArbiterClient {
    /// Connects to `addr` (trying each address it resolves to), with `timeout` on the
    /// connect and on every later read and write, and authenticates both ends.
    pub fn connect(
        addr: impl ToSocketAddrs,
        secret: &[u8],
        timeout: Duration,
    ) -> Result<ArbiterClient, ArbiterError> {
        if secret.is_empty() {
            return Err(ArbiterError::EmptySecret);
        }
        dial(addr, timeout, |stream| Channel::client(stream, secret))
    }

    /// [`ArbiterClient::connect`] over TLS 1.3 with this node's `creds` (for
    /// [`crate::ARBITER_ALPN`]); the server must be the node named `arbiter`.
    pub fn connect_tls(
        addr: impl ToSocketAddrs,
        creds: &Credentials,
        arbiter: &str,
        timeout: Duration,
    ) -> Result<ArbiterClient, ArbiterError> {
        dial(addr, timeout, |stream| {
            Channel::tls_client(stream, creds, arbiter)
        })
    }

    fn call(&mut self, req: &Request) -> Result<Reply, ArbiterError> {
        let chan = self.chan.as_mut().ok_or(ArbiterError::Broken)?;
        let reply = chan.send(req).and_then(|()| chan.recv());
        if reply.is_err() {
            self.chan = None;
        }
        match reply? {
            Reply::Refused(why) => Err(ArbiterError::Refused(why)),
            Reply::NotYours(why) => Err(ArbiterError::NotYours(why)),
            r => Ok(r),
        }
    }

    /// Asks to make `node` the winner of (`vm`, `generation`). `Won` means this node may
    /// go live; `Lost` names the node that may.
    pub fn test_and_set(
        &mut self,
        vm: &str,
        generation: u64,
        node: &str,
    ) -> Result<Outcome, ArbiterError> {
        check_name("VM name", vm)?;
        check_name("node id", node)?;
        let req = Request::TestAndSet {
            vm: vm.into(),
            generation,
            node: node.into(),
        };
        match self.call(&req)? {
            Reply::TestAndSet(outcome) => Ok(outcome),
            Reply::OutOfOrder { generation, next } => Err(ArbiterError::OutOfOrder {
                vm: vm.into(),
                generation,
                next,
            }),
            r => Err(ArbiterError::UnexpectedReply(r)),
        }
    }

    /// The winner of (`vm`, `generation`), if any.
    pub fn query(&mut self, vm: &str, generation: u64) -> Result<Option<Winner>, ArbiterError> {
        match self.call(&Request::Query {
            vm: vm.into(),
            generation,
        })? {
            Reply::Winner(w) => Ok(w),
            r => Err(ArbiterError::UnexpectedReply(r)),
        }
    }

    /// The highest generation of `vm` that has a winner.
    pub fn current(&mut self, vm: &str) -> Result<Option<u64>, ArbiterError> {
        match self.call(&Request::Current { vm: vm.into() })? {
            Reply::Current(g) => Ok(g),
            r => Err(ArbiterError::UnexpectedReply(r)),
        }
    }
}

/// The arbiter at an address as a node's [`ftvm_world::Arbiter`]: each question on a
/// connection of its own, so a lost connection costs nothing (the node asks again).
#[derive(Debug, Clone)]
pub struct RemoteArbiter {
    addr: SocketAddr,
    auth: Auth,
    timeout: Duration,
}

/// How a node proves itself to the arbiter.
#[derive(Debug, Clone)]
enum Auth {
    Secret(Vec<u8>),
    /// This node's credentials and the arbiter's node name.
    Tls(Arc<Credentials>, String),
}

impl RemoteArbiter {
    /// The arbiter at `addr`, authenticated with `secret`, `timeout` on every step.
    pub fn new(addr: SocketAddr, secret: &[u8], timeout: Duration) -> RemoteArbiter {
        RemoteArbiter {
            addr,
            auth: Auth::Secret(secret.to_vec()),
            timeout,
        }
    }

    /// The arbiter at `addr` over TLS: the node `arbiter`, with this node's `creds`.
    pub fn tls(
        addr: SocketAddr,
        creds: Arc<Credentials>,
        arbiter: &str,
        timeout: Duration,
    ) -> RemoteArbiter {
        RemoteArbiter {
            addr,
            auth: Auth::Tls(creds, arbiter.to_string()),
            timeout,
        }
    }

    fn connect(&self) -> Result<ArbiterClient, ArbiterFailure> {
        match &self.auth {
            Auth::Secret(s) => ArbiterClient::connect(self.addr, s, self.timeout),
            Auth::Tls(c, name) => ArbiterClient::connect_tls(self.addr, c, name, self.timeout),
        }
        .map_err(failure)
    }
}

/// A failed question as a node sees it: a failed authentication, a generation out of
/// order and a bad name are final; a server that could not serve (its state file would
/// not persist) may serve a retry.
fn failure(e: ArbiterError) -> ArbiterFailure {
    match e {
        ArbiterError::Unauthenticated(why) => ArbiterFailure::Unauthenticated(why.to_string()),
        e @ (ArbiterError::TlsRefused(_)
        | ArbiterError::WrongPeer { .. }
        | ArbiterError::NotYours(_)) => ArbiterFailure::Unauthenticated(e.to_string()),
        e @ (ArbiterError::OutOfOrder { .. } | ArbiterError::InvalidName { .. }) => {
            ArbiterFailure::Refused(e.to_string())
        }
        e => ArbiterFailure::Unreachable(e.to_string()),
    }
}

impl ftvm_world::Arbiter for RemoteArbiter {
    fn test_and_set(
        &self,
        vm: &str,
        generation: u64,
        claimant: &str,
    ) -> Result<Decision, ArbiterFailure> {
        let outcome = self
            .connect()?
            .test_and_set(vm, generation, claimant)
            .map_err(failure)?;
        Ok(match outcome {
            Outcome::Won => Decision::Won,
            Outcome::Lost { winner } => Decision::Lost { winner },
        })
    }

    fn current(&self, vm: &str) -> Result<Option<u64>, ArbiterFailure> {
        self.connect()?.current(vm).map_err(failure)
    }
}

/// Connect to the first of `addr`'s addresses that answers within `timeout` and open
/// the channel on it with `open` (the handshake of the chosen mode).
fn dial(
    addr: impl ToSocketAddrs,
    timeout: Duration,
    open: impl FnOnce(TcpStream) -> Result<Channel, ArbiterError>,
) -> Result<ArbiterClient, ArbiterError> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                return Ok(ArbiterClient {
                    chan: Some(open(stream)?),
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or(ArbiterError::Closed, ArbiterError::from))
}
