//! The AdmissionReview v1 wire format around the core: bytes in, bytes out.
//!
//! A review that cannot be read is an [`AdmissionError`] (HTTP 400). Anything that
//! can be read gets an answer with HTTP 200, including denials: a denial is a decision.
//!
//! The server calls, in order: [`parse_with`] (borrowing the body; [`parse`] is the same
//! in two passes), looks up the namespace's labels for [`Review::namespace`], then
//! [`answer`].

mod one_pass;

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::enforcement::{self, Would};
use crate::mutate::view::Object;
use crate::mutate::{
    self, AdmissionRequest, Decision, Facts, ObjectError, OverrideKind, OverrideRecord,
    OverrideResult, RefusedChange, SkipReason,
};
use crate::policy::{Enforcement, Policy};

pub const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// An unreadable request: the message says what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the body is not an AdmissionReview: {0}")]
    NotAReview(String),
    #[error(
        "unsupported apiVersion {0:?}: this webhook speaks {API_VERSION} (set admissionReviewVersions: [v1])"
    )]
    UnsupportedVersion(String),
    #[error("the AdmissionReview has no request")]
    MissingRequest,
    #[error("request.uid is missing or empty")]
    MissingUid,
    #[error(transparent)]
    Object(#[from] ObjectError),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    #[serde(borrow, default, deserialize_with = "mutate::view::borrowed_opt")]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "mutate::view::borrowed_opt")]
    kind: Option<Cow<'a, str>>,
    /// An object: serde would read an array as the fields in order.
    #[serde(borrow, default)]
    request: Option<Object<AdmissionRequest<'a>>>,
}

/// A readable AdmissionReview, borrowing from the request body.
#[derive(Debug)]
pub struct Review<'a> {
    pub api_version: Cow<'a, str>,
    pub request: AdmissionRequest<'a>,
}

impl Review<'_> {
    /// The request's namespace: authoritative, unlike the object's metadata.
    pub fn namespace(&self) -> &str {
        self.request.namespace.as_deref().unwrap_or("")
    }

    pub fn uid(&self) -> &str {
        &self.request.uid
    }
}

pub fn parse(body: &[u8]) -> Result<Review<'_>, AdmissionError> {
    parse_text(check_text(body)?)
}

/// [`parse`] of a body already checked by [`check_text`].
fn parse_text(text: &str) -> Result<Review<'_>, AdmissionError> {
    let review: ReviewIn<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            AdmissionError::NotJson(e.to_string())
        } else {
            AdmissionError::NotAReview(e.to_string())
        }
    })?;
    finish(review)
}

/// [`parse`], reading the pod in the same pass when it will be needed.
///
/// [`parse`] keeps `request.object` raw and the core parses it later, only for a pod
/// CREATE in an opted-in namespace: for the job pod, whose 20 KB are most of the review,
/// that is two passes over it. Here, when the fields before `object` (in the order the
/// API server writes them) show a pod CREATE and `wants_pod` says yes for the request's
/// namespace, the pod is read on the way ([`AdmissionRequest::pod`]).
///
/// `wants_pod(namespace)` may answer `true` as a guess (the labels are not known yet:
/// the core decides again), but `false` is a promise that the core will find the
/// namespace out of scope. When a valid envelope (`apiVersion`, `kind`) comes before the
/// request, and a non-empty `uid`, `kind` and `operation` before `object`, and they show a
/// review the core skips whatever its object holds (not a pod CREATE, or `false` from
/// `wants_pod`), the body is not read past them: such a review has neither `object`
/// nor `pod`, and a body broken after that point is answered (allowed, unchanged) where
/// [`parse`] refuses it. Every other result is [`parse`]'s: whenever the single pass meets
/// anything it cannot read (an invalid pod, a malformed review), the body is parsed again
/// with [`parse`], so errors, and the reviews whose pod is invalid but never needed, are
/// exactly as before.
pub fn parse_with(
    body: &[u8],
    wants_pod: impl FnMut(&str) -> bool,
) -> Result<Review<'_>, AdmissionError> {
    let text = check_text(body)?;
    match one_pass::review(text, wants_pod) {
        Some(review) => finish(review),
        None => parse_text(text),
    }
}

