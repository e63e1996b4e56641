//! Five-field cron expressions (minute hour day-of-month month day-of-week), evaluated in UTC:
//! parsing with errors that point at the offending field, and the next matching times.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use std::fmt;

/// A parsed cron schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    source: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    // Vixie cron decides between AND and OR day matching by whether the field text starts
    // with `*`, not by which days it covers, so `*/2` still counts as unrestricted.
    dom_star: bool,
    dow_star: bool,
}

/// Why an expression was rejected: `offset` and `len` are byte offsets into the expression
/// of the field (or part of a field) at fault, so a caller can put a caret under it.
/// `len` is 0 when something is missing rather than wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub message: String,
    pub offset: usize,
    pub len: usize,
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CronError {}

fn err(message: String, offset: usize, len: usize) -> CronError {
    CronError {
        message,
        offset,
        len,
    }
}

struct Spec {
    name: &'static str,
    min: u32,
    max: u32,
    // Full English names; the first three letters are the accepted abbreviation.
    names: &'static [&'static str],
}

const fn spec(name: &'static str, min: u32, max: u32, names: &'static [&'static str]) -> Spec {
    Spec {
        name,
        min,
        max,
        names,
    }
}

#[rustfmt::skip]
const MONTH_NAMES: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December"];
#[rustfmt::skip]
const WEEKDAY_NAMES: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
// February counts 29: a day that exists only in leap years still fires eventually.
const MONTH_LEN: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

const FIELDS: [Spec; 5] = [
    spec("minute", 0, 59, &[]),
    spec("hour", 0, 23, &[]),
    spec("day-of-month", 1, 31, &[]),
    spec("month", 1, 12, &MONTH_NAMES),
    // 7 is accepted as a second spelling of Sunday and folded onto 0 after parsing.
    spec("day-of-week", 0, 7, &WEEKDAY_NAMES),
];

const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

// The Gregorian calendar, weekdays included, repeats every 400 years, so a schedule that
// fires at all fires within any 401-year window; searching further can never succeed.
const SEARCH_YEARS: i32 = 401;

fn bit(n: u32) -> u64 {
    1u64 << n
}

fn range_bits(lo: u32, hi: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

/// The lowest set bit at position `from` or above.
fn next_bit(bits: u64, from: u32) -> Option<u32> {
    let masked = if from >= 64 {
        0
    } else {
        bits & (u64::MAX << from)
    };
    (masked != 0).then(|| masked.trailing_zeros())
}

fn bit_list(bits: u64) -> Vec<u32> {
    (0..64).filter(|&i| bits & bit(i) != 0).collect()
}

fn single(bits: u64) -> Option<u32> {
    (bits.count_ones() == 1).then(|| bits.trailing_zeros())
}

/// "a", "a and b", "a, b and c".
fn english_list(items: &[String], conj: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} {conj} {last}", rest.join(", ")),
    }
}

