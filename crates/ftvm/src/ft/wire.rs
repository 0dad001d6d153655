//! The logging channel's wire format (DESIGN.md §4). After the mutual handshake — TLS
//! 1.3 with both nodes' certificates (`ftvm_world::tls`, ALPN `ftvm-log/2`), or with
//! `--insecure-plaintext` the cluster-secret proof (greeting [`GREETING`], see
//! `ftvm_arbiter::server_handshake`):
//!
//! 1. backup → primary: `Hello` (over TLS, its `node` must be the name in the
//!    backup's certificate);
//! 2. primary → backup: `Busy` (try later) or `Refused` (never: a wrong identity), and
//!    close; or `Offer`, then `Pages` messages (the
//!    iterative pre-copy of guest RAM) and, for a backup with its own disk, `Disk`
//!    messages (the image, then what was written meanwhile), then `Final` (CPU and
//!    device state);
//! 3. then primary → backup is a log stream exactly as `ftvm record` writes it (header,
//!    then entries) and backup → primary is a stream of 20-byte acks: the highest
//!    sequence number received and the instruction count the backup has executed to,
//!    both u64 LE, and the pace of its replay in instructions per millisecond, u32 LE
//!    (0: not measured yet; `ftvm_replica::pace`).
//!
//! Messages in steps 1–2 are framed as `len: u32 LE | tag: u8 | payload` with `len`
//! counting the tag and the payload.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

/// The primary's greeting: 7 bytes and the protocol version.
pub const GREETING: [u8; 8] = *b"FTVMLOG\x02";
/// Largest message accepted (an offer embeds the kernel and initramfs).
const MAX_MESSAGE: u32 = 512 << 20;
/// Bytes in one acknowledgment.
pub const ACK_LEN: usize = 20;
/// Largest piece of the disk image in one `Disk` message (the primary sends 64 KiB).
pub const MAX_DISK_PIECE: u32 = 1 << 20;

/// Message tags.
const HELLO: u8 = 1;
const OFFER: u8 = 2;
const BUSY: u8 = 3;
const PAGES: u8 = 4;
const FINAL: u8 = 5;
const DISK: u8 = 6;
const REFUSED: u8 = 7;

/// A backup introduces itself.
#[derive(Serialize, Deserialize, Debug)]
pub struct Hello {
    /// The VM it wants to protect.
    pub vm: String,
    /// Its node id (as the arbiter will know it).
    pub node: String,
    /// It keeps its own copy of the guest's disk (sent with the guest) rather than
    /// sharing the primary's.
    pub own_disk: bool,
}

/// A primary offers its guest.
#[derive(Serialize, Deserialize, Debug)]
pub struct Offer {
    /// The VM.
    pub vm: String,
    /// The generation the new pair will be.
    pub generation: u64,
    /// The primary's node id.
    pub primary: String,
    /// The encoded boot configuration (the machine the backup builds).
    pub config: Vec<u8>,
    /// The switch the guest's NIC is plugged into.
    pub switch: String,
    /// The shared disk (`PATH[,readonly]`), if the guest has one.
    pub disk: Option<String>,
}

