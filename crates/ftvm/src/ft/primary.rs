//! The live side of a pair (DESIGN.md §4): a [`Journal`] that streams every input to
//! the backup, holds outputs until the backup acknowledged them (the Output Rule),
//! sends heartbeats, slows the guest when the backup lags, notices a lost backup (and
//! then must win the arbiter before running unprotected), and admits a new backup by
//! live state transfer.

use super::status::{Status, StatusFile};
use super::transfer::Sender;
use super::wire::{self, Hello, Message, Offer, ACK_LEN};
use super::{Halted, Node};
use crate::replica::{config_digest, output_digest, Journal, Release};
use anyhow::{Context, Result};
use ftvm_arbiter::Outcome;
use ftvm_log::{Header, LogWriter};
use ftvm_machine::devices::virtio::{BlkRequest, BlkRequestKind};
use ftvm_machine::{Event, Machine, Output, OutputKind};
use std::collections::VecDeque;
use std::io::{BufReader, BufWriter, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A progress entry (heartbeat) goes out after this much silence.
const HEARTBEAT: Duration = Duration::from_millis(10);

/// What the ack reader thread shares with the primary.
#[derive(Default)]
struct Acks {
    /// Highest sequence number the backup acknowledged.
    seq: AtomicU64,
    /// Instruction count the backup executed to.
    icount: AtomicU64,
    /// The backup acknowledged at least once: it holds the transferred guest.
    confirmed: AtomicBool,
    /// Set when the channel failed; the reason is in `why`.
    failed: AtomicBool,
    why: Mutex<String>,
}

/// A backup being admitted: authenticated and introduced.
struct Candidate {
    stream: TcpStream,
    hello: Hello,
    /// The generation the pair will take.
    generation: u64,
}

/// The logging channel to a protecting backup.
struct Link {
    log: LogWriter<BufWriter<TcpStream>>,
    acks: Arc<Acks>,
    backup: String,
    last_write: Instant,
    unflushed: bool,
    next_checkpoint: u64,
    /// (icount, when) samples, to turn the backup's icount into a lag in time.
    history: VecDeque<(u64, Instant)>,
    /// Log bytes at the last status report.
    bytes_reported: (u64, Instant),
}

enum State {
    Unprotected,
    Transferring(Box<Sender>),
    Protected(Box<Link>),
}

/// The primary's journal.
pub struct Primary {
    node: Node,
    generation: u64,
    config: Vec<u8>,
    switch: String,
    disk: Option<String>,
    state: State,
    candidates: Receiver<Candidate>,
    status: StatusFile,
    throttled: u64,
}

impl Primary {
    /// Start accepting backups on `listener` for a guest built from `config` whose
    /// NIC is on `switch`. `generation` is the one this node already won (0: none).
    pub fn new(
        node: Node,
        listener: TcpListener,
        config: Vec<u8>,
        switch: String,
        disk: Option<String>,
        generation: u64,
    ) -> Result<Primary> {
        let (tx, candidates) = mpsc::channel();
        let n = node.clone();
        std::thread::Builder::new()
            .name("admit".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(stream) = conn else { continue };
                    let (n, tx) = (n.clone(), tx.clone());
                    // Each candidate in its own thread: a silent peer cannot stall us.
                    std::thread::spawn(move || match admit(stream, &n) {
                        Ok(c) => {
                            let _ = tx.send(c);
                        }
                        Err(e) => eprintln!("ftvm: {}: refused a backup: {e:#}", n.name),
                    });
                }
            })?;
        let status = StatusFile::new(&node.run_dir, &node.vm, &node.name, node.engine);
        eprintln!(
            "ftvm: {} is the primary of VM {} (generation {generation}); a backup may connect on {}",
            node.name, node.vm, node.listen
        );
        Ok(Primary {
            node,
            generation,
            config,
            switch,
            disk,
            state: State::Unprotected,
            candidates,
            status,
            throttled: 0,
        })
    }

    fn link(&mut self) -> Option<&mut Link> {
        match &mut self.state {
            State::Protected(l) => Some(l),
            _ => None,
        }
    }

    /// The backup is gone: win the arbiter before running unprotected, or halt.
    fn backup_lost(&mut self, why: String, machine: &Machine, waiting: usize) -> Result<()> {
        let backup = self.link().map(|l| l.backup.clone()).unwrap_or_default();
        let g = self.generation;
        eprintln!(
            "ftvm: {}: lost the backup {backup} ({why}); asking the arbiter for generation {g}",
            self.node.name
        );
        let mut st = self.report(machine, waiting, "failing over");
        let (status, node) = (&mut self.status, self.node.clone());
        let outcome = node.arbitrate(g, &mut || status.write(&mut st))?;
        match outcome {
            Outcome::Won => {
                eprintln!(
                    "ftvm: {}: won generation {g}; running unprotected until a new backup joins",
                    self.node.name
                );
                self.state = State::Unprotected;
                Ok(())
            }
            Outcome::Lost { winner } => {
                let mut st = self.report(machine, waiting, "halted");
                self.status.write(&mut st);
                Err(Halted(format!(
                    "{} halts: {winner} won generation {g} of VM {} and is live",
                    self.node.name, self.node.vm
                ))
                .into())
            }
        }
    }

    fn begin_transfer(&mut self, mut c: Candidate, machine: &mut Machine) {
        c.generation = c.generation.max(self.generation + 1);
        let offer = Offer {
            vm: self.node.vm.clone(),
            generation: c.generation,
            primary: self.node.name.clone(),
            config: self.config.clone(),
            switch: self.switch.clone(),
            disk: self.disk.clone(),
        };
        eprintln!(
            "ftvm: {}: backup {} connected; transferring the guest ({} MiB of RAM) for generation {}",
            self.node.name,
            c.hello.node,
            (machine.ram_pages() as u64 * ftvm_machine::PAGE_SIZE as u64) >> 20,
            c.generation
        );
        // A backup with its own disk gets the image along with the guest.
        let path = self
            .disk
            .as_deref()
            .and_then(|d| crate::run::disk_spec(d).ok())
            .map(|(path, _)| path);
        let image = path.as_deref().filter(|_| c.hello.own_disk);
        match Sender::start(c.stream, c.hello.node.clone(), offer, image, machine) {
            Ok(s) => self.state = State::Transferring(Box::new(s)),
            Err(e) => eprintln!(
                "ftvm: {}: transfer to {} failed: {e:#}",
                self.node.name, c.hello.node
            ),
        }
    }

    /// One transfer step; at the end the log starts and the pair is protected.
    fn transfer_step(&mut self, machine: &mut Machine) -> Result<()> {
        let State::Transferring(sender) = &mut self.state else {
            return Ok(());
        };
        let summary = match sender.step(machine) {
            Ok(None) => return Ok(()),
            Ok(Some(s)) => s,
            Err(e) => {
                eprintln!(
                    "ftvm: {}: transfer to {} failed: {e:#}; still unprotected",
                    self.node.name, sender.backup
                );
                self.state = State::Unprotected;
                return Ok(());
            }
        };
        let State::Transferring(sender) = std::mem::replace(&mut self.state, State::Unprotected)
        else {
            unreachable!()
        };
        let (backup, generation) = (sender.backup.clone(), sender.generation);
        let paused = Instant::now();
        let header = Header::new(
            Vec::new(),
            config_digest(&self.config),
            machine.state_hash(),
            concat!("ftvm ", env!("CARGO_PKG_VERSION")),
        );
        let out = sender.into_writer();
        let stream = out.get_ref().try_clone()?;
        let log = match LogWriter::new(out, &header).and_then(|mut l| l.flush().map(|_| l)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("ftvm: {}: transfer to {backup} failed: {e}", self.node.name);
                return Ok(());
            }
        };
        let pause = summary.pause + paused.elapsed();
        let acks = Arc::new(Acks::default());
        acks.icount.store(machine.icount().0, Ordering::Relaxed);
        let timeout = self.node.timeout;
        let a = acks.clone();
        std::thread::Builder::new()
            .name("acks".into())
            .spawn(move || read_acks(stream, timeout, &a))?;
        eprintln!(
            "ftvm: {}: backup {backup} attached: generation {generation}, {} rounds, {:.1} MiB sent in {} ms, guest paused {:.1} ms",
            self.node.name,
            summary.rounds,
            summary.bytes as f64 / (1 << 20) as f64,
            summary.total.as_millis(),
            pause.as_secs_f64() * 1e3
        );
        self.generation = generation;
        let now = Instant::now();
        self.state = State::Protected(Box::new(Link {
            log,
            acks,
            backup,
            last_write: now,
            unflushed: false,
            next_checkpoint: machine.icount().0.saturating_add(self.node.hash_every),
            history: VecDeque::new(),
            bytes_reported: (0, now),
        }));
        Ok(())
    }

    fn report(&mut self, machine: &Machine, waiting: usize, state: &str) -> Status {
        let mut st = Status {
            vm: self.node.vm.clone(),
            node: self.node.name.clone(),
            role: "primary".into(),
            state: state.into(),
            generation: self.generation,
            icount: machine.icount().0,
            outputs_waiting: waiting,
            throttled: self.throttled,
            ..Status::default()
        };
        if let State::Protected(l) = &mut self.state {
            st.peer = l.backup.clone();
            let (lag_insns, lag) = l.lag(machine.icount().0);
            st.lag_insns = lag_insns;
            st.lag_ms = lag.as_secs_f64() * 1e3;
            let (b0, t0) = l.bytes_reported;
            let b = l.log.bytes_written();
            st.log_bytes_per_s = (b - b0) as f64 / t0.elapsed().as_secs_f64().max(1e-3);
            l.bytes_reported = (b, Instant::now());
        }
        if let State::Transferring(s) = &self.state {
            st.peer = s.backup.clone();
        }
        st
    }
}

