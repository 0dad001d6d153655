//! The built-in SBI firmware (RISC-V SBI spec v1.0): lets a kernel start in S-mode
//! with no M-mode firmware. An `ecall` from S-mode lands here instead of trapping to M.
//!
//! Implemented: base (0x10), legacy console putchar/getchar (0x01/0x02), legacy
//! set_timer (0x00), TIME (0x54494D45), IPI (0x735049), RFENCE (0x52464E43),
//! HSM (0x48534D), SRST (0x53525354).

use crate::bus::Bus;
use crate::cpu::Hart;
use crate::devices::sifive_test::PowerRequest;

const EXT_SET_TIMER_LEGACY: u64 = 0x00;
const EXT_PUTCHAR_LEGACY: u64 = 0x01;
const EXT_GETCHAR_LEGACY: u64 = 0x02;
const EXT_BASE: u64 = 0x10;
const EXT_TIME: u64 = 0x5449_4d45;
const EXT_IPI: u64 = 0x73_5049;
const EXT_RFENCE: u64 = 0x5246_4e43;
const EXT_HSM: u64 = 0x48_534d;
const EXT_SRST: u64 = 0x5352_5354;

const SUCCESS: i64 = 0;
const ERR_NOT_SUPPORTED: i64 = -2;
const ERR_INVALID_PARAM: i64 = -3;
const ERR_ALREADY_AVAILABLE: i64 = -6;

/// Implementation ID reported by `sbi_get_impl_id` (an unassigned value).
const IMPL_ID: i64 = 0x4654;

/// Handle the SBI call in a7/a6/a0.. of `hart`. Console bytes go to `console`.
pub fn handle(hart: &mut Hart, bus: &mut Bus, console: &mut Vec<u8>) {
    let x = &hart.s.x;
    let (ext, fid, a0, a1) = (x[17], x[16], x[10], x[11]);
    let (err, val): (i64, i64) = match ext {
        EXT_SET_TIMER_LEGACY => {
            set_timer(hart, a0);
            hart.s.x[10] = 0;
            return;
        }
        EXT_PUTCHAR_LEGACY => {
            console.push(a0 as u8);
            hart.s.x[10] = 0;
            return;
        }
        EXT_GETCHAR_LEGACY => {
            // Console input reaches the guest through the UART only.
            hart.s.x[10] = -1i64 as u64;
            return;
        }
        EXT_BASE => match fid {
            0 => (SUCCESS, 0x0100_0000), // spec version 1.0
            1 => (SUCCESS, IMPL_ID),
            2 => (SUCCESS, 1),
            3 => (SUCCESS, probe(a0) as i64),
            4..=6 => (SUCCESS, 0), // mvendorid, marchid, mimpid
            _ => (ERR_NOT_SUPPORTED, 0),
        },
        EXT_TIME if fid == 0 => {
            set_timer(hart, a0);
            (SUCCESS, 0)
        }
        EXT_IPI if fid == 0 => {
            // hart_mask a0, hart_mask_base a1: only hart 0 exists.
            if a1 == u64::MAX || (a1 == 0 && a0 & 1 == 1) {
                hart.s.csr.mip |= 1 << crate::cpu::trap::irq::SSI;
                hart.attention = true;
            }
            (SUCCESS, 0)
        }
        EXT_RFENCE if fid <= 6 => {
            // Remote FENCE.I needs nothing: cached code follows every RAM write.
            hart.flush_tlb();
            (SUCCESS, 0)
        }
        EXT_HSM => match fid {
            0 => (
                if a0 == 0 {
                    ERR_ALREADY_AVAILABLE
                } else {
                    ERR_INVALID_PARAM
                },
                0,
            ),
            2 => (if a0 == 0 { SUCCESS } else { ERR_INVALID_PARAM }, 0), // get_status: started
            _ => (ERR_NOT_SUPPORTED, 0),
        },
        EXT_SRST if fid == 0 => match a0 {
            0 => {
                // Shutdown; reason a1: 0 no reason, 1 system failure.
                bus.power = Some(PowerRequest::PowerOff {
                    exit_code: if a1 == 0 { 0 } else { 1 },
                });
                (SUCCESS, 0)
            }
            1 | 2 => {
                bus.power = Some(PowerRequest::Reset);
                (SUCCESS, 0)
            }
            _ => (ERR_INVALID_PARAM, 0),
        },
        _ => (ERR_NOT_SUPPORTED, 0),
    };
    hart.s.x[10] = err as u64;
    hart.s.x[11] = val as u64;
}

fn probe(ext: u64) -> bool {
    matches!(
        ext,
        EXT_SET_TIMER_LEGACY
            | EXT_PUTCHAR_LEGACY
            | EXT_GETCHAR_LEGACY
            | EXT_BASE
            | EXT_TIME
            | EXT_IPI
            | EXT_RFENCE
            | EXT_HSM
            | EXT_SRST
    )
}

/// SBI set_timer: program the S-mode timer (stimecmp, which also clears a pending STIP).
fn set_timer(hart: &mut Hart, when: u64) {
    hart.s.csr.stimecmp = when;
    hart.attention = true;
}
