//! Channels between nodes over TLS 1.3 (RFC 8446) with mutual authentication against
//! the cluster CA (issue 12). Each node holds a certificate for its name ([`crate::keys`]);
//! the name in the peer's certificate is the peer's identity, so a node cannot claim
//! another's. The node that accepts is the TLS server and asks for the client's
//! certificate (RFC 8446 §4.3.2); the node that dials accepts any node of the cluster as
//! the server and learns which one from its certificate. Only TLS 1.3, no resumption
//! (every connection proves its certificate), and ALPN (RFC 7301) names the protocol so
//! that a channel of one protocol cannot be taken for another's.
//!
//! [`TlsChannel`] is a [`Channel`]: one thread reads while another writes. The reader
//! blocks on the socket without the connection's lock, then takes the lock to decrypt
//! what arrived; a writer encrypts under the lock and writes the records in order
//! under a second lock, so that a writer blocked on a full socket never keeps the
//! reader from draining its side.

use crate::channel::Channel;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, Connection, DigitallySignedStruct, RootCertStore, ServerConfig};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Why TLS credentials could not be used or a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A credentials file cannot be read.
    #[error("cannot read '{path}': {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A credentials file holds nothing usable.
    #[error("'{path}' holds no {what}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
    },
    /// A certificate does not name exactly one node.
    #[error("the certificate names no single node ({0})")]
    NoIdentity(String),
    /// This node's certificate is for another name, or does not chain to the CA.
    #[error("'{path}' is not a certificate of the cluster CA for '{name}': {why}")]
    NotOurs {
        /// The certificate.
        path: PathBuf,
        /// The name it should carry.
        name: String,
        /// What the check said.
        why: String,
    },
    /// Building the TLS configuration failed.
    #[error("{0}")]
    Config(String),
    /// The TLS handshake failed (see [`TlsError::refused`]).
    #[error("the TLS handshake failed: {0}")]
    Handshake(io::Error),
}

impl TlsError {
    /// The handshake failed because one side did not accept the other's credentials,
    /// as opposed to a network failure or a damaged record (worth retrying).
    pub fn refused(&self) -> bool {
        match self {
            TlsError::Handshake(e) => tls_error(e).is_some_and(|t| {
                matches!(
                    t,
                    rustls::Error::InvalidCertificate(_)
                        | rustls::Error::NoCertificatesPresented
                        | rustls::Error::PeerIncompatible(_)
                        | rustls::Error::NoApplicationProtocol
                ) || refusal(e).is_some()
            }),
            TlsError::NoIdentity(_) => true,
            _ => false,
        }
    }

    /// The peer answered with bytes that are not TLS records at all (e.g. a node or a
    /// service running in clear): a misconfiguration, unless someone on the path wrote
    /// them.
    pub fn not_tls(&self) -> bool {
        match self {
            TlsError::Handshake(e) => tls_error(e).is_some_and(|t| {
                matches!(
                    t,
                    rustls::Error::InvalidMessage(
                        rustls::InvalidMessage::InvalidContentType
                            | rustls::InvalidMessage::UnknownProtocolVersion
                    )
                )
            }),
            _ => false,
        }
    }
}

/// The TLS error an I/O error carries (a refused handshake, an alert from the peer, a
/// record that failed authentication), if any.
pub fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

/// The peer's alert, if the peer ended the connection with one (RFC 8446 §6.2: e.g. it
/// refused our certificate). Once the handshake keys are in place, alerts are sealed
/// like data (RFC 8446 §5.2), so nobody on the path can fake one, unlike a reset.
pub fn refusal(e: &io::Error) -> Option<&rustls::Error> {
    tls_error(e).filter(|t| matches!(t, rustls::Error::AlertReceived(_)))
}

