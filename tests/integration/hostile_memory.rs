//! Memory after large hostile inputs returns to a plateau: no review leaves memory
//! behind. It runs alone in a process of its own (the test binary started again for this
//! one test), so that nothing else runs in the process while it reads the resident set
//! size from /proc/self/status.
//!
//! The bound, and why: the server and this test's client share the process, and the
//! inputs are built before the first reading. Six rounds of large inputs (1-3 MB each,
//! sent by four clients at once, half over HTTP/1.1 and half over HTTP/2) then run. The
//! first rounds warm up the allocator: glibc keeps freed memory in per-thread arenas
//! for reuse rather than giving it back, so RSS does not fall back to the pre-round
//! value, and which arena serves which request varies. What must hold is that later
//! rounds reuse that memory: the highest RSS after rounds 3-6 may exceed the highest
//! after rounds 1-2 by less than 32 MiB, while each round moves ~40 MB of request
//! bodies through the server. Keeping any request body, or a few KiB of every one of
//! the 96 reviews, would break it. The peak stays bounded too: with at most 4 large
//! requests at once, the 4 MiB body limit and the 1,000-container bound, it stays below
//! 256 MiB above the start (a single 4 MiB pod of 190,000 containers peaked at 0.5 GB
//! before that bound).

use std::time::Duration;

use crate::support::*;
use hyper::StatusCode;
use serde_json::{Value, json};

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

fn body(pod: Value) -> Vec<u8> {
    serde_json::to_vec(&pod_review("memory", "gitlab", pod)).expect("json")
}

/// The large inputs of hostile.rs, with the answer each must get.
fn inputs() -> Vec<(&'static str, Vec<u8>, StatusCode)> {
    let mb = "x".repeat(1 << 20);
    let mut big_allowed = job_pod();
    big_allowed["metadata"]["annotations"]["example.com/notes"] = json!(mb.clone());
    big_allowed["spec"]["containers"][0]["env"]
        .as_array_mut()
        .expect("env")
        .push(json!({"name": "BIG", "value": mb.clone()}));
    big_allowed["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .extend((1..=996).map(|i| json!({"name": format!("svc-{i}"), "image": "postgres"})));

    let mut many_containers = job_pod();
    many_containers["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .extend((1..=5_000).map(|i| json!({"name": format!("svc-{i}"), "image": "postgres"})));

    let mut many_annotations = job_pod();
    let annotations = many_annotations["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations");
    for i in 0..50_000 {
        annotations.insert(format!("ci.skao.int/{i}"), json!(""));
    }

    let mut big_override = job_pod();
    big_override["metadata"]["annotations"]["ci.skao.int/memory-limit"] = json!(mb.clone());

    let deep = {
        let mut pod = job_pod();
        pod["spec"]["x"] = json!("@@");
        let text = body(pod);
        let at = text
            .windows(4)
            .position(|w| w == b"\"@@\"")
            .expect("marker");
        let nested = [vec![b'['; 10_000], vec![b']'; 10_000]].concat();
        [&text[..at], &nested[..], &text[at + 4..]].concat()
    };
    let too_large = vec![b' '; (4 << 20) + 1];

    vec![
        (
            "1,000 containers, a 1 MB annotation and env",
            body(big_allowed),
            StatusCode::OK,
        ),
        ("5,000 containers", body(many_containers), StatusCode::OK),
        (
            "50,000 override annotations",
            body(many_annotations),
            StatusCode::OK,
        ),
        ("a 1 MB override value", body(big_override), StatusCode::OK),
        ("nesting 10,000 deep", deep, StatusCode::OK),
        ("4 MiB + 1 byte", too_large, StatusCode::PAYLOAD_TOO_LARGE),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_returns_to_a_plateau_after_rounds_of_large_inputs() {
    if !alone_in_a_process(
        module_path!(),
        "memory_returns_to_a_plateau_after_rounds_of_large_inputs",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |_| {}).await;
    let inputs = std::sync::Arc::new(inputs());
    let moved: usize = inputs.iter().map(|(_, b, _)| b.len()).sum();
    // A few normal reviews first: the server's steady state.
    for _ in 0..20 {
        let mut conn = client
            .connect(server.webhook, Protocol::Http1)
            .await
            .expect("connect");
        conn.review(&job_pod_review("warm", "gitlab", |_| {})).await;
    }
    let start = rss_kib("VmRSS");
    let clients = 4;
    let rounds: usize = std::env::var("HOSTILE_MEMORY_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6)
        .max(3);
    let mut after = Vec::new();
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (client, inputs, addr) = (client.clone(), inputs.clone(), server.webhook);
            tasks.push(tokio::spawn(async move {
                for (what, body, status) in inputs.iter() {
                    let protocol = if c % 2 == 0 {
                        Protocol::Http1
                    } else {
                        Protocol::Http2
                    };
                    let mut conn = client.connect(addr, protocol).await.expect("connect");
                    match conn.post("application/json", body.clone()).await {
                        Ok(reply) => {
                            assert_eq!(reply.status, *status, "{what}: {}", reply.text());
                        }
                        // Refused from its declared length, the body may still be on its
                        // way when the server closes the connection.
                        Err(_) if *status == StatusCode::PAYLOAD_TOO_LARGE => {}
                        Err(e) => panic!("{what}: {e}"),
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("a client failed");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss = rss_kib("VmRSS");
        eprintln!(
            "round {round}: {} MB of requests; RSS {rss} KiB ({:+} KiB from the start)",
            moved * clients / 1_000_000,
            rss as i64 - start as i64
        );
        after.push(rss);
    }
    let peak = rss_kib("VmHWM");
    eprintln!("start {start} KiB, peak {peak} KiB, after each round {after:?} KiB");
    assert_eq!(
        server.metric("ci_pod_webhook_buffered_request_bytes").await,
        0.0
    );
    assert_eq!(
        server.metric("ci_pod_webhook_in_flight_requests").await,
        0.0
    );
    let warm = after[..2].iter().max().copied().unwrap_or(start);
    let later = after[2..].iter().max().copied().unwrap_or(start);
    assert!(
        later.saturating_sub(warm) < 32 * 1024,
        "RSS kept growing after the first two rounds: {after:?} KiB"
    );
    assert!(
        peak - start < 256 * 1024,
        "peak {peak} KiB is more than 256 MiB above the start {start} KiB"
    );
}
