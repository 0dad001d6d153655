//! The loop that connects a machine to its world: it runs the machine, carries its
//! outputs out (console, frames, disk requests, entropy requests) and brings inputs in
//! as events (DESIGN.md §1). Every input passes through [`Driver::deliver`], the one
//! place a [`Journal`] (a recording, or the logging channel to a backup) hooks; every
//! output passes through the journal too, and leaves when the journal releases it (the
//! Output Rule is the FT core's, crates/replica). A run that ends (a signal, power-off,
//! reset) ends through the journal's shutdown: nothing it holds leaves unreleased.
//!
//! Time has two modes. **Virtual** (no network): the guest gets no host time at all;
//! when it idles, guest time jumps to its next timer, so a run is a pure function of
//! its boot files. **Live** (network attached): guest time is kept at or ahead of host
//! time by clock events at slice boundaries and idle wake-ups, and an idle guest waits
//! in real time for its timer or for network traffic.
//!
//! Waiting is readiness-driven (issue 11): one [`Poll`] watches the network's
//! sockets, the console, a [`Waker`] the journal's threads ring when they have news (an
//! ack, an arbiter answer, a backup knocking) and a pipe the SIGINT/SIGTERM handlers
//! write to; the timeout is the nearest deadline (the guest's timer, the network's own
//! timers, the journal's next tick). Outputs held for an ack leave when the ack arrives.

mod disk_thread;

use crate::replica::Journal;
use anyhow::{bail, Context, Result};
use disk_thread::DiskThread;
use ftvm_machine::devices::virtio::{BlkError, BlkRequest};
use ftvm_machine::{Event, Exit, ICount, Machine, OutputKind};
use ftvm_world::console::StdinConsole;
use ftvm_world::disk::{DiskError, WritePermit};
use ftvm_world::hostclock::HostClock;
use ftvm_world::mio::unix::SourceFd;
use ftvm_world::mio::{Events, Interest, Poll, Token, Waker};
use ftvm_world::{Clock, Disk, Entropy, Net};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Instructions per slice in live mode, between looks at the network and the clock.
const LIVE_SLICE: u64 = 2_000_000;
/// Instructions per slice in virtual mode, between looks for a stop signal.
const VIRTUAL_SLICE: u64 = 50_000_000;
/// Instructions per slice while outputs wait for the backup's acknowledgment.
const WAITING_SLICE: u64 = 50_000;
/// Longest wait while the guest idles with a console whose input cannot be watched (a
/// regular file) or whose UART has no room (typing stays snappy).
const CONSOLE_POLL: Duration = Duration::from_millis(5);

/// What woke a wait.
const NET: Token = Token(0);
const CONSOLE: Token = Token(1);
const NEWS: Token = Token(2);
const SIGNAL: Token = Token(3);

/// The host side of a machine's devices.
#[derive(Default)]
pub struct Backends {
    /// The disk behind virtio-blk.
    pub disk: Option<Box<dyn Disk>>,
    /// The network behind virtio-net (makes the run live).
    pub net: Option<Box<dyn Net>>,
    /// The randomness behind virtio-rng.
    pub entropy: Option<Box<dyn Entropy>>,
    /// Host stdin behind the UART's receive side (makes the run live).
    pub console: Option<StdinConsole>,
}

/// How a drive ended.
pub enum End {
    /// The instruction count reached the requested stop.
    Stopped,
    /// The guest powered off with this code.
    PowerOff(u32),
    /// A signal asked the run to end.
    Interrupted,
    /// The guest asked for a reset.
    Reset,
}

/// Runs a machine against its backends.
pub struct Driver<W: Write> {
    /// The machine.
    pub machine: Machine,
    backends: Backends,
    console: W,
    clock: Option<Box<dyn Clock>>,
    readiness: Readiness,
    /// Device errors already logged.
    device_errors: u64,
    /// Where inputs and outputs are logged (a recording, or a primary's channel).
    pub journal: Option<Box<dyn Journal>>,
    /// Set (by a signal handler) to end the run cleanly at the next stop.
    pub stop: Arc<AtomicBool>,
    /// Disk writes are sent only while it allows (the FT primary's lease).
    pub write_permit: WritePermit,
    /// Carry out disk requests on a thread of their own, in live runs (the FT nodes:
    /// a stalled disk must not stop the heartbeats). Elsewhere the driver does them
    /// itself: a thread costs each request two wake-ups (about 0.15 ms here).
    pub threaded_disk: bool,
    /// Events delivered so far (an idle wait ends when one arrives).
    delivered: u64,
    /// Live runs: the disk on a thread of its own, from the first request on.
    disk_thread: Option<DiskThread>,
}

