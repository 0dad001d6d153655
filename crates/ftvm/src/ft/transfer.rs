//! Live state transfer (DESIGN.md §4 "Restoring redundancy", after VMware's FT
//! VMotion): iterative pre-copy of guest RAM while the primary keeps running, then a
//! short stop-and-copy of the pages still dirty, the CPU and the devices.

use super::wire::{self, Message, Offer};
use anyhow::{bail, Context, Result};
use ftvm_machine::{Machine, PAGE_SIZE};
use std::io::{BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Page bytes sent per step (between two slices of guest execution).
const STEP_BYTES: usize = 4 << 20;
/// Stop and copy once a round leaves at most this many dirty pages…
const STOP_COPY_PAGES: usize = 256;
/// …or after this many rounds (a guest that dirties memory faster than we send it).
const MAX_ROUNDS: u32 = 8;

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
}

/// The primary's side of a transfer in progress.
pub struct Sender {
    out: BufWriter<TcpStream>,
    round: u32,
    todo: Vec<u32>,
    pos: usize,
    bytes: u64,
    started: Instant,
    /// The backup's node id.
    pub backup: String,
    /// The generation the pair will be.
    pub generation: u64,
}

impl Sender {
    /// Offer the guest and start round 0 (all of RAM).
    pub fn start(
        stream: TcpStream,
        backup: String,
        offer: Offer,
        machine: &mut Machine,
    ) -> Result<Sender> {
        let generation = offer.generation;
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
            backup,
            generation,
        })
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
        let mut budget = STEP_BYTES;
        while self.pos < self.todo.len() && budget > 0 {
            let end = (self.pos + 256).min(self.todo.len());
            let batch: Vec<u32> = self.todo[self.pos..end].to_vec();
            self.send_pages(machine, &batch)?;
            self.pos = end;
            budget = budget.saturating_sub(batch.len() * PAGE_SIZE);
        }
        self.out.flush()?;
        if self.pos < self.todo.len() {
            return Ok(None);
        }
        let dirty = machine.take_dirty_pages();
        if dirty.len() > STOP_COPY_PAGES && self.round + 1 < MAX_ROUNDS {
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
        wire::send(&mut self.out, &Message::Final(machine.save_without_ram()))?;
        self.out.flush()?;
        Ok(Some(Summary {
            rounds: self.round + 1,
            bytes: self.bytes,
            pause: paused.elapsed(),
            total: self.started.elapsed(),
        }))
    }

    /// The channel, for the log that follows.
    pub fn into_writer(self) -> BufWriter<TcpStream> {
        self.out
    }
}

/// The backup's side: apply pages to `machine` (built from the offered configuration)
/// until the final state arrives; returns the machine in the primary's state.
pub fn receive(
    r: &mut BufReader<TcpStream>,
    mut machine: Machine,
    progress: &mut dyn FnMut(u64),
) -> Result<Machine> {
    let mut bytes = 0u64;
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
            Message::Final(state) => {
                return machine
                    .restore_keeping_ram(&state)
                    .context("the primary's machine state cannot be restored here");
            }
            _ => bail!("unexpected message during the state transfer"),
        }
    }
}
