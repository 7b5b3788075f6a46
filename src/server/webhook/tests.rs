//! The webhook router driven with `tower::ServiceExt::oneshot`: no socket, no TLS.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use prometheus_client::registry::Registry;
use tower::ServiceExt as _;

use super::*;
use ci_pod_webhook_core::admission::PodReview;

fn webhook() -> (Arc<Webhook>, Registry) {
    let mut registry = crate::metrics::new_registry();
    let metrics = Metrics::register(&mut registry);
    let webhook = Webhook::new(
        Policy::embedded(),
        Cluster::default(),
        metrics,
        1024,
        4096,
        false,
    );
    (Arc::new(webhook), registry)
}

async fn send(request: Request<Body>) -> (StatusCode, String) {
    let (webhook, _) = webhook();
    let response = app(webhook, Duration::from_secs(5))
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn post(content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(MUTATE_PATH)
        .header("content-type", content_type)
        .body(body.into())
        .expect("request")
}

const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",
  "request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"ConfigMap"},
  "resource":{"group":"","version":"v1","resource":"configmaps"},
  "operation":"CREATE","namespace":"ci","userInfo":{"username":"x"}}}"#;

#[tokio::test]
async fn a_readable_review_is_answered_with_200_and_its_uid() {
    let (status, body) = send(post("application/json; charset=utf-8", REVIEW)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#""uid":"u-1""#), "{body}");
}

#[tokio::test]
async fn other_content_types_get_415() {
    for content_type in [
        "text/plain",
        "application/json; charset=latin1",
        "application/jsonx",
    ] {
        let (status, body) = send(post(content_type, REVIEW)).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        assert!(body.contains("application/json"), "{body}");
    }
    let request = Request::post(MUTATE_PATH)
        .body(Body::from(REVIEW))
        .expect("request");
    assert_eq!(send(request).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn a_body_above_the_limit_gets_413_declared_or_streamed() {
    // No content-length header in a oneshot request: the reader cuts the body off.
    let (status, body) = send(post("application/json", vec![b' '; 2048])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("1024 bytes"), "{body}");

    // A declared length above the limit is refused before the body is read.
    let declared = Request::post(MUTATE_PATH)
        .header("content-type", "application/json")
        .header("content-length", "50000000")
        .body(Body::from(REVIEW))
        .expect("request");
    assert_eq!(send(declared).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unreadable_reviews_get_400_with_the_reason() {
    for (body, reason) in [
        ("not json", "not valid JSON"),
        ("[]", "not an AdmissionReview: expected a JSON object"),
        (
            "\"a string\"",
            "not an AdmissionReview: expected a JSON object",
        ),
        ("null", "not an AdmissionReview: expected a JSON object"),
        ("", "the body is empty"),
        (
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            "no request",
        ),
        (
            r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#,
            "apiVersion",
        ),
    ] {
        let (status, text) = send(post("application/json", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(text.contains(reason), "{body}: {text}");
    }
}

#[tokio::test]
async fn other_methods_get_405_and_other_paths_404() {
    let get = Request::builder()
        .method(Method::GET)
        .uri(MUTATE_PATH)
        .body(Body::empty())
        .expect("request");
    let (status, _) = send(get).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = send(
        Request::post("/other")
            .header("content-type", "application/json")
            .body(Body::from(REVIEW))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_panic_is_answered_with_500_and_counted() {
    let panics = prometheus_client::metrics::counter::Counter::default();
    let router = Router::new()
        .route("/boom", axum::routing::get(boom))
        .layer(CatchPanicLayer::custom(PanicAnswer {
            panics: panics.clone(),
        }));
    let request = Request::get("/boom").body(Body::empty()).expect("request");
    let response = router.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(panics.get(), 1);
}

async fn boom() -> &'static str {
    panic!("a bug")
}

#[tokio::test]
async fn without_cluster_access_only_the_opt_in_entry_vouches_for_the_namespace() {
    // No cluster (Cluster::default): a review on /mutate counts as opted in, one on
    // /mutate/gpu-workloads (every non-system namespace) knows only the namespace name.
    let review = |containers: serde_json::Value| {
        let pod =
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": containers}});
        String::from_utf8(PodReview::create("ci-x", &pod).by("x").to_json()).expect("UTF-8")
    };
    let gpu = serde_json::json!({"limits": {"nvidia.com/gpu": "1"}});
    let job = review(serde_json::json!([{"name": "build", "resources": gpu}, {"name": "helper"}]));
    let workload = review(serde_json::json!([{"name": "cuda", "resources": gpu}]));
    let patched = |path: &'static str, body: String| async move {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("request");
        let (status, body) = send(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.contains(r#""patch":"#)
    };
    assert!(
        patched(MUTATE_PATH, job.clone()).await,
        "job pod via the opt-in entry"
    );
    assert!(
        !patched(GPU_WORKLOADS_PATH, job).await,
        "a job pod via the GPU entry: its namespace may not have opted in"
    );
    assert!(
        patched(GPU_WORKLOADS_PATH, workload.clone()).await,
        "GPU workload in ci-x"
    );
    assert!(
        patched(MUTATE_PATH, workload).await,
        "the same decision on /mutate"
    );
}
