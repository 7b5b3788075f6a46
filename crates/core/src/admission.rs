//! The AdmissionReview v1 wire format around the core: bytes in, bytes out.
//!
//! A review that cannot be read is an [`AdmissionError`] (HTTP 400). Anything that
//! can be read gets an answer with HTTP 200, including denials: a denial is a decision.
//!
//! The server calls, in order: [`parse_with`] (borrowing the body; [`parse`] is the same
//! in two passes), looks up the namespace's labels for [`Review::namespace`], then
//! [`respond`]: the answer is built once ([`crate::answer`]) and only serialised here.

mod one_pass;
mod pod_review;

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::answer::{self, Answer};
use crate::mutate::view::Object;
use crate::mutate::{self, AdmissionRequest, Facts, ObjectError};
use crate::policy::Policy;

pub use pod_review::{MADE_UP_UID, PodReview};

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

/// A review's answer, and its bytes as the API server reads them.
#[derive(Debug)]
pub struct Response<'p> {
    pub body: Vec<u8>,
    pub answer: Answer<'p>,
}

/// Decides a readable review and encodes its answer.
///
/// # Errors
/// The review's object is missing or not a Pod (HTTP 400).
pub fn respond<'p, 'f>(
    policy: &'p Policy,
    facts: impl Into<Facts<'f>>,
    review: &Review<'_>,
) -> Result<Response<'p>, AdmissionError> {
    let answer = answer::decide(policy, facts, &review.request)?;
    let body = encode(review, &answer);
    Ok(Response { body, answer })
}

/// The AdmissionReview response that carries `answer`, as JSON.
pub fn encode(review: &Review<'_>, answer: &Answer<'_>) -> Vec<u8> {
    let out = ReviewOut {
        api_version: &review.api_version,
        kind: KIND,
        response: ResponseOut {
            uid: &review.request.uid,
            allowed: answer.allowed,
            patch_type: answer.patch().map(|_| "JSONPatch"),
            patch: answer
                .patch()
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p.to_json())),
            warnings: answer.warnings.iter().map(String::as_str).collect(),
            audit_annotations: &answer.audit_annotations,
            status: answer.status.as_ref().map(|s| StatusOut {
                code: s.code,
                reason: s.reason,
                message: &s.message,
            }),
        },
    };
    // Serialising strings and booleans cannot fail.
    serde_json::to_vec(&out).unwrap_or_default()
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
    audit_annotations: &'a BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut<'a>>,
}

#[derive(Serialize)]
struct StatusOut<'a> {
    code: u16,
    reason: &'static str,
    message: &'a str,
}

#[cfg(test)]
mod tests;
