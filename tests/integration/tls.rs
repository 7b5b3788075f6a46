//! The webhook port's transport: ALPN and both HTTP versions, keep-alive, TLS versions,
//! client certificates, certificate rotation through a `..data` symlink swap, and the
//! bounds on slow or surplus clients.

use std::time::Duration;

use crate::support::*;
use ci_pod_webhook::server::Settings;
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[tokio::test]
async fn http1_keep_alive_serves_many_reviews_on_one_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |_| {}).await;
    let mut conn = connect(&client, &server, Protocol::Http1).await;
    assert_eq!(conn.alpn.as_deref(), Some(&b"http/1.1"[..]));
    for i in 0..5 {
        let reply = conn
            .review(&job_pod_review(&format!("r{i}"), "gitlab", |_| {}))
            .await;
        assert_ne!(
            reply.headers.get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
    }
    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, "ci_pod_webhook_connections_total"), 1.0);
    assert_eq!(metric(&metrics, "ci_pod_webhook_open_connections"), 1.0);
}

#[tokio::test]
async fn http2_is_negotiated_and_multiplexes_reviews() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |_| {}).await;
    let conn = connect(&client, &server, Protocol::Http2).await;
    assert_eq!(conn.alpn.as_deref(), Some(&b"h2"[..]));
    let conn = std::sync::Arc::new(tokio::sync::Mutex::new(conn));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let review = job_pod_review(&format!("h2-{i}"), "gitlab", |_| {});
            conn.lock().await.review(&review).await.json()["response"]["uid"].clone()
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.expect("join"), format!("h2-{i}"));
    }
    assert_eq!(server.metric("ci_pod_webhook_connections_total").await, 1.0);
}

#[tokio::test]
async fn tls_1_2_is_accepted_as_well_as_1_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = write_certs(dir.path());
    let server = Running::start(settings(
        &dir.path().join("tls.crt"),
        &dir.path().join("tls.key"),
    ))
    .await;
    let tls12 = Client::build(&[&generated.ca_cert], None, true);
    let mut conn = tls12
        .connect(server.webhook, Protocol::Http1)
        .await
        .expect("TLS 1.2");
    conn.review(&job_pod_review("t12", "gitlab", |_| {})).await;
}

/// A client CA: its certificate (PEM) and the issuer that signs with it.
fn client_ca() -> (String, Issuer<'static, KeyPair>) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    (ca_cert.pem(), Issuer::new(ca, ca_key))
}

/// A client certificate (clientAuth, for kube-apiserver) that `issuer` signed after
/// `edit` changed it, and its key (PEM).
fn client_cert(
    issuer: &Issuer<'static, KeyPair>,
    edit: impl FnOnce(&mut CertificateParams),
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["kube-apiserver".to_string()]).expect("params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    edit(&mut params);
    let cert = params.signed_by(&key, issuer).expect("leaf");
    (cert.pem(), key.serialize_pem())
}

/// A client CA and a client certificate (clientAuth) it signed.
fn client_identity() -> (String, String, String) {
    let (ca, issuer) = client_ca();
    let (cert, key) = client_cert(&issuer, |_| {});
    (ca, cert, key)
}

/// A client that trusts the server's CA and presents the certificate `cert` with `key`.
fn presenting(server_ca: &str, cert: &str, key: &str) -> Client {
    Client::build(&[server_ca], Some((cert, key)), false)
}

/// A new connection, which must succeed.
async fn connect(client: &Client, server: &Running, protocol: Protocol) -> Conn {
    client
        .connect(server.webhook, protocol)
        .await
        .expect("connect")
}

/// The count of certificate reloads with this result.
async fn reloads(server: &Running, result: &str) -> f64 {
    let series = format!("ci_pod_webhook_certificate_reloads_total{{result=\"{result}\"}}");
    server.metric(&series).await
}

