//! A port's byte stream: a non-blocking TCP connection, in clear or inside TLS 1.3
//! (RFC 8446) driven by hand — records read from the socket as it has them, decrypted
//! data taken out, sealed records written as far as the socket takes them — so that
//! one slow or silent peer never blocks the event loop.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};

use ftvm_world::rustls;

/// A connection's transport.
#[derive(Debug)]
pub(crate) enum Transport {
    /// In clear (`--insecure-plaintext`).
    Plain(TcpStream),
    /// Inside TLS.
    Tls {
        sock: TcpStream,
        conn: Box<rustls::Connection>,
    },
}

impl Transport {
    /// Whether the TLS handshake is still running (never, in clear).
    pub fn handshaking(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls { conn, .. } => conn.is_handshaking(),
        }
    }

    /// The peer's certificate, once the handshake verified it.
    pub fn peer_certificate(&self) -> Option<&rustls::pki_types::CertificateDer<'static>> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls { conn, .. } if !conn.is_handshaking() => {
                conn.peer_certificates().and_then(|c| c.first())
            }
            Transport::Tls { .. } => None,
        }
    }

    /// Writes the records the connection has sealed (handshake messages, alerts, data)
    /// until the socket would block; the number of bytes written.
    pub fn push(&mut self) -> io::Result<usize> {
        match self {
            Transport::Plain(_) => Ok(0),
            Transport::Tls { sock, conn } => push(sock, conn),
        }
    }
}

fn push(sock: &mut TcpStream, conn: &mut rustls::Connection) -> io::Result<usize> {
    let mut total = 0;
    while conn.wants_write() {
        match conn.write_tls(sock) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

fn tls_failed(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

/// Reads what the peer sent: `Ok(0)` at its end, `WouldBlock` when nothing waits. A TLS
/// record that fails (a refused certificate, a damaged record) is an `InvalidData` error
/// carrying the [`rustls::Error`]; the alert that tells the peer why is sent first.
impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (sock, conn) = match self {
            Transport::Plain(s) => return s.read(buf),
            Transport::Tls { sock, conn } => (sock, conn),
        };
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The TCP connection ended without close_notify (RFC 8446 §6.1): an end.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // Bounded: each round either consumes socket bytes or returns.
            if conn.read_tls(sock)? == 0 {
                return Ok(0);
            }
            let processed = conn.process_new_packets();
            // Handshake answers and alerts leave at once, as far as the socket takes
            // them (the rest with the next flush).
            let pushed = push(sock, conn);
            processed.map_err(tls_failed)?;
            pushed?;
        }
    }
}

/// Takes what the connection accepts without blocking (`WouldBlock` while sealed records
/// still wait for the socket).
impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Transport::Plain(s) = self {
            return s.write(buf);
        }
        self.push()?;
        let Transport::Tls { conn, .. } = self else {
            unreachable!("plain handled above")
        };
        if conn.wants_write() {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = conn.writer().write(buf)?;
        if n == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        self.push()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push().map(|_| ())
    }
}

impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Transport::Plain(s) | Transport::Tls { sock: s, .. } => s.as_raw_fd(),
        }
    }
}
