//! Issue 25, points 2 and 3, on the real API server: an in-place resize above the class
//! ceiling (`pods/resize`) and a privileged debug container (`pods/ephemeralcontainers`)
//! are refused with the webhook's message, through the entries manifests/base adds for
//! them; a resize within the ceiling and a plain debug container go through. And a
//! `failurePolicy: Fail` rule for a subresource the API server does not have is accepted
//! and never matches, which is what keeps the resize entry inert on clusters before the
//! subresource existed.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::support::e2e::*;

/// PATCHes `subresource` of pod `name` with a strategic merge patch, as `kubectl patch
/// --subresource` and `kubectl debug` do.
async fn patch_subresource(
    ns: &TestNamespace<'_>,
    name: &str,
    subresource: &str,
    patch: &Value,
) -> Result<Value, kube::Error> {
    let request = hyper::Request::patch(format!(
        "/api/v1/namespaces/{}/pods/{name}/{subresource}",
        ns.name
    ))
    .header("content-type", "application/strategic-merge-patch+json")
    .body(serde_json::to_vec(patch).expect("patch to JSON"))
    .expect("request");
    ns.cp.client().await.request::<Value>(request).await
}

/// The job pod of runner k8srunner (class max 8 CPU, 16Gi), stored through the webhook.
async fn stored_job_pod(ns: &TestNamespace<'_>) -> (String, Value) {
    let pod = job_pod("gitlab-runner-17.9-job-pod.json");
    let stored = ns.create_pod(&pod).await.expect("job pod created");
    assert_eq!(annotations(&stored)["ci.skao.int/class"], "k8srunner");
    let name = stored["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    (name, stored)
}

fn refusal(result: Result<Value, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(e)) => e.message.clone(),
        Err(other) => panic!("expected the API server's refusal, got {other}"),
        Ok(pod) => panic!(
            "expected a refusal, the API server stored it: build resources {}, ephemeral containers {}",
            container(&pod, "build")["resources"],
            pod["spec"]["ephemeralContainers"]
        ),
    }
}

