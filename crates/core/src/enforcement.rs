//! Warn mode: a layer over the core's decision, for rolling the policy out.
//!
//! The core always computes what enforce would do. In warn mode (the class's or the
//! policy's `enforcement: warn`, or the namespace label `<prefix>/pod-policy=warn`,
//! which wins) that decision is not applied: the pod is allowed with no patch, and the
//! answer's warnings say what enforce would have changed or refused. kubectl and
//! GitLab Runner's job log show them, so a job author sees the coming change before it
//! lands.
//!
//! Warnings are bounded as the API server bounds them (k8s.io/apiserver
//! `pkg/endpoints/filters/warning.go`): once the warnings of one request, from every
//! source, pass 4096 characters in all, each is cut to 256 characters and any that still
//! do not fit are dropped. [`fit`] keeps ours to [`MAX_WARNING_CHARS`] each and
//! [`WARNINGS_BUDGET`] together (leaving room for other webhooks and Pod Security), and
//! says what it left out in a last "... and N more".

use crate::mutate::{Change, Decision, NamespaceFacts};
use crate::policy::{Enforcement, OPT_IN_WARN_VALUE, Policy};

/// The API server's limit on one warning (`truncateItemRunes`).
pub const MAX_WARNING_CHARS: usize = 256;
/// Our share of the API server's 4096 characters of warnings per request
/// (`truncateAtTotalRunes`), which every webhook and Pod Security share.
pub const WARNINGS_BUDGET: usize = 3072;
/// At most this many warnings: the user reads them in a job log.
pub const MAX_WARNINGS: usize = 16;

/// The mode a decision is answered in. Skipped requests are always `Enforce` (there is
/// nothing to warn about).
pub fn mode(
    policy: &Policy,
    namespace: NamespaceFacts<'_>,
    decision: &Decision<'_>,
) -> Enforcement {
    let class = match decision {
        Decision::Skip(_) => return Enforcement::Enforce,
        Decision::Deny { chosen, .. } => chosen.class,
        Decision::Allow(m) => m.chosen.class,
    };
    if namespace_warns(policy, namespace) {
        Enforcement::Warn
    } else {
        class.enforcement
    }
}

/// Whether the namespace's opt-in label asks for warn mode.
pub fn namespace_warns(policy: &Policy, namespace: NamespaceFacts<'_>) -> bool {
    match namespace {
        NamespaceFacts::TrustSelector | NamespaceFacts::NameOnly => false,
        NamespaceFacts::Labels(labels) => {
            labels.get(&policy.keys.opt_in).map(String::as_str) == Some(OPT_IN_WARN_VALUE)
        }
    }
}

/// What enforce would have done, as a warn-mode answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Would {
    /// Enforce would change nothing.
    Nothing,
    /// Enforce would patch the pod.
    Mutate,
    /// Enforce would refuse the pod.
    Deny,
}

impl Would {
    /// The `would` audit annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Would::Nothing => "nothing",
            Would::Mutate => "mutate",
            Would::Deny => "deny",
        }
    }
}

/// What enforce would do, and the warnings of a warn-mode answer: that, each change
/// enforce would make (containers named), then the core's own warnings, fitted to the
/// API server's limits. A skipped request would get nothing.
pub fn would(policy: &Policy, decision: &Decision<'_>) -> (Would, Vec<String>) {
    let mut warnings = Vec::new();
    let would = match decision {
        Decision::Skip(_) => return (Would::Nothing, Vec::new()),
        Decision::Deny {
            chosen, message, ..
        } => {
            warnings.push(format!(
                "ci-pod-webhook warn mode, class {}: would deny: {message}",
                chosen.class.name
            ));
            Would::Deny
        }
        Decision::Allow(m) => {
            let shown: Vec<&Change> = m
                .patch
                .changes
                .iter()
                .filter(|c| !is_audit_annotation(policy, c))
                .collect();
            let would = if m.patch.is_empty() {
                Would::Nothing
            } else {
                warnings.push(format!(
                    "ci-pod-webhook warn mode, class {}: nothing was changed; enforce would make {} change(s)",
                    m.chosen.class.name,
                    shown.len()
                ));
                warnings.extend(shown.iter().map(|c| format!("would set {}", c.describe())));
                Would::Mutate
            };
            // The core's own (a clamped override, an ignored one), worded for warn mode.
            warnings.extend(m.warnings.iter().map(|w| conditional(w)));
            would
        }
    };
    (would, fit(warnings))
}

/// How the core words what enforce does, and how warn mode says it instead: nothing
/// was done, enforce *would* do it.
const ENFORCED: [(&str, &str); 8] = [
    ("; using ", "; would use "),
    (" lowered to ", " would be lowered to "),
    (" raised to ", " would be raised to "),
    (" removed:", " would be removed:"),
    (" replaced by ", " would be replaced by "),
    (" not set", " would not be set"),
    ("Docker not configured", "Docker would not be configured"),
    (" ignored", " would be ignored"),
];

/// A warning of the core's, which says what enforce does, in the conditional: warn
/// mode changed nothing (`…; using 8` becomes `…; would use 8`).
fn conditional(warning: &str) -> String {
    let mut text = warning.to_string();
    for (enforced, would) in ENFORCED {
        if let Some(at) = text.find(enforced) {
            text.replace_range(at..at + enforced.len(), would);
        }
    }
    text
}

/// The `<prefix>/class` and `<prefix>/policy` annotations: bookkeeping, not worth a
/// line of the user's job log.
fn is_audit_annotation(policy: &Policy, change: &Change) -> bool {
    change
        .annotation_key()
        .is_some_and(|key| key == policy.keys.class || key == policy.keys.policy)
}

/// Warnings within the API server's limits: each cut to [`MAX_WARNING_CHARS`], at
/// most [`MAX_WARNINGS`] and [`WARNINGS_BUDGET`] characters in all, the rest counted in
/// a last "... and N more".
pub fn fit(warnings: Vec<String>) -> Vec<String> {
    // Room kept for the summary line.
    const SUMMARY_CHARS: usize = 32;
    let total = warnings.len();
    let mut kept = Vec::new();
    let mut used = 0;
    for warning in warnings {
        let warning = cut(warning, MAX_WARNING_CHARS);
        let chars = warning.chars().count();
        let last = kept.len() + 1 == total;
        let room = if last { 0 } else { SUMMARY_CHARS };
        if kept.len() + usize::from(!last) >= MAX_WARNINGS || used + chars + room > WARNINGS_BUDGET
        {
            break;
        }
        used += chars;
        kept.push(warning);
    }
    if kept.len() < total {
        let more = total - kept.len();
        kept.push(format!("... and {more} more"));
    }
    kept
}

/// `text` cut to at most `max` characters, ending in "…" when cut.
fn cut(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests;
