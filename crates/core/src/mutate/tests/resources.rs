//! Requests and limits per container role: filled in, kept within the ceiling, lowered above it.

use super::*;

#[test]
fn missing_resources_are_filled_in_per_role() {
    let out = run(&job_pod());
    let pod = out.pod();
    assert_eq!(
        container(pod, "build")["resources"],
        json!({"limits": {"cpu": "5", "memory": "10Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}})
    );
    for helper_role in ["helper", "init-permissions", "svc-0"] {
        assert_eq!(
            container(pod, helper_role)["resources"],
            json!({"limits": {"cpu": "3", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}),
            "{helper_role}"
        );
    }
}

#[test]
fn existing_values_are_kept_within_the_ceiling_and_lowered_above_it() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "7", "memory": "64Gi"}, "requests": {"cpu": "500m", "memory": "20Gi"}});
    let out = run(&pod);
    // cpu 7 ≤ max 8 is kept; memory 64Gi > max 16Gi is lowered, and so is its request.
    assert_eq!(
        container(out.pod(), "build")["resources"],
        json!({"limits": {"cpu": "7", "memory": "16Gi"}, "requests": {"cpu": "500m", "memory": "16Gi"}})
    );
    let w = out.warnings().join("\n");
    assert!(
        w.contains("build: limits.memory 64Gi lowered to the ceiling 16Gi of class k8srunner"),
        "{w}"
    );
    assert!(
        w.contains("build: requests.memory 20Gi lowered to the ceiling 16Gi"),
        "{w}"
    );
}

#[test]
fn a_filled_in_limit_lowers_a_larger_existing_request() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["resources"] = json!({"requests": {"memory": "12Gi"}});
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"]["requests"]["memory"],
        "10Gi"
    );
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["memory"],
        "10Gi"
    );
}

#[test]
fn an_existing_limit_below_the_class_request_caps_the_filled_request() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "1Gi"}});
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"],
        json!({"limits": {"cpu": "5", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}})
    );
}

#[test]
fn a_null_class_limit_removes_an_existing_limit() {
    let mut pod = with_runner(job_pod(), "k8srunner-large");
    pod["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": "5", "memory": "10Gi"}, "requests": {"cpu": "1"}});
    let out = run(&pod);
    let build = &container(out.pod(), "build")["resources"];
    assert_eq!(
        build,
        &json!({"limits": {"memory": "10Gi"}, "requests": {"cpu": "1", "memory": "8Gi"}})
    );
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("limits.cpu 5 removed: class k8srunner-large sets no cpu limit"))
    );
}

#[test]
fn quantities_compare_by_value_not_by_text() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "5000m", "memory": "10240Mi"}, "requests": {"cpu": "1000m", "memory": "2048Mi"}});
    match run(&pod) {
        Out::Allow { pod, .. } => assert_eq!(
            container(&pod, "build")["resources"]["limits"]["cpu"],
            "5000m",
            "equal values are not rewritten"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn numbers_as_quantities_are_understood() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": 20, "memory": 1073741824}});
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"],
        json!({"cpu": "8", "memory": 1073741824})
    );
}

#[test]
fn an_invalid_quantity_in_the_pod_is_denied_with_its_path() {
    for bad in [
        json!("NaN"),
        json!("-1"),
        json!("1e"),
        json!(""),
        json!("99 Gi"),
    ] {
        let mut pod = job_pod();
        pod["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": bad}});
        let message = run(&pod).denial().to_string();
        assert!(
            message.starts_with("spec.containers[build].resources.limits.cpu: "),
            "{message}"
        );
    }
}

#[test]
fn absurd_quantities_in_the_pod_are_lowered_to_the_ceiling() {
    for huge in ["1e400", "99999999999999999999Ei", "9223372036854775807"] {
        let mut pod = job_pod();
        pod["spec"]["containers"][0]["resources"] =
            json!({"limits": {"cpu": huge, "memory": huge}});
        let out = run(&pod);
        assert_eq!(
            container(out.pod(), "build")["resources"]["limits"],
            json!({"cpu": "8", "memory": "16Gi"}),
            "{huge}"
        );
    }
}
