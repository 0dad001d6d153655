//! The flattened device tree handed to the guest kernel, mirroring QEMU virt's tree for
//! one hart (QEMU `hw/riscv/virt.c`; Devicetree spec v0.4; Linux
//! `Documentation/devicetree/bindings`). Nothing in it is random: QEMU's per-run
//! `/chosen/rng-seed` is left out (GUEST.md).

use crate::devices::layout;
use thiserror::Error;
use vm_fdt::FdtWriter;

/// `phandle` of `/cpus/cpu@0`.
const PHANDLE_CPU0: u32 = 1;
/// `phandle` of the hart's interrupt controller.
const PHANDLE_CPU0_INTC: u32 = 2;
/// `phandle` of the PLIC.
const PHANDLE_PLIC: u32 = 3;
/// `phandle` of the test device (the syscon of `/poweroff` and `/reboot`).
const PHANDLE_TEST: u32 = 4;

/// Hart-local interrupt numbers (Priv. spec 3.1.9, `mip` bits).
const IRQ_M_SOFT: u32 = 3;
const IRQ_M_TIMER: u32 = 7;
const IRQ_S_EXT: u32 = 9;
const IRQ_M_EXT: u32 = 11;

/// UART input clock, as QEMU advertises it (3.6864 MHz).
const UART_CLOCK_HZ: u32 = 0x38_4000;
/// PLIC sources usable by devices (`riscv,ndev`): 1..=95.
const PLIC_NDEV: u32 = 95;

/// What the device tree describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdtConfig {
    /// Bytes of RAM at [`layout::RAM_BASE`].
    pub ram_size: u64,
    /// Kernel command line (`/chosen/bootargs`).
    pub cmdline: String,
    /// Initrd location in guest physical memory: `(start, end)`, end exclusive.
    pub initrd: Option<(u64, u64)>,
    /// The hart's ISA string (`riscv,isa`), e.g. `rv64imafdc_zicsr_zifencei_zicntr_sstc`.
    /// Advertise only what the machine implements.
    pub isa: String,
    /// Populated virtio-mmio slots (each below [`layout::VIRTIO_SLOTS`]).
    pub virtio_slots: Vec<u32>,
    /// `mtime` ticks per second (`timebase-frequency`).
    pub timebase_hz: u64,
}

/// Why a device tree could not be built.
#[derive(Debug, Error)]
pub enum FdtError {
    /// A virtio slot number is out of range.
    #[error("virtio slot {0} does not exist (the machine has {n} slots)", n = layout::VIRTIO_SLOTS)]
    BadVirtioSlot(u32),
    /// The initrd range ends before it starts.
    #[error("initrd range {start:#x}..{end:#x} is empty or reversed")]
    BadInitrd {
        /// Start address.
        start: u64,
        /// End address.
        end: u64,
    },
    /// The timebase does not fit the 32-bit `timebase-frequency` cell.
    #[error("timebase frequency {0} Hz does not fit in 32 bits")]
    BadTimebase(u64),
    /// The FDT writer rejected the tree (e.g. a NUL byte in a string).
    #[error("the device tree writer failed: {0}")]
    Writer(#[from] vm_fdt::Error),
}

/// Build the device tree blob for `cfg`. The result is a pure function of `cfg`.
pub fn build_fdt(cfg: &FdtConfig) -> Result<Vec<u8>, FdtError> {
    let mut slots = cfg.virtio_slots.clone();
    slots.sort_unstable();
    slots.dedup();
    if let Some(&bad) = slots
        .iter()
        .find(|&&s| u64::from(s) >= layout::VIRTIO_SLOTS)
    {
        return Err(FdtError::BadVirtioSlot(bad));
    }
    if let Some((start, end)) = cfg.initrd {
        if end < start {
            return Err(FdtError::BadInitrd { start, end });
        }
    }
    let timebase =
        u32::try_from(cfg.timebase_hz).map_err(|_| FdtError::BadTimebase(cfg.timebase_hz))?;

    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "riscv-virtio")?;
    fdt.property_string("model", "riscv-virtio,qemu")?;

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", &cfg.cmdline)?;
    fdt.property_string(
        "stdout-path",
        &format!("/soc/serial@{:x}", layout::UART_BASE),
    )?;
    if let Some((start, end)) = cfg.initrd {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", end)?;
    }
    fdt.end_node(chosen)?;

