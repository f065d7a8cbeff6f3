//! The config loader (adapters/bridge/src/config.rs, `Config::parse(text, base)`): TOML an
//! operator writes, parsed and validated key by key. Checked: no panic, and what it accepts
//! holds what validation promises (a domain without `/`, space or `@`).
//!
//! Inputs naming a `*_file` key are skipped: the loader reads those files, and a fuzzer
//! that finds `/dev/zero` would hang on a read rather than find a bug.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// Whether a parsed TOML value has a key ending in `_file` anywhere.
fn names_a_file(value: &toml::Value) -> bool {
    match value {
        toml::Value::Table(t) => t
            .iter()
            .any(|(k, v)| k.ends_with("_file") || names_a_file(v)),
        toml::Value::Array(a) => a.iter().any(names_a_file),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = toml::from_str::<toml::Value>(text)
        && names_a_file(&value)
    {
        return;
    }
    if let Ok(config) = gitter_bridge::Config::parse(text, Path::new("/nonexistent/fuzz")) {
        assert!(!config.domain.is_empty());
        assert!(
            !config.domain.contains(['/', ' ', '@']),
            "{:?}",
            config.domain
        );
    }
});
