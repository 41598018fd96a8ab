//! Any text given to the expression compiler: an error or an expression, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ordo_model::expr::compile(text);
    }
});