fn build_resources(pod: &Value) -> Value {
    container(pod, "build")["resources"].clone()
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn a_resize_above_the_class_ceiling_is_refused_with_the_webhooks_message() {
    let cp = ControlPlane::shared().await;
    let _webhook = cp.webhook().await;
    let ns = cp.namespace("holes-resize", &[OPT_IN]).await;
    let (name, stored) = stored_job_pod(&ns).await;
    let before = build_resources(&stored);

    let over = json!({"spec": {"containers": [{"name": "build", "resources": {"limits": {"cpu": "64", "memory": "200Gi"}}}]}});
    let message = refusal(patch_subresource(&ns, &name, "resize", &over).await);
    assert!(
        message.contains(&format!("ci-pod-webhook: resize of pod {name}: spec.containers[build].resources.limits.cpu 64 is above the ceiling 8 of class k8srunner")),
        "{message}"
    );
    assert!(
        message.contains("limits.memory 200Gi is above the ceiling 16Gi of class k8srunner"),
        "{message}"
    );
    assert_eq!(
        build_resources(&ns.get_pod(&name).await),
        before,
        "nothing resized"
    );

    // A service container is held to the same ceiling.
    let service = json!({"spec": {"containers": [{"name": "svc-0", "resources": {"limits": {"cpu": "32"}}}]}});
    let containers = stored["spec"]["containers"].as_array().expect("containers");
    if containers.iter().any(|c| c["name"] == "svc-0") {
        let message = refusal(patch_subresource(&ns, &name, "resize", &service).await);
        assert!(message.contains("spec.containers[svc-0]"), "{message}");
    }

    // Within the ceiling: resized.
    let within =
        json!({"spec": {"containers": [{"name": "build", "resources": {"limits": {"cpu": "6"}}}]}});
    let resized = patch_subresource(&ns, &name, "resize", &within)
        .await
        .unwrap_or_else(|e| panic!("a resize within the ceiling: {e}"));
    assert_eq!(build_resources(&resized)["limits"]["cpu"], "6");
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn a_privileged_debug_container_is_refused_and_a_plain_one_added() {
    let cp = ControlPlane::shared().await;
    let _webhook = cp.webhook().await;
    let ns = cp.namespace("holes-ephemeral", &[OPT_IN]).await;
    let (name, stored) = stored_job_pod(&ns).await;
    let docker_volume = stored["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| {
            v["hostPath"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("docker.sock"))
        })
        .and_then(|v| v["name"].as_str())
        .expect("the runner's docker.sock volume")
        .to_string();
    let debugger = |name: &str, extra: Value| {
        let mut c = json!({
            "name": name,
            "image": "busybox:1.37",
            "stdin": true,
            "tty": true,
            "targetContainerName": "build",
            "terminationMessagePolicy": "File"
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            c[k] = v.clone();
        }
        c
    };
    let evil = debugger(
        "debugger-root",
        json!({
            "securityContext": {"privileged": true},
            "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}],
            "volumeMounts": [{"name": docker_volume, "mountPath": "/var/run/docker.sock"}]
        }),
    );
    let message = refusal(
        patch_subresource(
            &ns,
            &name,
            "ephemeralcontainers",
            &json!({"spec": {"ephemeralContainers": [evil]}}),
        )
        .await,
    );
    for needle in [
        "ci-pod-webhook: ephemeral container debugger-root: privileged",
        "env NVIDIA_VISIBLE_DEVICES",
        &format!("mounts volume {docker_volume} (the pod's Docker socket"),
        "ephemeralContainers: restricted",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert!(
        ns.get_pod(&name).await["spec"]
            .get("ephemeralContainers")
            .is_none()
    );

    // `kubectl debug -it POD --image=busybox --target=build`: added.
    let plain = debugger("debugger-plain", json!({}));
    let debugged = patch_subresource(
        &ns,
        &name,
        "ephemeralcontainers",
        &json!({"spec": {"ephemeralContainers": [plain]}}),
    )
    .await
    .unwrap_or_else(|e| panic!("a plain debug container: {e}"));
    let added = debugged["spec"]["ephemeralContainers"]
        .as_array()
        .expect("ephemeral containers");
    assert_eq!(added.len(), 1);
    assert_eq!(added[0]["name"], "debugger-plain");
}

/// Rule validation is syntactic (kubernetes `pkg/apis/admissionregistration/validation`,
/// `validateResources`), so an API server accepts a rule for a subresource it does not
/// have (as 1.26-1.31 do for `pods/resize`), and the rule never matches. Shown here with a `Fail` entry pointing nowhere, for a subresource no API
/// server has: were it ever called, every matching request would fail.
#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn subresource_rules_of_unknown_subresources_are_inert() {
    // Its own control plane: a Fail entry must not be able to touch other tests.
    let cp = ControlPlane::own("unknown-subresource", Options::default()).await;
    let configuration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "inert"},
        "webhooks": [{
            "name": "inert.ci-pod-webhook.ci.skao.int",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": "https://127.0.0.1:1/nowhere"},
            "rules": [{
                "operations": ["UPDATE", "CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods/no-such-subresource"],
                "scope": "Namespaced"
            }],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 1
        }]
    });
    let resource = ApiResource::erase::<MutatingWebhookConfiguration>(&());
    let object: DynamicObject = serde_json::from_value(configuration).expect("object");
    Api::<DynamicObject>::all_with(cp.client().await, &resource)
        .create(&PostParams::default(), &object)
        .await
        .expect("the API server accepts a rule for a subresource it does not have");
    // Give the API server time to load it, then create and resize a pod: nothing calls
    // the unreachable webhook.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let ns = cp.namespace("inert", &[]).await;
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}
    });
    ns.create_pod(&pod)
        .await
        .expect("created beside the inert entry");
    let resized = patch_subresource(
        &ns,
        "web",
        "resize",
        &json!({"spec": {"containers": [{"name": "web", "resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "2"}}}]}}),
    )
    .await
    .expect("resized beside the inert entry");
    assert_eq!(
        container(&resized, "web")["resources"]["limits"]["cpu"],
        "2"
    );
}