/// The body as text, if it can be an AdmissionReview at all.
fn check_text(body: &[u8]) -> Result<&str, AdmissionError> {
    // serde reads a struct from a JSON array too; an AdmissionReview is an object.
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => return Err(AdmissionError::NotJson("the body is empty".to_string())),
        Some(_) => {
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                    Ok(_) => AdmissionError::NotAReview("expected a JSON object".to_string()),
                    Err(e) => AdmissionError::NotJson(e.to_string()),
                },
            );
        }
    }
    // JSON is UTF-8 (RFC 8259). serde_json checks only the strings it reads, so check
    // the whole body once: fields the webhook skips must not hide invalid text either.
    std::str::from_utf8(body)
        .map_err(|e| AdmissionError::NotJson(format!("the body is not UTF-8: {e}")))
}

fn finish(review: ReviewIn<'_>) -> Result<Review<'_>, AdmissionError> {
    if let Some(kind) = review.kind.as_deref().filter(|k| *k != KIND) {
        return Err(AdmissionError::NotAReview(format!(
            "kind is {kind:?}, expected {KIND:?}"
        )));
    }
    let api_version = review.api_version.unwrap_or(Cow::Borrowed(""));
    if api_version != API_VERSION {
        return Err(AdmissionError::UnsupportedVersion(api_version.into_owned()));
    }
    let Object(request) = review.request.ok_or(AdmissionError::MissingRequest)?;
    if request.uid.is_empty() {
        return Err(AdmissionError::MissingUid);
    }
    Ok(Review {
        api_version,
        request,
    })
}

/// How a review ended, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Mutated,
    Unchanged,
    Skipped,
    Denied,
    /// Unreadable request (HTTP 4xx); never produced by [`answer`].
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

/// What happened to one review, for the log line and the metrics.
#[derive(Debug, Clone)]
pub struct Summary {
    pub uid: String,
    pub namespace: String,
    /// Pod name, or generateName when the name is not set yet.
    pub pod: String,
    pub class: Option<String>,
    pub outcome: Outcome,
    pub skip_reason: Option<SkipReason>,
    pub patch_operations: usize,
    pub overrides: Vec<(OverrideKind, OverrideResult)>,
    /// Changes left out or denied because the API server would refuse them.
    pub refused: Vec<RefusedChange>,
}

/// The encoded AdmissionReview response and its summary.
#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    pub summary: Summary,
}

/// Decides and encodes the response to a readable review.
pub fn answer<'f>(
    policy: &Policy,
    facts: impl Into<Facts<'f>>,
    review: &Review<'_>,
) -> Result<Answer, AdmissionError> {
    let facts = facts.into();
    let decision = mutate::decide(policy, facts, &review.request)?;
    let mode = enforcement::mode(policy, facts.namespace, &decision);
    Ok(encode(policy, review, &decision, mode))
}

