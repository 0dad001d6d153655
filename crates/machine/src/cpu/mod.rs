//! The RV64GC hart.

pub mod fp;
