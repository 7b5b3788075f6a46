//! The scheduling and selection rules the doctor evaluates itself, as the API server
//! and the scheduler do: label selectors, nodeSelectors, taints and tolerations.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether a label selector selects `labels` (an absent selector selects everything).
/// An unknown operator selects nothing, as the API server refuses such a selector.
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let match_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    match_labels && expressions
}

/// Whether every key of `node_selector` is set to its value on the node.
pub fn node_matches(node: &Node, node_selector: &BTreeMap<String, String>) -> bool {
    let labels = node.metadata.labels.as_ref();
    node_selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The node's NoSchedule and NoExecute taints that none of `tolerations` tolerates
/// (PreferNoSchedule only steers the scheduler, it never keeps a pod Pending).
pub fn untolerated<'n>(node: &'n Node, tolerations: &[Toleration]) -> Vec<&'n Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
        .collect()
}

/// The scheduler's rule: an empty key with Exists tolerates everything; otherwise keys
/// must be equal, and values too unless the operator is Exists; an empty effect
/// tolerates every effect.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let exists = toleration.operator.as_deref() == Some("Exists");
    let key = toleration.key.as_deref().unwrap_or("");
    if key.is_empty() {
        return exists && effect_ok;
    }
    let value_ok =
        exists || toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
    key == taint.key && value_ok && effect_ok
}

/// Whether the node is cordoned.
pub fn unschedulable(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)
}

/// A taint as `kubectl taint` writes it: `key=value:Effect`.
pub fn taint_text(taint: &Taint) -> String {
    match taint.value.as_deref() {
        Some(v) if !v.is_empty() => format!("{}={v}:{}", taint.key, taint.effect),
        _ => format!("{}:{}", taint.key, taint.effect),
    }
}

#[cfg(test)]
mod tests;
