//! Human durations as runbooks write them: `90s`, `10m`, `1h30m`, `7d`, `2w`, `500ms`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative length of time written with units (`ms`, `s`, `m`, `h`, `d`, `w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

/// The longest duration drillbook accepts: 36500 days, about 100 years. Far beyond any
/// retention, objective or timeout, and small enough that a point in time plus or minus it
/// stays within the range of dates that can be computed with.
pub const MAX: Duration = Duration(std::time::Duration::from_secs(36_500 * 86_400));

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: {reason}")]
pub struct DurationError {
    pub text: String,
    pub reason: Problem,
}

/// What is wrong with a duration's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Empty,
    ExpectedNumber,
    MissingUnit,
    UnknownUnit,
    /// Longer than [`MAX`].
    TooLong,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Problem::Empty => "empty",
            Problem::ExpectedNumber => "expected a number",
            Problem::MissingUnit => "missing unit",
            Problem::UnknownUnit => "unknown unit",
            Problem::TooLong => {
                return write!(
                    f,
                    "too long: the longest duration is {MAX} (about 100 years)"
                )
            }
        };
        write!(f, "{what} (write e.g. `90s`, `10m`, `1h30m`, `7d`)")
    }
}

const UNITS: [(&str, u64); 6] = [
    ("w", 604_800_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Duration, DurationError> {
        let err = |reason| DurationError {
            text: text.to_owned(),
            reason,
        };
        let s = text.trim();
        if s.is_empty() {
            return Err(err(Problem::Empty));
        }
        let mut total: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(err(Problem::ExpectedNumber));
            }
            // only digits: the one way this fails is a number past u64
            let n: u64 = rest[..digits].parse().map_err(|_| err(Problem::TooLong))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            let millis = match UNITS.iter().find(|(u, _)| *u == unit) {
                Some((_, ms)) => *ms,
                None if unit.is_empty() => return Err(err(Problem::MissingUnit)),
                None => return Err(err(Problem::UnknownUnit)),
            };
            total = n
                .checked_mul(millis)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| err(Problem::TooLong))?;
            rest = &rest[unit_len..];
        }
        let d = Duration(std::time::Duration::from_millis(total));
        if d > MAX {
            return Err(err(Problem::TooLong));
        }
        Ok(d)
    }
}

impl fmt::Display for Duration {
    /// A short form that reads back to the same value and reads the way people write it:
    /// `1h30m`, `24h`, `7d`, `250ms`. Days only for whole days from 2 up (`36h`, not `1d12h`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return f.write_str("0s");
        }
        const DAY: u64 = 86_400_000;
        if ms % DAY == 0 && ms >= 2 * DAY {
            return write!(f, "{}d", ms / DAY);
        }
        for (unit, size) in UNITS.into_iter().filter(|(u, _)| *u != "w" && *u != "d") {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Duration {
    pub fn from_secs(secs: u64) -> Duration {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub fn std(self) -> std::time::Duration {
        self.0
    }

    pub fn chrono(self) -> chrono::Duration {
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }
}

/// Formats a measured time for people: `420ms`, `12.3s`, `4m05s`, `1h02m`.
pub fn human(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1_000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `90s`, `10m`, `1h30m` or `7d`")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
                s.parse().map_err(E::custom)
            }
            // a bare number is the commonest mistake: say which unit is missing
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Duration, E> {
                Err(E::custom(DurationError {
                    text: n.to_string(),
                    reason: Problem::MissingUnit,
                }))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Duration, E> {
                Err(E::custom(DurationError {
                    text: n.to_string(),
                    reason: Problem::MissingUnit,
                }))
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d|w))+$",
            "description": "A duration with units: `90s`, `10m`, `1h30m`, `7d`, `2w`, `500ms`."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for (text, secs) in [
            ("90s", 90),
            ("10m", 600),
            ("1h30m", 5400),
            ("7d", 604_800),
            ("2w", 1_209_600),
        ] {
            let d: Duration = text.parse().expect(text);
            assert_eq!(d.0.as_secs(), secs, "{text}");
        }
        assert_eq!(
            "90s".parse::<Duration>().expect("valid").to_string(),
            "1m30s"
        );
        assert_eq!(
            "1h30m".parse::<Duration>().expect("valid").to_string(),
            "1h30m"
        );
        assert_eq!(
            "500ms".parse::<Duration>().expect("valid").0.as_millis(),
            500
        );
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "10",
            "m",
            "10x",
            "1.5h",
            "-1s",
            "99999999999999999999s",
            "10m ",
        ] {
            assert!(
                bad.trim() != bad || bad.parse::<Duration>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        let e = "10 minutes".parse::<Duration>().expect_err("invalid");
        assert!(e.to_string().contains("`10 minutes`"), "{e}");
    }

    #[test]
    fn longer_than_a_century_is_refused_and_names_the_limit() {
        assert_eq!("36500d".parse::<Duration>(), Ok(MAX));
        assert_eq!("5214w2d".parse::<Duration>(), Ok(MAX));
        for huge in [
            "36501d",
            "36500d1ms",
            "100000000w",
            "99999999999999999999s",
            "18446744073709551615ms",
            "18446744073709551615w",
            "9223372036854775807ms9223372036854775807ms",
        ] {
            let e = huge.parse::<Duration>().expect_err(huge);
            assert_eq!(e.reason, Problem::TooLong, "{huge}");
            assert_eq!(
                e.to_string(),
                format!("invalid duration `{huge}`: too long: the longest duration is 36500d (about 100 years)")
            );
        }
        // every accepted duration is a date offset chrono can hold
        assert!(MAX.chrono() < chrono::Duration::days(36_501));
    }

    #[test]
    fn human_format() {
        assert_eq!(human(std::time::Duration::from_millis(420)), "420ms");
        assert_eq!(human(std::time::Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human(std::time::Duration::from_secs(245)), "4m05s");
        assert_eq!(human(std::time::Duration::from_secs(3720)), "1h02m");
    }
}
