//! Fuzzes the whole request path: bytes → AdmissionReview → decision → response bytes.
//! Beyond "never panics", it checks what must hold for every readable review: the
//! response is JSON echoing the uid, and a patch applies to the object and is
//! idempotent (a second run on the patched object changes nothing).
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use base64::Engine as _;
use ci_pod_webhook_core::admission;
use ci_pod_webhook_core::mutate::NamespaceFacts;
use ci_pod_webhook_core::policy::Policy;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::embedded);
static OPTED_IN: LazyLock<BTreeMap<String, String>> = LazyLock::new(|| {
    BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "enabled".to_string())])
});

fuzz_target!(|data: &[u8]| {
    let Ok(review) = admission::parse(data) else {
        return;
    };
    for facts in [
        NamespaceFacts::TrustSelector,
        NamespaceFacts::Labels(&OPTED_IN),
    ] {
        let Ok(answer) = admission::respond(&POLICY, facts, &review) else {
            continue;
        };
        let response: Value = serde_json::from_slice(&answer.body).expect("response is JSON");
        assert_eq!(response["response"]["uid"].as_str(), Some(review.uid()));
        let Some(patch) = response["response"]["patch"].as_str() else {
            continue;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("base64");
        let ops: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSONPatch");
        // Re-read the object as the API server would (last duplicate key wins). A lone
        // surrogate escape in a string the webhook skips is let through by its parser but
        // refused by a strict one: nothing to compare against then.
        let Ok(whole) = serde_json::from_slice::<Value>(data) else {
            continue;
        };
        let mut object = whole["request"]["object"].clone();
        json_patch::patch(&mut object, &ops).expect("the patch applies to the object");
        let mut again = whole.clone();
        again["request"]["object"] = object;
        let body = serde_json::to_vec(&again).expect("json");
        let second = admission::parse(&body).expect("the patched review is readable");
        let second =
            admission::respond(&POLICY, facts, &second).expect("the patched pod is readable");
        assert_eq!(second.answer.patch_operations(), 0, "not idempotent");
    }
});