/// How a failed write on the channel is reported (as a lost backup, at the next
/// service).
const SEND_FAILED: &str = "the logging channel failed while sending";

impl Link {
    /// Note an entry handed to the channel; a failure marks the backup lost.
    fn wrote(&mut self, r: Result<u64, ftvm_log::LogError>) -> Option<u64> {
        self.last_write = Instant::now();
        self.unflushed = true;
        r.map_err(|_| self.acks.fail(SEND_FAILED)).ok()
    }

    /// Push buffered entries onto the wire.
    fn flush(&mut self) {
        if self.log.flush().is_err() {
            self.acks.fail(SEND_FAILED);
        }
        self.unflushed = false;
    }

    /// A progress entry (the heartbeat) after [`HEARTBEAT`] of silence.
    fn heartbeat(&mut self, icount: u64) {
        if self.last_write.elapsed() >= HEARTBEAT {
            let r = self.log.progress(icount);
            self.wrote(r);
            self.flush();
        }
    }

    /// How far behind the backup is: instructions, and host time since the primary
    /// was where the backup is now.
    fn lag(&mut self, icount: u64) -> (u64, Duration) {
        let backup = self.acks.icount.load(Ordering::Relaxed);
        if backup >= icount {
            return (0, Duration::ZERO);
        }
        while self.history.len() > 1 && self.history[1].0 <= backup {
            self.history.pop_front();
        }
        // The first moment the primary was past where the backup is now.
        let since = self
            .history
            .iter()
            .find(|(i, _)| *i > backup)
            .map(|(_, t)| *t);
        (
            icount - backup,
            since.map_or(Duration::ZERO, |t| t.elapsed()),
        )
    }
}

