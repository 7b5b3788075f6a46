//! Differential fuzzing of the single-pass parse: for any bytes, `admission::parse_with`
//! (which reads the pod on the way when told the namespace may be in scope) must answer
//! exactly as `admission::parse` followed by the core's own parse of the pod: the same
//! response bytes, or the same error. The one difference allowed is the point of the
//! single pass: a review it can skip from the fields before `object` is answered without
//! reading the rest, so a body broken after them is allowed unchanged, not refused.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use ci_pod_webhook_core::admission;
use ci_pod_webhook_core::answer::Outcome;
use ci_pod_webhook_core::mutate::{self, NamespaceFacts};
use ci_pod_webhook_core::policy::Policy;
use libfuzzer_sys::fuzz_target;

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::embedded);
static OPTED_IN: LazyLock<BTreeMap<String, String>> = LazyLock::new(|| {
    BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "enabled".to_string())])
});
static NOT_OPTED_IN: LazyLock<BTreeMap<String, String>> = LazyLock::new(BTreeMap::new);

/// The response bytes or the error, and whether the answer was a skip.
fn outcome(
    review: Result<admission::Review<'_>, admission::AdmissionError>,
    facts: NamespaceFacts<'_>,
) -> (String, bool) {
    match review.and_then(|r| admission::respond(&POLICY, facts, &r)) {
        Ok(answer) => (
            String::from_utf8_lossy(&answer.body).into_owned(),
            answer.answer.outcome == Outcome::Skipped,
        ),
        Err(error) => (format!("error: {error}"), false),
    }
}

fuzz_target!(|data: &[u8]| {
    for facts in [
        NamespaceFacts::TrustSelector,
        NamespaceFacts::Labels(&OPTED_IN),
        NamespaceFacts::Labels(&NOT_OPTED_IN),
    ] {
        let (ordinary, _) = outcome(admission::parse(data), facts);
        // Told "maybe" (the server before it knows the labels), then the truth.
        for told in [None, Some(facts)] {
            let (single, skipped) = outcome(
                admission::parse_with(data, |namespace| {
                    told.is_none_or(|facts| mutate::in_scope(&POLICY, namespace, facts))
                }),
                facts,
            );
            if single != ordinary {
                assert!(
                    ordinary.starts_with("error: ") && skipped,
                    "single pass: {single}\nordinary: {ordinary}"
                );
            }
        }
    }
});
