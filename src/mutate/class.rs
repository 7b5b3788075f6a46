//! Choosing the runner class, only ever from facts a job author cannot set: the
//! namespace's labels (set by administrators), the requesting user, the namespace
//! name, and pod labels that the runner (not the job) sets.

use std::fmt;

use super::patch::{Parent, Patch, pointer};
use super::view::{AdmissionRequest, Pod};
use super::{Chosen, NamespaceFacts, RUNNER_NAME_LABEL};
use crate::policy::{Policy, RunnerClass};

/// Why a class was chosen, for `--explain` and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassReason {
    /// The namespace label `<prefix>/runner-class` names it.
    NamespaceLabel { key: String },
    /// Its match rules hold; each entry says which fact matched.
    Matched { facts: Vec<String> },
    /// Nothing else applied.
    Default,
    /// Not a job pod: a GPU workload placed by `gpuWorkloads`; the fact that selected
    /// its namespace.
    GpuWorkloads { fact: String },
}

impl fmt::Display for ClassReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassReason::NamespaceLabel { key } => write!(f, "namespace label {key}"),
            ClassReason::Matched { facts } => write!(f, "match rules: {}", facts.join(", ")),
            ClassReason::Default => {
                f.write_str("defaultClass (no namespace label or match rule applied)")
            }
            ClassReason::GpuWorkloads { fact } => {
                write!(f, "gpuWorkloads: not a job pod, asks for a GPU; {fact}")
            }
        }
    }
}

/// Picks the class: namespace label, then match rules in file order, then the default.
pub(super) fn choose<'p>(
    policy: &'p Policy,
    namespace: NamespaceFacts<'_>,
    request: &AdmissionRequest<'_>,
    pod: &Pod<'_>,
) -> (Chosen<'p>, Vec<String>) {
    let mut warnings = Vec::new();
    if let Some(name) = namespace.label(&policy.keys.runner_class) {
        match policy.class(name) {
            Some((_, class)) => {
                return (
                    Chosen {
                        class,
                        reason: ClassReason::NamespaceLabel {
                            key: format!("{}={name}", policy.keys.runner_class),
                        },
                    },
                    warnings,
                );
            }
            None => warnings.push(format!(
                "namespace label {}={} names no class in the policy; choosing by match rules",
                policy.keys.runner_class,
                super::shorten(name)
            )),
        }
    }
    for class in &policy.classes {
        if let Some(facts) = matches(class, request, pod) {
            return (
                Chosen {
                    class,
                    reason: ClassReason::Matched { facts },
                },
                warnings,
            );
        }
    }
    (
        Chosen {
            class: &policy.classes[policy.default_class],
            reason: ClassReason::Default,
        },
        warnings,
    )
}

/// The facts that matched, if every non-empty rule of the class holds.
fn matches(
    class: &RunnerClass,
    request: &AdmissionRequest<'_>,
    pod: &Pod<'_>,
) -> Option<Vec<String>> {
    let rules = &class.match_rules;
    if rules.is_empty() {
        return None;
    }
    let labels = pod.meta().labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key));
    let mut facts = Vec::new();
    if !rules.runner_names.is_empty() {
        let runner = label(RUNNER_NAME_LABEL)?;
        if !rules.runner_names.iter().any(|r| r == runner) {
            return None;
        }
        facts.push(format!("runner {RUNNER_NAME_LABEL}={runner}"));
    }
    if !rules.service_accounts.is_empty() {
        let user = request.user_info.username.as_ref();
        if !rules.service_accounts.iter().any(|sa| sa == user) {
            return None;
        }
        facts.push(format!("user {user}"));
    }
    if !rules.namespaces.is_empty() {
        let ns = request.namespace.as_deref().unwrap_or("");
        if !rules.namespaces.iter().any(|n| n == ns) {
            return None;
        }
        facts.push(format!("namespace {ns}"));
    }
    for (key, want) in &rules.pod_labels {
        if label(key) != Some(want.as_str()) {
            return None;
        }
        facts.push(format!("pod label {key}={want}"));
    }
    Some(facts)
}

/// Writes `<prefix>/class` and `<prefix>/policy`, overwriting whatever a job put there.
pub(super) fn audit_annotations(
    policy: &Policy,
    class: &RunnerClass,
    pod: &Pod<'_>,
    patch: &mut Patch,
) {
    let annotations = pod.meta().annotations.as_ref();
    let before = |key: &str| annotations.and_then(|a| a.get(key)).map(str::to_string);
    let members = [
        (
            policy.keys.class.clone(),
            before(&policy.keys.class),
            class.name.clone(),
        ),
        (
            policy.keys.policy.clone(),
            before(&policy.keys.policy),
            policy.hash.clone(),
        ),
    ];
    if pod.metadata.is_none() {
        // No metadata at all (only hand-made JSON): add it, with the annotations in it.
        let annotations: serde_json::Map<String, serde_json::Value> =
            members.into_iter().map(|(k, _, v)| (k, v.into())).collect();
        patch.add(
            pointer(&["metadata"]),
            serde_json::json!({ "annotations": annotations }),
        );
        return;
    }
    patch.set_members(
        &["metadata", "annotations"],
        Parent::of(&annotations),
        members,
    );
}
