//! The class's nodeSelector and tolerations.

use super::*;

#[test]
fn the_policy_node_selector_wins_and_other_keys_stay() {
    let mut pod = job_pod();
    pod["spec"]["nodeSelector"] =
        json!({"node-role.skatelescope.org/ci-worker": "false", "zone": "a"});
    let out = run(&pod);
    assert_eq!(
        out.pod()["spec"]["nodeSelector"],
        json!({"node-role.skatelescope.org/ci-worker": "true", "zone": "a"})
    );
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("replaced by node-role.skatelescope.org/ci-worker=true"))
    );
}

#[test]
fn tolerations_are_a_set() {
    let mut pod = with_runner(job_pod(), "k8srunner-gpu-v100");
    pod["spec"]["tolerations"] = json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "nvidia.com/gpu", "operator": "Exists"}
    ]);
    let out = run(&pod);
    assert_eq!(
        out.pod()["spec"]["tolerations"].as_array().map(Vec::len),
        Some(2)
    );
    // A narrower existing toleration (one effect) does not count as equal.
    let mut pod = with_runner(job_pod(), "k8srunner-gpu-v100");
    pod["spec"]["tolerations"] =
        json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
    assert_eq!(
        run(&pod).pod()["spec"]["tolerations"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}
