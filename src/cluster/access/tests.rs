use super::*;

#[test]
fn an_access_reads_as_kubectl_auth_can_i_would_name_it() {
    assert_eq!(NAMESPACES.describe(), "get, list and watch on namespaces");
    assert_eq!(
        RUNTIME_CLASSES.describe(),
        "list and watch on runtimeclasses.node.k8s.io"
    );
    assert_eq!(JOB_PODS.resource_name(), "pods");
}

#[test]
fn only_the_namespace_watch_is_required_for_readiness() {
    let required: Vec<&str> = ALL
        .iter()
        .filter(|a| a.required)
        .map(|a| a.resource)
        .collect();
    assert_eq!(required, ["namespaces"]);
}
