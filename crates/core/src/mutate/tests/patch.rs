//! The patch itself: targeted operations on the raw pod, nothing else lost.

use super::*;

#[test]
fn fields_the_view_does_not_know_are_kept() {
    let mut pod = job_pod();
    pod["spec"]["someFutureField"] = json!({"nested": [1, 2, 3]});
    pod["spec"]["containers"][0]["x-vendor-extension"] = json!("keep me");
    pod["spec"]["containers"][0]["resources"] = json!({"claims": [{"name": "gpu-claim"}]});
    pod["status"] = json!({"phase": "Pending"});
    let out = run(&pod);
    let patched = out.pod();
    assert_eq!(
        patched["spec"]["someFutureField"],
        json!({"nested": [1, 2, 3]})
    );
    assert_eq!(container(patched, "build")["x-vendor-extension"], "keep me");
    assert_eq!(
        container(patched, "build")["resources"]["claims"],
        json!([{"name": "gpu-claim"}])
    );
    assert_eq!(patched["status"], json!({"phase": "Pending"}));
}

#[test]
fn null_parents_are_replaced_whole() {
    let mut pod = job_pod();
    pod["metadata"]["annotations"] = Value::Null;
    pod["spec"]["nodeSelector"] = Value::Null;
    pod["spec"]["tolerations"] = Value::Null;
    pod["spec"]["containers"][0]["resources"] = json!({"limits": null, "requests": null});
    pod["spec"]["containers"][0]["env"] = Value::Null;
    let out = run(&with_runner(pod, "k8srunner-gpu-v100"));
    assert_eq!(
        out.pod()["metadata"]["annotations"]["ci.skao.int/class"],
        "k8srunner-gpu-v100"
    );
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["cpu"],
        "5"
    );
}

#[test]
fn a_pod_already_following_the_policy_gets_no_patch() {
    let first = run(&with_runner(job_pod(), "k8srunner-gpu-v100"));
    match run(first.pod()) {
        Out::Allow { ops, .. } => assert_eq!(ops, 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn audit_annotations_name_class_and_policy() {
    let out = run(&job_pod());
    let a = &out.pod()["metadata"]["annotations"];
    assert_eq!(a["ci.skao.int/class"], "k8srunner");
    assert_eq!(a["ci.skao.int/policy"], DEFAULT.hash.as_str());
    assert_eq!(
        a["job.runner.gitlab.com/id"], "42",
        "other annotations stay"
    );
}

#[test]
fn an_unreadable_object_is_an_error_not_a_decision() {
    let cases = [
        json!({"spec": {"containers": "not-an-array"}}),
        json!({"spec": {"containers": [{"image": "no-name"}]}}),
        json!({"metadata": {"annotations": {"a": 1}}}),
        json!("a string"),
        // serde reads a struct from an array too; the patch would then target an array.
        json!([null, {"containers": [{"name": "build"}, {"name": "helper"}]}]),
        json!({"metadata": ["name"], "spec": {"containers": [{"name": "build"}, {"name": "helper"}]}}),
        json!({"spec": [[{"name": "build"}, {"name": "helper"}]]}),
        json!({"spec": {"containers": [["build"], ["helper"]]}}),
        json!({"spec": {"containers": [{"name": "build", "resources": [{"cpu": "1"}]}, {"name": "helper"}]}}),
        json!({"spec": {"containers": [{"name": "build", "env": [["DOCKER_HOST"]]}, {"name": "helper"}]}}),
        json!({"spec": {"containers": [{"name": "build"}, {"name": "helper"}], "volumes": [["v"]]}}),
        json!({"spec": {"containers": [{"name": "build"}, {"name": "helper"}], "tolerations": [["k"]]}}),
    ];
    for object in cases {
        let body = review_bytes(&Req::default(), &object);
        let review = admission::parse(&body).expect("the review itself is readable");
        assert!(
            matches!(
                decide(&DEFAULT, NamespaceFacts::TrustSelector, &review.request),
                Err(ObjectError::Invalid(_))
            ),
            "{object}"
        );
    }
}
