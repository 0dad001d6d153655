//! Mutual authentication with the cluster secret, then MAC'd length-prefixed frames;
//! or TLS 1.3 with the nodes' certificates (`ftvm_world::tls`), then plain
//! length-prefixed frames inside it.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;

use hmac::{Hmac, KeyInit, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

use crate::error::{ArbiterError, AuthFailure};
use crate::proto::{self, MAX_MESSAGE_LEN, PROTOCOL_VERSION};
use ftvm_world::tls::{Credentials, TlsChannel};

type HmacSha256 = Hmac<Sha256>;

/// Nonce and MAC length.
const LEN: usize = 32;
/// The server's greeting before its nonce: 7 bytes and the protocol version.
const GREETING: [u8; 8] = *b"FTVMARB\0";
/// The server's verdict on the client's proof.
const ACCEPTED: u8 = 1;
const REFUSED: u8 = 0;

/// Which end of the connection we are; frames are MAC'd with the sender's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Client => b"client",
            Role::Server => b"server",
        }
    }

    fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }
}

/// HMAC-SHA256 over the concatenation of `parts`.
fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m
}

/// 32 random bytes from the kernel.
fn nonce() -> Result<[u8; LEN], ArbiterError> {
    let mut n = [0; LEN];
    File::open("/dev/urandom")?.read_exact(&mut n)?;
    Ok(n)
}

fn greeting() -> [u8; 8] {
    let mut g = GREETING;
    g[7] = PROTOCOL_VERSION;
    g
}

/// The arbiter protocol's name in TLS (ALPN, RFC 7301).
pub const ARBITER_ALPN: &[u8] = b"ftvm-arbiter/1";

/// One direction of the secret mode's frames (protocol step 4): each frame is
/// `len: u32 LE | payload | tag`, where
/// `tag = HMAC(session key, sender label || seq: u64 LE || len || payload)` and `seq`
/// counts this direction's frames from 0, so a tampered, replayed, reordered or
/// reflected frame fails its tag.
pub struct Frames {
    key: [u8; LEN],
    sender: Role,
    seq: u64,
}

impl Frames {
    /// The frames the client sends (`from_client`) or the server sends, under the
    /// session key `key`.
    pub fn new(key: [u8; LEN], from_client: bool) -> Frames {
        let sender = if from_client {
            Role::Client
        } else {
            Role::Server
        };
        Frames {
            key,
            sender,
            seq: 0,
        }
    }

    fn tag(&self, len: [u8; 4], payload: &[u8]) -> HmacSha256 {
        mac(
            &self.key,
            &[self.sender.label(), &self.seq.to_le_bytes(), &len, payload],
        )
    }

    /// The next frame carrying `payload`.
    pub fn seal(&mut self, payload: &[u8]) -> Result<Vec<u8>, ArbiterError> {
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        if len > MAX_MESSAGE_LEN {
            return Err(ArbiterError::TooLarge(len));
        }
        let len = len.to_le_bytes();
        let tag = self.tag(len, payload).finalize().into_bytes();
        self.seq += 1;
        Ok([&len[..], payload, &tag[..]].concat())
    }

    /// Reads the next frame from `r` and returns its payload: a length over
    /// [`MAX_MESSAGE_LEN`] is refused before anything is allocated, and a frame whose
    /// tag does not match is [`ArbiterError::BadMac`].
    pub fn open(&mut self, r: &mut impl Read) -> Result<Vec<u8>, ArbiterError> {
        let mut len = [0; 4];
        r.read_exact(&mut len)?;
        let n = u32::from_le_bytes(len);
        if n > MAX_MESSAGE_LEN {
            return Err(ArbiterError::TooLarge(n));
        }
        let mut rest = vec![0; n as usize + LEN];
        r.read_exact(&mut rest)?;
        let (payload, tag) = rest.split_at(n as usize);
        (self.tag(len, payload).verify_slice(tag)).map_err(|_| ArbiterError::BadMac)?;
        self.seq += 1;
        rest.truncate(n as usize);
        Ok(rest)
    }
}

/// An authenticated connection: with the cluster secret, [`Frames`] each way; over TLS
/// a frame is `len: u32 LE | payload` (TLS does the rest, RFC 8446 §5.2).
pub(crate) struct Channel {
    stream: TcpStream,
    /// What this end sends and what it receives, in the secret mode.
    out: Frames,
    inn: Frames,
    tls: Option<TlsChannel>,
}

