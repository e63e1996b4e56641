//! drillbook: database backup and recovery runbooks as code. One YAML runbook per database
//! declares its recovery procedures, the checks that prove a restore is good, its backup
//! policy and health checks; drillbook runs them, measures RTO and RPO, and records every
//! run as data.
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap), one file per subcommand; the only user of `anyhow`.
//! - [`runbook`]: the YAML format: loading with positions, validation that reports every
//!   problem at once, the resolved model, and its JSON Schema.
//! - [`engine`]: runs a procedure: params, templates, timeouts, retries, cancellation,
//!   cleanup, RTO, and the [`record::DrillRecord`] it produces.
//! - [`steps`]: the closed set of step kinds, one file per family.
//! - [`neon`]: the Neon API v2 client: retries, operation polling, lenient types.
//! - [`diagnostic`]: places, caret snippets and "did you mean" for user-facing errors.
//! - [`template`]: the minijinja environment (strict undefined) shared by validation and runs.
//! - [`cron`], [`duration`], [`timestamp`]: the value types runbooks are written in.

pub mod cancel;

pub mod cli;
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
pub mod record;
pub mod redact;
pub mod render;
pub mod runbook;
pub mod steps;
pub mod template;
pub mod timestamp;
