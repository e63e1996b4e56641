//! The run ledger: what a run has created, written down as it happens, so that what a killed
//! run leaves behind (`kill -9`, an out-of-memory kill, a CI timeout, a cleanup aborted by a
//! second interrupt) can be found and removed later by `drillbook gc`.
//!
//! Each run holds `<temp dir>/drillbook-<run id>.ledger` open with an exclusive lock for as
//! long as it lives. Its lines are JSON: a header (run, runbook, procedure, pid, start), then
//! one line per resource created (before the resource exists, like the undo itself) and one
//! per resource undone. A run that ends with everything undone removes its ledger. A ledger
//! whose lock can be taken belongs to a run that is no longer alive: exact, whatever pid
//! reuse or clock changes happened, and never a live run's resources.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Undo;

/// What a step created, as the ledger keeps it: enough to find and remove it from another
/// process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A local cluster's directory (its server may still run).
    Cluster {
        root: PathBuf,
    },
    Dir {
        path: PathBuf,
    },
    NeonBranch {
        project: String,
        name: String,
    },
    NeonSnapshot {
        project: String,
        name: String,
    },
    /// A `shell` step's `undo:` command, without the values of its secret variables.
    Shell {
        command: super::shell::UndoCommand,
    },
}

impl Resource {
    fn of(undo: &Undo) -> Resource {
        match undo {
            Undo::Cluster { handle, .. } => Resource::Cluster {
                root: handle.root.clone(),
            },
            Undo::Dir { path, .. } => Resource::Dir { path: path.clone() },
            Undo::NeonBranch { project, name, .. } => Resource::NeonBranch {
                project: project.clone(),
                name: name.clone(),
            },
            Undo::NeonSnapshot { project, name, .. } => Resource::NeonSnapshot {
                project: project.clone(),
                name: name.clone(),
            },
            Undo::Shell { command, .. } => {
                let mut kept = command.clone();
                kept.env.retain(|(k, _)| !command.secret.contains(k));
                Resource::Shell { command: kept }
            }
        }
    }

    /// The undo that removes it, as the run itself would have.
    pub fn undo(&self, step: &str, what: &str) -> Result<Undo, String> {
        let (step, what) = (step.to_owned(), what.to_owned());
        Ok(match self {
            Resource::Cluster { root } => {
                let bin = crate::pg::cluster::find_binaries().map_err(|e| e.to_string())?;
                let handle = crate::pg::cluster::ClusterHandle::for_root(&bin, root)
                    .map_err(|e| e.to_string())?;
                Undo::Cluster { step, what, handle }
            }
            Resource::Dir { path } => Undo::Dir {
                step,
                what,
                path: path.clone(),
            },
            Resource::NeonBranch { project, name } => Undo::NeonBranch {
                step,
                what,
                project: project.clone(),
                name: name.clone(),
                id: std::sync::Arc::default(),
            },
            Resource::NeonSnapshot { project, name } => Undo::NeonSnapshot {
                step,
                what,
                project: project.clone(),
                name: name.clone(),
                id: std::sync::Arc::default(),
            },
            Resource::Shell { command } => {
                // the secrets were not written down: this process's environment has them, or
                // a person runs the command
                let mut full = command.clone();
                let missing: Vec<&str> = command
                    .secret
                    .iter()
                    .filter(|k| std::env::var_os(k).is_none())
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "its environment held secrets drillbook does not write down ({}): set them and run `drillbook gc` again, or run it by hand: {}",
                        missing.join(", "),
                        command.by_hand()
                    ));
                }
                for name in &command.secret {
                    if let Ok(value) = std::env::var(name) {
                        full.env.push((name.clone(), value));
                    }
                }
                Undo::Shell {
                    step,
                    what,
                    command: full,
                }
            }
        })
    }

    /// Whether it still exists, as far as can be told without an API: a directory is gone
    /// once removed; a Neon resource is assumed to exist until `gc` asks Neon.
    pub fn may_exist(&self) -> bool {
        match self {
            Resource::Cluster { root } => root.exists(),
            Resource::Dir { path } => path.exists(),
            // what an undo command removes is unknown: it is left until it ran
            Resource::NeonBranch { .. }
            | Resource::NeonSnapshot { .. }
            | Resource::Shell { .. } => true,
        }
    }
}

