//! `wait`: sleeps, or runs the polled kind until `until` holds or the deadline passes.

use super::{Run, StepCx, StepError};
use crate::kind::wait::Wait;
use crate::record::{ErrorClass, Outputs};

impl Run for Wait {
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
        // the last poll that succeeded, and the unavailable polls in a row since
        let mut answered: Option<u32> = None;
        let mut unreachable = 0u32;
        loop {
            polls += 1;
            let last = match super::run_kind(&spec.poll, cx).await {
                Ok(outputs) => {
                    answered = Some(polls);
                    unreachable = 0;
                    let ctx = with_result(cx.vars, &outputs);
                    if let Some(expr) = &spec.fail_when {
                        if holds(cx, &ctx, "fail_when", expr)? {
                            return Err(StepError::failed(format!(
                                "`fail_when: {expr}` held at poll {polls}"
                            ))
                            .with_outputs(done(outputs, polls, start)));
                        }
                    }
                    match &spec.until {
                        None => return Ok(done(outputs, polls, start)),
                        Some(expr) if holds(cx, &ctx, "until", expr)? => {
                            return Ok(done(outputs, polls, start))
                        }
                        Some(expr) => format!("`{expr}` was false"),
                    }
                }
                Err(e) if e.class == ErrorClass::Cancelled => return Err(e),
                Err(e) if e.class == ErrorClass::Unavailable => {
                    unreachable += 1;
                    match answered {
                        Some(at) if spec.gone_after > 0 && unreachable >= spec.gone_after => {
                            return Err(StepError::failed(format!(
                                "what it polls is gone: it answered poll {at}, then {unreachable} polls in a row could not reach it: {}",
                                e.message
                            )));
                        }
                        _ => e.message,
                    }
                }
                Err(e) => {
                    unreachable = 0;
                    e.message
                }
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

/// Evaluates `until` or `fail_when` against a poll's outputs; an expression that cannot be
/// evaluated fails the step at once.
fn holds(
    cx: &StepCx<'_>,
    ctx: &minijinja::Value,
    field: &str,
    expr: &str,
) -> Result<bool, StepError> {
    crate::template::eval(cx.templates, expr, ctx)
        .map(|v| v.is_true())
        .map_err(|e| {
            StepError::failed(format!(
                "cannot evaluate `{field}: {expr}`: {}",
                crate::template::describe_error(&e)
            ))
        })
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
