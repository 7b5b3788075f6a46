//! Human-readable explanations for `mutate --explain` and `check-policy`: which class
//! was chosen and why, and each change as before → after, named by container.

use std::fmt::Write as _;

use json_patch::PatchOperation;
use serde_json::Value;

use crate::admission::Review;
use crate::mutate::{Change, Decision};
use crate::policy::{DockerMode, Enforcement, Policy, RunnerClass};

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

pub fn docker_summary(policy: &Policy) -> String {
    let containers = policy.docker.containers.join(",");
    match &policy.docker.mode {
        DockerMode::Off => "off".to_string(),
        DockerMode::Socket {
            socket_path,
            socket_dir,
            ..
        } => {
            format!(
                "socket unix://{socket_path} (host directory {socket_dir} mounted into {containers})"
            )
        }
        DockerMode::Tcp { port, tls } => format!(
            "tcp://$(NODE_IP):{port}{} in {containers}",
            if tls.is_some() { " with TLS" } else { "" }
        ),
    }
}

pub fn match_summary(class: &RunnerClass) -> String {
    let rules = &class.match_rules;
    let mut parts = Vec::new();
    if !rules.runner_names.is_empty() {
        parts.push(format!("runner={}", rules.runner_names.join("|")));
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
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(" & ")
    }
}
