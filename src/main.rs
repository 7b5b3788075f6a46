//! Entry point: parse arguments, run, print any error chain with `{:#}`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match ci_pod_webhook::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
