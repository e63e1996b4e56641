//! WAL copied ahead of replay. Recovery asks for one segment at a time and waits while its
//! `restore_command` copies it; a thread beside it copies the next segments of the archive
//! into a directory of the instance (a real copy, never a link: the server may later
//! recycle a segment and write into it), a few ahead of what recovery has taken, so the
//! `restore_command` only has to move a finished copy into place (a rename), and falls back
//! to copying from the archive itself for any segment not staged yet.
//!
//! Only segments the archive is done with are staged: those of the backup's timeline or a
//! later one, from the backup's start on, of the common segment size, and never the newest
//! (the archiver may still be writing it).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::backups::segment;
use crate::pg::cluster::Account;

/// How many staged segments may wait for recovery to take them (16 MB each by default).
const AHEAD: usize = 8;

/// A running stager. Dropping it stops the thread and waits (a segment's copy at most)
/// until it has removed its directory, so an undo that follows finds nothing of it.
#[derive(Debug)]
pub(super) struct WalAhead {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    /// Disconnected once the thread is done.
    finished: std::sync::mpsc::Receiver<()>,
}

impl WalAhead {
    /// Starts staging the segments of `archive` from `start` (a segment name) on into `dir`
    /// (created, owned by `account`). None when there is nothing to stage.
    pub(super) fn start(
        archive: &Path,
        start: &str,
        dir: PathBuf,
        account: Option<Account>,
    ) -> Option<WalAhead> {
        let queue = staged_segments(archive, start);
        if queue.is_empty() {
            return None;
        }
        std::fs::create_dir(&dir).ok()?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).ok()?;
        if let Some(a) = account {
            std::os::unix::fs::lchown(&dir, Some(a.uid), Some(a.gid)).ok()?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, to) = (stop.clone(), dir.clone());
        let (done, finished) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            stage(&queue, &to, account, &flag);
            let _ = std::fs::remove_dir_all(&to);
            drop(done);
        });
        Some(WalAhead {
            dir,
            stop,
            finished,
        })
    }

    /// The directory the `restore_command` takes staged segments from.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for WalAhead {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.finished.recv();
    }
}

/// How many segments recovery from `start` may read from `archive`: up to its newest (a
/// target may stop it earlier), for the progress shown.
pub(super) fn needed_at_most(archive: &Path, start: &str) -> u64 {
    staged_segments(archive, start).len() as u64 + 1
}

/// The archive's segment files worth staging, in the order recovery reads them.
fn staged_segments(archive: &Path, start: &str) -> Vec<(u64, PathBuf)> {
    let Some((tli, first)) = segment(start) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, u32, PathBuf, u64)> = std::fs::read_dir(archive)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let (t, n) = e.file_name().to_str().and_then(segment)?;
            let len = e.metadata().ok().filter(|m| m.is_file())?.len();
            (t >= tli && n >= first).then(|| (n, t, e.path(), len))
        })
        .collect();
    found.sort_unstable_by_key(|f| (f.0, f.1));
    // the newest may be half written; a complete segment has the size of the others
    found.pop();
    let Some(size) = found.first().map(|f| f.3) else {
        return Vec::new();
    };
    found
        .into_iter()
        .take_while(|f| f.3 == size)
        .map(|(n, _, path, _)| (n, path))
        .collect()
}

/// Copies `queue` into `dir` in order, at most [`AHEAD`] copies waiting at a time, until
/// the queue ends or `stop` is set. A copy is written under a temporary name and renamed,
/// so the `restore_command` sees whole segments only; one recovery has passed is removed.
fn stage(queue: &[(u64, PathBuf)], dir: &Path, account: Option<Account>, stop: &AtomicBool) {
    let mut waiting: Vec<(u64, PathBuf)> = Vec::new();
    for (n, from) in queue {
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            // taken: recovery moved it away, so it has read everything before it
            let taken = waiting
                .iter()
                .filter(|(_, p)| !p.exists())
                .map(|(n, _)| *n)
                .max();
            if let Some(taken) = taken {
                for (_, p) in waiting.iter().filter(|(m, _)| *m < taken) {
                    let _ = std::fs::remove_file(p);
                }
                waiting.retain(|(m, _)| *m > taken);
            }
            if waiting.len() < AHEAD {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let Some(name) = from.file_name() else {
            continue;
        };
        let (part, to) = (dir.join(".part"), dir.join(name));
        let copied = std::fs::copy(from, &part).and_then(|_| {
            if let Some(a) = account {
                std::os::unix::fs::lchown(&part, Some(a.uid), Some(a.gid))?;
            }
            std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&part, &to)
        });
        if copied.is_err() {
            // the disk is full or the archive unreadable: recovery copies from the archive
            let _ = std::fs::remove_file(&part);
            return;
        }
        waiting.push((*n, to));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finished_segments_from_the_start_on_are_staged() {
        let dir = std::env::temp_dir().join(format!("drillbook-wal-ahead-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for (name, len) in [
            ("000000010000000000000001", 16),
            ("000000010000000000000002", 16),
            ("000000010000000000000002.00000028.backup", 3),
            ("00000002.history", 3),
            ("000000010000000000000003", 16),
            ("000000020000000000000003", 16),
            ("000000020000000000000004", 16),
            ("000000020000000000000005", 9),
        ] {
            std::fs::write(dir.join(name), vec![0u8; len]).expect("file");
        }
        let names: Vec<String> = staged_segments(&dir, "000000010000000000000002")
            .into_iter()
            .map(|(_, p)| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "000000010000000000000002",
                "000000010000000000000003",
                "000000020000000000000003",
                "000000020000000000000004"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
