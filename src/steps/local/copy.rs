//! Copying a base backup into a scratch data directory, as fast as the file system allows:
//! each file cloned (`FICLONE`: a reflink, whose blocks are shared until one side writes,
//! so the backup is never changed) where the file system can, else copied inside the
//! kernel (`copy_file_range`, through `std::fs::copy`), several files at once, largest
//! first. Never a hard link: the server writes to its data files in place, and a link
//! would write into the backup.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::progress::Progress;
use crate::steps::StepError;

/// Top-level files of a stopped or backed-up server that a new instance must not inherit.
const STALE: [&str; 2] = ["postmaster.pid", "postmaster.opts"];

/// The most one call copies: the copying threads look for a stop between chunks.
const CHUNK: usize = 8 << 20;

/// Copies the tree `from` into `to` (which must not exist), leaving out [`STALE`]. Dropping
/// the future (an interrupt) stops the copy within a chunk and waits for its threads, so
/// the undo that follows finds every file it has to remove.
/// `progress` counts the bytes copied.
pub(super) async fn copy_tree(from: &Path, to: &Path, progress: Progress) -> Result<(), StepError> {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let stop = StopOnDrop {
        stop: Arc::new(AtomicBool::new(false)),
        finished,
    };
    let (from, to, flag) = (from.to_owned(), to.to_owned(), stop.stop.clone());
    tokio::task::spawn_blocking(move || {
        let copied = copy_blocking(&from, &to, &flag, &progress);
        drop(done);
        copied
    })
    .await
    .map_err(|e| StepError::failed(format!("the copy of the base backup stopped: {e}")))?
}

/// Stops the copying threads when the step is dropped, and waits until they have.
struct StopOnDrop {
    stop: Arc<AtomicBool>,
    /// Disconnected once the threads are done.
    finished: std::sync::mpsc::Receiver<()>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.finished.recv();
    }
}

fn copy_blocking(
    from: &Path,
    to: &Path,
    stop: &AtomicBool,
    progress: &Progress,
) -> Result<(), StepError> {
    let mut files = Vec::new();
    walk(from, to, true, &mut files).map_err(|e| {
        StepError::failed(format!(
            "copying the base backup {} failed: {e}",
            from.display()
        ))
    })?;
    files.sort_by_key(|f| std::cmp::Reverse(f.2));
    progress.set_length(files.iter().map(|f| f.2).sum());
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<String>> = Mutex::new(None);
    let can_clone = AtomicBool::new(true);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((src, dst, _)) = files.get(i) else {
                    return;
                };
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Err(e) = copy_file(src, dst, &can_clone, stop, progress) {
                    stop.store(true, Ordering::Relaxed);
                    let mut slot = failed.lock().unwrap_or_else(|p| p.into_inner());
                    slot.get_or_insert_with(|| format!("{}: {e}", src.display()));
                    return;
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(StepError::failed(format!(
            "copying the base backup {} failed: {e}",
            from.display()
        )));
    }
    if stop.load(Ordering::Relaxed) {
        return Err(StepError::cancelled());
    }
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| StepError::failed(format!("cannot set permissions on {}: {e}", to.display())))
}

/// Creates the directories of `from` under `to` (with their modes) and the symbolic links,
/// and lists the regular files to copy with their sizes.
fn walk(
    from: &Path,
    to: &Path,
    top: bool,
    files: &mut Vec<(PathBuf, PathBuf, u64)>,
) -> std::io::Result<()> {
    let mode = std::fs::metadata(from)?.permissions().mode();
    std::fs::DirBuilder::new().mode(mode & 0o7777).create(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if top && STALE.iter().any(|s| name == *s) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&src, &dst, false, files)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_file() {
            files.push((src, dst, entry.metadata()?.len()));
        }
    }
    Ok(())
}

/// A reflink of `src` at `dst` when the file system has them (remembered in `can_clone`
/// after the first refusal), else a copy in the kernel, chunk by chunk until `stop`, else
/// (another file system, an old kernel) through memory; the mode follows the source's.
fn copy_file(
    src: &Path,
    dst: &Path,
    can_clone: &AtomicBool,
    stop: &AtomicBool,
    progress: &Progress,
) -> std::io::Result<()> {
    let mut source = File::open(src)?;
    let mut target = File::create(dst)?;
    target.set_permissions(source.metadata()?.permissions())?;
    if can_clone.load(Ordering::Relaxed) {
        if rustix::fs::ioctl_ficlone(&target, &source).is_ok() {
            progress.inc(source.metadata()?.len());
            return Ok(());
        }
        // a file system without reflinks: copy this file and the rest
        can_clone.store(false, Ordering::Relaxed);
    }
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        match rustix::fs::copy_file_range(&source, None, &target, None, CHUNK) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                first = false;
                progress.inc(n as u64);
            }
            Err(_) if first => {
                progress.inc(std::io::copy(&mut source, &mut target)?);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tree_is_copied_with_its_modes_and_links_and_without_a_stale_pid_file() {
        let root = std::env::temp_dir().join(format!("drillbook-copy-{}", std::process::id()));
        let (from, to) = (root.join("from"), root.join("to"));
        std::fs::create_dir_all(from.join("base/1")).expect("dirs");
        std::fs::write(from.join("base/1/1259"), vec![7u8; 100_000]).expect("file");
        std::fs::write(from.join("PG_VERSION"), "15\n").expect("file");
        std::fs::write(from.join("postmaster.pid"), "123\n").expect("file");
        std::fs::set_permissions(
            from.join("PG_VERSION"),
            std::fs::Permissions::from_mode(0o640),
        )
        .expect("mode");
        std::os::unix::fs::symlink("base/1", from.join("link")).expect("link");
        copy_tree(&from, &to, Progress::hidden())
            .await
            .expect("copied");
        assert_eq!(
            std::fs::read(to.join("base/1/1259")).expect("read"),
            vec![7u8; 100_000]
        );
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&to.join("PG_VERSION")), 0o640);
        assert_eq!(mode(&to), 0o700);
        assert_eq!(
            std::fs::read_link(to.join("link")).expect("link"),
            Path::new("base/1")
        );
        assert!(!to.join("postmaster.pid").exists());
        // an existing target is refused, never merged into
        assert!(copy_tree(&from, &to, Progress::hidden()).await.is_err());
        let _ = std::fs::remove_dir_all(&root);
    }
}
