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
/// so that endpoints stop sending reviews to a terminating pod.
async fn readyz(State(admin): State<Admin>) -> Response {
    if admin.draining.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else if !admin.webhook.cluster().is_ready() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "namespace labels not loaded yet\n",
        )
            .into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics(State(admin): State<Admin>) -> Response {
    let mut text = String::with_capacity(16 * 1024);
    match prometheus_client::encoding::text::encode(&mut text, &admin.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}
