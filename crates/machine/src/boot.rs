//! Building a machine from boot files: bare-metal ELF, Linux `Image`, external M-mode
//! firmware, initrd, and the generated device tree. The layout follows QEMU `virt`
//! so the same binaries boot on both.

use crate::devices::layout::RAM_BASE;
use crate::fdt::{build_fdt, FdtConfig};
use serde::{Deserialize, Serialize};

/// How the machine starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Firmware {
    /// ftvm's built-in SBI: the kernel starts in S-mode (like QEMU with OpenSBI).
    BuiltinSbi,
    /// No firmware: the kernel ELF starts in M-mode at its entry (QEMU `-bios none`).
    None,
    /// An M-mode firmware image (ELF or raw binary) loaded at the start of RAM; the
    /// kernel goes at RAM + 2 MiB (OpenSBI `fw_jump`'s default jump address).
    External(Vec<u8>),
}

/// Everything that defines a machine's initial state. Two machines built from equal
/// configurations are identical.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootConfig {
    /// RAM size in MiB.
    pub memory_mib: u64,
    /// Guest instructions per `mtime` tick (10 MHz timebase).
    pub insns_per_tick: u64,
    /// Firmware choice.
    pub firmware: Firmware,
    /// The kernel: an ELF or a RISC-V Linux `Image`.
    pub kernel: Vec<u8>,
    /// Optional initramfs.
    pub initrd: Option<Vec<u8>>,
    /// Kernel command line.
    pub cmdline: String,
    /// virtio devices.
    pub devices: DeviceConfig,
}

/// Which virtio devices the machine has (virtio-mmio slots 0, 1, 2; PLIC sources 1, 2, 3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// virtio-blk: capacity in 512-byte sectors and whether it is read-only.
    pub disk: Option<DiskConfig>,
    /// virtio-net with this MAC address.
    pub net: Option<[u8; 6]>,
    /// virtio-rng.
    pub rng: bool,
}

/// A virtio-blk disk as the guest sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskConfig {
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// The guest may not write.
    pub read_only: bool,
}

/// virtio-mmio slot of each device type.
pub const SLOT_BLK: u32 = 0;
/// virtio-mmio slot of virtio-net.
pub const SLOT_NET: u32 = 1;
/// virtio-mmio slot of virtio-rng.
pub const SLOT_RNG: u32 = 2;

/// The ISA string advertised in the device tree: exactly what is implemented.
pub const ISA: &str = "rv64imafdc_zicsr_zifencei_zicntr_sstc";

/// Where the kernel goes when firmware (built-in or external) precedes it.
pub const KERNEL_OFFSET: u64 = 0x20_0000;

/// Problems with boot files; messages read as sentences.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel is neither ELF nor Linux Image.
    #[error("the kernel is not a RISC-V image: neither an ELF file nor a Linux Image (no 'RSC\\x05' magic)")]
    UnknownFormat,
    /// The ELF file could not be parsed.
    #[error("the ELF file is malformed: {0}")]
    BadElf(String),
    /// The ELF is for another architecture.
    #[error("the ELF file is not for 64-bit RISC-V (machine {0})")]
    WrongArch(u16),
    /// An image does not fit in RAM.
    #[error("{what} ({size} bytes at {addr:#x}) does not fit in {mib} MiB of RAM at {RAM_BASE:#x}; use a larger --memory")]
    DoesNotFit {
        /// Which image.
        what: &'static str,
        /// Load address.
        addr: u64,
        /// Size in bytes.
        size: u64,
        /// RAM size.
        mib: u64,
    },
    /// Memory size out of range.
    #[error("memory size {0} MiB is out of range (16..=65536)")]
    BadMemory(u64),
    /// The host refused the guest's RAM.
    #[error("cannot allocate {0} MiB of guest RAM: {1}")]
    NoMemory(u64, String),
    /// Device tree generation failed.
    #[error("device tree: {0}")]
    Fdt(String),
}

/// A loaded image: where execution starts.
pub(crate) struct Loaded {
    pub entry: u64,
    pub end: u64,
}

/// Load a kernel or firmware image into `ram` (`base` for raw/Image images).
pub(crate) fn load_image(
    ram: &mut crate::ram::Ram,
    bytes: &[u8],
    base: u64,
    what: &'static str,
    allow_raw: bool,
) -> Result<Loaded, BootError> {
    let mib = ram.size() >> 20;
    let fit = |addr: u64, size: u64| BootError::DoesNotFit {
        what,
        addr,
        size,
        mib,
    };
    if bytes.starts_with(b"\x7fELF") {
        return load_elf(ram, bytes, what);
    }
    let is_image = bytes.len() >= 64 && &bytes[56..60] == b"RSC\x05";
    if !is_image && !allow_raw {
        return Err(BootError::UnknownFormat);
    }
    if !ram.load(base, bytes) {
        return Err(fit(base, bytes.len() as u64));
    }
    // A Linux Image reserves image_size (header offset 16) for its own bss.
    let size = if is_image {
        u64::from_le_bytes(bytes[16..24].try_into().unwrap()).max(bytes.len() as u64)
    } else {
        bytes.len() as u64
    };
    if ram.offset(base, size).is_none() {
        return Err(fit(base, size));
    }
    Ok(Loaded {
        entry: base,
        end: base + size,
    })
}

