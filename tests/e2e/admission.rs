//! Job pods through the real API server and the real `serve` process, registered with
//! manifests/base's MutatingWebhookConfiguration: what gets stored.

use serde_json::{Value, json};

use super::expect::{assert_stored_as, patched_offline, toleration};
use crate::support::e2e::*;

const V16_5: &str = "gitlab-runner-16.5-job-pod.json";
const V17_9: &str = "gitlab-runner-17.9-job-pod.json";
const GENERATE_NAME: &str = "gitlab-runner-16.1-generate-name.json";
const DOCKER_HOST: &str = "unix:///var/run/ci-dind/docker.sock";

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn the_base_webhook_configuration_is_registered_with_only_its_client_config_changed() {
    let cp = ControlPlane::shared().await;
    let webhook = cp.webhook().await;
    let rendered = base_manifest("MutatingWebhookConfiguration");
    let name = rendered["metadata"]["name"].as_str().expect("name");
    let output = cp.kubectl(
        &["get", "mutatingwebhookconfiguration", name, "-o", "json"],
        None,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stored: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let stored_hooks = stored["webhooks"].as_array().expect("webhooks");
    let rendered_hooks = rendered["webhooks"].as_array().expect("webhooks");
    assert_eq!(stored_hooks.len(), rendered_hooks.len());
    for (got, want) in stored_hooks.iter().zip(rendered_hooks) {
        for (field, value) in want.as_object().expect("webhook entry") {
            if field != "clientConfig" {
                assert_eq!(
                    &got[field], value,
                    "webhooks[].{field} as in manifests/base"
                );
            }
        }
        let path = want["clientConfig"]["service"]["path"]
            .as_str()
            .expect("a service path");
        assert_eq!(
            got["clientConfig"]["url"],
            format!("https://127.0.0.1:{}{path}", webhook.port)
        );
    }
    assert_eq!(stored["metadata"]["labels"], rendered["metadata"]["labels"]);
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn a_runner_17_9_job_pod_is_stored_with_its_class_docker_host_and_audit_annotations() {
    let cp = ControlPlane::shared().await;
    let labels = [OPT_IN];
    let ns = cp.namespace("runner-17-9", &labels).await;
    let webhook = cp.webhook().await;
    let pod = job_pod(V17_9);

    let stored = ns.create_pod(&pod).await.expect("the pod is created");

    assert_stored_as(&stored, &patched_offline(&pod, &ns.name, &labels));
    let audit = annotations(&stored);
    // The runner-name label says k8srunner.
    assert_eq!(audit["ci.skao.int/class"], "k8srunner");
    assert!(
        audit["ci.skao.int/policy"]
            .as_str()
            .is_some_and(|h| !h.is_empty())
    );
    let build = container(&stored, "build");
    assert_eq!(env_value(build, "DOCKER_HOST"), Some(DOCKER_HOST));
    assert_eq!(
        build["resources"]["limits"],
        json!({"cpu": "5", "memory": "10Gi"})
    );
    assert_eq!(
        stored["spec"]["nodeSelector"]["node-role.skatelescope.org/ci-worker"],
        "true"
    );
    let reviews = webhook.reviews(&ns.name, 1).await;
    assert_eq!(reviews.len(), 1, "one review: {reviews:?}");
    assert_eq!(reviews[0]["outcome"], "mutated");
    // The API server offers HTTP/2 to a loopback url webhook, and ours takes it.
    assert_eq!(reviews[0]["span"]["http"], "HTTP/2.0", "{}", reviews[0]);
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn a_runner_16_5_job_pod_in_a_gpu_class_namespace_is_stored_with_the_gpu_fields() {
    let cp = ControlPlane::shared().await;
    let labels = [OPT_IN, (RUNNER_CLASS, "k8srunner-gpu-v100")];
    let ns = cp.namespace("runner-16-5-gpu", &labels).await;
    cp.webhook().await;
    let pod = job_pod(V16_5);

    let stored = ns.create_pod(&pod).await.expect("the pod is created");

    assert_stored_as(&stored, &patched_offline(&pod, &ns.name, &labels));
    assert_eq!(
        annotations(&stored)["ci.skao.int/class"],
        "k8srunner-gpu-v100"
    );
    let build = container(&stored, "build");
    assert_eq!(build["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(env_value(build, "DOCKER_HOST"), Some(DOCKER_HOST));
    assert_eq!(stored["spec"]["runtimeClassName"], "nvidia");
    assert_eq!(stored["spec"]["nodeSelector"]["nvidia.com/gpu"], "true");
    let tolerations = stored["spec"]["tolerations"]
        .as_array()
        .expect("tolerations");
    assert!(
        tolerations.contains(&toleration("nvidia.com/gpu", "Exists")),
        "{tolerations:?}"
    );
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn a_pod_in_a_namespace_without_the_opt_in_label_is_stored_as_sent() {
    let cp = ControlPlane::shared().await;
    let ns = cp
        .namespace("not-opted-in", &[(RUNNER_CLASS, "k8srunner-gpu-v100")])
        .await;
    let webhook = cp.webhook().await;
    let pod = job_pod(V17_9);

    let stored = ns.create_pod(&pod).await.expect("the pod is created");

    assert_stored_as(&stored, &pod);
    assert!(
        webhook.reviews_in(&ns.name).is_empty(),
        "the namespaceSelector keeps it away"
    );
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn a_pod_with_only_generate_name_is_mutated_and_named_by_the_server() {
    let cp = ControlPlane::shared().await;
    let labels = [OPT_IN];
    let ns = cp.namespace("generate-name", &labels).await;
    cp.webhook().await;
    let pod = job_pod(GENERATE_NAME);
    assert!(
        pod["metadata"].get("name").is_none(),
        "the fixture has no name"
    );

    let stored = ns.create_pod(&pod).await.expect("the pod is created");

    let prefix = pod["metadata"]["generateName"]
        .as_str()
        .expect("generateName");
    let name = stored["metadata"]["name"].as_str().expect("a name");
    assert!(
        name.starts_with(prefix) && name.len() > prefix.len(),
        "{name}"
    );
    let mut expected = patched_offline(&pod, &ns.name, &labels);
    expected["metadata"]["name"] = json!(name);
    assert_stored_as(&stored, &expected);
    assert_eq!(annotations(&stored)["ci.skao.int/class"], "k8srunner");
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn an_invalid_override_is_refused_and_kubectl_shows_the_annotation() {
    let cp = ControlPlane::shared().await;
    let ns = cp.namespace("invalid-override", &[OPT_IN]).await;
    cp.webhook().await;
    let mut pod = job_pod(V17_9);
    pod["metadata"]["annotations"]["ci.skao.int/cpu-limit"] = json!("lots");
    let body = serde_json::to_vec(&pod).expect("JSON");

    let output = cp.kubectl(&["create", "--namespace", &ns.name, "-f", "-"], Some(&body));

    assert!(!output.status.success(), "kubectl create must fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("denied the request"), "{stderr}");
    assert!(
        stderr.contains("ci.skao.int/cpu-limit"),
        "names the annotation: {stderr}"
    );
    assert!(stderr.contains("lots"), "names the value: {stderr}");
    let name = pod["metadata"]["name"].as_str().expect("name");
    let get = cp.kubectl(&["get", "pod", "--namespace", &ns.name, name], None);
    assert!(!get.status.success(), "nothing was stored");
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn recreating_a_stored_patched_pod_changes_nothing() {
    let cp = ControlPlane::shared().await;
    let ns = cp
        .namespace(
            "recreate",
            &[OPT_IN, (RUNNER_CLASS, "ska-k8srunner-dp-gpu-a100")],
        )
        .await;
    let webhook = cp.webhook().await;
    let first = ns.create_pod(&job_pod(V16_5)).await.expect("first create");

    // What a client re-sending the stored pod sends: server fields removed.
    let mut again = renamed(&first, "recreated");
    again.as_object_mut().expect("pod").remove("status");
    let metadata = again["metadata"].as_object_mut().expect("metadata");
    for field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
        "generation",
    ] {
        metadata.remove(field);
    }
    let second = ns.create_pod(&again).await.expect("second create");

    assert_eq!(
        second["spec"], first["spec"],
        "the stored spec is unchanged"
    );
    assert_eq!(annotations(&second), annotations(&first));
    // A GPU-class job pod asks for a GPU once patched, so the GPU workloads entry
    // (docs/gpu-workloads.md) reviews it too, and leaves it to the opted-in entry: two
    // reviews per create, the first create's first review the only one changing anything.
    let reviews = webhook.reviews(&ns.name, 4).await;
    assert_eq!(reviews.len(), 4, "{reviews:?}");
    let outcomes: Vec<(&str, &str)> = reviews
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap_or(""),
                r["skip_reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let gpu_entry = ("skipped", "job pod: decided through the opted-in entry");
    for (create, expected) in [(0, "mutated"), (2, "unchanged")] {
        let both = &outcomes[create..create + 2];
        assert!(both.contains(&(expected, "")), "{reviews:?}");
        assert!(both.contains(&gpu_entry), "{reviews:?}");
    }
    for review in reviews.iter().filter(|r| r["outcome"] != "mutated") {
        assert_eq!(review["patch_operations"], 0, "{review}");
    }
}
