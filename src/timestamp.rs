//! Points in time as runbooks write them: RFC 3339 (`2026-11-28T09:00:00Z`) or relative to the
//! start of the run (`now`, `now-24h`, `now+5m`). Relative times are resolved once, when a run
//! starts, so every step of a drill sees the same instant.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};

use crate::duration::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    Absolute(DateTime<Utc>),
    /// Offset from now, in signed milliseconds.
    Relative {
        back: bool,
        by: Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp `{text}`: {reason}")]
pub struct TimestampError {
    pub text: String,
    pub reason: String,
}

const FORMS: &str = "write RFC 3339 (`2026-11-28T09:00:00Z`), a time as psql prints it (`2026-11-28 09:00:00+00`), or `now`, `now-24h`, `now+10m`";

impl FromStr for TimeSpec {
    type Err = TimestampError;

    fn from_str(text: &str) -> Result<TimeSpec, TimestampError> {
        let err = || TimestampError {
            text: text.to_owned(),
            reason: FORMS.to_owned(),
        };
        let s = text.trim();
        if let Some(rest) = s.strip_prefix("now") {
            let rest = rest.trim_start();
            if rest.is_empty() {
                return Ok(TimeSpec::Relative {
                    back: true,
                    by: Duration::default(),
                });
            }
            let (back, amount) = if let Some(a) = rest.strip_prefix('-') {
                (true, a)
            } else if let Some(a) = rest.strip_prefix('+') {
                (false, a)
            } else {
                return Err(err());
            };
            // the duration's own error says what is wrong with the offset (a missing unit,
            // an offset past the longest duration)
            let by = amount
                .trim()
                .parse()
                .map_err(|e: crate::duration::DurationError| TimestampError {
                    text: text.to_owned(),
                    reason: e.to_string(),
                })?;
            return Ok(TimeSpec::Relative { back, by });
        }
        let t = DateTime::parse_from_rfc3339(&lenient(s))
            .map_err(|_| err())?
            .with_timezone(&Utc);
        // RFC 3339 writes years 0000 to 9999: an offset must not take the time out of them
        // (`0000-01-01 00:00:00+01` is in year -1 in UTC), or it would not read back
        if !(0..=9999).contains(&t.year()) {
            return Err(TimestampError {
                text: text.to_owned(),
                reason: "outside the years 0000 to 9999 once in UTC".to_owned(),
            });
        }
        Ok(TimeSpec::Absolute(t))
    }
}

/// Accepts what people paste from psql and the server log besides RFC 3339: a space for the
/// `T` (`2026-12-04 17:06:19`), an offset of hours (`+00`, `+01`) or without a colon
/// (`+0100`), a zone written ` UTC` or ` GMT`, and no zone at all, read as UTC.
fn lenient(s: &str) -> String {
    let mut t = s.trim().to_owned();
    for zone in [" UTC", " GMT", "UTC", "GMT"] {
        if let Some(stripped) = t.strip_suffix(zone) {
            t = format!("{}Z", stripped.trim_end());
            break;
        }
    }
    if t.len() > 10 && t.as_bytes()[10] == b' ' {
        t.replace_range(10..11, "T");
    }
    // the time part, after the `T`: an offset starts at its first `+` or `-`
    let Some(time_at) = t.find('T').filter(|_| t.len() >= 19) else {
        return t;
    };
    let offset_at = t[time_at..].find(['+', '-']).map(|i| time_at + i);
    match offset_at {
        Some(at) => {
            let digits = &t[at + 1..];
            if digits.len() == 2 && digits.chars().all(|c| c.is_ascii_digit()) {
                t.push_str(":00");
            } else if digits.len() == 4 && digits.chars().all(|c| c.is_ascii_digit()) {
                t.insert(at + 3, ':');
            }
        }
        None if !t.ends_with(['Z', 'z']) => t.push('Z'),
        None => {}
    }
    t
}

impl TimeSpec {
    /// The instant: an absolute time as written, a relative one from `now` in whole seconds.
    /// A parsed offset is at most [`crate::duration::MAX`], so from any `now` of this era
    /// the result is a real date; past the ends of the representable range it saturates
    /// rather than overflow.
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        use chrono::SubsecRound;
        match self {
            TimeSpec::Absolute(t) => t,
            TimeSpec::Relative { back: true, by } => now
                .checked_sub_signed(by.chrono())
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
                .trunc_subsecs(0),
            TimeSpec::Relative { back: false, by } => now
                .checked_add_signed(by.chrono())
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
                .trunc_subsecs(0),
        }
    }
}