impl Channel {
    fn new(stream: TcpStream, role: Role, secret: &[u8], sn: &[u8], cn: &[u8]) -> Channel {
        let key: [u8; LEN] = mac(secret, &[b"session", sn, cn])
            .finalize()
            .into_bytes()
            .into();
        Channel {
            stream,
            out: Frames::new(key, role == Role::Client),
            inn: Frames::new(key, role.peer() == Role::Client),
            tls: None,
        }
    }

    fn over_tls(stream: TcpStream, role: Role, tls: TlsChannel) -> Channel {
        let mut c = Channel::new(stream, role, b"", b"", b"");
        c.tls = Some(tls);
        c
    }

    /// The client's side over TLS: the server must be the node `arbiter`.
    pub(crate) fn tls_client(
        stream: TcpStream,
        creds: &Credentials,
        arbiter: &str,
    ) -> Result<Channel, ArbiterError> {
        let tls = creds.connect(stream.try_clone()?).map_err(tls_failure)?;
        if tls.peer() != arbiter {
            return Err(ArbiterError::WrongPeer {
                expected: arbiter.to_string(),
                got: tls.peer().to_string(),
            });
        }
        Ok(Channel::over_tls(stream, Role::Client, tls))
    }

    /// The server's side over TLS; returns the client's identity too.
    pub(crate) fn tls_server(
        stream: TcpStream,
        creds: &Credentials,
    ) -> Result<(Channel, String), ArbiterError> {
        let tls = creds.accept(stream.try_clone()?).map_err(tls_failure)?;
        let peer = tls.peer().to_string();
        Ok((Channel::over_tls(stream, Role::Server, tls), peer))
    }

    /// The client's half of the handshake (see [`client_handshake`]).
    pub(crate) fn client(mut stream: TcpStream, secret: &[u8]) -> Result<Channel, ArbiterError> {
        let (sn, cn) = client_handshake(&mut stream, greeting(), secret)?;
        Ok(Channel::new(stream, Role::Client, secret, &sn, &cn))
    }

    /// The server's half (see [`server_handshake`]).
    pub(crate) fn server(mut stream: TcpStream, secret: &[u8]) -> Result<Channel, ArbiterError> {
        let (sn, cn) = server_handshake(&mut stream, greeting(), secret)?;
        Ok(Channel::new(stream, Role::Server, secret, &sn, &cn))
    }

    /// The underlying socket (to change its timeouts).
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends one message as one frame.
    pub(crate) fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), ArbiterError> {
        let payload = postcard::to_stdvec(msg).map_err(ArbiterError::Decode)?;
        let Some(tls) = &mut self.tls else {
            let frame = self.out.seal(&payload)?;
            self.stream.write_all(&frame)?;
            return Ok(());
        };
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        if len > MAX_MESSAGE_LEN {
            return Err(ArbiterError::TooLarge(len));
        }
        tls.write_all(&[&len.to_le_bytes()[..], &payload].concat())?;
        Ok(())
    }

    /// Receives one frame and decodes its message.
    pub(crate) fn recv<T: DeserializeOwned>(&mut self) -> Result<T, ArbiterError> {
        let Some(tls) = &mut self.tls else {
            let payload = self.inn.open(&mut self.stream)?;
            return proto::decode_message(&payload);
        };
        let mut len = [0; 4];
        tls.read_exact(&mut len)?;
        let n = u32::from_le_bytes(len);
        if n > MAX_MESSAGE_LEN {
            return Err(ArbiterError::TooLarge(n));
        }
        let mut payload = vec![0; n as usize];
        tls.read_exact(&mut payload)?;
        proto::decode_message(&payload)
    }
}

/// A failed TLS handshake: refused credentials are final, the rest is the network's.
fn tls_failure(e: ftvm_world::tls::TlsError) -> ArbiterError {
    match e {
        e if e.refused() => ArbiterError::TlsRefused(e.to_string()),
        ftvm_world::tls::TlsError::Handshake(io) => ArbiterError::from(io),
        e => ArbiterError::TlsRefused(e.to_string()),
    }
}

