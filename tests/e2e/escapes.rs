//! The shapes a job author uses to get past the class (issue 11: services named after
//! their alias, an init container running the job image, pod-level resources, GPUs
//! asked for outside `build`) go through the real API server: each is admitted and
//! stored exactly as `mutate` computes it offline. So the webhook's patch never turns a
//! runner's pod into one the API server refuses, pod-level resources included (the
//! API server checks container limits against the pod limit and the requests' sum
//! against the pod request).

use super::expect::{assert_stored_as, patched_offline};
use crate::support::e2e::*;

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn escape_shapes_are_stored_held_to_their_class() {
    let cp = ControlPlane::shared().await;
    let labels = [OPT_IN];
    let ns = cp.namespace("escapes", &labels).await;
    let _webhook = cp.webhook().await;
    for fixture in [
        "gitlab-runner-17.9-alias-services.json",
        "gitlab-runner-17.9-uid-gid-collector.json",
        "gitlab-runner-18.10-pod-level-resources.json",
        "gitlab-runner-17.9-gpu-reach.json",
    ] {
        let pod = job_pod(fixture);
        let stored = ns
            .create_pod(&pod)
            .await
            .unwrap_or_else(|e| panic!("{fixture}: the API server refused the patched pod: {e}"));
        let expected = patched_offline(&pod, &ns.name, &labels);
        assert_stored_as(&stored, &expected);
        // The pod-level block, where there is one, is stored as the webhook left it
        // (the API server defaults missing pod-level requests to the limits, as it does
        // for containers).
        let mut want = expected["spec"]["resources"].clone();
        if want.get("requests").is_none() && want.get("limits").is_some() {
            want["requests"] = want["limits"].clone();
        }
        assert_eq!(
            stored["spec"]["resources"], want,
            "{fixture}: spec.resources"
        );
    }
}