/// Waits for the server to close `conn`, idle after its last answer, and checks that
/// this took longer than a 300 ms header timeout could explain.
async fn closed_by_the_keep_alive_timeout(conn: Conn) {
    let idle = std::time::Instant::now();
    tokio::time::timeout(PATIENCE, conn.closed)
        .await
        .expect("closed after the keep-alive timeout")
        .expect("join");
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(600),
        "closed after {after:?}"
    );
}

const KEEP_ALIVE: Duration = Duration::from_millis(1500);

/// A 300 ms header timeout and a 1.5 s keep-alive timeout.
fn short_header_and_keep_alive_timeouts(s: &mut Settings) {
    s.limits.header_read_timeout = Duration::from_millis(300);
    s.limits.keep_alive_timeout = KEEP_ALIVE;
}

#[tokio::test]
async fn client_ca_mode_rejects_clients_without_a_certificate_and_accepts_signed_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (client_ca, client_cert, client_key) = client_identity();
    let ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, &client_ca).expect("write");
    let (server, generated) =
        Running::with_certs(&dir.path().join("tls"), |s| s.client_ca = Some(ca_path)).await;

    let anonymous = Client::trusting(&[&generated.ca_cert]);
    assert!(
        !gets_in(&anonymous, server.webhook).await,
        "a client without a certificate must not get an answer"
    );
    eventually("the failed handshake is counted", || async {
        server
            .metric("ci_pod_webhook_tls_handshake_failures_total")
            .await
            >= 1.0
    })
    .await;

    let (_, other_cert, other_key) = client_identity();
    let stranger = presenting(&generated.ca_cert, &other_cert, &other_key);
    assert!(
        !gets_in(&stranger, server.webhook).await,
        "a certificate from another CA must not get in"
    );

    let known = presenting(&generated.ca_cert, &client_cert, &client_key);
    let mut conn = connect(&known, &server, Protocol::Http2).await;
    conn.review(&job_pod_review("mtls", "gitlab", |_| {})).await;
}

/// Whether `client` gets an answer on a new connection.
async fn gets_in(client: &Client, addr: std::net::SocketAddr) -> bool {
    let answer = async {
        let mut conn = client.connect(addr, Protocol::Http1).await?;
        conn.post("application/json", b"{}".to_vec()).await
    };
    answer.await.is_ok()
}

#[tokio::test]
async fn a_client_ca_rotated_by_a_symlink_swap_applies_to_new_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (old_ca, old_cert, old_key) = client_identity();
    let (new_ca, new_cert, new_key) = client_identity();
    let mut volume = VolumeDir::new(
        &dir.path().join("client-ca"),
        &[("ca.crt", old_ca.as_bytes())],
    );
    let (server, generated) = Running::with_certs(&dir.path().join("tls"), |s| {
        s.client_ca = Some(volume.path("ca.crt"))
    })
    .await;
    let old = presenting(&generated.ca_cert, &old_cert, &old_key);
    let new = presenting(&generated.ca_cert, &new_cert, &new_key);

    assert!(gets_in(&old, server.webhook).await);
    assert!(!gets_in(&new, server.webhook).await);
    let mut before = connect(&old, &server, Protocol::Http1).await;

    // A file that holds no certificate is refused; the old CA stays in force.
    volume.publish(&[("ca.crt", b"not a certificate".as_slice())]);
    eventually("the broken CA file is refused", || async {
        reloads(&server, "failure").await == 1.0
    })
    .await;
    assert!(gets_in(&old, server.webhook).await);
    assert!(!gets_in(&new, server.webhook).await);

    // Both CAs during the changeover, then the new one alone.
    volume.publish(&[("ca.crt", format!("{old_ca}{new_ca}").as_bytes())]);
    eventually("both CAs are accepted", || async {
        gets_in(&new, server.webhook).await
    })
    .await;
    assert!(gets_in(&old, server.webhook).await);
    volume.publish(&[("ca.crt", new_ca.as_bytes())]);
    eventually("the old CA is no longer accepted", || async {
        !gets_in(&old, server.webhook).await
    })
    .await;
    assert!(gets_in(&new, server.webhook).await);
    assert_eq!(reloads(&server, "success").await, 2.0);
    assert_eq!(reloads(&server, "failure").await, 1.0);
    // A connection authenticated before the rotation carries on.
    before
        .review(&job_pod_review("before", "gitlab", |_| {}))
        .await;
}

