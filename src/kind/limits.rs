//! Bounds on how long a runbook may make drillbook wait and how often it may make it try,
//! checked by `validate`: past them a value is a typo (`100000h`, `attempts: 10000`) that
//! would hang a run for years or hammer a service, not a plan. `docs/runbook-format.md`
//! lists them.

use crate::duration::Duration;

const fn secs(s: u64) -> Duration {
    Duration(std::time::Duration::from_secs(s))
}

/// The longest step or check `timeout`, fixed `wait` pause and polling `deadline`.
pub const LONGEST_WAIT: Duration = secs(7 * 86_400);
/// The shortest polling `interval`: at most ten polls a second.
pub const SHORTEST_INTERVAL: Duration = Duration(std::time::Duration::from_millis(100));
/// The most `retries.attempts`, the first try included.
pub const MOST_ATTEMPTS: u32 = 100;
/// The longest `retries.backoff` (the wait before the second attempt; it doubles after).
pub const LONGEST_BACKOFF: Duration = secs(86_400);

/// A step's or check's `timeout`: more than zero, at most [`LONGEST_WAIT`].
pub fn timeout(d: Duration) -> Result<(), String> {
    if d.0.is_zero() {
        return Err("`timeout` is 0s: it would stop before it starts".into());
    }
    at_most("timeout", d, LONGEST_WAIT)
}

/// `retries.attempts`: at most [`MOST_ATTEMPTS`] (at least 1 is checked with the field).
pub fn attempts(n: u32) -> Result<(), String> {
    if n > MOST_ATTEMPTS {
        return Err(format!(
            "`attempts` is {n}: more than {MOST_ATTEMPTS}, the most a step may be tried"
        ));
    }
    Ok(())
}

/// `field` (its value `d`) is no longer than `max`.
pub fn at_most(field: &str, d: Duration, max: Duration) -> Result<(), String> {
    if d > max {
        return Err(format!(
            "`{field}` is {d}: longer than {max}, the longest drillbook accepts"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        assert!(timeout(LONGEST_WAIT).is_ok());
        assert!(timeout(Duration(
            LONGEST_WAIT.0 + std::time::Duration::from_millis(1)
        ))
        .is_err());
        assert!(timeout(Duration::default()).is_err());
        assert!(attempts(MOST_ATTEMPTS).is_ok());
        assert!(attempts(MOST_ATTEMPTS + 1).is_err());
        let e = at_most("backoff", secs(2 * 86_400), LONGEST_BACKOFF).expect_err("too long");
        assert_eq!(
            e,
            "`backoff` is 2d: longer than 24h, the longest drillbook accepts"
        );
    }
}
