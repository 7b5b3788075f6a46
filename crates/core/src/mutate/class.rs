//! Choosing the runner class, only ever from facts a job author cannot set: the
//! namespace's labels (set by administrators), the requesting user, the namespace
//! name, the runner's short token in the pod's name, and pod labels that the runner
//! (not the job) sets. The runner-name label counts only beside an id-short label that
//! agrees with the pod's name (GitLab Runner 17.9+, docs/matching.md): before 17.9 a
//! job may set both. A class's `match` is a list of blocks; the first block (of the
//! first class, in file order) whose rules all hold chooses it.

use std::fmt;

use super::patch::{Parent, Patch, pointer};
use super::view::{AdmissionRequest, Pod, StrMap};
use super::{Chosen, NamespaceFacts, RUNNER_NAME_LABEL};
use crate::policy::{MatchRules, Policy, RunnerClass};

/// Label GitLab Runner puts on every job pod: `runner-<token>-project-<id>-concurrent-<n>`.
const RUNNER_POD_LABEL: &str = "pod";
/// Label GitLab Runner 17.9+ puts beside the runner name: the runner's short token as
/// it spells it (`ShortDescription()`: case and `_` kept, `sanitizeLabel` trimming `-`,
/// `_` and `.` at both ends). From 17.9 a job cannot set labels under
/// `runner.gitlab.com` (`buildLabels()`, `safeLabelSetter`), so one that agrees with the
/// token in the pod's name, which a job never chooses, vouches for the runner name
/// beside it.
pub const RUNNER_ID_SHORT_LABEL: &str = "manager.runner.gitlab.com/id-short";

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
    if let Some(name) = facts.untrusted_runner_name
        && policy
            .classes
            .iter()
            .flat_map(|c| &c.match_blocks)
            .any(|b| b.runner_names.iter().any(|r| r == name))
    {
        warnings.push(format!(
            "label {RUNNER_NAME_LABEL}={} not trusted: no {RUNNER_ID_SHORT_LABEL} label agrees with the runner token in the pod name {} (a runner before 17.9 sets neither, and lets jobs set both where pod_labels_overwrite_allowed permits); runnerNames not applied",
            super::shorten(name),
            super::shorten(facts.name)
        ));
    }
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
    /// The runner name label, when its id-short agrees with the pod's name.
    runner_name: Option<&'a str>,
    /// The runner name label when it does not: as if absent, with a warning.
    untrusted_runner_name: Option<&'a str>,
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
        let labels = meta.labels.as_ref();
        let label = |key: &str| labels.and_then(|l| l.get(key));
        let vouched = label(RUNNER_ID_SHORT_LABEL)
            .is_some_and(|id_short| is_runners(name, &pod_spelling(id_short)));
        let runner = label(RUNNER_NAME_LABEL);
        Facts {
            user: request.user_info.username.as_ref(),
            namespace: request.namespace.as_deref().unwrap_or(""),
            name,
            labels,
            runner_name: runner.filter(|_| vouched),
            untrusted_runner_name: runner.filter(|_| !vouched),
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
        let runner = facts.runner_name?;
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
    let token = rules
        .runner_tokens
        .iter()
        .find(|t| is_runners(facts.name, t))?;
    match facts.label(RUNNER_POD_LABEL) {
        None => Some(format!(
            "runner token {token} (pod name {})",
            super::shorten(facts.name)
        )),
        Some(label) if is_runners(label, token) => Some(format!(
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

/// A runner's short token as GitLab Runner spells it in pod names
/// (`dns.MakeRFC1123Compatible`): lower-cased, and every character outside `[-a-z0-9]`
/// deleted, `_` included (it is not written as `-`).
pub(crate) fn pod_spelling(token: &str) -> String {
    token
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .collect()
}

/// Whether a pod name (or generateName, or `pod` label) is runner `token`'s:
/// `runner-<token>-…`, the whole token (given in its pod spelling). A `-` at either end
/// of a token survives in the name but not in the id-short label (`sanitizeLabel` trims
/// it), so a token given without one also holds for a name with one there.
fn is_runners(name: &str, token: &str) -> bool {
    let token = token.trim_matches('-');
    !token.is_empty()
        && name
            .strip_prefix("runner-")
            .map(|rest| rest.trim_start_matches('-'))
            .and_then(|rest| rest.strip_prefix(token))
            .is_some_and(|rest| rest.starts_with('-'))
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
