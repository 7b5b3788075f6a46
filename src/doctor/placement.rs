//! Can job pods run where the policy sends them? Per class: the nodes that match its
//! nodeSelector and whose taints it tolerates; for GPU classes, allocatable GPUs and the
//! RuntimeClass; its CPU limits against its nodes' CPUs (`cpus.rs`); in socket mode, the
//! node Docker daemon on every node a job can land on.

mod cpus;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Toleration};

use super::report::Check;
use super::selector::{node_matches, taint_text, unschedulable, untolerated};
use ci_pod_webhook_core::policy::{DockerMode, Policy, RunnerClass};

pub const GROUP: &str = "runner classes";
pub const DOCKER_GROUP: &str = "node Docker daemon";
/// The socket of manifests/node-docker's DaemonSet.
const NODE_DOCKER_SOCKET: &str = "/var/run/ci-dind/docker.sock";

/// The class's tolerations as the API server would store them.
fn tolerations(class: &RunnerClass) -> Vec<Toleration> {
    class
        .tolerations
        .iter()
        .map(|t| Toleration {
            key: Some(t.key.clone()).filter(|k| !k.is_empty()),
            operator: Some(t.operator.as_str().to_string()),
            value: Some(t.value.clone()).filter(|v| !v.is_empty()),
            effect: Some(t.effect.clone()).filter(|e| !e.is_empty()),
            toleration_seconds: t.toleration_seconds,
        })
        .collect()
}

/// The nodes a job pod of `class` can be scheduled on (labels, taints, not cordoned).
pub fn usable<'n>(class: &RunnerClass, nodes: &'n [Node]) -> Vec<&'n Node> {
    let tolerations = tolerations(class);
    nodes
        .iter()
        .filter(|n| node_matches(n, &class.node_selector))
        .filter(|n| untolerated(n, &tolerations).is_empty() && !unschedulable(n))
        .collect()
}

fn name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("")
}

fn names<'n>(nodes: impl IntoIterator<Item = &'n Node>) -> String {
    let all: Vec<&str> = nodes.into_iter().map(name).collect();
    let shown = all.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if all.len() > 5 {
        format!("{shown} and {} more", all.len() - 5)
    } else {
        shown
    }
}

fn selector_text(class: &RunnerClass) -> String {
    let pairs: Vec<String> = class
        .node_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.join(" ")
}

/// One line per class, and for GPU classes the GPU and RuntimeClass lines.
/// `runtime_classes` is `Err` when they could not be listed.
pub fn classes(
    policy: &Policy,
    nodes: &[Node],
    runtime_classes: Result<&[String], &str>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for class in &policy.classes {
        let usable = usable(class, nodes);
        checks.push(if usable.is_empty() {
            why_none(class, nodes)
        } else {
            Check::ok(
                GROUP,
                format!(
                    "class {}: {} node(s) can run its job pods ({})",
                    class.name,
                    usable.len(),
                    names(usable.iter().copied())
                ),
            )
        });
        checks.extend(cpus::above_its_nodes(class, &usable));
        let Some(gpu) = &class.gpu else { continue };
        if !usable.is_empty() {
            let with_gpus = usable
                .iter()
                .filter(|n| allocatable(n, &gpu.resource) >= u64::from(gpu.count))
                .count();
            checks.push(if with_gpus == 0 {
                Check::failure(
                    GROUP,
                    format!(
                        "class {}: none of its nodes has {} allocatable {}",
                        class.name, gpu.count, gpu.resource
                    ),
                )
                .hint(format!("every GPU job of class {} would stay Pending", class.name))
                .fix("install the NVIDIA device plugin on the GPU nodes (the NVIDIA GPU Operator does)")
            } else {
                Check::ok(
                    GROUP,
                    format!(
                        "class {}: {with_gpus} node(s) with allocatable {}",
                        class.name, gpu.resource
                    ),
                )
            });
        }
        if let Some(runtime_class) = &gpu.runtime_class_name {
            checks.push(match runtime_classes {
                Ok(list) if list.iter().any(|n| n == runtime_class) => Check::ok(
                    GROUP,
                    format!("class {}: RuntimeClass {runtime_class} exists", class.name),
                ),
                Ok(_) => Check::failure(
                    GROUP,
                    format!("class {}: RuntimeClass {runtime_class} does not exist", class.name),
                )
                .hint(format!(
                    "ci-pod-webhook denies every job pod of class {} (the API server would refuse it)",
                    class.name
                ))
                .fix(format!(
                    "install the NVIDIA GPU Operator (it creates RuntimeClass {runtime_class}), or remove gpu.runtimeClassName from class {} in the policy",
                    class.name
                )),
                Err(error) => Check::failure(
                    GROUP,
                    format!("class {}: cannot list RuntimeClasses: {error}", class.name),
                )
                .fix("kubectl apply -k manifests/doctor, and bind its ClusterRole to you (docs/doctor.md)"),
            });
        }
    }
    checks
}

