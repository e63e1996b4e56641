//! [`Cron::next_after`] checked against an independent implementation, the croner crate, on
//! thousands of generated expressions in every form the parser accepts (values, with a
//! leading zero or not, names in any case, ranges, steps, `a/step`, lists, `*` alone or in a
//! list, 7 for Sunday, macros, any whitespace) and many start times, each followed by its
//! next firings. The generator is a fixed-seed xorshift, so a failure reproduces.
//!
//! croner follows Vixie cron's OR rule for the two day fields, but counts a field as
//! unrestricted only when it is exactly `*`, where Vixie cron (and [`Cron`], as documented)
//! looks at whether it starts with `*`. [`oracle`] spells our rule out for croner with its
//! `+` (day-of-month AND day-of-week) prefix; everything else is croner's own reading.

use super::*;

/// xorshift64: deterministic, good enough to spread cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `lo..=hi`.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u32
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

struct Field {
    min: u32,
    max: u32,
    // the name of each value from `min`, where the field has names
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    min: 1,
    max: 31,
    names: &[],
};
#[rustfmt::skip]
const MONTH: Field = Field {
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const WEEKDAY: Field = Field {
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// A value as a number, or now and then as its name in some case. croner reads `-sun` as
/// `-7`, so Sunday ends a range only as a number (`sun-sun` is `0-0` to cron).
fn value(rng: &mut Rng, f: &Field, v: u32, range_end: bool) -> String {
    let name = f.names.get((v - f.min) as usize).copied();
    match name {
        Some(n) if rng.one_in(3) && !(range_end && n == "sun") => match rng.range(0, 2) {
            0 => n.to_owned(),
            1 => n.to_uppercase(),
            _ => n[..1].to_uppercase() + &n[1..],
        },
        _ if rng.one_in(20) => format!("0{v}"),
        _ => v.to_string(),
    }
}

fn item(rng: &mut Rng, f: &Field) -> String {
    let span = f.max - f.min + 1;
    // mostly steps that select several values, sometimes one wider than the range
    let step = |rng: &mut Rng| {
        if rng.one_in(8) {
            rng.range(span, 100)
        } else {
            rng.range(1, span.div_ceil(2).max(2))
        }
    };
    let (a, b) = (rng.range(f.min, f.max), rng.range(f.min, f.max));
    let (lo, hi) = (a.min(b), a.max(b));
    match rng.range(0, 5) {
        0 => "*".to_owned(),
        1 => format!("*/{}", step(rng)),
        2 => value(rng, f, a, false),
        3 => format!("{}-{}", value(rng, f, lo, false), value(rng, f, hi, true)),
        4 => format!(
            "{}-{}/{}",
            value(rng, f, lo, false),
            value(rng, f, hi, true),
            step(rng)
        ),
        _ => format!("{}/{}", value(rng, f, a, false), step(rng)),
    }
}

fn field(rng: &mut Rng, f: &Field) -> String {
    let items = match rng.range(0, 9) {
        0..=5 => 1,
        6..=8 => 2,
        _ => 3,
    };
    let list: Vec<String> = (0..items).map(|_| item(rng, f)).collect();
    list.join(",")
}

fn expression(rng: &mut Rng) -> String {
    const MACROS: [&str; 6] = [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@hourly",
    ];
    if rng.one_in(50) {
        let m = MACROS[rng.range(0, 5) as usize];
        return if rng.one_in(2) {
            m.to_owned()
        } else {
            m.to_uppercase()
        };
    }
    // day fields left alone half the time, so both the AND and the OR rule get exercised
    let day = |rng: &mut Rng, f: &Field| {
        if rng.one_in(2) {
            "*".to_owned()
        } else {
            field(rng, f)
        }
    };
    let fields = [
        field(rng, &MINUTE),
        field(rng, &HOUR),
        day(rng, &DAY),
        field(rng, &MONTH),
        day(rng, &WEEKDAY),
    ];
    // any whitespace separates fields, and may surround them
    let mut text = String::new();
    for f in fields {
        text.push_str([" ", "  ", "\t"][rng.range(0, 2) as usize]);
        text.push_str(&f);
    }
    if rng.one_in(2) {
        text.push(' ');
        text
    } else {
        text.trim_start().to_owned()
    }
}

/// croner's reading of `expr`, with Vixie cron's day rule made explicit, and a `*` inside a
/// list (which croner takes only as a whole field) written `*/1`.
fn oracle(expr: &str) -> croner::Cron {
    let star_item = |item: &str| if item == "*" { "*/1" } else { item }.to_owned();
    let mut fields: Vec<String> = expr
        .split_whitespace()
        .map(|f| {
            if f.contains(',') {
                f.split(',').map(star_item).collect::<Vec<_>>().join(",")
            } else {
                f.to_owned()
            }
        })
        .collect();
    if fields.len() == 5 && (fields[2].starts_with('*') || fields[4].starts_with('*')) {
        fields[4].insert(0, '+');
    }
    croner::parser::CronParser::builder()
        .sloppy_ranges(true) // `a/step`, which the parser accepts
        .build()
        .parse(&fields.join(" "))
        .unwrap_or_else(|e| panic!("croner rejects `{expr}`: {e}"))
}

fn start(rng: &mut Rng) -> DateTime<Utc> {
    let year = rng.range(1970, 2100) as i32;
    let month = rng.range(1, 12);
    let days = (28..=31)
        .rev()
        .find(|&d| NaiveDate::from_ymd_opt(year, month, d).is_some())
        .unwrap_or(28);
    // month ends and day ends are where carries go wrong
    let day = if rng.one_in(4) {
        days
    } else {
        rng.range(1, days)
    };
    let (hour, minute) = if rng.one_in(4) {
        (23, 59)
    } else {
        (rng.range(0, 23), rng.range(0, 59))
    };
    NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_opt(hour, minute, rng.range(0, 59)))
        .expect("a valid date")
        .and_utc()
}

#[test]
fn next_after_agrees_with_croner() {
    let mut rng = Rng(0x5EED_C0FF_EE15_600D);
    let (mut compared, mut never) = (0, 0);
    for _ in 0..3000 {
        let expr = expression(&mut rng);
        let theirs = oracle(&expr);
        let ours = match Cron::parse(&expr) {
            Ok(c) => c,
            Err(e) => {
                // the only expressions the parser refuses here are those that never fire
                assert!(
                    e.message.starts_with("schedule never fires"),
                    "`{expr}`: {e}"
                );
                let from = start(&mut rng);
                assert!(
                    theirs.find_next_occurrence(&from, false).is_err(),
                    "`{expr}` refused, but croner has it fire"
                );
                never += 1;
                continue;
            }
        };
        for _ in 0..4 {
            // a random start, then the next two firings from each firing (strictly after)
            let mut from = start(&mut rng);
            for _ in 0..3 {
                let want = theirs
                    .find_next_occurrence(&from, false)
                    .unwrap_or_else(|e| panic!("croner finds no firing of `{expr}`: {e}"));
                assert_eq!(ours.next_after(from), want, "`{expr}` after {from}");
                compared += 1;
                from = want;
            }
        }
    }
    // the generator reaches both outcomes, and plenty of comparisons
    assert!(compared > 30_000 && never > 0, "{compared} {never}");
}
