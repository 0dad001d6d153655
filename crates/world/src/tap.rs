//! A TAP device behind the guest's NIC (issue 13 item 2; DESIGN.md §5 "Network"): the
//! guest's frames go to a Linux network interface of this host — bridge it to the LAN
//! and the guest has a real address there.

use crate::net::Net;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

/// Frames taken per `recv` (the driver comes back after delivering them).
const BATCH: usize = 64;
/// The largest frame read (a TAP device without offloads hands whole frames).
const MAX_FRAME: usize = 65_536;

/// `struct ifreq` as TUNSETIFF reads it: the name and the flags (linux/if.h).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _rest: [u8; 22],
}

/// An open TAP device.
pub struct Tap {
    file: File,
    name: String,
    /// Frames the device would not take (its queue full, the interface down).
    pub dropped: u64,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tap({})", self.name)
    }
}

impl Tap {
    /// Attach to the TAP interface `name` (created if it does not exist, which needs
    /// CAP_NET_ADMIN; an existing one made with `ip tuntap add NAME mode tap` may be
    /// owned by this user).
    pub fn open(name: &str) -> io::Result<Tap> {
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
            return Err(io::Error::other(format!(
                "'{name}' is not an interface name (1 to 15 characters)"
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::other(format!("cannot open /dev/net/tun: {e}")))?;
        let mut req = IfReq {
            name: [0; 16],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            _rest: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads (and writes back) an ifreq, which `req` is laid out as.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::other(format!(
                "cannot attach to the TAP device {name}: {e}"
            )));
        }
        Ok(Tap {
            file,
            name: name.to_string(),
            dropped: 0,
        })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Net for Tap {
    fn send(&mut self, frame: &[u8]) {
        // One write is one frame; a device that cannot take it drops it, as a NIC does.
        if self.file.write(frame).is_err() {
            self.dropped += 1;
        }
    }

    fn recv(&mut self, _now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; MAX_FRAME];
        while out.len() < BATCH {
            match self.file.read(&mut buf) {
                Ok(n) if n > 0 => out.push(buf[..n].to_vec()),
                _ => break, // WouldBlock: all read (readiness is edge-triggered)
            }
        }
        out
    }

    fn timer(&mut self, _now: Instant) -> Option<Duration> {
        None
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let fd = self.file.as_raw_fd();
        match registry.register(&mut SourceFd(&fd), token, Interest::READABLE) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                registry.reregister(&mut SourceFd(&fd), token, Interest::READABLE)
            }
            r => r,
        }
    }
}