impl Journal for Primary {
    fn event(&mut self, icount: u64, ev: &Event) -> Result<()> {
        if let Some(l) = self.link() {
            let payload = postcard::to_stdvec(ev).expect("event encodes");
            let r = l.log.event(icount, &payload);
            l.wrote(r);
        }
        Ok(())
    }

    fn output(&mut self, out: &Output) -> Result<Release> {
        if let State::Transferring(sender) = &mut self.state {
            // A write during the pre-copy: the backup's copy needs it again.
            if let OutputKind::Disk(BlkRequest {
                kind: BlkRequestKind::Write { sector, data },
                ..
            }) = &out.kind
            {
                sender.disk_written(sector * 512, data.len() as u64);
            }
        }
        let Some(l) = self.link() else {
            return Ok(Release::Now);
        };
        let r = l.log.output(out.icount.0, &output_digest(out));
        let seq = l.wrote(r);
        l.flush();
        // After a failed write the output waits until the arbiter decides who is live.
        Ok(Release::AfterAck(seq.unwrap_or(u64::MAX)))
    }

    fn next_checkpoint(&self) -> u64 {
        match &self.state {
            State::Protected(l) => l.next_checkpoint,
            _ => u64::MAX,
        }
    }

    fn checkpoint(&mut self, icount: u64, hash: u128) -> Result<()> {
        let every = self.node.hash_every;
        if let Some(l) = self.link() {
            let r = l.log.state_hash(icount, hash);
            l.wrote(r);
            l.next_checkpoint = icount.saturating_add(every);
        }
        Ok(())
    }