fn read_err(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |e| match e {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Read {
            path: path.to_path_buf(),
            source,
        },
        e => TlsError::Read {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        },
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The trust anchors: the CA certificate(s) in `path`.
pub fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_chain(path)? {
        roots
            .add(c)
            .map_err(|e| TlsError::Config(format!("'{}': {e}", path.display())))?;
    }
    Ok(Arc::new(roots))
}

/// The certificates in a PEM file.
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_err(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err(path))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The node a certificate is for: its one DNS subject alternative name. (Parsed only;
/// whether the CA signed it is the verifier's question.)
pub fn identity(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| TlsError::NoIdentity(format!("unreadable certificate: {e}")))?;
    let names: Vec<&str> = ee.valid_dns_names().collect();
    match names[..] {
        [n] if !n.contains('*') => Ok(n.to_string()),
        _ => Err(TlsError::NoIdentity(format!("DNS names {names:?}"))),
    }
}

/// The VM a certificate is for (its `urn:ftvm:vm:` URI name, [`crate::keys`]), or
/// `None` for a cluster service's certificate. (Parsed only: read it from a certificate
/// the handshake verified, as [`TlsChannel::peer_vm`] does.)
pub fn vm_of(cert: &CertificateDer<'_>) -> Result<Option<String>, TlsError> {
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| TlsError::NoIdentity(format!("unreadable certificate: {e}")))?;
    let vms: Vec<&str> = ee
        .valid_uri_names()
        .filter_map(|u| u.strip_prefix(crate::keys::VM_URI_PREFIX))
        .collect();
    match vms[..] {
        [] => Ok(None),
        [vm] if crate::keys::check_vm(vm).is_ok() => Ok(Some(vm.to_string())),
        _ => Err(TlsError::NoIdentity(format!("VM names {vms:?}"))),
    }
}

/// Check that `cert` chains to `roots` and is valid now for `name`; returns its identity.
pub fn check_chain(
    roots: &Arc<RootCertStore>,
    cert: &CertificateDer<'_>,
    name: &str,
) -> Result<String, rustls::Error> {
    check_chain_at(roots, cert, name, std::time::SystemTime::now())
}

/// [`check_chain`] at the moment `at`.
pub fn check_chain_at(
    roots: &Arc<RootCertStore>,
    cert: &CertificateDer<'_>,
    name: &str,
    at: std::time::SystemTime,
) -> Result<String, rustls::Error> {
    let v = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let sn = ServerName::try_from(name.to_string())
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let at = UnixTime::since_unix_epoch(
        at.duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    v.verify_server_cert(cert, &[], &sn, &[], at)?;
    identity(cert).map_err(|e| rustls::Error::General(e.to_string()))
}

/// The dialing side's check of the server: any node the cluster CA vouches for, valid
/// for the name in its own certificate (the caller learns the name with the channel
/// and compares it with what the peer says it is).
#[derive(Debug)]
struct AnyClusterNode(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyClusterNode {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialed: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = identity(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        })?;
        let sn = ServerName::try_from(name).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        })?;
        self.0
            .verify_server_cert(end_entity, intermediates, &sn, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A node's credentials for one protocol: TLS configurations for accepting and for
/// dialing, both with this node's certificate and trusting only the cluster CA.
pub struct Credentials {
    name: String,
    vm: Option<String>,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({})", self.name)
    }
}