    // syscon-poweroff / syscon-reboot (bindings/power/reset/syscon-*.yaml).
    for (name, value) in [("poweroff", 0x5555), ("reboot", 0x7777)] {
        let node = fdt.begin_node(name)?;
        fdt.property_u32("value", value)?;
        fdt.property_u32("offset", 0)?;
        fdt.property_u32("regmap", PHANDLE_TEST)?;
        fdt.property_string("compatible", &format!("syscon-{name}"))?;
        fdt.end_node(node)?;
    }

    let memory = fdt.begin_node(&format!("memory@{:x}", layout::RAM_BASE))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[layout::RAM_BASE, cfg.ram_size])?;
    fdt.end_node(memory)?;

    write_cpus(&mut fdt, cfg, timebase)?;
    write_soc(&mut fdt, &slots)?;

    fdt.end_node(root)?;
    Ok(fdt.finish()?)
}

/// `/cpus` with one hart (bindings/riscv/cpus.yaml).
fn write_cpus(fdt: &mut FdtWriter, cfg: &FdtConfig, timebase: u32) -> Result<(), FdtError> {
    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    fdt.property_u32("timebase-frequency", timebase)?;

    let cpu = fdt.begin_node("cpu@0")?;
    fdt.property_phandle(PHANDLE_CPU0)?;
    fdt.property_string("device_type", "cpu")?;
    fdt.property_u32("reg", 0)?;
    fdt.property_string("status", "okay")?;
    fdt.property_string("compatible", "riscv")?;
    fdt.property_string("riscv,isa", &cfg.isa)?;
    fdt.property_string("mmu-type", "riscv,sv39")?;
    let intc = fdt.begin_node("interrupt-controller")?;
    fdt.property_u32("#interrupt-cells", 1)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_string("compatible", "riscv,cpu-intc")?;
    fdt.property_phandle(PHANDLE_CPU0_INTC)?;
    fdt.end_node(intc)?;
    fdt.end_node(cpu)?;

    let map = fdt.begin_node("cpu-map")?;
    let cluster = fdt.begin_node("cluster0")?;
    let core = fdt.begin_node("core0")?;
    fdt.property_u32("cpu", PHANDLE_CPU0)?;
    fdt.end_node(core)?;
    fdt.end_node(cluster)?;
    fdt.end_node(map)?;

    fdt.end_node(cpus)?;
    Ok(())
}

/// `reg` of a device: `<base size>` in two 2-cell numbers.
fn reg(fdt: &mut FdtWriter, base: u64, size: u64) -> Result<(), FdtError> {
    Ok(fdt.property_array_u64("reg", &[base, size])?)
}

