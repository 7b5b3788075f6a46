//! The admission server over a real TLS socket: reviews answered as DESIGN.md says,
//! malformed input refused with the right 4xx, metrics counting all of it, live policy
//! reload, and a graceful drain.

use std::time::Duration;

use crate::support::*;
use ci_pod_webhook::cluster::Cluster;
use ci_pod_webhook_core::policy::{DEFAULT_POLICY_YAML, Policy};
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const OPTED_IN: (&str, &str) = ("ci.skao.int/pod-policy", "enabled");

#[tokio::test]
async fn a_job_pod_is_patched_with_its_class_over_http1_and_http2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |_| {}).await;
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let mut conn = client
            .connect(server.webhook, protocol)
            .await
            .expect("connect");
        let review = job_pod_review("uid-job", "gitlab", |pod| {
            // Without resources on `build`, the class must fill them all in.
            pod["spec"]["containers"][0]
                .as_object_mut()
                .expect("build")
                .remove("resources");
        });
        let reply = conn.review(&review).await.json();
        assert_eq!(reply["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(reply["response"]["uid"], "uid-job");
        assert_eq!(reply["response"]["allowed"], true);
        assert_eq!(reply["response"]["patchType"], "JSONPatch");
        let pod = patched_pod(&review, &reply);
        let build = container(&pod, "build");
        assert_eq!(build["resources"]["limits"]["cpu"], "5", "{build}");
        assert_eq!(build["resources"]["limits"]["memory"], "10Gi");
        assert_eq!(build["resources"]["requests"]["cpu"], "1");
        assert_eq!(build["resources"]["requests"]["memory"], "2Gi");
        let env = build["env"].as_array().expect("env");
        assert!(
            env.iter().any(|e| e["name"] == "DOCKER_HOST"
                && e["value"] == "unix:///var/run/ci-dind/docker.sock"),
            "{env:?}"
        );
        assert_eq!(
            pod["spec"]["nodeSelector"]["node-role.skatelescope.org/ci-worker"],
            "true"
        );
        assert_eq!(
            pod["metadata"]["annotations"]["ci.skao.int/class"],
            "k8srunner"
        );
        assert_eq!(
            pod["metadata"]["annotations"]["ci.skao.int/policy"],
            server.policy_hash.as_str()
        );
    }
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"ci_pod_webhook_requests_total{class="k8srunner",outcome="mutated"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"ci_pod_webhook_request_duration_seconds_count{outcome="mutated"}"#
        ),
        2.0
    );
}

#[tokio::test]
async fn pods_that_are_not_ours_are_allowed_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |s| {
        s.cluster = Cluster::fixed([("ci", &[OPTED_IN][..]), ("apps", &[][..])]);
    })
    .await;
    let mut conn = client
        .connect(server.webhook, Protocol::Http1)
        .await
        .expect("connect");

    let opted_in = job_pod_review("in", "ci", |_| {});
    let reply = conn.review(&opted_in).await.json();
    assert!(reply["response"]["patch"].is_string(), "{reply}");

    let other_namespace = job_pod_review("ns", "apps", |_| {});
    let reply = conn.review(&other_namespace).await.json();
    assert_eq!(reply["response"]["allowed"], true);
    assert!(reply["response"].get("patch").is_none(), "{reply}");

    let web = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "ci"},
        "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}
    });
    let reply = conn.review(&pod_review("web", "ci", web)).await.json();
    assert_eq!(reply["response"]["allowed"], true);
    assert!(reply["response"].get("patch").is_none(), "{reply}");

    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"ci_pod_webhook_requests_total{class="none",outcome="skipped"}"#
        ),
        2.0
    );
}

#[tokio::test]
async fn an_invalid_override_is_denied_with_http_200_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |_| {}).await;
    let mut conn = client
        .connect(server.webhook, Protocol::Http2)
        .await
        .expect("connect");
    let annotate = |value: &'static str| {
        move |pod: &mut Value| {
            pod["metadata"]["annotations"]["ci.skao.int/cpu-limit"] = json!(value);
        }
    };

    let denied = conn
        .review(&job_pod_review("bad", "gitlab", annotate("lots")))
        .await
        .json();
    assert_eq!(denied["response"]["allowed"], false, "{denied}");
    let message = denied["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(
        message.contains("cpu-limit") && message.contains("lots"),
        "{message}"
    );

    let clamped = conn
        .review(&job_pod_review("big", "gitlab", annotate("20")))
        .await
        .json();
    assert_eq!(clamped["response"]["allowed"], true, "{clamped}");
    assert!(
        !clamped["response"]["warnings"]
            .as_array()
            .expect("warnings")
            .is_empty()
    );

    let metrics = server.metrics().await;
    for (series, want) in [
        (
            r#"ci_pod_webhook_requests_total{class="k8srunner",outcome="denied"}"#,
            1.0,
        ),
        (
            r#"ci_pod_webhook_requests_total{class="k8srunner",outcome="mutated"}"#,
            1.0,
        ),
        (
            r#"ci_pod_webhook_overrides_total{override="cpu-limit",result="rejected"}"#,
            1.0,
        ),
        (
            r#"ci_pod_webhook_overrides_total{override="cpu-limit",result="clamped"}"#,
            1.0,
        ),
    ] {
        assert_eq!(metric(&metrics, series), want, "{series}\n{metrics}");
    }
}

