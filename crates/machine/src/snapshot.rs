//! Whole-machine snapshots and the state hash (DESIGN.md §1, STYLE.md: one container
//! with magic, version, serde state and CRC).
//!
//! Container: `b"FTVMSNAP"`, format version (u32 LE), payload length (u64 LE),
//! payload (postcard-encoded [`MachineState`]), CRC32C of everything before it (u32 LE).

use crate::bus::Bus;
use crate::clock::Clock;
use crate::cpu::{Hart, HartState};
use crate::devices::clint::Clint;
use crate::devices::plic::Plic;
use crate::devices::sifive_test::SifiveTest;
use crate::devices::uart::Uart16550;
use crate::devices::virtio::{VirtioBlk, VirtioNet, VirtioRng};
use crate::machine::Machine;
use crate::ram::Ram;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"FTVMSNAP";
/// Snapshot format version; bump on any change to [`MachineState`].
pub const FORMAT_VERSION: u32 = 1;
const PAGE: usize = 4096;

/// Problems reading a snapshot; messages read as sentences.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot at all.
    #[error("not an ftvm snapshot (bad magic)")]
    BadMagic,
    /// Written by an incompatible version.
    #[error("snapshot format version {found} is not supported (this ftvm reads version {FORMAT_VERSION})")]
    Version {
        /// Version in the file.
        found: u32,
    },
    /// Shorter than its header says.
    #[error("snapshot is truncated ({0} bytes)")]
    Truncated(usize),
    /// Checksum mismatch.
    #[error("snapshot is corrupt (CRC32C mismatch)")]
    Checksum,
    /// Payload could not be decoded.
    #[error("snapshot payload is malformed: {0}")]
    Decode(String),
}

/// Everything guest-visible, as plain data.
#[derive(Serialize, Deserialize)]
pub struct MachineState {
    hart: HartState,
    clint: Clint,
    plic: Plic,
    uart: Uart16550,
    test: SifiveTest,
    clock: Clock,
    blk: Option<VirtioBlk>,
    net: Option<VirtioNet>,
    rng: Option<VirtioRng>,
    builtin_sbi: bool,
    ram_size: u64,
    /// Non-zero RAM pages: (page index, contents).
    ram_pages: Vec<(u32, serde_bytes::ByteBuf)>,
}

impl Machine {
    fn device_state(&self, with_ram: bool) -> MachineState {
        let ram = self.bus.ram.as_slice();
        let ram_pages = if with_ram {
            ram.chunks(PAGE)
                .enumerate()
                .filter(|(_, p)| p.iter().any(|&b| b != 0))
                .map(|(i, p)| (i as u32, serde_bytes::ByteBuf::from(p.to_vec())))
                .collect()
        } else {
            Vec::new()
        };
        MachineState {
            // The x0 write sink is scratch, not state: `Regs` serializes x0..x31 only.
            hart: self.hart.s.clone(),
            clint: self.bus.clint.clone(),
            plic: self.bus.plic.clone(),
            uart: self.bus.uart.clone(),
            test: self.bus.test.clone(),
            clock: self.bus.clock.clone(),
            blk: self.bus.blk.clone(),
            net: self.bus.net.clone(),
            rng: self.bus.rng.clone(),
            builtin_sbi: self.builtin_sbi,
            ram_size: self.bus.ram.size(),
            ram_pages,
        }
    }

