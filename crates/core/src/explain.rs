//! Human-readable explanations for `mutate --explain` and `check-policy`: which class
//! was chosen and why, each change as before → after, named by container, and each
//! value the pod set that the class would have set otherwise (class requests and limits
//! only fill gaps; only `max` lowers a value), so that nobody expects a class change to
//! reach pods whose runner already sets resources.

use std::fmt::Write as _;

use json_patch::PatchOperation;
use serde_json::Value;

use crate::admission::Review;
use crate::mutate::{Change, Decision, OverrideRecord};
use crate::policy::{
    ContainerList, DockerMode, Enforcement, Limit, Policy, ResourceName, Role, RunnerClass,
    SocketMount,
};
use crate::quantity::Quantity;

/// Explains one decision. `pod` is the request's object, to name containers.
pub fn render(
    policy: &Policy,
    review: &Review<'_>,
    pod: &Value,
    decision: &Decision<'_>,
    mode: Enforcement,
) -> String {
    let mut s = String::new();
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .or_else(|| {
            pod.pointer("/metadata/generateName")
                .and_then(Value::as_str)
        })
        .unwrap_or("(unnamed)");
    let _ = writeln!(s, "pod:       {name} in namespace {}", review.namespace());
    let _ = writeln!(s, "policy:    {} (hash {})", policy.origin, policy.hash);
    if mode == Enforcement::Warn {
        let _ = writeln!(
            s,
            "mode:      warn (nothing is changed or denied; the answer warns what enforce would do)"
        );
    } else if !matches!(decision, Decision::Skip(_)) {
        let _ = writeln!(s, "mode:      enforce");
    }
    match decision {
        Decision::Skip(reason) => {
            let _ = writeln!(s, "result:    skipped ({}), no changes", reason.as_str());
        }
        Decision::Deny {
            chosen, message, ..
        } => {
            let _ = writeln!(s, "class:     {} ({})", chosen.class.name, chosen.reason);
            let _ = writeln!(
                s,
                "result:    {}",
                if mode == Enforcement::Warn {
                    "allowed unchanged; enforce would DENY"
                } else {
                    "DENIED"
                }
            );
            let _ = writeln!(s, "message:   {message}");
        }
        Decision::Allow(m) => {
            let _ = writeln!(
                s,
                "class:     {} ({})",
                m.chosen.class.name, m.chosen.reason
            );
            if !m.overrides.is_empty() {
                let _ = writeln!(s, "overrides:");
                for o in &m.overrides {
                    let _ = writeln!(s, "  {:<28} {}", o.detail, o.result.as_str());
                }
            }
            if m.patch.is_empty() {
                let _ = writeln!(s, "changes:   none (the pod already follows the policy)");
            } else {
                let _ = writeln!(s, "changes:   {}", m.patch.len());
                for change in &m.patch.changes {
                    let _ = writeln!(s, "  {}", describe(change, pod));
                }
            }
            let kept = kept(m.chosen.class, pod, &m.patch.changes, &m.overrides);
            if !kept.is_empty() {
                let _ = writeln!(s, "kept:      {}", kept.len());
                for line in &kept {
                    let _ = writeln!(s, "  {line}");
                }
            }
            if !m.warnings.is_empty() {
                let _ = writeln!(s, "warnings:");
                for w in &m.warnings {
                    let _ = writeln!(s, "  - {w}");
                }
            }
            let result = match mode {
                Enforcement::Warn if !m.patch.is_empty() => {
                    "allowed unchanged; enforce would make the changes above"
                }
                _ => "allowed",
            };
            let _ = writeln!(s, "result:    {result}");
        }
    }
    s
}

