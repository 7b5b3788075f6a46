//! Under load nothing is lost: a steady stream of reviews from several concurrent
//! clients (HTTP/1.1 and HTTP/2, keep-alive, with fresh connections along the way)
//! while the certificate is rotated and the policy replaced (valid, invalid, valid)
//! through `..data` symlink swaps, and while the server drains. Zero failed reviews;
//! each new connection gets the certificate in force; each review is answered by one
//! whole policy; every review in flight at shutdown is answered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use ci_pod_webhook::certs;
use ci_pod_webhook_core::policy::{DEFAULT_POLICY_YAML, Policy};
use hyper::StatusCode;
use serde_json::Value;

fn allowed_with_patch(_: &Value, answer: &Value) -> Result<(), String> {
    let response = &answer["response"];
    if response["allowed"] != true || !response["patch"].is_string() {
        return Err(format!("not allowed with a patch: {response}"));
    }
    Ok(())
}

fn check_no_failures(stats: &[ClientStats], least: usize) -> usize {
    let (answered, failures) = totals(stats);
    assert!(
        failures.is_empty(),
        "{} failed reviews: {failures:#?}",
        failures.len()
    );
    assert!(answered >= least, "only {answered} reviews answered");
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotations_under_load_lose_no_review_and_new_connections_get_the_current_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    let generations: Vec<certs::Generated> = (0..6)
        .map(|i| certs::generate(&format!("gen{i}"), &names, 1).expect("generate"))
        .collect();
    let leaves: Vec<_> = generations.iter().map(|g| leaf_der(&g.tls_cert)).collect();
    let files = |cert: usize, key: usize| {
        [
            ("tls.crt", generations[cert].tls_cert.as_bytes().to_vec()),
            ("tls.key", generations[key].tls_key.as_bytes().to_vec()),
        ]
    };
    let publish = |volume: &mut VolumeDir, cert: usize, key: usize| {
        let f = files(cert, key);
        volume.publish(&[(f[0].0, &f[0].1[..]), (f[1].0, &f[1].1[..])]);
    };
    let first = files(0, 0);
    let mut volume = VolumeDir::new(
        &dir.path().join("secret"),
        &[(first[0].0, &first[0].1[..]), (first[1].0, &first[1].1[..])],
    );
    let server = Running::start(settings(&volume.path("tls.crt"), &volume.path("tls.key"))).await;
    let cas: Vec<&str> = generations.iter().map(|g| g.ca_cert.as_str()).collect();
    let client = Client::trusting(&cas);
    let fresh_leaf = || async {
        client
            .connect(server.webhook, Protocol::Http1)
            .await
            .expect("connect")
            .peer_cert
    };

    let load = Load::start(
        &client,
        server.webhook,
        LoadOptions {
            fresh_every: Some(5),
            ..LoadOptions::default()
        },
        Arc::new(|uid| job_pod_review(uid, "gitlab", |_| {})),
        Arc::new(allowed_with_patch),
    );
    load.wait_for(20).await;
    let mut failures = 0.0;
    for generation in 1..generations.len() {
        if generation == 3 {
            // A broken update (the previous key with the new certificate) is refused.
            publish(&mut volume, 3, 2);
            failures += 1.0;
            eventually("the mismatched pair is refused", || async {
                server
                    .metric(r#"ci_pod_webhook_certificate_reloads_total{result="failure"}"#)
                    .await
                    == failures
            })
            .await;
            assert_eq!(fresh_leaf().await, leaves[2], "the last good one stays");
            load.wait_for(20).await;
        }
        publish(&mut volume, generation, generation);
        eventually("the new certificate is loaded", || async {
            server
                .metric(r#"ci_pod_webhook_certificate_reloads_total{result="success"}"#)
                .await
                == generation as f64
        })
        .await;
        // From the moment it is loaded, every new connection gets it.
        for _ in 0..3 {
            let leaf = fresh_leaf().await;
            let got = leaves.iter().position(|l| *l == leaf);
            assert_eq!(got, Some(generation), "a new connection after the reload");
        }
        load.wait_for(20).await;
    }
    let stats = load.stop().await;
    let answered = check_no_failures(&stats, 20 * 7);
    // Each client's connections saw the generations in order, never an older one again.
    let mut seen = std::collections::BTreeSet::new();
    for (client, s) in stats.iter().enumerate() {
        let order: Vec<usize> = s
            .certificates
            .iter()
            .map(|c| {
                leaves
                    .iter()
                    .position(|l| l == c)
                    .expect("a known certificate")
            })
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] <= w[1]),
            "client {client}: {order:?}"
        );
        seen.extend(order);
    }
    assert!(seen.len() >= 4, "the load saw generations {seen:?}");
    eprintln!(
        "{answered} reviews during 5 rotations and 1 refused update; connections saw generations {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_replacements_under_load_answer_every_review_with_one_whole_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = DEFAULT_POLICY_YAML.to_string();
    // The default class's build limits, changed: 4 CPUs and 8Gi instead of 5 and 10Gi.
    let b = DEFAULT_POLICY_YAML.replacen(
        r#"limits: { cpu: "5", memory: 10Gi }"#,
        r#"limits: { cpu: "4", memory: 8Gi }"#,
        1,
    );
    assert_ne!(a, b);
    let invalid = "prefix: ci.skao.int\nclasses: {}\nunknownKey: 1\n";
    let hash = |text: &str| Policy::parse(text, "t").expect("valid").hash;
    let expected: Arc<BTreeMap<String, (&str, &str)>> = Arc::new(BTreeMap::from([
        (hash(&a), ("5", "10Gi")),
        (hash(&b), ("4", "8Gi")),
    ]));
    let mut volume = VolumeDir::new(&dir.path().join("policy"), &[("policy.yaml", a.as_bytes())]);
    let policy = volume.path("policy.yaml");
    let (server, client) =
        Running::with(&dir.path().join("tls"), |s| s.policy = Some(policy)).await;

    // The pod's build container has no resources: the class fills them all in.
    let review = |uid: &str| {
        job_pod_review(uid, "gitlab", |pod| {
            pod["spec"]["containers"][0]
                .as_object_mut()
                .expect("build")
                .remove("resources");
        })
    };
    let by_hash: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let check = {
        let (expected, by_hash) = (expected.clone(), by_hash.clone());
        move |review: &Value, answer: &Value| -> Result<(), String> {
            let hash = answer["response"]["auditAnnotations"]["policy"]
                .as_str()
                .ok_or("no policy audit annotation")?;
            let (cpu, memory) = expected.get(hash).ok_or(format!("unknown policy {hash}"))?;
            let pod = patched_pod(review, answer);
            let limits = &container(&pod, "build")["resources"]["limits"];
            if pod["metadata"]["annotations"]["ci.skao.int/policy"] != hash
                || limits["cpu"] != *cpu
                || limits["memory"] != *memory
            {
                return Err(format!("a mixed answer: policy {hash} with {pod}"));
            }
            *by_hash
                .lock()
                .expect("lock")
                .entry(hash.to_string())
                .or_default() += 1;
            Ok(())
        }
    };
    let load = Load::start(
        &client,
        server.webhook,
        LoadOptions {
            fresh_every: Some(10),
            ..LoadOptions::default()
        },
        Arc::new(review),
        Arc::new(check),
    );
    load.wait_for(20).await;
    let (mut successes, mut failures) = (0.0, 0.0);
    for (text, good) in [
        (b.as_str(), true),
        (invalid, false),
        (a.as_str(), true),
        (invalid, false),
        (b.as_str(), true),
        (a.as_str(), true),
        (b.as_str(), true),
    ] {
        volume.publish(&[("policy.yaml", text.as_bytes())]);
        let (series, count) = if good {
            successes += 1.0;
            (
                r#"ci_pod_webhook_policy_reloads_total{result="success"}"#,
                successes,
            )
        } else {
            failures += 1.0;
            (
                r#"ci_pod_webhook_policy_reloads_total{result="failure"}"#,
                failures,
            )
        };
        eventually("the policy file is looked at", || async {
            server.metric(series).await == count
        })
        .await;
        if good {
            // From the moment it is in force, new reviews get it.
            let mut conn = client
                .connect(server.webhook, Protocol::Http1)
                .await
                .expect("connect");
            let answer = conn.review(&review("probe")).await.json();
            assert_eq!(answer["response"]["auditAnnotations"]["policy"], hash(text));
        }
        load.wait_for(20).await;
    }
    let stats = load.stop().await;
    let answered = check_no_failures(&stats, 20 * 8);
    let by_hash = by_hash.lock().expect("lock").clone();
    assert_eq!(
        by_hash.len(),
        2,
        "both policies answered reviews: {by_hash:?}"
    );
    eprintln!("{answered} reviews during 7 policy changes (2 refused): {by_hash:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_answers_every_review_in_flight_and_exits_within_the_drain_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let drain_timeout = Duration::from_secs(5);
    let (mut server, client) = Running::with(dir.path(), |s| s.drain_timeout = drain_timeout).await;

    // Fast clients: reviews back to back on keep-alive connections.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fast: Vec<_> = (0..4)
        .map(|i| {
            let protocol = [Protocol::Http1, Protocol::Http2][i % 2];
            let name = format!("fast-{i}");
            reviews_until_closed(
                &client,
                server.webhook,
                protocol,
                name,
                stop.clone(),
                answered.clone(),
            )
        })
        .collect();

    // Slow clients: half a body sent, the rest held back until after the shutdown.
    let in_flight = 6;
    let (go, _) = tokio::sync::broadcast::channel::<()>(1);
    let slow: Vec<_> = (0..in_flight)
        .map(|i| {
            let (client, addr) = (client.clone(), server.webhook);
            let mut go = go.subscribe();
            tokio::spawn(async move {
                let protocol = if i % 2 == 0 {
                    Protocol::Http1
                } else {
                    Protocol::Http2
                };
                let conn = client.connect(addr, protocol).await.expect("connect");
                let uid = format!("slow-{i}");
                let review = job_pod_review(&uid, "gitlab", |_| {});
                let held =
                    conn.review_held_half_way(&review, async { go.recv().await.expect("go") });
                let reply = held.await.unwrap_or_else(|e| {
                    panic!("{uid} over {protocol:?}: the review in flight is not answered: {e}")
                });
                assert_eq!(reply.status, StatusCode::OK, "{uid}: {}", reply.text());
                assert_eq!(reply.json()["response"]["uid"], uid.as_str());
                (protocol, reply.headers.get("connection").cloned())
            })
        })
        .collect();
    eventually("the slow reviews are in flight", || async {
        server.metric("ci_pod_webhook_in_flight_requests").await >= in_flight as f64
    })
    .await;
    let before = answered.load(std::sync::atomic::Ordering::Relaxed);
    eventually("the fast clients go on meanwhile", || async {
        answered.load(std::sync::atomic::Ordering::Relaxed) >= before + 20
    })
    .await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let shutdown = Instant::now();
    server.shutdown();
    eventually("/readyz fails", || async {
        admin_get(server.admin, "/readyz").await.map(|r| r.0) != Ok(StatusCode::OK)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    go.send(()).expect("slow clients wait");
    for task in slow {
        let (protocol, connection) = task.await.expect("a slow review was not answered");
        if protocol == Protocol::Http1 {
            assert_eq!(
                connection.as_ref().map(|v| v.as_bytes()),
                Some(&b"close"[..])
            );
        }
    }
    let mut answered = 0;
    for task in fast {
        let (n, ended) = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("a fast client hung")
            .expect("a fast client failed");
        eprintln!("fast client: {n} reviews, then {ended}");
        answered += n;
    }
    tokio::time::timeout(drain_timeout + Duration::from_secs(2), server.task)
        .await
        .expect("the server stops within the drain timeout")
        .expect("join");
    let took = shutdown.elapsed();
    eprintln!(
        "{answered} fast reviews and {in_flight} in flight answered; stopped {took:?} after shutdown"
    );
    assert!(took < drain_timeout, "took {took:?}");
    assert!(
        client
            .connect(server.webhook, Protocol::Http1)
            .await
            .is_err(),
        "nothing listens after the drain"
    );
}
