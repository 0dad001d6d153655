//! SiFive test device (`sifive,test0`), QEMU virt's power-off/reset register.
//!
//! One 32-bit register at offset 0 (QEMU `hw/misc/sifive_test.c`): the low 16 bits
//! select the action, the high 16 bits carry a failure code. The device only records
//! the request; the machine collects it with [`SifiveTest::take_request`].

use super::Mmio;
use serde::{Deserialize, Serialize};

/// Low half-word that requests a failing power-off (`value >> 16` is the code).
pub const FINISHER_FAIL: u32 = 0x3333;
/// Low half-word that requests a passing power-off (exit status 0).
pub const FINISHER_PASS: u32 = 0x5555;
/// Low half-word that requests a reset.
pub const FINISHER_RESET: u32 = 0x7777;

/// What the guest asked the machine to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerRequest {
    /// Stop the machine with this exit code (0 for "pass").
    PowerOff {
        /// Exit code: 0 on pass, the failure code otherwise.
        exit_code: u32,
    },
    /// Reset the machine.
    Reset,
}

/// The test device. Its whole state is the request not yet collected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SifiveTest {
    /// The last request written and not yet taken.
    pending: Option<PowerRequest>,
}

impl SifiveTest {
    /// A device with no pending request.
    pub fn new() -> SifiveTest {
        SifiveTest::default()
    }

    /// The request the guest made, if any; clears it.
    pub fn take_request(&mut self) -> Option<PowerRequest> {
        self.pending.take()
    }
}

impl Mmio for SifiveTest {
    /// The register is write-only; reads return 0.
    fn read(&mut self, _offset: u64, _size: u8) -> u64 {
        0
    }

    /// 16- and 32-bit writes at offset 0 act (as on QEMU, whose device takes 2..=4
    /// byte accesses; OpenSBI writes 16 bits); other writes and unknown codes are
    /// ignored. A 16-bit write carries no fail code.
    fn write(&mut self, offset: u64, size: u8, value: u64) {
        if offset != 0 || size < 2 {
            return;
        }
        let value = if size == 2 {
            value as u16 as u32
        } else {
            value as u32
        };
        let request = match value & 0xffff {
            FINISHER_PASS => PowerRequest::PowerOff { exit_code: 0 },
            FINISHER_FAIL => PowerRequest::PowerOff {
                exit_code: value >> 16,
            },
            FINISHER_RESET => PowerRequest::Reset,
            _ => return,
        };
        self.pending = Some(request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_fail_reset() {
        let mut t = SifiveTest::new();
        assert_eq!(t.take_request(), None);
        t.write(0, 4, 0x5555);
        assert_eq!(
            t.take_request(),
            Some(PowerRequest::PowerOff { exit_code: 0 })
        );
        assert_eq!(t.take_request(), None);
        t.write(0, 4, (42 << 16) | 0x3333);
        assert_eq!(
            t.take_request(),
            Some(PowerRequest::PowerOff { exit_code: 42 })
        );
        t.write(0, 4, 0x7777);
        assert_eq!(t.take_request(), Some(PowerRequest::Reset));
    }

    #[test]
    fn other_writes_ignored_and_reads_zero() {
        let mut t = SifiveTest::new();
        t.write(0, 4, 0x1234);
        t.write(4, 4, 0x5555);
        t.write(0, 1, 0x55);
        assert_eq!(t.take_request(), None);
        // OpenSBI powers off with a 16-bit write.
        t.write(0, 2, 0x5555);
        assert_eq!(
            t.take_request(),
            Some(PowerRequest::PowerOff { exit_code: 0 })
        );
        assert_eq!(t.read(0, 4), 0);
        assert_eq!(t.read(8, 8), 0);
    }

    #[test]
    fn serde_round_trip() {
        let mut t = SifiveTest::new();
        t.write(0, 4, (7 << 16) | 0x3333);
        let bytes = postcard::to_stdvec(&t).unwrap();
        let back: SifiveTest = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, t);
    }
}