#[tokio::test]
async fn a_certificate_rotated_by_a_symlink_swap_is_served_to_new_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    let first = ci_pod_webhook::certs::generate("first", &names, 1).expect("generate");
    let second = ci_pod_webhook::certs::generate("second", &names, 1).expect("generate");
    let mut volume = VolumeDir::new(
        &dir.path().join("secret"),
        &[
            ("tls.crt", first.tls_cert.as_bytes()),
            ("tls.key", first.tls_key.as_bytes()),
        ],
    );
    let server = Running::start(settings(&volume.path("tls.crt"), &volume.path("tls.key"))).await;
    let client = Client::trusting(&[&first.ca_cert, &second.ca_cert]);

    let old = connect(&client, &server, Protocol::Http1).await;
    assert_eq!(old.peer_cert, leaf_der(&first.tls_cert));

    // A broken update (key of another certificate) is refused; the first stays in force.
    volume.publish(&[
        ("tls.crt", second.tls_cert.as_bytes()),
        ("tls.key", first.tls_key.as_bytes()),
    ]);
    eventually("the mismatched pair is refused", || async {
        reloads(&server, "failure").await == 1.0
    })
    .await;
    let conn = connect(&client, &server, Protocol::Http1).await;
    assert_eq!(conn.peer_cert, leaf_der(&first.tls_cert));

    volume.publish(&[
        ("tls.crt", second.tls_cert.as_bytes()),
        ("tls.key", second.tls_key.as_bytes()),
    ]);
    eventually("new connections get the second certificate", || async {
        let conn = connect(&client, &server, Protocol::Http1).await;
        conn.peer_cert == leaf_der(&second.tls_cert)
    })
    .await;
    assert_eq!(reloads(&server, "success").await, 1.0);
    // A connection made before the rotation carries on with its certificate.
    let mut old = old;
    old.review(&job_pod_review("old", "gitlab", |_| {})).await;
}

#[tokio::test]
async fn slow_clients_are_cut_off_by_the_handshake_and_header_timeouts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |s| {
        s.limits.handshake_timeout = Duration::from_millis(300);
        s.limits.header_read_timeout = Duration::from_millis(300);
    })
    .await;

    // TCP connected, TLS never started.
    let mut silent = TcpStream::connect(server.webhook).await.expect("connect");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the server closes a silent connection"
    );
    eventually("the handshake timeout is counted", || async {
        server
            .metric("ci_pod_webhook_tls_handshake_failures_total")
            .await
            == 1.0
    })
    .await;

    // TLS done, request headers never finished.
    let tls = client.raw(server.webhook).await.expect("TLS");
    let (mut read_half, mut write_half) = tokio::io::split(tls);
    write_half
        .write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, read_half.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the server closes a connection whose headers never end"
    );
}

#[tokio::test]
async fn connections_above_the_limit_wait_for_a_free_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |s| s.limits.max_connections = 1).await;
    let first = connect(&client, &server, Protocol::Http1).await;
    let waiting = tokio::time::timeout(
        Duration::from_millis(300),
        client.connect(server.webhook, Protocol::Http1),
    )
    .await;
    assert!(
        waiting.is_err(),
        "a second connection must wait while one is open"
    );
    drop(first);
    let mut second =
        tokio::time::timeout(PATIENCE, client.connect(server.webhook, Protocol::Http1))
            .await
            .expect("accepted once the first is gone")
            .expect("connect");
    second
        .review(&job_pod_review("second", "gitlab", |_| {}))
        .await;
}

