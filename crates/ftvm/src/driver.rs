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

use crate::replica::Journal;
use anyhow::{bail, Context, Result};
use ftvm_machine::devices::virtio::{BlkError, BlkRequest, BlkRequestKind};
use ftvm_machine::{Event, Exit, ICount, Machine, OutputKind};
use ftvm_usernet::UserNet;
use ftvm_world::console::StdinConsole;
use ftvm_world::disk::DiskImage;
use ftvm_world::entropy::HostEntropy;
use ftvm_world::hostclock::HostClock;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Instructions per slice in live mode, between looks at the network and the clock.
const LIVE_SLICE: u64 = 2_000_000;
/// Instructions per slice in virtual mode, between looks for a stop signal.
const VIRTUAL_SLICE: u64 = 50_000_000;
/// Instructions per slice while outputs wait for the backup's acknowledgment.
const WAITING_SLICE: u64 = 50_000;
/// Longest single sleep while the guest idles.
const MAX_IDLE_SLEEP: Duration = Duration::from_millis(20);
/// Longest sleep while the guest idles with a live journal (heartbeats are due).
const JOURNAL_IDLE_SLEEP: Duration = Duration::from_millis(2);
/// Longest wait while the guest idles and outputs wait for an acknowledgment.
const WAITING_IDLE_SLEEP: Duration = Duration::from_micros(50);
/// Longest wait while the guest may not run (the arbiter, a lagging backup, a shutdown).
const HALTED_WAIT: Duration = Duration::from_millis(1);

/// Longest sleep while the guest idles with a console attached (typing stays snappy).
const CONSOLE_POLL: Duration = Duration::from_millis(5);

/// Where the guest's NIC is plugged in.
pub enum Network {
    /// User-mode networking inside this process.
    User(Box<UserNet>),
    /// A port on an `ftvm switch` process (the LAN outside this host).
    Switch(ftvm_switch::SwitchPort),
}

impl Network {
    /// Carry a frame the guest sent.
    fn send_guest_frame(&mut self, frame: &[u8]) {
        match self {
            Network::User(n) => n.from_guest(frame),
            Network::Switch(p) => {
                if let Err(e) = p.send(frame) {
                    tracing::warn!("switch port: {e}");
                }
            }
        }
    }

    /// Frames for the guest (bounded per call).
    fn poll(&mut self, now: Instant) -> Vec<Vec<u8>> {
        match self {
            Network::User(n) => n.poll(now),
            Network::Switch(p) => {
                let mut frames = Vec::new();
                while frames.len() < 256 {
                    match p.try_recv() {
                        Ok(Some(f)) => frames.push(f),
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!("switch port: {e}");
                            break;
                        }
                    }
                }
                frames
            }
        }
    }

    /// How long the network may wait before the next poll.
    fn poll_delay(&mut self, now: Instant) -> Duration {
        match self {
            Network::User(n) => n.poll_delay(now),
            Network::Switch(_) => Duration::from_micros(100),
        }
    }
}

/// The host side of a machine's devices.
#[derive(Default)]
pub struct Backends {
    /// The disk image behind virtio-blk.
    pub disk: Option<DiskImage>,
    /// The network behind virtio-net (makes the run live).
    pub net: Option<Network>,
    /// Host randomness behind virtio-rng.
    pub entropy: Option<HostEntropy>,
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
    clock: Option<HostClock>,
    /// Device errors already logged.
    device_errors: u64,
    /// Where inputs and outputs are logged (a recording, or a primary's channel).
    pub journal: Option<Box<dyn Journal>>,
    /// Set (by a signal handler) to end the run cleanly at the next stop.
    pub stop: Arc<AtomicBool>,
}

impl<W: Write> Driver<W> {
    /// A driver; live time if the network is attached.
    pub fn new(machine: Machine, backends: Backends, console: W) -> Driver<W> {
        let mtime = machine.mtime();
        let live = backends.net.is_some() || backends.console.is_some();
        let clock = live.then(|| HostClock::starting_at(mtime));
        Driver {
            machine,
            backends,
            console,
            clock,
            device_errors: 0,
            journal: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Give the backends back (e.g. to reboot a machine with the same disk).
    pub fn into_parts(self) -> (Machine, Backends) {
        (self.machine, self.backends)
    }

    /// Deliver an input event to the machine: the input door (logged when recording).
    fn deliver(&mut self, ev: Event) -> Result<()> {
        if let Some(j) = &mut self.journal {
            j.event(self.machine.icount().0, &ev)?;
        }
        self.machine.inject(&ev);
        Ok(())
    }

    /// Run until the instruction count reaches `until`, power-off or reset.
    pub fn drive(&mut self, until: ICount) -> Result<End> {
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
                self.wait(HALTED_WAIT);
                continue;
            }
            if !self.journal.as_ref().is_none_or(|j| j.may_run(now.0)) {
                self.wait(HALTED_WAIT);
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
        if let Some(j) = &mut self.journal {
            j.shutdown();
        }
        Ok(end)
    }

    /// Wait up to `max` for the journal's news (or just wait, without a journal).
    fn wait(&mut self, max: Duration) {
        match &mut self.journal {
            Some(j) => j.wait(max),
            None => std::thread::sleep(max),
        }
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
                    net.send_guest_frame(&frame);
                }
            }
            OutputKind::Disk(req) => {
                let ev = self.disk_request(req);
                self.deliver(ev)?;
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

    /// Give the journal its turn, then carry out what it released.
    fn service_journal(&mut self) -> Result<()> {
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

    /// Carry out a disk request on the image; the answer is the completion event.
    fn disk_request(&mut self, req: BlkRequest) -> Event {
        let Some(disk) = &mut self.backends.disk else {
            return Event::DiskDone {
                id: req.id,
                error: Some(BlkError::Io),
                data: Vec::new(),
            };
        };
        let result = match req.kind {
            BlkRequestKind::Read { sector, len } => disk.read(sector, len as u64),
            BlkRequestKind::Write { sector, data } => {
                disk.write(sector, &data).map(|()| Vec::new())
            }
            BlkRequestKind::Flush => disk.flush().map(|()| Vec::new()),
        };
        match result {
            Ok(data) => Event::DiskDone {
                id: req.id,
                error: None,
                data,
            },
            Err(e) => {
                tracing::warn!("disk request {} failed: {e}", req.id);
                Event::DiskDone {
                    id: req.id,
                    error: Some(BlkError::Io),
                    data: Vec::new(),
                }
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
            Some(net) => net.poll(Instant::now()),
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
            .map(|t| clock.instant_at(self.machine.mtime().saturating_add(t)));
        // A sleeping guest needs no clock updates: time moves (one event) only when
        // it wakes, for its timer or for traffic. That keeps an idle guest's log small.
        loop {
            self.service_journal()?;
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
            let mut wait = match &self.journal {
                Some(j) if j.holding() => WAITING_IDLE_SLEEP,
                Some(j) if j.is_live() => JOURNAL_IDLE_SLEEP,
                _ => MAX_IDLE_SLEEP,
            };
            if let Some(at) = timer_at {
                wait = wait.min(at - now);
            }
            if let Some(net) = &mut self.backends.net {
                wait = wait.min(net.poll_delay(now));
            }
            if self.backends.console.is_some() {
                wait = wait.min(CONSOLE_POLL);
            }
            self.wait(wait);
        }
    }
}
