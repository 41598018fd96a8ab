//! Any bytes given to the loader: a diagnostic or a process, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordo_model::{self as model, Options};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let loaded = model::load("fuzz.yaml", text, &Options::default());
        for d in &loaded.diagnostics {
            let _ = d.render(text);
        }
    }
});
