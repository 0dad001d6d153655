//! The logging channel between a primary and its backup (DESIGN.md §4) as a byte
//! stream: the log goes one way and acks the other, each direction used by its own
//! thread. TCP implements it in clear (`--insecure-plaintext`), [`crate::tls`] over
//! TLS 1.3.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// A reliable, ordered byte stream to the peer node.
pub trait Channel: Read + Write + Send {
    /// A second handle on the same stream (one thread reads while another writes).
    fn try_clone_channel(&self) -> io::Result<Box<dyn Channel>>;
    /// Close both directions: the peer sees the end, and a thread blocked reading
    /// here returns.
    fn close(&self);
    /// How long a read may block (`None`: forever); shared by every handle.
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    /// How long a write may block (`None`: forever); shared by every handle.
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl Channel for TcpStream {
    fn try_clone_channel(&self) -> io::Result<Box<dyn Channel>> {
        Ok(Box::new(self.try_clone()?))
    }

    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, t)
    }
}

impl Channel for Box<dyn Channel> {
    fn try_clone_channel(&self) -> io::Result<Box<dyn Channel>> {
        (**self).try_clone_channel()
    }

    fn close(&self) {
        (**self).close()
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(t)
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        (**self).set_write_timeout(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_closed_tcp_channel_ends_the_peers_stream() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a: Box<dyn Channel> =
            Box::new(TcpStream::connect(l.local_addr().unwrap()).unwrap());
        let (mut b, _) = l.accept().unwrap();
        a.write_all(b"log").unwrap();
        let reader = a.try_clone_channel().unwrap();
        reader.close();
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"log");
    }
}
