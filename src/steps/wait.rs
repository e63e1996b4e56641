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
        loop {
            polls += 1;
            let last = match super::run_kind(&spec.poll, cx).await {
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
                Err(e) if e.class == ErrorClass::Cancelled => return Err(e),
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
