//! End-to-end: `ci-pod-webhook serve` against a real kube-apiserver (and kube-scheduler),
//! installed from manifests/base. One test binary (docs/e2e.md lists what each file
//! proves).
//!
//! Most tests share one control plane (`ControlPlane::shared()`), one namespace each; the
//! API server calls the webhook over HTTP/2 there. A test that would disturb the others
//! (stops the webhook, reloads its policy, changes Nodes, the RuntimeClass or the webhook
//! configuration, counts the webhook's requests, or needs the API server started with
//! `DISABLE_HTTP2=1`) starts a private one (`ControlPlane::own(..)`), stopped at its end.
//!
//! Ignored by a plain `cargo test`: they need the control-plane binaries. Run them with
//! `KUBEBUILDER_ASSETS=DIR cargo test --test e2e -- --ignored` (docs/e2e.md; `.ci/run`
//! does it on every run).

// This binary uses `support::e2e`; the rest of support/ is tests/integration.rs's.
#[allow(dead_code, unused_imports)]
mod support;

mod e2e {
    mod admissible;
    mod admission;
    mod audit;
    mod doctor;
    mod escapes;
    mod expect;
    mod gpu_workloads;
    mod http1;
    mod in_pod;
    mod live_audit;
    mod namespaces;
    mod node;
    mod scheduling;
    mod sizing_series;
    mod ska_walkthrough;
    mod subresources;
    mod webhook_down;
}
