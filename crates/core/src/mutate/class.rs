//! Choosing the runner class, only ever from facts a job author cannot set: the
//! namespace's labels (set by administrators), the requesting user, the namespace
//! name, the runner's short token in the pod's name, and pod labels that the runner
//! (not the job) sets. A class's `match` is a list of blocks; the first block (of the
//! first class, in file order) whose rules all hold chooses it.

use std::fmt;

use super::patch::{Parent, Patch, pointer};
use super::view::{AdmissionRequest, Pod, StrMap};
use super::{Chosen, NamespaceFacts, RUNNER_NAME_LABEL};
use crate::policy::{MatchRules, Policy, RunnerClass};

/// Label GitLab Runner puts on every job pod: `runner-<token>-project-<id>-concurrent-<n>`.
const RUNNER_POD_LABEL: &str = "pod";

/// Why a class was chosen, for `--explain` and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassReason {
    /// The namespace label `<prefix>/runner-class` names it.
    NamespaceLabel { key: String },
    /// The rules of one of its match blocks hold; each entry says which fact matched.
    Matched {
        /// The block's index in the class's `match` list.
        block: usize,
        /// How many blocks the class has: one is the single-block form.
        blocks: usize,
        facts: Vec<String>,
    },
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
            ClassReason::Matched {
                block,
                blocks,
                facts,
            } => {
                if *blocks > 1 {
                    write!(f, "match[{block}] (block {} of {blocks}): ", block + 1)?;
                } else {
                    f.write_str("match rules: ")?;
                }
                f.write_str(&facts.join(", "))
            }
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
    let facts = Facts::of(request, pod);
    for class in &policy.classes {
        let blocks = class.match_blocks.len();
        for (block, rules) in class.match_blocks.iter().enumerate() {
            if let Some(matched) = matches(rules, &facts, &mut warnings) {
                return (
                    Chosen {
                        class,
                        reason: ClassReason::Matched {
                            block,
                            blocks,
                            facts: matched,
                        },
                    },
                    warnings,
                );
            }
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

/// What the match rules read: the request's user and namespace, the pod's labels, and
/// the name the runner gave the pod (or, runners up to 16.1, its generateName).
struct Facts<'a> {
    user: &'a str,
    namespace: &'a str,
    name: &'a str,
    labels: Option<&'a StrMap<'a>>,
}

impl<'a> Facts<'a> {
    fn of(request: &'a AdmissionRequest<'_>, pod: &'a Pod<'a>) -> Facts<'a> {
        let meta = pod.meta();
        let name = meta
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(meta.generate_name.as_deref())
            .unwrap_or("");
        Facts {
            user: request.user_info.username.as_ref(),
            namespace: request.namespace.as_deref().unwrap_or(""),
            name,
            labels: meta.labels.as_ref(),
        }
    }

    fn label(&self, key: &str) -> Option<&'a str> {
        self.labels.and_then(|l| l.get(key))
    }
}

/// The facts that matched, if every non-empty rule of the block holds.
fn matches(
    rules: &MatchRules,
    facts: &Facts<'_>,
    warnings: &mut Vec<String>,
) -> Option<Vec<String>> {
    let mut matched = Vec::new();
    if !rules.runner_names.is_empty() {
        let runner = facts.label(RUNNER_NAME_LABEL)?;
        if !rules.runner_names.iter().any(|r| r == runner) {
            return None;
        }
        matched.push(format!("runner {RUNNER_NAME_LABEL}={runner}"));
    }
    if !rules.runner_tokens.is_empty() {
        matched.push(runner_token(rules, facts, warnings)?);
    }
    if !rules.service_accounts.is_empty() {
        if !rules.service_accounts.iter().any(|sa| sa == facts.user) {
            return None;
        }
        matched.push(format!("user {}", facts.user));
    }
    if !rules.namespaces.is_empty() {
        if !rules.namespaces.iter().any(|n| n == facts.namespace) {
            return None;
        }
        matched.push(format!("namespace {}", facts.namespace));
    }
    for (key, want) in &rules.pod_labels {
        if facts.label(key) != Some(want.as_str()) {
            return None;
        }
        matched.push(format!("pod label {key}={want}"));
    }
    Some(matched)
}

/// The runner-token rule: the pod's name starts with `runner-<token>-` for one of the
/// tokens, and the runner's `pod` label, when present, starts the same way. The name is
/// the runner's (a job cannot choose it); a `pod` label that disagrees was changed after
/// the runner wrote it (a job's label overwrite, or a pod not made by this runner), so
/// the rule does not hold and a warning says why.
fn runner_token(
    rules: &MatchRules,
    facts: &Facts<'_>,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let starts = |text: &str, token: &str| {
        text.strip_prefix("runner-")
            .and_then(|rest| rest.strip_prefix(token))
            .is_some_and(|rest| rest.starts_with('-'))
    };
    let token = rules.runner_tokens.iter().find(|t| starts(facts.name, t))?;
    match facts.label(RUNNER_POD_LABEL) {
        None => Some(format!(
            "runner token {token} (pod name {})",
            super::shorten(facts.name)
        )),
        Some(label) if starts(label, token) => Some(format!(
            "runner token {token} (pod name {}, label {RUNNER_POD_LABEL} agrees)",
            super::shorten(facts.name)
        )),
        Some(label) => {
            warnings.push(format!(
                "the pod name {} is runner {token}'s but its label {RUNNER_POD_LABEL}={} is not; runnerTokens {token} not applied",
                super::shorten(facts.name),
                super::shorten(label)
            ));
            None
        }
    }
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
