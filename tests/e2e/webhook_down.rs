//! End-to-end with the webhook stopped: the API server must do what manifests/base's
//! `failurePolicy` says. A control plane of its own, because stopping the webhook that
//! the configuration names would disturb every other test. See docs/e2e.md.

use crate::support::e2e::*;

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn with_the_webhook_stopped_the_api_server_follows_the_failure_policy() {
    let cp = ControlPlane::own("webhook-down", Options::default()).await;
    let ns = cp.namespace("webhook-down", &[OPT_IN]).await;
    let webhook = cp.webhook().await;
    let policy = base_manifest("MutatingWebhookConfiguration")["webhooks"][0]["failurePolicy"]
        .as_str()
        .expect("failurePolicy")
        .to_string();

    webhook.stop();
    let created = ns
        .create_pod(&job_pod("gitlab-runner-17.9-job-pod.json"))
        .await;

    match policy.as_str() {
        "Ignore" => {
            let stored = created.expect("Ignore: created without the webhook");
            assert!(
                !annotations(&stored).contains_key("ci.skao.int/class"),
                "not mutated: {:?}",
                annotations(&stored)
            );
        }
        "Fail" => {
            let error = created
                .expect_err("Fail: refused without the webhook")
                .to_string();
            assert!(error.contains("failed calling webhook"), "{error}");
        }
        other => panic!("unknown failurePolicy {other:?} in manifests/base"),
    }
}
