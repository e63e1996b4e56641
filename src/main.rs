use std::process::ExitCode;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drillbook: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let code = runtime.block_on(drillbook::cli::run(std::env::args_os()));
    // a prompt may still be blocked reading stdin: do not wait for it
    runtime.shutdown_background();
    ExitCode::from(code)
}
