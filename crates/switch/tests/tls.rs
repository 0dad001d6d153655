//! The switch over TLS (issue 12): ports authenticated by their certificates, each
//! sending only with its VM's MAC address; connections without a valid certificate,
//! and handshakes that never finish, are closed while the other ports are served.
//! Loopback only; every loop bounded.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{frame, wait_until, Running, GUEST_MAC, LIMIT};
use ftvm_switch::{get, gratuitous_arp, Limits, Metrics, SwitchPort, SWITCH_ALPN};
use ftvm_world::keys::{self, NodeCert};
use ftvm_world::rustls;
use ftvm_world::tls::Credentials;

/// VM other's MAC address.
const OTHER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x02];
const BCAST: [u8; 6] = [0xff; 6];

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ftvm-swtls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A cluster: the switch, `p` and `b` for VM t, `r` for VM other, `svc` for no VM.
fn cluster(tag: &str) -> PathBuf {
    let d = scratch(tag);
    keys::create_ca(&d, false).unwrap();
    keys::create_node(&d, "switch", 30, false).unwrap();
    keys::create_node(&d, "svc", 30, false).unwrap();
    for (n, vm) in [("p", "t"), ("b", "t"), ("r", "other")] {
        NodeCert::new(n).vm(Some(vm)).create(&d, false).unwrap();
    }
    d
}

fn creds(dir: &Path, name: &str) -> Credentials {
    Credentials::load(dir, name, SWITCH_ALPN).unwrap()
}

/// A TLS switch of `dir`'s cluster in its own thread: VM t has the guest's MAC, VM
/// other `OTHER_MAC`.
fn start(dir: &Path, limits: Limits) -> Running {
    let macs = BTreeMap::from([("t".to_string(), GUEST_MAC), ("other".into(), OTHER_MAC)]);
    let sw = common::switch(&[], limits)
        .with_tls(Arc::new(creds(dir, "switch")), macs)
        .unwrap();
    Running::start(sw)
}

/// The next frame for `port` (bounded wait).
fn recv(port: &mut SwitchPort) -> Vec<u8> {
    let mut got = None;
    wait_until("a frame", || {
        got = port.try_recv().unwrap();
        got.is_some()
    });
    got.unwrap()
}