/// Encodes a decision as the AdmissionReview response: applied in `Enforce` mode,
/// only reported as warnings in `Warn` mode (see [`enforcement`]).
pub fn encode(
    policy: &Policy,
    review: &Review<'_>,
    decision: &Decision<'_>,
    mode: Enforcement,
) -> Answer {
    let request = &review.request;
    let mut summary = Summary {
        uid: request.uid.to_string(),
        namespace: review.namespace().to_string(),
        pod: request.name.as_deref().unwrap_or("").to_string(),
        class: None,
        outcome: Outcome::Skipped,
        skip_reason: None,
        patch_operations: 0,
        overrides: Vec::new(),
        refused: Vec::new(),
    };
    let mut response = ResponseOut {
        uid: &request.uid,
        allowed: true,
        patch_type: None,
        patch: None,
        warnings: Vec::new(),
        audit_annotations: BTreeMap::new(),
        status: None,
    };
    let warned = match mode {
        Enforcement::Warn => {
            // Only to name containers in the warnings. The single-pass parse has
            // already read the pod and left no raw object.
            let pod = match (&request.pod, request.object) {
                (Some(pod), _) => enforcement::container_names(pod),
                (None, Some(raw)) => serde_json::from_str(raw.get()).unwrap_or_default(),
                (None, None) => serde_json::Value::Null,
            };
            enforcement::would(policy, decision, &pod)
        }
        Enforcement::Enforce => None,
    };
    let warnings;
    match decision {
        Decision::Skip(reason) => summary.skip_reason = Some(*reason),
        Decision::Deny { chosen, pod, .. }
        | Decision::Allow(mutate::Mutation { chosen, pod, .. })
            if warned.is_some() =>
        {
            let (would, would_warnings) = warned.unwrap_or((Would::Nothing, Vec::new()));
            summary.class = Some(chosen.class.name.clone());
            summary.pod.clone_from(pod);
            summary.outcome = match would {
                Would::Nothing => Outcome::Unchanged,
                Would::Mutate => Outcome::WouldMutate,
                Would::Deny => Outcome::WouldDeny,
            };
            warnings = would_warnings;
            response.warnings = warnings.iter().map(String::as_str).collect();
            let audit = &mut response.audit_annotations;
            audit.insert("class", chosen.class.name.clone());
            audit.insert("mode", Enforcement::Warn.as_str().to_string());
            audit.insert("policy", policy.hash.clone());
            let would = match would {
                Would::Nothing => "nothing",
                Would::Mutate => "mutate",
                Would::Deny => "deny",
            };
            audit.insert("would", would.to_string());
            if let Decision::Deny { message, .. } = decision {
                audit.insert("wouldDeny", message.clone());
            }
        }
        Decision::Deny {
            chosen,
            pod,
            message,
            overrides,
            refused,
        } => {
            summary.outcome = Outcome::Denied;
            summary.refused.extend(*refused);
            summary.class = Some(chosen.class.name.clone());
            summary.pod.clone_from(pod);
            summary.overrides = override_results(overrides);
            response.allowed = false;
            response.status = Some(Status {
                code: 403,
                reason: "Forbidden",
                message: format!("ci-pod-webhook: {message}"),
            });
            response
                .audit_annotations
                .insert("class", chosen.class.name.clone());
            response.audit_annotations.insert("denied", message.clone());
        }
        Decision::Allow(m) => {
            summary.class = Some(m.chosen.class.name.clone());
            summary.pod.clone_from(&m.pod);
            summary.overrides = override_results(&m.overrides);
            summary.refused.clone_from(&m.refused);
            summary.patch_operations = m.patch.len();
            summary.outcome = if m.patch.is_empty() {
                Outcome::Unchanged
            } else {
                response.patch_type = Some("JSONPatch");
                response.patch =
                    Some(base64::engine::general_purpose::STANDARD.encode(m.patch.to_json()));
                Outcome::Mutated
            };
            warnings = enforcement::fit(m.warnings.clone());
            response.warnings = warnings.iter().map(String::as_str).collect();
            response
                .audit_annotations
                .insert("class", m.chosen.class.name.clone());
            response
                .audit_annotations
                .insert("policy", policy.hash.clone());
            if !m.overrides.is_empty() {
                let details: Vec<&str> = m.overrides.iter().map(|o| o.detail.as_str()).collect();
                response
                    .audit_annotations
                    .insert("overrides", details.join(", "));
            }
        }
    }
    let out = ReviewOut {
        api_version: &review.api_version,
        kind: KIND,
        response,
    };
    // Serialising strings and booleans cannot fail.
    let body = serde_json::to_vec(&out).unwrap_or_default();
    Answer { body, summary }
}

fn override_results(records: &[OverrideRecord]) -> Vec<(OverrideKind, OverrideResult)> {
    records.iter().map(|r| (r.kind, r.result)).collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
}

#[derive(Serialize)]
struct Status {
    code: u16,
    reason: &'static str,
    message: String,
}

#[cfg(test)]
mod tests;
