//! Live state transfer (DESIGN.md §4 "Restoring redundancy", after VMware's FT
//! VMotion): iterative pre-copy of guest RAM while the primary keeps running, then a
//! short stop-and-copy of the pages still dirty, the CPU and the devices.

use super::wire::{self, Message, Offer};
use anyhow::{bail, Context, Result};
use ftvm_machine::{Machine, PAGE_SIZE};
use ftvm_world::Channel;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Page bytes sent per step (between two slices of guest execution).
const STEP_BYTES: usize = 4 << 20;
/// Stop and copy once a round leaves at most this many dirty pages…
const STOP_COPY_PAGES: usize = 256;
/// …and at most this many bytes of the disk were written during the round…
const STOP_COPY_DISK: u64 = 1 << 20;
/// …or after this many rounds (a guest that dirties memory faster than we send it).
const MAX_ROUNDS: u32 = 8;
/// Disk bytes per message.
const DISK_CHUNK: u64 = 64 << 10;

/// The disk image, for a backup that keeps its own copy.
struct DiskSource {
    file: File,
    /// Byte ranges to send this round, and how far along.
    todo: Vec<(u64, u64)>,
    pos: usize,
    /// Byte ranges the guest wrote since this round began.
    written: Vec<(u64, u64)>,
}

/// What a finished transfer cost.
pub struct Summary {
    /// Pre-copy rounds (the first sends all of RAM).
    pub rounds: u32,
    /// Bytes of pages sent (zero pages cost 5 bytes).
    pub bytes: u64,
    /// The guest's pause for the stop-and-copy.
    pub pause: Duration,
    /// The whole transfer.
    pub total: Duration,
    /// Steps it took (the guest ran between two)…
    pub steps: u32,
    /// …and the time spent in them.
    pub sending: Duration,
}

/// The primary's side of a transfer in progress.
pub struct Sender {
    out: BufWriter<Box<dyn Channel>>,
    round: u32,
    todo: Vec<u32>,
    pos: usize,
    bytes: u64,
    started: Instant,
    steps: u32,
    sending: Duration,
    disk: Option<DiskSource>,
    /// The backup's node id.
    pub backup: String,
    /// The generation the pair will be.
    pub generation: u64,
}

impl Sender {
    /// The pre-copy round under way and the bytes sent so far.
    pub fn progress(&self) -> (u32, u64) {
        (self.round, self.bytes)
    }

    /// Offer the guest and start round 0 (all of RAM).
    /// With `disk`, the image at that path goes along (a backup with its own copy).
    pub fn start(
        stream: Box<dyn Channel>,
        backup: String,
        offer: Offer,
        disk: Option<&Path>,
        machine: &mut Machine,
    ) -> Result<Sender> {
        let generation = offer.generation;
        let disk = match disk {
            None => None,
            Some(path) => {
                let file = File::open(path)
                    .with_context(|| format!("cannot read the disk '{}'", path.display()))?;
                let size = file.metadata()?.len();
                Some(DiskSource {
                    file,
                    todo: vec![(0, size)],
                    pos: 0,
                    written: Vec::new(),
                })
            }
        };
        let mut out = BufWriter::with_capacity(1 << 20, stream);
        wire::send(&mut out, &Message::Offer(offer))?;
        out.flush()?;
        machine.take_dirty_pages();
        Ok(Sender {
            out,
            round: 0,
            todo: (0..machine.ram_pages()).collect(),
            pos: 0,
            bytes: 0,
            started: Instant::now(),
            steps: 0,
            sending: Duration::ZERO,
            disk,
            backup,
            generation,
        })
    }

    /// The guest is writing `len` bytes of its disk at `offset` (sent again later).
    pub fn disk_written(&mut self, offset: u64, len: u64) {
        if let Some(d) = &mut self.disk {
            d.written.push((offset, len));
        }
    }

