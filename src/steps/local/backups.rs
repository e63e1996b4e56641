//! Plain-format base backups on disk (`pg_basebackup -Fp`): what a backup's `backup_label`
//! says, whether the copy is complete, and which of a directory of them a restore to a given
//! target starts from.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::steps::StepError;
use crate::timestamp::rfc3339_precise;

/// A WAL segment file name: timeline and segment number (16 MB segments).
pub(super) fn segment(name: &str) -> Option<(u32, u64)> {
    if name.len() != 24 || !name.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&name[0..8], 16).ok()?;
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
    Some((tli, log * 0x100 + seg))
}

/// An LSN (`0/5000028`) as a number.
pub(super) fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// What `backup_label` says: where the WAL a restore needs begins, and when the backup
/// started.
#[derive(Debug, Clone)]
pub(super) struct Label {
    /// The first WAL segment a restore needs.
    pub start_segment: String,
    pub start_lsn: u64,
    pub start_time: Option<DateTime<Utc>>,
}

pub(super) fn read_label(backup: &Path) -> Result<Label, StepError> {
    let path = backup.join("backup_label");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        StepError::failed(format!(
            "{} has no readable backup_label ({e}): it is not a base backup, or a damaged one",
            backup.display()
        ))
    })?;
    // "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)"
    let location = text
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "));
    let start = location
        .and_then(|l| l.split("(file ").nth(1))
        .map(|f| f.trim_end_matches(')').trim().to_owned())
        .filter(|f| segment(f).is_some());
    let lsn = location.and_then(|l| parse_lsn(l.split_whitespace().next()?));
    let (Some(start_segment), Some(start_lsn)) = (start, lsn) else {
        return Err(StepError::failed(format!(
            "{} is corrupt: no valid START WAL LOCATION",
            path.display()
        )));
    };
    // "START TIME: 2026-11-29 21:30:00 UTC"; other zone names are left unparsed (the
    // early target check is then skipped and recovery itself reports the problem)
    let start_time = text
        .lines()
        .find_map(|l| l.strip_prefix("START TIME: "))
        .and_then(|t| {
            DateTime::parse_from_str(&t.trim().replace(" UTC", " +0000"), "%Y-%m-%d %H:%M:%S %z")
                .ok()
        })
        .map(|d| d.with_timezone(&Utc));
    Ok(Label {
        start_segment,
        start_lsn,
        start_time,
    })
}

/// One base backup found on disk.
#[derive(Debug, Clone)]
pub(super) struct BaseBackup {
    pub path: PathBuf,
    pub label: Label,
    /// When it was finished, from the files `pg_basebackup` writes last (`backup_manifest`,
    /// `global/pg_control`). A copy that did not keep modification times reads later than
    /// the truth, which only ever makes an older backup be chosen.
    pub finished: Option<DateTime<Utc>>,
}

impl BaseBackup {
    /// When it started: the label's time, else the label file's own time.
    pub fn started(&self) -> Option<DateTime<Utc>> {
        self.label
            .start_time
            .or_else(|| modified(&self.path.join("backup_label")))
    }

    fn describe(&self) -> String {
        let at = |t: Option<DateTime<Utc>>| t.map_or("an unknown time".into(), rfc3339_precise);
        format!(
            "{} (started {}, finished {})",
            self.path.display(),
            at(self.started()),
            at(self.finished)
        )
    }
}

fn modified(path: &Path) -> Option<DateTime<Utc>> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(Into::into)
}

/// Reads one backup directory. `Ok(None)` when it is not a base backup at all (no
/// `backup_label`); an error when it is one but incomplete or damaged.
fn read_backup(dir: &Path) -> Result<Option<BaseBackup>, StepError> {
    if !dir.join("backup_label").exists() {
        return Ok(None);
    }
    let label = read_label(dir)?;
    // the server sends the control file last: without it the copy was cut short
    let control = dir.join("global").join("pg_control");
    if !control.exists() {
        return Err(StepError::failed(format!(
            "{} is an incomplete base backup: it has no global/pg_control (pg_basebackup was interrupted?)",
            dir.display()
        )));
    }
    let finished = [dir.join("backup_manifest"), control]
        .iter()
        .filter_map(|p| modified(p))
        .max();
    Ok(Some(BaseBackup {
        path: dir.to_owned(),
        label,
        finished,
    }))
}

/// The base backups at `dir`: `dir` itself when it is one, else each subdirectory that is
/// one (e.g. one per day), oldest first. Incomplete or damaged ones are returned apart, with
/// what is wrong with them, so a caller can skip them and still say so.
pub(super) fn base_backups(dir: &Path) -> Result<(Vec<BaseBackup>, Vec<String>), StepError> {
    if let Some(one) = read_backup(dir)? {
        return Ok((vec![one], Vec::new()));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        StepError::failed(format!(
            "cannot read the base backup directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut found = Vec::new();
    let mut damaged = Vec::new();
    for path in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        match read_backup(&path) {
            Ok(Some(b)) => found.push(b),
            Ok(None) => {}
            Err(e) => damaged.push(e.message),
        }
    }
    found.sort_by(|a, b| {
        (a.started(), a.label.start_lsn, &a.path).cmp(&(b.started(), b.label.start_lsn, &b.path))
    });
    Ok((found, damaged))
}

/// What a restore is asked to reach, as far as choosing a base backup is concerned.
pub(super) enum Reach {
    /// The end of the archive (`latest`) or a restore point: the newest backup.
    Newest,
    Time(DateTime<Utc>),
    Lsn(u64),
}

/// The base backup a restore to `reach` starts from: `dir` itself when it is one; else, of
/// the backups in it, the newest one that was finished
/// before a time target (recovery cannot stop inside the backup it starts from), or that
/// started before an LSN target; the newest of all otherwise. An error names what there is
/// when none fits.
pub(super) fn choose(dir: &Path, reach: &Reach) -> Result<BaseBackup, StepError> {
    // one backup named directly is restored as given (its own label is checked later)
    if let Some(one) = read_backup(dir)? {
        return Ok(one);
    }
    let (found, damaged) = base_backups(dir)?;
    let skipped = if damaged.is_empty() {
        String::new()
    } else {
        format!(" (skipped: {})", damaged.join("; "))
    };
    let Some(oldest) = found.first() else {
        return Err(StepError::failed(format!(
            "no base backup in {}: neither it nor a directory in it has a backup_label{skipped}",
            dir.display()
        )));
    };
    let fits = |b: &&BaseBackup| match reach {
        Reach::Newest => true,
        Reach::Time(t) => b.finished.or(b.started()).is_some_and(|f| f <= *t),
        Reach::Lsn(l) => b.label.start_lsn <= *l,
    };
    if let Some(b) = found.iter().rev().find(fits) {
        return Ok(b.clone());
    }
    let target = match reach {
        Reach::Time(t) => rfc3339_precise(*t),
        Reach::Lsn(l) => format!("{:X}/{:X}", l >> 32, l & 0xFFFF_FFFF),
        Reach::Newest => "latest".into(),
    };
    Err(StepError::failed(format!(
        "no base backup in {} was finished before the target {target}: the oldest is {}; recovery cannot go back past its backup, so choose a later target{skipped}",
        dir.display(),
        oldest.describe()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_lsns() {
        assert_eq!(segment("000000010000000000000005"), Some((1, 5)));
        assert_eq!(segment("0000000100000001000000FF"), Some((1, 0x1FF)));
        assert_eq!(segment("00000002.history"), None);
        assert_eq!(parse_lsn("0/5000110"), Some(0x500_0110));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
    }
}