/// `/soc` and the devices on it.
fn write_soc(fdt: &mut FdtWriter, slots: &[u32]) -> Result<(), FdtError> {
    let soc = fdt.begin_node("soc")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "simple-bus")?;
    fdt.property_null("ranges")?;

    let serial = fdt.begin_node(&format!("serial@{:x}", layout::UART_BASE))?;
    fdt.property_u32("interrupts", layout::UART_IRQ)?;
    fdt.property_u32("interrupt-parent", PHANDLE_PLIC)?;
    fdt.property_u32("clock-frequency", UART_CLOCK_HZ)?;
    reg(fdt, layout::UART_BASE, layout::UART_SIZE)?;
    fdt.property_string("compatible", "ns16550a")?;
    fdt.end_node(serial)?;

    let test = fdt.begin_node(&format!("test@{:x}", layout::TEST_BASE))?;
    fdt.property_phandle(PHANDLE_TEST)?;
    reg(fdt, layout::TEST_BASE, layout::TEST_SIZE)?;
    fdt.property_string_list(
        "compatible",
        vec![
            "sifive,test1".into(),
            "sifive,test0".into(),
            "syscon".into(),
        ],
    )?;
    fdt.end_node(test)?;

    // QEMU lists the virtio slots from the highest address down.
    for &slot in slots.iter().rev() {
        let base = layout::VIRTIO_BASE + layout::VIRTIO_STRIDE * u64::from(slot);
        let node = fdt.begin_node(&format!("virtio_mmio@{base:x}"))?;
        fdt.property_u32("interrupts", slot + 1)?;
        fdt.property_u32("interrupt-parent", PHANDLE_PLIC)?;
        reg(fdt, base, layout::VIRTIO_STRIDE)?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.end_node(node)?;
    }

    // bindings/interrupt-controller/sifive,plic-1.0.0.yaml; context 0 is M-mode.
    let plic = fdt.begin_node(&format!("plic@{:x}", layout::PLIC_BASE))?;
    fdt.property_phandle(PHANDLE_PLIC)?;
    fdt.property_u32("riscv,ndev", PLIC_NDEV)?;
    reg(fdt, layout::PLIC_BASE, layout::PLIC_SIZE)?;
    fdt.property_array_u32(
        "interrupts-extended",
        &[PHANDLE_CPU0_INTC, IRQ_M_EXT, PHANDLE_CPU0_INTC, IRQ_S_EXT],
    )?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_string_list(
        "compatible",
        vec!["sifive,plic-1.0.0".into(), "riscv,plic0".into()],
    )?;
    fdt.property_u32("#address-cells", 0)?;
    fdt.property_u32("#interrupt-cells", 1)?;
    fdt.end_node(plic)?;

    // bindings/timer/sifive,clint.yaml.
    let clint = fdt.begin_node(&format!("clint@{:x}", layout::CLINT_BASE))?;
    fdt.property_array_u32(
        "interrupts-extended",
        &[
            PHANDLE_CPU0_INTC,
            IRQ_M_SOFT,
            PHANDLE_CPU0_INTC,
            IRQ_M_TIMER,
        ],
    )?;
    reg(fdt, layout::CLINT_BASE, layout::CLINT_SIZE)?;
    fdt.property_string_list(
        "compatible",
        vec!["sifive,clint0".into(), "riscv,clint0".into()],
    )?;
    fdt.end_node(clint)?;

    fdt.end_node(soc)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn config() -> FdtConfig {
        FdtConfig {
            ram_size: 128 << 20,
            cmdline: "console=ttyS0 earlycon=sbi".into(),
            initrd: Some((0x8400_0000, 0x8410_0000)),
            isa: "rv64imafdc_zicsr_zifencei_zicntr_sstc".into(),
            virtio_slots: vec![1, 0],
            timebase_hz: layout::TIMEBASE_HZ,
        }
    }

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn header_and_strings() {
        let blob = build_fdt(&config()).unwrap();
        assert_eq!(be32(&blob, 0), 0xd00d_feed, "magic");
        assert_eq!(be32(&blob, 4) as usize, blob.len(), "totalsize");
        assert_eq!(be32(&blob, 20), 17, "version");
        for s in [
            &b"console=ttyS0 earlycon=sbi"[..],
            b"/soc/serial@10000000",
            b"ns16550a",
            b"sifive,plic-1.0.0\0riscv,plic0",
            b"sifive,clint0\0riscv,clint0",
            b"virtio_mmio@10002000",
            b"rv64imafdc_zicsr_zifencei_zicntr_sstc",
        ] {
            assert!(contains(&blob, s), "{}", String::from_utf8_lossy(s));
        }
        assert!(!contains(&blob, b"rng-seed"));
        assert!(!contains(&blob, b"virtio_mmio@10003000"));
    }

    #[test]
    fn deterministic() {
        assert_eq!(build_fdt(&config()).unwrap(), build_fdt(&config()).unwrap());
    }

    #[test]
    fn rejects_bad_config() {
        let mut cfg = config();
        cfg.virtio_slots = vec![8];
        assert!(matches!(build_fdt(&cfg), Err(FdtError::BadVirtioSlot(8))));
        let mut cfg = config();
        cfg.initrd = Some((2, 1));
        assert!(matches!(build_fdt(&cfg), Err(FdtError::BadInitrd { .. })));
        let mut cfg = config();
        cfg.cmdline = "a\0b".into();
        assert!(matches!(build_fdt(&cfg), Err(FdtError::Writer(_))));
        let mut cfg = config();
        cfg.timebase_hz = 1 << 32;
        assert!(matches!(build_fdt(&cfg), Err(FdtError::BadTimebase(_))));
    }

    /// `dtc -I dtb -O dts` of `blob` via a temp file, or `None` when dtc is missing.
    fn decompile(blob: &[u8], tag: &str) -> Option<String> {
        assert_eq!(be32(blob, 0), 0xd00d_feed);
        let name = format!("ftvm-fdt-{}-{tag}.dtb", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, blob).unwrap();
        let out = Command::new("dtc")
            .args(["-I", "dtb", "-O", "dts"])
            .arg(&path)
            .output();
        let _ = std::fs::remove_file(&path);
        let Ok(out) = out else {
            eprintln!("dtc not found; header checked only");
            return None;
        };
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        Some(String::from_utf8(out.stdout).unwrap())
    }

    #[test]
    fn dtc_initrd_and_virtio() {
        let Some(dts) = decompile(&build_fdt(&config()).unwrap(), "virtio") else {
            return;
        };
        for line in [
            "linux,initrd-start = <0x00 0x84000000>;",
            "linux,initrd-end = <0x00 0x84100000>;",
            "virtio_mmio@10001000 {",
            "interrupts = <0x02>;",
            "reg = <0x00 0x10002000 0x00 0x1000>;",
            "compatible = \"virtio,mmio\";",
        ] {
            assert!(dts.contains(line), "missing {line:?} in\n{dts}");
        }
    }

    /// Decompile with `dtc` when it is installed and check the tree's key lines.
    #[test]
    fn dtc_decompiles() {
        let mut cfg = config();
        cfg.virtio_slots = vec![];
        cfg.initrd = None;
        let Some(dts) = decompile(&build_fdt(&cfg).unwrap(), "plain") else {
            return;
        };
        for line in [
            "compatible = \"riscv-virtio\";",
            "bootargs = \"console=ttyS0 earlycon=sbi\";",
            "stdout-path = \"/soc/serial@10000000\";",
            "reg = <0x00 0x80000000 0x00 0x8000000>;",
            "timebase-frequency = <0x989680>;",
            "mmu-type = \"riscv,sv39\";",
            "compatible = \"riscv,cpu-intc\";",
            "interrupts-extended = <0x02 0x0b 0x02 0x09>;",
            "interrupts-extended = <0x02 0x03 0x02 0x07>;",
            "riscv,ndev = <0x5f>;",
            "compatible = \"sifive,test1\\0sifive,test0\\0syscon\";",
            "compatible = \"syscon-poweroff\";",
            "value = <0x7777>;",
        ] {
            assert!(dts.contains(line), "missing {line:?} in\n{dts}");
        }
        // dtc shows the bytes 00 38 40 00 as a string, as in QEMU's own tree.
        assert!(
            dts.contains("clock-frequency = <0x384000>;")
                || dts.contains("clock-frequency = \"\\08@\";"),
            "{dts}"
        );
        assert!(!dts.contains("virtio_mmio") && !dts.contains("initrd"));
    }
}
