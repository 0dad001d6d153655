//! The backup (DESIGN.md §4): join a running primary by live state transfer, then
//! replay its log, never past the newest entry held, acknowledging what arrives and
//! discarding the guest's outputs. When the primary falls silent: replay everything
//! received, win the arbiter, and go live: take inputs from this host's world from that
//! instruction on, re-issue outputs whose release is uncertain, announce the guest's
//! MAC. Then this node is the primary and waits for a new backup.

use super::primary::Primary;
use super::status::{Status, StatusFile};
use super::wire::{self, Hello, Message, Offer};
use super::{run_live, Halted, Node};
use crate::cli::BackupArgs;
use crate::driver::{Backends, Driver, Network};
use crate::replica::config_digest;
use crate::replica::replayer::{Applied, Replay};
use crate::run::GUEST_MAC;
use anyhow::{bail, Context, Result};
use ftvm_arbiter::{ArbiterError, Outcome};
use ftvm_log::{EntryKind, LogError, LogReader};
use ftvm_machine::devices::virtio::BlkRequestKind;
use ftvm_machine::{BootConfig, Event, Machine, Output, OutputKind};
use ftvm_world::disk::DiskImage;
use ftvm_world::entropy::HostEntropy;
use std::collections::VecDeque;
use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries the backup buffers between the channel and the replay.
const QUEUE: usize = 200_000;
/// Frames the guest sent within this window before the primary was lost are sent again
/// at go-live: their release is uncertain (duplicates are harmless to TCP).
const UNCERTAIN: Duration = Duration::from_millis(100);
/// The guest's address on the user-mode network.
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

/// From the reader thread to the replay.
enum Msg {
    Entry(ftvm_log::Entry, Instant),
    Lost(String),
}

/// What the channel threads share.
struct Shared {
    received: AtomicU64,
    executed: AtomicU64,
    done: AtomicBool,
    ack_out: Mutex<TcpStream>,
}

impl Shared {
    fn ack(&self) -> bool {
        let a = wire::encode_ack(
            self.received.load(Ordering::Acquire),
            self.executed.load(Ordering::Relaxed),
        );
        match self.ack_out.lock() {
            Ok(mut s) => s.write_all(&a).is_ok(),
            Err(_) => false,
        }
    }
}

/// A joined pair, from the backup's side.
struct Joined {
    log: LogReader<BufReader<TcpStream>>,
    stream: TcpStream,
    offer: Offer,
    machine: Machine,
}

