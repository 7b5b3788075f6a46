//! What a stored pod should look like: the pod as sent with the patch that
//! `ci-pod-webhook mutate` computes offline applied, compared field by field with what
//! the API server stored, minus what the API server itself adds (defaults, its own
//! tolerations, the ServiceAccount token volume).

use serde_json::{Value, json};

use crate::support::e2e::repo_file;

/// The pod as sent, patched the way `ci-pod-webhook mutate` says the webhook would for
/// a namespace with `labels`.
pub fn patched_offline(pod: &Value, namespace: &str, labels: &[(&str, &str)]) -> Value {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"))
        .arg("mutate")
        .arg("--policy")
        .arg(repo_file("manifests/base/policy.yaml"))
        .arg(format!("--namespace-labels={}", labels.join(",")))
        .arg(format!("--namespace={namespace}"))
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(&serde_json::to_vec(pod).expect("pod JSON"))?;
            drop(stdin);
            child.wait_with_output()
        })
        .expect("run ci-pod-webhook mutate");
    assert!(output.status.success(), "ci-pod-webhook mutate failed");
    let review: Value = serde_json::from_slice(&output.stdout).expect("a review");
    let mut patched = pod.clone();
    if let Some(encoded) = review.pointer("/response/patch").and_then(Value::as_str) {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64 patch");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON patch");
        json_patch::patch(&mut patched, &patch).expect("the patch applies");
    }
    patched
}

/// Asserts that `stored` carries everything of `expected` that a webhook can change:
/// per container resources, env and volume mounts; volumes; nodeSelector; tolerations
/// (the API server may add its own); runtimeClassName; labels and annotations.
pub fn assert_stored_as(stored: &Value, expected: &Value) {
    for list in ["containers", "initContainers"] {
        let sent = expected["spec"][list]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for want in sent {
            let name = want["name"].as_str().expect("container name");
            let got = crate::support::e2e::container(stored, name);
            let resources = requests_default_to_limits(&want["resources"]);
            assert_same(
                &format!("container {name}, resources"),
                &got["resources"],
                &resources,
            );
            for field in ["env", "volumeMounts"] {
                assert_same(
                    &format!("container {name}, {field}"),
                    &got[field],
                    &want[field],
                );
            }
        }
    }
    for field in ["volumes", "nodeSelector", "runtimeClassName"] {
        assert_same(
            &format!("spec.{field}"),
            &stored["spec"][field],
            &expected["spec"][field],
        );
    }
    let stored_tolerations = stored["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for toleration in expected["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        assert!(
            stored_tolerations.contains(&toleration),
            "toleration {toleration} missing from the stored pod: {stored_tolerations:?}"
        );
    }
    for field in ["labels", "annotations"] {
        assert_same(
            &format!("metadata.{field}"),
            &stored["metadata"][field],
            &expected["metadata"][field],
        );
    }
}

/// The API server's defaulting: a resource with a limit and no request gets the
/// limit as its request.
fn requests_default_to_limits(resources: &Value) -> Value {
    let mut resources = resources.clone();
    if let Some(limits) = resources["limits"].as_object().cloned() {
        for (name, limit) in limits {
            if resources["requests"].get(&name).is_none() {
                resources["requests"][&name] = limit;
            }
        }
    }
    resources
}

/// What the API server would store for `value`: it omits empty strings, objects and
/// lists (Go's `omitempty`), so `null`, `""`, `{}` and `[]` all read as absent.
fn normalise(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let kept: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), normalise(v)))
                .filter(|(_, v)| !v.is_null())
                .collect();
            if kept.is_empty() {
                Value::Null
            } else {
                Value::Object(kept)
            }
        }
        Value::Array(list) if list.is_empty() => Value::Null,
        Value::Array(list) => Value::Array(list.iter().map(normalise).collect()),
        Value::String(text) if text.is_empty() => Value::Null,
        _ => value.clone(),
    }
}

/// Asserts `got == want` after [`normalise`]; on a difference, names the first
/// differing path rather than printing two 20 KB values.
fn assert_same(what: &str, got: &Value, want: &Value) {
    let (got, want) = (normalise(got), normalise(want));
    if got != want {
        panic!("{what}: {}", first_difference("", &got, &want));
    }
}

fn first_difference(path: &str, got: &Value, want: &Value) -> String {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for key in w.keys().chain(g.keys()) {
                let (a, b) = (
                    g.get(key).unwrap_or(&Value::Null),
                    w.get(key).unwrap_or(&Value::Null),
                );
                if a != b {
                    return first_difference(&format!("{path}/{key}"), a, b);
                }
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            for i in 0..g.len().max(w.len()) {
                let (a, b) = (
                    g.get(i).unwrap_or(&Value::Null),
                    w.get(i).unwrap_or(&Value::Null),
                );
                if a != b {
                    return first_difference(&format!("{path}/{i}"), a, b);
                }
            }
        }
        _ => {}
    }
    format!("at {path}: stored {got}, expected {want}")
}

/// `{"key": "nvidia.com/gpu", "operator": "Exists"}` and the like.
pub fn toleration(key: &str, operator: &str) -> Value {
    json!({"key": key, "operator": operator})
}
