//! What the core leaves alone: not pod CREATEs, namespaces not opted in, pods that are not job pods, mirror pods.

use super::*;

#[test]
fn requests_that_are_not_pod_creates_are_skipped() {
    let cases = [
        Req {
            operation: "UPDATE",
            ..Req::default()
        },
        Req {
            operation: "DELETE",
            ..Req::default()
        },
        Req {
            kind: json!({"group": "apps", "version": "v1", "kind": "Deployment"}),
            ..Req::default()
        },
        Req {
            kind: json!({"group": "", "version": "v1", "kind": "Service"}),
            ..Req::default()
        },
        Req {
            sub_resource: Some("ephemeralcontainers"),
            ..Req::default()
        },
    ];
    for req in cases {
        assert!(matches!(
            run_with(&DEFAULT, &req, &job_pod()),
            Out::Skip(SkipReason::NotPodCreate)
        ));
    }
}

#[test]
fn namespaces_without_the_opt_in_label_are_skipped() {
    for labels in [
        BTreeMap::new(),
        BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "disabled".to_string())]),
        BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "Enabled".to_string())]),
        BTreeMap::from([("other.org/pod-policy".to_string(), "enabled".to_string())]),
    ] {
        let req = Req {
            labels: Some(labels),
            ..Req::default()
        };
        assert!(matches!(
            run_with(&DEFAULT, &req, &job_pod()),
            Out::Skip(SkipReason::NamespaceNotOptedIn)
        ));
    }
    let req = Req {
        labels: opted_in(),
        ..Req::default()
    };
    assert!(matches!(
        run_with(&DEFAULT, &req, &job_pod()),
        Out::Allow { .. }
    ));
}

#[test]
fn pods_that_are_not_job_pods_are_skipped() {
    let cases = [
        json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "nginx"}]}}),
        json!({"metadata": {"name": "half"}, "spec": {"containers": [{"name": "build"}]}}),
        json!({"metadata": {"name": "empty"}, "spec": {}}),
        json!({"metadata": {}, "spec": {"containers": null}}),
    ];
    for pod in cases {
        assert!(
            matches!(run(&pod), Out::Skip(SkipReason::NotJobPod)),
            "{pod}"
        );
    }
}

#[test]
fn the_runner_name_label_alone_marks_a_job_pod() {
    let pod = json!({"metadata": {"labels": {"manager.runner.gitlab.com/name": "k8srunner"}}, "spec": {"containers": [{"name": "main"}]}});
    assert_eq!(run(&pod).class(), "k8srunner");
}

#[test]
fn mirror_pods_are_skipped() {
    let pod = annotate(job_pod(), &[("kubernetes.io/config.mirror", "abc")]);
    assert!(matches!(run(&pod), Out::Skip(SkipReason::MirrorPod)));
}