enum JoinError {
    /// Try again later (or another address).
    Retry(String),
    /// Give up (e.g. a wrong cluster secret).
    Fatal(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for JoinError {
    fn from(e: E) -> JoinError {
        JoinError::Retry(format!("{:#}", e.into()))
    }
}

fn try_join(
    node: &Node,
    addr: SocketAddr,
    own_disk: Option<&Path>,
    status: &mut dyn FnMut(&str),
) -> Result<Joined, JoinError> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    match ftvm_arbiter::client_handshake(&mut stream, wire::GREETING, &node.secret) {
        Ok(_) => {}
        Err(ArbiterError::Unauthenticated(e)) => {
            return Err(JoinError::Fatal(anyhow::anyhow!(
                "the primary at {addr} and this node do not share the cluster secret ({e})"
            )))
        }
        Err(e) => return Err(JoinError::Retry(e.to_string())),
    }
    wire::send(
        &mut stream,
        &Message::Hello(Hello {
            vm: node.vm.clone(),
            node: node.name.clone(),
            own_disk: own_disk.is_some(),
        }),
    )?;
    let mut r = BufReader::with_capacity(1 << 20, stream.try_clone()?);
    let offer = match wire::recv(&mut r, ftvm_machine::PAGE_SIZE)? {
        Message::Busy(why) => return Err(JoinError::Retry(why)),
        Message::Offer(o) => o,
        _ => return Err(JoinError::Retry("unexpected message".into())),
    };
    let cfg: BootConfig = postcard::from_bytes(&offer.config).map_err(|e| {
        JoinError::Fatal(anyhow::anyhow!(
            "the primary's machine configuration cannot be decoded: {e}"
        ))
    })?;
    let machine = Machine::new(&cfg).map_err(|e| {
        JoinError::Fatal(anyhow::anyhow!("cannot build the primary's machine: {e}"))
    })?;
    eprintln!(
        "ftvm: {}: joining {} at {addr} as the backup of VM {} (generation {}); receiving the guest",
        node.name, offer.primary, offer.vm, offer.generation
    );
    status("receiving");
    let started = Instant::now();
    let mut next_report = 32u64 << 20;
    // Our own copy of the disk, sized as the guest's.
    let copy = match (own_disk, cfg.devices.disk) {
        (Some(path), Some(d)) => {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(|e| {
                    JoinError::Fatal(anyhow::anyhow!(
                        "cannot create the disk copy '{}': {e}",
                        path.display()
                    ))
                })?;
            f.set_len(d.sectors * 512)?;
            Some(f)
        }
        _ => None,
    };
    let mut machine = super::transfer::receive(&mut r, machine, copy.as_ref(), &mut |bytes| {
        if bytes >= next_report {
            eprintln!("ftvm: received {} MiB", bytes >> 20);
            next_report += 32 << 20;
        }
    })
    .map_err(|e| JoinError::Retry(format!("the transfer failed: {e:#}")))?;
    machine.set_engine(node.engine);
    let log = LogReader::open(r)
        .map_err(|e| JoinError::Retry(format!("the log failed to start: {e}")))?;
    log.header()
        .check(&config_digest(&offer.config), machine.state_hash())
        .map_err(|e| {
            JoinError::Fatal(anyhow::anyhow!(
                "the transferred guest differs from the primary's: {e}"
            ))
        })?;
    eprintln!(
        "ftvm: {}: received the guest in {} ms (state hash {:032x} matches); replaying the primary's log",
        node.name,
        started.elapsed().as_millis(),
        machine.state_hash()
    );
    Ok(Joined {
        log,
        stream,
        offer,
        machine,
    })
}

/// Connect to one of the primaries (retrying until one takes us).
fn join(
    node: &Node,
    primaries: &[SocketAddr],
    own_disk: Option<&Path>,
    stop: &AtomicBool,
    status: &mut dyn FnMut(&str),
) -> Result<Option<Joined>> {
    let mut last = vec![String::new(); primaries.len()];
    loop {
        for (i, &addr) in primaries.iter().enumerate() {
            match try_join(node, addr, own_disk, status) {
                Ok(j) => return Ok(Some(j)),
                Err(JoinError::Fatal(e)) => return Err(e),
                Err(JoinError::Retry(why)) => {
                    if last[i] != why {
                        eprintln!(
                            "ftvm: {}: primary {addr} not available yet: {why}",
                            node.name
                        );
                        last[i] = why;
                    }
                }
            }
        }
        status("waiting");
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn describe(e: &LogError, timeout: Duration) -> String {
    match e {
        LogError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            format!("no log traffic for {} ms", timeout.as_millis())
        }
        LogError::Truncated { .. } => "the primary closed the logging channel".into(),
        e => e.to_string(),
    }
}

/// `ftvm backup`.
pub fn backup(args: &BackupArgs) -> Result<ExitCode> {
    let node = Node::from_args(&args.node, "127.0.0.1:7703")?;
    if args.primary.is_empty() {
        bail!("--primary needs at least one address");
    }
    let stop = crate::services::stop_on_signals()?;
    let mut status_file = StatusFile::new(&node.run_dir, &node.vm, &node.name, node.engine);
    let base = Status {
        vm: node.vm.clone(),
        node: node.name.clone(),
        role: "backup".into(),
        ..Status::default()
    };
    let report = |state: &str, f: &mut StatusFile| {
        let mut st = base.clone();
        st.state = state.into();
        f.write(&mut st);
    };
    let Some(joined) = join(
        &node,
        &args.primary,
        args.own_disk.as_deref(),
        &stop,
        &mut |s| report(s, &mut status_file),
    )?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let Joined {
        log,
        stream,
        offer,
        machine,
    } = joined;
    let generation = offer.generation;
    stream.set_read_timeout(Some(node.timeout))?;
    stream.set_write_timeout(Some(node.timeout))?;
    let shared = Arc::new(Shared {
        received: AtomicU64::new(0),
        executed: AtomicU64::new(machine.icount().0),
        done: AtomicBool::new(false),
        ack_out: Mutex::new(stream.try_clone()?),
    });
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let (sh, timeout) = (shared.clone(), node.timeout);
    std::thread::Builder::new()
        .name("log-in".into())
        .spawn(move || {
            for item in log {
                match item {
                    Ok(e) => {
                        let urgent = matches!(e.kind, EntryKind::Output | EntryKind::End);
                        sh.received.store(e.seq, Ordering::Release);
                        if tx.send(Msg::Entry(e, Instant::now())).is_err() {
                            return;
                        }
                        if urgent {
                            sh.ack();
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Msg::Lost(describe(&e, timeout)));
                        return;
                    }
                }
            }
        })?;
    let sh = shared.clone();
    std::thread::Builder::new()
        .name("acks".into())
        .spawn(move || {
            while !sh.done.load(Ordering::Relaxed) && sh.ack() {
                std::thread::sleep(Duration::from_millis(5));
            }
        })?;

    // With a disk of our own, the guest's writes are applied to it as the replay makes
    // them (the primary makes them too, once we acknowledged them).
    let disk_spec = offer
        .disk
        .as_deref()
        .map(crate::run::disk_spec)
        .transpose()?;
    let mut own = match (&args.own_disk, &disk_spec) {
        (Some(path), Some((_, mode))) => Some(
            DiskImage::open(path, *mode)
                .with_context(|| format!("cannot open the disk copy '{}'", path.display()))?,
        ),
        _ => None,
    };
    let mut replay: Replay<std::io::Stdout> = Replay::new(machine, None);
    replay.keep_outputs = true;
    let epoch = Instant::now();
    let mut pending: Vec<Output> = Vec::new();
    let mut frames: VecDeque<(u64, Output)> = VecDeque::new();
    let (mut last_arrival, mut last_icount, mut entries) = (0u64, 0u64, 0u64);
    let lost = loop {
        if stop.load(Ordering::Relaxed) {
            shared.done.store(true, Ordering::Relaxed);
            eprintln!(
                "ftvm: {}: stopping (signal); the primary runs on",
                node.name
            );
            report("stopped", &mut status_file);
            return Ok(ExitCode::SUCCESS);
        }
        let (entry, at) = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Msg::Entry(e, at)) => (e, at),
            Ok(Msg::Lost(why)) => break why,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break "the channel reader ended".into(),
        };
        let tag = at.duration_since(epoch).as_micros() as u64;
        last_arrival = tag;
        last_icount = entry.icount;
        entries += 1;
        let answered = match entry.kind {
            EntryKind::Event => match postcard::from_bytes::<Event>(&entry.payload) {
                Ok(Event::Entropy { id, .. }) => Some((true, id)),
                Ok(Event::DiskDone { id, .. }) => Some((false, id)),
                _ => None,
            },
            _ => None,
        };
        let applied = replay.apply(&entry, tag).map_err(|e| {
            report("halted", &mut status_file);
            e.context(format!(
                "{}: the backup diverged from the primary",
                node.name
            ))
        })?;
        shared
            .executed
            .store(replay.machine.icount().0, Ordering::Relaxed);
        for (out, tag) in replay.produced.drain(..) {
            match out.kind {
                OutputKind::NetFrame(_) => {
                    frames.push_back((tag, out));
                    if frames.len() > 256 {
                        frames.pop_front();
                    }
                }
                OutputKind::Disk(ref req) => {
                    if let Some(d) = &mut own {
                        let done = match &req.kind {
                            BlkRequestKind::Write { sector, data } => d.write(*sector, data),
                            BlkRequestKind::Flush => d.flush(),
                            BlkRequestKind::Read { .. } => Ok(()),
                        };
                        done.with_context(|| {
                            format!("{}: cannot update the disk copy", node.name)
                        })?;
                    }
                    pending.push(out)
                }
                OutputKind::EntropyRequest { .. } => pending.push(out),
                OutputKind::Console(_) => {}
            }
        }
        if let Some((entropy, id)) = answered {
            pending.retain(|o| match &o.kind {
                OutputKind::EntropyRequest { id: i, .. } => !(entropy && *i == id),
                OutputKind::Disk(r) => entropy || r.id != id,
                _ => true,
            });
        }
        if applied == Applied::End {
            shared.done.store(true, Ordering::Relaxed);
            eprintln!(
                "ftvm: {}: the primary's guest stopped at instruction {}; so does this replica",
                node.name,
                replay.machine.icount()
            );
            report("stopped", &mut status_file);
            return Ok(ExitCode::SUCCESS);
        }
        if status_file.due() {
            let mut st = base.clone();
            st.state = "replaying".into();
            st.generation = generation;
            st.peer = offer.primary.clone();
            st.icount = replay.machine.icount().0;
            status_file.write(&mut st);
        }
    };
    shared.done.store(true, Ordering::Relaxed);

