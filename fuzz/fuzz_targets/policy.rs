//! Fuzzes the policy parser: any text either fails with located problems or yields a
//! policy that the core runs a real job pod through without panicking, answering with
//! JSON. (Patch application and idempotence are the `review` target's checks.)
#![no_main]

use std::sync::LazyLock;

use ci_pod_webhook_core::admission;
use ci_pod_webhook_core::mutate::NamespaceFacts;
use ci_pod_webhook_core::policy::{Policy, PolicyError};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static REVIEW: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let pod: Value = serde_json::from_str(include_str!(
        "../../tests/fixtures/gitlab-runner-17.9-job-pod.json"
    ))
    .expect("fixture");
    admission::PodReview::create("gitlab", &pod).to_json()
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::parse(text, "fuzz.yaml") {
        Err(PolicyError::Invalid(problems)) => assert!(!problems.is_empty()),
        Err(PolicyError::Read { .. }) => unreachable!("parse does not read files"),
        Ok(policy) => {
            let review = admission::parse(&REVIEW).expect("fixture review");
            let answer = admission::respond(&policy, NamespaceFacts::TrustSelector, &review)
                .expect("fixture pod");
            let _: Value = serde_json::from_slice(&answer.body).expect("response is JSON");
        }
    }
});