fn load_elf(
    ram: &mut crate::ram::Ram,
    bytes: &[u8],
    what: &'static str,
) -> Result<Loaded, BootError> {
    use object::elf::{FileHeader64, EM_RISCV, PT_LOAD};
    use object::read::elf::{FileHeader, ProgramHeader};
    use object::Endianness;
    let bad = |e: object::Error| BootError::BadElf(e.to_string());
    let hdr = FileHeader64::<Endianness>::parse(bytes).map_err(bad)?;
    let endian = hdr.endian().map_err(bad)?;
    let machine = hdr.e_machine(endian);
    if machine != EM_RISCV {
        return Err(BootError::WrongArch(machine));
    }
    let mib = ram.size() >> 20;
    let mut end = 0;
    for ph in hdr.program_headers(endian, bytes).map_err(bad)? {
        if ph.p_type(endian) != PT_LOAD {
            continue;
        }
        let data = ph.data(endian, bytes).map_err(|()| {
            BootError::BadElf("a segment lies outside the file (truncated?)".into())
        })?;
        let addr = ph.p_paddr(endian);
        let memsz = ph.p_memsz(endian);
        if memsz < data.len() as u64 {
            return Err(BootError::BadElf(
                "a segment's memory size is smaller than its file size".into(),
            ));
        }
        let fit = BootError::DoesNotFit {
            what,
            addr,
            size: memsz,
            mib,
        };
        let off = ram.offset(addr, memsz).ok_or(fit)?;
        let dst = &mut ram.as_mut_slice()[off..off + memsz as usize];
        dst[..data.len()].copy_from_slice(data);
        dst[data.len()..].fill(0);
        end = end.max(addr + memsz);
    }
    if end == 0 {
        return Err(BootError::BadElf("no loadable segments".into()));
    }
    Ok(Loaded {
        entry: hdr.e_entry(endian),
        end,
    })
}

/// Place the device tree and initrd at the top of RAM as QEMU does (the dtb 2 MiB
/// aligned below the end of RAM, the initrd just below it). Returns the dtb address.
pub(crate) fn place_fdt_and_initrd(
    ram: &mut crate::ram::Ram,
    cfg: &BootConfig,
    kernel_end: u64,
) -> Result<u64, BootError> {
    let ram_end = RAM_BASE + ram.size();
    let mib = cfg.memory_mib;
    let mut fdt_cfg = FdtConfig {
        ram_size: ram.size(),
        cmdline: cfg.cmdline.clone(),
        initrd: None,
        isa: ISA.to_string(),
        virtio_slots: [
            (cfg.devices.disk.is_some(), SLOT_BLK),
            (cfg.devices.net.is_some(), SLOT_NET),
            (cfg.devices.rng, SLOT_RNG),
        ]
        .into_iter()
        .filter_map(|(present, slot)| present.then_some(slot))
        .collect(),
        timebase_hz: crate::devices::layout::TIMEBASE_HZ,
    };
    // First pass to learn the size (the initrd properties change it only slightly).
    let probe = build_fdt(&fdt_cfg).map_err(|e| BootError::Fdt(e.to_string()))?;
    let fdt_addr = (ram_end - (probe.len() as u64 + 0x1000)) & !0x1f_ffff;
    if let Some(initrd) = &cfg.initrd {
        let start = (fdt_addr - initrd.len() as u64) & !0xfff;
        let size = initrd.len() as u64;
        if start < kernel_end || start > fdt_addr || !ram.load(start, initrd) {
            return Err(BootError::DoesNotFit {
                what: "the initrd",
                addr: start,
                size,
                mib,
            });
        }
        fdt_cfg.initrd = Some((start, start + size));
    }
    let fdt = build_fdt(&fdt_cfg).map_err(|e| BootError::Fdt(e.to_string()))?;
    if fdt_addr < kernel_end || !ram.load(fdt_addr, &fdt) {
        return Err(BootError::DoesNotFit {
            what: "the device tree",
            addr: fdt_addr,
            size: fdt.len() as u64,
            mib,
        });
    }
    Ok(fdt_addr)
}