    /// A 128-bit hash (XXH3) of every bit of guest-visible state: hart, CSRs, devices,
    /// clock and all of RAM. Equal states hash equal on any host.
    pub fn state_hash(&self) -> u128 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let meta = postcard::to_stdvec(&self.device_state(false)).expect("state encodes");
        h.update(&meta);
        h.update(self.bus.ram.as_slice());
        h.digest128()
    }

    /// Save the whole machine as one versioned, checksummed container.
    pub fn save(&self) -> Vec<u8> {
        let payload = postcard::to_stdvec(&self.device_state(true)).expect("state encodes");
        let mut out = Vec::with_capacity(payload.len() + 24);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&payload);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Rebuild a machine from [`Machine::save`] output.
    pub fn restore(bytes: &[u8]) -> Result<Machine, SnapshotError> {
        if bytes.len() < 24 {
            return Err(if bytes.starts_with(&MAGIC[..bytes.len().min(8)]) {
                SnapshotError::Truncated(bytes.len())
            } else {
                SnapshotError::BadMagic
            });
        }
        if &bytes[..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        if version != FORMAT_VERSION {
            return Err(SnapshotError::Version { found: version });
        }
        let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
        let total = 20u64
            .checked_add(len)
            .and_then(|n| n.checked_add(4))
            .ok_or(SnapshotError::Truncated(bytes.len()))?;
        if (bytes.len() as u64) < total {
            return Err(SnapshotError::Truncated(bytes.len()));
        }
        let body = &bytes[..20 + len as usize];
        let crc = u32::from_le_bytes(bytes[body.len()..body.len() + 4].try_into().unwrap());
        if crc32c::crc32c(body) != crc {
            return Err(SnapshotError::Checksum);
        }
        let st: MachineState =
            postcard::from_bytes(&body[20..]).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        if !st.ram_size.is_multiple_of(PAGE as u64) || st.ram_size > (64 << 30) {
            return Err(SnapshotError::Decode(format!(
                "bad RAM size {}",
                st.ram_size
            )));
        }
        if st.hart.csr.pmpaddr.len() != 64 {
            return Err(SnapshotError::Decode("bad PMP register count".into()));
        }
        if !st.clock.is_valid() {
            return Err(SnapshotError::Decode("bad clock rate".into()));
        }
        let mut ram = Ram::new(st.ram_size);
        for (i, page) in &st.ram_pages {
            let off = *i as usize * PAGE;
            if page.len() != PAGE || off + PAGE > ram.as_slice().len() {
                return Err(SnapshotError::Decode(format!("bad RAM page {i}")));
            }
            ram.as_mut_slice()[off..off + PAGE].copy_from_slice(page);
        }
        let mut bus = Bus::new(0, 1);
        bus.ram = ram;
        bus.clint = st.clint;
        bus.plic = st.plic;
        bus.uart = st.uart;
        bus.test = st.test;
        bus.clock = st.clock;
        bus.blk = st.blk;
        bus.net = st.net;
        bus.rng = st.rng;
        let mut hart = Hart::from_state(st.hart);
        hart.sbi_intercept = st.builtin_sbi;
        Ok(Machine::from_parts(hart, bus, st.builtin_sbi))
    }
}

#[cfg(test)]
mod hostile_tests {
    use super::*;
    use crate::boot::{DeviceConfig, DiskConfig};
    use crate::testutil::{self as enc, Asm};
    use crate::ICount;

    /// xorshift64: deterministic pseudo-random numbers without a dependency.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Recompute the container's CRC, so mutations reach the decoder and the machine.
    fn reseal(bytes: &mut [u8]) {
        let n = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
    }

    /// A snapshot crafted to pass the checksum but carrying hostile state must be
    /// refused or, if accepted, run without panicking: restore validates what the
    /// machine relies on (STYLE.md: guest input never panics the host).
    #[test]
    fn mutated_snapshots_with_valid_checksums_never_panic() {
        let mut a = Asm::new();
        let top = a.label();
        a.bind(top);
        a.i(enc::addi(5, 5, 1));
        a.j(top);
        let mut cfg = crate::testutil::config(crate::testutil::elf(&a.bytes()));
        cfg.devices = DeviceConfig {
            disk: Some(DiskConfig {
                sectors: 64,
                read_only: false,
            }),
            net: Some([2, 0, 0, 0, 0, 1]),
            rng: true,
        };
        let mut m = Machine::new(&cfg).map_err(|e| e.to_string()).unwrap();
        m.run(ICount(1000));
        let good = m.save();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let header = 20;
        // Mutate everything before the RAM pages (the last field).
        let meta_len = postcard::to_stdvec(&m.device_state(false)).unwrap().len();
        let meta_end = header + meta_len;
        for _ in 0..3000 {
            let mut bad = good.clone();
            for _ in 0..1 + rng(&mut seed) % 4 {
                let at = header + (rng(&mut seed) as usize) % (meta_end - header);
                bad[at] = rng(&mut seed) as u8;
            }
            reseal(&mut bad);
            let outcome = std::panic::catch_unwind(move || {
                if let Ok(mut m) = Machine::restore(&bad) {
                    let until = m.icount().0.saturating_add(2000);
                    for _ in 0..16 {
                        if !matches!(m.run(ICount(until)), crate::Exit::Output) {
                            break;
                        }
                        m.take_outputs();
                    }
                    m.state_hash();
                }
            });
            assert!(outcome.is_ok(), "a mutated snapshot panicked the host");
        }
    }
}
