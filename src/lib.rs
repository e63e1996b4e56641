//! drillbook: database backup and recovery runbooks as code. One YAML runbook per database
//! declares its recovery procedures, the checks that prove a restore is good, its backup
//! policy and health checks; drillbook runs them, measures RTO and RPO, and records every
//! run as data.
//!
//! # Layout
//!
//! The modules form layers; each imports only lower layers (`tests/it/architecture.rs` holds
//! the table and fails on any other import). Lowest first:
//!
//! 1. Utilities: [`cancel`] (the run's two-level interrupt signal, boxed futures),
//!    [`controls`] (control characters made visible in what reaches a terminal or a
//!    document), [`hex`], [`http`] (the shared HTTP client, percent-encoding), [`progress`]
//!    (progress bars of long work at the operator's terminal), [`redact`] (secrets and
//!    passwords masked in every text that leaves the process).
//! 2. Value types runbooks are written in: [`duration`], [`timestamp`], [`cron`],
//!    [`diagnostic`] (places, caret snippets, "did you mean", the path of a value in a
//!    runbook), [`template`] (the minijinja environment, strict undefined).
//! 3. [`kind`]: the step kinds as data: each payload and what it declares (outputs, measure,
//!    effects), and the one list that names them.
//! 4. [`runbook`]: the YAML format: loading with positions (the only user of the YAML crate),
//!    validation that reports every problem at once, the resolved model, its JSON Schema.
//! 5. [`record`]: the persisted contract: `DrillRecord` and its parts.
//! 6. Clients: [`pg`] (connections, TLS, local clusters), [`neon`] (the Neon API v2 client:
//!    retries, operation polling, lenient types).
//! 7. [`history`] (the hash-chained drill history) and [`notify`] (alerts and heartbeats).
//! 8. [`steps`] (running each kind, cleanup through undo) and [`render`] (documents through
//!    templates: the runbook document, drill logs, JUnit, HTML, Prometheus text).
//! 9. [`engine`]: runs a procedure or the checks: params, templates, timeouts, retries,
//!    cancellation, cleanup, RTO, the record; then alerts, history and drill log.
//! 10. Entry points: [`daemon`] (schedules and its HTTP endpoints) and [`cli`] (the command
//!     line, one file per subcommand: parsing, printing and exit codes; the only user of
//!     `anyhow`).

pub mod cancel;
pub mod cli;
pub mod controls;
pub mod cron;
pub mod daemon;
pub mod diagnostic;
pub mod duration;
pub mod engine;
pub mod hex;
pub mod history;
pub mod http;
pub mod kind;
pub mod neon;
pub mod notify;
pub mod pg;
pub mod progress;
pub mod record;
pub mod redact;
pub mod render;
pub mod runbook;
pub mod steps;
pub mod template;
pub mod timestamp;
