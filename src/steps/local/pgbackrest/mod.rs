//! The pgBackRest provider's steps: running `pgbackrest` (as the server's account when
//! drillbook is root, with `--config` when given, the cipher pass left to pgBackRest's own
//! config or environment), `info --output=json` parsed into typed values and run once per
//! run (so the checks of a check run share one), and what its failures mean in plain words.
//! `restore.rs` is `pgbackrest.restore`, `checks.rs` the checks.

mod checks;
mod info;
mod restore;

use crate::progress::Progress;
use std::process::Stdio;

pub use info::{Backup, Stanza};
pub use restore::preflight;

use crate::pg::cluster::Account;
use crate::steps::{StepCx, StepError};

/// How to reach one stanza: its config file, name and repository.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tool<'a> {
    pub config: Option<&'a str>,
    pub stanza: &'a str,
    pub repo: Option<u32>,
}

/// What a finished `pgbackrest` command printed.
#[derive(Debug)]
pub(crate) struct Ran {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl<'a> Tool<'a> {
    /// The arguments every command gets: `--config`, `--stanza`, `--repo`.
    fn common(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(c) = self.config {
            args.push(format!("--config={c}"));
        }
        args.push(format!("--stanza={}", self.stanza));
        if let Some(r) = self.repo {
            args.push(format!("--repo={r}"));
        }
        args
    }

    /// Runs `pgbackrest <common> <args>` as `account` (the server's, when drillbook is
    /// root: pgBackRest must not write its repository, locks or restored files as root).
    /// Killed when dropped (an interrupt, a timeout).
    pub async fn run(&self, args: &[String], account: Option<Account>) -> Result<Ran, StepError> {
        self.run_showing(args, account, &Progress::hidden(), &|l| l.to_owned())
            .await
    }

    /// [`Tool::run`], showing pgBackRest's lines on `progress` as they come (through
    /// `redact`).
    pub async fn run_showing(
        &self,
        args: &[String],
        account: Option<Account>,
        progress: &Progress,
        redact: &(dyn Fn(&str) -> String + Sync),
    ) -> Result<Ran, StepError> {
        let mut cmd = tokio::process::Command::new("pgbackrest");
        cmd.args(self.common())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // the server's account may not enter the operator's working directory
            .current_dir("/")
            .env("LC_ALL", "C")
            .kill_on_drop(true);
        if let Some(a) = account {
            cmd.uid(a.uid).gid(a.gid);
        }
        let not_run = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StepError::unavailable("pgbackrest is not installed here (not found on PATH)")
            } else {
                StepError::unavailable(format!("cannot run pgbackrest: {e}"))
            }
        };
        let child = cmd.spawn().map_err(not_run)?;
        let out = crate::steps::output::output_showing(child, progress, redact)
            .await
            .map_err(not_run)?;
        Ok(Ran {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `pgbackrest info --output=json` of the stanza, run once per run and shared by the
    /// steps (the checks) that ask for the same one.
    pub async fn info(&self, cx: &StepCx<'_>) -> Result<Stanza, StepError> {
        let account = account()?;
        let key = format!("pgbackrest info {}", self.common().join(" "));
        let text = super::super::shared::once(cx.shared, &key, || async move {
            let ran = self
                .run(&["--output=json".into(), "info".into()], account)
                .await?;
            if !ran.ok {
                return Err(StepError::unavailable(format!(
                    "pgbackrest info failed (exit {}): {}",
                    ran.code.unwrap_or(-1),
                    plain(&ran.stderr)
                )));
            }
            Ok(ran.stdout)
        })
        .await?;
        info::parse(&text, self.stanza)
    }
}

/// The account pgBackRest runs as: the server's when drillbook is root.
pub(crate) fn account() -> Result<Option<Account>, StepError> {
    crate::pg::cluster::server_account().map_err(|e| StepError::unavailable(e.to_string()))
}

/// pgBackRest's text made fit to show: no undecodable bytes (a wrong cipher pass shows the
/// garbage it decrypted), no cipher pass, its `ERROR`/`WARN`/`HINT` lines kept, one line.
pub(crate) fn plain(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.contains(" INFO: ") && !l.contains(" DETAIL: "))
        .map(|l| {
            let l = l
                .split_once("FormatError: key/value found outside of section")
                .map_or(l.to_owned(), |(a, _)| {
                    format!("{a}FormatError: the file does not decrypt")
                });
            scrub(&l)
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let lines: Vec<String> = lines
        .into_iter()
        .filter(|l| seen.insert(l.clone()))
        .collect();
    if lines.is_empty() {
        "no output".into()
    } else {
        lines.join(" / ")
    }
}

/// Control characters and replacement characters out; `cipher-pass=…` masked.
fn scrub(line: &str) -> String {
    let mut s: String = line
        .chars()
        .filter(|c| !c.is_control() && *c != '\u{fffd}')
        .collect();
    while let Some(at) = s.find("cipher-pass=") {
        let start = at + "cipher-pass=".len();
        let end = s[start..]
            .find(char::is_whitespace)
            .map_or(s.len(), |e| start + e);
        if &s[start..end] == "***" {
            break;
        }
        s.replace_range(start..end, "***");
    }
    s
}

/// A WAL segment name's position (timeline left out): log * 256 + segment, for 16 MB
/// segments.
pub(crate) fn segment_number(name: &str) -> Option<u64> {
    if name.len() < 24 || !name[..24].chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
    Some(log * 256 + seg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_made_plain() {
        let t = "WARN: repo1: [FormatError] unable to load info file 'x':\n      FormatError: key/value found outside of section at line 1: 7\u{fffd}zk\u{1}\n      HINT: has a stanza-create been performed?\nERROR: [075]: no backup set found to restore\n--repo1-cipher-pass=secret";
        let p = plain(t);
        assert!(p.contains("the file does not decrypt"), "{p}");
        assert!(p.contains("HINT: has a stanza-create been performed?"));
        assert!(!p.contains('\u{fffd}') && !p.contains("secret"), "{p}");
        assert_eq!(segment_number("000000010000000100000002"), Some(258));
    }
}
