//! Running step kinds. Each kind's payload (in `kind/`) implements [`Run`] in the file of its
//! family here; [`run`] dispatches on the one list of kinds (`kind::each_kind!`), so a kind
//! without a `Run` does not compile. Also here: what a running step may use ([`StepCx`]),
//! how it fails ([`StepError`]), what it leaves to undo ([`Undo`]), and the operator seam
//! ([`Interaction`]).

pub mod assert;
pub mod barman;
pub mod canary;
pub mod compare;
pub mod db;
pub mod freshness;
pub mod history;
pub mod http;
pub mod ledger;
pub mod local;
pub mod manual;
pub mod neon;
pub mod output;
pub mod shared;
pub mod shell;
pub mod sql;
pub mod wait;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use chrono::Utc;

use crate::cancel::{BoxFuture, Cancel};
use crate::kind::StepKind;
use crate::record::{Approval, ErrorClass, Outputs};
use crate::runbook::Runbook;

/// Running a kind's payload (rendered: its templates already hold the run's values).
pub trait Run {
    fn run<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
    ) -> impl Future<Output = Result<Outputs, StepError>> + Send + 'a;
}

macro_rules! dispatch {
    ($($variant:ident($name:literal) => $spec:ty),+ $(,)?) => {
        /// Runs a kind. Boxed because `wait` runs a kind inside itself.
        fn run_kind<'a>(kind: &'a StepKind, cx: &'a StepCx<'a>) -> BoxFuture<'a, Result<Outputs, StepError>> {
            match kind {
                $(StepKind::$variant(s) => Box::pin(Run::run(s, cx))),+
            }
        }
    };
}

crate::kind::each_kind!(dispatch);

/// Runs a step of any kind. A panic inside it (a bug) fails the step as *unavailable*,
/// "internal error in step `x`", instead of ending the process: the run still undoes what
/// its steps created, runs its cleanup and is recorded, with exit code 3.
pub async fn run<'a>(kind: &'a StepKind, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
    CatchPanic(run_kind(kind, cx))
        .await
        .unwrap_or_else(|panic| {
            Err(StepError::unavailable(format!(
                "internal error in step `{}`: {panic} (a bug in drillbook: please report it)",
                cx.step_id
            )))
        })
}

/// A future whose panic, while it is polled, is caught and returned as its message.
struct CatchPanic<'a, T>(BoxFuture<'a, T>);

impl<T> Future for CatchPanic<'_, T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        // unwind safety: after a panic the future is never polled again, only dropped
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".to_owned())
}

/// Why a step did not pass. The class decides the run's exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub class: ErrorClass,
    pub message: String,
    /// Outputs gathered before the failure (e.g. a command's exit code and stderr).
    pub outputs: Outputs,
}

