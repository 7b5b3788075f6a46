//! Inputs the fuzzers found, kept as regressions.

use super::*;

#[test]
fn a_pod_without_a_spec_is_not_a_job_pod_even_with_the_runner_label() {
    // fuzz/regressions/review/crash-87a8c409…: the ops under /spec had no parent.
    for spec in [None, Some(Value::Null)] {
        let mut pod =
            json!({"metadata": {"labels": {"manager.runner.gitlab.com/name": "k8srunner"}}});
        if let Some(s) = spec {
            pod["spec"] = s;
        }
        assert!(
            matches!(run(&pod), Out::Skip(SkipReason::NotJobPod)),
            "{pod}"
        );
    }
}

#[test]
fn a_pod_without_metadata_gets_its_annotations_added_whole() {
    for metadata in [None, Some(Value::Null)] {
        let mut pod = json!({"spec": {"containers": [{"name": "build"}, {"name": "helper"}]}});
        if let Some(m) = metadata {
            pod["metadata"] = m;
        }
        let out = run(&pod);
        assert_eq!(
            out.pod()["metadata"]["annotations"]["ci.skao.int/class"],
            "k8srunner"
        );
    }
}

#[test]
fn annotation_keys_with_multi_byte_characters_where_the_prefix_ends_are_not_overrides() {
    // fuzz/regressions/review/crash-d96f498a…: slicing the key as a str at the prefix
    // length panicked inside a two-byte character.
    for key in [
        "ci.skao.inҕ/cpu-limit",
        "ci.skao.intҕ/cpu-limit",
        "ҕҕҕҕҕҕ/cpu-limit",
        "ci.skao.int/ҕ",
    ] {
        let out = run(&annotate(job_pod(), &[(key, "64")]));
        match out {
            Out::Allow { .. } => assert_eq!(
                container(out.pod(), "build")["resources"]["limits"]["cpu"],
                "5",
                "{key}"
            ),
            Out::Deny { message, .. } => assert!(
                message.contains("is not a ci-pod-webhook override"),
                "{key}: {message}"
            ),
            Out::Skip(r) => panic!("{key}: skipped {r:?}"),
        }
    }
}
