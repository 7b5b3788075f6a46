//! GPU placement on a node without a GPU: a job of a GPU class stays Pending, and the
//! scheduler says why (no node labelled for GPUs; labelled by mistake, no
//! `nvidia.com/gpu` to allocate); it never runs on the CPU node.

use std::time::Duration;

use serde_json::Value;

use super::ska;
use crate::support::e2e::*;

const GPU_CLASS: &str = "ska-k8srunner-dp-gpu-a100";

#[tokio::test]
#[ignore = "e2e on a real node: needs root, KUBEBUILDER_ASSETS with kubelet and kube-controller-manager, and the packages docs/e2e.md lists"]
async fn a_gpu_job_stays_pending_on_a_node_without_gpus_and_says_why() {
    let node = Node::take_turn().await;
    node.webhook("ska", &ska(docker_group())).await;
    let ns = node
        .namespace("node-gpu", "ska", &[(RUNNER_CLASS, GPU_CLASS)])
        .await;
    let pod = runnable("gitlab-runner-17.9-job-pod.json", "gpu-job", &[]);
    let stored = ns.create_pod(&pod).await.expect("the GPU job");
    assert_eq!(
        container(&stored, "build")["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    assert_eq!(stored["spec"]["runtimeClassName"], "nvidia");
    assert_eq!(stored["spec"]["nodeSelector"]["nvidia.com/gpu"], "true");

    // The CPU node is not labelled for GPUs: the class's nodeSelector keeps the job off.
    let message = unschedulable(&ns, "didn't match Pod's node affinity/selector").await;
    assert!(message.starts_with("0/1 nodes are available"), "{message}");

    // Labelled as a GPU node by mistake, it still has no GPU to allocate: the scheduler
    // names the resource, and the job still does not run.
    node.cp
        .label_node(&node.name, ("nvidia.com/gpu", "true"))
        .await;
    let message = unschedulable(&ns, "Insufficient nvidia.com/gpu").await;
    node.cp.unlabel_node(&node.name, "nvidia.com/gpu").await;
    assert!(message.starts_with("0/1 nodes are available"), "{message}");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = ns.get_pod("gpu-job").await;
    assert_eq!(later["status"]["phase"], "Pending");
    assert!(
        later["spec"]["nodeName"].is_null(),
        "{}",
        later["spec"]["nodeName"]
    );
}

/// The scheduler's message on pod gpu-job once it says `reason`.
async fn unschedulable(ns: &TestNamespace<'_>, reason: &str) -> String {
    let pod = ns
        .wait_for_pod(
            "gpu-job",
            &format!("unschedulable: {reason}"),
            POD_PATIENCE,
            |pod| {
                scheduled_condition(pod).is_some_and(|c| {
                    c["reason"] == "Unschedulable"
                        && c["message"].as_str().is_some_and(|m| m.contains(reason))
                })
            },
        )
        .await;
    assert!(
        pod["spec"]["nodeName"].is_null(),
        "bound: {}",
        pod["spec"]["nodeName"]
    );
    let condition = scheduled_condition(&pod).expect("PodScheduled");
    condition["message"]
        .as_str()
        .expect("a message")
        .to_string()
}

fn scheduled_condition(pod: &Value) -> Option<&Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodScheduled")
}
