//! Differential fuzzing of the single-pass parse: for any bytes, `admission::parse_with`
//! (which reads the pod on the way when told the namespace is opted in) must answer
//! exactly as `admission::parse` followed by the core's own parse of the pod: the same
//! response bytes, or the same error.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use ci_pod_webhook::admission;
use ci_pod_webhook::mutate::NamespaceFacts;
use ci_pod_webhook::policy::Policy;
use libfuzzer_sys::fuzz_target;

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::embedded);
static OPTED_IN: LazyLock<BTreeMap<String, String>> = LazyLock::new(|| {
    BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "enabled".to_string())])
});
static NOT_OPTED_IN: LazyLock<BTreeMap<String, String>> = LazyLock::new(BTreeMap::new);

fn outcome(
    review: Result<admission::Review<'_>, admission::AdmissionError>,
    facts: NamespaceFacts<'_>,
) -> String {
    match review.and_then(|r| admission::answer(&POLICY, facts, &r)) {
        Ok(answer) => String::from_utf8_lossy(&answer.body).into_owned(),
        Err(error) => format!("error: {error}"),
    }
}

fuzz_target!(|data: &[u8]| {
    for facts in [
        NamespaceFacts::TrustSelector,
        NamespaceFacts::Labels(&OPTED_IN),
        NamespaceFacts::Labels(&NOT_OPTED_IN),
    ] {
        // Whatever the single pass is told, the answer must not change.
        for wants_pod in [true, false] {
            assert_eq!(
                outcome(admission::parse_with(data, |_| wants_pod), facts),
                outcome(admission::parse(data), facts),
            );
        }
    }
});