/// The ✘ for a class no node can take, saying which of the three reasons it is.
fn why_none(class: &RunnerClass, nodes: &[Node]) -> Check {
    let headline = format!("class {}: no node can run its job pods", class.name);
    let pending = format!("every job pod of class {} would stay Pending", class.name);
    let labelled: Vec<&Node> = nodes
        .iter()
        .filter(|n| node_matches(n, &class.node_selector))
        .collect();
    if labelled.is_empty() {
        return Check::failure(GROUP, headline)
            .hint(format!(
                "{pending}: no node is labelled {}",
                selector_text(class)
            ))
            .fix(format!(
                "kubectl label node <node> {}",
                selector_text(class)
            ));
    }
    let tolerations = tolerations(class);
    let tainted: Vec<(&Node, String)> = labelled
        .iter()
        .filter_map(|n| {
            let left = untolerated(n, &tolerations);
            (!left.is_empty()).then(|| {
                let taints: Vec<String> = left.into_iter().map(taint_text).collect();
                (*n, taints.join(","))
            })
        })
        .collect();
    if let Some((node, taints)) = tainted.first() {
        return Check::failure(GROUP, headline)
            .hint(format!(
                "{pending}: labelled node(s) {} carry taints the class does not tolerate ({taints} on {})",
                names(tainted.iter().map(|(n, _)| *n)),
                name(node)
            ))
            .fix(format!(
                "add a toleration for them to class {} in the policy, or remove the taint (kubectl taint node {} {}-)",
                class.name,
                name(node),
                taints.split(',').next().unwrap_or_default()
            ));
    }
    Check::failure(GROUP, headline)
        .hint(format!(
            "{pending}: its node(s) {} are cordoned",
            names(labelled.iter().copied())
        ))
        .fix(format!("kubectl uncordon {}", name(labelled[0])))
}

/// The node's allocatable amount of an extended resource such as nvidia.com/gpu
/// (whole numbers; anything else counts as none).
fn allocatable(node: &Node, resource: &str) -> u64 {
    node.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get(resource))
        .and_then(|q| q.0.parse().ok())
        .unwrap_or(0)
}

/// Socket mode: every node a job pod can land on needs the node Docker daemon.
/// `daemon_set` is `Err` when it could not be read, `Ok(None)` when it does not exist.
pub fn docker_daemon(
    policy: &Policy,
    nodes: &[Node],
    daemon_set: Result<Option<&DaemonSet>, &str>,
    where_: &str,
) -> Vec<Check> {
    let DockerMode::Socket { socket_path, .. } = &policy.docker.mode else {
        return Vec::new();
    };
    let mut ci_nodes: Vec<&Node> = policy
        .classes
        .iter()
        .flat_map(|c| usable(c, nodes))
        .collect();
    ci_nodes.sort_by_key(|n| name(n));
    ci_nodes.dedup_by_key(|n| name(n));
    let daemon_set = match daemon_set {
        Err(error) => {
            return vec![
                Check::failure(DOCKER_GROUP, format!("cannot read DaemonSet {where_}: {error}"))
                    .fix("kubectl apply -k manifests/doctor, and bind its ClusterRole to you (docs/doctor.md)"),
            ];
        }
        // A socket elsewhere is a daemon on the hosts' own (SKA's docker-for-gitlab
        // unit), which no API object shows.
        Ok(None) if socket_path != NODE_DOCKER_SOCKET => {
            return vec![
                Check::warning(
                    DOCKER_GROUP,
                    format!("no DaemonSet {where_}: the policy's socket {socket_path} must be served by a daemon on each CI node"),
                )
                .hint("a daemon on the host (such as a systemd unit) is not visible to the doctor")
                .fix(format!("on a CI node: curl --unix-socket {socket_path} http://docker/_ping")),
            ];
        }
        Ok(None) => {
            return vec![
                Check::failure(DOCKER_GROUP, format!("DaemonSet {where_} not found"))
                    .hint("socket mode: jobs that use Docker cannot reach a daemon")
                    .fix("kubectl apply -k manifests/node-docker"),
            ];
        }
        Ok(Some(ds)) => ds,
    };
    let template = daemon_set
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref());
    let selector = template
        .and_then(|t| t.node_selector.clone())
        .unwrap_or_default();
    let tolerations = template
        .and_then(|t| t.tolerations.clone())
        .unwrap_or_default();
    let uncovered: Vec<&Node> = ci_nodes
        .iter()
        .copied()
        .filter(|n| !node_matches(n, &selector) || !untolerated(n, &tolerations).is_empty())
        .collect();
    let mut checks = Vec::new();
    if uncovered.is_empty() {
        checks.push(Check::ok(
            DOCKER_GROUP,
            format!(
                "DaemonSet {where_} covers all {} CI node(s)",
                ci_nodes.len()
            ),
        ));
    } else {
        checks.push(
            Check::failure(
                DOCKER_GROUP,
                format!(
                    "DaemonSet {where_} does not run on {} of {} CI node(s): {}",
                    uncovered.len(),
                    ci_nodes.len(),
                    names(uncovered.iter().copied())
                ),
            )
            .hint("job pods placed there find no Docker socket")
            .fix("make the DaemonSet's nodeSelector and tolerations match the policy's ciNodes (manifests/node-docker/daemonset.yaml)"),
        );
    }
    let status = daemon_set.status.as_ref();
    let desired = status.map_or(0, |s| s.desired_number_scheduled);
    let ready = status.map_or(0, |s| s.number_ready);
    if ready < desired {
        checks.push(
            Check::warning(
                DOCKER_GROUP,
                format!("Docker daemon ready on {ready} of {desired} node(s)"),
            )
            .hint("jobs on the other nodes cannot reach a daemon until it is ready")
            .fix(format!(
                "kubectl -n {} get pods -o wide",
                daemon_set
                    .metadata
                    .namespace
                    .as_deref()
                    .unwrap_or("ci-dind")
            )),
        );
    }
    checks
}

#[cfg(test)]
mod tests;
