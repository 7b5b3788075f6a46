//! Judging a pod that already exists: would the policy, deciding it now, leave it as
//! it is? Shared by the `audit` command and the job-pod watcher of `serve`: both judge
//! with [`judge`] only, and look at the namespaces [`audited`] says.
//!
//! The stored pod is put through the core as if it were being created now, in its own
//! namespace, from the facts a job cannot set: the namespace's labels (its opt-in mode
//! and an admin's class pin), the runner's token in the pod's name and the labels the
//! runner sets. Three things differ from admission:
//! - A stored pod does not say who created it, so match rules on the requesting user
//!   (`serviceAccounts`) cannot hold: such a pod is judged by the class its other facts
//!   give.
//! - The `<prefix>/class` annotation is a claim, not proof: the webhook writes it, but
//!   so can a job (GitLab Runner's pod annotation overwrites), and a pod created while
//!   the webhook was down keeps whatever the job wrote. It never chooses the class the
//!   pod is judged by. It only tells `drift` (the annotation names the class the pod's
//!   facts give: the webhook's mark, so most likely admitted under an earlier policy)
//!   from `unpolicied` (no annotation, or one the facts contradict).
//! - Fields the API server adds after admission (the service-account token volume and
//!   its mounts, default tolerations for not-ready/unreachable nodes, requests defaulted
//!   from limits, nodeName, status) are not the policy's business: the core only adds
//!   what is missing and lowers what is above a ceiling, so they never make a change.
//!   Only the `<prefix>/policy` hash annotation differs after every policy change; it
//!   is bookkeeping, not drift.
//!
//! docs/rollout.md ("Verdicts") has an example of each verdict.

use std::collections::BTreeMap;

use ci_pod_webhook_core::answer;
use ci_pod_webhook_core::mutate::view::Object;
use ci_pod_webhook_core::mutate::{
    self, AdmissionRequest, Change, NamespaceFacts, Pod, ephemeral_containers,
};
use ci_pod_webhook_core::policy::{Enforcement, OPT_IN_VALUE, Policy};
use serde::Serialize;

/// One verdict on a stored job pod. A pod gets `ok` alone, or one or two of the others:
/// at most one of `drift`, `unpolicied` and `would-mutate` (how it came to differ from
/// the policy), and `would-deny` when the policy would refuse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Deciding it now would change nothing and refuse nothing.
    Ok,
    /// It carries the webhook's mark for its class (the `<prefix>/class` annotation
    /// names the class its facts give), and deciding it now would change or refuse it:
    /// admitted under an earlier policy, or changed since.
    Drift,
    /// The policy is enforced in its namespace, it carries no mark (no class
    /// annotation, or one its facts contradict), and deciding it now would change or
    /// refuse it: the webhook never applied the policy to it (down, unreachable, or the
    /// namespace opted in after it was created).
    Unpolicied,
    /// The policy only warns in its namespace (or for its class), it carries no mark,
    /// and enforce would change it: left as sent, by design.
    WouldMutate,
    /// Deciding it now would refuse it, or an ephemeral container it holds (added after
    /// admission, by `kubectl debug`) is one the policy refuses.
    WouldDeny,
}

impl Verdict {
    pub const ALL: [Verdict; 5] = [
        Verdict::Ok,
        Verdict::Drift,
        Verdict::Unpolicied,
        Verdict::WouldMutate,
        Verdict::WouldDeny,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Drift => "drift",
            Verdict::Unpolicied => "unpolicied",
            Verdict::WouldMutate => "would-mutate",
            Verdict::WouldDeny => "would-deny",
        }
    }
}

/// One job pod, judged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Judgement {
    /// The class the pod's facts give, which it is judged by.
    pub class: String,
    /// The fact that chose the class.
    pub reason: String,
    pub mode: &'static str,
    /// In the order of [`Verdict::ALL`]; never empty.
    pub verdicts: Vec<Verdict>,
    /// Each change deciding it now would make (`where: now → wanted`), or why it would
    /// be refused; and a class annotation its facts contradict.
    pub details: Vec<String>,
}

impl Judgement {
    pub fn has(&self, verdict: Verdict) -> bool {
        self.verdicts.contains(&verdict)
    }
}

/// Whether the job pods of a namespace with `labels` are judged at all without being
/// asked for by name: it opted in (`enabled` or `warn`). `audit` without `--namespace`
/// and the live gauge look at exactly these namespaces.
pub fn audited(policy: &Policy, labels: &BTreeMap<String, String>) -> bool {
    mutate::opted_in(policy, NamespaceFacts::Labels(labels))
}

/// Judges `pod` (its JSON as the API server stores it) in `namespace`, whose labels are
/// `labels`; `None` for a pod that is not the policy's business (not a job pod, a
/// mirror pod). The namespace counts as opted in: callers choose which namespaces to
/// look at ([`audited`]; `audit --namespace` previews one that has not opted in yet).
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
    if !audited(policy, &labels) {
        labels.insert(policy.keys.opt_in.clone(), OPT_IN_VALUE.to_string());
    }
    // Ephemeral containers come after admission (`kubectl debug`): judged as the webhook
    // judges the update that adds them.
    let ephemeral = ephemeral_containers::check(policy, &pod);
    let request = AdmissionRequest::create(namespace, pod);
    let answer = answer::decide(policy, NamespaceFacts::Labels(&labels), &request)
        .map_err(|e| e.to_string())?;
    let Some(chosen) = answer.chosen() else {
        return Ok(None);
    };
    let class = chosen.class.name.as_str();
    // The mark: the class annotation, when the pod's own facts give that class.
    let marked = recorded.as_deref() == Some(class);
    let mut details = Vec::new();
    if let Some(claimed) = recorded.as_deref().filter(|c| *c != class) {
        details.push(format!(
            "annotation {}: {claimed:?} is a claim the pod's facts do not support: they give class {class} ({}); a stored pod does not name the user who created it, so serviceAccounts rules cannot count",
            policy.keys.class, chosen.reason
        ));
    }
    let denied = answer.denial();
    match denied {
        Some(message) => details.push(message.to_string()),
        None => details.extend(
            answer
                .changes()
                .into_iter()
                .flat_map(|p| &p.changes)
                .filter(|c| !is_bookkeeping(c, policy, recorded.is_none()))
                .map(Change::describe),
        ),
    }
    let refused = denied.is_some() || !ephemeral.is_empty();
    details.extend(ephemeral);
    let differs = refused || !details.is_empty();
    let mut verdicts = Vec::new();
    if !differs {
        verdicts.push(Verdict::Ok);
    } else if marked {
        verdicts.push(Verdict::Drift);
    } else if answer.mode == Enforcement::Enforce {
        verdicts.push(Verdict::Unpolicied);
    } else if !refused {
        // Warn mode writes nothing: a pod there is judged by what enforce would do.
        verdicts.push(Verdict::WouldMutate);
    }
    if refused {
        verdicts.push(Verdict::WouldDeny);
    }
    Ok(Some(Judgement {
        class: class.to_string(),
        reason: chosen.reason.to_string(),
        mode: answer.mode.as_str(),
        verdicts,
        details,
    }))
}

/// Whether a change only writes the webhook's own annotations: the `<prefix>/policy`
/// hash (different after every policy change), and `<prefix>/class` when the pod has
/// none (`unpolicied` or `would-mutate` say that already). A class annotation replaced
/// is a difference: the pod claims another class than its facts give.
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