impl<W: Write> Driver<W> {
    /// A driver; live time if the network or the console is attached.
    pub fn new(machine: Machine, mut backends: Backends, console: W) -> Result<Driver<W>> {
        let mtime = machine.mtime();
        let live = backends.net.is_some() || backends.console.is_some();
        let clock = live.then(|| Box::new(HostClock::starting_at(mtime)) as Box<dyn Clock>);
        let readiness = Readiness::new(&mut backends)?;
        Ok(Driver {
            machine,
            backends,
            console,
            clock,
            readiness,
            device_errors: 0,
            journal: None,
            stop: Arc::new(AtomicBool::new(false)),
            write_permit: WritePermit::default(),
            threaded_disk: false,
            delivered: 0,
            disk_thread: None,
        })
    }

    /// What the journal's threads ring when they have news for it (see [`Journal`]).
    pub fn waker(&self) -> Arc<Waker> {
        self.readiness.waker.clone()
    }

    /// Give the backends back (e.g. to reboot a machine with the same disk), once
    /// every disk request under way was carried out.
    pub fn into_parts(mut self) -> (Machine, Backends) {
        if let Some(t) = self.disk_thread.take() {
            self.backends.disk = Some(t.stop());
        }
        (self.machine, self.backends)
    }

    /// Deliver an input event to the machine: the input door (logged when recording).
    fn deliver(&mut self, ev: Event) -> Result<()> {
        if let Some(j) = &mut self.journal {
            j.event(self.machine.icount().0, &ev)?;
        }
        self.machine.inject(&ev);
        self.delivered += 1;
        Ok(())
    }

    /// Run until the instruction count reaches `until`, power-off or reset.
    pub fn drive(&mut self, until: ICount) -> Result<End> {
        self.readiness.watch_signals()?;
        // How the run ends, once it does: the journal's shutdown completes first.
        let mut ending: Option<End> = None;
        loop {
            if ending.is_none() && self.stop.load(Ordering::Relaxed) {
                ending = Some(self.end(End::Interrupted)?);
            }
            self.service_journal()?;
            let now = self.machine.icount();
            if let Some(end) = ending.take() {
                if self.journal.as_ref().is_none_or(|j| j.stopped()) {
                    return Ok(end);
                }
                ending = Some(end);
                self.wait(None)?;
                continue;
            }
            if !self.journal.as_ref().is_none_or(|j| j.may_run(now.0)) {
                let input =
                    self.clock.is_some() && self.journal.as_ref().is_some_and(|j| j.takes_input());
                // Frames taken look again at once (a batch may have left some unread).
                if !(input && self.service_live()?) {
                    self.wait(None)?;
                }
                continue;
            }
            let slice = match self.clock {
                _ if self.journal.as_ref().is_some_and(|j| j.holding()) => WAITING_SLICE,
                Some(_) => LIVE_SLICE,
                // Without a network only a signal can arrive: look for one now and then.
                None => VIRTUAL_SLICE,
            };
            let mut end = ICount(until.0.min(now.0.saturating_add(slice)));
            if let Some(j) = &self.journal {
                end = end.min(ICount(j.next_checkpoint()));
            }
            let exit = self.machine.run(end);
            if let Some(j) = &mut self.journal {
                let now = self.machine.icount().0;
                if now == j.next_checkpoint() {
                    j.checkpoint(now, self.machine.state_hash())?;
                }
            }
            match exit {
                Exit::Until if self.machine.icount() >= until => return Ok(End::Stopped),
                Exit::Until => {
                    self.service_live()?;
                }
                Exit::Output => self.carry_outputs()?,
                Exit::Idle => self.idle()?,
                Exit::PowerOff { exit_code } => {
                    ending = Some(self.end(End::PowerOff(exit_code))?);
                }
                Exit::Reset => ending = Some(self.end(End::Reset)?),
                Exit::TrapLoop { cause, pc } => {
                    self.carry_outputs()?;
                    bail!(
                        "the guest is stuck: its trap handler at {pc:#x} cannot be fetched (cause {cause:#x}, {}); an M-mode program needs --bios none",
                        self.machine.privilege_name()
                    );
                }
                Exit::FirmwareTrap { cause, pc } => {
                    self.carry_outputs()?;
                    bail!(
                        "the guest trapped into M-mode (mcause {cause:#x} at pc {pc:#x}), where the built-in SBI has no handler; an M-mode program needs --bios none"
                    );
                }
            }
        }
    }

