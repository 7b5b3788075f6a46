//! End-to-end over HTTP/1.1: the API server started with `DISABLE_HTTP2=1` calls the
//! webhook the way it calls a `service` webhook in a real cluster. A control plane of its
//! own, as the shared one calls over HTTP/2. See tests/e2e.rs and docs/e2e.md.

use crate::support::e2e::*;

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn reviews_arrive_over_http1_as_from_a_service_webhook() {
    let cp = ControlPlane::own(
        "http1",
        Options {
            webhook_http2: false,
            ..Options::default()
        },
    )
    .await;
    let ns = cp.namespace("over-http1", &[OPT_IN]).await;
    let webhook = cp.webhook().await;

    let stored = ns
        .create_pod(&job_pod("gitlab-runner-17.9-job-pod.json"))
        .await
        .expect("the pod is created");

    assert_eq!(annotations(&stored)["ci.skao.int/class"], "k8srunner");
    let reviews = webhook.reviews(&ns.name, 1).await;
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    assert_eq!(reviews[0]["outcome"], "mutated");
    assert_eq!(reviews[0]["span"]["http"], "HTTP/1.1", "{}", reviews[0]);
}
