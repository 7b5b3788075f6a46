use super::*;
use crate::doctor::report::Status;
use crate::doctor::test_support::named;

fn ns(name: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: named(name, labels),
        ..Namespace::default()
    }
}

fn statuses(checks: &[Check]) -> Vec<(Status, &str)> {
    checks
        .iter()
        .map(|c| (c.status, c.message.as_str()))
        .collect()
}

#[test]
fn opted_in_namespaces_are_listed_with_their_class() {
    let policy = Policy::embedded();
    let list = [
        ns("gitlab", &[("ci.skao.int/pod-policy", "enabled")]),
        ns(
            "gpu",
            &[
                ("ci.skao.int/pod-policy", "warn"),
                ("ci.skao.int/runner-class", "k8srunner-gpu-v100"),
            ],
        ),
        ns("other", &[]),
    ];
    let checks = namespaces(&policy, Ok(&list));
    assert_eq!(
        statuses(&checks),
        [
            (Status::Ok, "namespace gitlab: opted in (enabled)"),
            (
                Status::Ok,
                "namespace gpu: opted in (warn), class k8srunner-gpu-v100"
            ),
        ]
    );
}

#[test]
fn pod_security_baseline_in_socket_mode_is_a_warning_with_the_label_to_set() {
    let policy = Policy::embedded();
    let list = [ns(
        "ci",
        &[
            ("ci.skao.int/pod-policy", "enabled"),
            (POD_SECURITY_ENFORCE, "baseline"),
        ],
    )];
    let checks = namespaces(&policy, Ok(&list));
    assert_eq!(checks[1].status, Status::Warning);
    assert!(
        checks[1].message.contains("Pod Security baseline"),
        "{checks:?}"
    );
    assert!(
        checks[1]
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("enforce=privileged"))
    );
    let privileged = [ns(
        "ci",
        &[
            ("ci.skao.int/pod-policy", "enabled"),
            (POD_SECURITY_ENFORCE, "privileged"),
        ],
    )];
    assert_eq!(namespaces(&policy, Ok(&privileged)).len(), 1);
}

#[test]
fn a_wrong_label_value_an_unknown_class_and_no_opt_in_are_warnings() {
    let policy = Policy::embedded();
    let list = [
        ns("a", &[("ci.skao.int/pod-policy", "true")]),
        ns(
            "b",
            &[
                ("ci.skao.int/pod-policy", "enabled"),
                ("ci.skao.int/runner-class", "huge"),
            ],
        ),
    ];
    let checks = namespaces(&policy, Ok(&list));
    assert_eq!(
        checks
            .iter()
            .filter(|c| c.status == Status::Warning)
            .count(),
        2,
        "{checks:?}"
    );
    assert!(checks[0].message.contains("opts nothing in"));
    assert!(checks[1].message.contains("names no class"));
    let none = namespaces(&policy, Ok(&list[..1]));
    assert!(
        none.last()
            .is_some_and(|c| c.message.contains("no namespace is opted in"))
    );
    let forbidden = namespaces(&policy, Err("namespaces is forbidden"));
    assert_eq!(forbidden[0].status, Status::Failure);
}
