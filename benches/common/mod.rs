//! What the benchmarks share: a silent operator, a scratch directory removed even on a
//! panic, numeric settings from the environment, medians, and the distribution's packages
//! they install when missing.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use drillbook::cancel::BoxFuture;
use drillbook::engine::Observer;
use drillbook::pg::cluster::{find_binaries, Binaries};
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

/// `command` on the PATH.
pub fn which(command: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(command))
            .find(|f| f.is_file())
    })
}

/// `command` on the PATH, installed first from the distribution's `package` when it is
/// missing. Panics, saying what to install, when it cannot be.
pub fn installed(command: &str, package: &str) -> PathBuf {
    if let Some(found) = which(command) {
        return found;
    }
    eprintln!("{command} is missing: installing the distribution's {package} …");
    let done = apt_install(package);
    match which(command) {
        Some(found) if done => found,
        _ => cannot_install(command, package),
    }
}

/// The PostgreSQL server binaries (found as the tests find them), the distribution's
/// `postgresql` installed first when there are none.
pub fn pg_server() -> Binaries {
    find_binaries().unwrap_or_else(|_| {
        eprintln!("no PostgreSQL server binaries: installing the distribution's postgresql …");
        let done = apt_install("postgresql");
        match find_binaries() {
            Ok(bin) if done => bin,
            _ => cannot_install("the PostgreSQL server", "postgresql"),
        }
    })
}

/// Installs `package` with `apt-get`, as root or through `sudo -n` (never asking for a
/// password); whether it did.
fn apt_install(package: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    let apt = |args: &[&str]| {
        let mut c = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        c.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", package])
}

fn cannot_install(what: &str, package: &str) -> ! {
    panic!(
        "{what} is missing and could not be installed here: install the {package} package (apt-get install {package}) and run the benchmark again"
    )
}