#[tokio::test]
async fn malformed_requests_get_their_4xx_with_a_reason_and_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |s| s.limits.max_body_bytes = 64 * 1024).await;
    let review = |request: Value| json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        ("not JSON", "application/json", b"{not json".to_vec(), StatusCode::BAD_REQUEST, "not valid JSON"),
        ("an array", "application/json", b"[1, 2]".to_vec(), StatusCode::BAD_REQUEST, "AdmissionReview"),
        ("no request", "application/json", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), StatusCode::BAD_REQUEST, "no request"),
        ("no uid", "application/json", review(json!({"operation": "CREATE"})).to_string().into_bytes(), StatusCode::BAD_REQUEST, "uid"),
        ("v1beta1", "application/json", json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}}).to_string().into_bytes(), StatusCode::BAD_REQUEST, "apiVersion"),
        ("a ConfigMap", "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap"}"#.to_vec(), StatusCode::BAD_REQUEST, "AdmissionReview"),
        ("YAML", "application/yaml", b"apiVersion: v1".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json"),
        ("too large", "application/json", vec![b' '; 65 * 1024], StatusCode::PAYLOAD_TOO_LARGE, "limit"),
    ];
    for (what, content_type, body, status, reason) in &cases {
        // A fresh connection each: after a refused body the server closes the connection.
        let mut conn = client
            .connect(server.webhook, Protocol::Http1)
            .await
            .expect("connect");
        let reply = conn
            .post(content_type, body.clone())
            .await
            .expect("a reply");
        assert_eq!(reply.status, *status, "{what}: {}", reply.text());
        assert!(reply.text().contains(reason), "{what}: {}", reply.text());
    }
    // The charset parameter is fine.
    let mut conn = client
        .connect(server.webhook, Protocol::Http1)
        .await
        .expect("connect");
    let ok = job_pod_review("ok", "gitlab", |_| {})
        .to_string()
        .into_bytes();
    let reply = conn
        .post("application/json; charset=utf-8", ok)
        .await
        .expect("reply");
    assert_eq!(reply.status, StatusCode::OK);

    // A declared 50 MB body is refused without being read: the answer comes while the
    // client has sent nothing but headers and a few bytes.
    let mut raw = client.raw(server.webhook).await.expect("TLS");
    raw.write_all(
        b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
          content-length: 50000000\r\n\r\n{\"apiVersion\"",
    )
    .await
    .expect("write");
    let mut head = [0u8; 12];
    tokio::time::timeout(PATIENCE, raw.read_exact(&mut head))
        .await
        .expect("answered before the body")
        .expect("read");
    assert_eq!(&head, b"HTTP/1.1 413");

    let mut conn = client
        .connect(server.webhook, Protocol::Http1)
        .await
        .expect("connect");
    let get = hyper::Request::get("/mutate")
        .header("host", "localhost")
        .body(full(Vec::new()));
    let reply = conn.send(get.expect("request")).await.expect("reply");
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "POST");

    let invalid = cases.len() as f64 + 2.0;
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"ci_pod_webhook_requests_total{class="none",outcome="invalid"}"#
        ),
        invalid,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "ci_pod_webhook_panics_total"), 0.0);
}