    /// Send disk ranges (from `todo[pos..]`) until about `budget` bytes went out.
    fn send_disk(&mut self, budget: &mut usize) -> Result<()> {
        let Some(d) = &mut self.disk else {
            return Ok(());
        };
        while d.pos < d.todo.len() && *budget > 0 {
            let (offset, len) = d.todo[d.pos];
            let n = len.min(DISK_CHUNK);
            let mut buf = vec![0u8; n as usize];
            d.file
                .read_exact_at(&mut buf, offset)
                .context("reading the disk image")?;
            let data = (!buf.iter().all(|&b| b == 0)).then_some(buf);
            self.bytes += 13 + data.as_ref().map_or(0, |b| b.len() as u64);
            wire::send(&mut self.out, &Message::Disk(offset, n as u32, data))?;
            *budget = budget.saturating_sub(n as usize);
            if n == len {
                d.pos += 1;
            } else {
                d.todo[d.pos] = (offset + n, len - n);
            }
        }
        Ok(())
    }

    fn disk_pending(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| d.pos < d.todo.len())
    }

    fn send_pages(&mut self, machine: &Machine, pages: &[u32]) -> Result<()> {
        let mut msg = Vec::with_capacity(pages.len());
        for &i in pages {
            let data = machine.ram_page(i).context("page index out of range")?;
            if data.iter().all(|&b| b == 0) {
                msg.push((i, None));
                self.bytes += 5;
            } else {
                msg.push((i, Some(data.to_vec())));
                self.bytes += 5 + PAGE_SIZE as u64;
            }
        }
        wire::send(&mut self.out, &Message::Pages(msg))
    }

    /// Send the next batch of pages while the guest runs between steps. Returns the
    /// summary when the transfer is complete: the guest did not run during the last
    /// step (the stop-and-copy), and the log may start at its current state.
    pub fn step(&mut self, machine: &mut Machine) -> Result<Option<Summary>> {
        let began = Instant::now();
        let done = self.step_inner(machine);
        self.steps += 1;
        self.sending += began.elapsed();
        let mut summary = done?;
        if let Some(s) = &mut summary {
            s.steps = self.steps;
            s.sending = self.sending;
        }
        Ok(summary)
    }

    fn step_inner(&mut self, machine: &mut Machine) -> Result<Option<Summary>> {
        let mut budget = STEP_BYTES;
        self.send_disk(&mut budget)?;
        while self.pos < self.todo.len() && budget > 0 {
            let end = (self.pos + 256).min(self.todo.len());
            let batch: Vec<u32> = self.todo[self.pos..end].to_vec();
            self.send_pages(machine, &batch)?;
            self.pos = end;
            budget = budget.saturating_sub(batch.len() * PAGE_SIZE);
        }
        self.out.flush()?;
        if self.pos < self.todo.len() || self.disk_pending() {
            return Ok(None);
        }
        let dirty = machine.take_dirty_pages();
        let written = self
            .disk
            .as_mut()
            .map(|d| std::mem::take(&mut d.written))
            .unwrap_or_default();
        let written_bytes: u64 = written.iter().map(|(_, l)| l).sum();
        if (dirty.len() > STOP_COPY_PAGES || written_bytes > STOP_COPY_DISK)
            && self.round + 1 < MAX_ROUNDS
        {
            if let Some(d) = &mut self.disk {
                d.todo = written;
                d.pos = 0;
            }
            self.round += 1;
            eprintln!(
                "ftvm: pre-copy to {}: round {} resends {} pages dirtied meanwhile",
                self.backup,
                self.round + 1,
                dirty.len()
            );
            self.todo = dirty;
            self.pos = 0;
            return Ok(None);
        }
        // Stop and copy: the guest does not run until this returns.
        let paused = Instant::now();
        for chunk in dirty.chunks(256) {
            self.send_pages(machine, chunk)?;
        }
        if let Some(d) = &mut self.disk {
            d.todo = written;
            d.pos = 0;
            let mut unlimited = usize::MAX;
            self.send_disk(&mut unlimited)?;
        }
        wire::send(&mut self.out, &Message::Final(machine.save_without_ram()))?;
        self.out.flush()?;
        Ok(Some(Summary {
            rounds: self.round + 1,
            bytes: self.bytes,
            pause: paused.elapsed(),
            total: self.started.elapsed(),
            steps: 0,
            sending: Duration::ZERO,
        }))
    }

    /// The channel, for the log that follows.
    pub fn into_writer(self) -> BufWriter<Box<dyn Channel>> {
        self.out
    }
}