/// One change as `where: before → after`.
pub fn describe(change: &Change, pod: &Value) -> String {
    let (path, after) = match &change.op {
        PatchOperation::Add(op) => (&op.path, Some(&op.value)),
        PatchOperation::Replace(op) => (&op.path, Some(&op.value)),
        PatchOperation::Remove(op) => (&op.path, None),
        other => return format!("{other:?}"),
    };
    let tokens: Vec<String> = path.tokens().map(|t| t.decoded().into_owned()).collect();
    let mut place = String::new();
    for (i, token) in tokens.iter().enumerate() {
        let parent = if i > 0 { tokens[i - 1].as_str() } else { "" };
        if token == "-" {
            place.push_str("[+]");
        } else if let Ok(index) = token.parse::<usize>() {
            let container = matches!(parent, "containers" | "initContainers")
                .then(|| {
                    pod.pointer(&format!("/spec/{parent}/{index}/name"))
                        .and_then(Value::as_str)
                })
                .flatten();
            let _ = match container {
                Some(name) => write!(place, "[{name}]"),
                None => write!(place, "[{index}]"),
            };
        } else if token.contains(['.', '/']) {
            let _ = write!(place, "[{token:?}]");
        } else {
            if !place.is_empty() {
                place.push('.');
            }
            place.push_str(token);
        }
    }
    let show = |v: Option<&Value>| match v {
        None => "(none)".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    format!(
        "{place}: {} → {}",
        show(change.before.as_ref()),
        show(after)
    )
}

/// The requests and limits the pod set itself where the class names another value: the
/// webhook keeps them (within `max`), and says so rather than leave the reader to
/// believe the class value applies.
fn kept(
    class: &RunnerClass,
    pod: &Value,
    changes: &[Change],
    overrides: &[OverrideRecord],
) -> Vec<String> {
    let changed: Vec<String> = changes.iter().map(|c| c.op.path().to_string()).collect();
    let overridden = |section: &str, resource: ResourceName| {
        let singular = section.trim_end_matches('s');
        let name = format!("{resource}-{singular}");
        overrides.iter().any(|o| o.kind.as_str() == name)
    };
    let mut lines = Vec::new();
    for (list, kind) in [
        ("initContainers", ContainerList::InitContainers),
        ("containers", ContainerList::Containers),
    ] {
        let containers = pod
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array);
        for (index, container) in containers.into_iter().flatten().enumerate() {
            let name = container.get("name").and_then(Value::as_str).unwrap_or("");
            let role = Role::of(kind, name);
            let wanted = class.resources(role);
            let requests = wanted.requests.iter().map(|(r, q)| ("requests", *r, *q));
            let limits = wanted.limits.iter().filter_map(|(r, l)| match l {
                Limit::Set(q) => Some(("limits", *r, *q)),
                Limit::Unlimited => None,
            });
            for (section, resource, class_value) in requests.chain(limits) {
                let key = resource.as_str();
                let path = format!("/spec/{list}/{index}/resources/{section}/{key}");
                let text = match pod.pointer(&path) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => continue, // none: filled in, shown as a change
                };
                let is_build = role == Role::Build && list == "containers";
                if changed.contains(&path)
                    || (is_build && overridden(section, resource))
                    || Quantity::parse(&text).is_ok_and(|q| q == class_value)
                {
                    continue;
                }
                let ceiling = class
                    .max
                    .get(&resource)
                    .map(|m| format!(", within the class max {m}"))
                    .unwrap_or_default();
                lines.push(format!(
                    "spec.{list}[{name}].resources.{section}.{key}: kept {text}: set by the pod{ceiling}; class value {class_value} applies only where a pod sets none"
                ));
            }
        }
    }
    lines
}

pub fn docker_summary(policy: &Policy) -> String {
    let containers = policy.docker.containers.join(",");
    match &policy.docker.mode {
        DockerMode::Off => "off".to_string(),
        DockerMode::Socket {
            socket_path,
            mount,
            host_path,
            ..
        } => {
            let what = match mount {
                SocketMount::Directory => "host directory",
                SocketMount::File => "socket file",
            };
            format!("socket unix://{socket_path} ({what} {host_path} mounted into {containers})")
        }
        DockerMode::Tcp { port, tls } => format!(
            "tcp://$(NODE_IP):{port}{} in {containers}",
            if tls.is_some() { " with TLS" } else { "" }
        ),
    }
}

pub fn gpu_workloads_summary(policy: &Policy) -> String {
    let Some(g) = &policy.gpu_workloads else {
        return "off".to_string();
    };
    let mut selectors: Vec<String> = g.names.iter().map(|n| n.as_str().to_string()).collect();
    if !g.labels.is_empty() {
        let labels: Vec<String> = g.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        selectors.push(format!("labels {}", labels.join(",")));
    }
    let runtime = g
        .placement
        .gpu
        .as_ref()
        .and_then(|gpu| gpu.runtime_class_name.as_deref())
        .unwrap_or("-");
    format!(
        "pods asking for {} in namespaces {} (never {}): {} nodeSelector keys, {} tolerations, runtimeClassName {runtime}",
        g.resource,
        selectors.join(" | "),
        g.never.iter().cloned().collect::<Vec<_>>().join(", "),
        g.placement.node_selector.len(),
        g.placement.tolerations.len(),
    )
}

pub fn limits_env_summary(policy: &Policy) -> String {
    let Some(env) = &policy.limits_env else {
        return "off".to_string();
    };
    let names: Vec<&str> = [
        &env.class,
        &env.cpus,
        &env.cpu_millicores,
        &env.memory_bytes,
        &env.gpus,
    ]
    .into_iter()
    .flatten()
    .map(String::as_str)
    .collect();
    if names.is_empty() {
        "off (every name is null)".to_string()
    } else {
        format!("{} in build", names.join(", "))
    }
}

pub fn match_summary(class: &RunnerClass) -> String {
    let blocks: Vec<String> = class
        .match_blocks
        .iter()
        .map(|rules| {
            let mut parts = Vec::new();
            if !rules.runner_names.is_empty() {
                parts.push(format!("runner={}", rules.runner_names.join("|")));
            }
            if !rules.runner_tokens.is_empty() {
                parts.push(format!("token={}", rules.runner_tokens.join("|")));
            }
            if !rules.service_accounts.is_empty() {
                parts.push(format!("user={}", rules.service_accounts.join("|")));
            }
            if !rules.namespaces.is_empty() {
                parts.push(format!("namespace={}", rules.namespaces.join("|")));
            }
            for (k, v) in &rules.pod_labels {
                parts.push(format!("{k}={v}"));
            }
            parts.join(" & ")
        })
        .collect();
    match blocks.len() {
        0 => "-".to_string(),
        1 => blocks.concat(),
        _ => blocks
            .iter()
            .map(|b| format!("({b})"))
            .collect::<Vec<_>>()
            .join(" | "),
    }
}