#[tokio::test]
async fn the_certs_command_makes_a_ca_and_a_serving_certificate_for_the_service() {
    use std::os::unix::fs::PermissionsExt as _;
    use x509_parser::extensions::GeneralName;

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("certs");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"))
        .args([
            "certs",
            "--service",
            "hook",
            "--namespace",
            "ci",
            "--days",
            "30",
            "--out",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run");
    assert!(status.success());

    for (file, mode) in [
        ("ca.crt", 0o644),
        ("ca.key", 0o600),
        ("tls.crt", 0o644),
        ("tls.key", 0o600),
        ("ca-bundle.b64", 0o644),
    ] {
        let meta = std::fs::metadata(out.join(file)).expect(file);
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }

    let tls_pem = std::fs::read_to_string(out.join("tls.crt")).expect("read");
    let der = leaf_der(&tls_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .expect("extension")
        .expect("SANs present")
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => (*dns).to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        sans,
        [
            "hook",
            "hook.ci",
            "hook.ci.svc",
            "hook.ci.svc.cluster.local"
        ]
    );
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 30, "30 days plus the hour of clock-skew margin");

    let ca_pem = std::fs::read_to_string(out.join("ca.crt")).expect("read");
    let bundle = std::fs::read_to_string(out.join("ca-bundle.b64")).expect("read");
    assert_eq!(bundle.trim_end().lines().count(), 1, "caBundle is one line");
    let decoded = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        bundle.trim_end(),
    )
    .expect("base64");
    assert_eq!(decoded, ca_pem.as_bytes());

    // The API server dials <service>.<namespace>.svc and checks the chain to caBundle.
    let server = Running::start(settings(&out.join("tls.crt"), &out.join("tls.key"))).await;
    let client = Client::trusting(&[&ca_pem]).expecting("hook.ci.svc");
    let mut conn = connect(&client, &server, Protocol::Http1).await;
    conn.review(&job_pod_review("svc", "gitlab", |_| {})).await;
    let wrong = Client::trusting(&[&ca_pem]).expecting("other.ci.svc");
    assert!(
        wrong
            .connect(server.webhook, Protocol::Http1)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn sessions_are_not_resumed_so_every_connection_gets_the_certificate_in_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |_| {}).await;
    for protocol in [Protocol::Http1, Protocol::Http2, Protocol::Http1] {
        let mut tls = client.tls(server.webhook, protocol).await.expect("TLS");
        let (_, session) = tls.get_ref();
        assert_eq!(
            session.handshake_kind(),
            Some(rustls::HandshakeKind::Full),
            "a resumed handshake carries no certificate"
        );
        // Read what the server sends after the handshake (TLS 1.3 session tickets would
        // come now) before the next connection looks for a session to resume.
        let _ = tls
            .write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n")
            .await;
        let mut buf = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_millis(500), tls.read(&mut buf)).await;
    }
}

#[tokio::test]
async fn client_ca_mode_rejects_expired_and_non_client_certificates_from_the_right_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_pem, issuer) = client_ca();
    let leaf = |edit: &dyn Fn(&mut CertificateParams)| client_cert(&issuer, edit);
    let ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, ca_pem).expect("write");
    let (server, generated) =
        Running::with_certs(&dir.path().join("tls"), |s| s.client_ca = Some(ca_path)).await;

    let now = time::OffsetDateTime::now_utc();
    let expired = leaf(&|p| {
        p.not_before = now - time::Duration::days(30);
        p.not_after = now - time::Duration::days(1);
    });
    let not_yet = leaf(&|p| {
        p.not_before = now + time::Duration::days(1);
        p.not_after = now + time::Duration::days(30);
    });
    let server_only = leaf(&|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]);
    for (what, (cert, key)) in [
        ("an expired certificate", expired),
        ("a certificate not valid yet", not_yet),
        ("a serverAuth-only certificate", server_only),
    ] {
        let client = presenting(&generated.ca_cert, &cert, &key);
        assert!(
            !gets_in(&client, server.webhook).await,
            "{what} got an answer"
        );
    }
    let (cert, key) = leaf(&|_| {});
    let client = presenting(&generated.ca_cert, &cert, &key);
    let mut conn = connect(&client, &server, Protocol::Http1).await;
    conn.review(&job_pod_review("valid", "gitlab", |_| {}))
        .await;
}

