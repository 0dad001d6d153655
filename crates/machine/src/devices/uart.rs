//! NS16550A UART (as QEMU `hw/char/serial.c` and the TI PC16550D datasheet describe it).
//!
//! Transmission is instantaneous: bytes written to THR land in an output buffer that the
//! machine drains, and THRE/TEMT stay set. Received bytes come from
//! [`Uart16550::push_input`] into a bounded FIFO. There are no line errors, no modem
//! status interrupts and no character timeout: the device has no clock.
//!
//! Register offsets (datasheet Table 2), one byte each (`reg-shift` 0):
//! 0 RBR/THR (DLL with DLAB), 1 IER (DLM with DLAB), 2 IIR/FCR, 3 LCR, 4 MCR, 5 LSR,
//! 6 MSR, 7 SCR.

use super::Mmio;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Bytes the receive FIFO holds before input is dropped.
pub const RX_CAPACITY: usize = 4096;

// IER bits.
const IER_ERBFI: u8 = 0x01;
const IER_ETBEI: u8 = 0x02;
const IER_MASK: u8 = 0x0f;
// IIR values.
const IIR_NONE: u8 = 0x01;
const IIR_THRE: u8 = 0x02;
const IIR_RDA: u8 = 0x04;
const IIR_FIFO: u8 = 0xc0;
// FCR bits.
const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;
// LCR bits.
const LCR_DLAB: u8 = 0x80;
// MCR bits.
const MCR_LOOP: u8 = 0x10;
const MCR_MASK: u8 = 0x1f;
// LSR bits.
const LSR_DR: u8 = 0x01;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
// MSR bits: with no modem attached, CTS, DSR and DCD are asserted (as QEMU does).
const MSR_IDLE: u8 = 0xb0;

/// The UART's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uart16550 {
    /// Interrupt enable register (low 4 bits).
    ier: u8,
    /// FIFO control: only the enable and trigger-level bits are kept.
    fcr: u8,
    /// Line control register.
    lcr: u8,
    /// Modem control register (low 5 bits).
    mcr: u8,
    /// Scratch register.
    scr: u8,
    /// Divisor latch, low byte.
    dll: u8,
    /// Divisor latch, high byte.
    dlm: u8,
    /// A THRE interrupt is pending (datasheet Table 4: cleared by reading IIR when
    /// it is the source or by writing THR).
    thr_ipending: bool,
    /// Received bytes not yet read.
    rx: VecDeque<u8>,
    /// Transmitted bytes not yet collected.
    tx: Vec<u8>,
    /// Input bytes dropped because the receive FIFO was full.
    rx_dropped: u64,
}

impl Default for Uart16550 {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart16550 {
    /// A UART in its reset state (datasheet Table 9): interrupts off, FIFOs off.
    pub fn new() -> Uart16550 {
        Uart16550 {
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 0,
            dlm: 0,
            thr_ipending: false,
            rx: VecDeque::new(),
            tx: Vec::new(),
            rx_dropped: 0,
        }
    }

    /// Queue received bytes. Bytes beyond [`RX_CAPACITY`] are dropped and counted.
    pub fn push_input(&mut self, bytes: &[u8]) {
        let room = RX_CAPACITY.saturating_sub(self.rx.len());
        let (taken, dropped) = bytes.split_at(bytes.len().min(room));
        self.rx.extend(taken);
        self.rx_dropped += dropped.len() as u64;
    }

    /// Number of received bytes waiting for the guest.
    pub fn input_len(&self) -> usize {
        self.rx.len()
    }

    /// Input bytes dropped so far because the receive FIFO was full.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped
    }

    /// The bytes the guest transmitted since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tx)
    }

    /// Append the transmitted bytes to `out` and clear them, keeping this device's
    /// buffer allocation (no allocation when `out` has room).
    pub fn drain_output_into(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.tx);
    }

    /// The interrupt line (level): received data with IER.ERBFI, or a pending THRE
    /// interrupt with IER.ETBEI.
    pub fn irq(&self) -> bool {
        self.iir_id() != IIR_NONE
    }

    /// Highest-priority interrupt identification (datasheet Table 4): received data
    /// available, then THR empty.
    fn iir_id(&self) -> u8 {
        if self.ier & IER_ERBFI != 0 && !self.rx.is_empty() {
            IIR_RDA
        } else if self.ier & IER_ETBEI != 0 && self.thr_ipending {
            IIR_THRE
        } else {
            IIR_NONE
        }
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn lsr(&self) -> u8 {
        let dr = if self.rx.is_empty() { 0 } else { LSR_DR };
        dr | LSR_THRE | LSR_TEMT
    }

    /// MSR: in loopback (datasheet §8.6, MCR bit 4) the modem inputs follow the MCR
    /// outputs: CTS=RTS, DSR=DTR, RI=OUT1, DCD=OUT2. Delta bits are never set.
    fn msr(&self) -> u8 {
        if self.mcr & MCR_LOOP != 0 {
            let m = self.mcr;
            ((m & 0x02) << 3) | ((m & 0x01) << 5) | ((m & 0x0c) << 4)
        } else {
            MSR_IDLE
        }
    }

    fn transmit(&mut self, byte: u8) {
        if self.mcr & MCR_LOOP != 0 {
            // Loopback: the transmitter feeds the receiver, nothing leaves.
            self.push_input(&[byte]);
        } else {
            self.tx.push(byte);
        }
        // Writing THR clears the THRE interrupt; the byte leaves at once, so THR is
        // empty again and a new THRE interrupt is raised (if enabled).
        self.thr_ipending = self.ier & IER_ETBEI != 0;
    }
}

