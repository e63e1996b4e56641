//! The executor: order, `when`, approvals, rendering, timeouts, retries, cancellation,
//! cleanup, RTO, verdict.

use chrono::Utc;
use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::context::{redactor, RunOptions, Vars};
use crate::cancel::Cancel;
use crate::diagnostic::did_you_mean;
use crate::kind::{Form, StepKind, Verifies};
use crate::record::{
    Approval, DrillRecord, ProcedureRef, RpoRecord, RtoRecord, RunbookRef, StepRecord, StepStatus,
    Verdict,
};
use crate::record::{ErrorClass, Outputs};
use crate::redact::Redactor;
use crate::runbook::{ParamValue, Procedure, RtoMark, Runbook, Step};
use crate::steps::ledger::{Ledger, Undos};
use crate::steps::{ask_operator, record_approval, Answer, Interaction, StepCx, StepError};

/// Progress of a run, for the terminal. Tests replace it.
pub trait Observer: Send + Sync {
    /// A run begins, with this many main and cleanup steps.
    fn started(&self, record: &DrillRecord, steps: usize, cleanup: usize);
    fn step_started(&self, cleanup: bool, index: usize, step: &Step);
    fn step_finished(&self, cleanup: bool, index: usize, record: &StepRecord);
    /// What was checked before the first step.
    fn preflight(&self, _items: &[crate::record::PreflightItem]) {}
    /// Undoing something a step created begins (`rec` has its id and what it does).
    fn undo_started(&self, _rec: &StepRecord) {}
    fn undo_finished(&self, _rec: &StepRecord) {}
    /// A second interrupt aborted cleanup: what was not undone, each in words naming its
    /// path or resource.
    fn left_behind(&self, _what: &[String]) {}
    /// Something the operator should know that is not about a step.
    fn warning(&self, _message: &str) {}
}

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no procedure `{name}` in {runbook}{hint}")]
    UnknownProcedure {
        name: String,
        runbook: String,
        hint: String,
    },
    #[error("{0}")]
    BadParam(String),
    #[error("environment variable{} not set: {}; the runbook reads {}", if .0.len() == 1 { " is" } else { "s are" }, .0.join(", "), if .0.len() == 1 { "it" } else { "them" })]
    MissingEnv(Vec<String>),
    #[error(transparent)]
    Operator(#[from] super::context::OperatorError),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::UnknownProcedure { .. } | RunError::BadParam(_) => 2,
            RunError::MissingEnv(_) | RunError::Operator(_) => 3,
        }
    }
}

