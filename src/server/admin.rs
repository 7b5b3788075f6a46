//! The admin port (plain HTTP, not for the API server): `/livez`, `/readyz`, `/metrics`.
//!
//! Kept apart from the webhook port so that probes and scrapes need no TLS, cannot be
//! starved by review traffic, and stay out of the per-review log lines.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::webhook::Webhook;
use crate::cluster::Readiness;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the admin endpoints report on.
#[derive(Clone, Debug)]
pub struct Admin {
    pub registry: Arc<Registry>,
    pub webhook: Arc<Webhook>,
    /// Cancelled when the server starts draining.
    pub draining: CancellationToken,
}

pub fn app(admin: Admin) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(admin)
}

/// Ready once the policy and certificate are loaded (they are before the ports are
/// bound) and the namespace source is ready; not ready from the first drain signal on,
/// so that endpoints stop sending reviews to a terminating pod. A 503 says why in its
/// body (the kubelet's probe event shows only the status; `kubectl exec` or a
/// port-forward shows the body, and the log has the same line).
async fn readyz(State(admin): State<Admin>) -> Response {
    if admin.draining.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    match admin.webhook.cluster().readiness() {
        Readiness::Ready => "ready\n".into_response(),
        Readiness::NotReady(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(admin): State<Admin>) -> Response {
    let mut text = String::with_capacity(16 * 1024);
    match prometheus_client::encoding::text::encode(&mut text, &admin.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}
