//! The arbiter: the ledger behind a mutex, and a TCP server with one thread per
//! authenticated connection.

use std::fmt::Write as _;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::channel::Channel;
use crate::error::ArbiterError;
use crate::proto::{Reply, Request, MAX_NAME_LEN};
use crate::state::{Ledger, Outcome, StateFile, Winner};
use ftvm_world::tls::Credentials;
use ftvm_world::{Slot, SlotLimits, Slots};

/// Limits of the TCP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Timeout of each socket operation during the handshake and of every write.
    pub io_timeout: Duration,
    /// How long an authenticated connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Connections served at once: when all are taken, a new one evicts the oldest
    /// still in its handshake, or is closed if every one is authenticated.
    pub max_connections: usize,
    /// From accept to an authenticated peer (a slow-loris client cannot keep a slot).
    pub handshake_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            io_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(60),
            max_connections: 64,
            handshake_timeout: Duration::from_secs(3),
        }
    }
}

/// The embedded arbiter of FT pairs (DESIGN.md §4 "Split brain", §5): an atomic
/// test-and-set per (VM, generation), durable before it answers.
pub struct Arbiter {
    ledger: Mutex<Ledger>,
    file: StateFile,
    auth: ServerAuth,
    config: ServerConfig,
    counts: Counts,
}

/// What the arbiter counts, for [`Arbiter::prometheus`].
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    decided: AtomicU64,
    lost: AtomicU64,
    refused: AtomicU64,
    clients: AtomicU64,
    clients_refused: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// How clients prove themselves.
enum ServerAuth {
    /// The cluster secret, then MAC'd frames in clear.
    Secret(Vec<u8>),
    /// TLS 1.3 with the arbiter's credentials; a client then claims only for the node
    /// its certificate names.
    Tls(Arc<Credentials>),
}

/// Whether the claimant `node` is the node `identity` (or an incarnation of it).
fn claims_as(node: &str, identity: &str) -> bool {
    node == identity
        || node
            .strip_prefix(identity)
            .is_some_and(|rest| rest.starts_with('#'))
}

pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), ArbiterError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(ArbiterError::InvalidName {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

impl Arbiter {
    /// Opens (or creates) the state at `state_path` and locks it against other arbiters;
    /// clients authenticate with the cluster `secret` (see [`Arbiter::open_tls`]). A
    /// corrupt state file is an error, never reset.
    pub fn open(state_path: impl AsRef<Path>, secret: &[u8]) -> Result<Arbiter, ArbiterError> {
        Self::with_config(state_path, secret, ServerConfig::default())
    }

    /// [`Arbiter::open`] with server limits.
    pub fn with_config(
        state_path: impl AsRef<Path>,
        secret: &[u8],
        config: ServerConfig,
    ) -> Result<Arbiter, ArbiterError> {
        if secret.is_empty() {
            return Err(ArbiterError::EmptySecret);
        }
        Self::new(state_path, ServerAuth::Secret(secret.to_vec()), config)
    }

    /// Opens the state as [`Arbiter::open`] does, serving clients over TLS 1.3 with
    /// `creds` (for [`crate::ARBITER_ALPN`]): identities come from certificates, and no
    /// cluster secret is involved.
    pub fn open_tls(
        state_path: impl AsRef<Path>,
        creds: Arc<Credentials>,
        config: ServerConfig,
    ) -> Result<Arbiter, ArbiterError> {
        Self::new(state_path, ServerAuth::Tls(creds), config)
    }

    fn new(
        state_path: impl AsRef<Path>,
        auth: ServerAuth,
        config: ServerConfig,
    ) -> Result<Arbiter, ArbiterError> {
        let (file, ledger) = StateFile::open(state_path.as_ref())?;
        Ok(Arbiter {
            ledger: Mutex::new(ledger),
            file,
            auth,
            config,
            counts: Counts::default(),
        })
    }

    /// Its figures in the Prometheus text format (`ftvm arbiter --metrics`): counters
    /// of requests and clients, and each VM's newest decided generation.
    pub fn prometheus(&self) -> String {
        let c = &self.counts;
        let mut s = String::new();
        for (name, help, v) in [
            ("requests", "requests served", &c.requests),
            (
                "decided",
                "generations decided (a winner recorded)",
                &c.decided,
            ),
            (
                "lost",
                "claims answered with another node as the winner",
                &c.lost,
            ),
            (
                "refused",
                "requests refused (out of order, not the claimant's, a bad name, a failed write)",
                &c.refused,
            ),
            ("clients", "clients authenticated", &c.clients),
            (
                "clients_refused",
                "clients that failed authentication",
                &c.clients_refused,
            ),
        ] {
            let _ = writeln!(s, "# HELP ftvm_arbiter_{name}_total {help}");
            let _ = writeln!(s, "# TYPE ftvm_arbiter_{name}_total counter");
            let _ = writeln!(s, "ftvm_arbiter_{name}_total {}", v.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            s,
            "# HELP ftvm_arbiter_generation the newest decided generation of a VM"
        );
        let _ = writeln!(s, "# TYPE ftvm_arbiter_generation gauge");
        for (vm, g) in self.ledger().newest() {
            // VM names are checked (check_name) but may hold any character.
            let vm = vm
                .replace('\\', r"\\")
                .replace('"', "\\\"")
                .replace('\n', r"\n");
            let _ = writeln!(s, "ftvm_arbiter_generation{{vm=\"{vm}\"}} {g}");
        }
        s
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding the lock leaves the ledger consistent: inserts that
        // fail to persist are undone before the guard drops.
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// If (`vm`, `generation`) has no winner, records `node` durably and answers
    /// [`Outcome::Won`]; otherwise `Won` for the recorded node and `Lost` for any other.
    /// A generation without a winner other than the next of `vm` (0 for a new VM) is
    /// refused with [`ArbiterError::OutOfOrder`].
    pub fn test_and_set(
        &self,
        vm: &str,
        generation: u64,
        node: &str,
    ) -> Result<Outcome, ArbiterError> {
        check_name("VM name", vm)?;
        check_name("node id", node)?;
        let mut ledger = self.ledger();
        if let Some(w) = ledger.get(vm, generation) {
            return Ok(match w.node == node {
                true => Outcome::Won,
                false => {
                    bump(&self.counts.lost);
                    Outcome::Lost {
                        winner: w.node.clone(),
                    }
                }
            });
        }
        // Generations are decided in order (issue 12): a claim may only take the one
        // after the newest decided, so no node can win a stale generation that nobody
        // claimed or reserve a far-future one that would outrank every pair to come.
        let next = ledger.current(vm).map_or(0, |c| c + 1);
        if generation != next {
            return Err(ArbiterError::OutOfOrder {
                vm: vm.to_owned(),
                generation,
                next,
            });
        }
        let set_at_unix_ms =
            (SystemTime::now().duration_since(UNIX_EPOCH)).map_or(0, |d| d.as_millis() as u64);
        ledger.insert(
            vm,
            generation,
            Winner {
                node: node.to_owned(),
                set_at_unix_ms,
            },
        );
        if let Err(e) = self.file.persist(&ledger) {
            ledger.remove(vm, generation);
            return Err(e.into());
        }
        tracing::info!(vm, generation, node, "arbiter: winner recorded");
        bump(&self.counts.decided);
        Ok(Outcome::Won)
    }

    /// The winner of (`vm`, `generation`), if any.
    pub fn query(&self, vm: &str, generation: u64) -> Option<Winner> {
        self.ledger().get(vm, generation).cloned()
    }

    /// The highest generation of `vm` that has a winner.
    pub fn current(&self, vm: &str) -> Option<u64> {
        self.ledger().current(vm)
    }

    /// Serves one decoded request as a session does. `identity` (the client's
    /// certificate's node, over TLS) may claim for itself or one of its incarnations
    /// (`NAME#…`), never for another node. Public for the fuzz target (crates/arbiter/fuzz).
    pub fn handle(&self, req: Request, identity: Option<&str>) -> Reply {
        bump(&self.counts.requests);
        let result = match req {
            Request::TestAndSet { node, .. }
                if identity.is_some_and(|id| !claims_as(&node, id)) =>
            {
                let why = format!("{} asked to win as {node}", identity.unwrap_or_default());
                tracing::warn!("arbiter: refused a claim: {why}");
                bump(&self.counts.refused);
                return Reply::NotYours(why);
            }
            Request::TestAndSet {
                vm,
                generation,
                node,
            } => self
                .test_and_set(&vm, generation, &node)
                .map(Reply::TestAndSet),
            Request::Query { vm, generation } => Ok(Reply::Winner(self.query(&vm, generation))),
            Request::Current { vm } => Ok(Reply::Current(self.current(&vm))),
        };
        result.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "arbiter: request refused");
            bump(&self.counts.refused);
            match e {
                ArbiterError::OutOfOrder {
                    generation, next, ..
                } => Reply::OutOfOrder { generation, next },
                e => Reply::Refused(e.to_string()),
            }
        })
    }

    /// Serves `listener` on a new thread until the handle is stopped or dropped.
    pub fn serve(self, listener: TcpListener) -> std::io::Result<ArbiterHandle> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            arbiter: self,
            stopping: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let acceptor = (thread::Builder::new().name("arbiter-accept".into()))
            .spawn(move || s.accept_loop(listener))?;
        Ok(ArbiterHandle {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }
}

struct Shared {
    arbiter: Arbiter,
    stopping: AtomicBool,
}

/// A live connection: a clone of its socket (to shut it down on stop) and its thread.
struct Conn {
    stream: TcpStream,
    thread: JoinHandle<()>,
}

impl Shared {
    fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let config = &self.arbiter.config;
        let slots = match Slots::new(SlotLimits {
            max: config.max_connections,
            handshake: config.handshake_timeout,
        }) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "arbiter: cannot start serving");
                return;
            }
        };
        let mut conns: Vec<Conn> = Vec::new();
        for stream in listener.incoming() {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "arbiter: accept failed");
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let (done, live): (Vec<_>, Vec<_>) =
                conns.drain(..).partition(|c| c.thread.is_finished());
            done.into_iter().for_each(|c| drop(c.thread.join()));
            conns = live;
            let peer = stream.peer_addr().ok();
            let slot = match slots.admit(&stream) {
                Ok(Ok(slot)) => slot,
                Ok(Err(_)) => {
                    tracing::warn!(?peer, "arbiter: every connection slot is taken, closing");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(?peer, error = %e, "arbiter: cannot serve connection");
                    continue;
                }
            };
            match self.spawn_conn(stream, slot) {
                Ok(c) => conns.push(c),
                Err(e) => tracing::warn!(?peer, error = %e, "arbiter: cannot serve connection"),
            }
        }
        for c in &conns {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        conns.into_iter().for_each(|c| drop(c.thread.join()));
    }

    fn spawn_conn(self: &Arc<Self>, stream: TcpStream, slot: Slot) -> std::io::Result<Conn> {
        let clone = stream.try_clone()?;
        let s = Arc::clone(self);
        let thread = (thread::Builder::new().name("arbiter-conn".into()))
            .spawn(move || s.serve_conn(stream, slot))?;
        Ok(Conn {
            stream: clone,
            thread,
        })
    }

    fn serve_conn(&self, stream: TcpStream, slot: Slot) {
        let peer = stream.peer_addr().ok();
        // The acceptor holds a clone of the socket, so dropping ours would not close it.
        let closer = stream.try_clone();
        let result = self.session(stream, &slot);
        if let Ok(c) = closer {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Err(e) = result {
            match e {
                ArbiterError::Closed => tracing::debug!(?peer, "arbiter: client disconnected"),
                ArbiterError::TimedOut => tracing::debug!(?peer, "arbiter: connection timed out"),
                ArbiterError::Unauthenticated(why) => {
                    tracing::warn!(?peer, %why, "arbiter: refused unauthenticated client")
                }
                ArbiterError::TlsRefused(why) => {
                    tracing::warn!(?peer, %why, "arbiter: refused a client's credentials")
                }
                e if self.stopping.load(Ordering::SeqCst) => {
                    tracing::debug!(?peer, error = %e, "arbiter: connection closed on stop")
                }
                e => tracing::warn!(?peer, error = %e, "arbiter: connection failed"),
            }
        }
    }

    fn session(&self, stream: TcpStream, slot: &Slot) -> Result<(), ArbiterError> {
        let config = &self.arbiter.config;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(config.io_timeout))?;
        stream.set_write_timeout(Some(config.io_timeout))?;
        let chan = match &self.arbiter.auth {
            ServerAuth::Tls(creds) => {
                Channel::tls_server(stream, creds).map(|(c, id)| (c, Some(id)))
            }
            ServerAuth::Secret(secret) => Channel::server(stream, secret).map(|c| (c, None)),
        };
        let (mut chan, identity) = match chan {
            Ok(c) => c,
            Err(e) => {
                if matches!(
                    e,
                    ArbiterError::Unauthenticated(_) | ArbiterError::TlsRefused(_)
                ) {
                    bump(&self.arbiter.counts.clients_refused);
                }
                return Err(e);
            }
        };
        bump(&self.arbiter.counts.clients);
        slot.authenticated();
        chan.stream().set_read_timeout(Some(config.idle_timeout))?;
        while !self.stopping.load(Ordering::SeqCst) {
            let req: Request = chan.recv()?;
            chan.send(&self.arbiter.handle(req, identity.as_deref()))?;
        }
        Ok(())
    }
}

/// A running arbiter server; stops (and joins its threads) on [`ArbiterHandle::stop`]
/// or drop, which releases the state file's lock.
pub struct ArbiterHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl ArbiterHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The arbiter being served, for local calls.
    pub fn arbiter(&self) -> &Arbiter {
        &self.shared.arbiter
    }

    /// [`Arbiter::prometheus`] of the served arbiter, callable from any thread for as
    /// long as the caller keeps it.
    pub fn prometheus_source(&self) -> impl Fn() -> String + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || shared.arbiter.prometheus()
    }

    /// Stops accepting, closes every connection and waits for all server threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => [127, 0, 0, 1].into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        match TcpStream::connect_timeout(&wake, Duration::from_secs(1)) {
            Ok(_) => drop(acceptor.join()),
            Err(e) => tracing::warn!(error = %e, "arbiter: cannot wake the acceptor to stop it"),
        }
    }
}

impl Drop for ArbiterHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
