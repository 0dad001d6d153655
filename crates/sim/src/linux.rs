//! The real guest in the simulator: the machine (crates/machine) running the Linux
//! counter service (guest/linux, `mode=disk`: real TCP on port 7777, the counter kept
//! on virtio-blk), restored from a snapshot taken once the service listens.
//!
//! Every node boot restores that snapshot; a new backup receives the primary's machine
//! as snapshot bytes. Frames are the NIC's inputs and outputs, disk requests go to the
//! simulated shared disk and their completions come back as logged inputs, entropy is
//! answered by the node's world, and guest time follows simulated time through logged
//! clock events (DESIGN.md §2), as the live driver keeps it on host time.

use crate::guest::{Effect, Guest, Landed, Params, Route, SharedDisk, DISK, ENTROPY};
use crate::tcp::{TcpClient, CLIENT_MAC_PREFIX};
use ftvm_machine::boot::{DeviceConfig, DiskConfig};
use ftvm_machine::devices::virtio::{BlkError, BlkRequest, BlkRequestKind};
use ftvm_machine::{BootConfig, Engine, Event, Exit, Firmware, ICount, Machine, OutputKind};
use ftvm_replica::{OutputClass, RequestId, Time, Timing};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::OnceLock;

/// The guest NIC's MAC address (the binary's, QEMU's default).
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// The guest's address (guest/linux/init/net.c).
pub const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
/// The counter service's port.
pub const GUEST_PORT: u16 = 7777;
/// Guest RAM (MiB): what the counter needs, small so snapshots and hashes are cheap.
const MEMORY_MIB: u64 = 32;
/// Guest instructions per 10 MHz `mtime` tick (the binary's default).
const INSNS_PER_TICK: u64 = 30;
/// The shared disk's size in sectors (the counter uses sector 0).
const DISK_SECTORS: u64 = 2048;
/// The kernel command line.
const CMDLINE: &str = "console=ttyS0 mode=disk";
/// Boot gives up after this many instructions without the service listening.
const BOOT_LIMIT: u64 = 2_000_000_000;

/// What every node boot starts from.
pub struct Image {
    /// `Machine::save` bytes of the guest listening on its port.
    snapshot: Vec<u8>,
    /// The disk as the boot left it.
    disk: BTreeMap<u64, Vec<u8>>,
    /// Guest time (ticks) at the snapshot: simulated time 0.
    mtime0: u64,
    /// The engine every node runs.
    engine: Engine,
}

/// The machine in the cluster.
pub struct Linux {
    m: Machine,
    mtime0: u64,
    engine: Engine,
    /// Outputs taken from the machine while it ran, not yet taken by the node.
    outputs: Vec<(u64, OutputKind)>,
    /// Why the guest cannot go on (power-off, reset, a trap loop), if it cannot.
    pub stuck: Option<String>,
}

/// A machine moving to a new backup: its snapshot.
#[derive(Clone)]
pub struct Snapshot {
    bytes: Rc<Vec<u8>>,
    mtime0: u64,
    engine: Engine,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Snapshot({} bytes)", self.bytes.len())
    }
}

/// A shared disk answer: the error (none on success) and the data read.
pub type DiskAnswer = (Option<BlkError>, Vec<u8>);

/// The shared disk: 512-byte sectors, zero where never written.
#[derive(Debug, Clone, Default)]
pub struct Disk(BTreeMap<u64, Vec<u8>>);

impl Disk {
    fn read(&self, sector: u64, len: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(len as usize);
        for s in sector..sector + (len as u64).div_ceil(512) {
            match self.0.get(&s) {
                Some(d) => out.extend_from_slice(d),
                None => out.extend_from_slice(&[0; 512]),
            }
        }
        out.truncate(len as usize);
        out
    }

    fn write(&mut self, sector: u64, data: &[u8]) {
        for (i, chunk) in data.chunks(512).enumerate() {
            let mut d = chunk.to_vec();
            d.resize(512, 0);
            self.0.insert(sector + i as u64, d);
        }
    }

    /// The counter in sector 0 (guest/linux/init/disk.c: magic, value, FNV check), or
    /// 0 if there is no valid header.
    pub fn counter(&self) -> u64 {
        let s = self.read(0, 512);
        let check = u64::from_le_bytes(s[16..24].try_into().expect("8 bytes"));
        if &s[..8] != b"FTVMCTR1" || check != fnv(&s[..16]) {
            return 0;
        }
        u64::from_le_bytes(s[8..16].try_into().expect("8 bytes"))
    }
}

impl SharedDisk<BlkRequest, DiskAnswer> for Disk {
    fn apply(&mut self, req: &BlkRequest) -> Landed<DiskAnswer> {
        match &req.kind {
            BlkRequestKind::Read { sector, len } => Landed {
                answer: (None, self.read(*sector, *len)),
                wrote: None,
            },
            BlkRequestKind::Write { sector, data } => {
                self.write(*sector, data);
                Landed {
                    answer: (None, Vec::new()),
                    wrote: Some(fnv(data) ^ sector),
                }
            }
            BlkRequestKind::Flush => Landed {
                answer: (None, Vec::new()),
                wrote: None,
            },
        }
    }