    fn released_through(&self) -> u64 {
        match &self.state {
            State::Protected(l) => l.acks.seq.load(Ordering::Acquire),
            _ => u64::MAX,
        }
    }

    fn is_live(&self) -> bool {
        true
    }

    fn service(&mut self, machine: &mut Machine, waiting: usize) -> Result<()> {
        while let Ok(c) = self.candidates.try_recv() {
            if matches!(self.state, State::Unprotected) {
                self.begin_transfer(c, machine);
            } else {
                let mut s = c.stream;
                let _ = wire::send(
                    &mut s,
                    &Message::Busy("this primary already has a backup".into()),
                );
            }
        }
        if matches!(self.state, State::Transferring(_)) {
            self.transfer_step(machine)?;
        }
        let icount = machine.icount().0;
        let max_lag = self.node.max_lag;
        let mut lost = None;
        if let State::Protected(l) = &mut self.state {
            if l.history
                .back()
                .is_none_or(|(_, t)| t.elapsed() >= Duration::from_millis(1))
            {
                l.history.push_back((icount, Instant::now()));
                if l.history.len() > 65536 {
                    l.history.pop_front();
                }
            }
            l.heartbeat(icount);
            if l.unflushed {
                l.flush();
            }
            // Slow down while the backup lags too far (it keeps the heartbeats).
            let mut throttling = false;
            while !l.acks.failed.load(Ordering::Relaxed) && l.lag(icount).1 > max_lag {
                if !throttling {
                    throttling = true;
                    self.throttled += 1;
                    tracing::info!("backup lags by more than {max_lag:?}: slowing down");
                }
                std::thread::sleep(Duration::from_millis(1));
                l.heartbeat(icount);
            }
            if l.acks.failed.load(Ordering::Relaxed) {
                lost = Some(l.acks.why.lock().map(|w| w.clone()).unwrap_or_default());
            }
        }
        if let Some(why) = lost {
            self.backup_lost(why, machine, waiting)?;
        }
        if self.status.due() {
            let state = match &self.state {
                State::Unprotected => "unprotected",
                State::Transferring(_) => "transferring",
                // Protected once the backup confirmed it holds the guest.
                State::Protected(l) if l.acks.confirmed.load(Ordering::Acquire) => "protected",
                State::Protected(_) => "transferring",
            };
            let mut st = self.report(machine, waiting, state);
            self.status.write(&mut st);
        }
        Ok(())
    }

