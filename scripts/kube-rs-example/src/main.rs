// The kube-rs admission controller example, as published, for the comparison in
// scripts/bench-e2e.sh (BENCHMARKS.md). Not part of ci-pod-webhook.
//
// Source: https://github.com/kube-rs/kube, examples/admission_controller.rs at commit
// ac95b1999a549bb41aa9e467410f6d97c09341c2 (2026-07-24, after the 4.2.0 release; the file
// last changed in db1c4aa885f79e45081b28227e8fc09698c26987, 2025-12-27). The kube 5.0.0
// release commit (54a3128acbd51aae51bf5c4af4e1d19146fc66bd) was not available here; this
// file builds unchanged against kube 5.0.0 from crates.io.
// Copyright the kube-rs authors; licensed under the Apache License, Version 2.0
// (https://www.apache.org/licenses/LICENSE-2.0).
//
// Changed from upstream (marked `bench:`), nothing else and nothing in the request path:
// - the port comes from ADMISSION_PORT (upstream: always 8443, still the default);
// - the certificate and key paths come from ADMISSION_TLS_CRT and ADMISSION_TLS_KEY
//   (defaults: upstream's admission-controller-tls.crt and admission-controller-tls.key).
// The address is upstream's ADMISSION_PRIVATE_IP, as before; this header was added.

use axum::{Json, Router, routing::post};
use axum_server::tls_rustls::RustlsConfig;
use json_patch::jsonptr::PointerBuf;
use kube::core::{
    DynamicObject, Resource, ResourceExt,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
};
use std::{error::Error, net::SocketAddr};
use tower_http::trace::TraceLayer;
use tracing::*;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt::init();

    let app = Router::new().route("/mutate", post(mutate_handler)).layer(
        TraceLayer::new_for_http()
            .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(Level::INFO)),
    );

    // You must generate a certificate for the service / url,
    // encode the CA in the MutatingWebhookConfiguration, and terminate TLS here.
    // See admission_setup.sh + admission_controller.yaml.tpl for how to do this.
    let port = std::env::var("ADMISSION_PORT").unwrap_or_else(|_| "8443".into()); // bench: port from env
    let addr = format!("{}:{port}", std::env::var("ADMISSION_PRIVATE_IP").unwrap());
    axum_server::bind_rustls(
        // SocketAddr::from(([0, 0, 0, 0], 8443)), // in-cluster
        addr.parse::<SocketAddr>().unwrap(), // local-dev
        // bench: certificate and key paths from env
        RustlsConfig::from_pem_file(
            std::env::var("ADMISSION_TLS_CRT").unwrap_or_else(|_| "admission-controller-tls.crt".into()),
            std::env::var("ADMISSION_TLS_KEY").unwrap_or_else(|_| "admission-controller-tls.key".into()),
        )
            .await
            .unwrap(),
    )
    .serve(app.into_make_service())
    .await
    .unwrap();
}

// A general /mutate handler, handling errors from the underlying business logic
async fn mutate_handler(
    Json(body): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    // Parse incoming webhook AdmissionRequest first
    let req: AdmissionRequest<_> = match body.try_into() {
        Ok(req) => req,
        Err(err) => {
            error!("invalid request: {}", err.to_string());
            return Json(AdmissionResponse::invalid(err.to_string()).into_review());
        }
    };

    // Then construct a AdmissionResponse
    let mut res = AdmissionResponse::from(&req);
    // req.Object always exists for us, but could be None if extending to DELETE events
    if let Some(obj) = req.object {
        let name = obj.name_any(); // apiserver may not have generated a name yet
        let kind = obj.types.clone().unwrap_or_default().kind;
        res = match mutate(res.clone(), &obj) {
            Ok(res) => {
                info!("accepted: {:?} on {kind}/{name}", req.operation);
                res
            }
            Err(err) => {
                warn!("denied: {:?} on {kind}/{name} ({})", req.operation, err);
                res.deny(err.to_string())
            }
        };
    };
    // Wrap the AdmissionResponse wrapped in an AdmissionReview
    Json(res.into_review())
}

// The main handler and core business logic, failures here implies rejected applies
fn mutate(res: AdmissionResponse, obj: &DynamicObject) -> Result<AdmissionResponse, Box<dyn Error>> {
    // If the resource contains an "illegal" label, we reject it
    if obj.labels().contains_key("illegal") {
        return Err("Resource contained 'illegal' label".into());
    }

    // If the resource doesn't contain "admission", we add it to the resource.
    if !obj.labels().contains_key("admission") {
        let mut patches = Vec::new();

        // Ensure labels exist before adding a key to it
        if obj.meta().labels.is_none() {
            patches.push(json_patch::PatchOperation::Add(json_patch::AddOperation {
                path: PointerBuf::from_tokens(["metadata", "labels"]),
                value: serde_json::json!({}),
            }));
        }
        // Add our label
        patches.push(json_patch::PatchOperation::Add(json_patch::AddOperation {
            path: PointerBuf::from_tokens(["metadata", "labels", "admission"]),
            value: serde_json::Value::String("modified-by-admission-controller".into()),
        }));
        Ok(res.with_patch(json_patch::Patch(patches))?)
    } else {
        Ok(res)
    }
}