    /// The run ends as `end`: the last outputs go to the journal, which shuts down.
    fn end(&mut self, end: End) -> Result<End> {
        self.carry_outputs()?;
        // Writes under way land before the run ends; their answers are not delivered.
        if let Some(t) = self.disk_thread.take() {
            self.backends.disk = Some(t.stop());
        }
        if let Some(j) = &mut self.journal {
            j.shutdown();
        }
        Ok(end)
    }

    /// Wait until a watched source is ready, the journal's next deadline, or `timeout`
    /// (`None`: no deadline of the caller's). A signal sets the stop flag.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<()> {
        let now = Instant::now();
        let journal = self
            .journal
            .as_ref()
            .and_then(|j| j.deadline())
            .map(|at| at.saturating_duration_since(now));
        if self.readiness.wait(earliest(timeout, journal))? {
            self.stop.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Carry the machine's outputs to the world; answer disk and entropy requests.
    fn carry_outputs(&mut self) -> Result<()> {
        let (errors, last) = self.machine.device_errors();
        if errors > self.device_errors {
            tracing::warn!(
                "guest device errors: {errors} so far; last: {}",
                last.unwrap_or_default()
            );
            self.device_errors = errors;
        }
        for out in self.machine.take_outputs() {
            match &mut self.journal {
                Some(j) => j.output(out)?,
                None => self.release(out.kind)?,
            }
        }
        self.release_ready()
    }

    /// Let an output leave for the world (a disk request is carried out and its
    /// completion delivered).
    fn release(&mut self, kind: OutputKind) -> Result<()> {
        match kind {
            OutputKind::Console(bytes) => {
                // The console is best effort: a closed stdout must not stop the guest.
                let _ = self.console.write_all(&bytes);
                let _ = self.console.flush();
            }
            OutputKind::NetFrame(frame) => {
                tracing::trace!(len = frame.len(), "frame from guest");
                if let Some(net) = &mut self.backends.net {
                    net.send(&frame);
                }
            }
            OutputKind::Disk(req) => {
                if let Some(ev) = self.disk_request(req)? {
                    self.deliver(ev)?;
                }
            }
            OutputKind::EntropyRequest { id, len } => self.answer_entropy(id, len)?,
        }
        Ok(())
    }

    /// Carry out what the journal lets leave.
    fn release_ready(&mut self) -> Result<()> {
        let ready = match &mut self.journal {
            Some(j) => j.released(),
            None => return Ok(()),
        };
        for kind in ready {
            self.release(kind)?;
        }
        Ok(())
    }

    /// Deliver the disk thread's answers, then give the journal its turn and carry
    /// out what it released. A journal that needs the disk quiet (a state transfer
    /// reads the guest's state and its disk) gets it: the answers are waited for.
    fn service_journal(&mut self) -> Result<()> {
        let quiet = self.journal.as_ref().is_some_and(|j| j.disk_quiet());
        self.take_disk_answers(if quiet { Duration::MAX } else { Duration::ZERO })?;
        if let Some(j) = &mut self.journal {
            j.service(&mut self.machine)?;
        }
        self.release_ready()
    }

    /// Answer an entropy request from the host's randomness (an input, logged).
    fn answer_entropy(&mut self, id: u64, len: u32) -> Result<()> {
        let bytes = match &mut self.backends.entropy {
            Some(e) => e.bytes(len as usize).context("reading host entropy")?,
            None => bail!("the guest asked for entropy but no entropy source is attached"),
        };
        self.deliver(Event::Entropy { id, bytes })
    }

    /// Carry out requests the guest made before this driver took over, and send frames
    /// again (a backup going live, [`ftvm_replica::Backup::go_live`]): their answers
    /// never reached the log, so this world answers them now.
    pub fn reissue(&mut self, outputs: Vec<OutputKind>) -> Result<()> {
        for kind in outputs {
            match kind {
                OutputKind::Console(_) => {}
                kind => self.release(kind)?,
            }
        }
        Ok(())
    }

    /// Carry out a disk request; the answer is the completion event (none while a
    /// write waits for the write permit, held by the journal, or while the request is
    /// on the disk thread, in live runs).
    fn disk_request(&mut self, req: BlkRequest) -> Result<Option<Event>> {
        if self.threaded_disk && self.clock.is_some() && self.disk_thread.is_none() {
            // Live: the answer's instruction count is the host's choice anyway (and
            // logged).
            if let Some(disk) = self.backends.disk.take() {
                let waker = self.readiness.waker.clone();
                self.disk_thread = Some(
                    DiskThread::start(disk, self.write_permit.clone(), waker)
                        .context("cannot start the disk thread")?,
                );
            }
        }
        if let Some(t) = &mut self.disk_thread {
            t.submit(req);
            // Wait a little for its answer (and those before it: they come in order).
            self.take_disk_answers(disk_thread::QUICK)?;
            return Ok(None);
        }
        let Some(disk) = &mut self.backends.disk else {
            return Ok(Some(Event::DiskDone {
                id: req.id,
                error: Some(BlkError::Io),
                data: Vec::new(),
            }));
        };
        let result = disk_thread::carry_out(disk.as_mut(), &req, &self.write_permit);
        Ok(self.disk_answer(req, result))
    }

    /// Deliver the disk thread's answers, waiting up to `wait` for each.
    fn take_disk_answers(&mut self, wait: Duration) -> Result<()> {
        while let Some((req, result)) = self.disk_thread.as_mut().and_then(|t| t.answer(wait)) {
            if let Some(ev) = self.disk_answer(req, result) {
                self.deliver(ev)?;
            }
        }
        Ok(())
    }

    /// The completion event of a carried-out request (none for a fenced write the
    /// journal holds).
    fn disk_answer(
        &mut self,
        req: BlkRequest,
        result: Result<Vec<u8>, DiskError>,
    ) -> Option<Event> {
        let id = req.id;
        match result {
            Ok(data) => Some(Event::DiskDone {
                id,
                error: None,
                data,
            }),
            Err(DiskError::Fenced)
                if self
                    .journal
                    .as_mut()
                    .is_some_and(|j| j.hold(OutputKind::Disk(req))) =>
            {
                None
            }
            Err(e) => {
                tracing::warn!("disk request {id} failed: {e}");
                Some(Event::DiskDone {
                    id,
                    error: Some(BlkError::Io),
                    data: Vec::new(),
                })
            }
        }
    }

    /// Live mode: bring guest time up to host time and deliver network frames.
    /// Returns true if any frame was delivered.
    fn service_live(&mut self) -> Result<bool> {
        let frames = self.poll_network();
        let any = !frames.is_empty();
        self.deliver_frames(frames)?;
        Ok(self.poll_console()? || any)
    }

    /// Live mode: deliver what was typed on the console (no more than the UART's FIFO
    /// takes). `Ctrl-A x` ends the run. Returns true if any byte was delivered.
    fn poll_console(&mut self) -> Result<bool> {
        let room = self.machine.console_input_room();
        let Some(console) = &mut self.backends.console else {
            return Ok(false);
        };
        let input = console.poll(room);
        if input.quit {
            self.stop.store(true, Ordering::Relaxed);
        }
        if input.bytes.is_empty() {
            return Ok(false);
        }
        self.sync_clock()?;
        self.deliver(Event::ConsoleInput(input.bytes))?;
        Ok(true)
    }

    /// Bring guest time up to host time, then deliver `frames` to the guest's NIC.
    fn deliver_frames(&mut self, frames: Vec<Vec<u8>>) -> Result<()> {
        self.sync_clock()?;
        for f in frames {
            tracing::trace!(len = f.len(), "frame to guest");
            self.deliver(Event::NetFrame(f))?;
        }
        Ok(())
    }

    /// Frames the network has for the guest (not yet delivered).
    fn poll_network(&mut self) -> Vec<Vec<u8>> {
        match &mut self.backends.net {
            Some(net) => net.recv(Instant::now()),
            None => Vec::new(),
        }
    }

    /// Live mode: move guest time up to host time (never back).
    fn sync_clock(&mut self) -> Result<()> {
        let Some(clock) = &self.clock else {
            return Ok(());
        };
        let host = clock.ticks();
        let guest = self.machine.mtime();
        if host > guest {
            self.deliver(Event::ClockAdvance {
                ticks: host - guest,
            })?;
        }
        Ok(())
    }

    /// The guest waits in WFI: move time (virtual) or wait for its timer or for network
    /// traffic in real time (live).
    fn idle(&mut self) -> Result<()> {
        let Some(clock) = &self.clock else {
            return match self.machine.idle_ticks() {
                Some(ticks) => self.deliver(Event::ClockAdvance { ticks }),
                None => bail!(
                    "the guest is idle (WFI) with no timer armed and no input can arrive: it would sleep forever (icount {})",
                    self.machine.icount()
                ),
            };
        };
        // The host instant at which the guest's next timer fires.
        let timer_at = self
            .machine
            .idle_ticks()
            .map(|t| Instant::now() + clock.until(self.machine.mtime().saturating_add(t)));
        // A sleeping guest needs no clock updates: time moves (one event) only when
        // it wakes, for its timer or for traffic. That keeps an idle guest's log small.
        loop {
            let delivered = self.delivered;
            self.service_journal()?;
            if self.delivered != delivered {
                // Held requests were released and answered (an ack came): the disk's
                // or the entropy source's answer wakes the guest now, not at its timer.
                return self.sync_clock();
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let frames = self.poll_network();
            let now = Instant::now();
            if !frames.is_empty() || timer_at.is_some_and(|at| now >= at) {
                self.deliver_frames(frames)?;
                return self.poll_console().map(|_| ());
            }
            if self.poll_console()? {
                return Ok(());
            }
            // Held outputs need no deadline: the ack that releases them is news.
            let mut wait = timer_at.map(|at| at - now);
            if let Some(net) = &mut self.backends.net {
                wait = earliest(wait, net.timer(now));
            }
            if self.backends.console.is_some()
                && (!self.readiness.console_watched || self.machine.console_input_room() == 0)
            {
                wait = earliest(wait, Some(CONSOLE_POLL));
            }
            self.wait(wait)?;
        }
    }
}

/// The nearer of two optional timeouts.
fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What a driver waits on: the backends' sockets, the console, the journal's news and
/// the stop signals.
struct Readiness {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    /// The console's input is watched (a terminal or a pipe; a regular file cannot be).
    console_watched: bool,
    /// The read end of the pipe the SIGINT/SIGTERM handlers write to, once installed.
    signals: Option<(UnixStream, Vec<signal_hook::SigId>)>,
}

impl Readiness {
    fn new(backends: &mut Backends) -> Result<Readiness> {
        let poll = Poll::new().context("cannot create a readiness poll")?;
        let waker = Arc::new(Waker::new(poll.registry(), NEWS).context("cannot create a waker")?);
        if let Some(net) = &mut backends.net {
            net.register(poll.registry(), NET)
                .context("cannot watch the network's sockets")?;
        }
        let console_watched = backends.console.is_some()
            && poll
                .registry()
                .register(
                    &mut SourceFd(&std::io::stdin().as_raw_fd()),
                    CONSOLE,
                    Interest::READABLE,
                )
                .is_ok();
        Ok(Readiness {
            poll,
            events: Events::with_capacity(64),
            waker,
            console_watched,
            signals: None,
        })
    }

    /// Let SIGINT and SIGTERM wake a wait (the driver then sets its stop flag itself:
    /// no race with the caller's own handlers). Installed when a drive starts.
    fn watch_signals(&mut self) -> Result<()> {
        if self.signals.is_some() {
            return Ok(());
        }
        let (read, write) = UnixStream::pair().context("cannot create the signal pipe")?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        self.poll
            .registry()
            .register(&mut SourceFd(&read.as_raw_fd()), SIGNAL, Interest::READABLE)
            .context("cannot watch the signal pipe")?;
        let mut ids = Vec::new();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let w = write.try_clone()?;
            ids.push(
                signal_hook::low_level::pipe::register(sig, w)
                    .context("cannot install a signal handler")?,
            );
        }
        self.signals = Some((read, ids));
        Ok(())
    }

    /// Wait for readiness or `timeout`; true if a stop signal arrived.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<bool> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e).context("waiting for the world failed"),
        }
        let mut signalled = false;
        for ev in self.events.iter() {
            if ev.token() == SIGNAL {
                signalled = true;
            }
        }
        if signalled {
            if let Some((read, _)) = &mut self.signals {
                let mut buf = [0u8; 64];
                while matches!(read.read(&mut buf), Ok(n) if n > 0) {}
            }
        }
        Ok(signalled)
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        if let Some((_, ids)) = self.signals.take() {
            for id in ids {
                signal_hook::low_level::unregister(id);
            }
        }
    }
}