pub fn find_procedure<'r>(runbook: &'r Runbook, id: &str) -> Result<&'r Procedure, RunError> {
    runbook.procedure(id).ok_or_else(|| {
        let hint = match did_you_mean(id, runbook.procedures.keys().map(String::as_str)) {
            Some(best) => format!("; did you mean `{best}`?"),
            None => format!(
                "; procedures: {}",
                runbook
                    .procedures
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        RunError::UnknownProcedure {
            name: id.to_owned(),
            runbook: runbook.path.clone(),
            hint,
        }
    })
}

/// Typed param values: `--param` over defaults. Unknown or missing params are errors.
pub fn plan_params(
    procedure: &Procedure,
    given: &[(String, String)],
) -> Result<IndexMap<String, ParamValue>, RunError> {
    let mut out = IndexMap::new();
    for (name, text) in given {
        let Some(param) = procedure.params.get(name) else {
            let hint = did_you_mean(name, procedure.params.keys().map(String::as_str))
                .map_or(String::new(), |b| format!("; did you mean `{b}`?"));
            return Err(RunError::BadParam(format!(
                "procedure `{}` has no param `{name}`{hint}",
                procedure.id
            )));
        };
        let value = ParamValue::parse(param.ty, text).map_err(|e| {
            RunError::BadParam(if param.secret {
                // what is wrong with a secret would show it
                format!(
                    "--param {name}: not a valid {} (the value of a secret param is not shown)",
                    param.ty.as_str()
                )
            } else {
                format!("--param {name}: {e}")
            })
        })?;
        out.insert(name.clone(), value);
    }
    let mut missing = Vec::new();
    for (name, param) in &procedure.params {
        if !out.contains_key(name) {
            match &param.default {
                Some(d) => {
                    out.insert(name.clone(), d.clone());
                }
                None => missing.push(format!(
                    "--param {name}=<{}>",
                    serde_json::to_value(param.ty)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )),
            }
        }
    }
    if !missing.is_empty() {
        return Err(RunError::BadParam(format!(
            "procedure `{}` needs {}",
            procedure.id,
            missing.join(" ")
        )));
    }
    // keep declaration order
    out.sort_by_cached_key(|k, _| procedure.params.get_index_of(k));
    Ok(out)
}

/// The env vars the procedure reads: those set, and the names of those missing.
fn read_env(runbook: &Runbook, procedure: &Procedure) -> (Map<String, Value>, Vec<String>) {
    let mut env = Map::new();
    let mut missing = Vec::new();
    for name in runbook.needed_env(procedure) {
        match std::env::var(&name) {
            Ok(v) => {
                env.insert(name, Value::String(v));
            }
            Err(_) => missing.push(name),
        }
    }
    (env, missing)
}

/// Everything one run needs while it goes.
struct Run<'a> {
    runbook: &'a Runbook,
    opts: &'a RunOptions,
    interaction: &'a dyn Interaction,
    templates: minijinja::Environment<'static>,
    vars: Vars,
    redactor: Redactor,
    /// Confirmations given during the run: by the engine for destructive steps, and by
    /// steps through `StepCx::confirm`; nothing else adds to it.
    approvals: std::sync::Mutex<Vec<Approval>>,
    /// What steps created, undone after the cleanup steps (and kept in the run's ledger).
    undo: Undos,
    /// Wall time and monotonic clock at the start of the run: step times are the start time
    /// plus monotonic elapsed, so durations and timestamps agree (and follow a paused clock
    /// in tests).
    started_at: chrono::DateTime<Utc>,
    clock: tokio::time::Instant,
}

/// The preflight of a procedure without running it (`plan --preflight`): params resolved
/// as a run would, env read, every point in time checked against its restore window.
pub async fn preflight(
    runbook: &Runbook,
    procedure: &Procedure,
    given: &[(String, String)],
) -> Result<Vec<crate::record::PreflightItem>, RunError> {
    let now = Utc::now();
    let params: Map<String, Value> = plan_params(procedure, given)?
        .iter()
        .map(|(k, v)| (k.clone(), v.resolve(now)))
        .collect();
    let (env, missing) = read_env(runbook, procedure);
    if !missing.is_empty() {
        return Err(RunError::MissingEnv(missing));
    }
    let opts = RunOptions {
        params: given.to_vec(),
        yes: false,
        dry_run: true,
        operator: super::operator()?,
        history: None,
        memo: None,
    };
    let vars = Vars::new(runbook, procedure, params, env, "preflight", now, &opts);
    let templates = crate::template::environment();
    Ok(super::preflight::check(runbook, procedure, &templates, &vars.context(None), now).await)
}