impl StepError {
    pub fn failed(message: impl Into<String>) -> StepError {
        StepError {
            class: ErrorClass::Failed,
            message: message.into(),
            outputs: Outputs::new(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> StepError {
        StepError {
            class: ErrorClass::Unavailable,
            message: message.into(),
            outputs: Outputs::new(),
        }
    }

    pub fn cancelled() -> StepError {
        StepError {
            class: ErrorClass::Cancelled,
            message: "interrupted".into(),
            outputs: Outputs::new(),
        }
    }

    pub fn with_outputs(mut self, outputs: Outputs) -> StepError {
        self.outputs = outputs;
        self
    }
}

impl From<crate::pg::ConnectError> for StepError {
    fn from(e: crate::pg::ConnectError) -> StepError {
        StepError::unavailable(e.to_string())
    }
}

impl From<crate::neon::NeonError> for StepError {
    fn from(e: crate::neon::NeonError) -> StepError {
        let hint = match e.status() {
            Some(401) => " — NEON_API_KEY was refused: check that it is current and has access to this project",
            Some(403) => " — the API key has no access to this project or action",
            _ => "",
        };
        let message = format!("{e}{hint}");
        if e.is_unavailable() {
            StepError::unavailable(message)
        } else {
            StepError::failed(message)
        }
    }
}

/// What a running step may use.
pub struct StepCx<'a> {
    pub runbook: &'a Runbook,
    pub step_id: &'a str,
    /// The step's title (its id when it has none).
    pub step_title: &'a str,
    /// The template context at this point of the run (params, env, steps, run, now).
    pub vars: &'a minijinja::Value,
    pub templates: &'a minijinja::Environment<'static>,
    pub cancel: &'a Cancel,
    pub interaction: &'a dyn Interaction,
    pub operator: &'a str,
    /// Masks this run's secrets: anything a step shows or returns as text passes through it.
    pub redactor: &'a crate::redact::Redactor,
    /// Where a step registers what it created, the moment it exists, so the run undoes it
    /// on every path — even when the step itself is interrupted.
    pub undo: &'a ledger::Undos,
    /// Which attempt this is (1 for the first; more with `retries`).
    pub attempt: u32,
    /// The history store given on the command line (`history.*` kinds read it); None for
    /// `DRILLBOOK_HISTORY` or the default.
    pub history: Option<&'a str>,
    /// The run's approvals: only [`StepCx::confirm`] and the engine's own approval of
    /// destructive steps add to it.
    pub approvals: &'a Mutex<Vec<Approval>>,
    /// What the checks of one check run share (a tool's answer asked once); None in a drill.
    pub shared: Option<&'a shared::Shared>,
}

/// Something a step created that must not outlive the run. The engine undoes these after
/// the runbook's own cleanup steps, newest first, and records each as a cleanup step.
#[derive(Debug, Clone)]
pub enum Undo {
    /// Stop a local cluster drillbook started (if it runs) and remove its directory.
    Cluster {
        step: String,
        what: String,
        handle: crate::pg::cluster::ClusterHandle,
    },
    /// Remove a directory drillbook created.
    Dir {
        step: String,
        what: String,
        path: std::path::PathBuf,
    },
    /// Delete a Neon branch drillbook created: by id once known, else by its unique name
    /// (registered before the create request is sent).
    NeonBranch {
        step: String,
        what: String,
        project: String,
        name: String,
        id: std::sync::Arc<Mutex<Option<String>>>,
    },
    /// Run a `shell` step's `undo:` command.
    Shell {
        step: String,
        what: String,
        command: shell::UndoCommand,
    },
    /// Delete a Neon snapshot drillbook created (same rules as a branch).
    NeonSnapshot {
        step: String,
        what: String,
        project: String,
        name: String,
        id: std::sync::Arc<Mutex<Option<String>>>,
    },
}

impl Undo {
    pub fn step(&self) -> &str {
        match self {
            Undo::Cluster { step, .. }
            | Undo::Dir { step, .. }
            | Undo::Shell { step, .. }
            | Undo::NeonBranch { step, .. }
            | Undo::NeonSnapshot { step, .. } => step,
        }
    }

    pub fn title(&self) -> &str {
        match self {
            Undo::Cluster { what, .. }
            | Undo::Dir { what, .. }
            | Undo::Shell { what, .. }
            | Undo::NeonBranch { what, .. }
            | Undo::NeonSnapshot { what, .. } => what,
        }
    }

    /// Undoes it. A panic (a bug) fails this undo only: the others still run.
    pub async fn run(&self) -> Result<(), StepError> {
        CatchPanic(Box::pin(self.carry_out()))
            .await
            .unwrap_or_else(|panic| {
                Err(StepError::unavailable(format!(
                    "internal error undoing step `{}`: {panic} (a bug in drillbook: please report it)",
                    self.step()
                )))
            })
    }

    async fn carry_out(&self) -> Result<(), StepError> {
        match self {
            Undo::Cluster { handle, .. } => handle
                .stop_and_remove()
                .await
                .map_err(|e| StepError::failed(e.to_string())),
            Undo::Dir { path, .. } => match tokio::fs::remove_dir_all(path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StepError::failed(format!(
                    "cannot remove {}: {e}",
                    path.display()
                ))),
            },
            Undo::Shell { command, .. } => command.run(shell::UNDO_TIMEOUT).await,
            Undo::NeonBranch {
                project, name, id, ..
            } => neon::undo_branch(project, name, id).await,
            Undo::NeonSnapshot {
                project, name, id, ..
            } => neon::undo_snapshot(project, name, id).await,
        }
    }
}

impl StepCx<'_> {
    /// Registers something to undo at the end of the run.
    pub fn created(&self, undo: Undo) {
        self.undo.push(undo);
    }

