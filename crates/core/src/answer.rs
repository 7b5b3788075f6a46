//! The answer to one review, built once from the core's decision and the mode it is
//! answered in, before anything is serialised: whether the pod is allowed, the patch,
//! the warnings, the audit annotations, the status of a denial and the outcome.
//!
//! Every consumer reads the same model: the webhook ([`crate::admission`] only
//! serialises it), `mutate` (which prints it or explains it), and `audit` and the live
//! gauge (which judge stored pods by it). So what `mutate` or `audit` say a review would
//! get is, by construction, what the webhook answers.

use std::collections::BTreeMap;

use crate::enforcement::{self, Would};
use crate::mutate::{
    self, Chosen, Decision, Facts, ObjectError, OverrideKind, OverrideRecord, OverrideResult,
    Patch, RefusedChange, SkipReason,
};
use crate::policy::{Enforcement, Policy};

/// How a review ended, for metrics, logs and tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Mutated,
    Unchanged,
    Skipped,
    Denied,
    /// Unreadable request (HTTP 4xx); never produced by [`build`].
    Invalid,
    /// Warn mode: allowed unchanged, enforce would have patched it.
    WouldMutate,
    /// Warn mode: allowed unchanged, enforce would have denied it.
    WouldDeny,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Mutated,
        Outcome::Unchanged,
        Outcome::Skipped,
        Outcome::Denied,
        Outcome::Invalid,
        Outcome::WouldMutate,
        Outcome::WouldDeny,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Mutated => "mutated",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped => "skipped",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::WouldMutate => "would_mutate",
            Outcome::WouldDeny => "would_deny",
        }
    }
}

/// The `status` of a denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

/// The answer to one review. `decision` keeps everything the core found (the class
/// and why, the changes enforce makes or would make, overrides, the core's own
/// warnings); the other fields are what the API server is told.
#[derive(Debug)]
pub struct Answer<'p> {
    pub decision: Decision<'p>,
    pub mode: Enforcement,
    pub outcome: Outcome,
    pub allowed: bool,
    /// The answer's warnings, fitted to the API server's limits.
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<&'static str, String>,
    pub status: Option<Status>,
}

impl<'p> Answer<'p> {
    /// The patch the API server applies: the decision's changes, when enforced.
    pub fn patch(&self) -> Option<&Patch> {
        match &self.decision {
            Decision::Allow(m) if self.outcome == Outcome::Mutated => Some(&m.patch),
            _ => None,
        }
    }

    /// The changes enforce makes (or, in warn mode, would make); none for a denial.
    pub fn changes(&self) -> Option<&Patch> {
        match &self.decision {
            Decision::Allow(m) => Some(&m.patch),
            _ => None,
        }
    }

