//! `wait`: a fixed pause, or polling another step kind until it succeeds and an expectation
//! over its outputs (`result`) holds, every `interval`, up to a `deadline`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{string_or_map, Outputs, Spec, StepCx, StepError, StepKind};
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
    /// Time between polls; default `5s`.
    #[serde(default = "five_seconds")]
    pub interval: Duration,
    /// Give up after this long; default `10m`.
    #[serde(default = "ten_minutes")]
    pub deadline: Duration,
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

impl Spec for Wait {
    const EXPRESSIONS: &'static [&'static str] = &["until"];

    fn summary(&self) -> String {
        match self {
            Wait::Fixed(d) => format!("wait {d}"),
            Wait::Poll(p) => {
                let until = p
                    .until
                    .as_deref()
                    .map(|u| format!(" until {u}"))
                    .unwrap_or_default();
                format!(
                    "poll {} every {}{until} (deadline {})",
                    p.poll.summary(),
                    p.interval,
                    p.deadline
                )
            }
        }
    }

    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let spec = match self {
            Wait::Fixed(d) => {
                tokio::select! {
                    () = tokio::time::sleep(d.std()) => {}
                    () = cx.cancel.cancelled() => return Err(StepError::cancelled()),
                }
                let mut out = Outputs::new();
                out.insert("waited".into(), crate::duration::human(d.std()).into());
                return Ok(out);
            }
            Wait::Poll(p) => p,
        };
        let start = tokio::time::Instant::now();
        let deadline = start + spec.deadline.std();
        let mut polls = 0u32;
        loop {
            polls += 1;
            let last = match spec.poll.run(cx).await {
                Ok(outputs) => match &spec.until {
                    None => return Ok(done(outputs, polls, start)),
                    Some(expr) => {
                        let ctx = with_result(cx.vars, &outputs);
                        match crate::template::eval(cx.templates, expr, &ctx) {
                            Ok(v) if v.is_true() => return Ok(done(outputs, polls, start)),
                            Ok(_) => format!("`{expr}` was false"),
                            Err(e) => {
                                return Err(StepError::failed(format!(
                                    "cannot evaluate `until: {expr}`: {}",
                                    crate::template::describe_error(&e)
                                )))
                            }
                        }
                    }
                },
                Err(e) if e.class == super::ErrorClass::Cancelled => return Err(e),
                Err(e) => e.message,
            };
            let next = tokio::time::Instant::now() + spec.interval.std();
            if next > deadline {
                return Err(StepError::failed(format!(
                    "gave up after {} and {polls} polls: {last}",
                    spec.deadline
                )));
            }
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = cx.cancel.cancelled() => return Err(StepError::cancelled()),
            }
        }
    }
}

fn done(mut outputs: Outputs, polls: u32, start: tokio::time::Instant) -> Outputs {
    outputs.insert("polls".into(), polls.into());
    outputs.insert(
        "waited".into(),
        crate::duration::human(start.elapsed()).into(),
    );
    outputs
}

/// The run's context plus `result`.
fn with_result(vars: &minijinja::Value, outputs: &Outputs) -> minijinja::Value {
    minijinja::context! { result => minijinja::Value::from_serialize(outputs), ..vars.clone() }
}
