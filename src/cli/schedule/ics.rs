//! `drillbook schedule --emit ics`: the scheduled procedures as an iCalendar file (RFC 5545)
//! for the team calendar. One recurring event per procedure with a `schedule`, its `RRULE`
//! from the cron (`Cron::rrule`) and its start in UTC, the exact command in the description
//! beside a link to the procedure's section of the runbook document, a reminder the day
//! before, and a UID made of the runbook's name and the procedure's id, so importing the
//! file again updates the events instead of adding copies.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::engine::jobs::Job;
use crate::runbook::Runbook;

/// How long the event lasts in the calendar when the runbook sets no RTO objective.
const DEFAULT_LENGTH_MINUTES: u64 = 60;

/// The calendar for `jobs`' procedures (the checks job is not a calendar event): `command`
/// gives a job's exact command line, `doc` is where the rendered runbook document is
/// published, `now` the time stamp and the start of the recurrences.
pub(super) fn calendar(
    rb: &Runbook,
    jobs: &[Job],
    command: &dyn Fn(&Job) -> String,
    doc: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let drills: Vec<&Job> = jobs
        .iter()
        .filter(|j| j.args.first().map(String::as_str) == Some("run"))
        .collect();
    if drills.is_empty() {
        return Err(format!(
            "{} has no procedure with a `schedule`: there is nothing to put in a calendar",
            rb.path
        ));
    }
    let mut lines = vec![
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        format!(
            "PRODID:-//drillbook//drillbook {}//EN",
            env!("CARGO_PKG_VERSION")
        ),
        "CALSCALE:GREGORIAN".to_owned(),
        "METHOD:PUBLISH".to_owned(),
        format!("X-WR-CALNAME:{}", text(&format!("drillbook {}", rb.name))),
    ];
    let stamp = ics_time(now);
    for j in drills {
        let rule = j.cron.rrule().ok_or_else(|| {
            format!(
                "the schedule `{}` of `{}` restricts both the day of month and the day of week (cron runs on either), which an iCalendar RRULE cannot express",
                j.cron.as_str(),
                j.name
            )
        })?;
        let procedure = rb.procedures.get(&j.name);
        let title = procedure.map_or(j.name.as_str(), |p| p.title.as_str());
        let section = crate::render::anchor(title);
        let link = doc.map(|d| format!("{}#{section}", d.split('#').next().unwrap_or(d)));
        let minutes = rb.objectives.rto.map_or(DEFAULT_LENGTH_MINUTES, |r| {
            r.std().as_secs().div_ceil(60).max(1)
        });
        let command = command(j);
        let mut description = format!(
            "Procedure {} of runbook {}: {title}.\n\nCommand:\n{command}\n\n",
            j.name, rb.name
        );
        match &link {
            Some(l) => {
                let _ = write!(description, "Runbook section: {l}");
            }
            None => {
                let _ = write!(
                    description,
                    "Runbook section: #{section} of the document `drillbook render {}` writes",
                    rb.path
                );
            }
        }
        lines.extend([
            "BEGIN:VEVENT".to_owned(),
            format!("UID:{}", text(&format!("drillbook/{}/{}", rb.name, j.name))),
            format!("DTSTAMP:{stamp}"),
            format!("DTSTART:{}", ics_time(j.cron.next_after(now))),
            format!("DURATION:PT{minutes}M"),
            format!("RRULE:{rule}"),
            format!(
                "SUMMARY:{}",
                text(&format!("drillbook drill: {} / {}", rb.name, j.name))
            ),
            format!("DESCRIPTION:{}", text(&description)),
        ]);
        if let Some(l) = &link {
            lines.push(format!("URL:{l}"));
        }
        lines.extend([
            "BEGIN:VALARM".to_owned(),
            "ACTION:DISPLAY".to_owned(),
            format!(
                "DESCRIPTION:{}",
                text(&format!(
                    "Tomorrow: drillbook drill {} / {}",
                    rb.name, j.name
                ))
            ),
            "TRIGGER;RELATED=START:-P1D".to_owned(),
            "END:VALARM".to_owned(),
            "END:VEVENT".to_owned(),
        ]);
    }
    lines.push("END:VCALENDAR".to_owned());
    Ok(lines.iter().map(|l| fold(l)).collect())
}

/// A UTC date-time in the iCalendar form, `20270101T090000Z`.
fn ics_time(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A TEXT value (RFC 5545 3.3.11): backslash, semicolon and comma escaped, line breaks as
/// `\n`, other control characters dropped.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A content line folded at 75 octets (RFC 5545 3.1), never inside a UTF-8 character, and
/// ended with CRLF.
fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_fold_at_75_octets_between_characters() {
        let line = format!("DESCRIPTION:{}", "é".repeat(60));
        let folded = fold(&line);
        for l in folded.trim_end_matches("\r\n").split("\r\n") {
            assert!(l.len() <= 75, "{l:?} is {} octets", l.len());
        }
        assert_eq!(folded.replace("\r\n ", ""), format!("{line}\r\n"));
    }

    #[test]
    fn text_values_escape_what_the_format_reserves() {
        assert_eq!(text("a;b,c\\d\ne\u{7}"), "a\\;b\\,c\\\\d\\ne");
    }
}