/// Runs a procedure to completion (cleanup included) and returns its record.
pub async fn run(
    runbook: &Runbook,
    procedure_id: &str,
    opts: &RunOptions,
    interaction: &dyn Interaction,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<DrillRecord, RunError> {
    let procedure = find_procedure(runbook, procedure_id)?;
    let started_at = Utc::now();
    let typed = plan_params(procedure, &opts.params)?;
    let params: Map<String, Value> = typed
        .iter()
        .map(|(k, v)| (k.clone(), v.resolve(started_at)))
        .collect();

    let (env, missing) = read_env(runbook, procedure);
    if !missing.is_empty() && !opts.dry_run {
        return Err(RunError::MissingEnv(missing));
    }

    let id = run_id(started_at);
    let redactor = redactor(runbook, procedure, &params);
    let mut record = DrillRecord::start(
        id.clone(),
        RunbookRef::of(runbook),
        ProcedureRef {
            id: procedure.id.clone(),
            title: procedure.title.clone(),
            kind: procedure.kind.into(),
        },
        opts.operator.clone(),
        started_at,
    );
    // a secret param is masked whole, whatever its type or length
    record.params = params
        .iter()
        .map(|(k, v)| {
            let secret = procedure.params.get(k).is_some_and(|p| p.secret);
            (
                k.clone(),
                if secret {
                    Value::from(crate::redact::MASK)
                } else {
                    redactor.redact_json(v)
                },
            )
        })
        .collect();
    record.dry_run = opts.dry_run;
    // what this run creates is written down as it happens, for `gc` should the run be killed
    let ledger = if opts.dry_run {
        None
    } else {
        let dir = crate::steps::ledger::ledger_dir();
        match Ledger::begin(&dir, &id, &runbook.name, &procedure.id) {
            Ok(l) => Some(l),
            Err(e) => {
                observer.warning(&format!(
                    "cannot write the run ledger in {} ({e}): if this run is killed, `drillbook gc` cannot find what it created",
                    dir.display()
                ));
                None
            }
        }
    };
    let clock = tokio::time::Instant::now();
    let mut state = Run {
        runbook,
        opts,
        interaction,
        templates: crate::template::environment(),
        vars: Vars::new(runbook, procedure, params, env, &id, started_at, opts),
        redactor,
        approvals: std::sync::Mutex::new(Vec::new()),
        undo: Undos::new(ledger),
        started_at,
        clock,
    };
    observer.started(&record, procedure.steps.len(), procedure.cleanup.len());

    if opts.dry_run {
        let note = if missing.is_empty() {
            "dry run".to_owned()
        } else {
            format!("dry run; env not set: {}", missing.join(", "))
        };
        record.steps = procedure.steps.iter().map(|s| not_run(s, &note)).collect();
        record.cleanup = procedure
            .cleanup
            .iter()
            .map(|s| not_run(s, &note))
            .collect();
        record.finished_at = Utc::now();
        return Ok(record);
    }

    // main steps: stop at the first failure that is not allowed to continue, or an interrupt
    let mut stop: Option<String> = None;
    if super::preflight::needed(runbook, procedure) {
        let items = super::preflight::check(
            runbook,
            procedure,
            &state.templates,
            &state.vars.context(None),
            started_at,
        )
        .await;
        observer.preflight(&items);
        if let Some(bad) = items.iter().find(|i| !i.ok) {
            stop = Some(format!("preflight failed at step `{}`", bad.step));
        }
        record.preflight = items;
    }
    // after a failed validation, the validations that follow still run (the record shows
    // every one's outcome) unless they read what a failed or skipped step would have output
    let mut failed_validation: Option<String> = None;
    let mut unavailable = std::collections::BTreeSet::new();
    for (i, step) in procedure.steps.iter().enumerate() {
        let skip = match (&stop, &failed_validation) {
            (Some(why), _) => Some(why.clone()),
            (None, Some(why)) if !step.kind.is_validation() => Some(why.clone()),
            (None, Some(_)) => step
                .needs
                .iter()
                .find(|n| unavailable.contains(n.as_str()))
                .map(|n| format!("it reads `steps.{n}`, which did not pass")),
            (None, None) => None,
        };
        if let Some(why) = skip {
            unavailable.insert(step.id.as_str());
            record.steps.push(not_run(step, &why));
            continue;
        }
        observer.step_started(false, i, step);
        let rec = state.run_step(step, cancel, false).await;
        observer.step_finished(false, i, &rec);
        if cancel.is_cancelled() {
            stop = Some("interrupted".into());
        } else if is_failure(rec.status) && !step.continue_on_error {
            unavailable.insert(step.id.as_str());
            let why = format!("step `{}` failed", step.id);
            if step.kind.is_validation() {
                failed_validation.get_or_insert(why);
            } else {
                stop = Some(why);
            }
        }
        record.steps.push(rec);
    }

    // cleanup: every step, whatever happened; only a second interrupt stops it
    let cleanup_cancel = cancel.for_cleanup();
    for (i, step) in procedure.cleanup.iter().enumerate() {
        if cleanup_cancel.is_cancelled() {
            record
                .cleanup
                .push(not_run(step, "cleanup aborted by a second interrupt"));
            continue;
        }
        observer.step_started(true, i, step);
        let rec = state.run_step(step, &cleanup_cancel, true).await;
        observer.step_finished(true, i, &rec);
        record.cleanup.push(rec);
    }

    // then what steps created, newest first, whatever the cleanup steps did
    let created = state.undo.take();
    let mut not_undone = Vec::new();
    for (index, undo) in created.iter().rev() {
        let rec = state.undo_one(undo, &cleanup_cancel, observer).await;
        if rec.status == StepStatus::Passed {
            state.undo.undone(*index);
        } else {
            not_undone.push((*index, undo, record.cleanup.len()));
        }
        record.cleanup.push(rec);
    }
    if cleanup_cancel.is_cancelled() {
        // cleanup was aborted: the last resort, newest first. Every server this run started
        // is stopped without waiting, and a shell step's undo still runs, briefly; then say
        // what is left for a person to remove
        let mut left = Vec::new();
        for (index, undo, at) in &not_undone {
            match undo {
                crate::steps::Undo::Cluster { handle, .. } => {
                    handle.kill_now();
                    left.push(format!(
                        "{} (its server was stopped; its files remain)",
                        undo.title()
                    ));
                }
                crate::steps::Undo::Shell { command, .. } => {
                    let clock = tokio::time::Instant::now();
                    let result = command.run(crate::steps::shell::LAST_RESORT).await;
                    let rec = &mut record.cleanup[*at];
                    rec.duration_ms =
                        Some(u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX));
                    rec.attempts = 1;
                    match result {
                        Ok(()) => {
                            state.undo.undone(*index);
                            rec.status = StepStatus::Passed;
                            rec.note =
                                Some("run as the last resort after a second interrupt".into());
                        }
                        Err(e) => {
                            rec.status = StepStatus::Failed;
                            rec.error = Some(state.redactor.redact(&format!(
                                "run as the last resort after a second interrupt: {}",
                                e.message
                            )));
                            rec.error_class = Some(e.class);
                            left.push(format!("{} ({})", undo.title(), e.message));
                        }
                    }
                }
                _ => left.push(undo.title().to_owned()),
            }
        }
        if !left.is_empty() {
            observer.left_behind(&left);
        }
        // with nothing left behind the ledger goes; else it stays for `gc`
        state.undo.finish(!left.is_empty());
    } else {
        state.undo.finish(!not_undone.is_empty());
    }
    // nothing a step started outlives the run, even when cleanup was aborted
    crate::steps::shell::end_stopped(&cleanup_cancel).await;

    record.approvals = std::mem::take(
        &mut *state
            .approvals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    record.rto = Some(measure_rto(runbook, procedure, &record.steps));
    record.rpo = observed_rpo(runbook, procedure, &record.steps);
    let (verdict, reason) = verdict(&record, cancel);
    record.verdict = verdict;
    record.reason = reason;
    record.duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    record.finished_at = state.now();
    Ok(record)
}

fn is_failure(s: StepStatus) -> bool {
    matches!(
        s,
        StepStatus::Failed | StepStatus::TimedOut | StepStatus::Cancelled
    )
}

fn not_run(step: &Step, why: &str) -> StepRecord {
    let mut rec = pending(step);
    rec.note = Some(why.to_owned());
    rec
}

/// The record a step starts from.
fn pending(step: &Step) -> StepRecord {
    StepRecord::new(
        step.id.clone(),
        step.display_title().to_owned(),
        step.kind.name().to_owned(),
        step.destructive || step.kind.is_destructive(),
    )
}

/// A new run id, `20261129T201752Z-3fa9c2d1`: the UTC start time (sortable) and 32 random
/// bits.
pub fn run_id(at: chrono::DateTime<Utc>) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(at.timestamp_nanos_opt().unwrap_or_default() as u128);
    h.write_u32(std::process::id());
    // 32 random bits: runs started in the same second (concurrent drills appending to one
    // history) must not share an id
    format!(
        "{}-{:08x}",
        at.format("%Y%m%dT%H%M%SZ"),
        h.finish() & 0xffff_ffff
    )
}

