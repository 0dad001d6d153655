//! virtio devices as a hostile guest drives them: the input is a program of guest
//! actions on one device (blk, net or rng, by the first byte) — any register access,
//! descriptors and available-ring entries with any addresses, lengths, flags and
//! links, raw bytes anywhere in the queues' memory, notifications — interleaved with
//! the host answering whatever the device asked for. The device must count the guest's
//! errors and carry on: never panic, never touch memory outside guest RAM, never hand
//! the host a request larger than its documented bounds.
#![no_main]

#[path = "../../../../fuzz/alloc_limit.rs"]
mod alloc_limit;

use ftvm_machine::devices::layout::RAM_BASE;
use ftvm_machine::devices::virtio::blk::MAX_REQUEST_BYTES;
use ftvm_machine::devices::virtio::mmio::status;
use ftvm_machine::devices::virtio::net::MAX_FRAME_LEN;
use ftvm_machine::devices::virtio::rng::MAX_REQUEST_LEN;
use ftvm_machine::devices::virtio::{
    Blk, BlkError, BlkRequestKind, Net, Rng, VirtioDevice, VirtioMmio,
};
use ftvm_machine::Ram;
use libfuzzer_sys::fuzz_target;

const RAM_SIZE: u64 = 1 << 20;
/// Each queue's 16 KiB: descriptors, then the available ring at +4 KiB, used at +8 KiB.
const QUEUE_AREA: u64 = 0x4000;

/// The fuzzer's bytes, read as the guest's choices; `None` once they run out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        (self.0.len() >= n).then(|| {
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            a
        })
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }
}

/// The host side of one device type: take what the device asks for and answer it.
trait Host: VirtioDevice + Sized {
    fn new() -> Self;
    fn serve(dev: &mut VirtioMmio<Self>, ram: &mut Ram, input: &mut Input) -> Option<()>;
}

impl Host for Blk {
    fn new() -> Blk {
        Blk::new(64, false)
    }
    fn serve(dev: &mut VirtioMmio<Blk>, ram: &mut Ram, input: &mut Input) -> Option<()> {
        let how = input.u8()?;
        for r in dev.take_requests() {
            let result = match (&r.kind, how % 4) {
                (_, 0) => Err(BlkError::Io),
                (_, 1) => Err(BlkError::Unsupported),
                (BlkRequestKind::Read { sector, len }, _) => {
                    let len64 = u64::from(*len);
                    assert!(len64 % 512 == 0 && len64 <= MAX_REQUEST_BYTES);
                    assert!(sector + len64 / 512 <= 64, "a read outside the disk");
                    // A wrong length must fail the request, not corrupt anything.
                    let n = if how % 4 == 3 {
                        *len as usize / 2
                    } else {
                        *len as usize
                    };
                    Ok(vec![how; n])
                }
                (BlkRequestKind::Write { sector, data }, _) => {
                    let len64 = data.len() as u64;
                    assert!(len64 % 512 == 0 && len64 <= MAX_REQUEST_BYTES);
                    assert!(sector + len64 / 512 <= 64, "a write outside the disk");
                    Ok(Vec::new())
                }
                (BlkRequestKind::Flush, _) => Ok(Vec::new()),
            };
            dev.complete(r.id, result, ram);
        }
        Some(())
    }
}

impl Host for Net {
    fn new() -> Net {
        Net::new([2, 0, 0, 0, 0, 1])
    }
    fn serve(dev: &mut VirtioMmio<Net>, ram: &mut Ram, input: &mut Input) -> Option<()> {
        for frame in dev.take_tx() {
            assert!(
                frame.len() <= MAX_FRAME_LEN,
                "a transmitted frame of {} bytes",
                frame.len()
            );
        }
        let n = input.u16()? as usize % 1600;
        let frame = input.bytes(n.min(input.0.len()))?.to_vec();
        dev.receive(&frame, ram);
        Some(())
    }
}

impl Host for Rng {
    fn new() -> Rng {
        Rng::new()
    }
    fn serve(dev: &mut VirtioMmio<Rng>, ram: &mut Ram, input: &mut Input) -> Option<()> {
        let fill = input.u8()?;
        for (id, len) in dev.take_requests() {
            assert!(len <= MAX_REQUEST_LEN, "an entropy request of {len} bytes");
            dev.complete(id, &vec![fill; len as usize], ram);
        }
        Some(())
    }
}

fn reg_write<D: VirtioDevice>(dev: &mut VirtioMmio<D>, ram: &mut Ram, off: u64, v: u32) {
    dev.write(off, 4, u64::from(v), ram);
}

