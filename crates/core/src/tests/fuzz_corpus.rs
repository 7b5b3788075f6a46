//! Replays the fuzzers' committed inputs on stable Rust, with the fuzz targets'
//! invariants: the crashes they found (`fuzz/regressions/`) stay fixed, and the small
//! corpus (`fuzz/corpus/`) keeps working, in every `cargo test`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::admission;
use crate::mutate::NamespaceFacts;
use crate::policy::Policy;
use base64::Engine as _;
use serde_json::Value;

fn inputs(dirs: &[&str]) -> Vec<(PathBuf, Vec<u8>)> {
    let root = super::support::root().join("fuzz");
    let mut out = Vec::new();
    for dir in dirs {
        let dir = root.join(dir);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let bytes = std::fs::read(&path).expect("read");
            out.push((path, bytes));
        }
    }
    assert!(!out.is_empty(), "no inputs in {dirs:?}");
    out
}

/// The review target's checks (fuzz/fuzz_targets/review.rs), on one input.
fn check_review(policy: &Policy, data: &[u8]) {
    let Ok(review) = admission::parse(data) else {
        return;
    };
    let opted_in = BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "enabled".to_string())]);
    for facts in [
        NamespaceFacts::TrustSelector,
        NamespaceFacts::Labels(&opted_in),
    ] {
        let Ok(answer) = admission::respond(policy, facts, &review) else {
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
        let Ok(mut whole) = serde_json::from_slice::<Value>(data) else {
            continue;
        };
        let mut object = whole["request"]["object"].take();
        json_patch::patch(&mut object, &ops).expect("the patch applies to the object");
        whole["request"]["object"] = object;
        let body = serde_json::to_vec(&whole).expect("json");
        let again = admission::parse(&body).expect("the patched review is readable");
        let again = admission::respond(policy, facts, &again).expect("the patched pod is readable");
        assert_eq!(again.answer.patch_operations(), 0, "not idempotent");
    }
}

#[test]
fn review_inputs_found_by_fuzzing_keep_their_invariants() {
    let policy = Policy::embedded();
    for (path, data) in inputs(&["regressions/review", "corpus/review"]) {
        let outcome = std::panic::catch_unwind(|| check_review(&policy, &data));
        assert!(outcome.is_ok(), "{} fails", path.display());
    }
}

#[test]
fn policy_inputs_found_by_fuzzing_parse_or_fail_cleanly() {
    for (path, data) in inputs(&["corpus/policy"]) {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let outcome = std::panic::catch_unwind(|| Policy::parse(text, "fuzz.yaml").map(|_| ()));
        assert!(outcome.is_ok(), "{} panics", path.display());
    }
}