/// Whether `port` receives nothing for a while.
fn quiet(port: &mut SwitchPort) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(300) {
        if port.try_recv().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// `from`'s frames reach `to`: a broadcast from `mac` goes across.
fn flows(from: &mut SwitchPort, to: &mut SwitchPort, mac: [u8; 6]) {
    let f = frame(BCAST, mac, b"still served");
    from.send(&f).unwrap();
    assert_eq!(recv(to), f);
}

/// A port with `name`'s credentials, once the switch has its hello.
fn plug(sw: &Running, dir: &Path, name: &str) -> SwitchPort {
    plug_as(sw, dir, name, name)
}

/// A port with `name`'s credentials whose hello says `hello`.
fn plug_as(sw: &Running, dir: &Path, name: &str, hello: &str) -> SwitchPort {
    let before = get(&sw.metrics.ports_connected);
    let port = SwitchPort::connect_tls(sw.addr, hello, &creds(dir, name)).unwrap();
    wait_until("the hello", || get(&sw.metrics.ports_connected) > before);
    port
}

/// Both ports of VM t are up and switching.
fn pair(sw: &Running, dir: &Path) -> (SwitchPort, SwitchPort) {
    let mut p = plug(sw, dir, "p");
    let mut b = plug(sw, dir, "b");
    flows(&mut p, &mut b, GUEST_MAC);
    (p, b)
}

#[test]
fn a_port_sends_only_with_its_certificates_vms_mac() {
    let dir = cluster("mac");
    let sw = start(&dir, Limits::default());
    let m: Arc<Metrics> = sw.metrics.clone();
    let (mut p, mut b) = pair(&sw, &dir);
    // A valid node certificate for another VM, a hello in the guest's node's name.
    let mut r = plug_as(&sw, &dir, "r", "p");
    flows(&mut r, &mut p, OTHER_MAC);
    assert_eq!(recv(&mut b)[6..12], OTHER_MAC);
    let ip = std::net::Ipv4Addr::new(10, 0, 2, 15);
    let mut spoofed_arp = gratuitous_arp(OTHER_MAC, ip);
    spoofed_arp[22..28].copy_from_slice(&GUEST_MAC);
    for f in [
        frame(BCAST, GUEST_MAC, b"as the guest"),
        gratuitous_arp(GUEST_MAC, ip),
        // Its own source address, the guest's as ARP sender (an ARP cache poison).
        spoofed_arp,
    ] {
        r.send(&f).unwrap();
    }
    wait_until("three refused frames", || get(&m.frames_refused) == 3);
    assert!(
        quiet(&mut p) && quiet(&mut b),
        "a spoofed frame got through"
    );
    // A cluster service's certificate speaks for no VM: it may send nothing.
    let mut svc = plug(&sw, &dir, "svc");
    svc.send(&frame(BCAST, [2, 0, 0, 0, 0, 9], b"x")).unwrap();
    wait_until("the service's frame refused", || {
        get(&m.frames_refused) == 4
    });
    // The guest's nodes go on as before, and the guest's MAC stays theirs.
    flows(&mut p, &mut b, GUEST_MAC);
    flows(&mut b, &mut p, GUEST_MAC);
    let switch = sw.stop();
    let ports = switch.ports();
    let rogue = ports
        .iter()
        .find(|i| i.node.as_deref() == Some("r"))
        .unwrap();
    assert_eq!(rogue.vm.as_deref(), Some("other"));
    assert_eq!(rogue.refused, 3);
    assert_eq!(rogue.macs, vec![OTHER_MAC]);
    let live = ports
        .iter()
        .find(|i| i.node.as_deref() == Some("b"))
        .unwrap();
    assert_eq!(switch.lookup(&GUEST_MAC), Some(live.id));
    assert_eq!(get(&m.ports_authenticated), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A TLS 1.3 client of `dir`'s CA that presents no certificate: `Some(error)` as soon
/// as the connection fails, `None` if it was not closed within the wait.
fn without_certificate(addr: std::net::SocketAddr, dir: &Path) -> Option<String> {
    let roots = ftvm_world::tls::roots(&dir.join(keys::CA_CERT)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![SWITCH_ALPN.to_vec()];
    let name = rustls::pki_types::ServerName::try_from("switch").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let hello = ftvm_switch::wire::encode_hello("nocert").unwrap();
    if let Err(e) = tls.write_all(&hello) {
        return Some(e.to_string());
    }
    let mut b = [0u8; 1];
    tls.read(&mut b).err().map(|e| e.to_string())
}

#[test]
fn ports_without_a_valid_certificate_are_refused_and_the_others_served() {
    let (dir, foreign) = (cluster("refused"), cluster("foreign"));
    let sw = start(&dir, Limits::default());
    let m = sw.metrics.clone();
    let (mut p, mut b) = pair(&sw, &dir);

    // A node of another cluster: each side refuses the other's certificate.
    let e = SwitchPort::connect_tls(sw.addr, "p", &creds(&foreign, "p"));
    assert!(e.is_err(), "a foreign switch certificate was accepted");
    wait_until("the foreign node refused", || get(&m.ports_refused) == 1);
    flows(&mut p, &mut b, GUEST_MAC);

    // No client certificate: the switch ends the handshake with an alert.
    let e = without_certificate(sw.addr, &dir).expect("refused");
    assert!(
        e.contains("CertificateRequired") || e.contains("alert"),
        "{e}"
    );
    wait_until("the anonymous client refused", || {
        get(&m.ports_refused) == 2
    });
    flows(&mut b, &mut p, GUEST_MAC);

    // The plaintext protocol to a TLS switch: not a TLS record, closed.
    let mut plain = SwitchPort::connect(sw.addr, "plain").unwrap();
    plain.send(&frame(BCAST, GUEST_MAC, b"in clear")).unwrap();
    wait_until("the plaintext port refused", || get(&m.ports_refused) == 3);
    assert!(quiet(&mut p) && quiet(&mut b));
    flows(&mut p, &mut b, GUEST_MAC);
    let switch = sw.stop();
    assert_eq!(switch.ports().len(), 2);
    assert_eq!(get(&m.frames_refused), 0);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&foreign).unwrap();
}

#[test]
fn an_expired_certificate_is_refused() {
    let dir = cluster("expired");
    let now = SystemTime::now();
    NodeCert::new("late")
        .vm(Some("t"))
        .valid(now - Duration::from_secs(60)..now + Duration::from_secs(1))
        .create(&dir, false)
        .unwrap();
    // Loaded while valid, used once it is not (certificate times have whole seconds:
    // 2.5 s later is past its end whatever the fraction of the second now).
    let late = creds(&dir, "late");
    let sw = start(&dir, Limits::default());
    let m = sw.metrics.clone();
    let (mut p, mut b) = pair(&sw, &dir);
    while SystemTime::now() < now + Duration::from_millis(2500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut port = SwitchPort::connect_tls(sw.addr, "late", &late).unwrap();
    let _ = port.send(&frame(BCAST, GUEST_MAC, b"late"));
    wait_until("the expired certificate refused", || {
        get(&m.ports_refused) == 1
    });
    assert!(quiet(&mut p));
    // The switch's alert reaches the port.
    let mut e = None;
    wait_until("the port to learn it", || {
        if let Err(x) = port.try_recv() {
            e = Some(x.to_string());
        }
        e.is_some()
    });
    flows(&mut p, &mut b, GUEST_MAC);
    assert_eq!(sw.stop().ports().len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_handshake_that_never_finishes_is_dropped_after_the_deadline_while_traffic_flows() {
    let dir = cluster("loris");
    let limits = Limits {
        handshake_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let sw = start(&dir, limits);
    let m = sw.metrics.clone();
    let (mut p, mut b) = pair(&sw, &dir);
    // The start of a TLS record header, and then silence.
    let mut loris = TcpStream::connect(sw.addr).unwrap();
    loris.write_all(&[0x16, 0x03, 0x01, 0x00]).unwrap();
    loris.set_read_timeout(Some(LIMIT)).unwrap();
    let t = Instant::now();
    let closer = std::thread::spawn(move || {
        let mut b = [0u8; 64];
        loop {
            match loris.read(&mut b) {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    });
    // The guest's traffic goes on meanwhile.
    let mut rounds = 0;
    while !closer.is_finished() {
        assert!(t.elapsed() < LIMIT, "the slow client was never dropped");
        flows(&mut p, &mut b, GUEST_MAC);
        rounds += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let closed = closer.join().unwrap().duration_since(t);
    assert!(closed >= Duration::from_millis(450), "{closed:?}");
    assert!(closed < Duration::from_secs(3), "{closed:?}");
    assert!(rounds > 10, "{rounds}");
    assert_eq!(get(&m.handshake_timeouts), 1);
    flows(&mut b, &mut p, GUEST_MAC);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn vms_cannot_share_a_mac_address() {
    let dir = cluster("shared-mac");
    let macs = BTreeMap::from([("t".to_string(), GUEST_MAC), ("u".into(), GUEST_MAC)]);
    let e = common::switch(&[], Limits::default())
        .with_tls(Arc::new(creds(&dir, "switch")), macs)
        .unwrap_err();
    assert!(e.to_string().contains("cannot share"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
