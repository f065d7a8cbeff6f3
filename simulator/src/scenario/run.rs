//! Running scenario files: one, or a directory of them, with a summary.

use super::*;

/// Runs every scenario of a file or directory, one after the other, and prints a summary.
pub async fn run_path(path: &Path) -> Result<Vec<Report>, String> {
    let files = scenario_files(path)?;
    let started = Instant::now();
    let mut reports = Vec::new();
    for file in files {
        reports.push(run_scenario(&file).await);
        println!();
    }
    let failed: Vec<&Report> = reports.iter().filter(|r| !r.passed()).collect();
    let known: Vec<&Report> = reports.iter().filter(|r| r.known_bug.is_some()).collect();
    let known_note = match known.len() {
        0 => String::new(),
        n => format!(" ({n} of them showing a known bug)"),
    };
    println!(
        "{} scenario(s) in {:.1}s: {} passed{known_note}, {} failed",
        reports.len(),
        started.elapsed().as_secs_f64(),
        reports.len() - failed.len(),
        failed.len()
    );
    for r in known {
        println!("  KNOWN BUG {} ({})", r.name, r.path.display());
    }
    for r in failed {
        let at = r
            .failing_step()
            .map(|s| format!("step {}", s.index))
            .unwrap_or_else(|| "setup".to_owned());
        println!("  FAILED {} ({}), {at}", r.name, r.path.display());
    }
    Ok(reports)
}

/// `bridge-sim run <file-or-dir>`: `Err` when a scenario failed or none could be found.
pub async fn run_cli(path: &Path) -> Result<(), String> {
    let reports = run_path(path).await?;
    match reports.iter().filter(|r| !r.passed()).count() {
        0 => Ok(()),
        n => Err(format!("{n} of {} scenario(s) failed", reports.len())),
    }
}

/// Runs one scenario file in a fresh world, printing the transcript as it goes.
pub async fn run_scenario(path: &Path) -> Report {
    let started = Instant::now();
    let mut out = Transcript::default();
    let fallback_name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |out: Transcript, name: String, why: String| {
        let mut out = out;
        out.line(&format!("FAIL {name}: {why}"));
        Report {
            name,
            path: path.to_owned(),
            steps: Vec::new(),
            failure: Some(why),
            known_bug: None,
            elapsed: started.elapsed(),
            transcript: out.text,
        }
    };
    let scenario = match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => return fail(out, fallback_name, format!("cannot read the scenario: {e}")),
    };
    out.line(&format!("scenario {} ({})", scenario.name, path.display()));
    for l in scenario.description.trim().lines() {
        out.line(&format!("  {}", l.trim()));
    }
    let mut runner = match Runner::new(&scenario, path).await {
        Ok(r) => r,
        Err(e) => return fail(out, scenario.name, format!("the world did not start: {e}")),
    };
    let mut steps = Vec::new();
    let mut failure = None;
    for (i, step) in scenario.steps.iter().enumerate() {
        let index = i + 1;
        let step_started = Instant::now();
        let (description, result) = match step {
            Step::Do(action) => (action.describe(), runner.act(action).await),
            Step::Expect(e) => (e.what.describe(), runner.expect(e).await),
        };
        let elapsed = step_started.elapsed();
        let passed = result.is_ok();
        let detail = match result {
            Ok(note) => note,
            Err(seen) => Some(seen),
        };
        out.step(index, passed, elapsed, &description, detail.as_deref());
        if !passed {
            failure = Some(format!(
                "step {index} ({description}): {}",
                detail.clone().unwrap_or_default()
            ));
        }
        steps.push(StepReport {
            index,
            description,
            passed,
            elapsed,
            detail,
        });
        if !passed {
            break;
        }
    }
    // A scenario that ended inside a fault would make the bridge's graceful stop wait it out.
    runner.world.gitter.clear_faults();
    runner.world.hs.clear_faults();
    runner.world.shutdown().await;
    let elapsed = started.elapsed();
    let mut known_bug = None;
    match (&failure, &scenario.known_bug) {
        (None, None) => out.line(&format!(
            "PASS {}: {} steps in {:.2}s",
            scenario.name,
            steps.len(),
            elapsed.as_secs_f64()
        )),
        (Some(_), None) => out.line(&format!(
            "FAIL {} at step {} of {} ({:.2}s)",
            scenario.name,
            steps.len(),
            scenario.steps.len(),
            elapsed.as_secs_f64()
        )),
        (Some(_), Some(bug)) => {
            out.line(&format!(
                "KNOWN BUG {} at step {} of {} ({:.2}s), as its `known_bug` says:",
                scenario.name,
                steps.len(),
                scenario.steps.len(),
                elapsed.as_secs_f64()
            ));
            for l in bug.trim().lines() {
                out.line(&format!("  {}", l.trim()));
            }
            known_bug = failure.take();
        }
        (None, Some(_)) => {
            let why = "every step passed, but the scenario has a `known_bug`: if the bug \
                       is fixed, remove the `known_bug` line"
                .to_owned();
            out.line(&format!("FAIL {}: {why}", scenario.name));
            failure = Some(why);
        }
    }
    Report {
        name: scenario.name,
        path: path.to_owned(),
        steps,
        failure,
        known_bug,
        elapsed,
        transcript: out.text,
    }
}