/// The client's half of the mutual handshake: read the 8-byte `greeting` and the server
/// nonce `sn`, send a fresh client nonce `cn` and `HMAC(secret, sn || cn || "client")`,
/// then check the server's `HMAC(secret, sn || cn || "server")`. Both nonces are in
/// both proofs, so a recorded server proof cannot be replayed by an impostor. Returns
/// the nonces (a session key may be derived from them).
pub fn client_handshake(
    stream: &mut TcpStream,
    expect_greeting: [u8; 8],
    secret: &[u8],
) -> Result<([u8; LEN], [u8; LEN]), ArbiterError> {
    let mut hello = [0; 8 + LEN];
    stream.read_exact(&mut hello)?;
    let (g, sn) = hello.split_at(8);
    if g != expect_greeting {
        return Err(ArbiterError::BadGreeting);
    }
    let cn = nonce()?;
    let proof = mac(secret, &[sn, &cn, Role::Client.label()])
        .finalize()
        .into_bytes();
    stream.write_all(&[&cn[..], &proof[..]].concat())?;
    let mut verdict = [0; 1];
    stream.read_exact(&mut verdict)?;
    if verdict[0] != ACCEPTED {
        return Err(ArbiterError::Unauthenticated(AuthFailure::RefusedByServer));
    }
    let mut server_proof = [0; LEN];
    stream.read_exact(&mut server_proof)?;
    (mac(secret, &[sn, &cn, Role::Server.label()]).verify_slice(&server_proof))
        .map_err(|_| ArbiterError::Unauthenticated(AuthFailure::ServerProofInvalid))?;
    Ok((sn.try_into().expect("32 bytes"), cn))
}

/// The server's half: greet with `greeting` and a fresh nonce, check the client's proof
/// (refusing with one byte and no proof of our own if it is wrong), then prove ourselves.
pub fn server_handshake(
    stream: &mut TcpStream,
    greeting: [u8; 8],
    secret: &[u8],
) -> Result<([u8; LEN], [u8; LEN]), ArbiterError> {
    let sn = nonce()?;
    stream.write_all(&[&greeting[..], &sn[..]].concat())?;
    let mut answer = [0; 2 * LEN];
    stream.read_exact(&mut answer)?;
    let (cn, proof) = answer.split_at(LEN);
    if mac(secret, &[&sn, cn, Role::Client.label()])
        .verify_slice(proof)
        .is_err()
    {
        // Best effort: the client learns why; it gets EOF otherwise.
        let _ = stream.write_all(&[REFUSED]);
        return Err(ArbiterError::Unauthenticated(
            AuthFailure::ClientProofInvalid,
        ));
    }
    let server_proof = mac(secret, &[&sn, cn, Role::Server.label()])
        .finalize()
        .into_bytes();
    stream.write_all(&[&[ACCEPTED][..], &server_proof[..]].concat())?;
    Ok((sn, cn.try_into().expect("32 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_open_only_in_order_from_their_sender() {
        let key = [9; LEN];
        let mut client = Frames::new(key, true);
        let a = client.seal(b"first").unwrap();
        let b = client.seal(b"second").unwrap();
        let mut r = Frames::new(key, true);
        assert_eq!(r.open(&mut &a[..]).unwrap(), b"first");
        assert!(
            matches!(r.open(&mut &a[..]), Err(ArbiterError::BadMac)),
            "replayed"
        );
        let mut r = Frames::new(key, true);
        assert!(
            matches!(r.open(&mut &b[..]), Err(ArbiterError::BadMac)),
            "reordered"
        );
        let mut server = Frames::new(key, false);
        assert!(
            matches!(server.open(&mut &a[..]), Err(ArbiterError::BadMac)),
            "reflected back to its sender"
        );
        let mut flipped = a.clone();
        flipped[6] ^= 1;
        let mut r = Frames::new(key, true);
        assert!(matches!(
            r.open(&mut &flipped[..]),
            Err(ArbiterError::BadMac)
        ));
        let mut r = Frames::new(key, true);
        let huge = (MAX_MESSAGE_LEN + 1).to_le_bytes();
        assert!(matches!(
            r.open(&mut &huge[..]),
            Err(ArbiterError::TooLarge(_))
        ));
    }
}
