//! Hostile and malformed input against the real HTTPS server, as a table: each input
//! gets its documented answer (a 4xx with a reason, a denial with a clear message, or an
//! allowed answer whose patch applies and does what the class says), and after each one
//! a normal review still succeeds. docs/reliability.md
//! lists the same table. Memory after large inputs is checked in `hostile_memory.rs`
//! (its own process, so other tests do not disturb the RSS it reads).

use crate::support::*;
use hyper::StatusCode;
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

/// What the server must answer.
enum Want {
    /// An HTTP error whose body contains the text.
    Refused(StatusCode, &'static str),
    /// HTTP 200, `allowed: false`, the message containing the text.
    Denied(&'static str),
    /// HTTP 200, `allowed: true`. The patch is applied (with `json-patch`) to `pod` —
    /// the request's pod, or for inputs `serde_json::Value` cannot hold (nesting deeper
    /// than its limit of 128) the same pod without the deep part — and `check` looks at
    /// the result.
    Allowed { pod: Value, check: fn(&Value) },
}

struct Case {
    what: &'static str,
    body: Vec<u8>,
    want: Want,
}

/// A review of `pod` as JSON bytes.
fn review_of(pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&pod_review("hostile", "gitlab", pod.clone())).expect("json")
}

/// The fixture edited, as an allowed case checked by `check`.
fn allowed(what: &'static str, edit: impl FnOnce(&mut Value), check: fn(&Value)) -> Case {
    let mut pod = job_pod();
    edit(&mut pod);
    Case {
        what,
        body: review_of(&pod),
        want: Want::Allowed { pod, check },
    }
}

fn refused(what: &'static str, body: Vec<u8>, status: StatusCode, reason: &'static str) -> Case {
    Case {
        what,
        body,
        want: Want::Refused(status, reason),
    }
}

fn denied(what: &'static str, edit: impl FnOnce(&mut Value), message: &'static str) -> Case {
    let mut pod = job_pod();
    edit(&mut pod);
    Case {
        what,
        body: review_of(&pod),
        want: Want::Denied(message),
    }
}

/// A review whose text has `"@@"` replaced by raw JSON text `raw`.
fn spliced(edit: impl FnOnce(&mut Value), raw: &[u8]) -> Vec<u8> {
    let mut review = pod_review("hostile", "gitlab", job_pod());
    edit(&mut review);
    let text = serde_json::to_vec(&review).expect("json");
    let at = text
        .windows(4)
        .position(|w| w == b"\"@@\"")
        .expect("marker");
    [&text[..at], raw, &text[at + 4..]].concat()
}

fn deep_arrays(depth: usize) -> Vec<u8> {
    [vec![b'['; depth], vec![b']'; depth]].concat()
}

fn deep_objects(depth: usize) -> Vec<u8> {
    [b"{\"a\":".repeat(depth), b"1".to_vec(), vec![b'}'; depth]].concat()
}

fn build(pod: &Value) -> &Value {
    container(pod, "build")
}

fn limits(pod: &Value) -> (&Value, &Value) {
    let limits = &build(pod)["resources"]["limits"];
    (&limits["cpu"], &limits["memory"])
}

fn docker_host(pod: &Value) -> Vec<&Value> {
    build(pod)["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter(|e| e["name"] == "DOCKER_HOST")
        .collect()
}

/// The class's own values on a pod that asked for nothing odd.
fn class_applied(pod: &Value) {
    assert_eq!(limits(pod), (&json!("5"), &json!("10Gi")), "{}", build(pod));
    assert_eq!(
        pod["metadata"]["annotations"]["ci.skao.int/class"],
        "k8srunner"
    );
    assert_eq!(docker_host(pod).len(), 1);
}

fn set_build(pod: &mut Value, key: &str, value: Value) {
    pod["spec"]["containers"][0][key] = value;
}

fn cases() -> Vec<Case> {
    let one_mb = "x".repeat(1 << 20);
    let mut cases = vec![
        // ---- not an AdmissionReview at all
        refused(
            "an empty body",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "the body is empty",
        ),
        refused(
            "not JSON",
            b"{\"apiVersion\": adm".to_vec(),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        refused(
            "a JSON array",
            b"[{\"request\": {}}]".to_vec(),
            StatusCode::BAD_REQUEST,
            "expected a JSON object",
        ),
        refused(
            "a JSON string",
            b"\"AdmissionReview\"".to_vec(),
            StatusCode::BAD_REQUEST,
            "expected a JSON object",
        ),
        refused(
            "JSON null",
            b"null".to_vec(),
            StatusCode::BAD_REQUEST,
            "expected a JSON object",
        ),
        refused(
            "arrays nested 10,000 deep",
            deep_arrays(10_000),
            StatusCode::BAD_REQUEST,
            "expected a JSON object",
        ),
        refused(
            "objects nested 10,000 deep",
            deep_objects(10_000),
            StatusCode::BAD_REQUEST,
            "apiVersion",
        ),
        refused(
            "invalid UTF-8",
            {
                let mut body = review_of(&job_pod());
                let at = body
                    .windows(6)
                    .position(|w| w == b"python")
                    .expect("job name");
                body[at] = 0xff;
                body
            },
            StatusCode::BAD_REQUEST,
            "not UTF-8",
        ),
        refused(
            "a lone UTF-16 surrogate in a read string",
            spliced(|r| r["request"]["uid"] = json!("@@"), b"\"\\ud800\""),
            StatusCode::BAD_REQUEST,
            "escape",
        ),
        // ---- an AdmissionReview with a broken structure
        refused(
            "request is a string",
            spliced(|r| r["request"] = json!("@@"), b"\"x\""),
            StatusCode::BAD_REQUEST,
            "not an AdmissionReview",
        ),
        refused(
            "request is an array",
            spliced(|r| r["request"] = json!("@@"), b"[\"uid\"]"),
            StatusCode::BAD_REQUEST,
            "not an AdmissionReview",
        ),
        refused(
            "request is null",
            spliced(|r| r["request"] = json!("@@"), b"null"),
            StatusCode::BAD_REQUEST,
            "no request",
        ),
        refused(
            "a duplicated uid field",
            spliced(
                |r| r["request"]["dryRun"] = json!("@@"),
                b"false, \"uid\": \"again\"",
            ),
            StatusCode::BAD_REQUEST,
            "duplicate field `uid`",
        ),
        refused(
            "object is a string",
            spliced(|r| r["request"]["object"] = json!("@@"), b"\"pod\""),
            StatusCode::BAD_REQUEST,
            "not a valid Pod",
        ),
        refused(
            "object is an array",
            spliced(
                |r| r["request"]["object"] = json!("@@"),
                br#"[null, {"containers": [{"name": "build"}, {"name": "helper"}]}]"#,
            ),
            StatusCode::BAD_REQUEST,
            "not a valid Pod",
        ),
        refused(
            "object is null",
            spliced(|r| r["request"]["object"] = json!("@@"), b"null"),
            StatusCode::BAD_REQUEST,
            "request.object is missing",
        ),
        refused(
            "spec is an array",
            spliced(
                |r| r["request"]["object"]["spec"] = json!("@@"),
                br#"[[{"name": "build"}, {"name": "helper"}]]"#,
            ),
            StatusCode::BAD_REQUEST,
            "not a valid Pod",
        ),
        refused(
            "a duplicated spec field",
            spliced(
                |r| r["request"]["object"]["status"] = json!("@@"),
                br#"{}, "spec": {}"#,
            ),
            StatusCode::BAD_REQUEST,
            "duplicate field `spec`",
        ),
        refused(
            "containers is an object",
            spliced(
                |r| r["request"]["object"]["spec"]["containers"] = json!("@@"),
                br#"{"build": {}}"#,
            ),
            StatusCode::BAD_REQUEST,
            "not a valid Pod",
        ),
        refused(
            "a container is an array",
            spliced(
                |r| r["request"]["object"]["spec"]["containers"][0] = json!("@@"),
                br#"["build"]"#,
            ),
            StatusCode::BAD_REQUEST,
            "not a valid Pod",
        ),
        refused(
            "containers without names",
            {
                let mut pod = job_pod();
                for c in pod["spec"]["containers"]
                    .as_array_mut()
                    .expect("containers")
                {
                    c.as_object_mut().expect("container").remove("name");
                }
                review_of(&pod)
            },
            StatusCode::BAD_REQUEST,
            "missing field `name`",
        ),
        refused(
            "annotations nested 10,000 deep",
            spliced(
                |r| r["request"]["object"]["metadata"]["annotations"]["x"] = json!("@@"),
                &deep_arrays(10_000),
            ),
            StatusCode::BAD_REQUEST,
            "not a valid Pod",
        ),
        refused(
            "a quantity that is a JSON number out of range (1e400)",
            spliced(
                |r| {
                    r["request"]["object"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
                        json!("@@")
                },
                b"1e400",
            ),
            StatusCode::BAD_REQUEST,
            "number out of range",
        ),
        // ---- readable, and denied: what the API server would refuse too, or an unbounded pod
        denied(
            "a negative quantity",
            |p| set_build(p, "resources", json!({"limits": {"cpu": "-1"}})),
            "spec.containers[build].resources.limits.cpu: \"-1\" is not a valid non-negative quantity",
        ),
        denied(
            "a negative number",
            |p| set_build(p, "resources", json!({"limits": {"memory": -2}})),
            "resources.limits.memory: \"-2\" is not a valid non-negative quantity",
        ),
        denied(
            "the string NaN",
            |p| set_build(p, "resources", json!({"requests": {"cpu": "NaN"}})),
            "resources.requests.cpu: \"NaN\" is not a valid non-negative quantity",
        ),
        denied(
            "5,000 containers",
            |p| {
                let containers = p["spec"]["containers"].as_array_mut().expect("containers");
                containers.extend(
                    (1..=5_000).map(|i| json!({"name": format!("svc-{i}"), "image": "postgres"})),
                );
            },
            "the pod has 5004 containers and init containers; ci-pod-webhook applies its policy to at most 1000",
        ),
        denied(
            "a 1 MB override value",
            |p| {
                p["metadata"]["annotations"]["ci.skao.int/cpu-limit"] =
                    json!("9".repeat(1 << 20) + "x")
            },
            "is not a valid quantity",
        ),
        denied(
            "150,000 unknown override annotations",
            |p| {
                let annotations = p["metadata"]["annotations"]
                    .as_object_mut()
                    .expect("annotations");
                for i in 0..150_000 {
                    annotations.insert(format!("ci.skao.int/{i}"), json!(""));
                }
            },
            "; and 149992 more",
        ),
        // ---- readable, and allowed with a correct patch
        allowed(
            "quantities that are JSON numbers",
            |p| {
                set_build(
                    p,
                    "resources",
                    json!({"limits": {"cpu": 3, "memory": 1073741824}, "requests": {"cpu": 0.5}}),
                )
            },
            |pod| {
                assert_eq!(
                    limits(pod),
                    (&json!(3), &json!(1073741824)),
                    "kept: within the ceiling"
                );
                assert_eq!(build(pod)["resources"]["requests"]["cpu"], 0.5);
            },
        ),
        allowed(
            "absurd quantities (1e400, 99999999999999999999Ei)",
            |p| {
                set_build(
                    p,
                    "resources",
                    json!({"limits": {"cpu": "1e400", "memory": "99999999999999999999Ei"}, "requests": {"cpu": "1e400", "memory": "99999999999999999999Ei"}}),
                )
            },
            |pod| {
                assert_eq!(
                    limits(pod),
                    (&json!("8"), &json!("16Gi")),
                    "lowered to the class ceiling"
                );
                assert_eq!(
                    build(pod)["resources"]["requests"],
                    json!({"cpu": "8", "memory": "16Gi"})
                );
            },
        ),
        allowed(
            "duplicate annotation keys (the last counts, as in the API server)",
            |_| {},
            |pod| {
                assert_eq!(limits(pod).0, "2");
            },
        ),
        allowed(
            "env entries with valueFrom",
            |p| {
                let env = p["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .expect("env");
                env.push(json!({"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}));
                env.push(json!({"name": "LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}));
                env.push(json!({"name": "NODE_IP", "valueFrom": null}));
            },
            |pod| {
                class_applied(pod);
                let env = build(pod)["env"].as_array().expect("env");
                let at = |name: &str| env.iter().position(|e| e["name"] == name);
                assert!(
                    at("DOCKER_HOST") > at("NODE_IP"),
                    "appended after the others"
                );
            },
        ),
        allowed(
            "DOCKER_HOST from valueFrom (a set variable, left alone)",
            |p| {
                let env = p["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .expect("env");
                env.push(json!({"name": "DOCKER_HOST", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}));
            },
            |pod| {
                let hosts = docker_host(pod);
                assert_eq!(hosts.len(), 1);
                assert!(hosts[0].get("value").is_none(), "not replaced");
            },
        ),
        allowed(
            "1,000 containers (the most a job pod may have)",
            |p| {
                let containers = p["spec"]["containers"].as_array_mut().expect("containers");
                containers.extend(
                    (1..=996).map(|i| json!({"name": format!("svc-{i}"), "image": "postgres"})),
                );
            },
            |pod| {
                class_applied(pod);
                let services = pod["spec"]["containers"].as_array().expect("containers");
                for svc in &services[3..] {
                    assert_eq!(
                        svc["resources"],
                        json!({"limits": {"cpu": "3", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}),
                        "{}",
                        svc["name"]
                    );
                }
            },
        ),
        allowed(
            "a 1 MB annotation value",
            |p| p["metadata"]["annotations"]["example.com/notes"] = json!(one_mb.clone()),
            |pod| {
                class_applied(pod);
                assert_eq!(
                    pod["metadata"]["annotations"]["example.com/notes"]
                        .as_str()
                        .map(str::len),
                    Some(1 << 20)
                );
            },
        ),
        allowed(
            "a 1 MB annotation key",
            |p| p["metadata"]["annotations"][format!("example.com/{one_mb}")] = json!("v"),
            class_applied,
        ),
        allowed(
            "a 1 MB env value",
            |p| {
                let env = p["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .expect("env");
                env.push(json!({"name": "BIG", "value": one_mb.clone()}));
            },
            class_applied,
        ),
    ];
    // Duplicate keys cannot be written through serde_json::Value: splice them in.
    let dup = cases
        .iter_mut()
        .find(|c| c.what.starts_with("duplicate annotation keys"))
        .expect("case");
    dup.body = spliced(
        |r| {
            r["request"]["object"]["metadata"]["annotations"]["ci.skao.int/cpu-limit"] = json!("@@")
        },
        br#""64", "ci.skao.int/cpu-limit": "2""#,
    );
    if let Want::Allowed { pod, .. } = &mut dup.want {
        pod["metadata"]["annotations"]["ci.skao.int/cpu-limit"] = json!("2");
    }
    // Deep nesting where the webhook does not look: allowed, the patch leaves it alone.
    for (what, path, raw) in [
        (
            "arrays nested 10,000 deep in an unknown pod field",
            "/spec/x",
            deep_arrays(10_000),
        ),
        (
            "objects nested 10,000 deep in an unknown container field",
            "/spec/containers/0/x",
            deep_objects(10_000),
        ),
        (
            "objects nested 10,000 deep in an env valueFrom",
            "/spec/containers/0/env/0/valueFrom",
            deep_objects(10_000),
        ),
    ] {
        let shallow = job_pod();
        let body = spliced(
            |r| {
                let object = &mut r["request"]["object"];
                match path {
                    "/spec/x" => object["spec"]["x"] = json!("@@"),
                    "/spec/containers/0/x" => object["spec"]["containers"][0]["x"] = json!("@@"),
                    _ => object["spec"]["containers"][0]["env"][0]["valueFrom"] = json!("@@"),
                }
            },
            &raw,
        );
        cases.push(Case {
            what,
            body,
            want: Want::Allowed {
                pod: shallow,
                check: class_applied,
            },
        });
    }
    cases
}

/// A normal review on a fresh connection: the server is still up and answering.
async fn still_answers(server: &Running, client: &Client, after: &str) {
    let mut conn = client
        .connect(server.webhook, Protocol::Http1)
        .await
        .unwrap_or_else(|e| panic!("after {after}: cannot connect: {e}"));
    let review = job_pod_review("normal", "gitlab", |_| {});
    let reply = conn.review(&review).await.json();
    assert_eq!(reply["response"]["allowed"], true, "after {after}: {reply}");
    class_applied(&patched_pod(&review, &reply));
}

async fn check(case: &Case, reply: &Reply) {
    let what = case.what;
    match &case.want {
        Want::Refused(status, reason) => {
            assert_eq!(reply.status, *status, "{what}: {}", reply.text());
            assert!(reply.text().contains(reason), "{what}: {}", reply.text());
        }
        Want::Denied(message) => {
            assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.text());
            let response = &reply.json()["response"];
            assert_eq!(response["allowed"], false, "{what}: {response}");
            assert_eq!(response["status"]["code"], 403, "{what}");
            let text = response["status"]["message"].as_str().expect("message");
            assert!(text.contains(message), "{what}: {text}");
            assert!(text.len() < 2_000, "{what}: a {} byte message", text.len());
        }
        Want::Allowed { pod, check } => {
            assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.text());
            let reply = reply.json();
            assert_eq!(reply["response"]["allowed"], true, "{what}: {reply}");
            assert_eq!(reply["response"]["uid"], "hostile", "{what}");
            let review = pod_review("hostile", "gitlab", pod.clone());
            // Applies the patch with json-patch: it must apply, and the pod must be right.
            let patched = patched_pod(&review, &reply);
            check(&patched);
        }
    }
}

#[tokio::test]
async fn hostile_and_malformed_reviews_get_their_documented_answers_and_the_server_stays_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |_| {}).await;
    for case in cases() {
        assert!(
            case.body.len() <= 4 << 20,
            "{}: {} bytes",
            case.what,
            case.body.len()
        );
        for protocol in [Protocol::Http1, Protocol::Http2] {
            let mut conn = client
                .connect(server.webhook, protocol)
                .await
                .expect("connect");
            let reply = conn
                .post("application/json", case.body.clone())
                .await
                .unwrap_or_else(|e| panic!("{} over {protocol:?}: no answer: {e}", case.what));
            check(&case, &reply).await;
        }
        still_answers(&server, &client, case.what).await;
    }
    assert_eq!(server.metric("ci_pod_webhook_panics_total").await, 0.0);
}

#[tokio::test]
async fn a_50_mb_body_is_refused_with_413_without_being_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |_| {}).await;
    // Chunked, with no declared length: cut off once past --max-body-bytes (4 MiB).
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let mut conn = client
            .connect(server.webhook, protocol)
            .await
            .expect("connect");
        let (tx, body) = ChannelBody::pair();
        let feeder = tokio::spawn(async move {
            let chunk = Bytes::from(vec![b' '; 1 << 20]);
            let mut sent = 0usize;
            // Stops when the server has answered and the connection is gone.
            while sent < 50 << 20 && tx.send(chunk.clone()).await.is_ok() {
                sent += chunk.len();
            }
            sent
        });
        let reply = tokio::time::timeout(PATIENCE, conn.send(post("application/json", body)))
            .await
            .expect("answered")
            .expect("a reply");
        assert_eq!(
            reply.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{}",
            reply.text()
        );
        assert!(reply.text().contains("4194304"), "{}", reply.text());
        drop(conn);
        let sent = tokio::time::timeout(PATIENCE, feeder)
            .await
            .expect("the feeder stops")
            .expect("join");
        assert!(
            sent < 50 << 20,
            "{protocol:?}: the server read all {sent} bytes"
        );
        still_answers(&server, &client, "a 50 MB chunked body").await;
    }
    // Declared: refused from the headers, answered while the client still sends.
    let mut raw = client.raw(server.webhook).await.expect("TLS");
    raw.write_all(
        b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
          content-length: 52428800\r\n\r\n",
    )
    .await
    .expect("write");
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..50 {
            if raw.write_all(&chunk).await.is_err() {
                return false;
            }
        }
        true
    });
    eventually("the 413 is counted", || async {
        server
            .metric(r#"ci_pod_webhook_requests_total{class="none",outcome="invalid"}"#)
            .await
            == 1.0 + 2.0
    })
    .await;
    let wrote_all = tokio::time::timeout(PATIENCE, writer)
        .await
        .expect("the writer stops")
        .expect("join");
    assert!(!wrote_all, "the server read the whole declared 50 MB");
    still_answers(&server, &client, "a declared 50 MB body").await;
    assert_eq!(
        server.metric("ci_pod_webhook_buffered_request_bytes").await,
        0.0
    );
}

#[tokio::test]
async fn a_body_that_stops_half_way_is_dropped_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |_| {}).await;
    let review = review_of(&job_pod());
    for _ in 0..3 {
        let mut raw = client.raw(server.webhook).await.expect("TLS");
        let head = format!(
            "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            review.len()
        );
        raw.write_all(head.as_bytes()).await.expect("write");
        raw.write_all(&review[..review.len() / 2])
            .await
            .expect("write");
        raw.flush().await.expect("flush");
        eventually("the half body is held", || async {
            server.metric("ci_pod_webhook_in_flight_requests").await == 1.0
        })
        .await;
        // The client goes away: a TLS close_notify, then the socket is closed.
        let _ = raw.shutdown().await;
        drop(raw);
        eventually("the request is given up", || async {
            server.metric("ci_pod_webhook_in_flight_requests").await == 0.0
                && server.metric("ci_pod_webhook_open_connections").await == 0.0
                && server.metric("ci_pod_webhook_buffered_request_bytes").await == 0.0
        })
        .await;
        still_answers(&server, &client, "a body that stopped half-way").await;
    }
    // Over HTTP/2: the stream is reset half-way.
    let mut conn = client
        .connect(server.webhook, Protocol::Http2)
        .await
        .expect("connect");
    let (tx, body) = ChannelBody::pair();
    let mut request = post("application/json", body);
    request
        .headers_mut()
        .insert("content-length", review.len().into());
    let in_flight = tokio::spawn(async move { conn.send(request).await });
    tx.send(Bytes::copy_from_slice(&review[..review.len() / 2]))
        .await
        .expect("send");
    eventually("the half body is held", || async {
        server.metric("ci_pod_webhook_in_flight_requests").await == 1.0
    })
    .await;
    in_flight.abort();
    drop(tx);
    eventually("the stream is given up", || async {
        server.metric("ci_pod_webhook_in_flight_requests").await == 0.0
            && server.metric("ci_pod_webhook_buffered_request_bytes").await == 0.0
    })
    .await;
    still_answers(&server, &client, "an HTTP/2 stream reset half-way").await;
    assert_eq!(server.metric("ci_pod_webhook_panics_total").await, 0.0);
}