#[tokio::test]
async fn a_replaced_policy_is_used_by_new_reviews_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = DEFAULT_POLICY_YAML.to_string();
    let second =
        DEFAULT_POLICY_YAML.replace("cpu: \"5\", memory: 10Gi", "cpu: \"4\", memory: 10Gi");
    assert_ne!(first, second);
    let hash = |text: &str| Policy::parse(text, "test").expect("valid").hash;
    let mut volume = VolumeDir::new(
        &dir.path().join("policy"),
        &[("policy.yaml", first.as_bytes())],
    );
    let policy_path = volume.path("policy.yaml");
    let (server, client) =
        Running::with(&dir.path().join("tls"), |s| s.policy = Some(policy_path)).await;
    assert_eq!(server.policy_hash, hash(&first));

    let policy_of = |client: Client, addr| async move {
        let mut conn = client
            .connect(addr, Protocol::Http1)
            .await
            .expect("connect");
        let reply = conn
            .review(&job_pod_review("p", "gitlab", |_| {}))
            .await
            .json();
        reply["response"]["auditAnnotations"]["policy"]
            .as_str()
            .expect("policy hash")
            .to_string()
    };
    assert_eq!(
        policy_of(client.clone(), server.webhook).await,
        hash(&first)
    );

    volume.publish(&[(
        "policy.yaml",
        b"prefix: ci.skao.int\nclasses: {}\nunknownKey: 1\n",
    )]);
    eventually("the bad policy is refused", || async {
        server
            .metric(r#"ci_pod_webhook_policy_reloads_total{result="failure"}"#)
            .await
            == 1.0
    })
    .await;
    assert_eq!(
        policy_of(client.clone(), server.webhook).await,
        hash(&first)
    );

    volume.publish(&[("policy.yaml", second.as_bytes())]);
    eventually("the good policy is in force", || async {
        server
            .metric(r#"ci_pod_webhook_policy_reloads_total{result="success"}"#)
            .await
            == 1.0
    })
    .await;
    assert_eq!(
        policy_of(client.clone(), server.webhook).await,
        hash(&second)
    );
    assert_eq!(
        server
            .metric(r#"ci_pod_webhook_policy_reloads_total{result="failure"}"#)
            .await,
        1.0,
        "a refused file is counted once, not at every look"
    );
}

#[tokio::test]
async fn shutdown_drains_the_request_in_flight_and_closes_idle_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, client) = Running::with(dir.path(), |s| {
        // Far above the test's bounds: an idle close must come from the drain.
        s.limits.header_read_timeout = Duration::from_secs(60);
    })
    .await;

    let mut idle = client
        .connect(server.webhook, Protocol::Http1)
        .await
        .expect("connect");
    idle.review(&job_pod_review("before", "gitlab", |_| {}))
        .await;
    let mut idle_h2 = client
        .connect(server.webhook, Protocol::Http2)
        .await
        .expect("connect");
    idle_h2
        .review(&job_pod_review("before-h2", "gitlab", |_| {}))
        .await;

    let busy = client
        .connect(server.webhook, Protocol::Http1)
        .await
        .expect("connect");
    let (go, rest) = tokio::sync::oneshot::channel::<()>();
    let in_flight = tokio::spawn(async move {
        let review = job_pod_review("drain", "gitlab", |_| {});
        let rest = async { rest.await.expect("go") };
        busy.review_held_half_way(&review, rest).await
    });
    eventually("the review is in flight", || async {
        server.metric("ci_pod_webhook_in_flight_requests").await == 1.0
    })
    .await;

    assert_eq!(
        admin_get(server.admin, "/readyz").await.expect("readyz").0,
        StatusCode::OK
    );
    server.shutdown();
    eventually("/readyz fails", || async {
        admin_get(server.admin, "/readyz").await.expect("readyz").0
            == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), idle.closed)
        .await
        .expect("the idle keep-alive connection is closed promptly")
        .expect("join");
    tokio::time::timeout(Duration::from_secs(5), idle_h2.closed)
        .await
        .expect("the idle HTTP/2 connection gets GOAWAY and is closed")
        .expect("join");
    assert!(
        client
            .connect(server.webhook, Protocol::Http1)
            .await
            .is_err(),
        "no new connection is accepted while draining"
    );

    go.send(())
        .expect("the review waits for the rest of its body");
    let reply = in_flight
        .await
        .expect("join")
        .expect("the in-flight review is answered");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["response"]["uid"], "drain");
    assert_eq!(reply.headers["connection"], "close");
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("the server stops once drained")
        .expect("join");
}

#[tokio::test]
async fn the_drain_timeout_bounds_a_stuck_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, client) = Running::with(dir.path(), |s| {
        s.drain_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stuck = client
        .connect(server.webhook, Protocol::Http1)
        .await
        .expect("connect");
    let (_tx, request) = unfinished_post(1000);
    let in_flight = tokio::spawn(async move { stuck.send(request).await });
    eventually("the request is in flight", || async {
        server.metric("ci_pod_webhook_in_flight_requests").await == 1.0
    })
    .await;
    server.shutdown();
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("the server stops at the drain timeout")
        .expect("join");
    assert!(
        in_flight.await.expect("join").is_err(),
        "the stuck request was cut off"
    );
}

#[tokio::test]
async fn a_request_whose_body_never_ends_times_out_with_408() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |s| {
        s.limits.request_timeout = Duration::from_millis(300);
    })
    .await;
    let mut conn = client
        .connect(server.webhook, Protocol::Http1)
        .await
        .expect("connect");
    let (_tx, request) = unfinished_post(1000);
    let reply = tokio::time::timeout(PATIENCE, conn.send(request))
        .await
        .expect("answered at the request timeout")
        .expect("a reply");
    assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn the_admin_port_reports_liveness_and_build_info() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = Running::with(dir.path(), |_| {}).await;
    assert_eq!(
        admin_get(server.admin, "/livez").await.expect("livez").0,
        StatusCode::OK
    );
    assert_eq!(
        admin_get(server.admin, "/readyz").await.expect("readyz").0,
        StatusCode::OK
    );
    let metrics = server.metrics().await;
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        metrics.contains(&format!(
            r#"ci_pod_webhook_build_info{{version="{version}"}} 1"#
        )),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"));
}
