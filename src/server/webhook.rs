//! `POST /mutate` and `POST /mutate/gpu-workloads`: the HTTP face of the core.
//!
//! Both paths answer with the same core; the path says which webhook entry sent the
//! review ([`mutate::Entry`]): `/mutate` is the entry whose namespaceSelector requires
//! the opt-in label (so without cluster access the namespace counts as opted in),
//! `/mutate/gpu-workloads` the entry that sends GPU pods from every non-system
//! namespace (so without cluster access only the namespace's name is known). Job pods
//! are decided through `/mutate` only: a GPU job pod reaches both.
//!
//! The handler reads a bounded body (its bytes held against the body budget), loads the
//! current policy (one atomic load: a review sees one whole policy), parses the review
//! (reading the pod in the same pass when the cached namespace labels say it will be
//! needed), asks the namespace source for the labels it did not find cached, calls
//! [`admission::respond`], and records one log line and the metrics.
//! A readable review always gets HTTP 200, denials included; only an unreadable request
//! gets a 4xx, with a message that says what is wrong with it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use prometheus_client::metrics::counter::Counter;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};
use tower_http::timeout::TimeoutLayer;
use tracing::field::Empty;

use super::budget::{BodyBudget, Held};
use crate::cluster::{Cluster, NamespaceLabels, RuntimeClasses};
use crate::metrics::{GaugeGuard, Metrics, NO_CLASS, PolicySeries};
use ci_pod_webhook_core::admission::{self, AdmissionError};
use ci_pod_webhook_core::mutate::{self, Entry, NamespaceFacts};
use ci_pod_webhook_core::policy::Policy;

pub const MUTATE_PATH: &str = "/mutate";
/// The path of the GPU workloads webhook entry.
pub const GPU_WORKLOADS_PATH: &str = "/mutate/gpu-workloads";

/// The core's namespace facts for `labels`, for a review through `entry`: without
/// cluster access, trusting the namespaceSelector holds only for the opted-in entry.
fn namespace_facts(entry: Entry, labels: &NamespaceLabels) -> NamespaceFacts<'_> {
    match (entry, labels.as_facts()) {
        (Entry::GpuWorkloads, NamespaceFacts::TrustSelector) => NamespaceFacts::NameOnly,
        (_, facts) => facts,
    }
}

/// What the webhook needs to answer reviews; shared by every connection.
#[derive(Debug)]
pub struct Webhook {
    policy: ArcSwap<ActivePolicy>,
    cluster: Cluster,
    /// The cluster's RuntimeClass names; from the cluster unless a test sets them.
    runtime_classes: RuntimeClasses,
    metrics: Metrics,
    max_body_bytes: usize,
    budget: BodyBudget,
    /// Bumped by every [`Webhook::set_policy`]: the job-pod watch judges again.
    policy_changes: tokio::sync::watch::Sender<u64>,
}

/// The policy in force, with its metrics series looked up once.
#[derive(Debug)]
pub struct ActivePolicy {
    pub policy: Policy,
    series: PolicySeries,
}

impl crate::cluster::pods::InForce for ActivePolicy {
    fn policy(&self) -> &Policy {
        &self.policy
    }
}