#[tokio::test]
async fn a_keep_alive_connection_may_idle_past_the_header_timeout_until_the_keep_alive_timeout() {
    // The API server keeps idle HTTP/1.1 connections for 90 s and reuses them; closing
    // one after the 2 s header timeout could meet a review it has just sent.
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), short_header_and_keep_alive_timeouts).await;
    let mut conn = connect(&client, &server, Protocol::Http1).await;
    conn.review(&job_pod_review("first", "gitlab", |_| {}))
        .await;
    tokio::time::sleep(Duration::from_millis(900)).await; // three header timeouts
    conn.review(&job_pod_review("second", "gitlab", |_| {}))
        .await;
    assert_eq!(server.metric("ci_pod_webhook_connections_total").await, 1.0);
    // Measured from when the client had the answer, a little after the server's clock
    // started: on a busy machine the gap can be a few hundred ms. What matters is that
    // the close came from the keep-alive timeout, not the 300 ms header timeout.
    closed_by_the_keep_alive_timeout(conn).await;
}

#[tokio::test]
async fn an_http2_connection_is_closed_when_silent_past_the_header_timeout_or_idle_past_the_keep_alive()
 {
    // hyper's PINGs keep an answering client's connection open for good: without these
    // bounds, silent HTTP/2 connections would take every connection slot.
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), short_header_and_keep_alive_timeouts).await;

    // TLS with ALPN h2, then not even the connection preface.
    let mut silent = client
        .tls(server.webhook, Protocol::Http2)
        .await
        .expect("TLS");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(PATIENCE, silent.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => {} // the server's SETTINGS
            Err(_) => panic!("a silent HTTP/2 connection was not closed"),
        }
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < KEEP_ALIVE,
        "closed after {took:?}, the header timeout is 300 ms"
    );

    // Requests keep it open past many header timeouts; idle, it goes at the keep-alive.
    let mut conn = connect(&client, &server, Protocol::Http2).await;
    for i in 0..4 {
        conn.review(&job_pod_review(&format!("h2-{i}"), "gitlab", |_| {}))
            .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Checked every keep-alive period: idle for one to two of them, never a header timeout.
    closed_by_the_keep_alive_timeout(conn).await;
    eventually("both connections are gone", || async {
        server.metric("ci_pod_webhook_open_connections").await == 0.0
    })
    .await;
}

#[tokio::test]
async fn a_client_that_does_not_read_its_answers_is_let_go_at_the_send_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |s| {
        s.limits.send_timeout = Duration::from_millis(500);
    })
    .await;
    // A small receive buffer, requests pipelined, and no answer ever read.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = socket.connect(server.webhook).await.expect("connect");
    let tls = client.tls_on(tcp, Protocol::Http1).await.expect("TLS");
    let (_read, mut write) = tokio::io::split(tls);
    let request = b"GET /mutate HTTP/1.1\r\nhost: localhost\r\n\r\n";
    let writer = tokio::spawn(async move {
        // Until the server gives up: once its answers fill the socket buffers it stops
        // reading too, and these writes block until it closes the connection.
        while write.write_all(request).await.is_ok() {}
    });
    eventually("the connection is taken", || async {
        server.metric("ci_pod_webhook_open_connections").await == 1.0
    })
    .await;
    eventually_within(
        "the server lets the connection go",
        PATIENCE * 3,
        || async { server.metric("ci_pod_webhook_open_connections").await == 0.0 },
    )
    .await;
    let answered = server
        .metric(r#"ci_pod_webhook_requests_total{class="none",outcome="invalid"}"#)
        .await;
    assert!(answered >= 10.0, "only {answered} requests were answered");
    writer.abort();
}
