//! Judging a pod that already exists: would the policy, deciding it now, leave it as
//! it is? Shared by the `audit` command and the job-pod watcher of `serve`.
//!
//! The stored pod is put through the core as if it were being created now, in its own
//! namespace. Two things differ from admission:
//! - A stored pod does not say who created it, so match rules on the requesting user
//!   cannot be checked again. A pod keeps the class it was admitted with (its
//!   `<prefix>/class` annotation), unless an admin has since pinned the namespace to a
//!   class with the `<prefix>/runner-class` label, which wins as it would at admission.
//! - Fields the API server adds after admission (the service-account token volume and
//!   its mounts, default tolerations for not-ready/unreachable nodes, requests defaulted
//!   from limits, nodeName, status) are not the policy's business: the core only adds
//!   what is missing and lowers what is above a ceiling, so they never make a change.
//!   Only the `<prefix>/policy` hash annotation differs after every policy change; it
//!   is bookkeeping, not drift.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use ci_pod_webhook_core::enforcement;
use ci_pod_webhook_core::explain;
use ci_pod_webhook_core::mutate::{self, AdmissionRequest, Decision, NamespaceFacts};
use ci_pod_webhook_core::policy::{Enforcement, OPT_IN_VALUE, Policy};

/// What deciding a stored job pod now would do to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// It follows today's policy.
    Ok,
    /// Deciding it now would change it.
    Drift,
    /// A job pod the webhook never saw: admitted while it was down, or before its
    /// namespace opted in.
    Unpolicied,
    /// Today's policy would refuse it.
    WouldDeny,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::Ok,
        Verdict::Drift,
        Verdict::Unpolicied,
        Verdict::WouldDeny,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Drift => "drift",
            Verdict::Unpolicied => "unpolicied",
            Verdict::WouldDeny => "would-deny",
        }
    }
}

/// One job pod, judged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Judgement {
    pub class: String,
    /// The fact that chose the class.
    pub reason: String,
    pub mode: &'static str,
    pub verdict: Verdict,
    /// For `drift`, each change (`where: now → wanted`); for `would-deny`, the reason.
    pub details: Vec<String>,
}

/// Judges `pod` (its JSON as the API server stores it) in `namespace`, whose labels are
/// `labels`; `None` for a pod that is not the policy's business (not a job pod, a
/// mirror pod). The namespace counts as opted in: callers choose which namespaces to
/// look at (`audit --namespace` previews one that has not opted in yet).
///
/// # Errors
/// The pod cannot be read as a Pod.
pub fn judge(
    policy: &Policy,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    pod: &str,
) -> Result<Option<Judgement>, String> {
    let recorded = recorded_class(policy, pod)?;
    let mut labels = labels.clone();
    if !mutate::opted_in(policy, NamespaceFacts::Labels(&labels)) {
        labels.insert(policy.keys.opt_in.clone(), OPT_IN_VALUE.to_string());
    }
    let pinned = match &recorded {
        Some(class)
            if !labels.contains_key(&policy.keys.runner_class) && policy.class(class).is_some() =>
        {
            labels.insert(policy.keys.runner_class.clone(), class.clone());
            true
        }
        _ => false,
    };
    let review = format!(
        r#"{{"uid":"audit","kind":{{"group":"","version":"v1","kind":"Pod"}},"operation":"CREATE","namespace":{},"object":{pod}}}"#,
        Value::String(namespace.to_string())
    );
    let request: AdmissionRequest<'_> =
        serde_json::from_str(&review).map_err(|e| format!("not a pod: {e}"))?;
    let facts = NamespaceFacts::Labels(&labels);
    let decision = mutate::decide(policy, facts, &request).map_err(|e| e.to_string())?;
    let mode = enforcement::mode(policy, facts, &decision);
    let (chosen, verdict, details) = match &decision {
        Decision::Skip(_) => return Ok(None),
        Decision::Deny {
            chosen, message, ..
        } => (chosen, Verdict::WouldDeny, vec![message.clone()]),
        Decision::Allow(m) => {
            let value: Value = serde_json::from_str(pod).unwrap_or_default();
            let changes: Vec<String> = m
                .patch
                .changes
                .iter()
                .filter(|c| !is_bookkeeping(c, policy, recorded.is_none()))
                .map(|c| explain::describe(c, &value))
                .collect();
            let verdict = if changes.is_empty() {
                Verdict::Ok
            } else {
                Verdict::Drift
            };
            (&m.chosen, verdict, changes)
        }
    };
    // Warn mode writes nothing, so a pod there is judged by what enforce would do.
    let verdict = if recorded.is_none() && mode == Enforcement::Enforce {
        Verdict::Unpolicied
    } else {
        verdict
    };
    let reason = if pinned {
        format!(
            "recorded at admission ({}; a stored pod does not name the user who created it)",
            policy.keys.class
        )
    } else {
        chosen.reason.to_string()
    };
    Ok(Some(Judgement {
        class: chosen.class.name.clone(),
        reason,
        mode: mode.as_str(),
        verdict,
        details,
    }))
}

/// The pod's `<prefix>/class` annotation.
fn recorded_class(policy: &Policy, pod: &str) -> Result<Option<String>, String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        annotations: Option<BTreeMap<String, String>>,
    }
    #[derive(serde::Deserialize)]
    struct Stored {
        #[serde(default)]
        metadata: Option<Meta>,
    }
    let stored: Stored = serde_json::from_str(pod).map_err(|e| format!("not a pod: {e}"))?;
    Ok(stored
        .metadata
        .and_then(|m| m.annotations)
        .and_then(|mut a| a.remove(&policy.keys.class)))
}

/// Whether a change only writes the webhook's own annotations: the `<prefix>/policy`
/// hash (different after every policy change), and `<prefix>/class` when the pod has
/// none (`unpolicied` or warn mode say that already). A changed class is drift.
fn is_bookkeeping(change: &mutate::Change, policy: &Policy, unrecorded: bool) -> bool {
    let (path, value) = match &change.op {
        json_patch::PatchOperation::Add(op) => (&op.path, &op.value),
        json_patch::PatchOperation::Replace(op) => (&op.path, &op.value),
        _ => return false,
    };
    let ours = |key: &str| key == policy.keys.policy || (unrecorded && key == policy.keys.class);
    let tokens: Vec<String> = path.tokens().map(|t| t.decoded().into_owned()).collect();
    match tokens.as_slice() {
        [m, a, key] if m == "metadata" && a == "annotations" => ours(key),
        // No annotations at all: the patch adds the whole map.
        [m, a] if m == "metadata" && a == "annotations" => value
            .as_object()
            .is_some_and(|map| map.keys().all(|key| ours(key))),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