/// Whitespace-separated tokens with their byte offsets.
fn split_fields(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if let Some(st) = start.take() {
                out.push((st, &s[st..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(st) = start {
        out.push((st, &s[st..]));
    }
    out
}

fn parse_value(spec: &Spec, text: &str, at: usize) -> Result<u32, CronError> {
    let name = spec.name;
    if text.is_empty() {
        return Err(err(format!("missing {name} value"), at, 0));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // Overlong numbers fail to parse and are reported as out of range like any other.
        return match text.parse::<u32>() {
            Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
            _ => Err(err(
                format!("{name} value {text} out of range {}-{}", spec.min, spec.max),
                at,
                text.len(),
            )),
        };
    }
    if !spec.names.is_empty() && text.bytes().all(|b| b.is_ascii_alphabetic()) {
        let abbreviation = |n: &&str| text.len() == 3 && n[..3].eq_ignore_ascii_case(text);
        let found = spec.names.iter().position(abbreviation);
        return match found {
            Some(i) => Ok(i as u32 + spec.min),
            None => Err(err(format!("unknown {name} name `{text}`"), at, text.len())),
        };
    }
    Err(err(
        format!("invalid {name} value `{text}`"),
        at,
        text.len(),
    ))
}

/// One list item: `*`, `a`, `a-b`, each optionally followed by `/step`.
fn parse_item(spec: &Spec, item: &str, at: usize) -> Result<u64, CronError> {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => (r, Some((s, at + r.len() + 1))),
        None => (item, None),
    };
    let (lo, hi) = if range == "*" {
        (spec.min, spec.max)
    } else if let Some((a, b)) = range.split_once('-') {
        let lo = parse_value(spec, a, at)?;
        let hi = parse_value(spec, b, at + a.len() + 1)?;
        if lo > hi {
            let msg = format!("range start {lo} is after end {hi} in {} field", spec.name);
            return Err(err(msg, at, range.len()));
        }
        (lo, hi)
    } else {
        let v = parse_value(spec, range, at)?;
        // `a/n` means every n-th value from a up to the field's maximum.
        (v, if step.is_some() { spec.max } else { v })
    };
    let step = match step {
        None => 1,
        Some((s, s_at)) => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                let msg = format!("invalid step `{s}` in {} field", spec.name);
                return Err(err(msg, s_at, s.len()));
            }
            // A step wider than the range just selects its start, so saturating is exact.
            match s.parse::<usize>().unwrap_or(usize::MAX) {
                0 => {
                    let msg = format!("step must be at least 1 in {} field", spec.name);
                    return Err(err(msg, s_at, s.len()));
                }
                n => n,
            }
        }
    };
    Ok((lo..=hi).step_by(step).fold(0, |acc, v| acc | bit(v)))
}

fn parse_field(spec: &Spec, text: &str, base: usize) -> Result<u64, CronError> {
    let mut bits = 0;
    let mut at = base;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(err(
                format!("empty item in {} list", spec.name),
                base,
                text.len(),
            ));
        }
        bits |= parse_item(spec, item, at)?;
        at += item.len() + 1;
    }
    if bits & bit(7) != 0 && spec.max == 7 {
        bits = (bits & !bit(7)) | bit(0);
    }
    Ok(bits)
}

