//! Issue 25, point 2: in-place resize (`pods/resize`, Kubernetes 1.35+) of a governed pod
//! (a job pod in an opted-in namespace). A resize that takes any container, or the pod
//! level, above the class ceiling is denied, naming the container, the resource and the
//! ceiling; one within it is allowed unchanged; warn mode allows with warnings. The
//! answer is never a patch: the resize strategy keeps only resources and resizePolicy,
//! so a patch of anything else would be dropped after admission. Reviews go through
//! `admission::parse_with`, the server's single pass.

use super::*;
use crate::answer::{self, Answer, Outcome};

/// A GitLab Runner 17.9 job pod of runner `runner` as the webhook admitted it: every
/// container within class `k8srunner` (max 8 CPU, 16Gi).
pub(super) fn admitted(runner: &str) -> Value {
    let mut pod = with_runner(job_pod(), runner);
    let within = |cpu: &str, memory: &str| json!({"limits": {"cpu": cpu, "memory": memory}, "requests": {"cpu": "100m", "memory": "128Mi"}});
    pod["spec"]["containers"][0]["resources"] = within("5", "10Gi");
    pod["spec"]["containers"][1]["resources"] = within("3", "1Gi");
    pod["spec"]["containers"][2]["resources"] = within("3", "1Gi");
    pod["spec"]["initContainers"][0]["resources"] = within("3", "1Gi");
    pod["metadata"]["annotations"]["ci.skao.int/class"] = json!("k8srunner");
    pod
}

/// `pod` with container `name`'s `section.resource` set to `value`.
pub(super) fn resized(
    pod: &Value,
    name: &str,
    section: &str,
    resource: &str,
    value: &str,
) -> Value {
    let mut pod = pod.clone();
    for list in ["containers", "initContainers"] {
        for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
            if c["name"] == name {
                c["resources"][section][resource] = json!(value);
            }
        }
    }
    pod
}

/// The answer to an UPDATE of `sub_resource` from `old` to `new`, through the server's
/// single-pass parse, in namespace `gitlab` labelled `pod-policy=<mode>`.
pub(super) fn update<'p>(
    policy: &'p Policy,
    sub_resource: &'static str,
    mode: &str,
    old: &Value,
    new: &Value,
) -> Answer<'p> {
    let labels = BTreeMap::from([("ci.skao.int/pod-policy".to_string(), mode.to_string())]);
    let body = PodReview {
        operation: "UPDATE",
        sub_resource: Some(sub_resource),
        old_object: Some(old),
        ..PodReview::create("gitlab", new).by("system:serviceaccount:ci-ska:deployer")
    }
    .to_json();
    let review = admission::parse_with(&body, |_| true).expect("readable");
    let answer =
        answer::decide(policy, NamespaceFacts::Labels(&labels), &review.request).expect("a pod");
    assert!(
        answer.patch().is_none(),
        "a subresource answer is never a patch"
    );
    // The single pass reads object and oldObject as the ordinary parse does.
    let ordinary = admission::parse(&body).expect("readable");
    let again =
        answer::decide(policy, NamespaceFacts::Labels(&labels), &ordinary.request).expect("a pod");
    assert_eq!(
        (again.outcome, &again.status, &again.warnings),
        (answer.outcome, &answer.status, &answer.warnings)
    );
    answer
}

fn resize<'p>(policy: &'p Policy, old: &Value, new: &Value) -> Answer<'p> {
    update(policy, "resize", "enabled", old, new)
}

#[test]
fn a_resize_above_the_class_ceiling_is_denied_naming_container_resource_and_ceiling() {
    let old = admitted("k8srunner");
    let new = resized(&old, "build", "limits", "cpu", "64");
    let new = resized(&new, "build", "limits", "memory", "200Gi");
    let answer = resize(&DEFAULT, &old, &new);
    assert!(!answer.allowed);
    assert_eq!(answer.outcome, Outcome::Denied);
    let message = &answer.status.as_ref().expect("a status").message;
    assert!(
        message.contains("spec.containers[build].resources.limits.cpu 64 is above the ceiling 8 of class k8srunner"),
        "{message}"
    );
    assert!(
        message.contains("spec.containers[build].resources.limits.memory 200Gi is above the ceiling 16Gi of class k8srunner"),
        "{message}"
    );
    assert!(message.starts_with("ci-pod-webhook: "), "{message}");
}

#[test]
fn a_resize_within_the_ceiling_is_allowed_unchanged() {
    let old = admitted("k8srunner");
    let new = resized(&old, "build", "limits", "cpu", "8");
    let new = resized(&new, "build", "requests", "memory", "4Gi");
    let answer = resize(&DEFAULT, &old, &new);
    assert!(answer.allowed);
    assert_eq!(answer.outcome, Outcome::Unchanged);
    assert_eq!(answer.class(), Some("k8srunner"));
}