/// One line of a ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Run {
        run: String,
        runbook: String,
        procedure: String,
        pid: u32,
        started_at: DateTime<Utc>,
    },
    Created {
        index: usize,
        step: String,
        what: String,
        resource: Resource,
    },
    Undone {
        index: usize,
    },
}

/// The directory ledgers are kept in.
pub fn ledger_dir() -> PathBuf {
    std::env::temp_dir()
}

const PREFIX: &str = "drillbook-";
const SUFFIX: &str = ".ledger";

/// A live run's ledger: open, locked, appended to.
#[derive(Debug)]
pub struct Ledger {
    file: Mutex<File>,
    path: PathBuf,
}

impl Ledger {
    /// Creates and locks the ledger of run `run` in `dir`.
    pub fn begin(dir: &Path, run: &str, runbook: &str, procedure: &str) -> std::io::Result<Ledger> {
        use std::os::unix::fs::OpenOptionsExt;
        // locked under a name `gc` does not look at, then given its name: `gc` never sees
        // a live run's ledger unlocked
        let path = dir.join(format!("{PREFIX}{run}{SUFFIX}"));
        let fresh = dir.join(format!("{PREFIX}{run}{SUFFIX}.new"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&fresh)?;
        file.lock()?;
        std::fs::rename(&fresh, &path)?;
        let ledger = Ledger {
            file: Mutex::new(file),
            path,
        };
        ledger.write(&Line::Run {
            run: run.to_owned(),
            runbook: runbook.to_owned(),
            procedure: procedure.to_owned(),
            pid: std::process::id(),
            started_at: Utc::now(),
        })?;
        Ok(ledger)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One line, written through to the disk's cache in one `write` (a crash loses at most
    /// the line being written).
    fn write(&self, line: &Line) -> std::io::Result<()> {
        let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        text.push('\n');
        self.file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .write_all(text.as_bytes())
    }
}

/// What a run created and has not undone yet, in the order created: the run's own list, and
/// its ledger when it has one.
#[derive(Debug, Default)]
pub struct Undos {
    list: Mutex<Vec<(usize, Undo)>>,
    ledger: Option<Ledger>,
}

impl Undos {
    pub fn new(ledger: Option<Ledger>) -> Undos {
        Undos {
            list: Mutex::new(Vec::new()),
            ledger,
        }
    }

    /// Registers something a step is about to create (written to the ledger first).
    pub fn push(&self, undo: Undo) {
        let mut list = self
            .list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let index = list.len();
        if let Some(l) = &self.ledger {
            let _ = l.write(&Line::Created {
                index,
                step: undo.step().to_owned(),
                what: undo.title().to_owned(),
                resource: Resource::of(&undo),
            });
        }
        list.push((index, undo));
    }

    /// Everything registered so far, oldest first, leaving the list empty.
    pub fn take(&self) -> Vec<(usize, Undo)> {
        std::mem::take(
            &mut *self
                .list
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Gives up the undo of what `mine` no longer matches (it has become production's: a
    /// finalized restore), so neither this run nor `gc` removes it.
    pub fn release(&self, mine: impl Fn(&Undo) -> bool) {
        let mut list = self
            .list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.retain(|(index, undo)| {
            let keep = mine(undo);
            if !keep {
                self.undone(*index);
            }
            keep
        });
    }

    /// Whether something registered and not undone yet matches `f`.
    pub fn any(&self, f: impl Fn(&Undo) -> bool) -> bool {
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|(_, u)| f(u))
    }

    /// Records that the resource registered as `index` is gone.
    pub fn undone(&self, index: usize) {
        if let Some(l) = &self.ledger {
            let _ = l.write(&Line::Undone { index });
        }
    }

    /// The end of the run: with nothing left behind the ledger is removed; otherwise it
    /// stays, unlocked, for `gc`.
    pub fn finish(&self, left_behind: bool) {
        if let (Some(l), false) = (&self.ledger, left_behind) {
            let _ = std::fs::remove_file(&l.path);
        }
    }
}

/// A run that is no longer alive and what it left.
#[derive(Debug, Clone)]
pub struct DeadRun {
    pub ledger: PathBuf,
    pub run: String,
    pub runbook: String,
    pub procedure: String,
    pub pid: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub left: Vec<Left>,
}

/// One resource a dead run created and did not undo.
#[derive(Debug, Clone)]
pub struct Left {
    pub step: String,
    pub what: String,
    pub resource: Resource,
}

/// The ledgers in `dir` of runs no longer alive (their lock is free), with what each left.
/// A ledger held by a live run is never read further than its lock.
pub fn dead_runs(dir: &Path) -> Vec<DeadRun> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<DeadRun> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .filter_map(|p| read_dead(&p))
        .collect();
    out.sort_by(|a, b| a.run.cmp(&b.run));
    out
}

/// The ledger at `path`, if its run is dead (its lock could be taken, and is released again
/// at once).
fn read_dead(path: &Path) -> Option<DeadRun> {
    let file = File::open(path).ok()?;
    // a live run holds the exclusive lock; a shared one is free only when it is gone
    file.try_lock_shared().ok()?;
    let mut run = DeadRun {
        ledger: path.to_owned(),
        run: String::new(),
        runbook: String::new(),
        procedure: String::new(),
        pid: 0,
        started_at: None,
        left: Vec::new(),
    };
    let mut created: Vec<(usize, Left)> = Vec::new();
    for line in std::io::BufReader::new(&file).lines().map_while(Result::ok) {
        // a line cut short by the crash is skipped
        match serde_json::from_str::<Line>(&line) {
            Ok(Line::Run {
                run: id,
                runbook,
                procedure,
                pid,
                started_at,
            }) => {
                run.run = id;
                run.runbook = runbook;
                run.procedure = procedure;
                run.pid = pid;
                run.started_at = Some(started_at);
            }
            Ok(Line::Created {
                index,
                step,
                what,
                resource,
            }) => created.push((
                index,
                Left {
                    step,
                    what,
                    resource,
                },
            )),
            Ok(Line::Undone { index }) => created.retain(|(i, _)| *i != index),
            Err(_) => {}
        }
    }
    run.left = created.into_iter().map(|(_, l)| l).collect();
    Some(run)
}

/// Removes the ledger of a dead run whose resources are all gone.
pub fn forget(run: &DeadRun) -> std::io::Result<()> {
    std::fs::remove_file(&run.ledger)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_ledger_is_not_dead_and_a_released_one_lists_what_is_left() {
        let dir =
            std::env::temp_dir().join(format!("drillbook-ledger-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let undos = Undos::new(Some(
            Ledger::begin(&dir, "r1", "rb", "drill").expect("ledger"),
        ));
        for (step, path) in [("a", "/x/a"), ("b", "/x/b")] {
            undos.push(Undo::Dir {
                step: step.into(),
                what: format!("remove {path}"),
                path: path.into(),
            });
        }
        // held by this (live) run: not dead
        assert!(dead_runs(&dir).is_empty());
        undos.undone(0);
        // the run dies: its lock goes with its file handle
        let Undos { ledger, .. } = undos;
        drop(ledger);
        let dead = dead_runs(&dir);
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].run.as_str(), dead[0].procedure.as_str()),
            ("r1", "drill")
        );
        assert_eq!(dead[0].left.len(), 1);
        assert_eq!(
            dead[0].left[0].resource,
            Resource::Dir {
                path: "/x/b".into()
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