impl fmt::Display for TimeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeSpec::Absolute(t) => f.write_str(&rfc3339(*t)),
            TimeSpec::Relative { by, .. } if by.0.is_zero() => f.write_str("now"),
            TimeSpec::Relative { back, by } => {
                write!(f, "now{}{by}", if *back { '-' } else { '+' })
            }
        }
    }
}

/// The one timestamp format drillbook shows: RFC 3339, UTC, whole seconds (records keep full
/// precision through serde).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339 with the precision the value has (microseconds from PostgreSQL), for data.
pub fn rfc3339_precise(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_offsets_resolve_from_any_now() {
        use chrono::SubsecRound;
        let longest = |back| TimeSpec::Relative {
            back,
            by: crate::duration::MAX,
        };
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        let century = chrono::Duration::days(36_500);
        assert_eq!(now - longest(true).resolve(now), century);
        assert_eq!(longest(false).resolve(now) - now, century);
        // at the ends of the calendar they stop there instead of overflowing
        let (first, last) = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        assert_eq!(longest(true).resolve(first), first);
        assert_eq!(longest(false).resolve(last), last.trunc_subsecs(0));
    }

    #[test]
    fn relative_and_absolute() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        let r = |s: &str| s.parse::<TimeSpec>().expect(s).resolve(now);
        assert_eq!(rfc3339(r("now")), "2026-11-29T12:00:00Z");
        assert_eq!(rfc3339(r("now-24h")), "2026-11-28T12:00:00Z");
        assert_eq!(rfc3339(r("now+1h30m")), "2026-11-29T13:30:00Z");
        assert_eq!(
            rfc3339(r("2026-11-28T09:00:00+01:00")),
            "2026-11-28T08:00:00Z"
        );
        assert_eq!(rfc3339(r("2026-11-29 21:37:38+00")), "2026-11-29T21:37:38Z");
        assert_eq!(rfc3339(r("2026-11-29T21:37:38-02")), "2026-11-29T23:37:38Z");
        // as pasted from psql and the server log
        for (pasted, utc) in [
            ("2026-12-04 17:06:19", "2026-12-04T17:06:19Z"),
            ("2026-12-04 17:06:19+00", "2026-12-04T17:06:19Z"),
            (
                "2026-12-04 17:06:19.123456+00",
                "2026-12-04T17:06:19.123456Z",
            ),
            ("2026-12-04 17:06:19+01:00", "2026-12-04T16:06:19Z"),
            ("2026-12-04 17:06:19+0100", "2026-12-04T16:06:19Z"),
            ("2026-12-04 17:06:19 UTC", "2026-12-04T17:06:19Z"),
            ("2026-12-04 17:06:19.5 GMT", "2026-12-04T17:06:19.500Z"),
            ("2026-12-04T17:06:19", "2026-12-04T17:06:19Z"),
        ] {
            assert_eq!(rfc3339_precise(r(pasted)), utc, "{pasted}");
        }
        for bad in [
            "0000-01-01 00:00:00+01",
            "9999-12-31T23:59:59-00:01",
            "yesterday",
            "now-",
            "now*2h",
            "2026-11-28",
            "now-24",
            "nowé",
            "now\u{1F600}1h",
        ] {
            assert!(bad.parse::<TimeSpec>().is_err(), "{bad}");
        }
        assert_eq!(
            "now-24h".parse::<TimeSpec>().expect("valid").to_string(),
            "now-24h"
        );
        // an offset past the longest duration says so
        let e = "now-100000000w".parse::<TimeSpec>().expect_err("too long");
        assert!(
            e.to_string()
                .contains("too long: the longest duration is 36500d"),
            "{e}"
        );
        // relative times resolve to whole seconds
        let busy = now + chrono::Duration::milliseconds(1_234);
        assert_eq!(
            rfc3339_precise("now-10m".parse::<TimeSpec>().expect("valid").resolve(busy)),
            "2026-11-29T11:50:01Z"
        );
    }
}