    fn finish(self: Box<Self>, icount: u64, hash: u128) -> Result<String> {
        let mut this = *self;
        let mut st = Status {
            vm: this.node.vm.clone(),
            node: this.node.name.clone(),
            role: "primary".into(),
            state: "stopped".into(),
            generation: this.generation,
            icount,
            ..Status::default()
        };
        this.status.write(&mut st);
        match this.state {
            State::Protected(l) => {
                let backup = l.backup.clone();
                l.log.finish(icount, hash).context("ending the log")?;
                Ok(format!(
                    "the guest stopped; the backup {backup} was told so"
                ))
            }
            _ => Ok("the guest stopped".into()),
        }
    }
}

impl Acks {
    fn fail(&self, why: &str) {
        if let Ok(mut w) = self.why.lock() {
            if w.is_empty() {
                *w = why.to_string();
            }
        }
        self.failed.store(true, Ordering::Release);
    }
}

/// How long a backup may take, after the last transfer byte, to confirm it holds the
/// guest (its first ack).
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The ack reader: the backup's acks, and its silence past `timeout`, are how the
/// primary knows it is alive.
///
/// The first ack also says the backup finished the transfer: it rebuilt the machine and
/// checked its state hash, which on a loaded host can take longer than `timeout` after
/// the primary sent the last byte. Until then the backup has up to [`JOIN_TIMEOUT`].
fn read_acks(stream: TcpStream, timeout: Duration, acks: &Acks) {
    let _ = stream.set_read_timeout(Some(JOIN_TIMEOUT.max(timeout)));
    let mut r = BufReader::new(stream);
    let mut a = [0u8; ACK_LEN];
    let mut first = true;
    loop {
        match r.read_exact(&mut a) {
            Ok(()) => {
                if std::mem::take(&mut first) {
                    let _ = r.get_ref().set_read_timeout(Some(timeout));
                    acks.confirmed.store(true, Ordering::Release);
                }
                let (seq, icount) = wire::decode_ack(&a);
                acks.icount.store(icount, Ordering::Relaxed);
                acks.seq.fetch_max(seq, Ordering::Release);
            }
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut if first => {
                        format!(
                            "the backup did not confirm the transfer within {} s",
                            JOIN_TIMEOUT.max(timeout).as_secs()
                        )
                    }
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                        format!("no acknowledgment for {} ms", timeout.as_millis())
                    }
                    std::io::ErrorKind::UnexpectedEof => "the backup closed the channel".into(),
                    _ => format!("the channel failed: {e}"),
                };
                acks.fail(&why);
                return;
            }
        }
    }
}

/// Authenticate a connecting backup and agree on the pair's generation.
fn admit(mut stream: TcpStream, node: &Node) -> Result<Candidate> {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    ftvm_arbiter::server_handshake(&mut stream, wire::GREETING, &node.secret)
        .with_context(|| format!("peer {peer} failed the cluster-secret handshake"))?;
    let hello = match wire::recv(&mut stream, ftvm_machine::PAGE_SIZE)? {
        Message::Hello(h) => h,
        _ => anyhow::bail!("peer {peer} did not introduce itself"),
    };
    if hello.vm != node.vm {
        let why = format!("this primary runs VM {}, not {}", node.vm, hello.vm);
        wire::send(&mut stream, &Message::Busy(why.clone()))?;
        anyhow::bail!("{why}");
    }
    let generation = match node.next_generation(0) {
        Ok(g) => g,
        Err(e) => {
            let why = format!("a pair needs the arbiter: {e:#}");
            wire::send(&mut stream, &Message::Busy(why.clone()))?;
            anyhow::bail!("{why}");
        }
    };
    // The write timeout bounds how long a stuck backup can stall the primary.
    stream.set_write_timeout(Some(node.timeout))?;
    Ok(Candidate {
        stream,
        hello,
        generation,
    })
}