    /// Asks the operator to confirm (`prompt`), granted in advance by `--yes`; a yes is
    /// recorded as an approval of this step, worded `question`. `what` names what needs the
    /// operator when nobody can answer.
    pub async fn confirm(
        &self,
        prompt: String,
        what: &str,
        question: String,
    ) -> Result<Answer, StepError> {
        let answer = ask_operator(self.interaction, prompt, what, self.cancel).await?;
        if let Answer::Yes(via) = answer {
            record_approval(self.approvals, self.step_id, self.operator, via, question);
        }
        Ok(answer)
    }

    /// The run's id (for naming scratch resources).
    pub fn run_id(&self) -> String {
        self.vars
            .get_attr("run")
            .and_then(|r| r.get_attr("id"))
            .map(|v| v.to_string())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for StepCx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepCx")
            .field("step_id", &self.step_id)
            .finish_non_exhaustive()
    }
}

/// The operator at the terminal: the seam tests replace.
pub trait Interaction: Send + Sync {
    /// `--yes` was given: confirmations are granted without asking.
    fn assume_yes(&self) -> bool;
    /// A person can answer (stdin and stderr are a terminal).
    fn is_interactive(&self) -> bool;
    /// Shows text to the operator (instructions, warnings).
    fn show(&self, text: &str);
    /// Asks a yes/no question; resolves to the answer.
    fn confirm(&self, question: String) -> BoxFuture<'static, std::io::Result<bool>>;
    /// A progress indicator for long work titled `what` (hidden unless the operator's
    /// terminal draws it).
    fn progress(&self, what: &str, unit: crate::progress::Unit) -> crate::progress::Progress {
        let _ = (what, unit);
        crate::progress::Progress::hidden()
    }
}

/// The operator's answer to a confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Granted, and how: `--yes` or `terminal`.
    Yes(&'static str),
    No,
}

/// Adds an approval to the run's record: `by` approved step `step` through `via`.
pub fn record_approval(
    approvals: &Mutex<Vec<Approval>>,
    step: &str,
    by: &str,
    via: &str,
    question: String,
) {
    approvals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Approval {
            step: step.to_owned(),
            by: by.to_owned(),
            via: via.to_owned(),
            at: Utc::now(),
            question,
        });
}

/// Asks for a confirmation: granted in advance by `--yes`, asked at a terminal, and refused
/// (as "could not run") when nobody can answer. `what` names what needs the operator, e.g.
/// "manual step `x` needs an operator".
pub async fn ask_operator(
    interaction: &dyn Interaction,
    question: String,
    what: &str,
    cancel: &Cancel,
) -> Result<Answer, StepError> {
    if interaction.assume_yes() {
        return Ok(Answer::Yes("--yes"));
    }
    if !interaction.is_interactive() {
        return Err(StepError::unavailable(format!(
            "{what}: run it in a terminal, or pass --yes to approve it in advance"
        )));
    }
    tokio::select! {
        answer = interaction.confirm(question) => match answer {
            Ok(true) => Ok(Answer::Yes("terminal")),
            Ok(false) => Ok(Answer::No),
            Err(e) => Err(StepError::unavailable(format!("cannot read the operator's answer: {e}"))),
        },
        () = cancel.cancelled() => Err(StepError::cancelled()),
    }
}