impl Mmio for Uart16550 {
    /// Byte registers: any access size reads the byte at `offset`, zero-extended.
    fn read(&mut self, offset: u64, _size: u8) -> u64 {
        let v = match offset {
            0 if self.dlab() => self.dll,
            0 => self.rx.pop_front().unwrap_or(0),
            1 if self.dlab() => self.dlm,
            1 => self.ier,
            2 => {
                let id = self.iir_id();
                // Reading IIR clears a THRE interrupt it reports (Table 4).
                if id == IIR_THRE {
                    self.thr_ipending = false;
                }
                let fifo = if self.fcr & FCR_ENABLE != 0 {
                    IIR_FIFO
                } else {
                    0
                };
                id | fifo
            }
            3 => self.lcr,
            4 => self.mcr,
            5 => self.lsr(),
            6 => self.msr(),
            7 => self.scr,
            _ => 0,
        };
        u64::from(v)
    }

    /// Byte registers: any access size writes the low byte of `value` at `offset`.
    fn write(&mut self, offset: u64, _size: u8, value: u64) {
        let v = value as u8;
        match offset {
            0 if self.dlab() => self.dll = v,
            0 => self.transmit(v),
            1 if self.dlab() => self.dlm = v,
            1 => {
                let old = self.ier;
                self.ier = v & IER_MASK;
                // Enabling ETBEI while THR is empty raises THRE again, even if an IIR
                // read cleared it (QEMU serial.c; Linux's 8250 THRE test needs it).
                if (old ^ self.ier) & IER_ETBEI != 0 {
                    self.thr_ipending = self.ier & IER_ETBEI != 0;
                }
            }
            2 => {
                // FCR (datasheet §8.4): changing the enable bit or bit 1 clears the
                // receive FIFO. The TX FIFO is always empty.
                if (v ^ self.fcr) & FCR_ENABLE != 0 || v & FCR_CLEAR_RX != 0 {
                    self.rx.clear();
                }
                self.fcr = v & (FCR_ENABLE | 0xc0);
            }
            3 => self.lcr = v,
            4 => self.mcr = v & MCR_MASK,
            7 => self.scr = v,
            // LSR and MSR are read-only.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RBR: u64 = 0;
    const IER: u64 = 1;
    const IIR: u64 = 2;
    const LCR: u64 = 3;
    const MCR: u64 = 4;
    const LSR: u64 = 5;
    const MSR: u64 = 6;
    const SCR: u64 = 7;

    #[test]
    fn transmit_goes_to_output() {
        let mut u = Uart16550::new();
        for b in b"hi\n" {
            u.write(0, 1, u64::from(*b));
        }
        assert_eq!(u.read(LSR, 1) as u8 & (LSR_THRE | LSR_TEMT), 0x60);
        assert_eq!(u.take_output(), b"hi\n");
        assert!(u.take_output().is_empty());
        u.write(0, 4, 0x1234_5678_u64);
        let mut out = Vec::new();
        u.drain_output_into(&mut out);
        assert_eq!(out, [0x78]);
    }

    #[test]
    fn receive_fifo_and_rda_interrupt() {
        let mut u = Uart16550::new();
        u.push_input(b"ab");
        assert_eq!(u.read(LSR, 1) & 1, 1);
        assert!(!u.irq(), "ERBFI off");
        u.write(IER, 1, 1);
        assert!(u.irq());
        assert_eq!(u.read(IIR, 1), 0x04);
        assert_eq!(u.read(RBR, 1), u64::from(b'a'));
        assert_eq!(u.read(RBR, 1), u64::from(b'b'));
        assert_eq!(u.read(LSR, 1) & 1, 0);
        assert!(!u.irq());
        assert_eq!(u.read(IIR, 1), 0x01);
    }

    #[test]
    fn rx_overflow_is_bounded_and_counted() {
        let mut u = Uart16550::new();
        u.push_input(&vec![7; RX_CAPACITY - 1]);
        u.push_input(&[1, 2, 3]);
        assert_eq!(u.input_len(), RX_CAPACITY);
        assert_eq!(u.rx_dropped(), 2);
    }

    #[test]
    fn thre_interrupt_semantics() {
        let mut u = Uart16550::new();
        // Linux serial8250_do_startup: enable THRI, read IIR, toggle IER, read IIR.
        u.write(IER, 1, u64::from(IER_ETBEI));
        assert!(u.irq());
        assert_eq!(u.read(IIR, 1), 0x02);
        assert!(!u.irq(), "IIR read cleared THRE");
        assert_eq!(u.read(IIR, 1), 0x01);
        u.write(IER, 1, 0);
        u.write(IER, 1, u64::from(IER_ETBEI));
        assert_eq!(u.read(IIR, 1), 0x02, "re-raised by enabling ETBEI");
        // Writing THR: the byte leaves at once, THR is empty again.
        u.write(0, 1, u64::from(b'x'));
        assert!(u.irq());
        // RDA has priority over THRE.
        u.write(IER, 1, u64::from(IER_ETBEI | IER_ERBFI));
        u.push_input(b"z");
        assert_eq!(u.read(IIR, 1), 0x04);
        assert!(u.irq());
        u.read(RBR, 1);
        assert_eq!(u.read(IIR, 1), 0x02);
        u.write(IER, 1, 0);
        assert!(!u.irq());
    }

    #[test]
    fn linux_autoconfig_sees_16550a() {
        let mut u = Uart16550::new();
        // Scratch register.
        u.write(SCR, 1, 0xa5);
        assert_eq!(u.read(SCR, 1), 0xa5);
        // IER keeps its low four bits.
        u.write(IER, 1, 0x0f);
        assert_eq!(u.read(IER, 1), 0x0f);
        u.write(IER, 1, 0);
        // Loopback test: MCR = LOOP | OUT2 | RTS → MSR top nibble 0x90.
        u.write(MCR, 1, 0x1a);
        assert_eq!(u.read(MSR, 1) & 0xf0, 0x90);
        u.write(MCR, 1, 0x1f);
        assert_eq!(u.read(MSR, 1) & 0xf0, 0xf0);
        u.write(MCR, 1, 0);
        assert_eq!(u.read(MSR, 1), 0xb0);
        // FIFO enable shows in IIR bits 7:6, and no 64-byte FIFO (bit 5) as on 16750.
        assert_eq!(u.read(IIR, 1) >> 6, 0);
        u.write(IIR, 1, 0x01);
        assert_eq!(u.read(IIR, 1) >> 6, 3);
        u.write(IIR, 1, 0x21);
        assert_eq!(u.read(IIR, 1) >> 5, 6);
        // LCR = 0xBF: offset 2 still reads IIR, not an EFR that reads back 0.
        u.write(LCR, 1, 0xbf);
        assert_ne!(u.read(IIR, 1), 0);
        u.write(LCR, 1, 0x03);
        assert_eq!(u.read(LCR, 1), 0x03);
    }

    #[test]
    fn divisor_latch() {
        let mut u = Uart16550::new();
        u.write(IER, 1, 0x01);
        u.write(LCR, 1, 0x83);
        u.write(0, 1, 0x01);
        u.write(1, 1, 0x02);
        assert_eq!(u.read(0, 1), 0x01);
        assert_eq!(u.read(1, 1), 0x02);
        assert!(u.take_output().is_empty(), "DLL write is not a transmit");
        u.write(LCR, 1, 0x03);
        assert_eq!(u.read(IER, 1), 0x01);
    }

    #[test]
    fn loopback_data_and_fifo_clear() {
        let mut u = Uart16550::new();
        u.write(MCR, 1, u64::from(MCR_LOOP));
        u.write(0, 1, 0x55);
        assert!(u.take_output().is_empty());
        assert_eq!(u.read(RBR, 1), 0x55);
        u.write(MCR, 1, 0);
        u.push_input(b"abc");
        u.write(IIR, 1, u64::from(FCR_ENABLE | FCR_CLEAR_RX));
        assert_eq!(u.input_len(), 0);
        // Unknown offsets and read-only registers.
        u.write(LSR, 1, 0);
        u.write(0x40, 1, 1);
        assert_eq!(u.read(0x40, 1), 0);
    }

    #[test]
    fn serde_round_trip() {
        let mut u = Uart16550::new();
        u.write(IER, 1, 3);
        u.write(IIR, 1, 0xc1);
        u.push_input(b"in");
        u.write(0, 1, u64::from(b'o'));
        let bytes = postcard::to_stdvec(&u).unwrap();
        let back: Uart16550 = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, u);
    }
}