#[test]
fn warn_mode_allows_a_resize_above_the_ceiling_with_warnings() {
    let old = admitted("k8srunner");
    let new = resized(&old, "build", "limits", "cpu", "64");
    let answer = update(&DEFAULT, "resize", "warn", &old, &new);
    assert!(answer.allowed);
    assert_eq!(answer.outcome, Outcome::WouldDeny);
    let warnings = answer.warnings.join("\n");
    assert!(
        warnings.contains("would deny: resize of pod runner-abc-project-1-concurrent-0-xyz: spec.containers[build].resources.limits.cpu 64 is above the ceiling 8"),
        "{warnings}"
    );
}

/// What a job author would resize instead of `build`: every other container, requests,
/// the pod level. Each is held to the class ceiling.
#[test]
fn every_container_and_the_pod_level_are_held_to_the_ceiling() {
    let old = admitted("k8srunner");
    let mut with_sidecar = old.clone();
    with_sidecar["spec"]["initContainers"]
        .as_array_mut()
        .expect("init")
        .push(json!({"name": "proxy", "restartPolicy": "Always", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}));
    let mut pod_level = old.clone();
    pod_level["spec"]["resources"] = json!({"limits": {"cpu": "8", "memory": "16Gi"}});
    for (what, old, new) in [
        (
            "svc-0",
            old.clone(),
            resized(&old, "svc-0", "limits", "cpu", "64"),
        ),
        (
            "helper",
            old.clone(),
            resized(&old, "helper", "requests", "memory", "100Gi"),
        ),
        (
            "init-permissions",
            old.clone(),
            resized(&old, "init-permissions", "limits", "memory", "64Gi"),
        ),
        (
            "proxy",
            with_sidecar.clone(),
            resized(&with_sidecar, "proxy", "limits", "cpu", "32"),
        ),
        ("spec.resources", pod_level.clone(), {
            let mut new = pod_level.clone();
            new["spec"]["resources"]["limits"]["cpu"] = json!("64");
            new
        }),
    ] {
        let answer = resize(&DEFAULT, &old, &new);
        assert!(!answer.allowed, "{what}");
        let message = &answer.status.as_ref().expect("status").message;
        assert!(message.contains(what), "{what}: {message}");
        assert!(message.contains("ceiling"), "{what}: {message}");
    }
}

/// The class is chosen from trusted facts, as at CREATE: never from the pod's
/// `ci.skao.int/class` annotation (a job can patch its own pod), nor from a runner-name
/// label without its id-short.
#[test]
fn the_ceiling_is_the_class_of_the_pods_trusted_facts() {
    let forged = {
        let mut pod = admitted("k8srunner-xlarge");
        pod["metadata"]["labels"]
            .as_object_mut()
            .map(|l| l.remove("manager.runner.gitlab.com/id-short"));
        pod["metadata"]["annotations"]["ci.skao.int/class"] = json!("k8srunner-xlarge");
        pod
    };
    let new = resized(&forged, "build", "limits", "memory", "100Gi");
    let answer = resize(&DEFAULT, &forged, &new);
    assert!(!answer.allowed);
    assert_eq!(answer.class(), Some("k8srunner"));
    // The xlarge runner's own pod: its class allows 128Gi.
    let real = admitted("k8srunner-xlarge");
    let new = resized(&real, "build", "limits", "memory", "100Gi");
    assert!(resize(&DEFAULT, &real, &new).allowed);
}

#[test]
fn a_value_already_above_the_ceiling_may_stay_or_fall_but_not_rise() {
    // Admitted under an older policy (or before the webhook saw it): above today's max.
    let old = resized(&admitted("k8srunner"), "build", "limits", "cpu", "12");
    let lowered_elsewhere = resized(&old, "build", "limits", "memory", "8Gi");
    let answer = resize(&DEFAULT, &old, &lowered_elsewhere);
    assert!(answer.allowed);
    assert!(
        answer.warnings.iter().any(|w| w
            .contains("spec.containers[build].resources.limits.cpu 12 stays above the ceiling 8")),
        "{:?}",
        answer.warnings
    );
    assert!(
        resize(
            &DEFAULT,
            &old,
            &resized(&old, "build", "limits", "cpu", "10")
        )
        .allowed
    );
    assert!(
        !resize(
            &DEFAULT,
            &old,
            &resized(&old, "build", "limits", "cpu", "16")
        )
        .allowed
    );
}

#[test]
fn resizes_the_policy_does_not_govern_are_skipped() {
    let old = admitted("k8srunner");
    let new = resized(&old, "build", "limits", "cpu", "64");
    // Not opted in.
    let answer = update(&DEFAULT, "resize", "disabled", &old, &new);
    assert_eq!(answer.skip_reason(), Some(SkipReason::NamespaceNotOptedIn));
    // Not a job pod.
    let web = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "nginx", "resources": {"limits": {"cpu": "1"}}}]}});
    let mut bigger = web.clone();
    bigger["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("64");
    let answer = resize(&DEFAULT, &web, &bigger);
    assert_eq!(answer.skip_reason(), Some(SkipReason::NotJobPod));
    // Other subresources, and a plain pod UPDATE, are not reviewed.
    for sub in ["status", "binding"] {
        assert_eq!(
            update(&DEFAULT, sub, "enabled", &old, &new).skip_reason(),
            Some(SkipReason::NotPodCreate)
        );
    }
}
