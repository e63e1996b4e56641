//! A backup tool's output read as it comes: every line of stdout and stderr is kept, and the
//! newest is shown on the step's progress indicator (hidden unless the operator's terminal
//! draws it), so a long `pgbackrest restore` or `barman recover` says what it is doing.

use std::process::{ExitStatus, Output};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::progress::Progress;

/// Waits for `child` (spawned with piped stdout and stderr), showing each line on
/// `progress`, through `redact` first; what it wrote is returned whole, as
/// `wait_with_output` would.
pub async fn output_showing(
    mut child: tokio::process::Child,
    progress: &Progress,
    redact: &(dyn Fn(&str) -> String + Sync),
) -> std::io::Result<Output> {
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (out, err, status) = tokio::join!(
        lines(stdout, progress, redact),
        lines(stderr, progress, redact),
        child.wait()
    );
    let status: ExitStatus = status?;
    Ok(Output {
        status,
        stdout: out?,
        stderr: err?,
    })
}

/// Everything `stream` says, line by line, each shown as it arrives.
async fn lines(
    stream: Option<impl AsyncRead + Unpin>,
    progress: &Progress,
    redact: &(dyn Fn(&str) -> String + Sync),
) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    let Some(stream) = stream else {
        return Ok(all);
    };
    let mut reader = BufReader::new(stream);
    loop {
        let start = all.len();
        if reader.read_until(b'\n', &mut all).await? == 0 {
            return Ok(all);
        }
        if !progress.is_hidden() {
            let line = String::from_utf8_lossy(&all[start..]);
            progress.message(&redact(line.trim_end()));
        }
    }
}