impl Credentials {
    /// `name`'s credentials in `dir` (`ca.pem`, `NAME.pem`, `NAME.key`, as
    /// [`crate::keys`] makes them) for the protocol `alpn`. The certificate must chain
    /// to the CA and be for `name`.
    pub fn load(dir: &Path, name: &str, alpn: &[u8]) -> Result<Credentials, TlsError> {
        let roots = roots(&dir.join(crate::keys::CA_CERT))?;
        let (cert_path, key_path) = crate::keys::node_files(dir, name);
        let chain = load_chain(&cert_path)?;
        let not_ours = |why: String| TlsError::NotOurs {
            path: cert_path.clone(),
            name: name.to_string(),
            why,
        };
        check_chain(&roots, &chain[0], name).map_err(|e| not_ours(e.to_string()))?;
        let vm = vm_of(&chain[0]).map_err(|e| not_ours(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(read_err(&key_path))?;
        let config = |e: rustls::Error| TlsError::Config(format!("{}: {e}", key_path.display()));

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config)?;
        server.alpn_protocols = vec![alpn.to_vec()];
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(NoServerSessionStorage {});

        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyClusterNode(server_verifier)))
            .with_client_auth_cert(chain, key)
            .map_err(config)?;
        client.alpn_protocols = vec![alpn.to_vec()];
        client.resumption = Resumption::disabled();
        Ok(Credentials {
            name: name.to_string(),
            vm,
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// This node's name (its certificate's identity).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The VM this node's certificate is for (`None`: a cluster service's).
    pub fn vm(&self) -> Option<&str> {
        self.vm.as_deref()
    }

    /// A server connection with these credentials, for a caller that drives the
    /// handshake itself (the switch's non-blocking event loop).
    pub fn server_connection(&self) -> Result<rustls::ServerConnection, TlsError> {
        rustls::ServerConnection::new(self.server.clone())
            .map_err(|e| TlsError::Config(e.to_string()))
    }

    /// A client connection to the server at `addr` with these credentials, for a caller
    /// that drives the handshake itself.
    pub fn client_connection(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<rustls::ClientConnection, TlsError> {
        // The server's name is learnt from its certificate (see `AnyClusterNode`); an
        // address as the name sends no SNI (RFC 6066 §3).
        rustls::ClientConnection::new(self.client.clone(), addr.ip().into())
            .map_err(|e| TlsError::Config(e.to_string()))
    }

    /// The server's side of the handshake on an accepted connection (blocking, bounded
    /// by the socket's timeouts).
    pub fn accept(&self, sock: TcpStream) -> Result<TlsChannel, TlsError> {
        let conn = rustls::ServerConnection::new(self.server.clone())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        TlsChannel::handshake(conn.into(), sock)
    }

    /// The client's side of the handshake on a dialed connection.
    pub fn connect(&self, sock: TcpStream) -> Result<TlsChannel, TlsError> {
        let addr = sock.peer_addr().map_err(TlsError::Handshake)?;
        TlsChannel::handshake(self.client_connection(addr)?.into(), sock)
    }
}

/// What the handles on one TLS connection share.
struct Shared {
    state: Mutex<State>,
    /// Held while records go onto the socket, taken under `state`: records leave in
    /// the order they were sealed.
    send: Mutex<()>,
    peer: String,
    peer_vm: Option<String>,
}

/// The connection and what the socket gave that rustls has not taken yet (shared, so
/// that any handle may read next).
struct State {
    conn: Connection,
    pending: Vec<u8>,
    /// The socket reached its end.
    eof: bool,
}

/// An authenticated, encrypted channel to the peer node `peer()`.
pub struct TlsChannel {
    sock: Arc<TcpStream>,
    shared: Arc<Shared>,
    /// This handle's buffer for socket reads (allocated on its first read).
    inbuf: Vec<u8>,
}

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TlsChannel {
    fn handshake(mut conn: Connection, sock: TcpStream) -> Result<TlsChannel, TlsError> {
        let mut s = &sock;
        while conn.is_handshaking() {
            conn.complete_io(&mut s).map_err(TlsError::Handshake)?;
        }
        while conn.wants_write() {
            conn.write_tls(&mut s).map_err(TlsError::Handshake)?;
        }
        let cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or_else(|| TlsError::NoIdentity("the peer sent no certificate".into()))?;
        let peer = identity(cert)?;
        let peer_vm = vm_of(cert)?;
        // Everything written is sealed and sent at once (see `send`).
        conn.set_buffer_limit(None);
        Ok(TlsChannel {
            sock: Arc::new(sock),
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    conn,
                    pending: Vec::new(),
                    eof: false,
                }),
                send: Mutex::new(()),
                peer,
                peer_vm,
            }),
            inbuf: Vec::new(),
        })
    }

    /// The peer's identity: the node name in its certificate.
    pub fn peer(&self) -> &str {
        &self.shared.peer
    }

    /// The VM the peer's certificate is for (`None`: a cluster service's).
    pub fn peer_vm(&self) -> Option<&str> {
        self.shared.peer_vm.as_deref()
    }

    /// Put the records the connection has sealed onto the socket, in order.
    fn send(&self, mut st: MutexGuard<'_, State>) -> io::Result<()> {
        if !st.conn.wants_write() {
            return Ok(());
        }
        let mut records = Vec::new();
        while st.conn.wants_write() {
            st.conn.write_tls(&mut records)?;
        }
        let _order = lock(&self.shared.send);
        drop(st);
        (&*self.sock).write_all(&records)
    }
}

