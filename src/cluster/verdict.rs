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

use ci_pod_webhook_core::answer;
use ci_pod_webhook_core::mutate::view::Object;
use ci_pod_webhook_core::mutate::{self, AdmissionRequest, Change, NamespaceFacts, Pod};
use ci_pod_webhook_core::policy::{Enforcement, OPT_IN_VALUE, Policy};
use serde::Serialize;

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
    let Object(pod) =
        serde_json::from_str::<Object<Pod<'_>>>(pod).map_err(|e| format!("not a pod: {e}"))?;
    let recorded = pod
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(&policy.keys.class))
        .map(str::to_string);
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
    let request = AdmissionRequest::create(namespace, pod);
    let answer = answer::decide(policy, NamespaceFacts::Labels(&labels), &request)
        .map_err(|e| e.to_string())?;
    let Some(chosen) = answer.chosen() else {
        return Ok(None);
    };
    let (verdict, details) = match (answer.denial(), answer.changes()) {
        (Some(message), _) => (Verdict::WouldDeny, vec![message.to_string()]),
        (None, changes) => {
            let changes: Vec<String> = changes
                .into_iter()
                .flat_map(|p| &p.changes)
                .filter(|c| !is_bookkeeping(c, policy, recorded.is_none()))
                .map(Change::describe)
                .collect();
            let verdict = if changes.is_empty() {
                Verdict::Ok
            } else {
                Verdict::Drift
            };
            (verdict, changes)
        }
    };
    // Warn mode writes nothing, so a pod there is judged by what enforce would do.
    let verdict = if recorded.is_none() && answer.mode == Enforcement::Enforce {
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
        mode: answer.mode.as_str(),
        verdict,
        details,
    }))
}

/// Whether a change only writes the webhook's own annotations: the `<prefix>/policy`
/// hash (different after every policy change), and `<prefix>/class` when the pod has
/// none (`unpolicied` or warn mode say that already). A changed class is drift.
fn is_bookkeeping(change: &Change, policy: &Policy, unrecorded: bool) -> bool {
    let ours = |key: &str| key == policy.keys.policy || (unrecorded && key == policy.keys.class);
    if let Some(key) = change.annotation_key() {
        return ours(&key);
    }
    // No annotations at all: the patch adds the whole map.
    match &change.op {
        json_patch::PatchOperation::Add(op) if op.path.as_str() == "/metadata/annotations" => op
            .value
            .as_object()
            .is_some_and(|map| map.keys().all(|key| ours(key))),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
