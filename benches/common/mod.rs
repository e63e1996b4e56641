//! What both benchmarks need: a silent operator, a scratch directory removed even on a
//! panic, numeric settings from the environment, medians.

use std::path::PathBuf;
use std::time::Duration;

use drillbook::cancel::BoxFuture;
use drillbook::engine::Observer;
use drillbook::record::{DrillRecord, StepRecord};
use drillbook::runbook::Step;
use drillbook::steps::Interaction;

/// Approves everything, shows nothing.
pub struct Quiet;

impl Interaction for Quiet {
    fn assume_yes(&self) -> bool {
        true
    }
    fn is_interactive(&self) -> bool {
        false
    }
    fn show(&self, _: &str) {}
    fn confirm(&self, _: String) -> BoxFuture<'static, std::io::Result<bool>> {
        Box::pin(async { Ok(true) })
    }
}

impl Observer for Quiet {
    fn started(&self, _: &DrillRecord, _: usize, _: usize) {}
    fn step_started(&self, _: bool, _: usize, _: &Step) {}
    fn step_finished(&self, _: bool, _: usize, _: &StepRecord) {}
}

/// Removes a directory when dropped: declare it before what lives inside it.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `cargo bench` passes `--bench`; anything else (`cargo test --benches`) must not build
/// gigabytes of data.
pub fn invoked_by_cargo_bench(name: &str) -> bool {
    let yes = std::env::args().any(|a| a == "--bench");
    if !yes {
        eprintln!("the {name} benchmark runs with `cargo bench --bench {name}`");
    }
    yes
}
