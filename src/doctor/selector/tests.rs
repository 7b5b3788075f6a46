use super::*;
use crate::doctor::test_support::labels;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: Some(values.iter().map(|v| (*v).into()).collect()),
    }
}

#[test]
fn selectors_evaluate_labels_and_expressions() {
    let selector = LabelSelector {
        match_labels: Some(labels(&[("team", "ci")])),
        match_expressions: Some(vec![
            expression("ci.skao.int/pod-policy", "In", &["enabled", "warn"]),
            expression("kubernetes.io/metadata.name", "NotIn", &["kube-system"]),
        ]),
    };
    let ns = |pairs: &[(&str, &str)]| selects(Some(&selector), &labels(pairs));
    assert!(ns(&[("team", "ci"), ("ci.skao.int/pod-policy", "warn")]));
    assert!(!ns(&[("team", "ci"), ("ci.skao.int/pod-policy", "true")]));
    assert!(!ns(&[("ci.skao.int/pod-policy", "enabled")]));
    assert!(!ns(&[
        ("team", "ci"),
        ("ci.skao.int/pod-policy", "enabled"),
        ("kubernetes.io/metadata.name", "kube-system")
    ]));
    assert!(selects(None, &labels(&[])));
    let exists = LabelSelector {
        match_expressions: Some(vec![
            expression("a", "Exists", &[]),
            expression("b", "DoesNotExist", &[]),
        ]),
        ..LabelSelector::default()
    };
    assert!(selects(Some(&exists), &labels(&[("a", "")])));
    assert!(!selects(Some(&exists), &labels(&[("a", ""), ("b", "")])));
    let unknown = LabelSelector {
        match_expressions: Some(vec![expression("a", "Gt", &["1"])]),
        ..LabelSelector::default()
    };
    assert!(!selects(Some(&unknown), &labels(&[("a", "2")])));
}

fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: value.map(Into::into),
        effect: effect.into(),
        time_added: None,
    }
}

fn toleration(key: &str, operator: &str, value: Option<&str>, effect: Option<&str>) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some(operator.into()),
        value: value.map(Into::into),
        effect: effect.map(Into::into),
        toleration_seconds: None,
    }
}

#[test]
fn tolerations_follow_the_schedulers_rules() {
    let gpu = taint("nvidia.com/gpu", Some("present"), "NoExecute");
    assert!(tolerates(
        &toleration("nvidia.com/gpu", "Exists", None, None),
        &gpu
    ));
    assert!(!tolerates(
        &toleration("nvidia.com/gpu", "Exists", None, Some("NoSchedule")),
        &gpu
    ));
    assert!(tolerates(
        &toleration("nvidia.com/gpu", "Equal", Some("present"), None),
        &gpu
    ));
    assert!(!tolerates(
        &toleration("nvidia.com/gpu", "Equal", Some("true"), None),
        &gpu
    ));
    assert!(tolerates(&toleration("", "Exists", None, None), &gpu));
    assert!(!tolerates(&toleration("other", "Exists", None, None), &gpu));
    assert_eq!(taint_text(&gpu), "nvidia.com/gpu=present:NoExecute");
    assert_eq!(taint_text(&taint("k", None, "NoSchedule")), "k:NoSchedule");
}

#[test]
fn prefer_no_schedule_taints_never_keep_a_pod_pending() {
    let node = Node {
        spec: Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: Some(vec![
                taint("soft", None, "PreferNoSchedule"),
                taint("hard", None, "NoSchedule"),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let left = untolerated(&node, &[]);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key, "hard");
    assert!(untolerated(&node, &[toleration("hard", "Exists", None, None)]).is_empty());
}
