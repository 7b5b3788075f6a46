//! The `serve` command as people run it: a child process with no TLS flags, a real
//! review over HTTPS with the CA it wrote, its JSON log lines, the two-stage
//! SIGTERM/SIGINT handling, and a second `serve` that must not touch the first's
//! development certificate.

use std::time::Duration;

use crate::support::*;
use hyper::StatusCode;
use serde_json::Value;

/// `ci-pod-webhook serve` as a child process, its JSON log lines read as they come.
struct Serve {
    child: std::process::Child,
    logs: std::sync::mpsc::Receiver<Value>,
}

impl Serve {
    fn start(cert_dir: &std::path::Path, extra: &[&str]) -> Serve {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--kube", "off", "--log-format", "json", "--cert-dir"])
            .arg(cert_dir)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, logs) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("a log line that is not JSON: {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Serve { child, logs }
    }

    /// The next log line whose message is `message`.
    fn log(&self, message: &str) -> Value {
        loop {
            let line = self.logs.recv_timeout(PATIENCE).expect("a log line");
            if line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
            {
                return line;
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn exit_code(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn addr(line: &Value, field: &str) -> std::net::SocketAddr {
    line[field]
        .as_str()
        .expect(field)
        .parse()
        .expect("an address")
}

#[tokio::test]
async fn serve_without_tls_flags_makes_a_dev_certificate_logs_reviews_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_dir = dir.path().join("dev-certs");
    let mut serve = Serve::start(&cert_dir, &[]);
    let said = serve.log("no --tls-cert");
    let ca = cert_dir.join("ca.crt");
    assert_eq!(said["ca"], ca.display().to_string());
    let listening = serve.log("listening");
    assert_eq!(listening["policy"], "<embedded default policy>");
    let (webhook, admin) = (addr(&listening, "webhook"), addr(&listening, "admin"));
    let hint = serve.log("try: curl");
    let hint = hint["message"].as_str().expect("message");
    assert!(
        hint.contains(&format!("--cacert {}", ca.display())),
        "{hint}"
    );
    assert!(
        hint.contains(&format!("https://localhost:{}/mutate", webhook.port())),
        "{hint}"
    );
    let untrusting = serve.log("no --trusted-peers");
    assert_eq!(untrusting["level"], "WARN", "{untrusting}");

    let ca_pem = std::fs::read_to_string(&ca).expect("ca.crt");
    let client = Client::trusting(&[&ca_pem]);
    let mut conn = client
        .connect(webhook, Protocol::Http1)
        .await
        .expect("connect");
    // What the README's curl command sends.
    let review: Value =
        serde_json::from_str(include_str!("../fixtures/job-pod-review.json")).expect("fixture");
    conn.review(&review).await;
    // How an admin finds the API server's addresses (docs/network.md).
    let first = serve.log("webhook connection from a new source address");
    assert_eq!(first["peer"], "127.0.0.1", "{first}");
    assert_eq!(first["trusted"], false, "{first}");
    let line = serve.log("review");
    assert_eq!(line["span"]["uid"], review["request"]["uid"], "{line}");
    assert_eq!(line["span"]["namespace"], "gitlab", "{line}");
    assert_eq!(line["span"]["http"], "HTTP/1.1", "{line}");
    assert_eq!(
        line["pod"],
        "runner-xz3kq9ab-project-12345678-concurrent-3-k2m9p0qz"
    );
    assert_eq!(line["class"], "k8srunner");
    assert_eq!(line["outcome"], "mutated");
    assert!(
        line["patch_operations"].as_u64().is_some_and(|n| n > 0),
        "{line}"
    );
    assert!(line["latency_us"].is_u64(), "{line}");

    // Probes are not logged.
    admin_get(admin, "/readyz").await.expect("readyz");
    admin_get(admin, "/metrics").await.expect("metrics");

    drop(conn);
    serve.signal("TERM");
    assert_eq!(serve.exit_code(), Some(0));
    // After the review line: only the shutdown, nothing about the probes.
    // The process has exited: iter() ends at the end of its output.
    let rest: Vec<String> = serve
        .logs
        .iter()
        .map(|l| l["message"].as_str().unwrap_or_default().to_string())
        .collect();
    let expected = ["received", "shutting down", "draining", "stopped"];
    assert!(
        rest.iter()
            .all(|m| expected.iter().any(|e| m.starts_with(e))),
        "{rest:?}"
    );
    assert_eq!(rest.last().map(String::as_str), Some("stopped"));
}

#[tokio::test]
async fn a_second_signal_exits_at_once_without_waiting_for_the_drain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut serve = Serve::start(&dir.path().join("certs"), &["--drain-timeout", "60s"]);
    let listening = serve.log("listening");
    let (webhook, admin) = (addr(&listening, "webhook"), addr(&listening, "admin"));
    let ca_pem = std::fs::read_to_string(dir.path().join("certs/ca.crt")).expect("ca.crt");
    let client = Client::trusting(&[&ca_pem]);

    let mut stuck = client
        .connect(webhook, Protocol::Http1)
        .await
        .expect("connect");
    let (_tx, request) = unfinished_post(1000);
    let _in_flight = tokio::spawn(async move { stuck.send(request).await });
    eventually("the request is in flight", || async {
        let (_, text) = admin_get(admin, "/metrics").await.expect("metrics");
        metric(&text, "ci_pod_webhook_in_flight_requests") == 1.0
    })
    .await;

    serve.signal("TERM");
    serve.log("shutting down");
    eventually("/readyz fails", || async {
        admin_get(admin, "/readyz").await.expect("readyz").0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    serve.signal("INT");
    assert_eq!(serve.exit_code(), Some(130));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_the_reviews_in_flight_and_exits_0_within_the_drain_timeout() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let dir = tempfile::tempdir().expect("tempdir");
    let drain = Duration::from_secs(5);
    let mut serve = Serve::start(&dir.path().join("certs"), &["--drain-timeout", "5s"]);
    let listening = serve.log("listening");
    let (webhook, admin) = (addr(&listening, "webhook"), addr(&listening, "admin"));
    let ca_pem = std::fs::read_to_string(dir.path().join("certs/ca.crt")).expect("ca.crt");
    let client = Client::trusting(&[&ca_pem]);

    // Reviews back to back until the server closes the connection.
    let signalled = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let fast: Vec<_> = [Protocol::Http1, Protocol::Http2]
        .into_iter()
        .map(|protocol| {
            let name = format!("fast-{protocol:?}");
            reviews_until_closed(
                &client,
                webhook,
                protocol,
                name,
                signalled.clone(),
                answered.clone(),
            )
        })
        .collect();
    // Reviews in flight at the signal: half a body each, the rest sent after it.
    let (go, _) = tokio::sync::broadcast::channel::<()>(1);
    let slow: Vec<_> = [Protocol::Http1, Protocol::Http2, Protocol::Http1]
        .into_iter()
        .enumerate()
        .map(|(i, protocol)| {
            let (client, mut go) = (client.clone(), go.subscribe());
            tokio::spawn(async move {
                let conn = client.connect(webhook, protocol).await.expect("connect");
                let uid = format!("slow-{i}");
                let review = job_pod_review(&uid, "gitlab", |_| {});
                let reply = conn
                    .review_held_half_way(&review, async { go.recv().await.expect("go") })
                    .await
                    .expect("answered");
                assert_eq!(reply.status, StatusCode::OK, "{uid}");
                assert_eq!(reply.json()["response"]["uid"], uid.as_str());
            })
        })
        .collect();
    eventually("the slow reviews are in flight", || async {
        let (_, text) = admin_get(admin, "/metrics").await.expect("metrics");
        metric(&text, "ci_pod_webhook_in_flight_requests") >= 3.0
    })
    .await;

    let before = answered.load(Ordering::Relaxed);
    eventually("the fast clients go on meanwhile", || async {
        answered.load(Ordering::Relaxed) >= before + 20
    })
    .await;

    signalled.store(true, Ordering::Relaxed);
    let sent = std::time::Instant::now();
    serve.signal("TERM");
    serve.log("shutting down");
    eventually("/readyz fails", || async {
        admin_get(admin, "/readyz").await.map(|r| r.0) != Ok(StatusCode::OK)
    })
    .await;
    go.send(()).expect("slow clients wait");
    for task in slow {
        task.await.expect("a review in flight was not answered");
    }
    let mut answered = 0;
    for task in fast {
        answered += task.await.expect("a fast client failed").0;
    }
    assert_eq!(serve.exit_code(), Some(0));
    let took = sent.elapsed();
    eprintln!("{answered} reviews, then SIGTERM: 3 in flight answered, exit 0 after {took:?}");
    assert!(took < drain, "exited {took:?} after SIGTERM");
}

/// Runs a `serve` expected to fail at start-up: its exit code and standard error.
fn failed_start(args: &[&str], cert_dir: &std::path::Path) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"))
        .arg("serve")
        .args(args)
        .args(["--kube", "off", "--log-format", "json", "--cert-dir"])
        .arg(cert_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + PATIENCE;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn trusted_peers_are_logged_at_start_up_and_their_connections_as_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_dir = dir.path().join("dev-certs");
    let serve = Serve::start(&cert_dir, &["--trusted-peers", "127.0.0.0/30, ::1"]);
    let webhook = addr(&serve.log("listening"), "webhook");
    let trusted = serve.log("connections from these addresses are never refused");
    assert_eq!(
        trusted["trusted_peers"], "127.0.0.0/30,::1/128",
        "{trusted}"
    );
    let ca_pem = std::fs::read_to_string(cert_dir.join("ca.crt")).expect("ca.crt");
    let mut conn = Client::trusting(&[&ca_pem])
        .connect(webhook, Protocol::Http1)
        .await
        .expect("connect");
    conn.review(&job_pod_review("trusted", "gitlab", |_| {}))
        .await;
    let first = serve.log("webhook connection from a new source address");
    assert_eq!(first["peer"], "127.0.0.1", "{first}");
    assert_eq!(first["trusted"], true, "{first}");
}

#[test]
fn serve_refuses_to_start_on_trusted_peers_that_are_no_ranges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stderr) = failed_start(
        &["--trusted-peers", "10.0.0.10/32,10.0.0.5/24"],
        &dir.path().join("dev-certs"),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--trusted-peers"), "{stderr}");
    assert!(stderr.contains("write 10.0.0.0/24"), "{stderr}");
}

#[tokio::test]
async fn a_second_serve_that_cannot_start_leaves_the_running_ones_certificate_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_dir = dir.path().join("dev-certs");
    let serve = Serve::start(&cert_dir, &[]);
    let listening = serve.log("listening");
    let (webhook, admin) = (addr(&listening, "webhook"), addr(&listening, "admin"));
    let files = ["ca.crt", "tls.crt", "tls.key"];
    // PEM text, so that a failure shows which file changed.
    let read = || files.map(|f| std::fs::read_to_string(cert_dir.join(f)).expect(f));
    let before = read();

    let (webhook_arg, admin_arg) = (webhook.to_string(), admin.to_string());
    let cases: [(&[&str], String); 3] = [
        (
            &["--listen", &webhook_arg, "--admin-listen", "127.0.0.1:0"],
            format!("cannot listen on {webhook}"),
        ),
        (
            &["--listen", "127.0.0.1:0", "--admin-listen", &admin_arg],
            format!("cannot listen on {admin}"),
        ),
        // Free ports, but the same --cert-dir: the directory is in use.
        (
            &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
            format!(
                "{} holds the development certificate of another ci-pod-webhook serve that is still running",
                cert_dir.display()
            ),
        ),
    ];
    for (args, says) in cases {
        let (code, stderr) = failed_start(args, &cert_dir);
        assert!(code.is_some_and(|c| c != 0), "{args:?}: exit {code:?}");
        assert!(stderr.contains(&says), "{args:?}: {stderr}");
        assert_eq!(read(), before, "{args:?}: the certificate was rewritten");
    }

    // And the first one still serves the certificate its clients trust.
    let mut conn = Client::trusting(&[&before[0]])
        .connect(webhook, Protocol::Http1)
        .await
        .expect("connect");
    let review: Value =
        serde_json::from_str(include_str!("../fixtures/job-pod-review.json")).expect("fixture");
    conn.review(&review).await;
}

#[test]
fn serve_refuses_to_start_on_a_policy_that_mounts_a_shared_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "defaultClass: a\ndocker: { socketPath: /run/docker.sock }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
    )
    .expect("write");
    let (code, stderr) = failed_start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--policy",
            policy.to_str().expect("utf-8"),
        ],
        &dir.path().join("certs"),
    );
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}");
    assert!(
        stderr.contains("\"/run/docker.sock\" is in /run, a directory other programs share"),
        "{stderr}"
    );
}