/// The backup's side: apply pages to `machine` (built from the offered configuration)
/// until the final state arrives; returns the machine in the primary's state.
/// Disk pieces go to `disk` (the backup's own copy), if it has one.
pub fn receive(
    r: &mut impl Read,
    mut machine: Machine,
    mut disk: Option<&File>,
    progress: &mut dyn FnMut(u64),
) -> Result<Machine> {
    let mut bytes = 0u64;
    let disk_len = match disk {
        Some(f) => f.metadata().context("sizing the disk copy")?.len(),
        None => 0,
    };
    loop {
        match wire::recv(r, PAGE_SIZE)? {
            Message::Pages(pages) => {
                for (i, data) in pages {
                    let zero;
                    let page = match &data {
                        Some(d) => d.as_slice(),
                        None => {
                            zero = [0u8; PAGE_SIZE];
                            &zero[..]
                        }
                    };
                    if !machine.set_ram_page(i, page) {
                        bail!("the primary sent page {i}, outside this machine's RAM");
                    }
                    bytes += 5 + data.map_or(0, |d| d.len() as u64);
                }
                progress(bytes);
            }
            Message::Disk(offset, len, data) => {
                let Some(f) = &mut disk else {
                    bail!("the primary sent disk contents to a backup that shares its disk");
                };
                if offset
                    .checked_add(u64::from(len))
                    .is_none_or(|end| end > disk_len)
                {
                    bail!("the primary sent {len} disk bytes at {offset}, outside the disk");
                }
                let zeros;
                let data = match &data {
                    Some(d) => d.as_slice(),
                    None => {
                        zeros = vec![0u8; len as usize];
                        &zeros
                    }
                };
                f.write_all_at(data, offset)
                    .context("writing the disk copy")?;
                bytes += 13 + len as u64;
                progress(bytes);
            }
            Message::Final(state) => {
                if let Some(f) = disk {
                    f.sync_all().context("syncing the disk copy")?;
                }
                return machine
                    .restore_keeping_ram(&state)
                    .context("the primary's machine state cannot be restored here");
            }
            _ => bail!("unexpected message during the state transfer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftvm_machine::boot::{DeviceConfig, DiskConfig};
    use ftvm_machine::testutil::{config, elf};

    const SECTORS: u64 = 64;

    fn backup_with_disk(name: &str) -> (Machine, File) {
        let mut cfg = config(elf(&[0x6f, 0, 0, 0]));
        cfg.devices = DeviceConfig {
            disk: Some(DiskConfig {
                sectors: SECTORS,
                read_only: false,
            }),
            ..Default::default()
        };
        let path = std::env::temp_dir().join(format!("ftvm-{name}-{}", std::process::id()));
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f.set_len(SECTORS * 512).unwrap();
        (Machine::new(&cfg).unwrap(), f)
    }

    /// A disk piece that reaches past the backup's disk is refused: the copy keeps the
    /// guest's size (the ft_wire fuzz target's disk check).
    #[test]
    fn a_disk_piece_outside_the_disk_is_refused() {
        for (offset, len) in [
            (SECTORS * 512 - 256, 512),
            (u64::MAX - 100, 512),
            (1 << 40, 0),
        ] {
            let (machine, f) = backup_with_disk("disk-outside");
            let mut stream = Vec::new();
            let data = (len > 0).then(|| vec![7u8; len as usize]);
            wire::send(&mut stream, &Message::Disk(offset, len, data)).unwrap();
            let err = receive(&mut &stream[..], machine, Some(&f), &mut |_| {})
                .err()
                .expect("refused");
            assert!(err.to_string().contains("outside the disk"), "{err:#}");
            assert_eq!(f.metadata().unwrap().len(), SECTORS * 512);
        }
    }
}
