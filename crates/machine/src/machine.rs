//! The machine: one hart, RAM and devices, driven through the determinism API
//! (DESIGN.md §1): `run(until)`, `inject(event)`, `state_hash()`, `save()`/`restore()`.

use crate::boot::{self, BootConfig, BootError, Firmware, KERNEL_OFFSET};
use crate::bus::Bus;
use crate::cpu::csr::{mstatus, MENVCFG_STCE};
use crate::cpu::jit::{Engine, JitStats, DEFAULT_CODE_CACHE, DEFAULT_HOT};
use crate::cpu::trap::{cause, irq, Priv};
use crate::cpu::Hart;
use crate::devices::layout::RAM_BASE;
use crate::devices::sifive_test::PowerRequest;
use crate::devices::virtio::{Blk, BlkError, BlkRequest, Net, Rng, VirtioMmio};
use crate::ram::Ram;
use crate::sbi;
use crate::types::ICount;
use serde::{Deserialize, Serialize};

/// Why [`Machine::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The instruction count reached `until`.
    Until,
    /// The hart waits in WFI with no interrupt that could wake it pending; only an
    /// event (input or clock) can make progress. See [`Machine::idle_ticks`].
    Idle,
    /// Outputs are ready: collect them with [`Machine::take_outputs`].
    Output,
    /// The guest powered off with this exit code.
    PowerOff {
        /// 0 for a clean power-off.
        exit_code: u32,
    },
    /// The guest asked for a reset.
    Reset,
    /// The hart can never make progress: fetching its trap handler faults at the
    /// handler's own address (e.g. no trap vector was set up).
    TrapLoop {
        /// The trap cause (an instruction access or page fault).
        cause: u64,
        /// The handler address that cannot be fetched.
        pc: u64,
    },
    /// With the built-in SBI, the hart trapped into M-mode, where no firmware is: the
    /// guest cannot continue (typically an M-mode program started without `--bios none`).
    FirmwareTrap {
        /// `mcause` of the trap.
        cause: u64,
        /// `mepc`: where it happened.
        pc: u64,
    },
}

