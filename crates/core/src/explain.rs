//! Human-readable explanations for `mutate --explain` and `check-policy`: which class
//! was chosen and why, each change as before → after, named by container, and each
//! value the pod set that the class would have set otherwise (class requests and limits
//! only fill gaps; only `max` lowers a value), so that nobody expects a class change to
//! reach pods whose runner already sets resources.

use std::fmt::Write as _;

use crate::answer::Answer;
use crate::mutate::{Decision, Pod};
use crate::policy::{
    ContainerList, DockerMode, Enforcement, Limit, Policy, ResourceName, Role, RunnerClass,
    SocketMount,
};
use crate::quantity::Quantity;

/// What an explanation is about: the pod (its name, or its generateName) and its
/// namespace, and the lines [`kept`] found.
#[derive(Debug, Clone, Default)]
pub struct Subject<'a> {
    pub namespace: &'a str,
    pub pod: String,
    pub kept: Vec<String>,
}

/// Explains one answer.
pub fn render(policy: &Policy, subject: &Subject<'_>, answer: &Answer<'_>) -> String {
    let mut s = String::new();
    let name = Some(subject.pod.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("(unnamed)");
    let mode = answer.mode;
    let _ = writeln!(s, "pod:       {name} in namespace {}", subject.namespace);
    let _ = writeln!(s, "policy:    {} (hash {})", policy.origin, policy.hash);
    if mode == Enforcement::Warn {
        let _ = writeln!(
            s,
            "mode:      warn (nothing is changed or denied; the answer warns what enforce would do)"
        );
    } else if !matches!(answer.decision, Decision::Skip(_)) {
        let _ = writeln!(s, "mode:      enforce");
    }
    match &answer.decision {
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
                    let _ = writeln!(s, "  {}", change.describe());
                }
            }
            if !subject.kept.is_empty() {
                let _ = writeln!(s, "kept:      {}", subject.kept.len());
                for line in &subject.kept {
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

/// The requests and limits the pod set itself where its class names another value: the
/// webhook keeps them (within `max`), and says so rather than leave the reader to
/// believe the class value applies. Empty unless the answer allows the pod.
pub fn kept(answer: &Answer<'_>, pod: &Pod<'_>) -> Vec<String> {
    let Decision::Allow(m) = &answer.decision else {
        return Vec::new();
    };
    let class = m.chosen.class;
    let changed: Vec<String> = m
        .patch
        .changes
        .iter()
        .map(|c| c.op.path().to_string())
        .collect();
    let overridden = |section: &str, resource: ResourceName| {
        let singular = section.trim_end_matches('s');
        let name = format!("{resource}-{singular}");
        m.overrides.iter().any(|o| o.kind.as_str() == name)
    };
    let spec = pod.spec();
    let mut lines = Vec::new();
    for (list, kind, containers) in [
        (
            "initContainers",
            ContainerList::InitContainers,
            &spec.init_containers,
        ),
        ("containers", ContainerList::Containers, &spec.containers),
    ] {
        for (index, container) in containers.iter().flatten().enumerate() {
            let name = container.name.as_ref();
            let role = Role::of(kind, name);
            let wanted = class.resources(role);
            let requests = wanted.requests.iter().map(|(r, q)| ("requests", *r, *q));
            let limits = wanted.limits.iter().filter_map(|(r, l)| match l {
                Limit::Set(q) => Some(("limits", *r, *q)),
                Limit::Unlimited => None,
            });
            for (section, resource, class_value) in requests.chain(limits) {
                let key = resource.as_str();
                let set = container.resources.as_ref().and_then(|r| match section {
                    "requests" => r.requests.as_ref(),
                    _ => r.limits.as_ref(),
                });
                let Some(text) = set.and_then(|values| values.get(key)) else {
                    continue; // none: filled in, shown as a change
                };
                let path = format!("/spec/{list}/{index}/resources/{section}/{key}");
                let is_build = role == Role::Build && list == "containers";
                if changed.contains(&path)
                    || (is_build && overridden(section, resource))
                    || Quantity::parse(text).is_ok_and(|q| q == class_value)
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
            volume_name,
            group,
        } => {
            let what = match mount {
                SocketMount::Directory => "host directory",
                SocketMount::File => "socket file",
            };
            let group = group
                .map(|gid| format!("; group {gid} added to the pod's supplementalGroups"))
                .unwrap_or_default();
            format!(
                "socket unix://{socket_path} ({what} {host_path} mounted into {containers} as volume {volume_name}{group})"
            )
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
        g.resources
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", "),
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