impl Read for TlsChannel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let mut st = lock(&self.shared.state);
            loop {
                match st.conn.reader().read(buf) {
                    // 0: the peer's close_notify (RFC 8446 §6.1); a TCP end without
                    // it is an UnexpectedEof error.
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                // Nothing decrypted waits: feed rustls what the socket gave, a piece at
                // a time (its plaintext buffer is bounded), until a record opens.
                let State { conn, pending, eof } = &mut *st;
                if pending.is_empty() {
                    if !*eof {
                        break;
                    }
                    conn.read_tls(&mut &[][..])?;
                } else {
                    let n = conn.read_tls(&mut &pending[..])?;
                    pending.drain(..n);
                }
                let processed = st.conn.process_new_packets();
                if st.conn.wants_write() {
                    // An alert, or the answer to a key update (RFC 8446 §4.6.3).
                    let sent = self.send(st);
                    st = lock(&self.shared.state);
                    if processed.is_ok() {
                        sent?;
                    }
                }
                if let Err(e) = processed {
                    // A record that fails authentication (RFC 8446 §5.2) ends the
                    // channel; the peer learns why from the alert, if it can.
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                if st.eof && st.pending.is_empty() {
                    if let Ok(n) = st.conn.reader().read(buf) {
                        return Ok(n);
                    }
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            drop(st);
            // Block on the socket without the lock (a writer may need it meanwhile).
            self.inbuf.resize(READ_CHUNK, 0);
            let n = (&*self.sock).read(&mut self.inbuf)?;
            let mut st = lock(&self.shared.state);
            st.pending.extend_from_slice(&self.inbuf[..n]);
            st.eof |= n == 0;
        }
    }
}

impl Write for TlsChannel {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut st = lock(&self.shared.state);
        st.conn.writer().write_all(buf)?;
        self.send(st)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Channel for TlsChannel {
    fn try_clone_channel(&self) -> io::Result<Box<dyn Channel>> {
        Ok(Box::new(TlsChannel {
            sock: self.sock.clone(),
            shared: self.shared.clone(),
            inbuf: Vec::new(),
        }))
    }

    fn close(&self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(t)
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use std::net::TcpListener;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ftvm-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A cluster with `names` in a fresh directory.
    fn cluster(tag: &str, names: &[&str]) -> PathBuf {
        let d = scratch(tag);
        keys::create_ca(&d, false).unwrap();
        for n in names {
            keys::create_node(&d, n, 30, false).unwrap();
        }
        d
    }

    /// Connect `client` to `server` over loopback: (server's result, client's result).
    fn pair(
        server: Credentials,
        client: Credentials,
    ) -> (Result<TlsChannel, TlsError>, Result<TlsChannel, TlsError>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let s = std::thread::spawn(move || server.accept(l.accept().unwrap().0));
        let c = client.connect(TcpStream::connect(addr).unwrap());
        (s.join().unwrap(), c)
    }

    #[test]
    fn both_ends_learn_the_peers_name_and_bytes_flow_both_ways_at_once() {
        let d = cluster("flow", &["primary-a", "backup-b"]);
        let (s, c) = pair(
            Credentials::load(&d, "primary-a", b"t").unwrap(),
            Credentials::load(&d, "backup-b", b"t").unwrap(),
        );
        let (mut s, mut c) = (s.unwrap(), c.unwrap());
        assert_eq!(s.peer(), "backup-b");
        assert_eq!(c.peer(), "primary-a");
        // One thread streams 4 MiB one way while the other end acks the other way.
        let mut s_reader = s.try_clone_channel().unwrap();
        let writer = std::thread::spawn(move || {
            let block: Vec<u8> = (0..1 << 16).map(|i| (i % 251) as u8).collect();
            for _ in 0..64 {
                s.write_all(&block).unwrap();
            }
            s.close_after_write();
        });
        let acks = std::thread::spawn(move || {
            let mut n = 0;
            let mut a = [0u8; 16];
            while s_reader.read_exact(&mut a).is_ok() {
                n += 1;
            }
            n
        });
        let mut got = 0usize;
        // Small reads: records pile up in rustls while the reader drains slowly.
        let mut buf = vec![0u8; 1000];
        let mut sent_acks = 0;
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for (i, b) in buf[..n].iter().enumerate() {
                        assert_eq!(*b, ((got + i) % (1 << 16) % 251) as u8);
                    }
                    got += n;
                    if c.write_all(&[7u8; 16]).is_ok() {
                        sent_acks += 1;
                    }
                }
            }
        }
        writer.join().unwrap();
        c.close();
        assert_eq!(got, 64 << 16);
        assert!(acks.join().unwrap() <= sent_acks);
        std::fs::remove_dir_all(&d).unwrap();
    }

    impl TlsChannel {
        /// Test helper: half-close after the last write (the reader sees the end).
        fn close_after_write(&self) {
            let _ = self.sock.shutdown(Shutdown::Write);
        }
    }

    #[test]
    fn what_one_handle_read_from_the_socket_another_handle_reads_on() {
        let d = cluster("handles", &["p", "b"]);
        let (s, c) = pair(
            Credentials::load(&d, "p", b"t").unwrap(),
            Credentials::load(&d, "b", b"t").unwrap(),
        );
        let (mut s, mut first) = (s.unwrap(), c.unwrap());
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        s.write_all(&data).unwrap();
        let mut got = vec![0u8; 1000];
        first.read_exact(&mut got).unwrap();
        // The first handle read more than it returned; the second one goes on from there.
        let mut second = first.try_clone_channel().unwrap();
        drop(first);
        got.resize(data.len(), 0);
        second.read_exact(&mut got[1000..]).unwrap();
        assert!(got == data);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_node_of_another_cluster_is_refused_on_both_sides() {
        let (ours, theirs) = (cluster("ours", &["p"]), cluster("theirs", &["b"]));
        let (s, c) = pair(
            Credentials::load(&ours, "p", b"t").unwrap(),
            Credentials::load(&theirs, "b", b"t").unwrap(),
        );
        let s = s.err().expect("the server refuses a foreign client");
        assert!(s.refused(), "{s}");
        // The client may finish its half before the refusal arrives: then its first
        // read carries the server's alert.
        match c {
            Err(e) => assert!(e.refused(), "{e}"),
            Ok(mut c) => {
                let e = c.read(&mut [0u8; 1]).unwrap_err();
                assert!(tls_error(&e).is_some(), "{e}");
            }
        }
        std::fs::remove_dir_all(&ours).unwrap();
        std::fs::remove_dir_all(&theirs).unwrap();
    }

    #[test]
    fn credentials_must_be_the_nodes_own() {
        let d = cluster("own", &["a", "b"]);
        // b's certificate under a's name.
        std::fs::copy(d.join("b.pem"), d.join("a.pem")).unwrap();
        let e = Credentials::load(&d, "a", b"t").unwrap_err();
        assert!(matches!(e, TlsError::NotOurs { .. }), "{e}");
        let e = Credentials::load(&d, "nobody", b"t").unwrap_err();
        assert!(matches!(e, TlsError::Read { .. }), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_flipped_byte_ends_the_channel_with_an_error() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let d = cluster("flip", &["p", "b"]);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let (addr, front_addr) = (l.local_addr().unwrap(), front.local_addr().unwrap());
        // A proxy that flips one bit of the server's next bytes once armed.
        let armed = Arc::new(AtomicBool::new(false));
        let arm = armed.clone();
        std::thread::spawn(move || {
            let (mut a, _) = front.accept().unwrap();
            let mut b = TcpStream::connect(addr).unwrap();
            let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
            std::thread::spawn(move || io::copy(&mut a2, &mut b2));
            let mut buf = [0u8; 4096];
            loop {
                let n = b.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    return;
                }
                if arm.swap(false, Ordering::SeqCst) {
                    buf[n - 1] ^= 0x40;
                }
                if a.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
        let server = Credentials::load(&d, "p", b"t").unwrap();
        let (go_tx, go) = std::sync::mpsc::channel::<()>();
        let (ready, accepted) = std::sync::mpsc::channel::<()>();
        let s = std::thread::spawn(move || {
            let mut ch = server.accept(l.accept().unwrap().0).unwrap();
            ready.send(()).unwrap();
            go.recv().unwrap();
            ch.write_all(&[1u8; 1000]).unwrap();
            ch
        });
        let client = Credentials::load(&d, "b", b"t").unwrap();
        let mut c = client
            .connect(TcpStream::connect(front_addr).unwrap())
            .unwrap();
        accepted.recv().unwrap();
        armed.store(true, Ordering::SeqCst);
        go_tx.send(()).unwrap();
        let mut got = vec![0u8; 1000];
        let e = c.read_exact(&mut got).unwrap_err();
        assert!(tls_error(&e).is_some(), "{e}");
        drop(s.join().unwrap());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