impl Run<'_> {
    /// Undoes one thing a step created, as a cleanup record.
    async fn undo_one(
        &self,
        undo: &crate::steps::Undo,
        cancel: &Cancel,
        observer: &dyn Observer,
    ) -> StepRecord {
        let mut rec = StepRecord::new(
            format!("{}:undo", undo.step()),
            undo.title().to_owned(),
            crate::record::UNDO_KIND.into(),
            false,
        );
        if cancel.is_cancelled() {
            rec.note = Some("cleanup aborted by a second interrupt".into());
            return rec;
        }
        rec.started_at = Some(self.now());
        rec.attempts = 1;
        observer.undo_started(&rec);
        let clock = tokio::time::Instant::now();
        let result = tokio::select! {
            r = undo.run() => r,
            () = cancel.cancelled() => Err(StepError::cancelled()),
        };
        rec.duration_ms = Some(u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX));
        let rec = match result {
            Ok(()) => {
                rec.status = StepStatus::Passed;
                rec
            }
            Err(e) => self.fail(rec, e),
        };
        observer.undo_finished(&rec);
        rec
    }

    /// The run's start plus monotonic time elapsed since.
    fn now(&self) -> chrono::DateTime<Utc> {
        self.started_at + chrono::Duration::from_std(self.clock.elapsed()).unwrap_or_default()
    }

    async fn run_step(&mut self, step: &Step, cancel: &Cancel, cleanup: bool) -> StepRecord {
        let mut rec = pending(step);
        // cleanup steps that read outputs of steps that never produced any are skipped
        if cleanup {
            if let Some(missing) = step
                .needs
                .iter()
                .find(|id| !self.vars.steps.contains_key(*id))
            {
                rec.status = StepStatus::Skipped;
                rec.note = Some(format!(
                    "step `{missing}` did not pass, so there is nothing of it to clean up"
                ));
                return rec;
            }
        }
        if let Some(when) = &step.when {
            match crate::template::eval(&self.templates, when, &self.vars.context(None)) {
                Ok(v) if v.is_true() => {}
                Ok(_) => {
                    rec.status = StepStatus::Skipped;
                    rec.note = Some(format!("`when: {when}` is false"));
                    return rec;
                }
                Err(e) => {
                    return self.fail(
                        rec,
                        StepError::failed(format!(
                            "cannot evaluate `when: {when}`: {}",
                            crate::template::describe_error(&e)
                        )),
                    )
                }
            }
        }
        rec.started_at = Some(self.now());
        let clock = tokio::time::Instant::now();
        let result = self.attempts(step, cancel, &mut rec).await;
        rec.duration_ms = Some(u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX));
        match result {
            Ok(outputs) => {
                rec.status = StepStatus::Passed;
                rec.outputs = self.redact_outputs(&outputs);
                self.vars
                    .steps
                    .insert(step.id.clone(), Value::Object(outputs));
                rec
            }
            Err(e) => {
                // a failed step's partial outputs are recorded but not readable by later steps
                self.fail(rec, e)
            }
        }
    }

    fn fail(&self, mut rec: StepRecord, e: StepError) -> StepRecord {
        rec.status = match e.class {
            ErrorClass::Timeout => StepStatus::TimedOut,
            ErrorClass::Cancelled => StepStatus::Cancelled,
            ErrorClass::Failed | ErrorClass::Unavailable => StepStatus::Failed,
        };
        rec.outputs = self.redact_outputs(&e.outputs);
        rec.error = Some(self.redactor.redact(&e.message));
        rec.error_class = Some(e.class);
        rec
    }

    fn redact_outputs(&self, outputs: &Outputs) -> Outputs {
        outputs
            .iter()
            .map(|(k, v)| (k.clone(), self.redactor.redact_json(v)))
            .collect()
    }

    /// Approval, rendering, then attempts under the step's timeout with backoff between them.
    async fn attempts(
        &mut self,
        step: &Step,
        cancel: &Cancel,
        rec: &mut StepRecord,
    ) -> Result<Outputs, StepError> {
        if rec.destructive {
            self.approve(step, cancel).await?;
        }
        let kind = self.render(step)?;
        let (attempts, mut backoff) = match step.retries {
            Some(r) => (r.attempts.max(1), r.backoff.std()),
            None => (1, std::time::Duration::ZERO),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            rec.attempts = attempt;
            let result = self.attempt(step, &kind, cancel, attempt).await;
            match result {
                Err(e) if attempt < attempts && !matches!(e.class, ErrorClass::Cancelled) => {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = cancel.cancelled() => return Err(StepError::cancelled()),
                    }
                    backoff = backoff.saturating_mul(2);
                }
                other => return other,
            }
        }
    }

    async fn attempt(
        &self,
        step: &Step,
        kind: &StepKind,
        cancel: &Cancel,
        attempt: u32,
    ) -> Result<Outputs, StepError> {
        let vars = self.vars.context(None);
        let cx = StepCx {
            runbook: self.runbook,
            step_id: &step.id,
            step_title: step.display_title(),
            vars: &vars,
            templates: &self.templates,
            cancel,
            interaction: self.interaction,
            operator: &self.opts.operator,
            redactor: &self.redactor,
            undo: &self.undo,
            attempt,
            history: self.opts.history.as_deref(),
            approvals: &self.approvals,
            memo: self.opts.memo.as_ref(),
        };
        let work = crate::steps::run(kind, &cx);
        let limited = async {
            match step.timeout {
                Some(limit) => tokio::time::timeout(limit.std(), work)
                    .await
                    .unwrap_or_else(|_| {
                        Err(StepError {
                            class: ErrorClass::Timeout,
                            message: format!("step `{}` timed out after {limit}", step.id),
                            outputs: Outputs::new(),
                        })
                    }),
                None => work.await,
            }
        };
        let result = tokio::select! {
            r = limited => r,
            () = cancel.cancelled() => Err(StepError::cancelled()),
        };
        // a step ended early: its commands are being stopped; the record (and so the next
        // attempt, step or cleanup) waits until they have
        if let Err(e) = &result {
            if matches!(e.class, ErrorClass::Timeout | ErrorClass::Cancelled) {
                crate::steps::shell::end_stopped(&cancel.for_cleanup()).await;
            }
        }
        result
    }

    /// Destructive steps need a yes: `--yes`, or the operator at a terminal.
    async fn approve(&mut self, step: &Step, cancel: &Cancel) -> Result<(), StepError> {
        let target = step
            .kind
            .target()
            .map(|t| format!(" on target `{t}`"))
            .unwrap_or_default();
        let question = self.redactor.redact(&format!(
            "step `{}` ({}) is destructive{target}: {}. Proceed?",
            step.id,
            step.kind.name(),
            step.kind.summary()
        ));
        let what = format!("destructive step `{}` needs approval", step.id);
        let via = match ask_operator(self.interaction, question.clone(), &what, cancel).await? {
            Answer::Yes(via) => via,
            Answer::No => {
                return Err(StepError::failed(format!(
                    "operator declined destructive step `{}`",
                    step.id
                )))
            }
        };
        record_approval(
            &self.approvals,
            &step.id,
            &self.opts.operator,
            via,
            question,
        );
        Ok(())
    }

    /// Renders the step's templates with the current context and decodes the kind again.
    fn render(&self, step: &Step) -> Result<StepKind, StepError> {
        render_kind(step, &self.templates, &self.vars.context(None), false)
    }
}

