//! End-to-end: `ci-pod-webhook serve` against a real kube-apiserver (and kube-scheduler),
//! installed from manifests/base. One control plane for the whole binary, one namespace
//! per test; the API server calls the webhook over HTTP/2 here (tests/e2e_http1.rs:
//! HTTP/1.1, as in a cluster).
//!
//! Ignored by a plain `cargo test`: they need the control-plane binaries. Run them with
//! `KUBEBUILDER_ASSETS=DIR cargo test --test e2e --test e2e_http1 --test e2e_webhook_down --test e2e_audit -- --ignored`
//! (docs/e2e.md; `.ci/run` does it on every run).

#[path = "e2e/admissible.rs"]
mod admissible;
#[path = "e2e/admission.rs"]
mod admission;
#[path = "e2e/escapes.rs"]
mod escapes;
#[path = "e2e/expect.rs"]
mod expect;
#[path = "e2e/namespaces.rs"]
mod namespaces;
#[path = "e2e/scheduling.rs"]
mod scheduling;
#[path = "e2e/support/mod.rs"]
mod support;
