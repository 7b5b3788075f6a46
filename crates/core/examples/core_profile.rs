//! Runs one bench case of `benches/core.rs` N times, for instruction counts that do not
//! depend on the machine's load:
//!
//! ```sh
//! cargo build --release --example core_profile
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.a target/release/examples/core_profile a 1000
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.0 target/release/examples/core_profile a 0
//! ```
//!
//! (total instructions of the first − the second) / 1000 = instructions per review.
//! Cases: `a` job pod mutated, `b` not opted in, `c` small non-job pod, `d` GPU pod with
//! overrides, `e` the job pod's size but not a job pod, `f` the job pod as an UPDATE.

#[path = "../benches/cases/mod.rs"]
mod cases;

/// The server's allocator (see `src/main.rs`), so the counts are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "a".to_string());
    let n: u64 = args.next().map_or(1000, |n| n.parse().expect("a count"));
    let cases = cases::Cases::new();
    cases.check();
    let case = cases
        .cases
        .iter()
        .find(|c| c.name.starts_with(&which))
        .expect("a case: a, b, c, d, e or f");
    let mut bytes = 0;
    for _ in 0..n {
        bytes += cases.respond(case, black_box(&case.body)).len();
    }
    println!(
        "{} ({} bytes in) x{n}: {bytes} bytes out",
        case.name,
        case.body.len()
    );
}