fn queue_base(q: u64) -> u64 {
    RAM_BASE + QUEUE_AREA * q
}

/// Driver initialisation (virtio 1.2 §3.1.1) with the fuzzer's feature choice and
/// queue sizes, then the guest's program.
fn run<D: Host>(mut input: Input) -> Option<()> {
    let mut ram = Ram::try_new(RAM_SIZE).expect("guest RAM");
    let mut dev = VirtioMmio::new(D::new());
    let ram = &mut ram;
    let d = &mut dev;
    reg_write(d, ram, 0x70, 0);
    reg_write(d, ram, 0x70, status::ACKNOWLEDGE | status::DRIVER);
    let mask = input.u32()?;
    for sel in 0..2 {
        reg_write(d, ram, 0x14, sel);
        let f = d.read(0x10, 4) as u32;
        reg_write(d, ram, 0x24, sel);
        reg_write(d, ram, 0x20, f & if sel == 0 { mask } else { !0 });
    }
    let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    reg_write(d, ram, 0x70, s);
    for q in 0..D::NUM_QUEUES as u64 {
        reg_write(d, ram, 0x30, q as u32);
        reg_write(d, ram, 0x38, u32::from(input.u16()?));
        let base = queue_base(q);
        for (off, addr) in [(0x80, base), (0x90, base + 0x1000), (0xa0, base + 0x2000)] {
            reg_write(d, ram, off, addr as u32);
            reg_write(d, ram, off + 4, (addr >> 32) as u32);
        }
        reg_write(d, ram, 0x44, 1);
    }
    reg_write(d, ram, 0x70, s | status::DRIVER_OK);
    let mut avail_idx = [0u16; 4];
    loop {
        match input.u8()? % 8 {
            // Raw bytes anywhere in the queues' memory.
            0 => {
                let off = u64::from(input.u16()?) % (QUEUE_AREA * 4);
                let n = input.u8()? as usize;
                let bytes = input.bytes(n.min(input.0.len()))?;
                ram.load(RAM_BASE + off, bytes);
            }
            // Any register, any width.
            1 => {
                let off = u64::from(input.u16()?) & 0x1ff;
                let size = [1, 2, 4, 8][input.u8()? as usize % 4];
                let v = input.u32()?;
                d.write(off, size, u64::from(v), ram);
            }
            2 => {
                let q = input.u8()? % 4;
                reg_write(d, ram, 0x50, u32::from(q));
            }
            3 => D::serve(d, ram, &mut input)?,
            4 => {
                let off = u64::from(input.u16()?) & 0x1ff;
                d.read(off, [1, 2, 4, 8][input.u8()? as usize % 4]);
            }
            5 => {
                let s = d.read(0x60, 4) as u32;
                reg_write(d, ram, 0x64, s);
            }
            // A descriptor: an address near RAM (or anywhere), any length, flags, link.
            6 => {
                let q = u64::from(input.u8()? % 2);
                let i = u64::from(input.u16()?) % 256;
                let raw = input.u32()?;
                let addr = match raw >> 30 {
                    0 => u64::from(raw),
                    _ => RAM_BASE.wrapping_add(u64::from(raw & 0x3fff_ffff) % (RAM_SIZE + 64)),
                };
                let len = input.u32()?;
                let flags = input.u8()? as u16 & 7;
                let next = input.u16()?;
                let mut desc = [0u8; 16];
                desc[..8].copy_from_slice(&addr.to_le_bytes());
                desc[8..12].copy_from_slice(&len.to_le_bytes());
                desc[12..14].copy_from_slice(&flags.to_le_bytes());
                desc[14..].copy_from_slice(&next.to_le_bytes());
                ram.load(queue_base(q) + 16 * i, &desc);
            }
            // Publish a head in the available ring (index bumped by one, or set).
            7 => {
                let q = input.u8()? % 2;
                let head = input.u16()?;
                let avail = queue_base(u64::from(q)) + 0x1000;
                let idx = &mut avail_idx[q as usize];
                ram.load(avail + 4 + 2 * u64::from(*idx % 256), &head.to_le_bytes());
                *idx = if head & 0x8000 != 0 {
                    head
                } else {
                    idx.wrapping_add(1)
                };
                ram.load(avail + 2, &idx.to_le_bytes());
                reg_write(d, ram, 0x50, u32::from(q));
            }
            _ => unreachable!(),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let input = Input(rest);
    match which % 3 {
        0 => run::<Blk>(input),
        1 => run::<Net>(input),
        _ => run::<Rng>(input),
    };
});
