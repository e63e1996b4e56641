//! The command line: clap derive, one file per subcommand. Every subcommand returns its exit
//! code; errors are printed once, with their cause chain, here.

/// `eprintln!` with the line's control characters made visible ([`crate::controls::visible`]):
/// messages quote errors, step output and runbook text, none of which may act on the
/// operator's terminal. Every line the command line writes to stderr goes through it.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::err(&format!("{}\n", format_args!($($arg)*)))
    };
}

mod check;
pub mod daemon;
mod gc;
mod history;
mod plan;
mod render;
mod run;
mod schedule;
mod schema;
mod status;
mod terminal;
mod validate;

use std::ffi::OsString;

use clap::{Parser, Subcommand, ValueEnum};

/// Database backup and recovery runbooks as code: drills that run, prove themselves and
/// document themselves.
#[derive(Debug, Parser)]
#[command(name = "drillbook", version, about, propagate_version = true)]
#[command(
    after_help = "Examples:\n  drillbook validate runbooks/*.yaml\n  drillbook plan runbooks/hello.yaml smoke\n  drillbook run runbooks/hello.yaml smoke --format json\n  drillbook history list --since now-30d"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Validate(validate::Args),
    Plan(plan::Args),
    Run(run::Args),
    Check(check::Args),
    Schedule(schedule::Args),
    Status(status::Args),
    Daemon(daemon::Args),
    Render(render::Args),
    History(history::Args),
    Gc(gc::Args),
    Schema(schema::Args),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Exit codes shared by every subcommand (the table in the README).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const UNAVAILABLE: u8 = 3;
}

/// Parses `args` and runs the subcommand; returns the process exit code.
pub async fn run(args: impl IntoIterator<Item = OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // an error quotes the argument it refuses: printed plain, its control characters
        // made visible; help and the version are clap's own text
        Err(e) if e.use_stderr() => {
            err(&e.render().to_string());
            return exit::INVALID;
        }
        Err(e) => {
            let _ = e.print();
            return exit::OK;
        }
    };
    let result = match cli.command {
        Command::Validate(a) => validate::run(&a),
        Command::Plan(a) => plan::run(&a).await,
        Command::Run(a) => run::run(&a).await,
        Command::Check(a) => check::run(&a).await,
        Command::Schedule(a) => schedule::run(&a).await,
        Command::Status(a) => status::run(&a).await,
        Command::Daemon(a) => daemon::run(&a).await,
        Command::Render(a) => render::run(&a).await,
        Command::History(a) => history::run(&a).await,
        Command::Gc(a) => gc::run(&a).await,
        Command::Schema(a) => schema::run(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            say!("drillbook: error: {e:#}");
            exit::UNAVAILABLE
        }
    }
}

/// The runbook, procedure and params that `plan` and `run` both take.
#[derive(Debug, clap::Args)]
pub struct ProcedureArgs {
    /// Runbook file.
    runbook: String,
    /// Procedure id.
    procedure: String,
    /// Set a param: `--param target_time=now-2h` (repeatable).
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE", value_parser = parse_kv)]
    params: Vec<(String, String)>,
}

/// Parses `k=v`.
pub(super) fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, found `{s}`")),
    }
}

/// Loads a runbook, printing every diagnostic on failure (and warnings on success).
fn load(path: &str) -> Option<crate::runbook::Runbook> {
    match crate::runbook::load_file(path) {
        Ok(rb) => {
            for w in &rb.warnings {
                err(&w.render(
                    path,
                    crate::runbook::without_bom(&std::fs::read_to_string(path).unwrap_or_default()),
                ));
            }
            Some(rb)
        }
        Err(e) => {
            say!("{e}");
            None
        }
    }
}

/// Writes text to stdout, its control characters made visible ([`crate::controls::visible`]);
/// a closed pipe (`| head`) is not an error worth a message.
fn out(text: &str) {
    write_out(&crate::controls::visible(text));
}

/// Writes `value` to stdout as pretty JSON, with no byte a terminal acts on
/// ([`crate::controls::visible_json`]: the same value).
fn out_json(value: &impl serde::Serialize) -> Result<(), serde_json::Error> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    write_out(&crate::controls::visible_json(&text));
    Ok(())
}

fn write_out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Writes text to stderr, its control characters made visible; what `say!` calls.
fn err(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr()
        .lock()
        .write_all(crate::controls::visible(text).as_bytes());
}
