//! With kube-scheduler: job pods, as the webhook stored them, land on the nodes their
//! class names, and never on a node without the CI label.

use serde_json::json;

use crate::support::e2e::*;

const CI_NODE: &str = "ci-node";
const GPU_NODE: &str = "gpu-node";
const PLAIN_NODE: &str = "plain-node";

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn job_pods_are_bound_to_the_nodes_their_class_names() {
    let cp = ControlPlane::shared().await;
    cp.webhook().await;
    let ci_label = json!({"node-role.skatelescope.org/ci-worker": "true"});
    cp.create_node(CI_NODE, ci_label.clone(), json!([]), 0)
        .await;
    cp.create_node(
        GPU_NODE,
        json!({"node-role.skatelescope.org/ci-worker": "true", "nvidia.com/gpu": "true"}),
        json!([{"key": "nvidia.com/gpu", "value": "true", "effect": "NoExecute"}]),
        4,
    )
    .await;
    // Everything a node can offer, but not labelled for CI.
    cp.create_node(PLAIN_NODE, json!({"nvidia.com/gpu": "true"}), json!([]), 4)
        .await;
    cp.scheduler().await;

    let cpu = cp.namespace("scheduling-cpu", &[OPT_IN]).await;
    let gpu = cp
        .namespace(
            "scheduling-gpu",
            &[OPT_IN, (RUNNER_CLASS, "k8srunner-gpu-v100")],
        )
        .await;
    // The fixtures ask for the CI label themselves; without it only the webhook puts
    // the pods on CI nodes.
    let mut pod = job_pod("gitlab-runner-17.9-job-pod.json");
    pod["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("nodeSelector");
    let name = pod["metadata"]["name"].as_str().expect("name").to_string();

    cpu.create_pod(&pod).await.expect("CPU job pod");
    gpu.create_pod(&pod).await.expect("GPU job pod");

    assert_eq!(cpu.wait_for_binding(&name).await, CI_NODE);
    assert_eq!(gpu.wait_for_binding(&name).await, GPU_NODE);
    let on_plain = cp.kubectl(
        &[
            "get",
            "pods",
            "--all-namespaces",
            "--field-selector",
            "spec.nodeName=plain-node",
            "-o",
            "name",
        ],
        None,
    );
    assert!(on_plain.status.success());
    assert_eq!(
        String::from_utf8_lossy(&on_plain.stdout).trim(),
        "",
        "nothing on {PLAIN_NODE}"
    );
}
