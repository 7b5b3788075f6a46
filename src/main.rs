//! Entry point: parse arguments, run, print any error chain with `{:#}`.

use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: a review makes a few hundred short-lived
/// allocations (about 290 in the core alone for the 20 KB job pod) on whichever worker
/// thread runs it (BENCHMARKS.md, "The allocator").
/// The binary and the core's bench and profiler (`crates/core/benches/core.rs`,
/// `crates/core/examples/core_profile.rs`, so they measure what the server runs) use it; the tests
/// run on the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match ci_pod_webhook::cli::run() {
        Ok(code) => code,
        // `… | head`: the reader has what it wanted; nothing went wrong here.
        Err(e) if ci_pod_webhook::cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
