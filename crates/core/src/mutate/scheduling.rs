//! Placement: the class nodeSelector (policy wins on a conflict), class tolerations
//! (a set: an equal toleration is never added twice) and the GPU runtime class.

use serde_json::{Map, Value, json};

use super::patch::{Parent, Patch, pointer};
use super::view::{self, Pod};
use crate::policy::{RunnerClass, Toleration, TolerationOperator};

pub(super) fn apply(
    class: &RunnerClass,
    pod: &Pod<'_>,
    patch: &mut Patch,
    warnings: &mut Vec<String>,
) {
    node_selector(class, pod, patch, warnings);
    tolerations(class, pod, patch);
    runtime_class(class, pod, patch, warnings);
}

fn node_selector(
    class: &RunnerClass,
    pod: &Pod<'_>,
    patch: &mut Patch,
    warnings: &mut Vec<String>,
) {
    let existing = pod.spec().node_selector.as_ref();
    let members = class.node_selector.iter().map(|(key, want)| {
        let before = existing.and_then(|m| m.get(key)).map(str::to_string);
        if let Some(b) = before.as_deref().filter(|b| b != want) {
            warnings.push(format!(
                "nodeSelector {key}={} replaced by {key}={want} (class {})",
                super::shorten(b),
                class.name
            ));
        }
        (key.clone(), before, want.clone())
    });
    let members: Vec<_> = members.collect();
    patch.set_members(&["spec", "nodeSelector"], Parent::of(&existing), members);
}

fn tolerations(class: &RunnerClass, pod: &Pod<'_>, patch: &mut Patch) {
    let existing = pod.spec().tolerations.as_deref().unwrap_or_default();
    let missing: Vec<Value> = class
        .tolerations
        .iter()
        .filter(|want| !existing.iter().any(|have| same(want, have)))
        .map(to_json)
        .collect();
    patch.append(
        &["spec", "tolerations"],
        Parent::of(&pod.spec().tolerations),
        missing,
    );
}

/// Toleration identity as the API server sees it: an empty operator means Equal.
fn same(want: &Toleration, have: &view::Toleration<'_>) -> bool {
    let operator = match have.operator.as_deref().unwrap_or("") {
        "" | "Equal" => TolerationOperator::Equal,
        "Exists" => TolerationOperator::Exists,
        _ => return false,
    };
    have.key.as_deref().unwrap_or("") == want.key
        && operator == want.operator
        && have.value.as_deref().unwrap_or("") == want.value
        && have.effect.as_deref().unwrap_or("") == want.effect
        && have.toleration_seconds == want.toleration_seconds
}

fn to_json(t: &Toleration) -> Value {
    let mut object = Map::new();
    if !t.key.is_empty() {
        object.insert("key".into(), json!(t.key));
    }
    object.insert("operator".into(), json!(t.operator.as_str()));
    if !t.value.is_empty() {
        object.insert("value".into(), json!(t.value));
    }
    if !t.effect.is_empty() {
        object.insert("effect".into(), json!(t.effect));
    }
    if let Some(seconds) = t.toleration_seconds {
        object.insert("tolerationSeconds".into(), json!(seconds));
    }
    Value::Object(object)
}

fn runtime_class(
    class: &RunnerClass,
    pod: &Pod<'_>,
    patch: &mut Patch,
    warnings: &mut Vec<String>,
) {
    let Some(want) = class
        .gpu
        .as_ref()
        .and_then(|g| g.runtime_class_name.as_deref())
    else {
        return;
    };
    let path = pointer(&["spec", "runtimeClassName"]);
    match pod.spec().runtime_class_name.as_deref() {
        Some(have) if have == want => {}
        Some(have) => {
            warnings.push(format!(
                "runtimeClassName {} replaced by {want} (class {} needs it for GPUs)",
                super::shorten(have),
                class.name
            ));
            patch.replace(path, json!(have), json!(want));
        }
        None => patch.add(path, json!(want)),
    }
}