impl Webhook {
    /// `max_body_bytes` bounds one request body, `max_buffered_bytes` all of them
    /// together (see [`BodyBudget`]; with `trusted_peers`, part of it is kept for theirs).
    pub fn new(
        policy: Policy,
        cluster: Cluster,
        metrics: Metrics,
        max_body_bytes: usize,
        max_buffered_bytes: usize,
        trusted_peers: bool,
    ) -> Self {
        let active = ActivePolicy {
            series: metrics.policy_series(&policy),
            policy,
        };
        let budget = BodyBudget::new(
            max_buffered_bytes,
            max_body_bytes,
            trusted_peers,
            metrics.buffered_request_bytes.clone(),
        );
        Webhook {
            policy: ArcSwap::from_pointee(active),
            runtime_classes: cluster.runtime_classes(),
            cluster,
            metrics,
            max_body_bytes,
            budget,
            policy_changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Checks GPU pods against these RuntimeClass names instead of the cluster's.
    #[must_use]
    pub fn with_runtime_classes(mut self, runtime_classes: RuntimeClasses) -> Self {
        self.runtime_classes = runtime_classes;
        self
    }

    /// Puts `policy` in force for every review that starts from now on.
    pub fn set_policy(&self, policy: Policy) {
        let series = self.metrics.policy_series(&policy);
        self.policy.store(Arc::new(ActivePolicy { policy, series }));
        self.policy_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes each time a new policy is put in force.
    pub fn policy_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.policy_changes.subscribe()
    }

    pub fn policy(&self) -> Arc<ActivePolicy> {
        self.policy.load_full()
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}

/// The webhook's routes, ready for `tower::ServiceExt::oneshot` in tests; for
/// connections from an address outside `--trusted-peers` (or from anyone, without them).
pub fn app(webhook: Arc<Webhook>, request_timeout: Duration) -> Router {
    routes(
        Lane {
            webhook,
            trusted: false,
        },
        request_timeout,
    )
}

/// [`app`] for connections from `--trusted-peers`: their request bodies draw on the
/// whole body budget.
pub fn trusted_app(webhook: Arc<Webhook>, request_timeout: Duration) -> Router {
    routes(
        Lane {
            webhook,
            trusted: true,
        },
        request_timeout,
    )
}

/// The webhook, and whether the connection a request came on is from a trusted peer.
#[derive(Clone, Debug)]
struct Lane {
    webhook: Arc<Webhook>,
    trusted: bool,
}

fn routes(lane: Lane, request_timeout: Duration) -> Router {
    let panics = lane.webhook.metrics.panics.clone();
    Router::new()
        .route(MUTATE_PATH, post(mutate).fallback(wrong_method))
        .route(
            GPU_WORKLOADS_PATH,
            post(mutate_gpu_workloads).fallback(wrong_method),
        )
        .with_state(lane)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(CatchPanicLayer::custom(PanicAnswer { panics }))
}

/// Last resort: a panic is a bug, but the API server must still get an answer (and
/// `failurePolicy: Ignore` then lets the pod through), and someone must hear of it.
#[derive(Clone, Debug)]
pub struct PanicAnswer {
    pub panics: Counter,
}

impl ResponseForPanic for PanicAnswer {
    type ResponseBody = Body;

    fn response_for_panic(
        &mut self,
        _panic: Box<dyn std::any::Any + Send + 'static>,
    ) -> axum::http::Response<Body> {
        self.panics.inc();
        tracing::error!("panic while handling a request; answered 500");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
    }
}

/// Why a request could not be read as an AdmissionReview.
#[derive(Debug, thiserror::Error)]
enum Rejection {
    #[error("content type {0:?} is not supported: send the AdmissionReview as application/json")]
    ContentType(String),
    #[error("the body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error(transparent)]
    Review(#[from] AdmissionError),
}

impl Rejection {
    fn status(&self) -> StatusCode {
        match self {
            Rejection::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Body(_) | Rejection::Review(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = self.status();
        let text = format!("{self}\n");
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response()
    }
}

async fn mutate(State(lane): State<Lane>, request: Request) -> Response {
    handle(&lane, Entry::OptedIn, request).await
}

async fn mutate_gpu_workloads(State(lane): State<Lane>, request: Request) -> Response {
    handle(&lane, Entry::GpuWorkloads, request).await
}

async fn handle(lane: &Lane, entry: Entry, request: Request) -> Response {
    let webhook = &*lane.webhook;
    let started = Instant::now();
    let _in_flight = GaugeGuard::new(&webhook.metrics.in_flight);
    // The HTTP version shows which protocol the API server chose: HTTP/1.1 for a
    // `service` webhook, HTTP/2 (when offered) for a `url` one.
    let span = tracing::info_span!(
        "review",
        uid = Empty,
        namespace = Empty,
        http = ?request.version()
    );
    let (parts, body) = request.into_parts();
    match review(lane, entry, &parts.headers, body, &span, started).await {
        Ok(response) => response,
        Err(rejection) => {
            let elapsed = started.elapsed();
            webhook.metrics.record_invalid(elapsed);
            tracing::info!(
                parent: &span,
                status = rejection.status().as_u16(),
                error = %rejection,
                outcome = "invalid",
                latency_us = micros(elapsed),
                "rejected"
            );
            rejection.into_response()
        }
    }
}

async fn review(
    lane: &Lane,
    entry: Entry,
    headers: &HeaderMap,
    body: Body,
    span: &tracing::Span,
    started: Instant,
) -> Result<Response, Rejection> {
    let webhook = &*lane.webhook;
    check_content_type(headers)?;
    // The body's bytes count against the budget until the answer is made.
    let held = webhook.budget.hold(lane.trusted);
    let (bytes, _held) =
        read_body(body, headers, webhook.max_body_bytes, &webhook.budget, held).await?;
    // Until the whole body is in: the client's pace, not ours.
    let read = started.elapsed();
    // An owned `Arc`, not a guard: it is held across the namespace lookup's await.
    let active = webhook.policy.load_full();
    // Read the pod in the same pass when the namespace is known to be in scope (or not
    // known yet: reading it is then only a guess, checked again by the core); when it is
    // known to be out of scope, the review is answered without reading the pod. The
    // labels found are kept, so the core decides on the same ones: `parse_with` asks only
    // about the request's own namespace, and a body that names it twice is not a review.
    let mut peeked = None;
    let review = admission::parse_with(&bytes, |namespace| {
        peeked = webhook.cluster.peek(namespace);
        peeked.as_ref().is_none_or(|labels| {
            mutate::in_scope(&active.policy, namespace, namespace_facts(entry, labels))
        })
    })?;
    span.record("uid", review.uid());
    span.record("namespace", review.namespace());
    let labels = match peeked {
        Some(labels) => labels,
        None => webhook.cluster.labels(review.namespace()).await,
    };
    let runtime_classes = webhook.runtime_classes.current();
    let facts = mutate::Facts {
        namespace: namespace_facts(entry, &labels),
        runtime_classes: RuntimeClasses::facts(runtime_classes.as_ref()),
        entry,
    };
    let response = admission::respond(&active.policy, facts, &review)?;
    let elapsed = started.elapsed();
    let answer = &response.answer;
    webhook
        .metrics
        .record_review(&active.series, answer, elapsed);
    // A skipped request has no pod name of its own: the request's.
    let pod = match answer.pod() {
        "" => review.request.name.as_deref().unwrap_or(""),
        name => name,
    };
    tracing::info!(
        parent: span,
        pod,
        class = answer.class().unwrap_or(NO_CLASS),
        outcome = answer.outcome.as_str(),
        skip_reason = answer.skip_reason().map(|r| r.as_str()),
        patch_operations = answer.patch_operations(),
        latency_us = micros(elapsed),
        body_us = micros(read),
        "review"
    );
    Ok(([(header::CONTENT_TYPE, "application/json")], response.body).into_response())
}

/// `application/json`, with no charset or UTF-8 (JSON is UTF-8 on the wire).
fn check_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(Rejection::ContentType("(none)".into()));
    };
    let text = value.to_str().unwrap_or("(not text)");
    let mut parts = text.split(';').map(str::trim);
    let essence_ok = parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("application/json"));
    let params_ok = parts.all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let value = value.trim().trim_matches('"');
            value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    });
    if essence_ok && params_ok {
        Ok(())
    } else {
        Err(Rejection::ContentType(text.chars().take(100).collect()))
    }
}

/// Reads at most `limit` bytes: a declared length above it is refused before reading,
/// and a chunked body is cut off as soon as it passes it. Each chunk takes its size from
/// the budget before it is kept.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    budget: &BodyBudget,
    mut held: Held,
) -> Result<(Bytes, Held), Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Rejection::TooLarge(limit));
    }
    let mut body = Limited::new(body, limit);
    let mut chunks: Vec<Bytes> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) if error.is::<LengthLimitError>() => {
                return Err(Rejection::TooLarge(limit));
            }
            Err(error) => return Err(Rejection::Body(error.to_string())),
        };
        if let Ok(data) = frame.into_data() {
            budget.take(&mut held, data.len()).await;
            chunks.push(data);
        }
    }
    // Most bodies arrive in one chunk: no copy. Nothing is reserved ahead of the bytes
    // (for a declared length, say). A body of several chunks is copied into one while
    // the chunks still live, so for a moment it takes twice the bytes it holds in the
    // budget: memory stays within twice the budget.
    let bytes = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => Bytes::from(chunks.concat()),
    };
    Ok((bytes, held))
}

async fn wrong_method(State(lane): State<Lane>) -> Response {
    lane.webhook.metrics.record_invalid(Duration::ZERO);
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        "only POST is allowed on the webhook paths\n",
    )
        .into_response()
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