/// The step's payload with its templates rendered with `ctx`, decoded again. `lenient`
/// (for `plan`) keeps a template that cannot be rendered yet as written.
pub(super) fn render_kind(
    step: &Step,
    templates: &minijinja::Environment<'static>,
    ctx: &minijinja::Value,
    lenient: bool,
) -> Result<StepKind, StepError> {
    let name = step.kind.name();
    let root = crate::diagnostic::YamlPath::default();
    let rendered = crate::kind::map_strings(
        name,
        &step.payload,
        &root,
        &mut |path, text, form| match form {
            Form::Template if crate::template::is_template(text) => {
                match crate::template::render(templates, text, ctx) {
                    Ok(v) => serde_json::to_value(&v)
                        .map_err(|e| StepError::failed(format!("cannot use `{path}`: {e}"))),
                    Err(_) if lenient => Ok(Value::String(crate::template::render_known(
                        templates, text, ctx,
                    ))),
                    Err(e) => Err(StepError::failed(format!(
                        "cannot render `{path}` of step `{}`: {}",
                        step.id,
                        crate::template::describe_error(&e)
                    ))),
                }
            }
            _ => Ok(Value::String(text.to_owned())),
        },
    )?;
    let mut m = Map::new();
    m.insert(name.to_owned(), rendered);
    serde_json::from_value(Value::Object(m)).map_err(|e| {
        StepError::failed(format!(
            "step `{}` after rendering its templates: {e}",
            step.id
        ))
    })
}

