//! Host entropy for the guest's virtio-rng (from the kernel's CSPRNG).

use std::fs::File;
use std::io::{self, Read};

/// Reads random bytes from `/dev/urandom`.
pub struct HostEntropy {
    file: File,
}

impl HostEntropy {
    /// Open the host's random source.
    pub fn open() -> io::Result<HostEntropy> {
        Ok(HostEntropy {
            file: File::open("/dev/urandom")?,
        })
    }

    /// `len` random bytes (capped at 64 KiB per request).
    pub fn bytes(&mut self, len: usize) -> io::Result<Vec<u8>> {
        let mut v = vec![0u8; len.min(64 * 1024)];
        self.file.read_exact(&mut v)?;
        Ok(v)
    }
}

/// A source of randomness for the guest's virtio-rng.
pub trait Entropy: Send {
    /// `len` random bytes (a source may give fewer: at most 64 KiB per request).
    fn bytes(&mut self, len: usize) -> io::Result<Vec<u8>>;
}

impl Entropy for HostEntropy {
    fn bytes(&mut self, len: usize) -> io::Result<Vec<u8>> {
        HostEntropy::bytes(self, len)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gives_the_requested_bytes_and_they_vary() {
        let mut e = super::HostEntropy::open().unwrap();
        let a = e.bytes(32).unwrap();
        let b = e.bytes(32).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(e.bytes(1 << 20).unwrap().len(), 64 * 1024);
    }
}
