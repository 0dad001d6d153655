//! Peers that do not hold the secret, tampered frames, silent servers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::channel::Channel;
use crate::tests::{client, serve, temp_dir, SECRET, TIMEOUT};
use crate::{
    ArbiterClient, ArbiterError, AuthFailure, Outcome, Reply, Request, ServerConfig,
    MAX_MESSAGE_LEN,
};

#[test]
fn client_with_the_wrong_secret_is_refused() {
    let h = serve(
        &temp_dir("wrong-client").join("state"),
        ServerConfig::default(),
    );
    let e = ArbiterClient::connect(h.local_addr(), b"not the secret", TIMEOUT)
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            ArbiterError::Unauthenticated(AuthFailure::RefusedByServer)
        ),
        "{e}"
    );
    // The refused client changed nothing and the server still serves others.
    assert_eq!(client(&h).test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
}

#[test]
fn server_with_the_wrong_secret_is_refused() {
    // A fake arbiter that accepts any client proof and answers with its own secret.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut hello = b"FTVMARB\x01".to_vec();
        hello.extend_from_slice(&[7; 32]);
        s.write_all(&hello).unwrap();
        let mut answer = [0; 64];
        s.read_exact(&mut answer).unwrap();
        let mut m = Hmac::<Sha256>::new_from_slice(b"impostor").unwrap();
        m.update(&[7; 32]);
        m.update(&answer[..32]);
        m.update(b"server");
        s.write_all(&[1]).unwrap();
        s.write_all(&m.finalize().into_bytes()).unwrap();
        // Then it would happily tell the client it won.
        let _ = s.read(&mut [0; 1]);
    });
    let e = ArbiterClient::connect(addr, SECRET, TIMEOUT).err().unwrap();
    assert!(
        matches!(
            e,
            ArbiterError::Unauthenticated(AuthFailure::ServerProofInvalid)
        ),
        "{e}"
    );
    fake.join().unwrap();
}

#[test]
fn arbiters_with_different_secrets_refuse_each_other() {
    let h = serve(
        &temp_dir("wrong-both").join("state"),
        ServerConfig::default(),
    );
    for secret in [
        &b"x"[..],
        &SECRET[..SECRET.len() - 1],
        &[SECRET, b"!"].concat(),
    ] {
        let e = ArbiterClient::connect(h.local_addr(), secret, TIMEOUT)
            .err()
            .unwrap();
        assert!(matches!(e, ArbiterError::Unauthenticated(_)), "{e}");
    }
    let e = ArbiterClient::connect(h.local_addr(), b"", TIMEOUT)
        .err()
        .unwrap();
    assert!(matches!(e, ArbiterError::EmptySecret), "{e}");
}

#[test]
fn a_non_arbiter_peer_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"SSH-2.0-OpenSSH_9.6 and then some more bytes\r\n")
            .unwrap();
        let _ = s.read(&mut [0; 1]);
    });
    let e = ArbiterClient::connect(addr, SECRET, TIMEOUT).err().unwrap();
    assert!(matches!(e, ArbiterError::BadGreeting), "{e}");
    fake.join().unwrap();
}

#[test]
fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let start = Instant::now();
    let e = ArbiterClient::connect(addr, SECRET, Duration::from_millis(200))
        .err()
        .unwrap();
    assert!(matches!(e, ArbiterError::TimedOut), "{e}");
    assert!(start.elapsed() < Duration::from_secs(3));
    drop(listener);
}

/// A raw authenticated connection to `h`, below the client's checks.
fn raw(h: &crate::ArbiterHandle) -> Channel {
    let s = TcpStream::connect(h.local_addr()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    Channel::client(s, SECRET).unwrap()
}

#[test]
fn the_server_checks_names_itself() {
    let h = serve(
        &temp_dir("raw-names").join("state"),
        ServerConfig::default(),
    );
    let mut c = raw(&h);
    c.send(&Request::TestAndSet {
        vm: String::new(),
        generation: 1,
        node: "a".into(),
    })
    .unwrap();
    assert!(matches!(c.recv::<Reply>().unwrap(), Reply::Refused(_)));
    assert_eq!(h.arbiter().current(""), None);
}

/// Sends `bytes` raw on `c`'s socket and expects the server to hang up.
fn expect_hang_up(c: &mut Channel, bytes: &[u8]) {
    let mut s = c.stream();
    s.write_all(bytes).unwrap();
    let mut buf = [0; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the server to hang up at once, got {other:?}"),
    }
}

#[test]
fn tampered_oversized_and_replayed_frames_are_refused() {
    let h = serve(&temp_dir("tamper").join("state"), ServerConfig::default());
    let req = Request::TestAndSet {
        vm: "vm".into(),
        generation: 1,
        node: "evil".into(),
    };
    let payload = postcard::to_stdvec(&req).unwrap();
    let frame = |tag: &[u8]| {
        let mut f = (payload.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&payload);
        f.extend_from_slice(tag);
        f
    };
    // A frame with a forged tag.
    expect_hang_up(&mut raw(&h), &frame(&[0; 32]));
    // A frame that announces more than the limit.
    expect_hang_up(&mut raw(&h), &(MAX_MESSAGE_LEN + 1).to_le_bytes());
    // A valid frame of one session replayed in another (the session key differs).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let chan = Channel::server(s, SECRET).unwrap();
        let mut len = [0; 4];
        let mut s = chan.stream();
        s.read_exact(&mut len).unwrap();
        let mut rest = vec![0; u32::from_le_bytes(len) as usize + 32];
        s.read_exact(&mut rest).unwrap();
        [len.to_vec(), rest].concat()
    });
    let mut victim = ArbiterClient::connect(addr, SECRET, TIMEOUT).unwrap();
    let _ = victim.test_and_set("vm", 0, "evil");
    let recorded = recorder.join().unwrap();
    expect_hang_up(&mut raw(&h), &recorded);
    assert_eq!(h.arbiter().query("vm", 0), None);
    assert_eq!(
        client(&h).test_and_set("vm", 0, "good").unwrap(),
        Outcome::Won
    );
}
