//! What a run reports: each step's outcome and the transcript printed as it goes.

use super::*;

/// The outcome of one step.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// 1-based.
    pub index: usize,
    /// What the step was.
    pub description: String,
    /// Whether it passed.
    pub passed: bool,
    /// How long it took.
    pub elapsed: Duration,
    /// What happened (for a pass) or what was seen instead (for a failure).
    pub detail: Option<String>,
}

/// The outcome of a scenario.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scenario's name (the file name when it could not be read).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// The steps that ran.
    pub steps: Vec<StepReport>,
    /// Why the scenario failed: the failing step's line and what was seen, or a setup error.
    pub failure: Option<String>,
    /// For a scenario with a `known_bug`: the failure that showed it.
    pub known_bug: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
    /// Everything printed.
    pub transcript: String,
}

impl Report {
    /// Whether every step passed, or the scenario failed as its `known_bug` says.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The step that failed.
    pub fn failing_step(&self) -> Option<&StepReport> {
        self.steps.iter().find(|s| !s.passed)
    }
}

/// Prints lines as they come and keeps them.
#[derive(Default)]
pub(super) struct Transcript {
    pub(super) text: String,
}

impl Transcript {
    pub(super) fn line(&mut self, line: &str) {
        println!("{line}");
        self.text.push_str(line);
        self.text.push('\n');
    }

    pub(super) fn step(
        &mut self,
        index: usize,
        passed: bool,
        elapsed: Duration,
        description: &str,
        detail: Option<&str>,
    ) {
        let mark = if passed { "ok  " } else { "FAIL" };
        self.line(&format!(
            "{index:>4}. {mark} {:>6.2}s  {description}",
            elapsed.as_secs_f64()
        ));
        if let Some(detail) = detail {
            for l in detail.lines() {
                self.line(&format!("{:>20}{l}", ""));
            }
        }
    }
}
