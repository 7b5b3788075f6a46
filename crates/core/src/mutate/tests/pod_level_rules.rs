//! The API server's rules for pod-level resources (`spec.resources`) after its
//! defaulting, and for extended resources and hugepages, written out apart from the
//! webhook's own code (`mutate/resources/pod_level.rs` and `mutate/resources/extended_resources.rs`
//! name the sources), so that tests can check a patched pod would be admitted.
//!
//! Shared by the escape tests (`escapes.rs`) and the property tests (`properties.rs`).

use serde_json::Value;

use crate::quantity::Quantity;

/// A quantity as the API server reads one from JSON: a string or a number.
pub fn quantity(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => Some(Quantity::parse(s).expect("a valid quantity")),
        Value::Number(n) => Some(Quantity::parse(&n.to_string()).expect("a valid quantity")),
        _ => None,
    }
}

/// The containers in `spec.<list>` (`containers` or `initContainers`).
pub fn containers(pod: &Value, list: &str) -> Vec<Value> {
    pod["spec"][list].as_array().cloned().unwrap_or_default()
}

/// Panics unless the API server accepts the pod's pod-level resources: the pod's request
/// within its limit, the containers' aggregate request within the pod's request, and no
/// container limit above the pod's limit.
pub fn assert_pod_level_resources_accepted(pod: &Value) {
    let q = quantity;
    let Some(resources) = pod["spec"].get("resources").filter(|r| !r.is_null()) else {
        return;
    };
    let zero = Quantity::ZERO;
    for key in ["cpu", "memory"] {
        // Container defaulting: a limit without a request is the request.
        let effective = |c: &Value| {
            q(&c["resources"]["requests"][key]).or_else(|| q(&c["resources"]["limits"][key]))
        };
        let (mut sidecars, mut largest_init, mut any) = (zero, zero, false);
        for c in containers(pod, "initContainers") {
            let e = effective(&c);
            any |= e.is_some();
            let e = e.unwrap_or(zero);
            if c["restartPolicy"] == "Always" {
                sidecars = sidecars.plus(e);
            } else {
                largest_init = largest_init.max(e.plus(sidecars));
            }
        }
        let mut apps = sidecars;
        for c in containers(pod, "containers") {
            let e = effective(&c);
            any |= e.is_some();
            apps = apps.plus(e.unwrap_or(zero));
        }
        let aggregate = apps.max(largest_init);
        let limit = q(&resources["limits"][key]);
        let request = q(&resources["requests"][key]).or(match limit {
            Some(_) if any => Some(aggregate),
            other => other,
        });
        if let (Some(r), Some(l)) = (request, limit) {
            assert!(r <= l, "pod request {r} > pod limit {l} for {key}");
        }
        if let Some(r) = request {
            assert!(
                aggregate <= r,
                "containers' {key} requests {aggregate} > pod request {r}"
            );
        }
        for c in containers(pod, "containers") {
            if let (Some(cl), Some(l)) = (q(&c["resources"]["limits"][key]), limit) {
                assert!(cl <= l, "{}: {key} limit {cl} > pod limit {l}", c["name"]);
            }
        }
    }
}

/// The API server's rules for extended resources and hugepages
/// (`pkg/apis/core/validation/validation.go` `validateResourceRequirements`): request == limit (non-overcommitable), a limit
/// wherever there is a request, whole numbers for extended resources, and hugepages only
/// beside cpu or memory.
pub fn assert_extended_resources_admissible(pod: &Value) {
    for list in ["containers", "initContainers"] {
        for c in containers(pod, list) {
            let name = &c["name"];
            let limits = c["resources"]["limits"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let requests = c["resources"]["requests"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let standard = |k: &str| matches!(k, "cpu" | "memory" | "ephemeral-storage");
            let mut hugepages = false;
            for key in limits.keys().chain(requests.keys()) {
                if standard(key) {
                    continue;
                }
                hugepages |= key.starts_with("hugepages-");
                if let Some(r) = requests.get(key) {
                    let l = limits
                        .get(key)
                        .unwrap_or_else(|| panic!("{name}: {key} request without a limit"));
                    assert_eq!(quantity(r), quantity(l), "{name}: {key} request != limit");
                }
                if !key.starts_with("hugepages-") {
                    let v = quantity(limits.get(key).or(requests.get(key)).expect("a value"))
                        .expect("a quantity");
                    assert!(v.as_whole_units().is_some(), "{name}: {key} {v} not whole");
                }
            }
            if hugepages {
                assert!(
                    ["cpu", "memory"]
                        .iter()
                        .any(|k| limits.contains_key(*k) || requests.contains_key(*k)),
                    "{name}: hugepages without cpu or memory"
                );
            }
        }
    }
}
