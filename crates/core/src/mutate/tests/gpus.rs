//! GPU classes: GPUs, placement and the RuntimeClass; GPUs outside a GPU class.

use super::*;

#[test]
fn gpu_classes_get_gpus_placement_and_runtime_class() {
    let out = run(&with_runner(job_pod(), "k8srunner-gpu-v100"));
    let pod = out.pod();
    assert_eq!(
        container(pod, "build")["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    assert!(
        container(pod, "helper")["resources"]["limits"]
            .get("nvidia.com/gpu")
            .is_none()
    );
    assert_eq!(pod["spec"]["runtimeClassName"], "nvidia");
    assert_eq!(
        pod["spec"]["nodeSelector"],
        json!({"node-role.skatelescope.org/ci-worker": "true", "nvidia.com/gpu": "true"})
    );
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([{"key": "nvidia.com/gpu", "operator": "Exists"}])
    );
}

#[test]
fn the_gpu_override_is_bounded_by_the_class() {
    let a100 = |n: &str| {
        run(&annotate(
            with_runner(job_pod(), "ska-k8srunner-dp-gpu-a100"),
            &[("ci.skao.int/gpus", n)],
        ))
    };
    assert_eq!(
        container(a100("3").pod(), "build")["resources"]["limits"]["nvidia.com/gpu"],
        "3"
    );
    let out = a100("16");
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["nvidia.com/gpu"],
        "4"
    );
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("ci.skao.int/gpus: 16 is above the ceiling"))
    );
    let out = a100("99999999999999999999999");
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["nvidia.com/gpu"],
        "4"
    );
}

#[test]
fn gpus_on_a_non_gpu_class_are_ignored_with_a_warning() {
    let out = run(&annotate(job_pod(), &[("ci.skao.int/gpus", "2")]));
    assert!(
        container(out.pod(), "build")["resources"]["limits"]
            .get("nvidia.com/gpu")
            .is_none()
    );
    assert!(out.pod()["spec"].get("runtimeClassName").is_none());
    assert!(
        out.warnings()
            .iter()
            .any(|w| w == "ci.skao.int/gpus ignored: class k8srunner has no GPUs")
    );
}

#[test]
fn existing_gpu_requests_follow_the_limit_and_excess_is_lowered() {
    let mut pod = with_runner(job_pod(), "k8srunner-gpu-v100");
    pod["spec"]["containers"][0]["resources"] =
        json!({"limits": {"nvidia.com/gpu": "4"}, "requests": {"nvidia.com/gpu": "4"}});
    let out = run(&pod);
    let r = &container(out.pod(), "build")["resources"];
    assert_eq!(
        (
            &r["limits"]["nvidia.com/gpu"],
            &r["requests"]["nvidia.com/gpu"]
        ),
        (&json!("1"), &json!("1"))
    );
}

#[test]
fn a_different_runtime_class_is_replaced_with_a_warning() {
    let mut pod = with_runner(job_pod(), "k8srunner-gpu-v100");
    pod["spec"]["runtimeClassName"] = json!("gvisor");
    let out = run(&pod);
    assert_eq!(out.pod()["spec"]["runtimeClassName"], "nvidia");
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("runtimeClassName \"gvisor\" replaced by nvidia"))
    );
}