impl Cron {
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let fields = split_fields(expr);
        if let Some(&(at, first)) = fields.first().filter(|f| f.1.starts_with('@')) {
            let Some((_, expansion)) = MACROS.iter().find(|m| m.0.eq_ignore_ascii_case(first))
            else {
                let msg = format!(
                    "unknown macro `{first}` (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)"
                );
                return Err(err(msg, at, first.len()));
            };
            if let Some(&(extra, _)) = fields.get(1) {
                let msg = format!("unexpected text after `{first}`");
                return Err(err(msg, extra, expr.trim_end().len() - extra));
            }
            let mut cron = Cron::parse(expansion).expect("built-in macro expansions are valid");
            cron.source = expr.to_string();
            return Ok(cron);
        }
        if fields.len() != 5 {
            // Point at the surplus fields, or at everything there is when some are missing.
            let from = fields.get(5).or(fields.first()).map_or(0, |f| f.0);
            let end = fields.last().map_or(expr.len(), |f| f.0 + f.1.len());
            let msg = format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            );
            return Err(err(msg, from, end - from));
        }
        let mut bits = [0u64; 5];
        for (i, (spec, &(at, text))) in FIELDS.iter().zip(&fields).enumerate() {
            bits[i] = parse_field(spec, text, at)?;
        }
        let [minutes, hours, days, months, weekdays] = bits;
        let cron = Cron {
            source: expr.to_string(),
            minutes,
            hours,
            days,
            months,
            weekdays,
            dom_star: fields[2].1.starts_with('*'),
            dow_star: fields[4].1.starts_with('*'),
        };
        // Only a restricted day-of-month under AND semantics can rule out every date: an
        // OR, or a `*`-led day-of-month (which always includes day 1), meets every month.
        let fits = bit_list(months)
            .iter()
            .any(|&m| days & range_bits(1, MONTH_LEN[m as usize - 1]) != 0);
        if cron.dow_star && !cron.dom_star && !fits {
            let day_list: Vec<String> = bit_list(days).iter().map(u32::to_string).collect();
            let month_list: Vec<String> = bit_list(months)
                .iter()
                .map(|&m| MONTH_NAMES[m as usize - 1].to_lowercase())
                .collect();
            let (noun, verb) = if day_list.len() == 1 {
                ("day", "does")
            } else {
                ("days", "do")
            };
            let msg = format!(
                "schedule never fires: {noun} {} {verb} not occur in {}",
                english_list(&day_list, "and"),
                english_list(&month_list, "or")
            );
            return Err(err(msg, fields[2].0, fields[2].1.len()));
        }
        Ok(cron)
    }

    /// The original text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The same schedule as a systemd `OnCalendar=` value in UTC, e.g. `*-*-01 09:00:00 UTC`;
    /// None when both day fields are restricted (cron then matches either, which a calendar
    /// expression cannot say).
    pub fn on_calendar(&self) -> Option<String> {
        if !self.dom_star && !self.dow_star {
            return None;
        }
        let list = |mask: u64, from: u32, to: u32, all: bool, width: usize| -> String {
            if all {
                return "*".into();
            }
            (from..=to)
                .filter(|v| mask & bit(*v) != 0)
                .map(|v| format!("{v:0width$}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let full = |mask: u64, from: u32, to: u32| (from..=to).all(|v| mask & bit(v) != 0);
        const NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        let dow = if self.dow_star || full(self.weekdays, 0, 6) {
            String::new()
        } else {
            let days: Vec<&str> = (0..7u32)
                .filter(|d| self.weekdays & bit(*d) != 0)
                .map(|d| NAMES[d as usize])
                .collect();
            format!("{} ", days.join(","))
        };
        Some(format!(
            "{dow}*-{}-{} {}:{}:00 UTC",
            list(self.months, 1, 12, full(self.months, 1, 12), 2),
            list(self.days, 1, 31, self.dom_star || full(self.days, 1, 31), 2),
            list(self.hours, 0, 23, full(self.hours, 0, 23), 2),
            list(self.minutes, 0, 59, full(self.minutes, 0, 59), 2),
        ))
    }

    /// The same schedule as an iCalendar recurrence rule (RFC 5545 `RRULE`, without the
    /// `RRULE:` name) for an event whose `DTSTART` is one of its fire times in UTC, e.g.
    /// `FREQ=MONTHLY;BYMONTHDAY=1`; None when both day fields are restricted (cron then
    /// matches either, which one rule cannot say). A single hour and minute come from
    /// `DTSTART`; several are listed (`BYHOUR`, `BYMINUTE`).
    pub fn rrule(&self) -> Option<String> {
        if !self.dom_star && !self.dow_star {
            return None;
        }
        let some_days = self.days != range_bits(1, 31);
        let some_weekdays = self.weekdays != range_bits(0, 6);
        let some_months = self.months != range_bits(1, 12);
        // the frequency whose BY parts expand to the wanted days; the others limit them
        let freq = match (some_days, some_weekdays) {
            (false, false) => "DAILY",
            (false, true) => "WEEKLY",
            (true, false) if some_months => "YEARLY",
            (true, _) => "MONTHLY",
        };
        let list = |mask: u64, from: u32, to: u32| -> String {
            (from..=to)
                .filter(|v| mask & bit(*v) != 0)
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut rule = format!("FREQ={freq}");
        if some_months {
            rule += &format!(";BYMONTH={}", list(self.months, 1, 12));
        }
        if some_days {
            rule += &format!(";BYMONTHDAY={}", list(self.days, 1, 31));
        }
        if some_weekdays {
            const DAYS: [&str; 7] = ["SU", "MO", "TU", "WE", "TH", "FR", "SA"];
            let days: Vec<&str> = bit_list(self.weekdays)
                .iter()
                .map(|&d| DAYS[d as usize])
                .collect();
            rule += &format!(";BYDAY={}", days.join(","));
        }
        if single(self.hours).is_none() || single(self.minutes).is_none() {
            rule += &format!(
                ";BYHOUR={};BYMINUTE={}",
                list(self.hours, 0, 23),
                list(self.minutes, 0, 59)
            );
        }
        Some(rule)
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.days & bit(date.day()) != 0;
        let dow = self.weekdays & bit(date.weekday().num_days_from_sunday()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// None only past the end of chrono's representable range (or, were `parse` ever to
    /// let an impossible schedule through, after the bounded search).
    fn find_next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t = after.naive_utc();
        // Minute 60 and hour 24 are fine here: they simply find no bit and roll over.
        let (mut date, mut hour, mut minute) = (t.date(), t.hour(), t.minute() + 1);
        let limit = date.year() + SEARCH_YEARS;
        while date.year() <= limit {
            if self.months & bit(date.month()) == 0 {
                let (year, month) = match next_bit(self.months, date.month() + 1) {
                    Some(m) => (date.year(), m),
                    None => (date.year() + 1, next_bit(self.months, 1)?),
                };
                date = NaiveDate::from_ymd_opt(year, month, 1)?;
                (hour, minute) = (0, 0);
            } else if !self.day_matches(date) {
                date = date.succ_opt()?;
                (hour, minute) = (0, 0);
            } else if let Some(h) = next_bit(self.hours, hour) {
                let from = if h == hour { minute } else { 0 };
                match next_bit(self.minutes, from) {
                    Some(m) => return date.and_hms_opt(h, m, 0).map(|dt| dt.and_utc()),
                    None => (hour, minute) = (h + 1, 0),
                }
            } else {
                date = date.succ_opt()?;
                (hour, minute) = (0, 0);
            }
        }
        None
    }

    /// The first matching minute strictly after `after`. Every parsed schedule fires, so
    /// this only saturates to `DateTime::<Utc>::MAX_UTC` at the very end of chrono's range.
    pub fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        self.find_next(after).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Iterator of upcoming matches strictly after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(self.find_next(after), move |&t| self.find_next(t))
    }

    /// A short English description, e.g. "every day at 00:00 UTC", falling back to
    /// "at cron `<expr>` (UTC)" for shapes it does not know how to say.
    pub fn describe(&self) -> String {
        let fallback = || format!("at cron `{}` (UTC)", self.source.trim());
        let all_months = self.months == range_bits(1, 12);
        let all_days = self.days == range_bits(1, 31);
        let all_weekdays = self.weekdays == range_bits(0, 6);
        let every_day = all_months && all_days && all_weekdays;
        let (Some(m), Some(h)) = (single(self.minutes), single(self.hours)) else {
            if !every_day || self.hours != range_bits(0, 23) {
                return fallback();
            }
            if let Some(m) = single(self.minutes) {
                return format!("every hour at minute {m}");
            }
            let step = (1..=30).find(|&n| {
                60 % n == 0 && self.minutes == (0..60).step_by(n).fold(0, |a, v| a | bit(v))
            });
            return match step {
                Some(1) => "every minute".to_string(),
                Some(n) => format!("every {n} minutes"),
                None => fallback(),
            };
        };
        let at = format!("{h:02}:{m:02} UTC");
        if every_day {
            return format!("every day at {at}");
        }
        if self.dom_star && all_days && all_months {
            if self.weekdays == range_bits(1, 5) {
                return format!("every weekday at {at}");
            }
            let names: Vec<String> = bit_list(self.weekdays)
                .iter()
                .map(|&d| WEEKDAY_NAMES[d as usize].to_string())
                .collect();
            return format!("every {} at {at}", english_list(&names, "and"));
        }
        if self.dow_star && all_weekdays {
            if all_months {
                let days: Vec<String> = bit_list(self.days).iter().map(u32::to_string).collect();
                let noun = if days.len() == 1 { "day" } else { "days" };
                return format!(
                    "at {at} on {noun} {} of every month",
                    english_list(&days, "and")
                );
            }
            if let (Some(d), Some(mo)) = (single(self.days), single(self.months)) {
                return format!("at {at} on {} {d} every year", MONTH_NAMES[mo as usize - 1]);
            }
        }
        fallback()
    }
}

impl std::str::FromStr for Cron {
    type Err = CronError;
    fn from_str(s: &str) -> Result<Cron, CronError> {
        Cron::parse(s)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod oracle;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_become_recurrence_rules() {
        let r = |e: &str| Cron::parse(e).expect("cron").rrule();
        assert_eq!(r("0 9 1 * *").as_deref(), Some("FREQ=MONTHLY;BYMONTHDAY=1"));
        assert_eq!(r("30 2 * * 1").as_deref(), Some("FREQ=WEEKLY;BYDAY=MO"));
        assert_eq!(r("@daily").as_deref(), Some("FREQ=DAILY"));
        assert_eq!(
            r("0 6 15 1,7 *").as_deref(),
            Some("FREQ=YEARLY;BYMONTH=1,7;BYMONTHDAY=15")
        );
        assert_eq!(
            r("0 */12 */2 * 6").as_deref(),
            Some("FREQ=MONTHLY;BYMONTHDAY=1,3,5,7,9,11,13,15,17,19,21,23,25,27,29,31;BYDAY=SA;BYHOUR=0,12;BYMINUTE=0")
        );
        assert_eq!(
            r("0,30 9 * 3 *").as_deref(),
            Some("FREQ=DAILY;BYMONTH=3;BYHOUR=9;BYMINUTE=0,30")
        );
        // either the 1st or a Monday: one rule cannot say "or"
        assert_eq!(r("0 9 1 * 1"), None);
    }

    #[test]
    fn schedules_become_systemd_calendar_expressions() {
        let c = |e: &str| Cron::parse(e).expect("cron").on_calendar();
        assert_eq!(c("0 9 1 * *").as_deref(), Some("*-*-01 09:00:00 UTC"));
        assert_eq!(c("0 0 * * *").as_deref(), Some("*-*-* 00:00:00 UTC"));
        assert_eq!(
            c("*/15 * * * 1-5").as_deref(),
            Some("Mon,Tue,Wed,Thu,Fri *-*-* *:00,15,30,45:00 UTC")
        );
        assert_eq!(c("0 3 1 * 1"), None);
    }

    fn t(s: &str) -> DateTime<Utc> {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
    }

    fn cron(expr: &str) -> Cron {
        Cron::parse(expr).unwrap()
    }

    #[test]
    #[rustfmt::skip]
    fn parse_errors_point_at_the_fault() {
        let fields = "expected 5 fields (minute hour day-of-month month day-of-week), found";
        let cases = [
            ("61 * * * *", "minute value 61 out of range 0-59", 0, 2),
            ("0 0 * foo *", "unknown month name `foo`", 6, 3),
            ("0 0 * * Monday", "unknown day-of-week name `Monday`", 8, 6),
            ("*/0 * * * *", "step must be at least 1 in minute field", 2, 1),
            ("0 10-5 * * *", "range start 10 is after end 5 in hour field", 2, 4),
            ("5 1-3,7-99 * * *", "hour value 99 out of range 0-23", 8, 2),
            ("0 0 * * * *", &format!("{fields} 6"), 10, 1),
            (" 0 0 * *", &format!("{fields} 4"), 1, 7),
            ("0 0 1,,2 * *", "empty item in day-of-month list", 4, 4),
            ("0 0 31 2 *", "schedule never fires: day 31 does not occur in february", 4, 2),
            ("0 0 30,31 2 *", "schedule never fires: days 30 and 31 do not occur in february", 4, 5),
            ("0 0 31 feb,apr *", "schedule never fires: day 31 does not occur in february or april", 4, 2),
            ("0 é * * *", "invalid hour value `é`", 2, 2),
            ("é 0 * * 1-fri/x", "invalid minute value `é`", 0, 2),
            ("0 0 * * 1-fri/x", "invalid step `x` in day-of-week field", 14, 1),
            ("0 0 * * 1-", "missing day-of-week value", 10, 0),
            ("@daily  x y", "unexpected text after `@daily`", 8, 3),
        ];
        for (expr, msg, offset, len) in cases {
            let e = Cron::parse(expr).unwrap_err();
            assert_eq!((e.message.as_str(), e.offset, e.len), (msg, offset, len), "{expr}");
        }
        assert!(Cron::parse("@often").unwrap_err().message.starts_with("unknown macro `@often`"));
        assert_eq!(Cron::parse("61 * * * *").unwrap_err().to_string(), "minute value 61 out of range 0-59");
        assert!(Cron::parse("0 0 30,31 2,apr *").is_ok()); // april has a 30th
        assert!(Cron::parse("0 0 31 2 1").is_ok()); // OR semantics: every Monday in February
    }

    #[test]
    #[rustfmt::skip]
    fn never_panics_on_odd_input() {
        let odd = [
            "", " ", "* * * *", "* * * * * *", "*/0 * * * *", "a-b-c * * * *", "1,,2 * * * *",
            "99999999999999999999 * * * *", "*/99999999999999999999 * * * *", "1-99999999999 * * * *",
            "ünï cødé * * *", "😀 * * * *", "* * * * 😀", "- * * * *", "-1 * * * *", "1- * * * *",
            "/ * * * *", "*/ * * * *", "1/2/3 * * * *", ",* * * * *", "* * * * ,", "@", "@@daily",
            "@DAILY", "0 0 0 * *", "0 0 * 0 *", "0 0 * 13 *", "0 0 * * 8", "+1 * * * *", "*-* * * * *",
            "\t\n* * * * *\u{3000}", "JAN-dec * * * *", "* * * jan-FEB/1 SUN-sat", "0 0 31 */2 *",
        ];
        let start = t("2026-01-01 00:00:00");
        for s in odd {
            if let Ok(c) = Cron::parse(s) {
                assert!(c.next_after(start) > start, "{s}");
                let _ = c.describe();
            }
        }
        let max = DateTime::<Utc>::MAX_UTC;
        assert_eq!(cron("* * * * *").next_after(max), max);
        assert_eq!(cron("* * * * *").upcoming(max).count(), 0);
    }

    #[test]
    #[rustfmt::skip]
    fn next_after_finds_the_next_match() {
        let cases = [
            ("0 0 * * *", "2026-03-14 15:09:00", "2026-03-15 00:00:00"),
            ("0 0 * * *", "2026-03-15 00:00:00", "2026-03-16 00:00:00"), // strictly after
            ("0 0 * * *", "2026-03-14 23:59:59", "2026-03-15 00:00:00"),
            ("@daily", "2026-12-31 23:59:00", "2027-01-01 00:00:00"),
            ("0 9 1 * *", "2026-12-01 09:00:00", "2027-01-01 09:00:00"),
            ("0 9 1 * *", "2026-05-01 08:59:30", "2026-05-01 09:00:00"),
            ("*/15 * * * *", "2026-01-01 10:07:42", "2026-01-01 10:15:00"),
            ("*/15 * * * *", "2026-01-01 23:45:00", "2026-01-02 00:00:00"),
            ("5/20 * * * *", "2026-01-01 10:46:00", "2026-01-01 11:05:00"),
            ("0 0 1 jan-mar/2 *", "2026-02-01 00:00:00", "2026-03-01 00:00:00"),
            ("0 0 * * 0", "2026-03-10 12:00:00", "2026-03-15 00:00:00"), // tuesday -> sunday
            ("0 0 * * 7", "2026-03-10 12:00:00", "2026-03-15 00:00:00"),
            ("0 0 * * 5-7", "2026-03-10 12:00:00", "2026-03-13 00:00:00"),
            ("0 0 13 * 5", "2026-03-10 00:00:00", "2026-03-13 00:00:00"), // friday the 13th
            ("0 0 13 * 5", "2026-03-13 00:00:00", "2026-03-20 00:00:00"), // OR: next friday
            ("0 0 13 * 5", "2026-04-10 00:00:00", "2026-04-13 00:00:00"), // OR: a monday 13th
            // A `*`-led day-of-week keeps AND semantics: `*/5` is {sun, fri}.
            ("0 0 13 * */5", "2026-03-14 00:00:00", "2026-09-13 00:00:00"),
            ("0 0 29 2 *", "2026-01-01 00:00:00", "2028-02-29 00:00:00"),
            ("0 0 29 2 *", "2096-03-01 00:00:00", "2104-02-29 00:00:00"), // 2100 is not leap
            ("0 0 29 2 */7", "2032-03-01 00:00:00", "2060-02-29 00:00:00"), // feb 29 on a sunday
        ];
        for (expr, after, want) in cases {
            assert_eq!(cron(expr).next_after(t(after)), t(want), "{expr} after {after}");
        }
        let (sun0, sun7) = (cron("0 0 * * 0"), cron("0 0 * * 7"));
        assert_eq!(sun0.weekdays, sun7.weekdays);
        let from = t("2026-03-10 12:00:00");
        assert!(sun0.upcoming(from).take(60).eq(sun7.upcoming(from).take(60)));
    }

    #[test]
    fn skipping_search_agrees_with_a_minute_by_minute_scan() {
        let exprs = [
            "*/15 9-17 * * 1-5",
            "0 0 13 * 5",
            "30 4 1,15 * */2",
            "5 */6 * jan,jul *",
            "59 23 31 * *",
        ];
        for expr in exprs {
            let c = cron(expr);
            let matches = |dt: DateTime<Utc>| {
                c.minutes & bit(dt.minute()) != 0
                    && c.hours & bit(dt.hour()) != 0
                    && c.months & bit(dt.month()) != 0
                    && c.day_matches(dt.date_naive())
            };
            let mut scan = t("2026-06-29 17:03:00");
            for found in c.upcoming(scan).take(40) {
                scan += chrono::TimeDelta::minutes(1);
                while !matches(scan) {
                    scan += chrono::TimeDelta::minutes(1);
                }
                assert_eq!(found, scan, "{expr}");
            }
        }
    }

    #[test]
    #[rustfmt::skip]
    fn describes_common_shapes() {
        let cases = [
            ("0 0 * * *", "every day at 00:00 UTC"),
            ("@daily", "every day at 00:00 UTC"),
            ("30 2 * * *", "every day at 02:30 UTC"),
            ("0 9 1 * *", "at 09:00 UTC on day 1 of every month"),
            ("0 3 1,15 * *", "at 03:00 UTC on days 1 and 15 of every month"),
            ("@yearly", "at 00:00 UTC on January 1 every year"),
            ("@weekly", "every Sunday at 00:00 UTC"),
            ("0 6 * * mon-fri", "every weekday at 06:00 UTC"),
            ("0 6 * * 1,3,5", "every Monday, Wednesday and Friday at 06:00 UTC"),
            ("@hourly", "every hour at minute 0"),
            ("*/15 * * * *", "every 15 minutes"),
            ("* * * * *", "every minute"),
            ("0 0 13 * 5", "at cron `0 0 13 * 5` (UTC)"),
            ("*/7 * * * *", "at cron `*/7 * * * *` (UTC)"),
            ("0 0 * 6 *", "at cron `0 0 * 6 *` (UTC)"),
        ];
        for (expr, want) in cases {
            assert_eq!(cron(expr).describe(), want, "{expr}");
        }
    }

    #[test]
    fn keeps_source_text() {
        let c: Cron = " 0 0 * * * ".parse().unwrap();
        assert_eq!(
            (c.as_str(), c.to_string()),
            (" 0 0 * * * ", " 0 0 * * * ".to_string())
        );
        assert_eq!(cron("@midnight").as_str(), "@midnight");
        assert_eq!(
            cron("@midnight").next_after(t("2026-01-01 00:00:00")),
            t("2026-01-02 00:00:00")
        );
    }
}