    fn failed(_: &BlkRequest) -> DiskAnswer {
        (Some(BlkError::Io), Vec::new())
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Linux {
    fn from_snapshot(bytes: &[u8], mtime0: u64, engine: Engine) -> Linux {
        let mut m = Machine::restore(bytes).expect("the guest's own snapshot restores");
        m.set_engine(engine);
        Linux {
            m,
            mtime0,
            engine,
            outputs: Vec::new(),
            stuck: None,
        }
    }

    /// Simulated time `now` (µs) as guest `mtime` ticks.
    fn ticks_at(&self, now: u64) -> u64 {
        self.mtime0 + now * 10
    }
}

impl Guest for Linux {
    type Input = Event;
    type Output = OutputKind;
    type Frame = Vec<u8>;
    type DiskReq = BlkRequest;
    type DiskAns = DiskAnswer;
    type Disk = Disk;
    type Client = TcpClient;
    type Transfer = Snapshot;
    type Image = Image;

    const PARAMS: Params = Params {
        speed: 50_000,
        fault_end: 500_000,
        recovery: 1_500_000,
        end: 2_500_000,
        hash_every: 5_000_000,
        max_lag: 5_000_000,
        // The binary's clocks, scaled down about three times.
        timing: Timing {
            heartbeat: Time(5_000),
            ack_every: Time(2_000),
            timeout: Time(100_000),
            join_timeout: Time(1_000_000),
            arbiter_retry: Time(30_000),
            uncertain: Time(50_000),
            lease: Time(20_000),
        },
    };
    const NAME: &'static str = "linux";

    fn boot(image: &Image) -> Linux {
        Linux::from_snapshot(&image.snapshot, image.mtime0, image.engine)
    }

    fn disk(image: &Image) -> Disk {
        Disk(image.disk.clone())
    }

    fn icount(&self) -> u64 {
        self.m.icount().0
    }

    fn run(&mut self, until: u64) -> bool {
        if self.stuck.is_some() {
            return false;
        }
        loop {
            let exit = self.m.run(ICount(until));
            self.outputs.extend(
                self.m
                    .take_outputs()
                    .into_iter()
                    .map(|o| (o.icount.0, o.kind)),
            );
            match exit {
                Exit::Until => return true,
                Exit::Output => continue,
                Exit::Idle => return false,
                other => {
                    self.stuck = Some(format!("{other:?}"));
                    return false;
                }
            }
        }
    }

    fn inject(&mut self, input: &Event) {
        self.m.inject(input);
    }

    fn take_outputs(&mut self) -> Vec<(u64, OutputKind)> {
        std::mem::take(&mut self.outputs)
    }

    fn state_hash(&self) -> u64 {
        let h = self.m.state_hash();
        (h as u64) ^ ((h >> 64) as u64)
    }

    fn transfer(&self) -> Snapshot {
        Snapshot {
            bytes: Rc::new(self.m.save()),
            mtime0: self.mtime0,
            engine: self.engine,
        }
    }

    fn receive(t: Snapshot) -> Linux {
        Linux::from_snapshot(&t.bytes, t.mtime0, t.engine)
    }

    fn counter(&self, disk: &Disk) -> u64 {
        disk.counter()
    }

    fn clock(&self, now: u64, slack: u64) -> Option<Event> {
        let (sim, guest) = (self.ticks_at(now), self.m.mtime());
        (sim > guest + slack * 10).then(|| Event::ClockAdvance { ticks: sim - guest })
    }

    fn wake_at(&self) -> Option<u64> {
        let at = self.m.mtime().saturating_add(self.m.idle_ticks()?);
        Some(at.saturating_sub(self.mtime0).div_ceil(10))
    }

    fn digest(out: &OutputKind) -> u64 {
        match out {
            OutputKind::Console(b) => fnv(b) ^ 1,
            OutputKind::NetFrame(f) => fnv(f) ^ 2,
            OutputKind::Disk(r) => {
                let body = match &r.kind {
                    BlkRequestKind::Read { sector, len } => sector ^ (*len as u64) << 40,
                    BlkRequestKind::Write { sector, data } => sector ^ fnv(data),
                    BlkRequestKind::Flush => 0xf1,
                };
                fnv(&r.id.to_le_bytes()) ^ body.rotate_left(7) ^ 3
            }
            OutputKind::EntropyRequest { id, len } => fnv(&id.to_le_bytes()) ^ *len as u64 ^ 4,
        }
    }

    fn effect(out: &OutputKind) -> Effect<Vec<u8>, BlkRequest> {
        match out {
            OutputKind::NetFrame(f) => Effect::Frame(f.clone()),
            OutputKind::Disk(r) => Effect::Disk(r.id, r.clone()),
            OutputKind::EntropyRequest { id, len } => Effect::Entropy(*id, *len),
            OutputKind::Console(_) => Effect::Nothing,
        }
    }

    fn class(out: &OutputKind) -> OutputClass {
        match out {
            OutputKind::NetFrame(_) => OutputClass::Frame,
            OutputKind::Disk(r) => OutputClass::Request(RequestId {
                device: DISK,
                id: r.id,
            }),
            OutputKind::EntropyRequest { id, .. } => OutputClass::Request(RequestId {
                device: ENTROPY,
                id: *id,
            }),
            OutputKind::Console(_) => OutputClass::Other,
        }
    }

    fn route(frame: &Vec<u8>) -> Route {
        match frame.get(..6) {
            Some([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) => Route::All,
            Some(dst) if dst[..5] == CLIENT_MAC_PREFIX => Route::Client(dst[5] as u32),
            _ => Route::Drop,
        }
    }

    fn frame_input(frame: Vec<u8>) -> Event {
        Event::NetFrame(frame)
    }

    fn disk_input(id: u64, (error, data): DiskAnswer) -> Event {
        Event::DiskDone { id, error, data }
    }

    fn entropy_input(id: u64, bytes: Vec<u8>) -> Event {
        Event::Entropy { id, bytes }
    }

    fn answers(input: &Event) -> Option<RequestId> {
        match input {
            Event::DiskDone { id, .. } => Some(RequestId {
                device: DISK,
                id: *id,
            }),
            Event::Entropy { id, .. } => Some(RequestId {
                device: ENTROPY,
                id: *id,
            }),
            _ => None,
        }
    }
}

// ---- the boot image ----

/// Where the guest build lives: `FTVM_GUEST_DIR`, else `<repo>/target/guest`.
pub fn guest_dir() -> PathBuf {
    match std::env::var_os("FTVM_GUEST_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/guest"),
    }
}

/// The engine the nodes run: `FTVM_ENGINE` (`interp` or `jit`), the interpreter by
/// default (no compile cost per restored node).
fn engine() -> Engine {
    std::env::var("FTVM_ENGINE")
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(Engine::Interp)
}

/// The boot image, made once per process by booting the guest (0.4 s). It is not
/// cached on disk: a snapshot from an older build of the machine would still restore,
/// and the simulation would then test a state today's machine never reaches.
pub fn image() -> Result<&'static Image, String> {
    static IMAGE: OnceLock<Result<Image, String>> = OnceLock::new();
    IMAGE.get_or_init(load_image).as_ref().map_err(Clone::clone)
}

fn load_image() -> Result<Image, String> {
    let dir = guest_dir();
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| {
            format!(
                "the Linux guest build is missing: cannot read {} ({e}); build it with guest/linux/build.sh (or point FTVM_GUEST_DIR at its output)",
                p.display()
            )
        })
    };
    let (kernel, initrd) = (read("Image")?, read("initramfs.cpio")?);
    boot(kernel, initrd, engine())
}

