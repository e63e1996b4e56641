//! The file store: JSON Lines, one entry per line. An append takes an exclusive lock on the
//! file, reads the last entry, writes the new line in one `write` and fsyncs before the lock
//! is released, so concurrent runs never interleave or lose a record. A line cut short by a
//! crash is detected (no newline and not an entry): the next append moves it aside to
//! `<file>.torn` (and says so) before writing; `history repair` does the same on demand.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Anchor, Checkpoint, Entry, HistoryError, Lines};

fn io(what: &str, path: &Path, e: &std::io::Error) -> HistoryError {
    HistoryError::Io(format!("{what} {}: {e}", path.display()))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn torn_path(path: &Path) -> PathBuf {
    sibling(path, ".torn")
}

/// `<file>.head`: the count and newest hash, rewritten atomically after every append.
fn head_path(path: &Path) -> PathBuf {
    sibling(path, ".head")
}

/// The anchor: none when there is no `.head` file, an error saying what is wrong with one
/// that cannot be read.
fn read_anchor(path: &Path) -> Result<Option<Anchor>, String> {
    let text = match std::fs::read_to_string(head_path(path)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if text.trim().is_empty() {
        return Err("it is empty".into());
    }
    serde_json::from_str(text.trim())
        .map(Some)
        .map_err(|e| format!("not a head record: {e}"))
}

fn write_anchor(path: &Path, anchor: &Anchor) -> Result<(), HistoryError> {
    let head = head_path(path);
    let tmp = sibling(path, ".head.tmp");
    let text = serde_json::to_string(anchor).map_err(|e| HistoryError::Io(e.to_string()))?;
    let mut f = File::create(&tmp).map_err(|e| io("cannot write", &tmp, &e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(|e| io("cannot write", &tmp, &e))?;
    std::fs::rename(&tmp, &head).map_err(|e| io("cannot write", &head, &e))
}

/// The file's device, inode and change time (see [`super::Lines::stamp`]).
fn stamp(f: &File) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata().ok()?;
    Some(format!(
        "{}:{}:{}.{:09}",
        m.dev(),
        m.ino(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

/// `<file>.verified`: how far a full verification found the chain intact.
fn checkpoint_path(path: &Path) -> PathBuf {
    sibling(path, ".verified")
}

/// The checkpoint; None when there is none or it cannot be read (then everything is
/// rehashed, which is never wrong).
fn read_checkpoint(path: &Path) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(checkpoint_path(path)).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// Replaces the checkpoint atomically (readers write it under a shared lock only, so each
/// through its own temporary file). Best effort: see [`super::Store::remember`].
pub fn write_checkpoint(path: &Path, checkpoint: &Checkpoint) {
    let dest = checkpoint_path(path);
    let tmp = sibling(path, &format!(".verified.{}.tmp", std::process::id()));
    let Ok(text) = serde_json::to_string(checkpoint) else {
        return;
    };
    if std::fs::write(&tmp, text + "\n").is_err() || std::fs::rename(&tmp, &dest).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

fn read_all(f: &mut File, path: &Path) -> Result<String, HistoryError> {
    let mut text = String::new();
    f.seek(SeekFrom::Start(0))
        .map_err(|e| io("cannot read", path, &e))?;
    f.read_to_string(&mut text)
        .map_err(|e| io("cannot read", path, &e))?;
    Ok(text)
}

fn split(text: &str) -> Lines {
    Lines {
        anchor: None,
        anchor_problem: None,
        anchor_place: String::new(),
        checkpoint: None,
        stamp: None,
        lines: text
            .split_terminator('\n')
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
        unterminated_tail: !text.is_empty() && !text.ends_with('\n'),
    }
}

/// The end of the file from the start of its last line (`complete`: its last non-blank
/// line; else whatever follows its last newline), as bytes, and where
/// that line starts. Reads backwards in growing chunks: an append must not cost a read of
/// the whole history.
fn last_line(f: &mut File, path: &Path, complete: bool) -> Result<(u64, Vec<u8>), HistoryError> {
    let len = f
        .seek(SeekFrom::End(0))
        .map_err(|e| io("cannot read", path, &e))?;
    let mut chunk: u64 = 64 * 1024;
    loop {
        let from = len.saturating_sub(chunk);
        let mut buf = Vec::with_capacity((len - from) as usize);
        f.seek(SeekFrom::Start(from))
            .and_then(|_| Read::by_ref(f).take(len - from).read_to_end(&mut buf))
            .map_err(|e| io("cannot read", path, &e))?;
        // the bytes the line must lie in: for a complete line, without trailing blank lines
        let end = if complete {
            buf.iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(0, |i| i + 1)
        } else {
            buf.len()
        };
        let start = buf[..end].iter().rposition(|&b| b == b'\n').map(|i| i + 1);
        match start {
            Some(i) => return Ok((from + i as u64, buf.split_off(i))),
            _ if from == 0 => return Ok((0, buf)),
            _ => chunk = chunk.saturating_mul(4),
        }
    }
}

fn text(bytes: Vec<u8>, path: &Path) -> Result<String, HistoryError> {
    String::from_utf8(bytes)
        .map_err(|e| HistoryError::Corrupt(format!("{}: not UTF-8 text: {e}", path.display())))
}

/// Moves an incomplete last line aside and truncates the file before it (the caller holds
/// the exclusive lock). A last line without newline that is a whole entry only gets its
/// newline. Returns what was done, if anything.
fn fix_tail(f: &mut File, path: &Path) -> Result<Option<String>, HistoryError> {
    let (start, tail) = last_line(f, path, false)?;
    if tail.is_empty() || tail.ends_with(b"\n") {
        return Ok(None);
    }
    let fragment = String::from_utf8_lossy(&tail).into_owned();
    if serde_json::from_str::<Entry>(&fragment).is_ok() {
        f.write_all(b"\n")
            .map_err(|e| io("cannot write", path, &e))?;
        return Ok(Some(
            "completed the last line (its newline was missing)".into(),
        ));
    }
    let aside = torn_path(path);
    let mut t = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&aside)
        .map_err(|e| io("cannot open", &aside, &e))?;
    t.write_all(&tail)
        .and_then(|()| t.write_all(b"\n"))
        .and_then(|()| t.sync_all())
        .map_err(|e| io("cannot write", &aside, &e))?;
    // rare: the whole file is read only to name the line
    let before = read_all(f, path)?[..start as usize].matches('\n').count();
    f.set_len(start)
        .and_then(|()| f.sync_all())
        .map_err(|e| io("cannot truncate", path, &e))?;
    Ok(Some(format!(
        "moved an incomplete last line ({} bytes, line {}) to {}",
        tail.len(),
        before + 1,
        aside.display()
    )))
}

/// Opens (creating it and its directory if needed) and locks the file exclusively.
fn open_locked(path: &Path) -> Result<File, HistoryError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(|e| io("cannot create", d, &e))?;
    }
    let existed = path.exists();
    let f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io("cannot open", path, &e))?;
    if !existed {
        // the new directory entry must survive a crash too
        if let Ok(d) = File::open(dir.unwrap_or(Path::new("."))) {
            let _ = d.sync_all();
        }
    }
    f.lock().map_err(|e| io("cannot lock", path, &e))?;
    Ok(f)
}

pub fn append(path: &Path, record: Value) -> Result<Entry, HistoryError> {
    let mut f = open_locked(path)?;
    if let Some(done) = fix_tail(&mut f, path)? {
        eprintln!("drillbook: warning: history {}: {done}", path.display());
    }
    let last = text(last_line(&mut f, path, true)?.1, path)?;
    let last = last.trim();
    let last = if last.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Entry>(last).map_err(|e| {
            // rare: the whole file is read only to name the line
            let at = read_all(&mut f, path).map_or(0, |t| split(&t).lines.len());
            HistoryError::Corrupt(format!(
                "{}: line {at} is not a history entry ({e}); run `drillbook history verify` — nothing was appended",
                path.display(),
            ))
        })?)
    };
    let entry = Entry::after(last.as_ref(), record);
    let mut line = entry.line();
    line.push('\n');
    let before = stamp(&f);
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io("cannot append to", path, &e))?;
    // the file was as the last verification left it (but for appends like this one): the
    // checkpoint still holds, at the file's new stamp
    if let Some(cp) = read_checkpoint(path).filter(|c| c.stamp.is_some() && c.stamp == before) {
        write_checkpoint(
            path,
            &Checkpoint {
                stamp: stamp(&f),
                ..cp
            },
        );
    }
    // still under the lock: the anchor always describes the newest entry
    write_anchor(
        path,
        &Anchor {
            entries: entry.seq,
            head: entry.hash.clone(),
        },
    )?;
    Ok(entry)
}

pub fn read(path: &Path) -> Result<Lines, HistoryError> {
    let mut lines = match File::open(path) {
        Ok(mut f) => {
            // a shared lock: never read a line an appender is writing
            f.lock_shared().map_err(|e| io("cannot lock", path, &e))?;
            let mut lines = split(&read_all(&mut f, path)?);
            lines.stamp = stamp(&f);
            lines
        }
        // a deleted history whose head record is left still shows as entries missing
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Lines::default(),
        Err(e) => return Err(io("cannot open", path, &e)),
    };
    match read_anchor(path) {
        Ok(a) => lines.anchor = a,
        Err(problem) => lines.anchor_problem = Some(problem),
    }
    lines.anchor_place = head_path(path).display().to_string();
    lines.checkpoint = read_checkpoint(path);
    Ok(lines)
}

pub fn repair(path: &Path) -> Result<Option<String>, HistoryError> {
    if !path.exists() {
        return Ok(None);
    }
    let mut f = open_locked(path)?;
    fix_tail(&mut f, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn appends_chain_and_a_torn_tail_is_moved_aside() {
        let dir = std::env::temp_dir().join(format!("drillbook-hist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("h.jsonl");
        let a = append(&path, json!({"id": "a"})).expect("append");
        let b = append(&path, json!({"id": "b"})).expect("append");
        assert_eq!((a.seq, b.seq, b.prev.clone()), (1, 2, a.hash.clone()));
        // a crash mid-append leaves half a line
        let half = &Entry::after(Some(&b), json!({"id": "c"})).line()[..40];
        OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(half.as_bytes()))
            .expect("write");
        let torn = read(&path).expect("read");
        assert_eq!(
            super::super::verify(&torn).broken.map(|b| b.kind),
            Some(super::super::BreakKind::Torn)
        );
        assert!(repair(&path)
            .expect("repair")
            .is_some_and(|d| d.contains("moved")));
        assert!(super::super::verify(&read(&path).expect("read"))
            .broken
            .is_none());
        assert_eq!(
            std::fs::read_to_string(torn_path(&path))
                .expect("torn")
                .trim(),
            half
        );
        let c = append(&path, json!({"id": "c"})).expect("append");
        assert_eq!(c.seq, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