    /// The class chosen and why; `None` for a skipped request.
    pub fn chosen(&self) -> Option<&Chosen<'p>> {
        match &self.decision {
            Decision::Skip(_) => None,
            Decision::Deny { chosen, .. } => Some(chosen),
            Decision::Allow(m) => Some(&m.chosen),
        }
    }

    pub fn class(&self) -> Option<&'p str> {
        self.chosen().map(|c| c.class.name.as_str())
    }

    /// The pod's name, or its generateName when the name is not set yet; empty for a
    /// skipped request.
    pub fn pod(&self) -> &str {
        match &self.decision {
            Decision::Skip(_) => "",
            Decision::Deny { pod, .. } => pod,
            Decision::Allow(m) => &m.pod,
        }
    }

    pub fn skip_reason(&self) -> Option<SkipReason> {
        match &self.decision {
            Decision::Skip(reason) => Some(*reason),
            _ => None,
        }
    }

    /// The denial's message (in warn mode: the one enforce would give).
    pub fn denial(&self) -> Option<&str> {
        match &self.decision {
            Decision::Deny { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Each override and what became of it.
    pub fn overrides(&self) -> Vec<(OverrideKind, OverrideResult)> {
        let records: &[OverrideRecord] = match &self.decision {
            Decision::Skip(_) => &[],
            Decision::Deny { overrides, .. } => overrides,
            Decision::Allow(m) => &m.overrides,
        };
        match self.mode {
            // Warn mode applies no override (its outcome is not counted either).
            Enforcement::Warn => Vec::new(),
            Enforcement::Enforce => records.iter().map(|r| (r.kind, r.result)).collect(),
        }
    }

    /// Changes left out or denied because the API server would refuse them.
    pub fn refused(&self) -> &[RefusedChange] {
        match (&self.decision, self.mode) {
            (_, Enforcement::Warn) => &[],
            (Decision::Deny { refused, .. }, _) => refused.as_slice(),
            (Decision::Allow(m), _) => &m.refused,
            (Decision::Skip(_), _) => &[],
        }
    }

    /// The number of patch operations the API server applies.
    pub fn patch_operations(&self) -> usize {
        self.patch().map_or(0, Patch::len)
    }
}

/// Decides a request and builds its answer: [`mutate::decide`], the mode
/// ([`enforcement::mode`]), then [`build`].
///
/// # Errors
/// The request's object is missing or not a Pod.
pub fn decide<'p, 'f>(
    policy: &'p Policy,
    facts: impl Into<Facts<'f>>,
    request: &mutate::AdmissionRequest<'_>,
) -> Result<Answer<'p>, ObjectError> {
    let facts = facts.into();
    let decision = mutate::decide(policy, facts, request)?;
    let mode = enforcement::mode(policy, facts.namespace, &decision);
    Ok(build(policy, decision, mode))
}

/// Turns a decision and the mode it is answered in into the answer: applied in
/// `Enforce` mode, only reported as warnings in `Warn` mode (see [`enforcement`]).
pub fn build<'p>(policy: &Policy, decision: Decision<'p>, mode: Enforcement) -> Answer<'p> {
    let mut answer = Answer {
        outcome: Outcome::Skipped,
        mode,
        allowed: true,
        warnings: Vec::new(),
        audit_annotations: BTreeMap::new(),
        status: None,
        decision,
    };
    let Some(chosen) = answer.chosen() else {
        return answer;
    };
    let class = chosen.class.name.clone();
    let audit = &mut answer.audit_annotations;
    match (&answer.decision, mode) {
        (Decision::Skip(_), _) => {}
        (decision, Enforcement::Warn) => {
            let (would, warnings) = enforcement::would(policy, decision);
            answer.outcome = match would {
                Would::Nothing => Outcome::Unchanged,
                Would::Mutate => Outcome::WouldMutate,
                Would::Deny => Outcome::WouldDeny,
            };
            answer.warnings = warnings;
            audit.insert("class", class);
            audit.insert("mode", Enforcement::Warn.as_str().to_string());
            audit.insert("policy", policy.hash.clone());
            audit.insert("would", would.as_str().to_string());
            if let Decision::Deny { message, .. } = decision {
                audit.insert("wouldDeny", message.clone());
            }
        }
        (Decision::Deny { message, .. }, Enforcement::Enforce) => {
            answer.outcome = Outcome::Denied;
            answer.allowed = false;
            answer.status = Some(Status {
                code: 403,
                reason: "Forbidden",
                message: format!("ci-pod-webhook: {message}"),
            });
            audit.insert("class", class);
            audit.insert("denied", message.clone());
        }
        (Decision::Allow(m), Enforcement::Enforce) => {
            answer.outcome = if m.patch.is_empty() {
                Outcome::Unchanged
            } else {
                Outcome::Mutated
            };
            answer.warnings = enforcement::fit(m.warnings.clone());
            audit.insert("class", class);
            audit.insert("policy", policy.hash.clone());
            if !m.overrides.is_empty() {
                let details: Vec<&str> = m.overrides.iter().map(|o| o.detail.as_str()).collect();
                audit.insert("overrides", details.join(", "));
            }
        }
    }
    answer
}

#[cfg(test)]
mod tests;