/// A non-deterministic input, delivered at the current instruction count (the input
/// door, DESIGN.md §1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Bytes typed on the console (UART receive).
    ConsoleInput(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Guest time jumps forward by this many `mtime` ticks (DESIGN.md §2).
    ClockAdvance {
        /// Ticks of the 10 MHz timebase.
        ticks: u64,
    },
    /// An Ethernet frame arrives at the virtio-net NIC (dropped if the guest has posted
    /// no receive buffer).
    NetFrame(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The host finished a disk request ([`OutputKind::Disk`]): read data (empty for
    /// writes and flushes) or the error the guest should see.
    DiskDone {
        /// The request's id.
        id: u64,
        /// `None` on success.
        error: Option<BlkError>,
        /// Data read.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Random bytes for an entropy request ([`OutputKind::EntropyRequest`]).
    Entropy {
        /// The request's id.
        id: u64,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
}

/// An externally visible effect (the output door, DESIGN.md §1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Instruction count at which the output was produced (at most; several may be
    /// coalesced up to this count).
    pub icount: ICount,
    /// What it is.
    pub kind: OutputKind,
}

/// Kinds of output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputKind {
    /// Console bytes (UART transmit or SBI console).
    Console(#[serde(with = "serde_bytes")] Vec<u8>),
    /// An Ethernet frame the guest transmitted.
    NetFrame(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A disk request for the host; answer with [`Event::DiskDone`].
    Disk(BlkRequest),
    /// The guest wants `len` random bytes; answer with [`Event::Entropy`].
    EntropyRequest {
        /// Request id.
        id: u64,
        /// Bytes wanted.
        len: u32,
    },
}

/// The machine.
pub struct Machine {
    pub(crate) hart: Hart,
    pub(crate) bus: Bus,
    pub(crate) builtin_sbi: bool,
    console: Vec<u8>,
    outputs: Vec<Output>,
    code_limit: usize,
    jit_hot: u32,
}

impl Machine {
    /// Build a machine in its initial state from boot files.
    pub fn new(cfg: &BootConfig) -> Result<Machine, BootError> {
        if !(16..=65536).contains(&cfg.memory_mib) {
            return Err(BootError::BadMemory(cfg.memory_mib));
        }
        let ram = Ram::try_new(cfg.memory_mib << 20)
            .map_err(|e| BootError::NoMemory(cfg.memory_mib, e.to_string()))?;
        let mut bus = Bus::new(ram, cfg.insns_per_tick);
        let kernel_base = RAM_BASE + KERNEL_OFFSET;
        let (entry, prv, kernel_end) = match &cfg.firmware {
            Firmware::None => {
                let k = boot::load_image(&mut bus.ram, &cfg.kernel, RAM_BASE, "the kernel", false)?;
                (k.entry, Priv::M, k.end)
            }
            Firmware::BuiltinSbi => {
                let k =
                    boot::load_image(&mut bus.ram, &cfg.kernel, kernel_base, "the kernel", false)?;
                (k.entry, Priv::S, k.end)
            }
            Firmware::External(fw) => {
                let f = boot::load_image(&mut bus.ram, fw, RAM_BASE, "the firmware", true)?;
                let k =
                    boot::load_image(&mut bus.ram, &cfg.kernel, kernel_base, "the kernel", false)?;
                (f.entry, Priv::M, k.end.max(f.end))
            }
        };
        let fdt = boot::place_fdt_and_initrd(&mut bus.ram, cfg, kernel_end)?;
        let dev = &cfg.devices;
        bus.blk = dev
            .disk
            .map(|d| VirtioMmio::new(Blk::new(d.sectors, d.read_only)));
        bus.net = dev.net.map(|mac| VirtioMmio::new(Net::new(mac)));
        bus.rng = dev.rng.then(|| VirtioMmio::new(Rng::new()));
        let mut hart = Hart::new(entry);
        hart.s.csr = crate::cpu::csr::Csrs::reset();
        // As QEMU's reset vector: a0 = hart id, a1 = device tree (a2 = 0: no fw_dynamic info).
        hart.s.x[10] = 0;
        hart.s.x[11] = fdt;
        let builtin_sbi = cfg.firmware == Firmware::BuiltinSbi;
        if builtin_sbi {
            // What an SBI implementation leaves behind before entering S-mode.
            let c = &mut hart.s.csr;
            c.medeleg = (1 << cause::INSN_MISALIGNED)
                | (1 << cause::INSN_ACCESS)
                | (1 << cause::ILLEGAL_INSN)
                | (1 << cause::BREAKPOINT)
                | (1 << cause::LOAD_MISALIGNED)
                | (1 << cause::LOAD_ACCESS)
                | (1 << cause::STORE_MISALIGNED)
                | (1 << cause::STORE_ACCESS)
                | (1 << cause::ECALL_U)
                | (1 << cause::INSN_PAGE_FAULT)
                | (1 << cause::LOAD_PAGE_FAULT)
                | (1 << cause::STORE_PAGE_FAULT);
            c.mideleg = (1 << irq::SSI) | (1 << irq::STI) | (1 << irq::SEI);
            c.menvcfg = MENVCFG_STCE;
            c.mcounteren = 0b111;
            // OpenSBI does the same, so U-mode can read time/cycle/instret (vDSO).
            c.scounteren = 0b111;
            c.mstatus |= (Priv::S as u64) << mstatus::MPP_SHIFT;
            hart.s.prv = prv;
            hart.sbi_intercept = true;
        }
        Ok(Machine::from_parts(hart, bus, builtin_sbi))
    }

    pub(crate) fn from_parts(hart: Hart, bus: Bus, builtin_sbi: bool) -> Machine {
        let mut m = Machine {
            hart,
            bus,
            builtin_sbi,
            console: Vec::new(),
            outputs: Vec::new(),
            code_limit: DEFAULT_CODE_CACHE,
            jit_hot: DEFAULT_HOT,
        };
        m.set_engine(Engine::default());
        // The unit tests run under the engine FTVM_ENGINE names (default: the JIT),
        // compiling every block on its second run.
        #[cfg(test)]
        {
            m.jit_hot = 1;
            let engine = std::env::var("FTVM_ENGINE").map_or(Engine::Jit, |e| {
                e.parse().expect("FTVM_ENGINE is jit or interp")
            });
            m.set_engine(engine);
        }
        m
    }

    /// Choose the engine that runs guest code (the default is [`Engine::Jit`]). The
    /// results are the same under both, so this may change between any two runs.
    pub fn set_engine(&mut self, engine: Engine) {
        self.hart.set_engine(engine, self.code_limit, self.jit_hot);
    }

    /// The engine in use ([`Engine::Interp`] if the JIT was asked for on a host
    /// without a code generator).
    pub fn engine(&self) -> Engine {
        self.hart.engine()
    }

    /// Limit the JIT's code cache to `bytes` (emptying it); takes effect on the JIT.
    pub fn set_code_cache_limit(&mut self, bytes: usize) {
        self.code_limit = bytes;
        if self.engine() == Engine::Jit {
            self.set_engine(Engine::Jit);
        }
    }

    /// Compile a block once it has run `n` times interpreted (at least once); a
    /// tuning knob (tests use 1 to put every block through the compiler). Empties the
    /// code cache.
    pub fn set_jit_threshold(&mut self, n: u32) {
        self.jit_hot = n.max(1);
        if self.engine() == Engine::Jit {
            self.set_engine(Engine::Jit);
        }
    }

    /// The JIT's code-cache figures, when it is in use.
    pub fn jit_stats(&self) -> Option<JitStats> {
        self.hart.jit_stats()
    }

    /// Instructions executed so far.
    pub fn icount(&self) -> ICount {
        ICount(self.hart.s.icount)
    }

    /// Run until the instruction count reaches `until` exactly, or earlier at WFI with
    /// nothing pending, when outputs are ready, or at power-off/reset.
    pub fn run(&mut self, until: ICount) -> Exit {
        self.hart.begin_run();
        loop {
            self.collect_outputs();
            if let Some(p) = self.bus.power.take() {
                return match p {
                    PowerRequest::PowerOff { exit_code } => Exit::PowerOff { exit_code },
                    PowerRequest::Reset => Exit::Reset,
                };
            }
            if !self.outputs.is_empty() {
                return Exit::Output;
            }
            // Stop before the hart does anything at this count (SBI calls, interrupts):
            // an event injected now then acts exactly as one injected after any other
            // exit at this count, which is what makes a replay match its recording.
            if self.hart.s.icount >= until.0 {
                return Exit::Until;
            }
            if self.hart.s.sbi_pending {
                self.hart.s.sbi_pending = false;
                sbi::handle(&mut self.hart, &mut self.bus, &mut self.console);
                continue;
            }
            self.update_interrupts();
            if let Some(i) = self.hart.pending_interrupt() {
                self.hart.take_interrupt(i);
            }
            if self.hart.s.wfi {
                if self.hart.mip() & self.hart.s.csr.mie == 0 {
                    return Exit::Idle;
                }
                self.hart.s.wfi = false;
            }
            let end = until.0.min(self.next_timer_deadline());
            self.bus.attention = false;
            self.hart.run_batch(&mut self.bus, end);
            if self.hart.trap_loop {
                let c = &self.hart.s.csr;
                let cause = if self.hart.s.prv == Priv::M {
                    c.mcause
                } else {
                    c.scause
                };
                return Exit::TrapLoop {
                    cause,
                    pc: self.hart.s.pc,
                };
            }
            if self.builtin_sbi && self.hart.s.prv == Priv::M {
                let c = &self.hart.s.csr;
                return Exit::FirmwareTrap {
                    cause: c.mcause,
                    pc: c.mepc,
                };
            }
        }
    }

    /// Deliver an input event at the current instruction count.
    pub fn inject(&mut self, ev: &Event) {
        match ev {
            Event::ConsoleInput(bytes) => self.bus.uart.push_input(bytes),
            Event::ClockAdvance { ticks } => self.bus.clock.advance(self.hart.s.icount, *ticks),
            // Device DMA below writes guest RAM: an LR reservation does not survive it.
            Event::NetFrame(frame) => {
                self.hart.s.reservation = None;
                if let Some(net) = &mut self.bus.net {
                    net.receive(frame, &mut self.bus.ram);
                }
            }
            Event::DiskDone { id, error, data } => {
                self.hart.s.reservation = None;
                if let Some(blk) = &mut self.bus.blk {
                    let result = match error {
                        None => Ok(data.clone()),
                        Some(e) => Err(*e),
                    };
                    blk.complete(*id, result, &mut self.bus.ram);
                }
            }
            Event::Entropy { id, bytes } => {
                self.hart.s.reservation = None;
                if let Some(rng) = &mut self.bus.rng {
                    rng.complete(*id, bytes, &mut self.bus.ram);
                }
            }
        }
        self.hart.attention = true;
    }

    /// Outputs produced since the last call, in order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        self.collect_outputs();
        std::mem::take(&mut self.outputs)
    }

    /// While idle in WFI: how many ticks until the next timer that could wake the hart
    /// (`None` if no enabled timer is armed). Injecting `ClockAdvance` by this much
    /// wakes it; doing so deterministically is what `ftvm run` does.
    pub fn idle_ticks(&self) -> Option<u64> {
        let now = self.bus.clock.mtime(self.hart.s.icount);
        self.timer_targets()
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_sub(now))
    }

    /// Guest errors the virtio devices counted so far (malformed descriptor chains,
    /// bad requests), with the last one: the guest's fault, never a host panic.
    pub fn device_errors(&self) -> (u64, Option<String>) {
        let b = &self.bus;
        let mut n = 0;
        let mut last = None;
        if let Some(d) = &b.blk {
            n += d.errors();
            last = d.last_error().map(|e| format!("virtio-blk: {e}")).or(last);
        }
        if let Some(d) = &b.net {
            n += d.errors();
            last = d.last_error().map(|e| format!("virtio-net: {e}")).or(last);
        }
        if let Some(d) = &b.rng {
            n += d.errors();
            last = d.last_error().map(|e| format!("virtio-rng: {e}")).or(last);
        }
        (n, last)
    }

    /// The hart's privilege level, for messages: "M-mode", "S-mode" or "U-mode".
    pub fn privilege_name(&self) -> &'static str {
        match self.hart.s.prv {
            Priv::M => "M-mode",
            Priv::S => "S-mode",
            Priv::U => "U-mode",
        }
    }

    /// Bytes the UART's receive FIFO can still take: a console backend delivers no
    /// more than this, so pasted text waits on the host instead of being dropped.
    pub fn console_input_room(&self) -> usize {
        crate::devices::uart::RX_CAPACITY.saturating_sub(self.bus.uart.input_len())
    }

    /// Current guest time in `mtime` ticks.
    pub fn mtime(&self) -> u64 {
        self.bus.clock.mtime(self.hart.s.icount)
    }

    /// The enabled timers' compare values: (M timer, S timer).
    fn timer_targets(&self) -> [Option<u64>; 2] {
        let c = &self.hart.s.csr;
        let m = (c.mie & (1 << irq::MTI) != 0).then(|| self.bus.clint.mtimecmp(0));
        let sstc = c.menvcfg & MENVCFG_STCE != 0;
        let s = (sstc && c.mie & (1 << irq::STI) != 0).then_some(c.stimecmp);
        [m, s]
    }

    fn next_timer_deadline(&self) -> u64 {
        let now = self.hart.s.icount;
        let c = &self.hart.s.csr;
        let mut d = u64::MAX;
        let mut consider = |target: u64| {
            let t = self.bus.clock.deadline(target, now);
            if t > now {
                d = d.min(t);
            }
        };
        consider(self.bus.clint.mtimecmp(0));
        if c.menvcfg & MENVCFG_STCE != 0 {
            consider(c.stimecmp);
        }
        d
    }

    /// Recompute the interrupt lines the devices and timers drive into the hart.
    fn update_interrupts(&mut self) {
        let bus = &mut self.bus;
        bus.update_irq_lines();
        let mtime = bus.clock.mtime(self.hart.s.icount);
        let c = &self.hart.s.csr;
        let mut ext = 0;
        if bus.clint.msip(0) {
            ext |= 1 << irq::MSI;
        }
        if mtime >= bus.clint.mtimecmp(0) {
            ext |= 1 << irq::MTI;
        }
        if bus.plic.context_interrupt(0) {
            ext |= 1 << irq::MEI;
        }
        if bus.plic.context_interrupt(1) {
            ext |= 1 << irq::SEI;
        }
        if c.menvcfg & MENVCFG_STCE != 0 && mtime >= c.stimecmp {
            ext |= 1 << irq::STI;
        }
        self.hart.ext_mip = ext;
    }

    fn collect_outputs(&mut self) {
        let icount = self.icount();
        let mut push = |kind| self.outputs.push(Output { icount, kind });
        self.bus.uart.drain_output_into(&mut self.console);
        if !self.console.is_empty() {
            push(OutputKind::Console(std::mem::take(&mut self.console)));
        }
        if let Some(net) = &mut self.bus.net {
            for frame in net.take_tx() {
                push(OutputKind::NetFrame(frame));
            }
        }
        if let Some(blk) = &mut self.bus.blk {
            for req in blk.take_requests() {
                push(OutputKind::Disk(req));
            }
        }
        if let Some(rng) = &mut self.bus.rng {
            for (id, len) in rng.take_requests() {
                push(OutputKind::EntropyRequest { id, len });
            }
        }
    }
}
