//! The engines' differential test as a fuzz target: the input bytes drive the
//! random-program generator, and the program runs under the interpreter, the JIT
//! and both taking turns, with hart state and RAM compared at every step.
#![no_main]

#[path = "../../../../fuzz/alloc_limit.rs"]
mod alloc_limit;

use ftvm_machine::differential::{check, generate, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let case = generate(&mut Source::new(data));
    if let Err(e) = check(&case) {
        panic!("the engines disagree: {e}");
    }
});
