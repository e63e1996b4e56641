//! Running a procedure: params resolved, env checked, steps run in order under timeouts,
//! retries and one cancellation signal, cleanup always run, and everything written into a
//! [`crate::record::DrillRecord`]. A failing step is data in the record; the exit code is
//! derived from the record after cleanup. Also the health checks (`checks`), what follows a
//! run (`keep`: alerts, history, drill log) and the runbook as scheduled jobs (`jobs`).

pub mod checks;
mod context;
mod executor;
pub mod gc;
pub mod jobs;
mod keep;
pub mod preflight;
pub mod status;

pub use context::{operator, RunOptions};
pub use executor::{
    find_procedure, plan_params, preflight, preview, run, run_id as new_run_id, Observer, RunError,
};
pub use keep::{keep, notice, Kept};