/// A message of the transfer phase.
pub enum Message {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Offer`].
    Offer(Offer),
    /// The primary refuses for now (it has a backup, runs another VM, or lacks the
    /// arbiter).
    Busy(String),
    /// The primary refuses this backup for good (its identity is not what it claims).
    Refused(String),
    /// Guest RAM pages: (page index, contents; `None` for a page of zeros).
    Pages(Vec<(u32, Option<Vec<u8>>)>),
    /// The machine without RAM (`Machine::save_without_ram`); the log follows.
    Final(Vec<u8>),
    /// A piece of the disk image: byte offset, length, contents (`None`: zeros).
    Disk(u64, u32, Option<Vec<u8>>),
}

fn frame(w: &mut impl Write, tag: u8, payload: &[u8]) -> Result<()> {
    let len = u32::try_from(payload.len() + 1).context("message too large")?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&[tag])?;
    w.write_all(payload)?;
    Ok(())
}

/// Write one message.
pub fn send(w: &mut impl Write, m: &Message) -> Result<()> {
    match m {
        Message::Hello(h) => frame(w, HELLO, &postcard::to_stdvec(h)?),
        Message::Offer(o) => frame(w, OFFER, &postcard::to_stdvec(o)?),
        Message::Busy(why) => frame(w, BUSY, why.as_bytes()),
        Message::Refused(why) => frame(w, REFUSED, why.as_bytes()),
        Message::Pages(pages) => {
            let mut p = Vec::with_capacity(4 + pages.len() * 8);
            p.extend_from_slice(&(pages.len() as u32).to_le_bytes());
            for (index, data) in pages {
                p.extend_from_slice(&index.to_le_bytes());
                match data {
                    None => p.push(0),
                    Some(d) => {
                        p.push(1);
                        p.extend_from_slice(d);
                    }
                }
            }
            frame(w, PAGES, &p)
        }
        Message::Final(state) => frame(w, FINAL, state),
        Message::Disk(offset, len, data) => {
            let mut p = Vec::with_capacity(13 + data.as_ref().map_or(0, Vec::len));
            p.extend_from_slice(&offset.to_le_bytes());
            p.extend_from_slice(&len.to_le_bytes());
            match data {
                None => p.push(0),
                Some(d) => {
                    p.push(1);
                    p.extend_from_slice(d);
                }
            }
            frame(w, DISK, &p)
        }
    }
}

/// Read one message.
pub fn recv(r: &mut impl Read, page_size: usize) -> Result<Message> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len == 0 || len > MAX_MESSAGE {
        bail!("a message of {len} bytes is out of bounds");
    }
    let mut body = Vec::new();
    r.take(u64::from(len)).read_to_end(&mut body)?;
    if body.len() != len as usize {
        bail!("the connection closed inside a message");
    }
    let payload = &body[1..];
    Ok(match body[0] {
        HELLO => Message::Hello(postcard::from_bytes(payload).context("malformed hello")?),
        OFFER => Message::Offer(postcard::from_bytes(payload).context("malformed offer")?),
        BUSY => Message::Busy(String::from_utf8_lossy(payload).into_owned()),
        REFUSED => Message::Refused(String::from_utf8_lossy(payload).into_owned()),
        PAGES => Message::Pages(decode_pages(payload, page_size)?),
        FINAL => Message::Final(payload.to_vec()),
        DISK => {
            if payload.len() < 13 {
                bail!("malformed disk message");
            }
            let offset = u64::from_le_bytes(payload[..8].try_into()?);
            let len = u32::from_le_bytes(payload[8..12].try_into()?);
            if len > MAX_DISK_PIECE {
                bail!("a disk message of {len} bytes is out of bounds");
            }
            let data = match (payload[12], &payload[13..]) {
                (0, []) => None,
                (1, d) if d.len() == len as usize => Some(d.to_vec()),
                _ => bail!("malformed disk message"),
            };
            Message::Disk(offset, len, data)
        }
        t => bail!("unknown message tag {t}"),
    })
}

fn decode_pages(mut p: &[u8], page_size: usize) -> Result<Vec<(u32, Option<Vec<u8>>)>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
        if p.len() < n {
            bail!("malformed pages message");
        }
        let (a, b) = p.split_at(n);
        *p = b;
        Ok(a)
    }
    let count = u32::from_le_bytes(take(&mut p, 4)?.try_into()?);
    let mut pages = Vec::with_capacity((count as usize).min(1 << 16));
    for _ in 0..count {
        let index = u32::from_le_bytes(take(&mut p, 4)?.try_into()?);
        let data = match take(&mut p, 1)?[0] {
            0 => None,
            1 => Some(take(&mut p, page_size)?.to_vec()),
            k => bail!("malformed pages message (page kind {k})"),
        };
        pages.push((index, data));
    }
    if !p.is_empty() {
        bail!("malformed pages message (trailing bytes)");
    }
    Ok(pages)
}

/// An acknowledgment: the highest sequence number received, the instruction count
/// executed to, and the replay's pace (instructions per ms).
pub fn encode_ack(seq: u64, icount: u64, pace: u32) -> [u8; ACK_LEN] {
    let mut a = [0u8; ACK_LEN];
    a[..8].copy_from_slice(&seq.to_le_bytes());
    a[8..16].copy_from_slice(&icount.to_le_bytes());
    a[16..].copy_from_slice(&pace.to_le_bytes());
    a
}

/// See [`encode_ack`].
pub fn decode_ack(a: &[u8; ACK_LEN]) -> (u64, u64, u32) {
    (
        u64::from_le_bytes(a[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(a[8..16].try_into().expect("8 bytes")),
        u32::from_le_bytes(a[16..].try_into().expect("4 bytes")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let mut buf = Vec::new();
        let page = vec![7u8; 16];
        send(
            &mut buf,
            &Message::Pages(vec![(3, None), (9, Some(page.clone()))]),
        )
        .unwrap();
        send(&mut buf, &Message::Busy("has a backup".into())).unwrap();
        send(&mut buf, &Message::Refused("not B".into())).unwrap();
        send(&mut buf, &Message::Disk(1 << 33, 3, Some(vec![1, 2, 3]))).unwrap();
        send(&mut buf, &Message::Disk(512, 4096, None)).unwrap();
        let mut r = &buf[..];
        match recv(&mut r, 16).unwrap() {
            Message::Pages(p) => assert_eq!(p, vec![(3, None), (9, Some(page))]),
            _ => panic!("wrong message"),
        }
        assert!(matches!(recv(&mut r, 16).unwrap(), Message::Busy(s) if s == "has a backup"));
        assert!(matches!(recv(&mut r, 16).unwrap(), Message::Refused(s) if s == "not B"));
        assert!(
            matches!(recv(&mut r, 16).unwrap(), Message::Disk(o, 3, Some(d)) if o == 1 << 33 && d == [1, 2, 3])
        );
        assert!(matches!(
            recv(&mut r, 16).unwrap(),
            Message::Disk(512, 4096, None)
        ));
        assert!(recv(&mut r, 16).is_err());
    }

    #[test]
    fn hostile_messages_are_refused() {
        for bad in [
            &[0u8, 0, 0, 0][..],
            &[0xff, 0xff, 0xff, 0xff, PAGES],
            &[2, 0, 0, 0, 99, 0],
            &[6, 0, 0, 0, PAGES, 1, 0, 0, 0, 0],
            &[10, 0, 0, 0, PAGES, 1, 0, 0, 0, 5, 0, 0, 0, 9],
            &[15, 0, 0, 0, DISK, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 7],
            &[14, 0, 0, 0, DISK, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            // A zero piece of 4 GiB: the backup would allocate it.
            &[
                14, 0, 0, 0, DISK, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0,
            ],
        ] {
            assert!(recv(&mut &bad[..], 16).is_err(), "{bad:?}");
        }
        assert_eq!(
            decode_ack(&encode_ack(5, 1 << 40, 150_000)),
            (5, 1 << 40, 150_000)
        );
    }
}
