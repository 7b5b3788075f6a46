//! The whole request path without the network: the bytes of an AdmissionReview in, the
//! bytes of the response out (parse, decide, patch, serialise), as the server runs it.
//! The cases are in `cases/mod.rs`; BENCHMARKS.md has the figures. The `stages` group
//! splits the two mutated cases into reading the review (the single pass, pod
//! included) and what follows it (decide, patch, encode), to show which of the two a
//! faster JSON reader could shorten.

mod cases;

/// The server's allocator (see `src/main.rs`), so the figures are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use ci_pod_webhook_core::answer::Outcome;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let cases = cases::Cases::new();
    cases.check();
    let mut group = c.benchmark_group("review");
    for case in &cases.cases {
        group.throughput(Throughput::Bytes(case.body.len() as u64));
        group.bench_function(case.name, |b| {
            b.iter(|| cases.respond(case, black_box(&case.body)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("stages");
    for case in cases.cases.iter().filter(|c| c.outcome == Outcome::Mutated) {
        group.bench_function(format!("{}/read", case.name), |b| {
            b.iter(|| cases.read(case, black_box(&case.body)))
        });
        let review = cases.read(case, &case.body);
        group.bench_function(format!("{}/decide_and_encode", case.name), |b| {
            b.iter(|| cases.decide_and_encode(case, black_box(&review)))
        });
    }
    group.finish();
}

criterion_group!(core, benches);
criterion_main!(core);
