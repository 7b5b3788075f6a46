//! The job author's override annotations: applied to build only, bounded by the class, refused when invalid.

use super::*;

#[test]
fn each_override_applies_to_build_only() {
    let pod = annotate(
        job_pod(),
        &[
            ("ci.skao.int/cpu-request", "2"),
            ("ci.skao.int/cpu-limit", "6"),
            ("ci.skao.int/memory-request", "4Gi"),
            ("ci.skao.int/memory-limit", "12Gi"),
        ],
    );
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"],
        json!({"limits": {"cpu": "6", "memory": "12Gi"}, "requests": {"cpu": "2", "memory": "4Gi"}})
    );
    assert_eq!(
        container(out.pod(), "helper")["resources"]["limits"]["cpu"],
        "3"
    );
    match out {
        Out::Allow { overrides, .. } => {
            assert_eq!(overrides.len(), 4);
            assert!(
                overrides
                    .iter()
                    .all(|o| o.result == OverrideResult::Applied)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn overrides_replace_existing_values_including_lower_ones() {
    let mut pod = annotate(
        job_pod(),
        &[
            ("ci.skao.int/memory-limit", "2Gi"),
            ("ci.skao.int/cpu-request", "250m"),
        ],
    );
    pod["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "5", "memory": "10Gi"}, "requests": {"cpu": "1", "memory": "4Gi"}});
    let out = run(&pod);
    // A lowered limit lowers the request too.
    assert_eq!(
        container(out.pod(), "build")["resources"],
        json!({"limits": {"cpu": "5", "memory": "2Gi"}, "requests": {"cpu": "250m", "memory": "2Gi"}})
    );
    assert!(
        out.warnings()
            .iter()
            .any(|w| w == "build: requests.memory 4Gi lowered to its limit 2Gi")
    );
}

#[test]
fn a_request_override_above_the_limit_raises_the_limit_within_the_ceiling() {
    let pod = annotate(
        job_pod(),
        &[
            ("ci.skao.int/cpu-request", "7"),
            ("ci.skao.int/memory-request", "64Gi"),
        ],
    );
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"],
        json!({"limits": {"cpu": "7", "memory": "16Gi"}, "requests": {"cpu": "7", "memory": "16Gi"}})
    );
}

#[test]
fn overrides_above_the_ceiling_are_clamped_with_a_warning() {
    let pod = annotate(
        job_pod(),
        &[
            ("ci.skao.int/cpu-limit", "64"),
            ("ci.skao.int/memory-limit", "1Ti"),
        ],
    );
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"],
        json!({"cpu": "8", "memory": "16Gi"})
    );
    let w = out.warnings().join("\n");
    assert!(
        w.contains("ci.skao.int/cpu-limit: 64 is above the ceiling of class k8srunner; using 8"),
        "{w}"
    );
    match out {
        Out::Allow { overrides, .. } => {
            assert!(
                overrides
                    .iter()
                    .all(|o| o.result == OverrideResult::Clamped)
            );
            assert!(
                overrides
                    .iter()
                    .any(|o| o.detail == "cpu-limit=8 (asked 64)")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn overrides_above_the_ceiling_are_denied_when_the_policy_says_so() {
    let policy = policy_from(
        "defaultClass: a\noverrides: { onExceed: deny }\nclasses:\n  a: { max: { cpu: \"2\", memory: null } }\n",
    );
    let out = run_with(
        &policy,
        &Req::default(),
        &annotate(job_pod(), &[("ci.skao.int/cpu-limit", "3")]),
    );
    assert_eq!(
        out.denial(),
        "annotation ci.skao.int/cpu-limit: 3 is above the ceiling 2 of class a"
    );
    let out = run_with(
        &policy,
        &Req::default(),
        &annotate(job_pod(), &[("ci.skao.int/cpu-limit", "2")]),
    );
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["cpu"],
        "2"
    );
}

#[test]
fn invalid_overrides_are_denied_naming_annotation_value_and_form() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "ci.skao.int/cpu-limit",
            "lots",
            "annotation ci.skao.int/cpu-limit: \"lots\" is not a valid quantity; use a Kubernetes quantity such as 500m or 2",
        ),
        (
            "ci.skao.int/cpu-request",
            "-1",
            "annotation ci.skao.int/cpu-request: \"-1\" must be greater than zero; use a quantity such as 500m or 2",
        ),
        (
            "ci.skao.int/cpu-request",
            "0",
            "annotation ci.skao.int/cpu-request: \"0\" must be greater than zero",
        ),
        (
            "ci.skao.int/memory-limit",
            "4gb",
            "annotation ci.skao.int/memory-limit: \"4gb\" is not a valid quantity; use a Kubernetes quantity such as 512Mi or 4Gi",
        ),
        (
            "ci.skao.int/memory-request",
            "0.5",
            "annotation ci.skao.int/memory-request: \"0.5\" is not a whole number of bytes",
        ),
        (
            "ci.skao.int/memory-limit",
            "NaN",
            "\"NaN\" is not a valid quantity",
        ),
        (
            "ci.skao.int/gpus",
            "0",
            "annotation ci.skao.int/gpus: \"0\" is not a valid GPU count; use a whole number 1 or more",
        ),
        ("ci.skao.int/gpus", "-2", "\"-2\" is not a valid GPU count"),
        (
            "ci.skao.int/gpus",
            "1.5",
            "\"1.5\" is not a valid GPU count",
        ),
        (
            "ci.skao.int/docker",
            "off",
            "annotation ci.skao.int/docker: \"off\" is not accepted; the only accepted value is \"disabled\"",
        ),
        (
            "ci.skao.int/cpu-limits",
            "2",
            "annotation \"ci.skao.int/cpu-limits\" is not a ci-pod-webhook override; the overrides are ci.skao.int/ followed by one of: cpu-request, cpu-limit, memory-request, memory-limit, gpus, docker",
        ),
        (
            "ci.skao.int/CPU-LIMIT",
            "2",
            "(annotation keys are case-sensitive)",
        ),
        (
            "CI.SKAO.INT/cpu-limit",
            "2",
            "\"CI.SKAO.INT/cpu-limit\" is not a ci-pod-webhook override (annotation keys are case-sensitive)",
        ),
        (
            "ci.skao.int/сpu-limit",
            "2",
            "is not a ci-pod-webhook override",
        ),
    ];
    for (key, value, expected) in cases {
        let out = run(&annotate(job_pod(), &[(key, value)]));
        assert!(
            out.denial().contains(expected),
            "{key}={value}: {}",
            out.denial()
        );
    }
}

#[test]
fn several_invalid_overrides_are_all_reported() {
    let out = run(&annotate(
        job_pod(),
        &[("ci.skao.int/cpu-limit", "x"), ("ci.skao.int/gpus", "y")],
    ));
    assert!(
        out.denial().contains("cpu-limit") && out.denial().contains("gpus"),
        "{}",
        out.denial()
    );
}

#[test]
fn a_request_override_above_a_limit_override_is_denied() {
    let out = run(&annotate(
        job_pod(),
        &[
            ("ci.skao.int/cpu-request", "4"),
            ("ci.skao.int/cpu-limit", "2"),
        ],
    ));
    assert_eq!(
        out.denial(),
        "annotations ci.skao.int/cpu-request (4) and ci.skao.int/cpu-limit (2): the request must not exceed the limit"
    );
}

#[test]
fn huge_override_values_are_shortened_in_messages() {
    let big = "9".repeat(1 << 20);
    let out = run(&annotate(
        job_pod(),
        &[("ci.skao.int/docker", big.as_str())],
    ));
    assert!(out.denial().len() < 300, "{}", out.denial().len());
    let out = run(&annotate(
        job_pod(),
        &[("ci.skao.int/cpu-limit", big.as_str())],
    ));
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["cpu"],
        "8",
        "a huge number is clamped"
    );
}

#[test]
fn thousands_of_bad_override_annotations_are_summarised_in_a_short_denial() {
    // Regression: duplicates were found by scanning the rest of the list for each key
    // (quadratic: 150,000 annotations fit in a 4 MiB body; 20,000 took 2.9 s), and every
    // problem went into the message, so the denial grew with the input (7 MB).
    let mut pod = job_pod();
    let annotations = pod["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations");
    for i in 0..50_000 {
        annotations.insert(format!("ci.skao.int/x{i}"), json!(""));
    }
    let out = run_once(&DEFAULT, &Req::default(), &pod);
    let message = out.denial();
    assert!(message.contains("ci.skao.int/x0"), "{message}");
    assert!(message.ends_with("; and 49992 more"), "{message}");
    assert!(message.len() < 2_000, "{}", message.len());
}

#[test]
fn a_job_pod_with_more_containers_than_the_bound_is_denied() {
    let with_services = |n: usize| {
        let mut pod = job_pod();
        let containers = pod["spec"]["containers"]
            .as_array_mut()
            .expect("containers");
        containers.extend((1..=n).map(|i| json!({"name": format!("svc-{i}")})));
        pod
    };
    // init-permissions + build + helper + svc-0 + n services.
    let at_bound = with_services(MAX_CONTAINERS - 4);
    let out = run(&at_bound);
    assert_eq!(
        container(out.pod(), &format!("svc-{}", MAX_CONTAINERS - 4))["resources"]["limits"]["cpu"],
        "3"
    );
    let message = run(&with_services(5_000)).denial().to_string();
    assert!(
        message.starts_with("the pod has 5004 containers and init containers;"),
        "{message}"
    );
    // A pod that is not a job pod is not ours, however many containers it has.
    let mut other = json!({"spec": {"containers": []}});
    other["spec"]["containers"] = json!(
        (0..5_000)
            .map(|i| json!({"name": format!("c{i}")}))
            .collect::<Vec<_>>()
    );
    assert!(matches!(run(&other), Out::Skip(SkipReason::NotJobPod)));
}

#[test]
fn look_alike_prefixes_are_not_overrides_and_gain_nothing() {
    let pod = annotate(
        job_pod(),
        &[
            ("ci.skao.іnt/cpu-limit", "64"),
            ("ci-skao-int/cpu-limit", "64"),
            ("skao.int/cpu-limit", "64"),
        ],
    );
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["cpu"],
        "5"
    );
}

#[test]
fn the_last_of_duplicate_annotation_keys_counts() {
    // Only hand-made JSON can have duplicates; the API server's decoder keeps the last.
    let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"gitlab","operation":"CREATE","object":{"metadata":{"annotations":{"ci.skao.int/cpu-limit":"lots","ci.skao.int/cpu-limit":"2"}},"spec":{"containers":[{"name":"build"},{"name":"helper"}]}}}}"#;
    let review = admission::parse(body).expect("parse");
    match decide(&DEFAULT, NamespaceFacts::TrustSelector, &review.request).expect("decide") {
        Decision::Allow(m) => assert!(m.overrides.iter().any(|o| o.detail == "cpu-limit=2")),
        other => panic!("{other:?}"),
    }
}