/// What `plan` shows a step will do: its summary with every template whose values are
/// known before the run rendered — params (secret ones masked), the environment variables
/// that are set and do not look secret, `now`. The others (earlier steps' outputs, `run`)
/// stay as written.
pub fn preview(
    runbook: &Runbook,
    procedure: &Procedure,
    step: &Step,
    params: &Map<String, Value>,
    now: chrono::DateTime<Utc>,
) -> String {
    let redactor = redactor(runbook, procedure, params);
    let params: Map<String, Value> = params
        .iter()
        .map(|(k, v)| {
            let secret = procedure.params.get(k).is_some_and(|p| p.secret);
            (
                k.clone(),
                if secret {
                    Value::from(crate::redact::MASK)
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    let env: Map<String, Value> = step
        .env
        .iter()
        .filter(|name| !crate::redact::is_secret_name(name) && !runbook.secrets.contains(name))
        .filter_map(|name| Some((name.clone(), Value::String(std::env::var(name).ok()?))))
        .collect();
    let ctx = minijinja::Value::from_serialize(serde_json::json!({
        "params": params,
        "env": env,
        "now": crate::timestamp::rfc3339(now),
    }));
    let templates = crate::template::environment();
    redactor.redact(&match render_kind(step, &templates, &ctx, true) {
        Ok(kind) => kind.summary(),
        Err(_) => step.kind.summary(),
    })
}

/// RTO: from the start of the `rto: start` step (default the first) to the end of the
/// `rto: end` step (default the last), compared with the objective.
fn measure_rto(runbook: &Runbook, procedure: &Procedure, steps: &[StepRecord]) -> RtoRecord {
    let from = procedure
        .steps
        .iter()
        .position(|s| s.rto == Some(RtoMark::Start))
        .unwrap_or(0);
    let to = procedure
        .steps
        .iter()
        .position(|s| s.rto == Some(RtoMark::End))
        .unwrap_or(procedure.steps.len().saturating_sub(1));
    let start = steps.get(from).and_then(|s| s.started_at);
    let end = steps
        .get(to)
        .filter(|s| s.status == StepStatus::Passed)
        .and_then(StepRecord::finished_at);
    let measured_ms = match (start, end) {
        (Some(a), Some(b)) => u64::try_from((b - a).num_milliseconds()).ok(),
        _ => None,
    };
    let objective = runbook.objectives.rto;
    let met = match (measured_ms, objective) {
        (Some(ms), Some(obj)) => Some(u128::from(ms) <= obj.std().as_millis()),
        _ => None,
    };
    RtoRecord {
        measured_ms,
        objective,
        met,
        from_step: procedure
            .steps
            .get(from)
            .map(|s| s.id.clone())
            .unwrap_or_default(),
        to_step: procedure
            .steps
            .get(to)
            .map(|s| s.id.clone())
            .unwrap_or_default(),
    }
}

/// The RPO as the last step that verifies a recovery point (`freshness`) observed it; with
/// an objective and no such observation, the objective alone.
fn observed_rpo(
    runbook: &Runbook,
    procedure: &Procedure,
    steps: &[StepRecord],
) -> Option<RpoRecord> {
    let found = procedure.steps.iter().zip(steps).rev().find(|(s, rec)| {
        s.kind.effects().verifies == Some(Verifies::RecoveryPoint)
            && rec.outputs.contains_key("recovery_point")
    });
    let Some((_, step)) = found else {
        // nothing measured it (the run stopped before, or the procedure has no such step):
        // the objective still stands, unmet or not
        return runbook.objectives.rpo.map(|objective| RpoRecord {
            recovery_point: None,
            target: None,
            data_loss_window_ms: None,
            objective: Some(objective),
            met: None,
        });
    };
    let time = |k: &str| {
        step.outputs
            .get(k)
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let window = step
        .outputs
        .get("data_loss_window_ms")
        .and_then(Value::as_u64);
    let objective = runbook.objectives.rpo;
    let met = match (window, objective) {
        _ if step.status != StepStatus::Passed => Some(false),
        (Some(w), Some(o)) => Some(u128::from(w) <= o.std().as_millis()),
        _ => None,
    };
    Some(RpoRecord {
        recovery_point: time("recovery_point"),
        target: time("target"),
        data_loss_window_ms: window,
        objective,
        met,
    })
}

fn verdict(record: &DrillRecord, cancel: &Cancel) -> (Verdict, Option<String>) {
    if cancel.is_cancelled() {
        let cleanup = if cancel.level() >= 2 {
            "cleanup aborted by a second interrupt"
        } else {
            "cleanup ran"
        };
        return (
            Verdict::Interrupted,
            Some(format!("interrupted; {cleanup}")),
        );
    }
    if let Some(bad) = record.preflight.iter().find(|i| !i.ok) {
        let verdict = if bad.error_class == Some(ErrorClass::Unavailable) {
            Verdict::Error
        } else {
            Verdict::Failed
        };
        return (
            verdict,
            Some(format!("preflight: step `{}`: {}", bad.step, bad.detail)),
        );
    }
    let failed = |recs: &[StepRecord]| recs.iter().find(|s| is_failure(s.status)).cloned();
    if let Some(s) = record
        .steps
        .iter()
        .find(|s| s.error_class == Some(ErrorClass::Unavailable))
    {
        return (
            Verdict::Error,
            Some(format!(
                "step `{}` could not run: {}",
                s.id,
                s.error.clone().unwrap_or_default()
            )),
        );
    }
    if let Some(s) = failed(&record.steps) {
        return (
            Verdict::Failed,
            Some(format!(
                "step `{}` {}: {}",
                s.id,
                s.status.symbol().to_lowercase(),
                s.error.unwrap_or_default()
            )),
        );
    }
    if let Some(s) = failed(&record.cleanup) {
        return (
            Verdict::Failed,
            Some(format!(
                "cleanup step `{}` failed: {}",
                s.id,
                s.error.unwrap_or_default()
            )),
        );
    }
    if let Some(rto) = &record.rto {
        if let (Some(false), Some(ms), Some(obj)) = (rto.met, rto.measured_ms, rto.objective) {
            let measured = crate::duration::human(std::time::Duration::from_millis(ms));
            return (
                Verdict::Failed,
                Some(format!("RTO {measured} exceeds the objective of {obj}")),
            );
        }
    }
    (Verdict::Passed, None)
}
