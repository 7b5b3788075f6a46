//! What each JSON reader takes on one document, best of 7 rounds of N, in µs each:
//!
//! ```sh
//! cargo run --release -- ../../tests/fixtures/gitlab-runner-16.5-job-pod.json 20000
//! RUSTFLAGS="-C target-cpu=x86-64-v3" cargo run --release --target-dir target/v3 -- …
//! ```
//!
//! The document is read, then written compact (as the API server sends it) before it is
//! measured. The last two rows read it into ci-pod-webhook's own view of a pod
//! (`mutate::view::Pod`, what the single pass reads), through serde_json as the server
//! does and through sonic-rs for comparison. simd-json is built with its run-time
//! detection, so it uses AVX2 where the CPU has it, whatever the build flags.

use std::hint::black_box;
use std::time::Instant;

use ci_pod_webhook_core::mutate::view::Pod;
use serde::de::IgnoredAny;

/// ci-pod-webhook's allocator (see its `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn best(name: &str, n: u32, mut f: impl FnMut()) {
    let mut best = f64::MAX;
    for _ in 0..7 {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }
    println!("{name:<52} {best:>7.2} µs");
}

#[cfg(target_arch = "x86_64")]
fn avx2_on_this_cpu() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_on_this_cpu() -> bool {
    false
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), n) = (args.next(), args.next()) else {
        eprintln!("usage: json-candidates FILE.json [ROUNDS, default 20000]");
        std::process::exit(2);
    };
    let n = n
        .map_or(Ok(20_000), |n| {
            n.parse::<std::num::NonZeroU32>().map(|n| n.get())
        })
        .unwrap_or_else(|e| {
            eprintln!("ROUNDS must be a positive whole number: {e}");
            std::process::exit(2);
        });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("cannot read {path}: {e}");
        std::process::exit(2);
    });
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        eprintln!("{path} is not JSON: {e}");
        std::process::exit(2);
    });
    let doc = serde_json::to_string(&value).expect("a Value serialises");
    println!(
        "{} bytes; AVX2 on this CPU: {}; build targets AVX2: {}",
        doc.len(),
        avx2_on_this_cpu(),
        cfg!(target_feature = "avx2")
    );
    let bytes = doc.as_bytes();
    best("std::str::from_utf8 (UTF-8 only)", n, || {
        black_box(std::str::from_utf8(black_box(bytes)).is_ok());
    });
    best("simdutf8::basic::from_utf8 (UTF-8 only)", n, || {
        black_box(simdutf8::basic::from_utf8(black_box(bytes)).is_ok());
    });
    best("serde_json from_str::<IgnoredAny>", n, || {
        black_box(serde_json::from_str::<IgnoredAny>(black_box(&doc)).is_ok());
    });
    best(
        "serde_json from_str::<serde_json::Value>",
        (n / 4).max(1),
        || {
            black_box(serde_json::from_str::<serde_json::Value>(black_box(&doc)).is_ok());
        },
    );
    best("sonic-rs from_str::<IgnoredAny>", n, || {
        black_box(sonic_rs::from_str::<IgnoredAny>(black_box(&doc)).is_ok());
    });
    best("sonic-rs from_str::<sonic_rs::Value>", n, || {
        black_box(sonic_rs::from_str::<sonic_rs::Value>(black_box(&doc)).is_ok());
    });
    best("sonic-rs from_str::<LazyValue>", n, || {
        black_box(sonic_rs::from_str::<sonic_rs::LazyValue>(black_box(&doc)).is_ok());
    });
    // simd-json parses in place: each round copies the document into a reused buffer.
    let mut buf = Vec::with_capacity(bytes.len());
    let mut buffers = simd_json::Buffers::new(bytes.len());
    best("simd-json to_tape (after a copy)", n, || {
        buf.clear();
        buf.extend_from_slice(bytes);
        black_box(
            simd_json::to_tape_with_buffers(&mut buf, &mut buffers)
                .map(|t| t.0.len())
                .ok(),
        );
    });
    best("simd-json to_borrowed_value (after a copy)", n, || {
        buf.clear();
        buf.extend_from_slice(bytes);
        black_box(simd_json::to_borrowed_value_with_buffers(&mut buf, &mut buffers).is_ok());
    });
    let check: Result<Pod, _> = serde_json::from_str(&doc);
    if let Err(e) = check {
        println!("(not a pod for ci-pod-webhook's view: {e}; its rows are left out)");
        return;
    }
    best(
        "serde_json from_str::<view::Pod> (the single pass's)",
        n,
        || {
            black_box(serde_json::from_str::<Pod>(black_box(&doc)).is_ok());
        },
    );
    best("sonic-rs from_str::<view::Pod>", n, || {
        black_box(sonic_rs::from_str::<Pod>(black_box(&doc)).is_ok());
    });
}
