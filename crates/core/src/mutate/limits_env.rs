//! `limitsEnv`: variables in the `build` container that give the job its class and its
//! effective CPU and memory limits (and GPU count on GPU classes).
//!
//! CPU and memory come from the downward API (`resourceFieldRef` on `build`), so the
//! kubelet fills in the limits in force when the container starts, whatever changed them
//! after this webhook (another webhook, an in-place resize). With no CPU limit (a `null`
//! class limit) the kubelet gives the node's allocatable CPUs instead, which is then the
//! job's real ceiling. The downward API has no extended resources, so the GPU count is a
//! plain value: the count this patch leaves in `build`'s limits.
//!
//! Env is a set keyed by name: a variable the container already sets is never replaced,
//! nor added when an `envFrom` source may set it (`env` would override that source).

use serde_json::{Value, json};

use super::patch::{Parent, Patch, pointer};
use super::view::{Container, Pod};
use crate::policy::{Policy, RunnerClass};

/// The container the variables go to: the one that runs the job's script.
const BUILD: &str = "build";

pub(super) fn apply(
    policy: &Policy,
    class: &RunnerClass,
    pod: &Pod<'_>,
    patch: &mut Patch,
    warnings: &mut Vec<String>,
) {
    let Some(names) = &policy.limits_env else {
        return;
    };
    let containers = pod.spec().containers.as_deref().unwrap_or_default();
    let Some((index, build)) = containers.iter().enumerate().find(|(_, c)| c.name == BUILD) else {
        return;
    };
    let field = |resource: &str, divisor: &str| json!({"resourceFieldRef": {"containerName": BUILD, "resource": resource, "divisor": divisor}});
    let gpus = class
        .gpu
        .as_ref()
        .and_then(|g| limit_after(build, patch, index, &g.resource));
    let wanted = [
        (&names.class, Some(json!({"value": class.name}))),
        (
            &names.cpus,
            Some(json!({"valueFrom": field("limits.cpu", "1")})),
        ),
        (
            &names.cpu_millicores,
            Some(json!({"valueFrom": field("limits.cpu", "1m")})),
        ),
        (
            &names.memory_bytes,
            Some(json!({"valueFrom": field("limits.memory", "1")})),
        ),
        (&names.gpus, gpus.map(|n| json!({"value": n}))),
    ];
    let mut vars = Vec::new();
    let mut shadowed = Vec::new();
    for (name, source) in wanted {
        let (Some(name), Some(Value::Object(mut var))) = (name, source) else {
            continue;
        };
        if build.env.as_ref().is_some_and(|e| e.has(name)) {
            continue;
        }
        if may_come_from_env_from(build, name) {
            shadowed.push(name.as_str());
            continue;
        }
        var.insert("name".to_string(), json!(name));
        vars.push(Value::Object(var));
    }
    if !shadowed.is_empty() {
        warnings.push(format!(
            "{BUILD}: {} not set: an envFrom source of the container may set {}",
            shadowed.join(", "),
            if shadowed.len() == 1 { "it" } else { "them" }
        ));
    }
    let index = index.to_string();
    patch.append(
        &["spec", "containers", &index, "env"],
        Parent::of(&build.env),
        vars,
    );
}

fn may_come_from_env_from(container: &Container<'_>, name: &str) -> bool {
    container
        .env_from
        .iter()
        .flatten()
        .any(|source| source.may_set(name))
}

/// The value of `limits[resource]` of `container` (at `index`) once `patch` is applied: the
/// last operation of the patch that sets it, else the pod's own value.
fn limit_after(
    container: &Container<'_>,
    patch: &Patch,
    index: usize,
    resource: &str,
) -> Option<String> {
    let index = index.to_string();
    let resources = pointer(&["spec", "containers", &index, "resources"]);
    let limits = pointer(&["spec", "containers", &index, "resources", "limits"]);
    let key = pointer(&[
        "spec",
        "containers",
        &index,
        "resources",
        "limits",
        resource,
    ]);
    let text = |v: &Value| v.as_str().map(str::to_string);
    let limits_now = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    let mut value = limits_now.and_then(|l| l.get(resource)).map(str::to_string);
    for change in &patch.changes {
        use json_patch::PatchOperation::{Add, Remove, Replace};
        match &change.op {
            Add(op) if op.path == resources => {
                value = op
                    .value
                    .get("limits")
                    .and_then(|l| l.get(resource))
                    .and_then(text);
            }
            Add(op) if op.path == limits => value = op.value.get(resource).and_then(text),
            Add(op) if op.path == key => value = text(&op.value),
            Replace(op) if op.path == key => value = text(&op.value),
            Remove(op) if op.path == key || op.path == limits || op.path == resources => {
                value = None;
            }
            _ => {}
        }
    }
    value
}