/// Boot the counter in virtual time (guest time jumps to its next timer when it
/// idles) until it listens and waits in `poll`.
fn boot(kernel: Vec<u8>, initrd: Vec<u8>, engine: Engine) -> Result<Image, String> {
    let cfg = BootConfig {
        memory_mib: MEMORY_MIB,
        insns_per_tick: INSNS_PER_TICK,
        firmware: Firmware::BuiltinSbi,
        kernel,
        initrd: Some(initrd),
        cmdline: CMDLINE.into(),
        devices: DeviceConfig {
            disk: Some(DiskConfig {
                sectors: DISK_SECTORS,
                read_only: false,
            }),
            net: Some(GUEST_MAC),
            rng: true,
        },
    };
    let mut m = Machine::new(&cfg).map_err(|e| format!("cannot build the guest: {e}"))?;
    m.set_engine(engine);
    let mut disk = Disk::default();
    let mut console = Vec::new();
    let mut listening = false;
    loop {
        if m.icount().0 > BOOT_LIMIT {
            return Err(format!(
                "the Linux guest did not start its counter service within {BOOT_LIMIT} instructions; console:\n{}",
                String::from_utf8_lossy(&console)
            ));
        }
        let exit = m.run(ICount(BOOT_LIMIT + 1));
        for out in m.take_outputs() {
            match out.kind {
                OutputKind::Console(b) => console.extend_from_slice(&b),
                OutputKind::NetFrame(_) => {}
                OutputKind::Disk(req) => {
                    let l = disk.apply(&req);
                    let (error, data) = l.answer;
                    m.inject(&Event::DiskDone {
                        id: req.id,
                        error,
                        data,
                    });
                }
                OutputKind::EntropyRequest { id, len } => m.inject(&Event::Entropy {
                    id,
                    bytes: vec![0x5a; len as usize],
                }),
            }
        }
        if !listening && find(&console, b"counter: listening") {
            listening = true;
        }
        match exit {
            Exit::Idle if listening => break,
            Exit::Idle => match m.idle_ticks() {
                Some(ticks) => m.inject(&Event::ClockAdvance { ticks }),
                None => return Err("the Linux guest idles with no timer during boot".into()),
            },
            Exit::Output | Exit::Until => {}
            other => {
                return Err(format!(
                    "the Linux guest stopped during boot ({other:?}); console:\n{}",
                    String::from_utf8_lossy(&console)
                ))
            }
        }
    }
    Ok(Image {
        snapshot: m.save(),
        disk: disk.0,
        mtime0: m.mtime(),
        engine,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
