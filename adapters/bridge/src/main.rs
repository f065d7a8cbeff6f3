//! The `gitter-bridge` binary: config, driver loop, login pages (being built: see the binary issue).
fn main() {
    eprintln!("gitter-bridge: the runtime is not built yet");
    std::process::exit(2);
}
