//! What the core's integration tests share: the repository's root, where the fixtures and
//! the reviewed expectations live, and the golden-file check: compare one case's
//! output with its file in `tests/golden/`, or (with `UPDATE_GOLDEN=1`) rewrite the file.
//! The policy hash is part of the output; it changes whenever the embedded policy does,
//! so files hold `@POLICY_HASH@` and are compared against the live value.

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::Value;

/// The repository's root: `tests/fixtures/`, `tests/golden/`, `examples/` and `fuzz/`
/// are shared by both crates' tests.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Compares `actual` with `tests/golden/<file>.json`; a failure message when they differ
/// (or the file cannot be read). With `UPDATE_GOLDEN` set, writes the file instead.
pub fn check(file: &str, actual: &Value, policy_hash: &str) -> Option<String> {
    let path = root().join("tests/golden").join(format!("{file}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(actual).expect("json") + "\n";
        let text = text.replace(policy_hash, "@POLICY_HASH@");
        std::fs::write(&path, text).expect("write golden");
        return None;
    }
    let expected = match std::fs::read_to_string(&path) {
        Ok(text) => text.replace("@POLICY_HASH@", policy_hash),
        Err(e) => return Some(format!("{file}: cannot read {}: {e}", path.display())),
    };
    let expected: Value = serde_json::from_str(&expected).expect("golden JSON");
    (&expected != actual).then(|| format!("{file}: output differs from {}", path.display()))
}

/// Fails the test with every failure at once.
pub fn assert_none_failed(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{failures:#?}\n(re-generate with UPDATE_GOLDEN=1 only after reviewing the change)"
    );
}

/// Takes the base64 `patch` out of an AdmissionReview `response`, puts it back decoded
/// under `"patch (decoded)"` (readable in the file), and applies it to `pod`. The pod as
/// stored: patched, as sent when allowed without a patch, `None` when denied.
pub fn apply_patch(response: &mut Value, mut pod: Value) -> Option<Value> {
    match response.as_object_mut().and_then(|r| r.remove("patch")) {
        Some(Value::String(b64)) => {
            assert_eq!(response["patchType"], "JSONPatch");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64");
            let ops: json_patch::Patch = serde_json::from_slice(&bytes).expect("JSONPatch");
            response["patch (decoded)"] = serde_json::from_slice(&bytes).expect("json");
            json_patch::patch(&mut pod, &ops).expect("the patch applies");
            Some(pod)
        }
        _ if response["allowed"] == true => Some(pod),
        _ => None,
    }
}
