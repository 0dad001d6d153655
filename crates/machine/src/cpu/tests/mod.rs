//! CPU tests: decoding, and programs built with [`crate::testutil`] run on a whole
//! machine, checking architectural state afterwards.

mod atomic;
mod csr;
mod decode;
mod int;
mod mem;
mod mmu;
mod smc;
mod trap;
