//! `wait`: a fixed pause, or polling another step kind until an expectation over its
//! outputs (`result`) holds, every `interval`, up to a `deadline`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::limits::{at_most, LONGEST_WAIT, SHORTEST_INTERVAL};
use super::{output, string_or_map, Effects, Invalid, Measure, Output, Spec, StepKind};
use crate::duration::Duration;

/// `wait: 30s` or `{poll, until, interval, deadline}`.
#[derive(Debug, Clone)]
pub enum Wait {
    Fixed(Duration),
    Poll(PollSpec),
}

string_or_map!(
    Wait,
    Fixed,
    Poll(PollSpec),
    "A pause (`30s`), or polling a step kind until an expectation holds."
);

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PollSpec {
    /// The step kind to run on every poll, e.g. `{http: {url: …}}`.
    pub poll: Box<StepKind>,
    /// Expression over the poll's outputs as `result`, e.g. `result.status == 200`;
    /// without it, the first successful poll ends the wait.
    pub until: Option<String>,
    /// Time between polls: `100ms` to `7d`; default `5s`.
    #[serde(default = "five_seconds")]
    pub interval: Duration,
    /// Give up after this long, at most `7d`; default `10m`.
    #[serde(default = "ten_minutes")]
    pub deadline: Duration,
    /// Expression over the poll's outputs as `result` that ends the wait as failed at once,
    /// e.g. `result.state == 'error'`.
    pub fail_when: Option<String>,
    /// Once a poll has succeeded, this many polls in a row that cannot reach what they poll
    /// (*unavailable*: connection refused, a server gone) end the wait as failed; `0` never.
    /// Default 3.
    #[serde(default = "three")]
    pub gone_after: u32,
}

fn three() -> u32 {
    3
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

impl Spec for Wait {
    const OUTPUTS: &'static [Output] = &[
        output("waited", "how long it waited, e.g. `1m 30s`"),
        output("polls", "how many polls it took (polling only)"),
    ];
    const MEASURE: Option<Measure<'static>> = None;
    const PAYLOAD_OUTPUTS: Option<&'static str> =
        Some("when polling, the last poll's outputs (those of the polled kind)");
    const EXPRESSIONS: &'static [&'static str] = &["until", "fail_when"];
    const NESTED: &'static [&'static str] = &["poll"];

    /// What the polled kind does.
    fn effects(&self) -> Effects<'_> {
        match self {
            Wait::Fixed(_) => Effects::NONE,
            Wait::Poll(p) => p.poll.effects(),
        }
    }

    /// The polled kind's outputs.
    fn payload_outputs(&self) -> Vec<&str> {
        match self {
            Wait::Fixed(_) => Vec::new(),
            Wait::Poll(p) => p.poll.outputs(),
        }
    }

    /// A pause or deadline of at most a week; polls at most ten times a second; the polled
    /// kind's own rules.
    fn check(&self) -> Result<(), Invalid> {
        let p = match self {
            Wait::Fixed(d) => return at_most("wait", *d, LONGEST_WAIT).map_err(Invalid::whole),
            Wait::Poll(p) => p,
        };
        if p.interval < SHORTEST_INTERVAL {
            return Err(Invalid::at(
                "interval",
                format!(
                    "`interval` is {}: shorter than {SHORTEST_INTERVAL} (drillbook polls at most ten times a second)",
                    p.interval
                ),
            ));
        }
        at_most("interval", p.interval, LONGEST_WAIT).map_err(|e| Invalid::at("interval", e))?;
        at_most("deadline", p.deadline, LONGEST_WAIT).map_err(|e| Invalid::at("deadline", e))?;
        p.poll
            .check()
            .map_err(|inner| Invalid::at("poll", inner.message))
    }

    fn summary(&self) -> String {
        match self {
            Wait::Fixed(d) => format!("wait {d}"),
            Wait::Poll(p) => {
                let until = p
                    .until
                    .as_deref()
                    .map(|u| format!(" until {u}"))
                    .unwrap_or_default();
                let until = match &p.fail_when {
                    Some(f) => format!("{until}, failing when {f}"),
                    None => until,
                };
                format!(
                    "poll {} every {}{until} (deadline {})",
                    p.poll.summary(),
                    p.interval,
                    p.deadline
                )
            }
        }
    }
}
