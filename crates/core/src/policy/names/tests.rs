use super::*;

#[test]
fn qualified_names_follow_kubernetes_rules() {
    for ok in [
        "pod",
        "manager.runner.gitlab.com/name",
        "nvidia.com/gpu",
        "node-role.skatelescope.org/ci-worker",
        "a_b.c-d",
        "ci.skao.int/CPU-Limit",
    ] {
        assert!(is_qualified_name(ok), "{ok} should be valid");
    }
    for bad in [
        "",
        "/name",
        "prefix/",
        "Upper.Case/name",
        "-start",
        "end-",
        "a/b/c",
        "spa ce",
        "ci.skao.int/сpu-limit",
        &"x".repeat(64),
    ] {
        assert!(!is_qualified_name(bad), "{bad} should be invalid");
    }
}

#[test]
fn label_values_may_be_empty_but_not_malformed() {
    assert!(is_label_value(""));
    assert!(is_label_value("true"));
    assert!(is_label_value("k8srunner-gpu-v100"));
    assert!(!is_label_value("has space"));
    assert!(!is_label_value("-x"));
    assert!(!is_label_value(&"v".repeat(64)));
}

#[test]
fn dns_labels_are_lower_case() {
    assert!(is_dns_label("nvidia"));
    assert!(is_dns_label("ci-dind"));
    assert!(!is_dns_label("Nvidia"));
    assert!(!is_dns_label("a.b"));
    assert!(is_dns_subdomain("ci.skao.int"));
    assert!(!is_dns_subdomain("ci..int"));
}
