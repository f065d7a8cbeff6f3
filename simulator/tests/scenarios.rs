//! Every scenario file of `fixtures/scenarios/` against a fresh world (fakes plus the real
//! bridge runtime), one after the other: parallel worlds on a 2-core runner would turn the
//! scenarios' bounded waits into flakes.
//!
//! `SCENARIO=<part of a file name>` runs only the matching files.

use std::path::PathBuf;

use gitter_bridge_sim::scenario::{run_scenario, scenario_files};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios");
    let filter = std::env::var("SCENARIO").unwrap_or_default();
    let files: Vec<PathBuf> = scenario_files(&dir)
        .expect("the scenario directory has scenarios")
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(&filter))
        .collect();
    assert!(!files.is_empty(), "no scenario file matches {filter:?}");
    let mut failures = Vec::new();
    for file in &files {
        let report = run_scenario(file).await;
        if !report.passed() {
            failures.push(format!(
                "{}: {}\n\n{}",
                file.display(),
                report.failure.clone().unwrap_or_default(),
                report.transcript
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenario(s) failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}