    // Go live (DESIGN.md §4 "Go-live").
    let detected = Instant::now();
    replay
        .catch_up(last_icount)
        .with_context(|| format!("{}: the backup diverged from the primary", node.name))?;
    eprintln!(
        "ftvm: {}: lost the primary {} ({lost}); replayed all {entries} entries, to instruction {}; asking the arbiter for generation {generation}",
        node.name,
        offer.primary,
        replay.machine.icount()
    );
    let mut st = base.clone();
    st.state = "failing over".into();
    st.generation = generation;
    st.icount = replay.machine.icount().0;
    status_file.write(&mut st);
    match node.arbitrate(generation, &mut || status_file.write(&mut st))? {
        Outcome::Won => {}
        Outcome::Lost { winner } => {
            st.state = "halted".into();
            status_file.write(&mut st);
            return Err(Halted(format!(
                "{} halts: {winner} won generation {generation} of VM {}",
                node.name, node.vm
            ))
            .into());
        }
    }
    let switch: SocketAddr = match args.switch {
        Some(s) => s,
        None => offer
            .switch
            .parse()
            .context("the primary's switch address cannot be parsed")?,
    };
    let port =
        ftvm_switch::SwitchPort::connect(switch, &node.name).map_err(|e| anyhow::anyhow!("{e}"))?; // the error names the switch and the cause
    let disk =
        match (own.take(), &disk_spec) {
            (_, None) => None,
            // Our own copy, current with every write the replay made.
            (Some(copy), _) => Some(copy),
            // The shared disk, where this host sees it.
            (None, Some((path, mode))) => {
                let path = args.disk.as_ref().unwrap_or(path);
                Some(DiskImage::open(path, *mode).with_context(|| {
                    format!("cannot open the shared disk at '{}'", path.display())
                })?)
            }
        };
    let backends = Backends {
        disk,
        net: Some(Network::Switch(port)),
        entropy: Some(HostEntropy::open().context("cannot open /dev/urandom")?),
    };
    // Bound only now: until it is live, a spare knocking here is refused at once.
    let listener = TcpListener::bind(node.listen)
        .with_context(|| format!("cannot listen for a backup on {}", node.listen))?;
    let icount = replay.machine.icount();
    let mut driver = Driver::new(replay.machine, backends, std::io::stdout());
    driver.journal = Some(Box::new(Primary::new(
        node.clone(),
        listener,
        offer.config.clone(),
        switch.to_string(),
        offer.disk.clone(),
        generation,
    )?));
    if let Some(p) = driver.switch_port() {
        p.announce(GUEST_MAC, GUEST_IP)
            .context("cannot announce the guest's MAC to the switch")?;
    }
    let cutoff = last_arrival.saturating_sub(UNCERTAIN.as_micros() as u64);
    let resent: Vec<Output> = frames
        .into_iter()
        .filter(|(t, _)| *t >= cutoff)
        .map(|(_, o)| o)
        .collect();
    let (nframes, nrequests) = (resent.len(), pending.len());
    driver.reissue(pending)?;
    driver.reissue(resent)?;
    eprintln!(
        "ftvm: {}: live as the primary of VM {} (generation {generation}) at instruction {icount}, {} ms after the loss was detected; re-sent {nframes} frames and {nrequests} requests",
        node.name,
        node.vm,
        detected.elapsed().as_millis()
    );
    run_live(driver, stop)
}
